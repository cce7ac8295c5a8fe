"""The widgets of the "Segment by description" dock, built in code (no .ui file).

:class:`DockForm` lays out the dock's inputs, area, advanced options, buttons, preview and
status rows and names each widget; what the widgets do lives in
:class:`~rs_reasoner_plugin.dock.SegmentDock`, which the slots connected here belong to.
"""

from __future__ import annotations

from qgis.core import (
    QgsMapLayerProxyModel,
)
from qgis.gui import QgsCollapsibleGroupBox, QgsMapLayerComboBox
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
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

from .help import open_help
from .land_cover_picker import LandCoverPicker
from .params import (
    AUTO_MIN_AREA_PX,
    AUTO_SIMPLIFY_PX,
    MODES,
    SegmentOptions,
    bounds,
    defaults,
)
from .settings import AUTO

#: Area choices: key → label.
AREAS: list[tuple[str, str]] = [
    ("canvas", "Current map view"),
    ("layer", "Layer extent"),
    ("drawn", "Rectangle drawn on the map"),
    ("selection", "Selected features of a polygon layer"),
]

#: The initial values of the advanced options.
_OPTIONS = defaults(SegmentOptions)


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


def spin_value(spin: QDoubleSpinBox) -> float | None:
    """The spin's value; None for "by resolution"."""
    return None if spin.value() < 0 else spin.value()


class DockForm:
    """The dock's widgets (a mixin of :class:`~rs_reasoner_plugin.dock.SegmentDock`)."""

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
        self.model_combo.currentTextChanged.connect(self._update_fusion)
        adv.addRow("Model", self.model_combo)
        # Shown for a fine-tuned model only: its classes are what the maps' classes become.
        self.fuse_box = LandCoverPicker("Fuse with land-cover maps", "model class",
                                        self.advanced)
        adv.addRow(self.fuse_box)
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

