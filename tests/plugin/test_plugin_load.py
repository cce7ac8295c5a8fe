"""The plugin loads through classFactory in real QGIS; initGui adds the dock, the toolbar,
the menu entries and the Processing provider; unload removes them. No backend needed."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

from qgis.core import QgsApplication, QgsRasterLayer
from qgis.PyQt.QtCore import QEvent, Qt
from qgis.PyQt.QtWidgets import QDockWidget, QToolBar

import rs_reasoner_plugin
from tests.plugin.helpers import message_texts, unpacked_plugin

PLUGIN_DIR = Path(rs_reasoner_plugin.__file__).parent
REPO = PLUGIN_DIR.parent


def test_class_factory_init_gui_and_unload(iface, clean_project, plugin_settings) -> None:
    plugin = rs_reasoner_plugin.classFactory(iface)
    plugin.initGui()
    try:
        main = iface.mainWindow()
        assert plugin.dock in main.findChildren(QDockWidget)
        assert main.dockWidgetArea(plugin.dock) == Qt.RightDockWidgetArea
        toolbar = plugin.toolbar
        assert toolbar in main.findChildren(QToolBar)
        assert toolbar.objectName() == "RsReasonerToolbar"
        assert plugin.toggle_action in toolbar.actions()
        menu = iface.menus["&RS Reasoner"]
        assert [a.text() for a in menu.actions()] == [
            "Segment by description", "Fine-tune on labelled parcels…", "Settings…",
            "Set up the backend…", "Models…", "Click to segment"]
        assert plugin.train_action in toolbar.actions()
        assert plugin.tools.click_action in toolbar.actions()
        assert QgsApplication.processingRegistry().providerById("rsreasoner") is plugin.provider
        alg = QgsApplication.processingRegistry().algorithmById(
            "rsreasoner:segment_by_description")
        assert alg is not None and alg.displayName() == "Segment by description"

        # The toolbar button shows the dock.
        plugin.toggle_action.setChecked(True)
        assert plugin.dock.isVisible() or plugin.dock.isVisibleTo(main)
        # The fine-tuning action opens one dialog, shown again (not duplicated) later.
        plugin.train_action.trigger()
        dialog = plugin.train_dialog
        assert dialog is not None and dialog.isVisible()
        assert dialog.windowTitle().endswith("Fine-tune on labelled parcels")
        dialog.close_button.click()
        assert not dialog.isVisible()
        plugin.train_action.trigger()
        assert plugin.train_dialog is dialog and dialog.isVisible()
    finally:
        plugin.unload()
    assert plugin.train_dialog is None
    assert QgsApplication.processingRegistry().providerById("rsreasoner") is None
    assert "&RS Reasoner" not in iface.menus
    QgsApplication.sendPostedEvents(None, QEvent.DeferredDelete)
    assert toolbar not in iface.mainWindow().findChildren(QToolBar)
    assert plugin.dock is None and plugin.toolbar is None


def test_dock_builds_and_lists_raster_layers_only(iface, clean_project, plugin_settings,
                                                  squares_tif) -> None:
    from qgis.core import QgsVectorLayer

    from rs_reasoner_plugin.dock import SegmentDock

    raster = QgsRasterLayer(str(squares_tif), "squares")
    vector = QgsVectorLayer("Polygon?crs=EPSG:32633", "polys", "memory")
    clean_project.addMapLayers([raster, vector])
    dock = SegmentDock(iface, None, iface.mainWindow())
    try:
        layers = [dock.layer_combo.layer(i) for i in range(dock.layer_combo.count())]
        assert layers == [raster]
        assert [dock.mode_combo.itemData(i) for i in range(dock.mode_combo.count())] == [
            "auto", "reasoning", "open_vocabulary"]
        assert [dock.area_combo.itemData(i) for i in range(dock.area_combo.count())] == [
            "canvas", "layer", "drawn", "selection"]
        assert dock.mask_combo.layer(0) is vector
        assert dock.segment_button.isEnabled() and not dock.cancel_button.isEnabled()
        # Input problems are message bar entries, not exceptions.
        dock.set_query("")
        assert dock.start_run() is None
        assert any("query" in t for t in message_texts(iface)), message_texts(iface)
    finally:
        dock.deleteLater()
        QgsApplication.sendPostedEvents(None, QEvent.DeferredDelete)


def test_plugin_never_imports_torch_or_the_backend() -> None:
    for path in PLUGIN_DIR.rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            for name in names:
                top = name.split(".")[0]
                assert top not in {"torch", "rs_reasoner", "numpy", "requests", "httpx"}, (
                    path, name)
    assert "torch" not in sys.modules


def test_settings_dialog_saves_to_qgssettings(qgis_app, plugin_settings, tmp_path) -> None:
    from rs_reasoner_plugin.settings import PluginSettings
    from rs_reasoner_plugin.settings_dialog import SettingsDialog

    plugin_settings.query_history = ["water"]
    plugin_settings.save()
    dialog = SettingsDialog()
    assert dialog.results_folder.filePath() == plugin_settings.results_folder
    dialog.url_edit.setText("http://127.0.0.1:9999/")
    dialog.token_edit.setText("secret")
    dialog.python_file.setFilePath("/opt/rs/.venv/bin/python")
    dialog.auto_start.setChecked(True)
    dialog.device_combo.setEditText("cuda:0")
    dialog.model_ov.setText("clip-ov")
    dialog.results_folder.setFilePath(str(tmp_path / "out"))
    dialog.crs_combo.setCurrentIndex(dialog.crs_combo.findData("project"))
    dialog.accept()
    s = PluginSettings.load()
    assert s.backend_url == "http://127.0.0.1:9999/" and s.token == "secret"
    assert s.python_path == "/opt/rs/.venv/bin/python" and s.auto_start
    assert s.device == "cuda:0" and s.model_open_vocabulary == "clip-ov"
    assert s.results_folder == str(tmp_path / "out") and s.output_crs == "project"
    assert s.query_history == ["water"]
    assert s.results_dir().is_dir()


def test_drawing_a_rectangle_sets_the_area(iface, clean_project, plugin_settings,
                                           squares_tif) -> None:
    from qgis.core import QgsRectangle

    from rs_reasoner_plugin.dock import SegmentDock

    raster = QgsRasterLayer(str(squares_tif), "squares")
    clean_project.addMapLayer(raster)
    canvas = iface.mapCanvas()
    canvas.setDestinationCrs(raster.crs())
    dock = SegmentDock(iface, None, iface.mainWindow())
    try:
        dock.layer_combo.setLayer(raster)
        dock.set_query("bright")
        dock.start_drawing()
        assert canvas.mapTool() is dock._extent_tool
        rect = QgsRectangle(500_100, 3_999_800, 500_300, 3_999_950)
        dock._extent_tool.extentChanged.emit(rect)
        assert dock.area_combo.currentData() == "drawn"
        assert canvas.mapTool() is not dock._extent_tool
        spec = dock.build_spec()
        ext = spec.params.extent
        assert (ext.xmin, ext.ymin, ext.xmax, ext.ymax) == (500_100, 3_999_800, 500_300, 3_999_950)
        assert ext.crs is None and spec.raster_path == str(squares_tif)
        assert spec.params.to_request(raster=spec.raster_path)["extent"]["xmin"] == 500_100
    finally:
        dock.shutdown()
        dock.deleteLater()
        QgsApplication.sendPostedEvents(None, QEvent.DeferredDelete)


def test_plugin_zip_installs_and_loads_through_class_factory(tmp_path) -> None:
    """Unpack `make plugin`'s zip into a plugins folder and load it with QGIS's own plugin
    machinery (qgis.utils), in a fresh QGIS process so the repository copy is not used."""
    plugins = unpacked_plugin(tmp_path / "plugins")
    script = f"""
