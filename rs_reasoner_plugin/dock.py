"""The "Segment by description" dock: choose a raster, an area and a query, run it on the
backend in a QgsTask, get a styled layer.

Widgets are built in code (no .ui file); the run's parameters are gathered into a
:class:`~rs_reasoner_plugin.tasks.RunSpec` on the GUI thread, and everything that waits
runs in :class:`~rs_reasoner_plugin.tasks.SegmentTask`.
"""

from __future__ import annotations

import os

from qgis.core import (
    Qgis,
    QgsApplication,
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsGeometry,
    QgsMapLayerProxyModel,
    QgsProject,
    QgsRasterLayer,
    QgsRectangle,
    QgsVectorLayer,
)
from qgis.gui import QgsCollapsibleGroupBox, QgsDockWidget, QgsMapLayerComboBox, QgsMapToolExtent
from qgis.PyQt.QtCore import Qt, pyqtSignal
from qgis.PyQt.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QTextBrowser,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from . import messages
from .backend_process import BackendProcess
from .errors import InputError
from .export import FILE_FILTER, ExportLayerError, export_layer
from .params import MODES, Extent, SegmentOptions, bounds, defaults
from .raster_export import (
    ExportError,
    local_file_path,
    native_resolution,
    prepare_export,
)
from .results import add_to_project, layer_display_name, load_result_layer
from .run_request import ChoiceError, RunChoices, build_request
from .settings import PluginSettings
from .task_runner import TaskRunner
from .tasks import (
    BackendStatus,
    BackendStatusTask,
    RunOutcome,
    RunSpec,
    SegmentTask,
    backend_config,
    format_status,
)

#: Area choices: key → label.
AREAS: list[tuple[str, str]] = [
    ("canvas", "Current map view"),
    ("layer", "Layer extent"),
    ("drawn", "Rectangle drawn on the map"),
    ("selection", "Selected features of a polygon layer"),
]

#: The initial values of the advanced options.
_OPTIONS = defaults(SegmentOptions)

__all__ = ["AREAS", "InputError", "SegmentDock"]


def _number_spin(
    parent: QWidget,
    option: str | None = None,
    *,
    decimals: int = 2,
    maximum: float | None = None,
    step: float | None = None,
    special: str = "",
    tip: str = "",
) -> QDoubleSpinBox:
    """A spin box for a number option, starting at its default and kept in its bounds
    (``option``: a :class:`~.params.SegmentOptions` field; None: from 0, starting at 0)."""
    spin = QDoubleSpinBox(parent)
    spin.setDecimals(decimals)
    low, high = bounds(SegmentOptions, option) if option else (0.0, None)
    spin.setRange(low or 0.0, high if high is not None else (maximum or 1e12))
    if step is not None:
        spin.setSingleStep(step)
    if special:
        spin.setSpecialValueText(special)
    if tip:
        spin.setToolTip(tip)
    spin.setValue(_OPTIONS[option] if option else 0.0)
    return spin


