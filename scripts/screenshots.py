#!/usr/bin/env python3
"""Screenshots of each plugin feature, taken in real QGIS against a real backend.

Builds the same QGIS main window as ``scripts/screenshot.py`` (real layer tree, canvas,
message bar, the plugin loaded through classFactory) over the NEON sample and writes to
``docs/screenshots/``:

* ``preview.png``      a "trees" result previewed on the map, Accept / Discard in the dock;
* ``result.png``       the accepted result as a styled layer "trees — model — time";
* ``error.png``        the Details dialog of a run whose model has no weights;
* ``setup.png``        the set-up dialog (backend environment, PyTorch build, start/stop);
* ``models.png``       the model manager (weights present/missing, size, licence);
* ``click.png``        click-to-segment: a box and clicks previewed on the canvas;
* ``train.png``        the fine-tune dialog with the result as labelled parcels.

No SAM weights can be assumed, so the backend's click-to-segment uses the box-shaped SAM
stand-in of the tests (``tests.support.interactive:rect``): the preview is the drawn box.
Run under Xvfb with QGIS's Python (``make screenshots``):

    xvfb-run -a -s "-screen 0 1400x900x24" /usr/bin/python3 scripts/screenshots.py

Each PNG is reduced to a 256-colour palette so it stays small (< 300 KB).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
from screenshot import SAMPLE, isolate, start_backend, window_iface  # noqa: E402

#: Longest side of a saved screenshot, in pixels.
MAX_WIDTH = 1200


def save(widget: Any, path: Path) -> None:
    """Grab ``widget`` and write it as a palette PNG no wider than :data:`MAX_WIDTH`."""
    from qgis.PyQt.QtCore import Qt
    from qgis.PyQt.QtGui import QImage

    image = widget.grab().toImage()
    if image.width() > MAX_WIDTH:
        image = image.scaledToWidth(MAX_WIDTH, Qt.SmoothTransformation)
    image = image.convertToFormat(QImage.Format_Indexed8, Qt.ThresholdDither)
    if not image.save(str(path), "PNG", 9):
        raise SystemExit(f"error: cannot write {path}")
    print(f"{path.relative_to(REPO)}: {image.width()}x{image.height()}, "
          f"{path.stat().st_size // 1024} KB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "screenshots")
    parser.add_argument("--python", default=str(REPO / ".venv" / "bin" / "python"),
                        help="interpreter with the backend installed")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    tmp = Path(tempfile.mkdtemp(prefix="rs_reasoner_shots_"))
    isolate(tmp)
    sys.path.insert(0, str(REPO))
    sys.path.append(str(REPO / "tests" / "plugin"))
    # The backend imports the SAM stand-in from the checkout's tests.
    os.environ["PYTHONPATH"] = str(REPO)
    os.environ["RS_REASONER_INTERACTIVE_PREDICTOR"] = "tests.support.interactive:rect"

    from qgis.core import QgsApplication, QgsProject, QgsRasterLayer, QgsRectangle
    from qgis.PyQt.QtCore import QSize, Qt
    from qgis.PyQt.QtWidgets import QApplication, QPushButton

    app = QgsApplication([], True)
    app.initQgis()
    state_file = tmp / "backend.json"
    backend = start_backend(args.python, state_file, tmp / "backend.log")

    def wait(pred: Callable[[], Any], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not pred():
            if time.monotonic() > deadline:
                raise SystemExit(f"error: timed out waiting for {what}")
            app.processEvents()
            time.sleep(0.02)

    def settle(seconds: float = 1.0) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            app.processEvents()
            time.sleep(0.05)
        iface.mapCanvas().waitWhileRendering()
        app.processEvents()

    try:
        import rs_reasoner_plugin
        from rs_reasoner_plugin.settings import PluginSettings

        PluginSettings(state_file=str(state_file), results_folder=str(tmp / "res"),
                       auto_start=False, preview_results=True).save()
        iface = window_iface()
        main_window = iface.mainWindow()
        main_window.resize(QSize(1400, 860))
        raster = QgsRasterLayer(str(SAMPLE), SAMPLE.stem)
        if not raster.isValid():
            raise SystemExit(f"error: QGIS cannot open {SAMPLE}")
        project = QgsProject.instance()
        project.addMapLayer(raster)
        project.setCrs(raster.crs())
        plugin = rs_reasoner_plugin.classFactory(iface)
        plugin.initGui()
        dock = plugin.dock
        plugin.toggle_action.setChecked(True)
        main_window.resizeDocks([dock], [440], Qt.Horizontal)
        main_window.show()
        canvas = iface.mapCanvas()
        canvas.setDestinationCrs(raster.crs())
        canvas.setExtent(raster.extent())
        statuses: list = []
        dock.statusChanged.connect(statuses.append)
        dock.refresh_status()
        wait(lambda: statuses, 60, "the backend status")

        # -- a run, previewed, then accepted ------------------------------------------------
        def segment(model: str) -> Any:
            outcomes: list = []
            dock.runFinished.connect(outcomes.append)
            dock.layer_combo.setLayer(raster)
            dock.set_query("trees")
            dock.set_mode("open_vocabulary")
            dock.set_area("canvas")
            dock.model_combo.setEditText(model)
            dock.segment_button.click()
            wait(lambda: outcomes, 300, f"the run with {model}")
            dock.runFinished.disconnect(outcomes.append)
            return outcomes[0]

        dock.advanced.setCollapsed(False)
        dock.min_area_spin.setValue(0.5)
        dock.simplify_spin.setValue(0.1)
        dock.preview_check.setChecked(True)
        outcome = segment("index-baseline")
        if outcome.status != "succeeded" or dock.preview is None:
            raise SystemExit(f"error: the run {outcome.status}: {outcome.error}")
        settle()
        save(main_window, args.out / "preview.png")
        (result,) = dock.accept_preview()
        iface.tree.expandAll()
        settle()
        save(main_window, args.out / "result.png")

        # -- an error and its Details dialog -----------------------------------------------
        outcome = segment("clip-openvocab")
        if outcome.status == "succeeded":
            raise SystemExit("error: clip-openvocab ran: its weights are present here, so "
                             "the error screenshot would show nothing")
        settle(0.5)
        details = [b for b in iface.messageBar().findChildren(QPushButton)
                   if b.text().startswith("Details")]
        if not details:
            raise SystemExit("error: the failed run left no Details button")
        details[-1].click()
        wait(lambda: [w for w in QApplication.topLevelWidgets()
                      if w.objectName() == "RsReasonerErrorDetails" and w.isVisible()],
             10, "the Details dialog")
        dialog = next(w for w in QApplication.topLevelWidgets()
                      if w.objectName() == "RsReasonerErrorDetails" and w.isVisible())
        dialog.resize(760, 360)
        settle(0.3)
        save(dialog, args.out / "error.png")
        dialog.close()

        # -- set-up dialog and model manager -----------------------------------------------
        setup = plugin.tools.show_setup()
        setup.resize(760, 560)
        settle(1.0)
        save(setup, args.out / "setup.png")
        setup.close()
        models = plugin.tools.show_models()
        wait(lambda: models.table.rowCount() > 0, 120, "the model list")
        wait(lambda: getattr(models, "task", None) is None, 120, "the model sizes")
        models.resize(900, 460)
        settle(0.5)
        save(models, args.out / "models.png")
        models.close()

        # -- click-to-segment ---------------------------------------------------------------
        iface.messageBar().clearWidgets()
        plugin.toggle_action.setChecked(False)  # the whole width for the map
        plugin.tools.click_action.setChecked(True)
        tool = plugin.tools.click_tool
        tool.failed.connect(lambda text: print(f"click-to-segment: {text}", file=sys.stderr))
        ext = raster.extent()
        x0, y0 = ext.xMinimum(), ext.yMinimum()
        canvas.setExtent(QgsRectangle(x0 + 5, y0 + 5, x0 + 35, y0 + 35))
        settle()
        tool.set_box(QgsRectangle(x0 + 14, y0 + 17, x0 + 24, y0 + 25))
        wait(lambda: tool.task is None and not tool.preview.isEmpty(), 120, "the click preview")
        from qgis.core import QgsPointXY

        tool.add_point(QgsPointXY(x0 + 18, y0 + 21))
        tool.add_point(QgsPointXY(x0 + 26, y0 + 21), positive=False)
        wait(lambda: tool.task is None and not tool._pending, 60, "the click answers")
        settle()
        save(main_window, args.out / "click.png")
        tool.clear()
        plugin.tools.click_action.setChecked(False)

        # -- fine-tune dialog ---------------------------------------------------------------
        canvas.setExtent(raster.extent())
        train = plugin.show_train_dialog()
        train.set_layers(raster, result, "label")
        train.advanced.setCollapsed(False)
        train.adjustSize()
        settle(1.0)
        save(train, args.out / "train.png")
        train.close()
        plugin.unload()
        project.clear()
    finally:
        backend.terminate()
        backend.wait(15)
    sys.stdout.flush()
    # Tearing down QGIS from Python can crash at interpreter exit; the PNGs are written.
    os._exit(0)


if __name__ == "__main__":
    main()
