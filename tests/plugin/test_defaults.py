"""Every default has one value everywhere: the backend's schemas, the CLI's --help, the
plugin's params dataclasses, the dock's initial widgets, the Processing algorithm's
parameters and the fine-tune dialog's initial widgets.

The backend side runs in its own interpreter (the plugin never imports it)."""

from __future__ import annotations

import json
import os
import re
import subprocess
from typing import Any

import pytest
from qgis.core import QgsApplication
from qgis.PyQt.QtCore import QEvent

from rs_reasoner_plugin.dock import SegmentDock
from rs_reasoner_plugin.params import SegmentOptions, TrainParams, bounds, defaults
from rs_reasoner_plugin.processing.segment_algorithm import SegmentByDescriptionAlgorithm
from rs_reasoner_plugin.settings import PluginSettings
from rs_reasoner_plugin.tasks import BackendConfig
from rs_reasoner_plugin.train_dialog import TrainDialog
from tests.plugin.conftest import BACKEND_PYTHON, REPO, backend_env

_SCHEMA_SCRIPT = """
import json
from rs_reasoner.schemas import RunOptions, SegmentOptions, TrainRequest, defaults

def limits(model):
    out = {}
    for name, info in model.model_fields.items():
        low = high = None
        for m in info.metadata:
            low = getattr(m, "ge", getattr(m, "gt", low))
            high = getattr(m, "le", getattr(m, "lt", high))
        out[name] = [low, high]
    return out

print(json.dumps({
    "segment": defaults(SegmentOptions), "train": defaults(TrainRequest),
    "run": defaults(RunOptions),
    "segment_bounds": limits(SegmentOptions), "train_bounds": limits(TrainRequest),
}))
"""

#: The plugin's options shared with the backend, for segmentation and training.
SEGMENT_SHARED = ("score_threshold", "min_area", "simplify")
TRAIN_SHARED = ("label_budget", "epochs", "semi_supervised", "verifier", "tile_size",
                "time_budget_s", "val_fraction")


def _backend(*args: str) -> str:
    if not os.path.isfile(BACKEND_PYTHON):
        pytest.skip(f"backend interpreter {BACKEND_PYTHON} is missing (run 'make venv')")
    proc = subprocess.run([BACKEND_PYTHON, *args], capture_output=True, text=True, cwd=REPO,
                          env=backend_env(), timeout=120, check=True)
    return proc.stdout


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return json.loads(_backend("-c", _SCHEMA_SCRIPT))


def help_defaults(command: str) -> dict[str, str]:
    """``--flag-name`` → the text of its ``(default: X)`` in ``rs-reasoner COMMAND --help``."""
    text = _backend("-m", "rs_reasoner.cli", command, "--help")
    entries: list[list[str]] = []
    for line in text.split("options:", 1)[1].splitlines():
        if re.match(r"^  -", line):  # a new option; its help may wrap onto indented lines
            entries.append([line])
        elif entries and line.startswith("   "):
            entries[-1].append(line)
    out = {}
    for entry in entries:
        joined = " ".join(part.strip() for part in entry)
        flag = re.search(r"--[a-z-]+", joined)
        found = re.search(r"\(default: ([^)]*)\)", joined)
        if flag and found:
            out[flag.group(0)] = found.group(1)
    return out


@pytest.fixture
def dock(iface, clean_project, plugin_settings) -> Any:
    d = SegmentDock(iface, None, iface.mainWindow())
    yield d
    d.shutdown()
    d.deleteLater()
    QgsApplication.sendPostedEvents(None, QEvent.DeferredDelete)


@pytest.fixture
def dialog(iface, clean_project, plugin_settings) -> Any:
    d = TrainDialog(iface, None, iface.mainWindow())
    yield d
    d.shutdown()
    d.deleteLater()
    QgsApplication.sendPostedEvents(None, QEvent.DeferredDelete)


