#!/usr/bin/env python3
"""Screenshot of QGIS with the RS Reasoner dock over a real raster and a real result.

Builds a QGIS main window from real QGIS widgets (layer tree, map canvas, message bar) and
the plugin's real dock (loaded through classFactory), starts a backend from the
repository's venv, segments the bundled NEON sample ("trees", index-baseline model) through
the dock's Segment button, and saves the window as a PNG. Run under Xvfb with QGIS's Python:

    xvfb-run -a -s "-screen 0 1600x1000x24" /usr/bin/python3 scripts/screenshot.py \
        --out docs/screenshot.png

It uses throwaway HOME/XDG folders, so the user's QGIS profile is not touched.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "resources" / "sample_data" / "neon_osbs_rgb_10cm_utm17n.tif"


def isolate(tmp: Path) -> None:
    os.environ["HOME"] = str(tmp / "home")
    for var in ("XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME",
                "XDG_RUNTIME_DIR"):
        path = tmp / var.lower()
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.environ[var] = str(path)
    (tmp / "home").mkdir(exist_ok=True)


def start_backend(python: str, state_file: Path, log: Path) -> subprocess.Popen:
    env = dict(os.environ)
    paths = [str(REPO / "backend")]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env.update(PYTHONPATH=os.pathsep.join(paths), PYTHONUNBUFFERED="1")
    env.pop("QT_QPA_PLATFORM", None)
    proc = subprocess.Popen(
        [python, "-m", "rs_reasoner.service.server", "--port", "0", "--state-file",
         str(state_file), "--device", "cpu"],
        cwd=REPO, env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT,  # noqa: SIM115
    )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"error: the backend exited:\n{log.read_text(errors='replace')}")
        try:
            if json.loads(state_file.read_text()).get("pid") == proc.pid:
                return proc
        except (OSError, ValueError):
            pass
        time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"error: the backend did not start:\n{log.read_text(errors='replace')}")


def window_iface() -> Any:
    """The tests' QgisInterface stand-in (real QGIS widgets) plus a layer tree panel on the
    left; ``.tree`` is the panel's view. Call after QgsApplication is initialised."""
    from helpers import IfaceStandIn  # the tests' QgisInterface stand-in
    from qgis.core import QgsProject
    from qgis.gui import QgsLayerTreeView
    from qgis.PyQt.QtCore import Qt
    from qgis.PyQt.QtWidgets import QDockWidget, QVBoxLayout, QWidget

    class ScreenshotIface(IfaceStandIn):
        """The tests' stand-in plus a layer tree panel on the left."""

        def __init__(self) -> None:
            super().__init__()
            self._main.setWindowTitle("QGIS — RS Reasoner")
            self._canvas.setCanvasColor(Qt.white)
            from qgis.core import QgsLayerTreeModel

            self.model = QgsLayerTreeModel(QgsProject.instance().layerTreeRoot())
            self.model.setFlag(QgsLayerTreeModel.AllowNodeChangeVisibility)
            self.tree = QgsLayerTreeView()
            self.tree.setModel(self.model)
            panel = QDockWidget("Layers", self._main)
            panel.setObjectName("Layers")
            holder = QWidget()
            lay = QVBoxLayout(holder)
            lay.setContentsMargins(2, 2, 2, 2)
            lay.addWidget(self.tree)
            panel.setWidget(holder)
            self._main.addDockWidget(Qt.LeftDockWidgetArea, panel)

    return ScreenshotIface()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "screenshot.png")
    parser.add_argument("--raster", type=Path, default=SAMPLE)
    parser.add_argument("--query", default="trees")
    parser.add_argument("--model", default="index-baseline")
    parser.add_argument("--python", default=str(REPO / ".venv" / "bin" / "python"),
                        help="interpreter with the backend installed")
    parser.add_argument("--size", default="1600x1000", help="window size WxH")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="rs_reasoner_shot_"))
    isolate(tmp)
    sys.path.insert(0, str(REPO))
    sys.path.append(str(REPO / "tests" / "plugin"))

    from qgis.core import QgsApplication, QgsProject, QgsRasterLayer
    from qgis.PyQt.QtCore import QSize, Qt
    from qgis.PyQt.QtWidgets import QMainWindow

    app = QgsApplication([], True)
    app.initQgis()
    state_file = tmp / "backend.json"
    backend = start_backend(args.python, state_file, tmp / "backend.log")
    try:
        import rs_reasoner_plugin
        from rs_reasoner_plugin.settings import PluginSettings

        settings = PluginSettings(state_file=str(state_file), results_folder=str(tmp / "res"),
                                  auto_start=False)
        settings.save()

        iface = window_iface()
        width, height = (int(v) for v in args.size.split("x"))
        main: QMainWindow = iface.mainWindow()
        main.resize(QSize(width, height))

        raster = QgsRasterLayer(str(args.raster), args.raster.stem)
        if not raster.isValid():
            raise SystemExit(f"error: QGIS cannot open {args.raster}")
        QgsProject.instance().addMapLayer(raster)
        QgsProject.instance().setCrs(raster.crs())

        plugin = rs_reasoner_plugin.classFactory(iface)
        plugin.initGui()
        dock = plugin.dock
        plugin.toggle_action.setChecked(True)
        main.resizeDocks([dock], [460], Qt.Horizontal)
        main.show()
        iface.mapCanvas().setExtent(raster.extent())
        iface.mapCanvas().refresh()

        dock.layer_combo.setLayer(raster)
        dock.set_query(args.query)
        dock.set_mode("open_vocabulary")
        dock.set_area("canvas")
        dock.advanced.setCollapsed(False)
        dock.model_combo.setEditText(args.model)
        dock.min_area_spin.setValue(0.5)
        dock.simplify_spin.setValue(0.1)

        def wait(pred, timeout: float, what: str) -> None:  # noqa: ANN001
            deadline = time.monotonic() + timeout
            while not pred():
                if time.monotonic() > deadline:
                    raise SystemExit(f"error: timed out waiting for {what}")
                app.processEvents()
                time.sleep(0.02)

        statuses: list = []
        dock.statusChanged.connect(statuses.append)
        dock.refresh_status()
        wait(lambda: statuses, 60, "the backend status")
        dock.model_combo.setEditText(args.model)

        outcomes: list = []
        dock.runFinished.connect(outcomes.append)
        dock.segment_button.click()
        wait(lambda: outcomes, 300, "the segmentation")
        outcome = outcomes[0]
        if outcome.status != "succeeded":
            raise SystemExit(f"error: the run {outcome.status}: {outcome.error}")
        statuses.clear()
        wait(lambda: statuses, 60, "the backend status after the run")
        iface.tree.expandAll()
        iface.mapCanvas().setExtent(raster.extent())
        iface.mapCanvas().refreshAllLayers()
        # Let the canvas render (it renders in background threads).
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            app.processEvents()
            time.sleep(0.05)
        iface.mapCanvas().waitWhileRendering()
        app.processEvents()
        args.out.parent.mkdir(parents=True, exist_ok=True)
        if not main.grab().save(str(args.out)):
            raise SystemExit(f"error: cannot write {args.out}")
        print(f"{args.out}: {outcome.written.feature_count} polygons in "
              f"'{args.query}' over {args.raster.name}")
        plugin.unload()
        QgsProject.instance().clear()
    finally:
        backend.terminate()
        backend.wait(15)
    sys.stdout.flush()
    # Tearing down QGIS from Python can crash at interpreter exit; the PNG is written.
    os._exit(0)


if __name__ == "__main__":
    main()
