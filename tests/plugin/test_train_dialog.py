"""The "Fine-tune on labelled parcels" dialog in real QGIS: layers from the NEON sample and
parcels labelled from its pixels (GeoPackage, Shapefile, memory layer); the request it builds;
and, against a real backend, a short training run, cancel and refusals."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import pytest
from qgis.core import (
    Qgis,
    QgsApplication,
    QgsRasterLayer,
    QgsVectorLayer,
)
from qgis.PyQt.QtCore import QEvent

import rs_reasoner_plugin
from rs_reasoner_plugin.api_client import ApiClient
from rs_reasoner_plugin.parcels_export import EXPORT_LAYER, write_parcels
from rs_reasoner_plugin.train_dialog import TrainDialog
from rs_reasoner_plugin.train_task import TrainOutcome
from tests.plugin.helpers import (
    item_text,
    message_texts,
    parcels_memory_layer,
    wait_until,
    write_vector,
)

NEON = "neon_osbs_rgb_10cm_utm17n.tif"


@pytest.fixture
def neon(shared_data: Path, clean_project) -> QgsRasterLayer:
    layer = QgsRasterLayer(str(shared_data / NEON), "NEON OSBS")
    assert layer.isValid()
    clean_project.addMapLayer(layer)
    return layer


@pytest.fixture
def parcels_gpkg(neon, tmp_path: Path) -> Path:
    """A GeoPackage with two tables: ``parcels`` (kind: bright/dark) and ``other``."""
    path = tmp_path / "labels.gpkg"
    memory = parcels_memory_layer(Path(neon.source()))
    write_vector(memory, path, "other")
    write_vector(memory, path, "parcels")
    return path


@pytest.fixture
def dialog(iface, clean_project, plugin_settings) -> Any:
    d = TrainDialog(iface, None, iface.mainWindow())
    yield d
    stop(d)


def stop(d: TrainDialog) -> None:
    if d.task is not None:
        d.task.cancel()
        wait_until(lambda: d.task is None, 60, "the training task to stop")
    d.deleteLater()
    QgsApplication.sendPostedEvents(None, QEvent.DeferredDelete)


def unique(prefix: str) -> str:
    """Model names are per backend session; a fresh one never resumes another test's."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def run(d: TrainDialog, timeout: float = 300.0) -> TrainOutcome:
    outcomes: list[TrainOutcome] = []
    d.trainingFinished.connect(outcomes.append)
    task = d.start_training()
    assert task is not None, message_texts(d.iface)
    wait_until(lambda: bool(outcomes), timeout, "the training to end")
    d.trainingFinished.disconnect(outcomes.append)
    return outcomes[0]


def quick(d: TrainDialog, name: str, epochs: int = 1, semi_supervised: bool = True) -> None:
    """Tiny settings: 64 px tiles, few epochs, no verifier."""
    d.name_edit.setText(name)
    d.epochs_spin.setValue(epochs)
    d.tile_spin.setValue(64)
    d.semi_check.setChecked(semi_supervised)
    d.verifier_check.setChecked(False)


# -- the dialog and its request (no backend) -------------------------------------------------


def test_dialog_lists_layers_fields_classes_and_prefills_a_valid_name(
    dialog, neon, parcels_gpkg, clean_project
) -> None:
    parcels = QgsVectorLayer(f"{parcels_gpkg}|layername=parcels", "NEON Parcels (2024)", "ogr")
    points = QgsVectorLayer("Point?crs=EPSG:32617", "points", "memory")
    assert parcels.isValid()
    clean_project.addMapLayers([parcels, points])
    rasters = [dialog.raster_combo.layer(i) for i in range(dialog.raster_combo.count())]
    polygons = [dialog.parcels_combo.layer(i) for i in range(dialog.parcels_combo.count())]
    assert rasters == [neon]
    assert polygons == [parcels]  # not the point layer
    dialog.set_layers(neon, parcels)
    fields = [dialog.field_combo.itemText(i) for i in range(dialog.field_combo.count())]
    assert "kind" in fields and "note" in fields
    assert dialog.name_edit.text() == "neon-parcels-2024"
    dialog.field_combo.setField("kind")
    assert dialog.classes_label.text() == "2 classes: bright, dark"
    dialog.field_combo.setField("note")  # 18 distinct numbers, in numeric order
    assert dialog.classes_label.text().startswith("18 classes: 0, 1, 2, ")
    # A name the user typed stays when the parcels layer changes.
    dialog.name_edit.setText("mine")
    dialog.name_edit.textEdited.emit("mine")
    memory = parcels_memory_layer(Path(neon.source()), name="other parcels")
    clean_project.addMapLayer(memory)
    dialog.parcels_combo.setLayer(memory)
    assert dialog.name_edit.text() == "mine"
    # The verifier only matters with semi-supervised training.
    dialog.semi_check.setChecked(False)
    assert not dialog.verifier_check.isEnabled()


