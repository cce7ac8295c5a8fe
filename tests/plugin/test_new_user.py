"""What a new user meets on a first run, on a backend with only the built-in models (no
weights anywhere): the run that must work, errors that can be read, sensible defaults that
are remembered, results that explain themselves, and the help around every control."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from osgeo import ogr
from qgis.core import (
    Qgis,
    QgsApplication,
    QgsCoordinateReferenceSystem,
    QgsFeature,
    QgsGeometry,
    QgsProject,
    QgsRasterLayer,
    QgsRectangle,
    QgsVectorLayer,
)
from qgis.PyQt.QtCore import QEvent, Qt
from qgis.PyQt.QtGui import QColor, QFontMetrics
from qgis.PyQt.QtWidgets import (
    QAbstractButton,
    QAbstractSpinBox,
    QApplication,
    QComboBox,
    QLineEdit,
    QPushButton,
    QWidget,
)

import tests.plugin.conftest as plugin_conftest
from rs_reasoner_plugin.backend_process import BackendProcess
from rs_reasoner_plugin.dock import SegmentDock
from rs_reasoner_plugin.error_dialog import ErrorDetailsDialog
from rs_reasoner_plugin.error_report import SUMMARY_MAX
from rs_reasoner_plugin.export import export_layer
from rs_reasoner_plugin.help import help_url
from rs_reasoner_plugin.messages import DETAILS_BUTTON
from rs_reasoner_plugin.results import GROUP_NAME, style_by_label
from rs_reasoner_plugin.settings import PluginSettings
from rs_reasoner_plugin.tasks import RunOutcome
from rs_reasoner_plugin.train_dialog import TrainDialog
from tests.plugin.conftest import BACKEND_PYTHON, REPO, Backend, start_backend
from tests.plugin.helpers import (
    item_text,
    message_texts,
    parcels_memory_layer,
    wait_until,
    write_vector,
)

DATA = REPO.parent / "shared" / "data"
NEON = REPO / "resources" / "sample_data" / "neon_osbs_rgb_10cm_utm17n.tif"
PAN = DATA / "spacenet_atlanta_pan_utm16n.tif"


@pytest.fixture(scope="module")
def builtin_backend(qgis_app, tmp_path_factory) -> Any:  # noqa: ARG001
    """A backend with the built-in models only (as installed for a user): clip-openvocab is
    the highest-priority open-vocabulary model and its weights are nowhere."""
    folder = tmp_path_factory.mktemp("builtin_backend")
    with_tests = plugin_conftest.backend_env

    def env() -> dict[str, str]:
        out = with_tests()
        out.pop("RS_REASONER_SEGMENTER_MODULES", None)
        return out

    plugin_conftest.backend_env = env
    try:
        b = start_backend(folder / "backend.json", folder / "backend.log")
    finally:
        plugin_conftest.backend_env = with_tests
    yield b
    b.stop()


def close_widget(widget: Any) -> None:
    if getattr(widget, "task", None) is not None:
        widget.task.cancel()
        wait_until(lambda: widget.task is None, 60, "the task to stop")
    widget.shutdown()
    widget.deleteLater()
    QgsApplication.sendPostedEvents(None, QEvent.DeferredDelete)


@pytest.fixture
def settings(plugin_settings, builtin_backend: Backend) -> PluginSettings:
    plugin_settings.backend_url = builtin_backend.url
    plugin_settings.token = builtin_backend.token
    plugin_settings.save()
    return plugin_settings


@pytest.fixture
def dock(iface, clean_project, settings) -> Any:  # noqa: ARG001
    d = SegmentDock(iface, None, iface.mainWindow())
    yield d
    close_widget(d)


def add_raster(project: QgsProject, path: Path, name: str) -> QgsRasterLayer:
    layer = QgsRasterLayer(str(path), name)
    assert layer.isValid(), path
    project.addMapLayer(layer)
    return layer


def run(dock: SegmentDock, timeout: float = 120.0) -> RunOutcome:
    outcomes: list[RunOutcome] = []
    dock.runFinished.connect(outcomes.append)
    assert dock.start_run() is not None, message_texts(dock.iface)
    wait_until(lambda: bool(outcomes), timeout, "the run to end")
    return outcomes[0]


def result_layers(project: QgsProject) -> list[QgsVectorLayer]:
    group = project.layerTreeRoot().findGroup(GROUP_NAME)
    return [n.layer() for n in group.findLayers()] if group is not None else []


def critical_items(iface) -> list[Any]:  # noqa: ANN001
    return [i for i in iface.messageBar().items() if i.level() == Qgis.Critical]


# -- 1. the first natural run works, and what was chosen is remembered ---------------------


def test_first_run_in_auto_mode_answers_with_a_model_whose_weights_are_present(
    dock, clean_project, iface
) -> None:
    neon = add_raster(clean_project, NEON, "neon")
    dock.layer_combo.setLayer(neon)
    dock.set_query("trees")
    dock.set_mode("auto")
    dock.set_area("layer")
    assert dock.selected_model() == ""  # the default for the mode
    outcome = run(dock)
    assert outcome.status == "succeeded", (outcome.error, message_texts(iface))
    (layer,) = result_layers(clean_project)
    # The layer says which model answered: clip-openvocab has no weights, index-baseline runs.
    assert re.fullmatch(r"trees — index-baseline — \d\d:\d\d:\d\d", layer.name()), layer.name()
    assert {f["model"] for f in layer.getFeatures()} == {"index-baseline"}
    assert any(layer.name() in t for t in message_texts(iface)), message_texts(iface)


def test_model_mode_and_advanced_options_are_remembered(dock, iface, clean_project) -> None:
    neon = add_raster(clean_project, NEON, "neon")
    dock.layer_combo.setLayer(neon)
    dock.set_query("trees")
    dock.set_mode("open_vocabulary")
    dock.model_combo.setEditText("index-baseline")
    dock.bands_edit.setText("1 2 3")
    dock.score_spin.setValue(0.35)
    dock.min_area_spin.setValue(1.5)
    dock.per_class_check.setChecked(True)
    dock.set_area("layer")
    assert run(dock).status == "succeeded"
    later = SegmentDock(iface, None, iface.mainWindow())  # the next QGIS session's dock
    try:
        assert later.selected_model() == "index-baseline"
        assert later.mode_combo.currentData() == "open_vocabulary"
        assert later.bands_edit.text() == "1 2 3"
        assert later.score_spin.value() == pytest.approx(0.35)
        assert later.min_area_spin.value() == pytest.approx(1.5)
        assert later.choices().simplify is None  # left "by resolution", stays so
        assert later.per_class_check.isChecked()
    finally:
        close_widget(later)


# -- 2. errors people can read -------------------------------------------------------------


def test_missing_weights_error_is_one_line_with_details_and_the_venv_command(
    dock, settings, clean_project, iface
) -> None:
    settings.python_path = "/opt/rs-reasoner/venv/bin/python"
    settings.auto_start = True
    settings.save()
    neon = add_raster(clean_project, NEON, "neon")
    dock.layer_combo.setLayer(neon)
    dock.set_query("trees")
    dock.set_area("layer")
    dock.model_combo.setEditText("clip-openvocab")
    outcome = run(dock)
    assert outcome.status == "failed"
    (item,) = critical_items(iface)
    # The bar is one line: the first sentence, the rest behind "Details…".
    assert "\n" not in item.text() and len(item.text()) <= SUMMARY_MAX, item.text()
    assert "clip-openvocab" in item.text()
    assert "Details" in dock.stage_label.text()
    button = item.findChild(QPushButton, DETAILS_BUTTON)
    assert button is not None
    button.click()
    dialogs = [w for w in QApplication.topLevelWidgets()
               if isinstance(w, ErrorDetailsDialog) and w.isVisible()]
    assert len(dialogs) == 1
    dialog = dialogs[0]
    try:
        text = dialog.text_edit.toPlainText()
        assert "/opt/rs-reasoner/venv/bin/rs-reasoner models pull clip-openvocab" in text, text
        assert "RS_REASONER_WEIGHTS_" in text
        assert "Settings ▸ Options ▸ System ▸ Environment" in text  # where an auto-started
        dialog.copy_button.click()                                   # backend reads it
        assert QApplication.clipboard().text() == text
    finally:
        dialog.close()
        dialog.deleteLater()
    # The next failure replaces this entry instead of stacking under it.
    assert run(dock).status == "failed"
    assert len(critical_items(iface)) == 1, message_texts(iface)


# -- 3. fine-tune dialog defaults ----------------------------------------------------------


@pytest.fixture
def parcels_gpkg(tmp_path) -> Path:
    return write_vector(parcels_memory_layer(NEON), tmp_path / "parcels.gpkg", "parcels")


def test_fine_tune_dialog_picks_the_raster_under_the_parcels_and_their_class_field(
    iface, clean_project, settings, squares_tif, parcels_gpkg  # noqa: ARG001
) -> None:
    add_raster(clean_project, squares_tif, "elsewhere")  # first in the project, not under
    neon = add_raster(clean_project, NEON, "neon")
    parcels = QgsVectorLayer(f"{parcels_gpkg}|layername=parcels", "parcels", "ogr")
    assert "fid" in parcels.fields().names()  # the GeoPackage's id comes first
    clean_project.addMapLayer(parcels)
    dialog = TrainDialog(iface, None, iface.mainWindow())
    try:
        dialog.parcels_combo.setLayer(parcels)
        assert dialog.raster_combo.currentLayer() is neon
        assert dialog.field_combo.currentField() == "kind"
        # No validation: every parcel trains (few parcels), the request says so.
        dialog.val_spin.setValue(0)
        spec, _ = dialog.build_spec()
        assert spec.params.val_fraction == 0.0
        assert spec.params.to_request(labels="x.gpkg", raster="r.tif")["val_fraction"] == 0.0
        # A raster beside the parcels is refused naming the one under them (not the CRS).
        dialog.raster_combo.setLayer(clean_project.mapLayersByName("elsewhere")[0])
        with pytest.raises(Exception, match="do not lie on raster 'elsewhere'.*'neon'"):
            dialog.build_spec()
    finally:
        close_widget(dialog)


# -- 4. default output is not noise ----------------------------------------------------------


def test_minimum_area_and_simplification_follow_the_ground_resolution(
    dock, clean_project, iface
) -> None:
    neon = add_raster(clean_project, NEON, "neon")  # 10 cm pixels
    dock.layer_combo.setLayer(neon)
    dock.set_query("trees")
    dock.set_area("layer")
    options = dock.build_spec().params.options
    assert options.min_area == pytest.approx(0.5)  # 50 pixels of 0.01 m²
    assert options.simplify == pytest.approx(0.1)  # one pixel
    outcome = run(dock)
    assert outcome.status == "succeeded", message_texts(iface)
    (layer,) = result_layers(clean_project)
    areas = [f.geometry().area() for f in layer.getFeatures()]
    assert areas and min(areas) >= 0.5 - 1e-6
    # min area 0 gave 4,109 polygons, 3,990 of them single pixels
    assert len(areas) < 1000, len(areas)


# -- 5. empty results, a live status line --------------------------------------------------


def test_an_empty_result_is_explained_and_adds_no_layer(dock, clean_project, iface) -> None:
    pan = add_raster(clean_project, PAN, "pan")
    dock.layer_combo.setLayer(pan)
    dock.set_query("trees")
    dock.set_area("layer")
    outcome = run(dock)
    assert outcome.status == "succeeded" and outcome.written.feature_count == 0
    assert result_layers(clean_project) == []
    assert not Path(outcome.written.path).exists()  # nothing left behind
    (item,) = iface.messageBar().items()
    assert item.level() == Qgis.Warning
    text = item_text(item)
    assert "No polygon matched 'trees'" in text and "score threshold" in text
    assert "single band" in text, text


def test_status_line_follows_saved_settings_at_once(
    iface, clean_project, plugin_settings, tmp_path  # noqa: ARG001
) -> None:
    process = BackendProcess()
    plugin_settings.python_path = BACKEND_PYTHON
    plugin_settings.auto_start = True
    plugin_settings.state_file = str(tmp_path / "state" / "backend.json")
    plugin_settings.device = "cpu"
    plugin_settings.save()
    d = SegmentDock(iface, process, iface.mainWindow())
    try:
        assert d.settings_saved() is not None
        wait_until(lambda: d.last_status is not None, 150, "the status check")
        assert d.last_status.connected, d.status_label.text()
        assert "connected" in d.status_label.text()
        assert process.running()
    finally:
        close_widget(d)
        process.stop()


# -- 6. results that explain themselves ----------------------------------------------------


def test_colours_follow_the_class_meaning(qgis_app) -> None:  # noqa: ARG001
    layer = QgsVectorLayer("Polygon?crs=EPSG:32633&field=label:string", "r", "memory")
    feats = []
    for label in ("trees", "water", "buildings", "roads"):
        f = QgsFeature(layer.fields())
        f.setGeometry(QgsGeometry.fromRect(QgsRectangle(0, 0, 1, 1)))
        f.setAttributes([label])
        feats.append(f)
    layer.dataProvider().addFeatures(feats)
    style_by_label(layer)
    colour = {c.value(): QColor(c.symbol().color()) for c in layer.renderer().categories()}
    tree, water, building, road = (colour[k] for k in ("trees", "water", "buildings", "roads"))
    assert tree.green() > max(tree.red(), tree.blue())
    assert water.blue() > max(water.red(), water.green())
    assert building.red() > max(building.green(), building.blue())
    assert max(road.red(), road.green(), road.blue()) - min(
        road.red(), road.green(), road.blue()) < 20  # grey


def test_areas_are_rounded_and_exports_are_typed(dock, clean_project, tmp_path) -> None:
    neon = add_raster(clean_project, NEON, "neon")
    dock.layer_combo.setLayer(neon)
    dock.set_query("trees")
    dock.set_area("layer")
    stages: list[str] = []
    outcomes: list[RunOutcome] = []
    dock.runFinished.connect(outcomes.append)
    task = dock.start_run()
    task.stageChanged.connect(stages.append)
    wait_until(lambda: bool(outcomes), 120, "the run")
    assert outcomes[0].status == "succeeded"
    # "done" only once the result is in the project, not at 95 % before the download.
    assert not [s for s in stages if s.startswith("done")], stages
    (layer,) = result_layers(clean_project)
    areas = [f["area"] for f in layer.getFeatures()]
    assert areas and all(a == round(a, 2) for a in areas), areas[:5]

    shp = export_layer(layer, str(tmp_path / "trees.shp"))
    ds = ogr.Open(shp)  # kept: its layer dies with it
    defn = ds.GetLayer().GetLayerDefn()
    types = {defn.GetFieldDefn(i).GetName(): defn.GetFieldDefn(i).GetType()
             for i in range(defn.GetFieldCount())}
    ds = None
    assert types["fid"] == ogr.OFTInteger, types

    geojson = export_layer(layer, str(tmp_path / "trees.geojson"))
    doc = json.loads(Path(geojson).read_text())
    assert "crs" not in doc  # RFC 7946: no crs member, WGS 84 implied
    position = doc["features"][0]["geometry"]["coordinates"]
    while isinstance(position[0], list):  # Polygon or MultiPolygon (QGIS versions differ)
        position = position[0]
    x, y = position[:2]
    assert -82.1 < x < -81.9 and 29.6 < y < 29.8  # OSBS, Florida, in lon/lat


def test_preview_is_accepted_or_discarded_and_classes_can_be_layers(
    iface, clean_project, plugin_settings, backend, tmp_path  # noqa: ARG001
) -> None:
    import numpy as np
    from osgeo import gdal

    tif = tmp_path / "two_classes.tif"
    data = np.full((3, 120, 160), 20, np.uint8)
    data[:, 10:40, 10:40] = 230  # bright
    data[0, 60:100, 90:130] = 230  # red
    ds = gdal.GetDriverByName("GTiff").Create(str(tif), 160, 120, 3, gdal.GDT_Byte)
    ds.SetGeoTransform((500000.0, 2.0, 0.0, 4000000.0, 0.0, -2.0))
    ds.SetProjection(QgsCoordinateReferenceSystem("EPSG:32633").toWkt())
    ds.WriteRaster(0, 0, 160, 120, data.tobytes())
    ds = None
    plugin_settings.preview_results = True
    plugin_settings.layer_per_class = True
    plugin_settings.save()
    d = SegmentDock(iface, None, iface.mainWindow())
    try:
        raster = add_raster(clean_project, tif, "two")
        iface.mapCanvas().setDestinationCrs(raster.crs())  # the outline is in the map's CRS
        d.layer_combo.setLayer(raster)
        d.set_query("bright, red")
        d.set_mode("open_vocabulary")
        d.set_area("layer")
        outcome = run(d)
        assert outcome.status == "succeeded"
        assert result_layers(clean_project) == []  # nothing added before Accept
        assert d.preview is not None and d.accept_button.isVisibleTo(d)
        assert d.preview.polygon_count() == outcome.written.feature_count == 2
        d.discard_preview()
        assert not Path(outcome.written.path).exists() and result_layers(clean_project) == []

        outcome = run(d)
        layers = d.accept_preview()
        assert [ly.name().rsplit(" — ", 1)[1] for ly in layers] == ["bright", "red"]
        assert {ly.name() for ly in result_layers(clean_project)} == {ly.name() for ly in layers}
        assert [ly.featureCount() for ly in layers] == [1, 1]
        assert not d.accept_button.isVisibleTo(d)
        # The area of the run stays outlined on the map.
        assert d.outline.band is not None
        assert d.outline.geometry.boundingBox() == raster.extent()
    finally:
        close_widget(d)


# -- 7. help on every control --------------------------------------------------------------


def _controls(widget: Any) -> list[Any]:
    """The widget's inputs and buttons (not the parts of a combo or spin box)."""
    kinds = (QComboBox, QLineEdit, QAbstractSpinBox, QAbstractButton)
    return [c for c in widget.findChildren(QWidget)
            if isinstance(c, kinds) and not isinstance(c.parent(), (QComboBox, QAbstractSpinBox))
            and not c.objectName().startswith("qt_dockwidget_")]


