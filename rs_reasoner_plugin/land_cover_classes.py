"""Land-cover maps as weak labels (``RASTER[:LEGEND][:MAPPING.csv]`` of ``POST /train``)
or fusion sources: the product's classes as the user sees them, the guess of which
of the user's classes each one is, and the mapping CSV the backend reads.

A product's classes come from a built-in legend (WorldCover, Dynamic World, CORINE
level 1), whose class names the mapping file names; or from the raster itself — the
codes it holds, labelled by its palette or GDAL category names — whose codes the
mapping file names. Runs on the GUI thread (reads a decimated block of the layer).
"""

from __future__ import annotations

import csv
import math
import os
import xml.etree.ElementTree as ET
from array import array
from dataclasses import dataclass, field

from qgis.core import (
    Qgis,
    QgsCoordinateTransform,
    QgsMapLayer,
    QgsPalettedRasterRenderer,
    QgsProject,
    QgsRasterLayer,
    QgsRectangle,
)

from .errors import PluginUserError
from .land_cover_legends import BuiltinLegend, legend_by_colours
from .raster_export import local_file_path

#: More distinct codes than this and a band is a measurement, not class codes (the
#: backend's limit too).
MAX_CODES = 256
#: Long side of the decimated read that lists a raster's codes.
_SAMPLE_SIZE = 512
#: The header row of a mapping file (the backend's reader skips it).
MAPPING_HEADER = ("product class", "user class")
#: Most land-cover maps one request takes.
MAX_MAPS = 8


class LandCoverError(PluginUserError):
    """A layer cannot serve as a land-cover map. ``hint`` says what to change."""


@dataclass(frozen=True)
class ProductClass:
    """One class of a product, a row of the mapping table.

    Attributes:
        key: What the mapping file's first column says: a built-in legend's class name,
            or the raster's code.
        name: The class's name ('' when the raster names none).
        codes: Its raster codes as shown ("10", "1, 111, 112, …").
        colour: ``#rrggbb`` to show next to it, or None.
    """

    key: str
    name: str
    codes: str
    colour: str | None = None

    @property
    def label(self) -> str:
        """What the table shows: codes and name."""
        return f"{self.codes} {self.name}".strip()


@dataclass
class LandCoverMap:
    """A land-cover layer, its legend and the user's mapping of its classes.

    Attributes:
        layer: The raster layer.
        legend: A built-in legend, or None for the raster's own classes.
        classes: The product's classes (rows of the mapping table).
        mapping: Product class key -> user class ('' or missing: ignored).
    """

    layer: QgsRasterLayer
    legend: BuiltinLegend | None
    classes: list[ProductClass]
    mapping: dict[str, str] = field(default_factory=dict)

    @property
    def title(self) -> str:
        """``layer name — legend``, for lists."""
        which = self.legend.title if self.legend is not None else "its own classes"
        return f"{self.layer.name()} — {which}"

    def rows(self) -> list[tuple[str, str]]:
        """(product class, user class) rows of the mapped classes, in table order."""
        return [(c.key, self.mapping[c.key]) for c in self.classes if self.mapping.get(c.key)]


def palette(layer: QgsRasterLayer) -> dict[int, tuple[str, str]]:
    """Code -> (label, ``#rrggbb``) of a layer drawn with a paletted/unique-values
    renderer; empty for other renderers."""
    renderer = layer.renderer()
    if not isinstance(renderer, QgsPalettedRasterRenderer):
        return {}
    out = {}
    for cls in renderer.classes():
        value = float(cls.value)
        if value.is_integer():
            out[int(value)] = (str(cls.label or "").strip(), cls.color.name().lower())
    return out


def category_names(layer: QgsRasterLayer) -> dict[int, str]:
    """Code -> category name of band 1 of a local file (the index is the code), from GDAL
    or, as the backend reads them, from ``<raster>.aux.xml`` (GDAL does not return a
    GeoTIFF's names from there)."""
    path = local_file_path(layer)
    if path is None:
        return {}
    from osgeo import gdal

    ds = gdal.Open(path)
    names = (ds.GetRasterBand(1).GetCategoryNames() if ds is not None else None) or []
    if not names and os.path.isfile(path + ".aux.xml"):
        try:
            found = ET.parse(path + ".aux.xml").getroot().find(
                ".//PAMRasterBand/CategoryNames")
        except (ET.ParseError, OSError):
            found = None
        names = [el.text or "" for el in found.findall("Category")] if found is not None else []
    return {i: str(n).strip() for i, n in enumerate(names) if str(n).strip()}


#: ``array`` type codes of the raster data types a class band may have.
_ARRAY_TYPES = {
    Qgis.DataType.Byte: "B", Qgis.DataType.UInt16: "H", Qgis.DataType.Int16: "h",
    Qgis.DataType.UInt32: "I", Qgis.DataType.Int32: "i", Qgis.DataType.Float32: "f",
    Qgis.DataType.Float64: "d",
}


def _rendered_only(layer: QgsRasterLayer) -> bool:
    provider = layer.dataProvider()
    return provider.dataType(1) in (Qgis.DataType.ARGB32, Qgis.DataType.ARGB32_Premultiplied)