def test_geopackage_table_is_sent_by_path_with_its_layer_name(
    dialog, neon, parcels_gpkg, clean_project, plugin_settings
) -> None:
    parcels = QgsVectorLayer(f"{parcels_gpkg}|layername=parcels", "parcels", "ogr")
    clean_project.addMapLayer(parcels)
    dialog.set_layers(neon, parcels, "kind")
    dialog.name_edit.setText("neon-kind")
    dialog.budget_spin.setValue(50)
    dialog.epochs_spin.setValue(3)
    dialog.tile_spin.setValue(64)
    dialog.verifier_check.setChecked(False)
    spec, warnings = dialog.build_spec()
    assert warnings == []
    assert spec.raster_export is None and spec.parcels_export is None
    assert spec.class_names == ("bright", "dark")
    assert spec.request() == {
        "raster": os.path.abspath(neon.source()),  # as given: ../shared may be a link
        "labels": os.path.abspath(parcels_gpkg),
        "layer": "parcels",
        "class_field": "kind",
        "name": "neon-kind",
        "label_budget": 0.5,
        "epochs": 3,
        "semi_supervised": True,
        "verifier": False,
        "tile_size": 64,
        "val_fraction": 0.2,
    }
    # Tables opened by index are named too.
    for index, table in ((0, "other"), (1, "parcels")):
        by_index = QgsVectorLayer(f"{parcels_gpkg}|layerid={index}", "by index", "ogr")
        assert by_index.isValid()
        clean_project.addMapLayer(by_index)
        dialog.parcels_combo.setLayer(by_index)
        dialog.field_combo.setField("kind")
        spec, _ = dialog.build_spec()
        assert (spec.labels_path, spec.labels_layer) == (os.path.abspath(parcels_gpkg), table)
    # A Shapefile is one layer: path only.
    shp = write_vector(parcels_memory_layer(Path(neon.source())), parcels_gpkg.parent / "p.shp",
                       "p", "ESRI Shapefile")
    shp_layer = QgsVectorLayer(str(shp), "shp", "ogr")
    clean_project.addMapLayer(shp_layer)
    dialog.parcels_combo.setLayer(shp_layer)
    dialog.field_combo.setField("kind")
    spec, _ = dialog.build_spec()
    request = spec.request()
    assert request["labels"] == os.path.abspath(shp) and "layer" not in request
    # "Upload every raster" sends the raster through the upload path instead.
    plugin_settings.always_upload = True
    spec, warnings = dialog.build_spec(plugin_settings)
    assert spec.raster_path is None and spec.raster_export is not None
    assert any("works only with a backend running here" in w for w in warnings), warnings
    assert (spec.raster_export.width, spec.raster_export.height) == (400, 400)


def feature_summary(layer: QgsVectorLayer) -> list[tuple[str, float]]:
    return sorted((str(f["kind"]), round(f.geometry().area(), 3)) for f in layer.getFeatures())