def test_segment_defaults_agree_everywhere(schema, dock, qgis_app) -> None:
    cli = help_defaults("segment")
    algorithm = SegmentByDescriptionAlgorithm()
    algorithm.initAlgorithm()
    processing = {
        "score_threshold": algorithm.parameterDefinition("SCORE_THRESHOLD").defaultValue(),
        "min_area": algorithm.parameterDefinition("MIN_AREA").defaultValue(),
        "simplify": algorithm.parameterDefinition("SIMPLIFY").defaultValue(),
    }
    # The dock starts minimum area and simplification "by resolution" (derived per run);
    # its other widgets start at the shared default.
    widgets = {"score_threshold": dock.score_spin.value()}
    plugin = defaults(SegmentOptions)
    for name in SEGMENT_SHARED:
        values = {
            "schema": schema["segment"][name],
            "cli": float(cli["--" + name.replace("_", "-")]),
            "plugin": plugin[name],
            "processing": processing[name],
        }
        if name in widgets:
            values["dock"] = widgets[name]
        assert len(set(values.values())) == 1, (name, values)
    # What the plugin leaves to the backend, it sends nothing for.
    assert dock.resolution_spin.value() == 0 and dock.tile_spin.value() == 0
    assert plugin["tile_size"] is None and plugin["overlap"] is None
    assert dock.choices().score_threshold == schema["segment"]["score_threshold"]
    assert dock.choices().min_area is None and dock.choices().simplify is None


def test_segment_bounds_agree(schema, dock) -> None:
    for name in ("score_threshold", "tile_size"):
        assert list(bounds(SegmentOptions, name)) == schema["segment_bounds"][name], name
    low, high = schema["segment_bounds"]["score_threshold"]
    assert (dock.score_spin.minimum(), dock.score_spin.maximum()) == (low, high)
    assert dock.tile_spin.maximum() == schema["segment_bounds"]["tile_size"][1]
    algorithm = SegmentByDescriptionAlgorithm()
    algorithm.initAlgorithm()
    param = algorithm.parameterDefinition("SCORE_THRESHOLD")
    assert (param.minimum(), param.maximum()) == (low, high)


def test_train_defaults_agree_everywhere(schema, dialog) -> None:
    cli = help_defaults("train")
    widgets = {
        "label_budget": dialog.budget_spin.value() / 100,
        "epochs": dialog.epochs_spin.value(),
        "semi_supervised": dialog.semi_check.isChecked(),
        "verifier": dialog.verifier_check.isChecked(),
        "tile_size": dialog.tile_spin.value(),
        "time_budget_s": dialog.time_spin.value() * 60.0 or None,
        "val_fraction": dialog.val_spin.value() / 100.0,
    }
    plugin = defaults(TrainParams)
    for name in TRAIN_SHARED:
        assert schema["train"][name] == plugin[name] == widgets[name], name
        flag = "--" + name.replace("_", "-")
        if flag in cli:
            assert float(cli[flag]) == schema["train"][name], name
    # The flags with a value to show show the schema's.
    assert {"--label-budget", "--epochs", "--tile-size", "--val-fraction", "--seed"} <= set(cli)
    # The trainer the dialog shows before the backend lists its trainers is the backend's
    # default (a backend without the choice is sent none).
    assert dialog.trainer_choice.combo.currentData() == plugin["model"]
    assert schema["train"].get("model", plugin["model"]) == plugin["model"]


def test_train_bounds_agree(schema, dialog) -> None:
    for name in ("label_budget", "epochs", "tile_size", "val_fraction"):
        assert list(bounds(TrainParams, name)) == schema["train_bounds"][name], name
    assert (dialog.epochs_spin.minimum(), dialog.epochs_spin.maximum()) == tuple(
        schema["train_bounds"]["epochs"])
    assert (dialog.tile_spin.minimum(), dialog.tile_spin.maximum()) == tuple(
        schema["train_bounds"]["tile_size"])
    assert dialog.budget_spin.maximum() == 100 * schema["train_bounds"]["label_budget"][1]
    # The backend wants the validation fraction below 1 (lt), 0 allowed (no validation).
    low, high = schema["train_bounds"]["val_fraction"]
    assert dialog.val_spin.minimum() == 100 * low and dialog.val_spin.maximum() < 100 * high


def test_the_device_of_a_started_backend_defaults_to_the_backend_s(schema, qgis_app) -> None:
    assert PluginSettings().device == BackendConfig().device == schema["run"]["device"]