def distinct_codes(layer: QgsRasterLayer) -> list[int]:
    """The class codes of band 1 (a decimated read; NoData left out).

    Raises:
        LandCoverError: A web map (rendered colours only), an unreadable layer, or a
            continuous band (fractions, or more than :data:`MAX_CODES` values).
    """
    provider = layer.dataProvider()
    if provider is None or not layer.isValid():
        raise LandCoverError(f"Layer '{layer.name()}' is not valid.", "Pick another raster.")
    if _rendered_only(layer):
        raise LandCoverError(
            f"Layer '{layer.name()}' holds rendered colours (a web map), not class codes.",
            "Add the land-cover product itself (a categorical GeoTIFF, e.g. ESA WorldCover).")
    extent = layer.extent()
    cols, rows = provider.xSize(), provider.ySize()
    scale = max(1.0, max(cols, rows) / _SAMPLE_SIZE) if cols > 0 and rows > 0 else 1.0
    width = max(1, round(cols / scale)) if cols > 0 else _SAMPLE_SIZE
    height = max(1, round(rows / scale)) if rows > 0 else _SAMPLE_SIZE
    block = provider.block(1, extent, width, height)
    typecode = _ARRAY_TYPES.get(block.dataType()) if block is not None else None
    if block is None or not block.isValid() or typecode is None:
        raise LandCoverError(f"Cannot read band 1 of layer '{layer.name()}' as class codes.",
                             "Pick a categorical raster (integer codes, e.g. a GeoTIFF).")
    values = set(array(typecode, bytes(block.data())))  # the block is in native byte order
    if block.hasNoDataValue():
        values.discard(block.noDataValue())
    distinct = sorted(v for v in values if math.isfinite(v))
    if any(v != int(v) for v in distinct) or len(distinct) > MAX_CODES:
        raise LandCoverError(
            f"Band 1 of layer '{layer.name()}' is continuous ({len(distinct)} distinct "
            "values), not a land-cover map of class codes.",
            "Pick a categorical raster with one integer code per class (e.g. ESA "
            "WorldCover), not a measurement such as reflectance or NDVI.")
    return [int(v) for v in distinct]


def guess_legend(layer: QgsRasterLayer) -> BuiltinLegend | None:
    """The built-in legend whose palette gives the codes the layer holds their colours
    (a product drawn in its official palette), or None."""
    drawn = palette(layer)
    if not drawn:
        return None
    try:
        codes = distinct_codes(layer)
    except LandCoverError:
        return None
    if any(c not in drawn for c in codes):
        return None
    return legend_by_colours({c: drawn[c][1] for c in codes})


def product_classes(layer: QgsRasterLayer, legend: BuiltinLegend | None) -> list[ProductClass]:
    """The rows of the mapping table: a built-in legend's classes (by name, with their
    codes), or the codes the raster holds, named by its palette or category names.

    Raises:
        LandCoverError: See :func:`distinct_codes`.
    """
    codes = distinct_codes(layer)  # also refuses web maps and continuous bands
    if legend is not None:
        out = []
        for name in legend.names():
            named = legend.codes_of(name)
            shown = ", ".join(map(str, named[:3])) + (", …" if len(named) > 3 else "")
            colour = next((legend.colours[c] for c in named if c in legend.colours), None)
            out.append(ProductClass(name, name, shown, colour))
        return out
    colours = palette(layer)
    names = {**category_names(layer), **{c: lab for c, (lab, _) in colours.items() if lab}}
    return [ProductClass(str(code), names.get(code, ""), str(code),
                         colours[code][1] if code in colours else None) for code in codes]


def guess_mapping(classes: list[ProductClass], user_classes: list[str]) -> dict[str, str]:
    """Product classes whose name (or code) is one of the user's classes (case ignored)."""
    users = {u.strip().lower(): u for u in user_classes}
    out = {}
    for cls in classes:
        for text in (cls.name, cls.key):
            if text.strip().lower() in users:
                out[cls.key] = users[text.strip().lower()]
                break
    return out


def make_map(layer: QgsRasterLayer, legend: BuiltinLegend | None,
             user_classes: list[str]) -> LandCoverMap:
    """A land-cover map with the guessed mapping (see :func:`guess_mapping`)."""
    classes = product_classes(layer, legend)
    return LandCoverMap(layer, legend, classes, guess_mapping(classes, user_classes))


def overlaps(layer: QgsMapLayer, raster: QgsMapLayer) -> bool:
    """Whether the extents of two layers overlap (in ``raster``'s CRS)."""
    extent = QgsRectangle(layer.extent())
    if layer.crs().isValid() and raster.crs().isValid() and layer.crs() != raster.crs():
        tr = QgsCoordinateTransform(layer.crs(), raster.crs(), QgsProject.instance())
        try:
            extent = tr.transformBoundingBox(extent)
        except Exception:  # noqa: BLE001 - outside the CRS's domain: no overlap
            return False
    return extent.intersects(raster.extent())


def write_mapping(path: str, rows: list[tuple[str, str]]) -> str:
    """Write a mapping CSV (``product class,user class`` rows under a header).

    Returns:
        ``path``.
    """
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(MAPPING_HEADER)
        writer.writerows(rows)
    return path


def weak_spec(raster: str, legend: str | None, mapping: str | None) -> str:
    """``RASTER[:LEGEND][:MAPPING.csv]`` as the backend parses it."""
    return ":".join(p for p in (os.fspath(raster), legend, mapping) if p)