def test_memory_layer_subset_and_selection_are_exported(
    dialog, neon, parcels_gpkg, clean_project, tmp_path
) -> None:
    memory = parcels_memory_layer(Path(neon.source()))
    clean_project.addMapLayer(memory)
    dialog.set_layers(neon, memory, "kind")
    spec, _ = dialog.build_spec()
    assert spec.labels_path is None and spec.parcels_export is not None
    assert spec.raster_path == os.path.abspath(neon.source())
    out = tmp_path / "memory.gpkg"
    assert write_parcels(spec.parcels_export, str(out)) == 18
    written = QgsVectorLayer(f"{out}|layername={EXPORT_LAYER}", "written", "ogr")
    assert written.isValid() and written.crs().authid() == "EPSG:32617"
    assert written.fields().names() == ["fid", "kind"]  # only the class field
    assert feature_summary(written) == feature_summary(memory)
    assert spec.request(labels=str(out), layer=EXPORT_LAYER)["labels"] == str(out)
    assert not list(tmp_path.glob("*.part*"))

    # A subset filter on a file layer: the file holds more parcels than the layer shows.
    filtered = QgsVectorLayer(f"{parcels_gpkg}|layername=parcels", "filtered", "ogr")
    filtered.setSubsetString("\"note\" < 10")
    clean_project.addMapLayer(filtered)
    dialog.parcels_combo.setLayer(filtered)
    dialog.field_combo.setField("kind")
    spec, _ = dialog.build_spec()
    assert spec.parcels_export is not None
    out = tmp_path / "subset.gpkg"
    assert write_parcels(spec.parcels_export, str(out)) == 10

    # Only the selected parcels.
    memory.selectByExpression("\"note\" IN (0, 1, 2, 3, 4, 5)")
    dialog.parcels_combo.setLayer(memory)
    dialog.field_combo.setField("kind")
    dialog.selected_check.setChecked(True)
    want = sorted({f["kind"] for f in memory.selectedFeatures()})
    assert dialog.classes_label.text() == f"{len(want)} class{'es' * (len(want) > 1)}: " + (
        ", ".join(want))
    spec, _ = dialog.build_spec()
    out = tmp_path / "selected.gpkg"
    assert write_parcels(spec.parcels_export, str(out)) == 6
    written = QgsVectorLayer(f"{out}|layername={EXPORT_LAYER}", "written", "ogr")
    selected = sorted((str(f["kind"]), round(f.geometry().area(), 3))
                      for f in memory.selectedFeatures())
    assert feature_summary(written) == selected
    # The class summary follows the selection on the map.
    memory.selectByExpression("\"kind\" = 'dark'")
    assert dialog.classes_label.text() == "1 class: dark"


def test_missing_or_wrong_inputs_are_refused_with_what_to_fix(
    iface, dialog, neon, clean_project
) -> None:
    def refused() -> str:
        iface.messageBar().clearWidgets()
        assert dialog.start_training() is None
        texts = [i.text() for i in iface.messageBar().items() if i.level() == Qgis.Warning]
        assert len(texts) == 1, message_texts(iface)
        return texts[0]

    assert "polygon layer with the labelled parcels" in refused()
    memory = parcels_memory_layer(Path(neon.source()), name="Parcels")
    clean_project.addMapLayer(memory)
    dialog.set_layers(neon, memory)
    dialog.field_combo.setField("")
    assert "field of layer 'Parcels'" in refused()
    dialog.field_combo.setField("kind")
    dialog.selected_check.setChecked(True)
    assert "untick 'Only selected parcels'" in refused()
    dialog.selected_check.setChecked(False)
    dialog.name_edit.setText("My Model!")
    assert "1–40 lowercase letters" in refused()
    # With the backend's model list known, a built-in name is refused before sending.
    dialog.known_models = lambda: [{"name": "test-colour", "trained": False},
                                   {"name": "old-run", "trained": True, "classes": ["a"]}]
    dialog.name_edit.setText("test-colour")
    assert "built-in model" in refused()
    dialog.name_edit.setText("old-run")
    assert "an interrupted run resumes from its last checkpoint" in dialog.name_note.text()
    # One class only: a warning, not a refusal.
    memory.selectByExpression("\"kind\" = 'dark'")
    dialog.selected_check.setChecked(True)
    spec, warnings = dialog.build_spec()
    assert spec.class_names == ("dark",) and len(warnings) == 1
    assert "only one class ('dark')" in warnings[0]
    assert dialog.task is None