class SegmentDock(TaskRunner, QgsDockWidget):
    """The dock panel.

    Signals:
        runFinished(object): A :class:`RunOutcome` after each run (after the layer is
            added and messages are shown).
        statusChanged(object): A :class:`BackendStatus` after each status refresh.
    """

    runFinished = pyqtSignal(object)
    statusChanged = pyqtSignal(object)

    def __init__(self, iface, backend_process: BackendProcess | None = None,  # noqa: ANN001
                 parent: QWidget | None = None, open_settings=None) -> None:  # noqa: ANN001
        super().__init__("RS Reasoner — Segment by description", parent)
        self.setObjectName("RsReasonerDock")
        self.iface = iface
        self.backend_process = backend_process
        self.open_settings = open_settings
        self.settings = PluginSettings.load()
        self.task: SegmentTask | None = None
        self.status_task: BackendStatusTask | None = None
        self.last_outcome: RunOutcome | None = None
        self.last_layer: QgsVectorLayer | None = None
        self.last_status: BackendStatus | None = None
        self.drawn_extent: QgsRectangle | None = None
        self.drawn_crs: QgsCoordinateReferenceSystem | None = None
        self._extent_tool: QgsMapToolExtent | None = None
        self._previous_tool = None
        self._models: list[dict] = []
        self._refresh_again = False
        self._build()
        self._load_history()
        self._update_area_widgets()
        self._set_running(False)

    # -- layout ---------------------------------------------------------------------------

    def _build(self) -> None:
        body = QWidget(self)
        outer = QVBoxLayout(body)
        form = QFormLayout()
        outer.addLayout(form)
        self._build_inputs(form, body)
        self._build_area(form, body)
        outer.addWidget(self._build_advanced(body))
        outer.addLayout(self._build_buttons(body))
        self._add_progress_widgets(outer, body)
        self.reasoning = QTextBrowser(body)
        self.reasoning.setPlaceholderText("The model's reasoning appears here.")
        self.reasoning.setMaximumHeight(110)
        outer.addWidget(self.reasoning)
        outer.addLayout(self._build_status_row(body))
        outer.addStretch(1)
        self.setWidget(body)

    def _build_inputs(self, form: QFormLayout, body: QWidget) -> None:
        """Raster, query and mode."""
        self.layer_combo = QgsMapLayerComboBox(body)
        self.layer_combo.setFilters(QgsMapLayerProxyModel.RasterLayer)
        self.layer_combo.setToolTip("Raster layer to segment (any raster QGIS can show)")
        form.addRow("Raster", self.layer_combo)

        self.query_combo = QComboBox(body)
        self.query_combo.setEditable(True)
        self.query_combo.setInsertPolicy(QComboBox.NoInsert)
        self.query_combo.lineEdit().setPlaceholderText(
            "e.g. buildings, roads, water — or: the buildings most at risk from the river")
        self.query_combo.lineEdit().returnPressed.connect(self.start_run)
        form.addRow("Query", self.query_combo)

        self.mode_combo = QComboBox(body)
        for value, label in MODES:
            self.mode_combo.addItem(label, value)
        self.mode_combo.setToolTip(
            "Auto: lists of class names go to the open-vocabulary model, sentences to the "
            "reasoning model.")
        form.addRow("Mode", self.mode_combo)

    def _build_area(self, form: QFormLayout, body: QWidget) -> None:
        """The area choice, its Draw button and the polygon layer of 'selection'."""
        area_row = QHBoxLayout()
        self.area_combo = QComboBox(body)
        for key, label in AREAS:
            self.area_combo.addItem(label, key)
        self.area_combo.currentIndexChanged.connect(self._update_area_widgets)
        self.draw_button = QToolButton(body)
        self.draw_button.setText("Draw")
        self.draw_button.setToolTip("Drag a rectangle on the map")
        self.draw_button.clicked.connect(self.start_drawing)
        area_row.addWidget(self.area_combo, 1)
        area_row.addWidget(self.draw_button)
        form.addRow("Area", area_row)

        self.mask_combo = QgsMapLayerComboBox(body)
        self.mask_combo.setFilters(QgsMapLayerProxyModel.PolygonLayer)
        self.mask_label = QLabel("Polygons", body)
        form.addRow(self.mask_label, self.mask_combo)

    def _build_advanced(self, body: QWidget) -> QgsCollapsibleGroupBox:
        """Model, bands, resolution and the options, starting at the plugin's defaults
        (:class:`~.params.SegmentOptions`)."""
        self.advanced = QgsCollapsibleGroupBox("Advanced options", body)
        self.advanced.setCollapsed(True)
        adv = QFormLayout(self.advanced)
        self.model_combo = QComboBox(self.advanced)
        self.model_combo.setEditable(True)
        self.model_combo.addItem("(default for the mode)", "")
        self.model_combo.setToolTip("Fine-tuned models list their classes; choosing one fills "
                                    "an empty query with them")
        self.model_combo.activated.connect(self._model_chosen)
        adv.addRow("Model", self.model_combo)
        self.bands_edit = QLineEdit(self.advanced)
        self.bands_edit.setPlaceholderText("RGB or bands 1-3; e.g. 4 3 2")
        adv.addRow("Bands", self.bands_edit)
        self.resolution_spin = _number_spin(
            self.advanced, decimals=4, maximum=1e7, special="native",
            tip="Ground resolution in the raster's map units per pixel (native: the "
            "raster's own)")
        adv.addRow("Ground resolution", self.resolution_spin)
        self.score_spin = _number_spin(self.advanced, "score_threshold", step=0.05)
        adv.addRow("Score threshold", self.score_spin)
        self.min_area_spin = _number_spin(self.advanced, "min_area", decimals=3, maximum=1e12,
                                          tip="Drop smaller polygons (map units²)")
        adv.addRow("Minimum area", self.min_area_spin)
        self.simplify_spin = _number_spin(self.advanced, "simplify", decimals=3, maximum=1e6,
                                          tip="Simplification tolerance (map units)")
        adv.addRow("Simplification", self.simplify_spin)
        self.tile_spin = QSpinBox(self.advanced)
        # 0 shows "default": the backend's tile size (the model's own for some models).
        self.tile_spin.setRange(0, int(bounds(SegmentOptions, "tile_size")[1]))
        self.tile_spin.setSingleStep(256)
        self.tile_spin.setSpecialValueText("default")
        self.tile_spin.setValue(_OPTIONS["tile_size"] or 0)
        self.tile_spin.setToolTip("Tile edge in pixels (smaller tiles need less GPU memory)")
        adv.addRow("Tile size", self.tile_spin)
        return self.advanced

    def _build_buttons(self, body: QWidget) -> QHBoxLayout:
        buttons = QHBoxLayout()
        self.segment_button = QPushButton("Segment", body)
        self.segment_button.setDefault(True)
        self.segment_button.clicked.connect(self.start_run)
        self.cancel_button = QPushButton("Cancel", body)
        self.cancel_button.clicked.connect(self.cancel_run)
        self.export_button = QPushButton("Export…", body)
        self.export_button.setToolTip("Save the result layer as Shapefile, GeoPackage or "
                                      "GeoJSON")
        self.export_button.clicked.connect(self.export_dialog)
        buttons.addWidget(self.segment_button, 1)
        buttons.addWidget(self.cancel_button)
        buttons.addWidget(self.export_button)
        return buttons

    def _build_status_row(self, body: QWidget) -> QHBoxLayout:
        """The backend's status, with refresh and settings buttons."""
        status_row = QHBoxLayout()
        self.status_label = QLabel("Backend: not checked yet", body)
        self.status_label.setWordWrap(True)
        self.status_label.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Preferred)
        self.status_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.refresh_button = QToolButton(body)
        self.refresh_button.setText("↻")
        self.refresh_button.setToolTip("Check the backend (start it if auto-start is on)")
        self.refresh_button.clicked.connect(lambda: self.refresh_status(start=True))
        self.settings_button = QToolButton(body)
        self.settings_button.setText("⚙")
        self.settings_button.setToolTip("RS Reasoner settings")
        self.settings_button.clicked.connect(self._open_settings)
        status_row.addWidget(self.status_label, 1)
        status_row.addWidget(self.refresh_button)
        status_row.addWidget(self.settings_button)
        return status_row

    def _load_history(self) -> None:
        current = self.query_combo.currentText()
        self.query_combo.clear()
        self.query_combo.addItems(self.settings.query_history)
        self.query_combo.setEditText(current)

    def _update_area_widgets(self) -> None:
        key = self.area_combo.currentData()
        self.draw_button.setVisible(key == "drawn")
        self.mask_combo.setVisible(key == "selection")
        self.mask_label.setVisible(key == "selection")

    def _set_running(self, running: bool) -> None:
        self.segment_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        if running:
            self.progress.setValue(0)

    def _open_settings(self) -> None:
        if self.open_settings is not None:
            self.open_settings()

    def reload_settings(self) -> None:
        """Re-read the settings (after the settings dialog)."""
        self.settings = PluginSettings.load()
        self._load_history()

    # -- helpers for callers and tests ----------------------------------------------------

    def set_query(self, text: str) -> None:
        self.query_combo.setEditText(text)

    def set_mode(self, mode: str) -> None:
        self.mode_combo.setCurrentIndex(max(0, self.mode_combo.findData(mode)))

    def set_area(self, key: str) -> None:
        self.area_combo.setCurrentIndex(max(0, self.area_combo.findData(key)))

    def set_drawn_extent(self, rect: QgsRectangle, crs: QgsCoordinateReferenceSystem) -> None:
        """Use ``rect`` (in ``crs``) as the drawn area and select that area choice."""
        self.drawn_extent = QgsRectangle(rect)
        self.drawn_crs = QgsCoordinateReferenceSystem(crs)
        self.set_area("drawn")

    # -- drawing --------------------------------------------------------------------------

    def start_drawing(self) -> None:
        canvas = self.iface.mapCanvas() if self.iface is not None else None
        if canvas is None:
            return
        self._previous_tool = canvas.mapTool()
        self._extent_tool = QgsMapToolExtent(canvas)
        self._extent_tool.extentChanged.connect(self._extent_drawn)
        canvas.setMapTool(self._extent_tool)
        self.stage_label.setText("Drag a rectangle on the map.")

    def _extent_drawn(self, rect: QgsRectangle) -> None:
        canvas = self.iface.mapCanvas()
        if rect.isEmpty():
            return
        self.set_drawn_extent(rect, canvas.mapSettings().destinationCrs())
        self.stage_label.setText(
            f"Area: {rect.xMinimum():.2f}, {rect.yMinimum():.2f} – {rect.xMaximum():.2f}, "
            f"{rect.yMaximum():.2f}")
        if self._previous_tool is not None:
            canvas.setMapTool(self._previous_tool)
        else:
            canvas.unsetMapTool(self._extent_tool)

    # -- building a run -------------------------------------------------------------------

    def _transform_rect(self, rect: QgsRectangle, src: QgsCoordinateReferenceSystem,
                        dst: QgsCoordinateReferenceSystem) -> QgsRectangle:
        if not src.isValid() or not dst.isValid() or src == dst:
            return QgsRectangle(rect)
        tr = QgsCoordinateTransform(src, dst, QgsProject.instance())
        return tr.transformBoundingBox(rect)

    def _area(self, layer: QgsRasterLayer) -> tuple[QgsRectangle | None, QgsGeometry | None]:
        """(extent in the raster's CRS or None for the whole layer, clip geometry in the
        raster's CRS or None)."""
        key = self.area_combo.currentData()
        raster_crs = layer.crs()
        if key == "layer":
            return None, None
        if key == "canvas":
            canvas = self.iface.mapCanvas() if self.iface is not None else None
            if canvas is None or canvas.extent().isEmpty():
                return None, None
            crs = canvas.mapSettings().destinationCrs()
            return self._transform_rect(canvas.extent(), crs, raster_crs), None
        if key == "drawn":
            if self.drawn_extent is None or self.drawn_extent.isEmpty():
                raise InputError("No rectangle drawn yet: click 'Draw' and drag a rectangle "
                                 "on the map.")
            crs = self.drawn_crs or raster_crs
            return self._transform_rect(self.drawn_extent, crs, raster_crs), None
        if key == "selection":
            mask = self.mask_combo.currentLayer()
            if not isinstance(mask, QgsVectorLayer) or mask.selectedFeatureCount() == 0:
                raise InputError("Select one or more polygons in the chosen polygon layer "
                                 "first (or choose another area).")
            geoms = [f.geometry() for f in mask.selectedFeatures() if f.hasGeometry()]
            union = QgsGeometry.unaryUnion(geoms)
            if mask.crs().isValid() and raster_crs.isValid() and mask.crs() != raster_crs:
                union.transform(QgsCoordinateTransform(mask.crs(), raster_crs,
                                                       QgsProject.instance()))
            return union.boundingBox(), union
        return None, None

    def selected_model(self) -> str:
        """The model chosen or typed in the advanced options ('' for the default)."""
        combo = self.model_combo
        idx = combo.currentIndex()
        if idx >= 0 and combo.currentText() == combo.itemText(idx):
            return str(combo.itemData(idx) or "")  # a listed entry ("(default…)" → "")
        return combo.currentText().strip()

    def choices(self) -> RunChoices:
        """What the widgets hold (the area aside)."""
        return RunChoices(
            query=self.query_combo.currentText(),
            mode=self.mode_combo.currentData() or "auto",
            model=self.selected_model(),
            bands=self.bands_edit.text(),
            resolution=self.resolution_spin.value(),
            score_threshold=self.score_spin.value(),
            min_area=self.min_area_spin.value(),
            simplify=self.simplify_spin.value(),
            tile_size=self.tile_spin.value(),
        )

    def build_spec(self) -> RunSpec:
        """The run the dock describes (GUI thread).

        Raises:
            InputError: Something is missing or wrong (the message says what).
        """
        layer = self.layer_combo.currentLayer()
        if not isinstance(layer, QgsRasterLayer) or not layer.isValid():
            raise InputError("Choose a raster layer to segment (add one to the project first).")
        choices = self.choices()
        if not choices.query.strip():  # before the area, whose problems come second
            raise InputError("Type what to segment in the query box, e.g. 'buildings, water'.")
        extent, clip = self._area(layer)
        path = None if self.settings.always_upload else local_file_path(layer)
        try:
            # Extent in the raster's CRS (crs None). Rasters without georeferencing: the
            # backend uses QGIS's pixel space (x = column, y = -row), so nothing to convert.
            built = build_request(
                choices,
                by_path=path is not None,
                extent=None if extent is None else Extent(
                    extent.xMinimum(), extent.yMinimum(), extent.xMaximum(),
                    extent.yMaximum(), None),
                default_models=self.settings.default_models(),
                native_resolution=native_resolution(layer),
                view_resolution=self._canvas_resolution(layer),
            )
            export = None if path is not None else prepare_export(
                layer, extent, built.export_resolution)
        except (ChoiceError, ExportError) as exc:
            raise InputError(str(exc)) from None
        project = QgsProject.instance()
        target = None
        if self.settings.output_crs == "project" and project.crs().isValid():
            target = project.crs()
        if clip is not None and target is not None and layer.crs().isValid() and (
            target != layer.crs()
        ):
            clip = QgsGeometry(clip)
            clip.transform(QgsCoordinateTransform(layer.crs(), target, project))
        return RunSpec(
            params=built.params,
            raster_path=path,
            export=export,
            raster_crs=layer.crs(),
            results_folder=self.settings.results_dir(),
            layer_name=layer_display_name(built.params.query),
            target_crs=target,
            transform_context=project.transformContext(),
            clip=clip,
        )

    def _canvas_resolution(self, layer: QgsRasterLayer) -> float | None:
        canvas = self.iface.mapCanvas() if self.iface is not None else None
        if canvas is None or canvas.width() <= 0:
            return None
        ext = self._transform_rect(canvas.extent(), canvas.mapSettings().destinationCrs(),
                                   layer.crs())
        return ext.width() / canvas.width() if ext.width() > 0 else None

    # -- running --------------------------------------------------------------------------

    def start_run(self) -> SegmentTask | None:
        """Start a run with the dock's inputs; problems go to the message bar."""
        if self.task is not None:
            return None
        self.settings = PluginSettings.load()
        try:
            spec = self.build_spec()
        except InputError as exc:
            messages.push(self.iface, str(exc), Qgis.Warning)
            return None
        except OSError as exc:
            messages.push(self.iface, f"Cannot use the results folder: {exc}. Pick another one "
                          "in RS Reasoner ▸ Settings.", Qgis.Critical)
            return None
        self.settings.remember_query(spec.params.query)
        self.settings.save()
        self._load_history()
        self.query_combo.setEditText(spec.params.query)
        task = SegmentTask(spec, backend_config(self.settings, self.backend_process))
        task.runFinished.connect(self._run_finished)
        self.reasoning.clear()
        self._launch(task)
        return task

    def cancel_run(self) -> None:
        """Cancel the running job (the backend stops after the current tile)."""
        self._cancel_task()

    def _run_finished(self, outcome: RunOutcome) -> None:
        task = self._task_done(outcome)
        self.progress.setValue(100 if outcome.status == "succeeded" else 0)
        if outcome.status == "succeeded" and outcome.written is not None:
            try:
                layer = load_result_layer(outcome.written,
                                          task.spec.layer_name if task else "result")
            except Exception as exc:  # noqa: BLE001
                messages.push_error(self.iface, exc)
            else:
                add_to_project(layer)
                self.last_layer = layer
                n = outcome.written.feature_count
                self.stage_label.setText(f"done: {n} polygon{'s' if n != 1 else ''}")
                reasoning = outcome.written.reasoning or str(
                    (outcome.job or {}).get("reasoning") or "")
                self.reasoning.setPlainText(reasoning)
                messages.push(
                    self.iface,
                    f"{n} polygon{'s' if n != 1 else ''} in layer '{layer.name()}' "
                    f"({outcome.written.path}).",
                    Qgis.Success,
                )
        elif outcome.status == "cancelled":
            self.stage_label.setText("cancelled")
            messages.push(self.iface, "Segmentation cancelled.", Qgis.Info)
        else:
            self.stage_label.setText("failed")
            if outcome.details:
                messages.log(outcome.details, Qgis.Critical)
            messages.push_error(self.iface, outcome.error or "The run failed.")
        self.runFinished.emit(outcome)
        self.refresh_status()

    # -- backend status -------------------------------------------------------------------

    def refresh_status(self, start: bool = False) -> BackendStatusTask | None:
        """Ask the backend for its status in a task (``start``: auto-start it)."""
        if self.status_task is not None:
            # Models may have changed since that check started (a training just ended).
            self._refresh_again = True
            return None
        self.settings = PluginSettings.load()
        task = BackendStatusTask(backend_config(self.settings, self.backend_process),
                                 start=start)
        task.statusReady.connect(self._status_ready)
        self.status_task = task
        self.status_label.setText("Backend: checking…")
        QgsApplication.taskManager().addTask(task)
        return task

    def _status_ready(self, status: BackendStatus) -> None:
        self.status_task = None
        self.last_status = status
        self.status_label.setText(format_status(status))
        self.status_label.setToolTip(str(status.error) if status.error else status.endpoint)
        if status.connected:
            self._set_models(status.models)
        self.statusChanged.emit(status)
        if self._refresh_again:
            self._refresh_again = False
            self.refresh_status()

    def models(self) -> list[dict]:
        """The backend's models from the last status check (``GET /models`` entries)."""
        return list(self._models)

    def model_info(self, name: str) -> dict | None:
        """The ``/models`` entry of ``name``, or None."""
        return next((m for m in self._models if m.get("name") == name), None)

    def _set_models(self, models: list[dict]) -> None:
        current = self.selected_model()  # by name: labels change (classes), names do not
        self._models = models
        self.model_combo.blockSignals(True)
        self.model_combo.clear()
        self.model_combo.addItem("(default for the mode)", "")
        for m in models:
            name = str(m.get("name", ""))
            if not name:
                continue
            if m.get("trained"):
                classes = ", ".join(str(c) for c in m.get("classes") or [])
                label = f"{name} (fine-tuned: {classes})" if classes else f"{name} (fine-tuned)"
            else:
                note = "" if m.get("weights_available", True) else " (weights missing)"
                label = f"{name}{note}"
            self.model_combo.addItem(label, name)
        idx = self.model_combo.findData(current)
        if idx >= 0:
            self.model_combo.setCurrentIndex(idx)
        else:  # a typed name the backend does not list (yet): keep it
            self.model_combo.setEditText(current)
        self.model_combo.blockSignals(False)

    def select_model(self, name: str) -> bool:
        """Choose a listed model as if picked from the list; False when not listed."""
        idx = self.model_combo.findData(name)
        if idx < 0:
            return False
        self.model_combo.setCurrentIndex(idx)
        self._model_chosen(idx)
        return True

    def _model_chosen(self, index: int) -> None:
        """A fine-tuned model answers class lists: use its classes when the query is empty."""
        info = self.model_info(str(self.model_combo.itemData(index) or ""))
        if not info or not info.get("trained"):
            return
        if info.get("classes") and not self.query_combo.currentText().strip():
            self.set_query(", ".join(str(c) for c in info["classes"]))
        if self.mode_combo.currentData() == "reasoning":
            self.set_mode("open_vocabulary")  # it cannot answer sentences

    # -- export ---------------------------------------------------------------------------

    def export_target(self) -> QgsVectorLayer | None:
        """The layer Export… writes: the active vector layer, else the last result."""
        active = self.iface.activeLayer() if self.iface is not None else None
        if isinstance(active, QgsVectorLayer):
            return active
        if self.last_layer is not None:
            try:
                if self.last_layer.isValid():
                    return self.last_layer
            except RuntimeError:  # deleted
                return None
        return None

    def export_dialog(self) -> None:
        layer = self.export_target()
        if layer is None:
            messages.push(self.iface, "Run a segmentation (or select a vector layer) first.",
                          Qgis.Warning)
            return
        start = os.path.join(str(self.settings.results_dir()), layer.name())
        path, selected = QFileDialog.getSaveFileName(
            self, "Export result", start, FILE_FILTER)
        if not path:
            return
        fmt = selected.split(" (")[0] if selected else None
        try:
            out = export_layer(layer, path, fmt)
        except ExportLayerError as exc:
            messages.push_error(self.iface, exc)
            return
        messages.push(self.iface, f"Exported '{layer.name()}' to {out}.", Qgis.Success)

    # -- teardown -------------------------------------------------------------------------

    def shutdown(self) -> None:
        """Cancel running work (plugin unload)."""
        if self.task is not None:
            self.task.cancel()
        canvas = self.iface.mapCanvas() if self.iface is not None else None
        if canvas is not None and self._extent_tool is not None:
            canvas.unsetMapTool(self._extent_tool)
