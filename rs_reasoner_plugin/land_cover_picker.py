"""The "Land-cover maps (optional)" box: raster layers of the project picked as land-cover
products, each with a legend (a built-in one or the raster's own classes) and a table
mapping the product's classes to the user's classes.

Used by the fine-tune dialog (weak labels) and, with the trained model's classes as the
user's classes, by the dock (fusion at inference). The data side (classes, guesses,
mapping files) is :mod:`.land_cover_classes`.
"""

from __future__ import annotations

from typing import Any

from qgis.core import QgsMapLayerProxyModel, QgsRasterLayer
from qgis.gui import QgsCollapsibleGroupBox, QgsMapLayerComboBox
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtGui import QColor, QIcon, QPixmap
from qgis.PyQt.QtWidgets import (
    QAbstractButton,
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QListWidget,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from .land_cover_classes import (
    MAX_MAPS,
    LandCoverError,
    LandCoverMap,
    guess_legend,
    guess_mapping,
    make_map,
)
from .land_cover_legends import BUILTIN_LEGENDS, builtin_legend

#: The "your class" entry that leaves a product class out.
IGNORE_TEXT = "— ignore —"
#: Where a table row keeps its product class key.
_KEY_ROLE = Qt.UserRole + 1
#: Legend combo entry for the raster's own classes.
OWN_CLASSES = "the raster's own classes"


def _swatch(colour: str | None) -> QIcon:
    pixmap = QPixmap(12, 12)
    pixmap.fill(QColor(colour) if colour else QColor(0, 0, 0, 0))
    return QIcon(pixmap)


class LandCoverPicker(QgsCollapsibleGroupBox):
    """Pick land-cover layers and map their classes to the user's.

    Args:
        title: The box's title.
        user_what: What the user's classes are, for texts ("your classes").
        parent: Parent widget.
    """

    def __init__(self, title: str = "Land-cover maps (optional)",
                 user_what: str = "your class", parent: QWidget | None = None) -> None:
        super().__init__(title, parent)
        self.setCollapsed(True)
        for button in self.findChildren(QToolButton):  # the collapse button
            button.setToolTip("Show or hide the land-cover maps")
        self.maps: list[LandCoverMap] = []
        self.user_classes: list[str] = []
        self._user_what = user_what
        self._build()
        self._layer_changed()
        self._show_map()

    def _build(self) -> None:
        outer = QVBoxLayout(self)
        pick = QHBoxLayout()
        self.layer_combo = QgsMapLayerComboBox(self)
        self.layer_combo.setFilters(QgsMapLayerProxyModel.RasterLayer)
        self.layer_combo.setAllowEmptyLayer(True)
        self.layer_combo.setLayer(None)
        self.layer_combo.setToolTip("A land-cover map of the area (ESA WorldCover, Dynamic "
                                    "World, CORINE, a national product…): one band of "
                                    "class codes, any CRS and resolution")
        self.layer_combo.layerChanged.connect(self._layer_changed)
        pick.addWidget(self.layer_combo, 2)
        self.legend_combo = QComboBox(self)
        for legend in BUILTIN_LEGENDS:
            self.legend_combo.addItem(legend.title, legend.name)
        self.legend_combo.addItem(OWN_CLASSES, None)
        self.legend_combo.setToolTip("The product's legend: a built-in one, or the codes the "
                                     "raster holds (named by its palette where it has one)")
        pick.addWidget(self.legend_combo, 1)
        self.add_button = QPushButton("Add", self)
        self.add_button.setToolTip("Add this layer as a land-cover map")
        self.add_button.clicked.connect(self._add_clicked)
        pick.addWidget(self.add_button)
        outer.addLayout(pick)

        listed = QHBoxLayout()
        self.maps_list = QListWidget(self)
        self.maps_list.setMaximumHeight(70)
        self.maps_list.setToolTip("The land-cover maps used; choose one to edit its classes")
        self.maps_list.currentRowChanged.connect(self._show_map)
        listed.addWidget(self.maps_list, 1)
        self.remove_button = QPushButton("Remove", self)
        self.remove_button.setToolTip("Do not use the chosen land-cover map")
        self.remove_button.clicked.connect(self._remove_clicked)
        listed.addWidget(self.remove_button)
        outer.addLayout(listed)

        self.note_label = QLabel("", self)
        self.note_label.setWordWrap(True)
        outer.addWidget(self.note_label)
        self.table = QTableWidget(0, 2, self)
        self.table.setHorizontalHeaderLabels(["Product class", self._user_what.capitalize()])
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.Stretch)
        self.table.verticalHeader().setVisible(False)
        self.table.setSelectionMode(QAbstractItemView.NoSelection)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.setToolTip(f"Which {self._user_what} each class of the product is; "
                              f"'{IGNORE_TEXT}': no label from it")
        self.table.setCornerButtonEnabled(False)
        for button in self.table.findChildren(QAbstractButton):  # the (inert) corner button
            button.setToolTip("The land-cover map's classes")
        outer.addWidget(self.table)

    # -- what callers use -----------------------------------------------------------------

    def set_user_classes(self, classes: list[str]) -> None:
        """The classes the products map to (the class field's values, or a model's
        classes). Choices that are no longer classes are dropped; unmapped product classes
        of the same name as a user class are mapped to it."""
        self.user_classes = list(classes)
        users = set(self.user_classes)
        for m in self.maps:
            m.mapping = {k: v for k, v in m.mapping.items() if v in users}
            guessed = guess_mapping(m.classes, self.user_classes)
            m.mapping.update({k: v for k, v in guessed.items() if k not in m.mapping})
        self._show_map()

    def add_map(self, layer: QgsRasterLayer, legend: str | None) -> LandCoverMap:
        """Add ``layer`` with the built-in legend named ``legend`` (None: the raster's own
        classes) and show its mapping table.

        Raises:
            LandCoverError: The layer is not a land-cover map, is already used, or the
                most maps are used.
        """
        if any(m.layer is layer for m in self.maps):
            raise LandCoverError(f"Layer '{layer.name()}' is already a land-cover map here.",
                                 "Choose it in the list to edit its classes.")
        if len(self.maps) >= MAX_MAPS:
            raise LandCoverError(f"At most {MAX_MAPS} land-cover maps can be used at once.",
                                 "Remove one first.")
        found = make_map(layer, builtin_legend(legend), self.user_classes)
        self.maps.append(found)
        self.maps_list.addItem(found.title)
        self.maps_list.setCurrentRow(len(self.maps) - 1)
        return found

    def remove_map(self, index: int) -> None:
        """Stop using the map at ``index``."""
        if 0 <= index < len(self.maps):
            del self.maps[index]
            self.maps_list.takeItem(index)
            self._show_map()

    def current_map(self) -> LandCoverMap | None:
        row = self.maps_list.currentRow()
        return self.maps[row] if 0 <= row < len(self.maps) else None

    def set_mapping(self, key: str, user_class: str | None) -> None:
        """Map product class ``key`` of the shown map to ``user_class`` (None: ignore),
        as choosing it in the table does."""
        for row in range(self.table.rowCount()):
            if self.table.item(row, 0).data(_KEY_ROLE) == key:
                combo = self.table.cellWidget(row, 1)
                combo.setCurrentIndex(max(0, combo.findData(user_class)))
                return
        raise KeyError(key)

    def set_busy(self, busy: bool) -> None:
        """Disable editing while a run uses the maps."""
        for w in (self.layer_combo, self.legend_combo, self.add_button, self.maps_list,
                  self.remove_button, self.table):
            w.setEnabled(not busy)

    # -- reactions ------------------------------------------------------------------------

    def _layer_changed(self, *_: Any) -> None:
        layer = self.layer_combo.currentLayer()
        self.add_button.setEnabled(isinstance(layer, QgsRasterLayer))
        if isinstance(layer, QgsRasterLayer):
            legend = guess_legend(layer)  # a product drawn in its official palette
            self.legend_combo.setCurrentIndex(
                self.legend_combo.findData(legend.name if legend is not None else None))

    def _add_clicked(self) -> None:
        layer = self.layer_combo.currentLayer()
        if not isinstance(layer, QgsRasterLayer):
            return
        try:
            self.add_map(layer, self.legend_combo.currentData())
        except LandCoverError as exc:
            self.note_label.setText(str(exc))

    def _remove_clicked(self) -> None:
        self.remove_map(self.maps_list.currentRow())

    def _show_map(self, *_: Any) -> None:
        m = self.current_map()
        self.remove_button.setEnabled(m is not None)
        self.table.setRowCount(0)
        if m is None:
            self.note_label.setText("" if self.maps else
                                    "None: training uses the parcels only.")
            return
        self.note_label.setText(
            f"Classes of {m.title} and the {self._user_what} each one is"
            + ("" if self.user_classes else " (choose the class field first)") + ".")
        self.table.setRowCount(len(m.classes))
        for row, cls in enumerate(m.classes):
            item = QTableWidgetItem(_swatch(cls.colour), cls.label)
            item.setData(_KEY_ROLE, cls.key)
            self.table.setItem(row, 0, item)
            combo = QComboBox(self.table)
            combo.addItem(IGNORE_TEXT, None)
            for name in self.user_classes:
                combo.addItem(name, name)
            combo.setCurrentIndex(max(0, combo.findData(m.mapping.get(cls.key))))
            combo.setToolTip(f"The {self._user_what} that '{cls.label}' is")
            combo.currentIndexChanged.connect(
                lambda _i, c=combo, k=cls.key, mm=m: self._mapping_chosen(mm, k, c))
            self.table.setCellWidget(row, 1, combo)

    def _mapping_chosen(self, m: LandCoverMap, key: str, combo: QComboBox) -> None:
        value = combo.currentData()
        if value:
            m.mapping[key] = str(value)
        else:
            m.mapping.pop(key, None)

