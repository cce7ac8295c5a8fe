"""The fine-tune dialog's trainer choice (read from the real backend's schema) and the
options it remembers between QGIS sessions, in real QGIS."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from qgis.core import QgsApplication, QgsRasterLayer
from qgis.PyQt.QtCore import QEvent

from rs_reasoner_plugin.train_dialog import TrainDialog
from rs_reasoner_plugin.train_options import TRAINER_HELP
from rs_reasoner_plugin.train_task import TrainOutcome
from tests.plugin.conftest import BACKEND_PYTHON, REPO, backend_env
from tests.plugin.helpers import message_texts, parcels_memory_layer, wait_until

NEON = "neon_osbs_rgb_10cm_utm17n.tif"


@pytest.fixture
def neon_parcels(shared_data: Path, clean_project) -> tuple[Any, Any]:
    raster = QgsRasterLayer(str(shared_data / NEON), "NEON OSBS")
    parcels = parcels_memory_layer(shared_data / NEON)
    clean_project.addMapLayers([raster, parcels])
    return raster, parcels


def new_dialog(iface: Any) -> TrainDialog:
    return TrainDialog(iface, None, iface.mainWindow())


def close(d: TrainDialog) -> None:
    if d.task is not None:
        d.task.cancel()
        wait_until(lambda: d.task is None, 60, "the training task to stop")
    d.shutdown()
    d.deleteLater()
    QgsApplication.sendPostedEvents(None, QEvent.DeferredDelete)


def backend_trainers() -> tuple[list[str], Any]:
    """The backend's own schema of ``TrainRequest.model``: (values, default); ([], None)
    when it has no such field."""
    if not os.path.isfile(BACKEND_PYTHON):
        pytest.skip(f"backend interpreter {BACKEND_PYTHON} is missing (run 'make venv')")
    script = ("import json\nfrom rs_reasoner.schemas import TrainRequest\n"
              "print(json.dumps(TrainRequest.model_json_schema(mode='validation')))")
    out = subprocess.run([BACKEND_PYTHON, "-c", script], capture_output=True, text=True,
                         cwd=REPO, env=backend_env(), timeout=120, check=True).stdout
    schema = json.loads(out)
    field = schema.get("properties", {}).get("model")
    if field is None:
        return [], None
    refs = schema.get("$defs", {})
    node = refs.get(field["$ref"].rsplit("/", 1)[-1], {}) if "$ref" in field else field
    values = node.get("enum") or [v for option in node.get("anyOf", [])
                                  for v in option.get("enum", []) if v is not None]
    return [str(v) for v in values], field.get("default")


def test_the_trainers_are_the_backend_s(
    backend, iface, neon_parcels, clean_project, plugin_settings
) -> None:
    raster, parcels = neon_parcels
    want, default = backend_trainers()
    d = new_dialog(iface)
    try:
        d.set_layers(raster, parcels, "kind")
        d.name_edit.setText("trainers")
        choice = d.trainer_choice
        # Before the backend answered: its default only, left to the backend.
        assert choice.trainer() is None and "model" not in d.build_spec()[0].request()
        task = d.refresh_trainers()
        assert task is not None
        wait_until(lambda: d.schema_task is None, 30, "the backend's schema")
        listed = [choice.combo.itemData(i) for i in range(choice.combo.count())]
        if not want:  # a backend without the choice: nothing is sent for it
            assert listed == ["auto"] and not choice.combo.isEnabled()
            assert "model" not in d.build_spec()[0].request()
            return
        assert listed == want and choice.combo.isEnabled()
        assert choice.trainer() == default == "auto"
        assert choice.help_label.text() == TRAINER_HELP["auto"]
        assert d.build_spec()[0].request()["model"] == "auto"
        other = next(name for name in want if name != "auto")
        choice.combo.setCurrentIndex(choice.combo.findData(other))
        assert d.build_spec()[0].request()["model"] == other
        assert choice.help_label.text()
    finally:
        close(d)


def test_the_options_of_the_last_run_come_back_in_a_new_session(
    iface, neon_parcels, clean_project, plugin_settings
) -> None:
    raster, parcels = neon_parcels
    # No backend answers here: the run fails at once, after the options were taken.
    plugin_settings.backend_url = "http://127.0.0.1:9"
    plugin_settings.save()
    d = new_dialog(iface)
    try:
        d.set_layers(raster, parcels, "kind")
        d.name_edit.setText("remembered")
        d.trainer_choice.set_trainer("classical")
        d.val_spin.setValue(35)
        d.epochs_spin.setValue(7)
        d.budget_spin.setValue(60)
        d.tile_spin.setValue(128)
        d.time_spin.setValue(3)
        d.semi_check.setChecked(False)
        outcomes: list[TrainOutcome] = []
        d.trainingFinished.connect(outcomes.append)
        assert d.start_training() is not None, message_texts(iface)
        wait_until(lambda: bool(outcomes), 60, "the run to fail")
        assert outcomes[0].status == "failed"
    finally:
        close(d)
    again = new_dialog(iface)
    try:
        assert again.val_spin.value() == 35 and again.epochs_spin.value() == 7
        assert again.budget_spin.value() == 60 and again.tile_spin.value() == 128
        assert again.time_spin.value() == 3 and not again.semi_check.isChecked()
        # The trainer comes back once the backend lists it.
        again.trainer_choice.set_trainers(("auto", "classical", "unet"), "auto")
        assert again.trainer_choice.trainer() == "classical"
        assert again.trainer_choice.help_label.text() == TRAINER_HELP["classical"]
    finally:
        close(again)
