"""train-reasoner end to end through the production loaders: a tiny base prompter snapshot
and a SAM 2.1 hiera-tiny checkpoint (random weights) on disk, examples on the NEON sample.

Trained → registered (``models list``) → ``segment --model NAME`` loads base + adapter and
writes polygons; a run killed with SIGKILL resumes when the same command is given again.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import geopandas as gpd
import pytest
import rasterio
import torch
from shapely.geometry import box

from rs_reasoner.cli import main
from tests.training.grpo.helpers import save_base_and_sam

RASTER = "neon_osbs_rgb_10cm_utm17n.tif"


@pytest.fixture(scope="module")
def base_and_sam(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return save_base_and_sam(tmp_path_factory.mktemp("weights"))


def _examples(shared_data: Path, folder: Path) -> Path:
    with rasterio.open(shared_data / RASTER) as ds:
        left, bottom, right, _ = ds.bounds
        crs = ds.crs
    step = (right - left) / 4
    geoms = [box(left + k * step, bottom + 20, left + k * step + 4, bottom + 24)
             for k in (1, 2, 3)]  # fmt: skip
    path = folder / "trees.gpkg"
    gpd.GeoDataFrame({"q": ["dark tree crowns"] * 3}, geometry=geoms, crs=crs).to_file(path)
    return path


def _command(shared_data: Path, examples: Path, base: Path, sam: Path, steps: int) -> list[str]:
    return [
        "train-reasoner", "--examples", str(examples), "--raster", str(shared_data / RASTER),
        "--query-field", "q", "--name", "trees-tuned", "--base", str(base), "--sam", "tiny",
        "--sam-checkpoint", str(sam), "--negatives", "0", "--holdout-fraction", "0.3",
        "--group-size", "2", "--max-new-tokens", "6", "--steps", str(steps), "--lr", "1e-3",
        "--device", "cpu", "--train-option", "save_every=1",
    ]  # fmt: skip


def test_trained_adapter_is_registered_and_served(
    shared_data: Path, tmp_path: Path, base_and_sam, monkeypatch, capsys
) -> None:
    base, sam = base_and_sam
    monkeypatch.setenv("RS_REASONER_MODELS_DIR", str(tmp_path / "models"))
    examples = _examples(shared_data, tmp_path)
    assert main(_command(shared_data, examples, base, sam, steps=2)) == 0
    printed = capsys.readouterr().out
    assert "step 2/2: reward" in printed and "parse failures" in printed
    assert "model 'trees-tuned' registered (completed, 2 steps; held-out mean IoU" in printed

    folder = tmp_path / "models" / "trees-tuned"
    adapters = sorted(p.name for p in folder.glob("adapter-*"))
    assert adapters == ["adapter-000002"]
    assert (folder / "adapter-000002" / "adapter_model.safetensors").is_file()

    assert main(["models", "list"]) == 0
    listing = capsys.readouterr().out
    assert "trees-tuned" in listing and "fine-tuned here (GRPO)" in listing

    # The served prompter is base + adapter: its weights differ from the base's where
    # LoRA trained (the adapter is not a no-op) and equal elsewhere.
    from rs_reasoner.segmenters import registry

    segmenter = registry.create(registry.get_spec("trees-tuned"))
    served = segmenter.prompter.model.state_dict()
    from transformers import Qwen2_5_VLForConditionalGeneration

    plain = Qwen2_5_VLForConditionalGeneration.from_pretrained(base).state_dict()
    changed = [k for k in plain if not torch.equal(plain[k], served[k])]
    assert changed and all("proj" in k and "language_model" in k for k in changed)

    out = tmp_path / "answer.gpkg"
    with rasterio.open(shared_data / RASTER) as ds:
        left, bottom = ds.bounds.left, ds.bounds.bottom
    code = main([
        "segment", str(shared_data / RASTER), "--query", "dark tree crowns",
        "--mode", "reasoning", "--model", "trees-tuned", "--out", str(out), "--quiet",
        "--extent", str(left), str(bottom), str(left + 20), str(bottom + 20),
    ])  # fmt: skip
    assert code == 0
    polygons = gpd.read_file(out)
    assert len(polygons) >= 1 and set(polygons["label"]) == {"dark tree crowns"}


def test_killed_run_resumes_with_the_same_command(
    shared_data: Path, tmp_path: Path, base_and_sam
) -> None:
    base, sam = base_and_sam
    env = dict(os.environ, RS_REASONER_MODELS_DIR=str(tmp_path / "models"))
    examples = _examples(shared_data, tmp_path)
    command = [sys.executable, "-m", "rs_reasoner.cli",
               *_command(shared_data, examples, base, sam, steps=4)]  # fmt: skip
    state = tmp_path / "models" / "trees-tuned" / "resume.pt"
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 300
        while not state.exists():
            assert proc.poll() is None, proc.stdout.read().decode()
            assert time.monotonic() < deadline, "no resume state written"
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    done = int(torch.load(state, weights_only=False)["step"])
    assert 1 <= done < 4

    rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert f"resuming after step {done}" in rerun.stdout
    assert "registered (completed, 4 steps" in rerun.stdout
    history = torch.load(state, weights_only=False)["history"]
    assert [m["step"] for m in history] == [1, 2, 3, 4]