# -- against the backend ---------------------------------------------------------------------


@pytest.fixture
def trainer(backend) -> ApiClient:
    """A client of the session's backend (to check jobs independently of the dialog)."""
    return ApiClient(backend.url, backend.token)


def test_training_run_then_the_dock_lists_the_model(
    trainer, iface, neon, parcels_gpkg, clean_project, plugin_settings
) -> None:
    plugin = rs_reasoner_plugin.classFactory(iface)
    plugin.initGui()
    try:
        dialog = plugin.show_train_dialog()
        assert dialog.isVisible()
        parcels = QgsVectorLayer(f"{parcels_gpkg}|layername=parcels", "parcels", "ogr")
        clean_project.addMapLayer(parcels)
        dialog.set_layers(neon, parcels, "kind")
        name = unique("neon")
        quick(dialog, name, epochs=1, semi_supervised=False)  # the quickest real run
        outcome = run(dialog)
        assert outcome.status == "succeeded", (outcome.error, message_texts(iface))
        result = outcome.result
        assert result["model"] == name and result["classes"] == ["bright", "dark"]
        assert 0.0 <= result["best_miou"] <= 1.0
        # The default model choice (auto) serves the best candidate on validation: the
        # classical learner (no epochs) or the 1-epoch U-Net.
        assert result["epochs_run"] in (0, 1)
        assert outcome.job["kind"] == "train" and outcome.request["layer"] == "parcels"
        assert outcome.request["semi_supervised"] is False
        assert "epoch 1/1" in outcome.last_epoch
        assert f"Model '{name}' trained: best mIoU {result['best_miou']:.3f}" in (
            dialog.epoch_label.text())
        assert any("best mIoU" in t for t in message_texts(iface))
        assert dialog.train_button.isEnabled() and dialog.progress.value() == 100

        # The dock lists the new model; choosing it fills the empty query with its classes.
        dock = plugin.dock
        wait_until(lambda: dock.model_combo.findData(name) >= 0 and dock.status_task is None,
                   30, "the dock to list the new model")
        label = dock.model_combo.itemText(dock.model_combo.findData(name))
        assert label == f"{name} (fine-tuned: bright, dark)"
        dock.set_query("")
        dock.set_mode("reasoning")
        assert dock.select_model(name)
        assert dock.query_combo.currentText() == "bright, dark"
        assert dock.mode_combo.currentData() == "open_vocabulary"
        assert dock.selected_model() == name
        # A refresh of the list keeps the choice by name, also a typed one.
        dock.model_combo.setEditText(name)
        dock._set_models(dock.models())
        assert dock.selected_model() == name and dock.model_combo.currentData() == name
        dock.model_combo.setEditText("not-trained-yet")
        dock._set_models(dock.models())
        assert dock.selected_model() == "not-trained-yet"
        assert dock.select_model(name)

        # A run of the dock now asks for that model (its segmentation is the backend's).
        dock.layer_combo.setLayer(neon)
        dock.set_area("layer")
        spec = dock.build_spec()
        request = spec.params.to_request(raster=spec.raster_path)
        assert request["model"] == name and request["query"] == "bright, dark"
    finally:
        dialog = plugin.train_dialog
        if dialog is not None and dialog.task is not None:
            dialog.task.cancel()
            wait_until(lambda: dialog.task is None, 60, "the training task to stop")
        plugin.unload()
        QgsApplication.sendPostedEvents(None, QEvent.DeferredDelete)


