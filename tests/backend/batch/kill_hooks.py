"""Unit functions for tests that kill the process running them (importable by workers)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from rs_reasoner.batch.worker import UnitReport, UnitTask, run_unit


def die_once(task: UnitTask) -> UnitReport:
    """Kill the worker the first time a unit with a ``die-<unit>`` marker runs."""
    marker = Path(task.out_dir) / f"die-{task.unit_id}"
    if marker.exists():
        marker.unlink()
        os.kill(os.getpid(), signal.SIGKILL)
    return run_unit(task)


def always_fail(task: UnitTask) -> UnitReport:
    raise ValueError(f"cannot do {task.unit_id}")
