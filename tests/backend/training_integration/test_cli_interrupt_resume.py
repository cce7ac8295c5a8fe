"""Ctrl-C during ``rs-reasoner train`` (the installed console script, a real SIGINT):
a clean message, exit 130, checkpoints kept and the model registered; the same command
again resumes from the last finished epoch."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rs_reasoner.cli import main
from tests.support.parcels import write_neon_parcels
from tests.support.training import CLI_SMALL_UNET, NEON, one_torch_thread  # noqa: F401

REPO = Path(__file__).resolve().parents[3]


def command(raster: Path, labels: Path, epochs: int) -> list[str]:
    exe = shutil.which("rs-reasoner", path=str(Path(sys.executable).parent))
    assert exe, "the rs-reasoner console script is not installed"
    return [
        exe, "train", "--raster", str(raster), "--labels", str(labels), "--class-field",
        "cover", "--name", "neon", "--epochs", str(epochs), "--tile-size", "64",
        "--no-verifier", "--quiet", "--device", "cpu", *CLI_SMALL_UNET,
    ]  # fmt: skip


def _default_sigint() -> None:
    # A test run started in the background by a shell without job control inherits an
    # ignored SIGINT, and Python then keeps ignoring it: give the child what a terminal would.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.slow
def test_ctrl_c_keeps_checkpoints_and_rerun_resumes(
    shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    labels = tmp_path / "parcels.gpkg"
    write_neon_parcels(shared_data / NEON, labels)
    models = tmp_path / "models"
    env = {
        **os.environ,
        "RS_REASONER_MODELS_DIR": str(models),
        "OMP_NUM_THREADS": "1",  # shared CPU cores: one thread trains fastest
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": str(REPO),  # tests.support.segmenters (tests/conftest.py)
    }
    proc = subprocess.Popen(
        command(shared_data / NEON, labels, epochs=100),
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=_default_sigint,
    )  # fmt: skip
    history = models / "neon" / "history.json"
    deadline = time.monotonic() + 60
    while not history.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert history.exists(), proc.communicate(timeout=30)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted: checkpoints are kept in" in err and "run the same command" in err
    assert "Traceback" not in err
    folder = models / "neon"
    assert {"best.pt", "last.pt", "model.json"} <= {p.name for p in folder.iterdir()}
    assert not list(folder.glob(".*.tmp"))  # no half-written checkpoint
    info = json.loads((folder / "model.json").read_text())
    done = info["epochs_run"]
    assert info["stopped"] == "cancelled" and 1 <= done < 100

    # The same command again (in-process: one process start less) resumes.
    monkeypatch.setenv("RS_REASONER_MODELS_DIR", str(models))
    assert main(command(shared_data / NEON, labels, epochs=done + 1)[1:]) == 0
    out = capsys.readouterr().out
    assert f"resuming model 'neon' after epoch {done}/{done + 1}" in out
    assert f"epoch {done + 1}/{done + 1}: loss" in out
    assert f"epoch 1/{done + 1}:" not in out
    info = json.loads((folder / "model.json").read_text())
    assert info["stopped"] == "completed" and info["epochs_run"] == done + 1
