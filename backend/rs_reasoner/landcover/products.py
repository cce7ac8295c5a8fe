"""Land-cover products read onto a grid (training or segmentation), with a legend.

A product is one categorical band (class codes). It may have any CRS and resolution: it
is reprojected onto the grid with nearest-neighbour resampling (codes must never be
averaged). Its legend (code -> class name) comes from, in this order:

1. a built-in legend named in the spec (``worldcover.tif:worldcover``);
2. a sidecar QGIS style ``<raster>.qml`` / ``<stem>.qml`` (palette or category labels);
3. a sidecar ``<stem>.csv`` with a code and a name column;
4. category names in GDAL's ``<raster>.aux.xml``;
5. the raster's colour table, when it is the palette of a built-in legend;
6. otherwise the codes themselves (a mapping file then names classes by code).

A band that is not categorical (float values with fractions, or more distinct values
than any land-cover legend has) is refused: it is a measurement, not a class map.
"""

from __future__ import annotations

import csv
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.warp import calculate_default_transform, reproject

from rs_reasoner.landcover import LandCoverError
from rs_reasoner.landcover.legends import Legend, legend_by_colours, legend_named

#: More distinct codes than this and a band is not a land-cover map.
MAX_CODES = 256
#: Code of grid pixels the product says nothing about (outside it, or its NoData).
NO_CODE = -1
#: Long side of the decimated read that checks a band is categorical.
_CHECK_SIZE = 512
_MAPPING_SUFFIXES = (".csv", ".txt", ".tsv")
_CODE_HEADERS = {"code", "value", "class_value", "id", "pixel_value", "raster_value"}
_NAME_HEADERS = {"name", "label", "class", "class_name", "description", "classname"}


def _split_entry(text: str) -> list[str]:
    """``text`` split at its colons, except a Windows drive's (``C:\\data\\wc.tif``, in
    the raster's path or the mapping file's: one letter, then a slash)."""
    parts: list[str] = []
    for part in text.split(":"):
        drive = parts and len(parts[-1]) == 1 and parts[-1].isalpha()
        if drive and part[:1] in ("\\", "/"):
            parts[-1] += ":" + part
        else:
            parts.append(part)
    return parts


@dataclass(frozen=True)
class ProductSpec:
    """One ``--weak-labels`` / ``--fuse-land-cover`` entry: ``PATH[:LEGEND][:MAPPING.csv]``.

    Attributes:
        path: The product raster.
        legend: Name of a built-in legend (:data:`~.legends.LEGENDS`), or None.
        mapping: Class mapping CSV (product class -> user class), or None.
    """

    path: str
    legend: str | None = None
    mapping: str | None = None

    @classmethod
    def parse(cls, text: str) -> ProductSpec:
        """Split ``PATH[:LEGEND][:MAPPING.csv]`` (a Windows drive letter stays in the path).

        Raises:
            LandCoverError: An empty path, or a suffix that is neither a legend name nor
                a mapping file.
        """
        parts = _split_entry(str(text).strip())
        legend = mapping = None
        while len(parts) > 1:
            tail = parts[-1]
            if mapping is None and legend is None and tail.lower().endswith(_MAPPING_SUFFIXES):
                mapping = tail
            elif legend is None and legend_named(tail) is not None:
                legend = tail
            elif len(parts[-2]) == 1 and parts[-2].isalpha() and len(parts) == 2:
                break  # "C:\\data\\wc.tif": the colon is the drive's
            else:
                raise LandCoverError(
                    f"Weak-label source {text!r}: {tail!r} is neither a built-in legend nor "
                    "a mapping file (.csv).",
                    "Write PATH, PATH:LEGEND (worldcover, dynamic-world, corine), "
                    "PATH:MAPPING.csv or PATH:LEGEND:MAPPING.csv.",
                )
            parts = parts[:-1]
        path = ":".join(parts)
        if not path:
            raise LandCoverError(
                f"Weak-label source {text!r} has no raster path.", "Write PATH[:MAPPING.csv]."
            )
        return cls(path, legend, mapping)


@dataclass(frozen=True)
class Grid:
    """A grid (training raster or segmented extent): CRS (None: pixel coordinates),
    transform and (rows, cols)."""

    crs: CRS | None
    transform: Affine
    shape: tuple[int, int]

    @property
    def pixel_size(self) -> float:
        """Mean pixel side in CRS units."""
        return float((abs(self.transform.a) * abs(self.transform.e)) ** 0.5)


@dataclass(frozen=True)
class ProductLegend:
    """A product's legend and where it came from (for the report)."""

    classes: dict[int, str]
    origin: str
    named: bool = True


