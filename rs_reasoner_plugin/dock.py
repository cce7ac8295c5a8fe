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
    QgsCsException,
    QgsGeometry,
    QgsMapLayerProxyModel,
    QgsProject,
    QgsRasterLayer,
    QgsRectangle,
    QgsVectorLayer,
)
from qgis.gui import QgsCollapsibleGroupBox, QgsDockWidget, QgsMapLayerComboBox, QgsMapToolExtent
from qgis.PyQt.QtCore import Qt, QTimer, pyqtSignal
from qgis.PyQt.QtWidgets import (
    QCheckBox,
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
from .area_outline import AreaOutline
from .backend_process import BackendProcess
from .errors import InputError
from .export import FILE_FILTER, ExportLayerError, export_layer
from .help import open_help
from .params import (
    AUTO_MIN_AREA_PX,
    AUTO_SIMPLIFY_PX,
    MODES,
    Extent,
    SegmentOptions,
    bounds,
    defaults,
)
from .raster_export import (
    ExportError,
    local_file_path,
    native_resolution,
    prepare_export,
)
from .result_preview import ResultPreview
from .result_style import result_layer_name
from .results import add_to_project
from .run_request import ChoiceError, RunChoices, build_request
from .settings import AUTO, PluginSettings
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
#: Seconds between two checks of the backend while the dock is shown.
STATUS_INTERVAL_S = 15

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


def _auto_spin(spin: QDoubleSpinBox) -> QDoubleSpinBox:
    """Give ``spin`` an "by resolution" value below 0 (the option is then derived from the
    ground resolution) and start it there."""
    spin.setMinimum(AUTO)
    spin.setSpecialValueText("by resolution")
    spin.setValue(AUTO)
    return spin


def _spin_value(spin: QDoubleSpinBox) -> float | None:
    """The spin's value; None for "by resolution"."""
    return None if spin.value() < 0 else spin.value()


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
        self.preview: ResultPreview | None = None
        canvas = iface.mapCanvas() if iface is not None else None
        self.outline = AreaOutline(canvas)
        self._build()
        self._load_history()
        self._restore_choices()
        self._update_area_widgets()
        self._set_running(False)
        # The status line follows the backend while the dock is shown (it may be started,
        # stopped or set up outside the dock).
        self.status_timer = QTimer(self)
        self.status_timer.setInterval(STATUS_INTERVAL_S * 1000)
        self.status_timer.timeout.connect(self._timed_refresh)
        self.visibilityChanged.connect(self._visibility_changed)

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
        outer.addLayout(self._build_preview_row(body))
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
        self.query_combo.lineEdit().setPlaceholderText("e.g. trees, water")
        self.query_combo.setToolTip(
            "What to segment: class names separated by commas (\"buildings, roads, water\") "
            "or a sentence (\"the buildings most at risk from the river\"). Enter runs it; "
            "the list holds your recent queries.")
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
        self.draw_button.setToolTip("Drag a rectangle on the map; it stays outlined")
        self.area_combo.setToolTip(
            "Where to segment: the map view, the whole raster, a rectangle you draw, or the "
            "selected polygons of a layer (results are clipped to them)")
        self.draw_button.clicked.connect(self.start_drawing)
        area_row.addWidget(self.area_combo, 1)
        area_row.addWidget(self.draw_button)
        form.addRow("Area", area_row)

        self.mask_combo = QgsMapLayerComboBox(body)
        self.mask_combo.setFilters(QgsMapLayerProxyModel.PolygonLayer)
        self.mask_combo.setToolTip("Polygon layer whose selected features are the area")
        self.mask_combo.layerChanged.connect(self._mask_changed)
        self.mask_label = QLabel("Polygons", body)
        form.addRow(self.mask_label, self.mask_combo)

    def _build_advanced(self, body: QWidget) -> QgsCollapsibleGroupBox:
        """Model, bands, resolution and the options, starting at the plugin's defaults
        (:class:`~.params.SegmentOptions`)."""
        self.advanced = QgsCollapsibleGroupBox("Advanced options", body)
        self.advanced.setCollapsed(True)
        for button in self.advanced.findChildren(QToolButton):  # the collapse button
            button.setToolTip("Show or hide the advanced options")
        adv = QFormLayout(self.advanced)
        self.model_combo = QComboBox(self.advanced)
        self.model_combo.setEditable(True)
        self.model_combo.addItem("(default for the mode)", "")
        self.model_combo.setToolTip(
            "The model to run. Default: the mode's best model whose weights are on this "
            "machine. Fine-tuned models list their classes; choosing one fills an empty "
            "query with them. Remembered for next time.")
        self.model_combo.activated.connect(self._model_chosen)
        adv.addRow("Model", self.model_combo)
        self.bands_edit = QLineEdit(self.advanced)
        self.bands_edit.setPlaceholderText("RGB or bands 1-3; e.g. 4 3 2")
        self.bands_edit.setToolTip("Band numbers to read as red, green, blue (or one band), "
                                   "e.g. '4 3 2' for false colour; empty: the raster's RGB")
        adv.addRow("Bands", self.bands_edit)
        self.resolution_spin = _number_spin(
            self.advanced, decimals=4, maximum=1e7, special="native",
            tip="Ground resolution in the raster's map units per pixel (native: the "
            "raster's own)")
        adv.addRow("Ground resolution", self.resolution_spin)
        self.score_spin = _number_spin(
            self.advanced, "score_threshold", step=0.05,
            tip="Pixels scoring below this are not part of a class (lower finds more, with "
            "more false positives)")
        adv.addRow("Score threshold", self.score_spin)
        self.min_area_spin = _auto_spin(_number_spin(
            self.advanced, "min_area", decimals=3, maximum=1e12,
            tip=f"Drop smaller polygons (map units²). 'by resolution': "
            f"{AUTO_MIN_AREA_PX:g} pixels of the ground resolution"))
        adv.addRow("Minimum area", self.min_area_spin)
        self.simplify_spin = _auto_spin(_number_spin(
            self.advanced, "simplify", decimals=3, maximum=1e6,
            tip=f"Simplification tolerance (map units). 'by resolution': "
            f"{AUTO_SIMPLIFY_PX:g} pixel of the ground resolution"))
        adv.addRow("Simplification", self.simplify_spin)
        self.tile_spin = QSpinBox(self.advanced)
        # 0 shows "default": the backend's tile size (the model's own for some models).
        self.tile_spin.setRange(0, int(bounds(SegmentOptions, "tile_size")[1]))
        self.tile_spin.setSingleStep(256)
        self.tile_spin.setSpecialValueText("default")
        self.tile_spin.setValue(_OPTIONS["tile_size"] or 0)
        self.tile_spin.setToolTip("Tile edge in pixels (smaller tiles need less GPU memory)")
        adv.addRow("Tile size", self.tile_spin)
        self.preview_check = QCheckBox("Preview before adding", self.advanced)
        self.preview_check.setToolTip("Show the polygons on the map first; Accept adds the "
                                      "layer, Discard deletes the result")
        adv.addRow("", self.preview_check)
        self.per_class_check = QCheckBox("One layer per class", self.advanced)
        self.per_class_check.setToolTip("Add each class of a multi-class result as a layer "
                                        "of its own")
        adv.addRow("", self.per_class_check)
        return self.advanced

    def _build_buttons(self, body: QWidget) -> QHBoxLayout:
        buttons = QHBoxLayout()
        self.segment_button = QPushButton("Segment", body)
        self.segment_button.setDefault(True)
        self.segment_button.setToolTip("Run the query on the chosen raster and area (the "
                                       "backend starts if needed)")
        self.segment_button.clicked.connect(self.start_run)
        self.cancel_button = QPushButton("Cancel", body)
        self.cancel_button.setToolTip("Stop the run (the backend stops after the current "
                                      "tile)")
        self.cancel_button.clicked.connect(self.cancel_run)
        self.export_button = QPushButton("Export…", body)
        self.export_button.setToolTip("Save the result layer as Shapefile, GeoPackage or "
                                      "GeoJSON")
        self.export_button.clicked.connect(self.export_dialog)
        buttons.addWidget(self.segment_button, 1)
        buttons.addWidget(self.cancel_button)
        buttons.addWidget(self.export_button)
        self.help_button = QToolButton(body)
        self.help_button.setText("?")
        self.help_button.setToolTip("Open the plugin guide in the web browser")
        self.help_button.clicked.connect(lambda: open_help())
        buttons.addWidget(self.help_button)
        return buttons

    def _build_preview_row(self, body: QWidget) -> QHBoxLayout:
        """Accept / Discard of a previewed result (hidden when none waits)."""
        row = QHBoxLayout()
        self.preview_label = QLabel("", body)
        self.preview_label.setWordWrap(True)
        self.accept_button = QPushButton("Accept", body)
        self.accept_button.setToolTip("Add the previewed result to the project")
        self.accept_button.clicked.connect(self.accept_preview)
        self.discard_button = QPushButton("Discard", body)
        self.discard_button.setToolTip("Remove the preview and delete its file")
        self.discard_button.clicked.connect(self.discard_preview)
        row.addWidget(self.preview_label, 1)
        row.addWidget(self.accept_button)
        row.addWidget(self.discard_button)
        self._show_preview_row(False)
        return row

    def _show_preview_row(self, shown: bool) -> None:
        for w in (self.preview_label, self.accept_button, self.discard_button):
            w.setVisible(shown)

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

    def _restore_choices(self) -> None:
        """The mode, model and advanced options of the last run (per user)."""
        st = self.settings
        self.set_mode(st.last_mode)
        if st.last_model:
            self.model_combo.setEditText(st.last_model)
        self.bands_edit.setText(st.bands)
        self.resolution_spin.setValue(st.resolution)
        self.score_spin.setValue(st.score_threshold)
        self.min_area_spin.setValue(st.min_area)
        self.simplify_spin.setValue(st.simplify)
        self.tile_spin.setValue(int(st.tile_size))
        self.preview_check.setChecked(st.preview_results)
        self.per_class_check.setChecked(st.layer_per_class)

    def _remember_choices(self) -> None:
        """Store what :meth:`_restore_choices` restores (at each run)."""
        st = self.settings
        st.last_mode = self.mode_combo.currentData() or "auto"
        st.last_model = self.selected_model()
        st.bands = self.bands_edit.text().strip()
        st.resolution = self.resolution_spin.value()
        st.score_threshold = self.score_spin.value()
        st.min_area = self.min_area_spin.value()
        st.simplify = self.simplify_spin.value()
        st.tile_size = float(self.tile_spin.value())
        st.preview_results = self.preview_check.isChecked()
        st.layer_per_class = self.per_class_check.isChecked()

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
        self._update_outline()

    def _mask_changed(self, *_: object) -> None:
        # A polygon layer added to the project (a result) becomes the combo's choice: it is
        # the area only when the selection is.
        if self.area_combo.currentData() == "selection":
            self._update_outline()

    def _update_outline(self, *_: object) -> None:
        """Outline the chosen area on the map: the drawn rectangle or the selection."""
        key = self.area_combo.currentData()
        if key == "drawn" and self.drawn_extent is not None and not self.drawn_extent.isEmpty():
            self.outline.show(QgsGeometry.fromRect(self.drawn_extent),
                              self.drawn_crs or QgsCoordinateReferenceSystem())
        elif key == "selection":
            mask = self.mask_combo.currentLayer()
            geoms = [f.geometry() for f in mask.selectedFeatures() if f.hasGeometry()] if (
                isinstance(mask, QgsVectorLayer)) else []
            if geoms:
                self.outline.show(QgsGeometry.unaryUnion(geoms), mask.crs())
            else:
                self.outline.clear()
        else:
            self.outline.clear()

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

    def settings_saved(self) -> BackendStatusTask | None:
        """The settings dialog was accepted: re-read it and check the backend at once,
        starting it when auto-start is on (the status line shows the new backend)."""
        self.reload_settings()
        self.status_label.setText("Backend: checking…")
        return self.refresh_status(start=True)

    def _visibility_changed(self, visible: bool) -> None:
        if visible:
            self.status_timer.start()
        else:
            self.status_timer.stop()

    def _timed_refresh(self) -> None:
        if self.task is None:  # a run reports the backend's state itself
            self.refresh_status()

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
        self._update_outline()

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
        try:
            return tr.transformBoundingBox(rect)
        except QgsCsException:  # e.g. a world-wide view into a UTM zone
            raise InputError(
                f"The area cannot be expressed in the raster's CRS ({dst.authid() or 'custom'})"
                ": zoom to the raster (right-click it ▸ Zoom to Layer) or choose 'Layer "
                "extent' as the area.") from None

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
            min_area=_spin_value(self.min_area_spin),
            simplify=_spin_value(self.simplify_spin),
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
        self._check_overlap(layer, extent)
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
            layer_name=result_layer_name(built.params.query),
            target_crs=target,
            transform_context=project.transformContext(),
            clip=clip,
        )

    def _check_overlap(self, layer: QgsRasterLayer, extent: QgsRectangle | None) -> None:
        """An area beside the raster is refused with what to do instead."""
        if extent is None or not layer.extent().isFinite() or layer.extent().isEmpty():
            return
        if extent.intersects(layer.extent()):
            return
        area = self.area_combo.currentText().lower()
        raise InputError(
            f"The area ({area}) does not overlap raster '{layer.name()}'. Zoom to the raster "
            "(right-click it in the Layers panel ▸ Zoom to Layer), draw the rectangle on it, "
            "or choose 'Layer extent' as the area.")

    def _canvas_resolution(self, layer: QgsRasterLayer) -> float | None:
        canvas = self.iface.mapCanvas() if self.iface is not None else None
        if canvas is None or canvas.width() <= 0:
            return None
        try:
            ext = self._transform_rect(canvas.extent(),
                                       canvas.mapSettings().destinationCrs(), layer.crs())
        except InputError:  # the view cannot say: the export falls back to the native one
            return None
        return ext.width() / canvas.width() if ext.width() > 0 else None

    # -- running --------------------------------------------------------------------------

    def start_run(self) -> SegmentTask | None:
        """Start a run with the dock's inputs; problems go to the message bar."""
        if self.task is not None:
            return None
        messages.clear(self.iface)  # the last run's messages are about the last run
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
        self._remember_choices()
        self.settings.save()
        if self.preview is not None:  # a new run replaces a result left unaccepted
            self.discard_preview()
        self._run_layer = self.layer_combo.currentLayer()
        self._outline_run(spec)
        self._load_history()
        self.query_combo.setEditText(spec.params.query)
        task = SegmentTask(spec, backend_config(self.settings, self.backend_process))
        task.runFinished.connect(self._run_finished)
        self.reasoning.clear()
        self._launch(task)
        return task

    def _outline_run(self, spec: RunSpec) -> None:
        """Outline the area the run reads (the drawn or selected area is outlined already)."""
        if self.area_combo.currentData() in ("drawn", "selection"):
            return
        layer = self.layer_combo.currentLayer()
        ext = spec.params.extent
        rect = QgsRectangle(ext.xmin, ext.ymin, ext.xmax, ext.ymax) if ext is not None else (
            spec.export.extent if spec.export is not None else layer.extent())
        self.outline.show(QgsGeometry.fromRect(rect), layer.crs())

    def cancel_run(self) -> None:
        """Cancel the running job (the backend stops after the current tile)."""
        self._cancel_task()

    def _run_finished(self, outcome: RunOutcome) -> None:
        task = self._task_done(outcome)
        self.progress.setValue(100 if outcome.status == "succeeded" else 0)
        if outcome.status == "succeeded" and outcome.written is not None and task is not None:
            self._result_ready(task.spec, outcome)
        elif outcome.status == "cancelled":
            self.stage_label.setText("cancelled")
            messages.push(self.iface, "Segmentation cancelled.", Qgis.Info)
        else:
            self.stage_label.setText("failed — see Details in the message bar")
            messages.push_error(self.iface, outcome.error or "The run failed.",
                                details=outcome.details)
        self.runFinished.emit(outcome)
        self.refresh_status()

    def _result_ready(self, spec: RunSpec, outcome: RunOutcome) -> None:
        """A result: explained when empty, else previewed or added."""
        written = outcome.written
        model = str((outcome.job or {}).get("model") or spec.params.model or "")
        name = result_layer_name(spec.params.query, model)
        reasoning = written.reasoning or str((outcome.job or {}).get("reasoning") or "")
        self.reasoning.setPlainText(reasoning)
        n = written.feature_count
        if n == 0:
            ResultPreview(written, name, None).discard()
            self.stage_label.setText("no polygons — see the message above the map")
            messages.push(self.iface, self._empty_hint(spec, model), Qgis.Warning)
            return
        canvas = self.iface.mapCanvas() if self.iface is not None else None
        preview = ResultPreview(written, name, canvas if self.preview_check.isChecked() else None,
                                per_class=self.per_class_check.isChecked())
        polygons = f"{n} polygon{'s' if n != 1 else ''}"
        if self.preview_check.isChecked():
            self.preview = preview
            self.preview_label.setText(f"Preview: {polygons} ({model or 'default model'}). "
                                       "Add them to the project?")
            self._show_preview_row(True)
            self.stage_label.setText(f"done: {polygons} — accept or discard the preview")
            return
        self._add_layers(preview)
        self.stage_label.setText(f"done: {polygons}")
        messages.push(self.iface, f"{polygons} in layer '{name}' ({written.path}).",
                      Qgis.Success)

    def _empty_hint(self, spec: RunSpec, model: str) -> str:
        """Why a run may have found nothing, and what to try."""
        opts = spec.params.options
        text = (f"No polygon matched '{spec.params.query}'"
                f"{f' (model {model})' if model else ''}. Try a lower score threshold (now "
                f"{opts.score_threshold:g}), a smaller minimum area (now {opts.min_area:g}), "
                "other words or another model, or a larger area.")
        layer = getattr(self, "_run_layer", None)
        if isinstance(layer, QgsRasterLayer) and layer.isValid() and layer.bandCount() == 1:
            text += (f" Raster '{layer.name()}' has a single band: classes told apart by "
                     "colour (trees, water) may not show in it; segment a colour raster.")
        return text

    def _add_layers(self, preview: ResultPreview) -> list[QgsVectorLayer]:
        try:
            layers = preview.accept()
        except Exception as exc:  # noqa: BLE001 - shown in the message bar
            messages.push_error(self.iface, exc)
            return []
        for layer in reversed(layers):
            add_to_project(layer)
        self.last_layer = layers[0] if layers else None
        return layers

    def accept_preview(self) -> list[QgsVectorLayer]:
        """Add the previewed result to the project; returns its layers."""
        preview, self.preview = self.preview, None
        self._show_preview_row(False)
        if preview is None:
            return []
        layers = self._add_layers(preview)
        n = preview.written.feature_count
        self.stage_label.setText(f"added: {n} polygon{'s' if n != 1 else ''}")
        if layers:
            messages.push(self.iface, f"{n} polygon{'s' if n != 1 else ''} in layer "
                          f"'{preview.name}' ({preview.written.path}).", Qgis.Success)
        return layers

    def discard_preview(self) -> None:
        """Drop the previewed result (its file is deleted)."""
        preview, self.preview = self.preview, None
        self._show_preview_row(False)
        if preview is not None:
            preview.discard()
            self.stage_label.setText("discarded")

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
        self.status_timer.stop()
        if self.preview is not None:
            self.preview.hide()  # the file stays for the user
            self.preview = None
        self.outline.clear()
        canvas = self.iface.mapCanvas() if self.iface is not None else None
        if canvas is not None and self._extent_tool is not None:
            canvas.unsetMapTool(self._extent_tool)