def test_every_control_has_a_tooltip_and_help_is_one_click_away(iface, clean_project,
                                                                 plugin_settings) -> None:  # noqa: ARG001
    d = SegmentDock(iface, None, iface.mainWindow())
    dialog = TrainDialog(iface, None, iface.mainWindow())
    try:
        for widget in (d, dialog):
            bare = [(type(c).__name__, c.text() if hasattr(c, "text") else c.objectName())
                    for c in _controls(widget) if not c.toolTip()]
            assert bare == [], (type(widget).__name__, bare)
        # The query's placeholder fits the box at the dock's usual width.
        main = iface.mainWindow()
        iface.addDockWidget(Qt.RightDockWidgetArea, d)
        main.show()
        d.show()
        main.resizeDocks([d], [330], Qt.Horizontal)
        for _ in range(5):
            QgsApplication.processEvents()
        edit = d.query_combo.lineEdit()
        width = QFontMetrics(edit.font()).horizontalAdvance(edit.placeholderText())
        assert width < edit.width(), (width, edit.width())
        # Help: the plugin guide, with the anchors the buttons use.
        guide = (REPO / "docs" / "plugin.md").read_text()
        assert help_url().endswith("/blob/main/docs/plugin.md")
        assert help_url("fine-tuning").endswith("#fine-tuning") and "## Fine-tuning" in guide
        assert d.help_button.toolTip() and dialog.help_button.toolTip()
    finally:
        close_widget(d)
        close_widget(dialog)


def test_the_drawn_rectangle_stays_outlined_on_the_map(dock, clean_project) -> None:
    raster = add_raster(clean_project, NEON, "neon")
    dock.layer_combo.setLayer(raster)
    ext = raster.extent()
    rect = QgsRectangle(ext.xMinimum() + 5, ext.yMinimum() + 5, ext.xMinimum() + 20,
                        ext.yMinimum() + 20)
    dock.iface.mapCanvas().setDestinationCrs(raster.crs())
    dock.set_drawn_extent(rect, raster.crs())
    assert dock.outline.band is not None and dock.outline.band.isVisible()
    assert dock.outline.geometry.boundingBox() == rect
    dock.set_area("canvas")  # another area: the drawn one is no longer outlined
    assert dock.outline.band is None