def test_cancel_stops_training_of_an_uploaded_raster_and_exported_parcels(
    trainer, dialog, iface, neon, clean_project
) -> None:
    from osgeo import gdal

    mem_path = f"/vsimem/rs_reasoner_train_{uuid.uuid4().hex}.tif"
    gdal.Translate(mem_path, neon.source())
    try:
        raster = QgsRasterLayer(mem_path, "in memory")
        assert raster.isValid()
        memory = parcels_memory_layer(Path(neon.source()))
        clean_project.addMapLayers([raster, memory])
        dialog.set_layers(raster, memory, "kind")
        quick(dialog, unique("cancel"), epochs=500)
        outcomes: list[TrainOutcome] = []
        dialog.trainingFinished.connect(outcomes.append)
        task = dialog.start_training()
        assert task is not None, message_texts(iface)
        assert dialog.cancel_button.isEnabled() and not dialog.train_button.isEnabled()
        wait_until(lambda: bool(outcomes) or dialog.stage_label.text() == "training",
                   90, "the first training step")
        assert not outcomes, (outcomes[0].error if outcomes else None)
        dialog.cancel_button.click()
        wait_until(lambda: bool(outcomes), 60, "the cancelled training to end")
    finally:
        gdal.Unlink(mem_path)
    outcome = outcomes[0]
    assert outcome.status == "cancelled", outcome.error
    assert "upload_id" in outcome.request and "raster" not in outcome.request
    assert outcome.request["layer"] == EXPORT_LAYER
    info = trainer.job(outcome.job_id)
    assert info["status"] == "cancelled", info
    assert info["progress"] < 0.5
    assert any("cancelled" in t for t in message_texts(iface))
    assert dialog.train_button.isEnabled() and not dialog.cancel_button.isEnabled()


def test_exported_parcels_stay_while_the_job_may_still_be_reading_them(
    trainer, dialog, neon, clean_project, monkeypatch, tmp_path
) -> None:
    import tempfile

    from rs_reasoner_plugin import train_task
    from rs_reasoner_plugin.api_client import BackendError

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the task exports

    def connection_lost(client: ApiClient, job_id: str, *args: Any, **kwargs: Any) -> dict:
        client.cancel(job_id)  # tidy up the real job; the task cannot know it stopped
        raise BackendError("The connection to the backend was lost.")

    monkeypatch.setattr(train_task, "poll_job", connection_lost)
    memory = parcels_memory_layer(Path(neon.source()))
    clean_project.addMapLayer(memory)
    dialog.set_layers(neon, memory, "kind")
    quick(dialog, unique("lost"), epochs=1)
    outcomes: list[TrainOutcome] = []
    dialog.trainingFinished.connect(outcomes.append)
    assert dialog.start_training() is not None
    wait_until(lambda: bool(outcomes), 60, "the task to end")
    assert outcomes[0].status == "failed" and outcomes[0].job_id
    # The backend may still be reading the exported parcels: they are not deleted.
    assert len(list(tmp_path.glob("rs_reasoner_train_*/parcels.gpkg"))) == 1


def test_backend_refusals_are_message_bar_errors(
    trainer, dialog, iface, neon, parcels_gpkg, clean_project
) -> None:
    parcels = QgsVectorLayer(f"{parcels_gpkg}|layername=parcels", "parcels", "ogr")
    clean_project.addMapLayer(parcels)
    dialog.set_layers(neon, parcels, "kind")
    quick(dialog, "test-colour")  # a built-in model's name (the dialog does not know it)
    outcome = run(dialog, 60)
    assert outcome.status == "failed" and outcome.error is not None
    assert outcome.error.status is not None and 400 <= outcome.error.status < 500
    errors = [item_text(i) for i in iface.messageBar().items() if i.level() == Qgis.Critical]
    assert errors == [str(outcome.error)], message_texts(iface)
    assert "test-colour" in errors[0]
    assert dialog.stage_label.text() == "failed" and dialog.train_button.isEnabled()

    # One class only: the dialog warns, the backend refuses and says what to add.
    iface.messageBar().clearWidgets()
    parcels.selectByExpression("\"kind\" = 'bright'")
    dialog.selected_check.setChecked(True)
    quick(dialog, unique("one-class"))
    outcome = run(dialog, 60)
    assert outcome.status == "failed", outcome
    levels = {i.level(): item_text(i) for i in iface.messageBar().items()}
    assert "only one class ('bright')" in levels[Qgis.Warning]
    assert str(outcome.error) == levels[Qgis.Critical]
    assert "class" in str(outcome.error).lower()