import json, sys
sys.path.insert(0, {str(plugins)!r})
sys.path.append({str(REPO / 'tests' / 'plugin')!r})
from qgis.core import QgsApplication
app = QgsApplication([], True)
app.initQgis()
import qgis.utils
from helpers import IfaceStandIn
qgis.utils.iface = IfaceStandIn()
qgis.utils.plugin_paths = [{str(plugins)!r}]
qgis.utils.updateAvailablePlugins()
ok_load = qgis.utils.loadPlugin("rs_reasoner_plugin")
ok_start = qgis.utils.startPlugin("rs_reasoner_plugin")
plugin = qgis.utils.plugins.get("rs_reasoner_plugin")
reg = QgsApplication.processingRegistry()
out = {{
    "load": ok_load, "start": ok_start,
    "file": sys.modules["rs_reasoner_plugin"].__file__,
    "dock": plugin is not None and plugin.dock is not None,
    "alg": reg.algorithmById("rsreasoner:segment_by_description") is not None,
    "meta": {{k: qgis.utils.pluginMetadata("rs_reasoner_plugin", k) for k in
             ("name", "qgisMinimumVersion", "version", "icon", "hasProcessingProvider",
              "license", "repository", "tracker", "homepage", "email", "author", "about")}},
}}
out["unload"] = qgis.utils.unloadPlugin("rs_reasoner_plugin")
out["alg_after"] = reg.algorithmById("rsreasoner:segment_by_description") is not None
print("RESULT " + json.dumps(out))
"""
    proc = subprocess.run(["/usr/bin/python3", "-c", script], capture_output=True, text=True,
                          env=dict(os.environ, QT_QPA_PLATFORM="offscreen"), timeout=120,
                          cwd=tmp_path)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert lines, proc.stdout + proc.stderr
    out = json.loads(lines[-1][len("RESULT "):])
    assert out["load"] and out["start"], proc.stdout + proc.stderr
    assert out["file"].startswith(str(plugins)), out["file"]
    assert out["dock"] and out["alg"]
    assert out["unload"] and not out["alg_after"]
    meta = out["meta"]
    assert meta["name"] == "RS Reasoner" and meta["qgisMinimumVersion"] == "3.22"
    assert meta["hasProcessingProvider"] == "yes"
    assert (plugins / "rs_reasoner_plugin" / meta["icon"]).is_file()
    assert (plugins / "rs_reasoner_plugin" / "LICENSE").is_file()
    for key in ("version", "license", "repository", "tracker", "homepage", "email", "author",
                "about"):
        assert meta[key] and not meta[key].startswith("__error__"), (key, meta[key])