@dataclass
class Product:
    """A product read onto a grid.

    Attributes:
        name: Its file's stem (for messages and the report).
        path: The raster.
        codes: (H, W) int32 class codes, :data:`NO_CODE` where it says nothing.
        legend: Its legend.
        pixel_ratio: Its pixel side over the grid's (10: a 10x coarser product).
    """

    name: str
    path: str
    codes: np.ndarray
    legend: ProductLegend
    pixel_ratio: float


def read_product(spec: ProductSpec, grid: Grid, allow_empty: bool = False) -> Product:
    """Read a product onto ``grid`` (nearest neighbour) with its legend.

    Args:
        spec: The product.
        grid: The grid.
        allow_empty: Accept a grid the product says nothing about (one window of a larger
            area: the product may cover the rest).

    Raises:
        LandCoverError: Unreadable, continuous, without CRS where one is needed, or not
            overlapping the grid (unless ``allow_empty``).
    """
    path = os.fspath(spec.path)
    name = Path(path).stem
    ds = _open(path)
    with ds:
        sample = _check_categorical(ds, path)
        legend = _legend(spec, ds, path, sample)
        src_crs, dst_crs = ds.crs, grid.crs
        if (src_crs is None) != (dst_crs is None):
            which = "land-cover raster" if src_crs is None else "raster"
            raise LandCoverError(
                f"The {which} has no CRS, so {name} cannot be placed on its grid.",
                "Assign the CRS (QGIS: Raster > Projections > Assign Projection).",
            )
        if src_crs is None:  # both in pixel coordinates: only the transforms matter
            src_crs = dst_crs = CRS.from_epsg(3857)
        codes = np.full(grid.shape, NO_CODE, np.int32)
        reproject(
            source=rasterio.band(ds, 1),
            destination=codes,
            src_crs=src_crs,
            dst_crs=dst_crs,
            dst_transform=grid.transform,
            src_nodata=ds.nodata,
            dst_nodata=NO_CODE,
            resampling=Resampling.nearest,
        )
        # The product's pixel side in grid units: how coarse its class boundaries are.
        dst_transform, _, _ = calculate_default_transform(
            src_crs, dst_crs, ds.width, ds.height, *ds.bounds
        )
        ratio = float((abs(dst_transform.a) * abs(dst_transform.e)) ** 0.5) / grid.pixel_size
    if legend.named:  # codes outside a known legend are not classes (e.g. 0 = no data)
        codes[~np.isin(codes, list(legend.classes))] = NO_CODE
    if not allow_empty and not (codes != NO_CODE).any():
        raise LandCoverError(
            f"The land-cover raster {name} does not overlap the raster (or holds "
            "only NoData or codes outside its legend there).",
            "Give a product covering the area (check its extent and CRS).",
        )
    return Product(name, path, codes, legend, max(ratio, 1.0))


@dataclass(frozen=True)
class ProductFacts:
    """What a cheap look at a product says (no reprojection): for submit-time checks.

    Attributes:
        name: Its file's stem.
        legend: Its legend.
        crs: Its CRS (None: pixel coordinates).
        bounds: (left, bottom, right, top) in its CRS.
    """

    name: str
    legend: ProductLegend
    crs: CRS | None
    bounds: tuple[float, float, float, float]


def describe_product(spec: ProductSpec) -> ProductFacts:
    """Open a product, refuse a continuous band and find its legend, without reading it
    onto a grid (a decimated read of band 1).

    Raises:
        LandCoverError: Missing, unreadable or continuous.
    """
    path = os.fspath(spec.path)
    ds = _open(path)
    with ds:
        codes = _check_categorical(ds, path)
        if not len(codes):
            raise LandCoverError(
                f"The land-cover raster {Path(path).stem} holds only NoData.",
                "Give a product with class codes over the area.",
            )
        legend = _legend(spec, ds, path, codes)
        return ProductFacts(Path(path).stem, legend, ds.crs, tuple(ds.bounds))


def _open(path: str) -> Any:
    if not Path(path).exists():
        raise LandCoverError(
            f"The land-cover raster {path} does not exist.",
            "Check the land-cover raster's path.",
        )
    try:
        return rasterio.open(path)
    except rasterio.errors.RasterioIOError as exc:
        raise LandCoverError(
            f"Cannot read the land-cover raster {path}: {exc}",
            "Give a GeoTIFF (or another raster GDAL reads).",
        ) from None


