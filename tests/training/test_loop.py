"""Training loop: kill -9 and resume, a real Dubai run, verifier, cancel, budget, errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from rs_reasoner.errors import JobCancelled
from rs_reasoner_training.checkpoint import load_checkpoint, load_trained_model
from rs_reasoner_training.data.folder import dubai_training_data
from rs_reasoner_training.errors import CheckpointError
from rs_reasoner_training.evaluation import evaluate
from rs_reasoner_training.loop import TrainConfig, train
from rs_reasoner_training.metrics import mean_iou
from rs_reasoner_training.models import UNet
from rs_reasoner_training.purify import ModelVerifier
from tests.training.helpers import CLASSES, run_job, synthetic_data

REPO = Path(__file__).resolve().parents[2]


def test_kill_9_then_resume_continues_from_the_last_checkpoint(tmp_path):
    killed, reference = tmp_path / "killed", tmp_path / "reference"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.training.helpers", str(killed), "6"],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while not (killed / "last.pt").exists():
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "no checkpoint within 60 s"
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert not (killed / "finished").exists()
    saved = load_checkpoint(killed / "last.pt")  # complete, loadable: atomic write
    epoch = saved["epoch"]
    assert 0 <= epoch < 5 and len(saved["history"]) == epoch + 1

    resumed = run_job(str(killed), epochs=6)
    assert resumed.start_epoch == epoch + 1
    assert [h["epoch"] for h in resumed.history] == list(range(6))
    assert resumed.history[: epoch + 1] == saved["history"]

    # Same result as a run that was never interrupted: nothing lost or repeated.
    straight = run_job(str(reference), epochs=6)
    a, b = load_checkpoint(killed / "last.pt"), load_checkpoint(reference / "last.pt")
    for key in ("model", "teacher"):
        assert all(torch.equal(a[key][k], b[key][k]) for k in a[key])
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in straight.history]


def test_short_dubai_run_lowers_the_loss_and_beats_the_untrained_model(shared_data, tmp_path):
    data = dubai_training_data(
        shared_data / "dubai",
        tile_size=64,
        downscale=6,
        max_images=10,
        val_fraction=0.3,
        label_budget=0.75,
        seed=0,
    )
    assert data.unlabelled is not None and data.val is not None
    torch.manual_seed(0)
    model = UNet(len(data.class_names), base_channels=8, depth=3)
    untrained = mean_iou(evaluate(model, data.val, 5, torch.device("cpu")))
    config = TrainConfig(
        str(tmp_path),
        epochs=5,
        steps_per_epoch=6,
        batch_size=8,
        lr=5e-3,
        unlabelled_batch_size=4,
        eval_teacher=False,
        progress_bar=False,
    )
    result = train(model, data, config, model_spec=model.spec())
    losses = [h["sup_loss"] for h in result.history]
    assert losses[-1] < losses[0]
    assert result.best_miou > untrained + 0.05, (untrained, [h["miou"] for h in result.history])
    assert set(result.history[-1]["iou"]) == set(data.class_names)
    served, names, meta = load_trained_model(result.best_path)
    assert names == data.class_names and meta["epoch"] == result.best_epoch
    assert mean_iou(evaluate(served, data.val, 5, torch.device("cpu"))) == pytest.approx(
        result.best_miou
    )


def test_verifier_purifies_and_learned_policy_runs(tmp_path):
    base = run_job(str(tmp_path / "sup"), epochs=2, semi_supervised=False)
    verifier_model, names, _ = load_trained_model(base.best_path)
    torch.manual_seed(1)
    model = UNet(len(CLASSES), base_channels=8, depth=2)
    config = TrainConfig(
        str(tmp_path / "semi"),
        epochs=2,
        steps_per_epoch=2,
        batch_size=2,
        grad_accum=2,
        selection="learned",
        progress_bar=False,
    )
    result = train(
        model,
        synthetic_data(),
        config,
        verifier=ModelVerifier(verifier_model, names),
        model_spec=model.spec(),
    )
    last = result.history[-1]
    # An untrained teacher is unsure everywhere: the verifier must have acted.
    assert result.history[0]["purified_fraction"] + result.history[0]["rectified_fraction"] > 0
    assert set(last["thresholds"]) == set(CLASSES)
    assert last["steps"] == 4  # 2 steps x 2 accumulated micro-batches
    assert load_checkpoint(result.last_path)["selector"]["values"].shape == (3, 6)


def test_cancel_raises_and_keeps_the_last_checkpoint(tmp_path):
    run_job(str(tmp_path), epochs=1)
    before = (tmp_path / "last.pt").read_bytes()
    cancel = threading.Event()
    cancel.set()
    torch.manual_seed(0)
    model = UNet(len(CLASSES), base_channels=8, depth=2)
    config = TrainConfig(
        str(tmp_path), epochs=3, steps_per_epoch=4, batch_size=2, progress_bar=False
    )
    with pytest.raises(JobCancelled):
        train(model, synthetic_data(), config, model_spec=model.spec(), cancel=cancel)
    assert (tmp_path / "last.pt").read_bytes() == before


def test_time_budget_stops_after_a_scored_epoch(tmp_path):
    stages = []
    torch.manual_seed(0)
    model = UNet(len(CLASSES), base_channels=8, depth=2)
    config = TrainConfig(
        str(tmp_path),
        epochs=50,
        steps_per_epoch=1000,
        batch_size=2,
        time_budget_s=0.5,
        progress_bar=False,
    )
    result = train(
        model,
        synthetic_data(),
        config,
        model_spec=model.spec(),
        callback=lambda stage, fraction, message: stages.append((stage, fraction)),
    )
    assert result.stopped == "time_budget"
    assert len(result.history) == 1 and result.history[0]["steps"] < 1000
    assert result.history[0]["miou"] is not None and result.best_path.exists()
    assert stages[-1] == ("done", 1.0) and any(s == "training" for s, _ in stages)

    # The cut epoch is not recorded as finished: a resume without a budget redoes it whole.
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == -1
    config = TrainConfig(str(tmp_path), epochs=1, steps_per_epoch=3, batch_size=2,
                         progress_bar=False)  # fmt: skip
    resumed = train(model, synthetic_data(), config, model_spec=model.spec())
    assert resumed.start_epoch == 0 and resumed.stopped == "completed"
    assert [h["steps"] for h in resumed.history] == [3]


def test_checkpoint_errors(tmp_path):
    run_job(str(tmp_path), epochs=1)
    model = UNet(2, base_channels=8, depth=2)
    data = synthetic_data()
    data.class_names = ["a", "b"]
    with pytest.raises(CheckpointError, match="other classes"):
        train(model, data, TrainConfig(str(tmp_path), progress_bar=False), model_spec=model.spec())
    best = tmp_path / "best.pt"
    read, mapped = load_checkpoint(best), load_checkpoint(best, mmap=True)
    assert mapped["class_names"] == read["class_names"] and mapped["metrics"] == read["metrics"]
    assert all(torch.equal(mapped["model"][k], v) for k, v in read["model"].items())
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"not a checkpoint")
    for mmap in (False, True):
        with pytest.raises(CheckpointError, match="cannot be read"):
            load_checkpoint(bad, mmap=mmap)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_trained_model(tmp_path / "missing.pt")


def test_learning_rate_warms_up_then_decays_with_steps_or_time_budget(tmp_path):
    from rs_reasoner_training.loop import TeacherStudentTask

    model = UNet(len(CLASSES), base_channels=8, depth=2)
    config = TrainConfig(str(tmp_path), epochs=10, steps_per_epoch=10, lr=1e-2,
                         warmup_fraction=0.1, progress_bar=False)  # fmt: skip
    task = TeacherStudentTask(model, synthetic_data(), config)
    lrs = [task.learning_rate(s) for s in range(100)]
    assert lrs[0] == pytest.approx(1e-3) and lrs[9] == pytest.approx(1e-2)  # 10 warm-up steps
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:], strict=False))  # then decays
    assert lrs[-1] < 1e-3
    # Half the time budget spent at step 20 of 100: the rate is where step 50 would put it.
    timed = TeacherStudentTask(model, synthetic_data(), TrainConfig(
        str(tmp_path), epochs=10, steps_per_epoch=10, lr=1e-2, warmup_fraction=0.1,
        time_budget_s=100.0, progress_bar=False))  # fmt: skip
    timed.elapsed = lambda: 50.0
    assert timed.learning_rate(20) == pytest.approx(1e-2 * 0.5**0.9)


def test_small_datasets_get_a_minimum_of_steps_per_epoch(tmp_path):
    from rs_reasoner_training.loop import TeacherStudentTask

    model = UNet(len(CLASSES), base_channels=8, depth=2)
    data = synthetic_data()  # 4 labelled tiles: one pass of batch 8 is a single step
    config = TrainConfig(str(tmp_path), semi_supervised=False, min_steps_per_epoch=20,
                         progress_bar=False)  # fmt: skip
    assert TeacherStudentTask(model, data, config).steps == 20
