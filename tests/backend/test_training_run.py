"""The epoch lines a training run reports (rs_reasoner.training_run.EpochLog)."""

import json
from pathlib import Path

from rs_reasoner.trained_models import CANDIDATES_DIR
from rs_reasoner.training_run import EpochLog


def _write_history(folder: Path, epochs: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    history = [{"epoch": e, "loss": 1.0 / (e + 1), "miou": 0.1 * e} for e in range(epochs)]
    (folder / "history.json").write_text(json.dumps({"history": history}))


def test_auto_candidates_epochs_are_reported_as_they_train(tmp_path: Path) -> None:
    # An auto run trains its networks under candidates/<name>/; their epochs used to go
    # unreported (the CLI and the plugin showed no epoch line at all).
    _write_history(tmp_path / CANDIDATES_DIR / "unet", 1)  # there before this run: skipped
    log = EpochLog(tmp_path, epochs=2)
    assert log.poll() == []
    _write_history(tmp_path / CANDIDATES_DIR / "unet", 2)
    _write_history(tmp_path / CANDIDATES_DIR / "unet-ts-purified", 1)  # appears mid-run
    lines = log.poll()
    assert [line.split(":")[0] for line in lines] == ["unet", "unet-ts-purified"]
    assert lines[0].startswith("unet: epoch 2/2") and "unet-ts-purified: epoch 1/2" in lines[1]
    assert log.poll() == []  # nothing new


def test_the_models_own_epochs_have_no_prefix(tmp_path: Path) -> None:
    log = EpochLog(tmp_path, epochs=3)
    _write_history(tmp_path, 2)
    lines = log.poll()
    assert len(lines) == 2 and lines[1].startswith("epoch 2/3: loss 0.500, val mIoU 0.100")