def _check_categorical(ds: Any, path: str) -> np.ndarray:
    """Distinct codes of a decimated read of band 1; refuse a continuous band."""
    factor = max(1.0, max(ds.height, ds.width) / _CHECK_SIZE)
    shape = (max(1, round(ds.height / factor)), max(1, round(ds.width / factor)))
    band = ds.read(1, out_shape=shape, resampling=Resampling.nearest, masked=True)
    values = np.asarray(band.compressed())
    values = values[np.isfinite(values)] if values.dtype.kind == "f" else values
    distinct = np.unique(values)
    fractional = values.dtype.kind == "f" and bool(np.any(distinct != np.round(distinct)))
    if fractional or len(distinct) > MAX_CODES:
        example = ", ".join(f"{v:g}" for v in distinct[:: max(1, len(distinct) // 3)][:3])
        raise LandCoverError(
            f"{Path(path).name} band 1 is continuous ({len(distinct)} distinct "
            f"{ds.dtypes[0]} values, e.g. {example}), not a land-cover map of class codes.",
            "Give a categorical raster with one integer code per class (e.g. ESA "
            "WorldCover), not a measurement such as reflectance or NDVI.",
        )
    return distinct.astype(np.int64)


def _legend(spec: ProductSpec, ds: Any, path: str, codes: np.ndarray) -> ProductLegend:
    if spec.legend:
        legend = legend_named(spec.legend)
        assert legend is not None  # ProductSpec.parse only accepts known names
        return _builtin(legend)
    for reader in (_qml_legend, _csv_legend, _aux_legend):
        found = reader(Path(path))
        if found is not None:
            return found
    try:
        colours = ds.colormap(1)
    except ValueError:  # no colour table
        colours = None
    if colours:
        legend = legend_by_colours(colours, {int(c) for c in codes})
        if legend is not None:
            return _builtin(legend, "its colour table")
    return ProductLegend({int(c): str(int(c)) for c in codes}, "codes only", named=False)


def _builtin(legend: Legend, why: str = "") -> ProductLegend:
    origin = f"built-in {legend.title}" + (f" (recognised by {why})" if why else "")
    return ProductLegend(dict(legend.classes), origin)


def _sidecars(path: Path, suffix: str) -> list[Path]:
    return [p for p in (Path(str(path) + suffix), path.with_suffix(suffix)) if p.is_file()]


def _qml_legend(path: Path) -> ProductLegend | None:
    """Palette / category labels of a QGIS raster style file."""
    for qml in _sidecars(path, ".qml"):
        try:
            root = ET.parse(qml).getroot()
        except (ET.ParseError, OSError):
            continue
        classes = {}
        for tag in ("paletteEntry", "item"):
            for el in root.iter(tag):
                value, label = el.get("value"), el.get("label")
                if value is None or label is None:
                    continue
                try:
                    classes[int(float(value))] = label.strip() or value
                except ValueError:
                    continue
        if classes:
            return ProductLegend(classes, f"sidecar {qml.name}")
    return None


def _csv_legend(path: Path) -> ProductLegend | None:
    """``code,name`` rows of a sidecar CSV (header with a code and a name column)."""
    for sidecar in _sidecars(path, ".csv"):
        try:
            with open(sidecar, newline="", encoding="utf-8-sig") as fh:
                rows = [r for r in csv.reader(fh) if any(cell.strip() for cell in r)]
        except (OSError, UnicodeDecodeError):
            continue
        if len(rows) < 2:
            continue
        header = [h.strip().lower() for h in rows[0]]
        code_col = next((i for i, h in enumerate(header) if h in _CODE_HEADERS), None)
        name_col = next((i for i, h in enumerate(header) if h in _NAME_HEADERS), None)
        if code_col is None or name_col is None:
            continue
        classes = {}
        for row in rows[1:]:
            try:
                classes[int(float(row[code_col]))] = row[name_col].strip()
            except (ValueError, IndexError):
                continue
        if classes:
            return ProductLegend(classes, f"sidecar {sidecar.name}")
    return None


def _aux_legend(path: Path) -> ProductLegend | None:
    """Category names GDAL keeps in ``<raster>.aux.xml`` (the index is the code)."""
    aux = Path(str(path) + ".aux.xml")
    if not aux.is_file():
        return None
    try:
        root = ET.parse(aux).getroot()
    except (ET.ParseError, OSError):
        return None
    names = root.find(".//PAMRasterBand/CategoryNames")
    if names is None:
        return None
    classes = {i: (el.text or "").strip() for i, el in enumerate(names.findall("Category"))}
    classes = {c: n for c, n in classes.items() if n}
    return ProductLegend(classes, f"sidecar {aux.name}") if classes else None
