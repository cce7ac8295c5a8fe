"""From what the user names (files, globs, folders, VRTs) to the rasters a batch reads.

Several rasters on one grid (same CRS, pixel size, bands and data type, origins a whole
number of pixels apart) become one VRT mosaic, so objects crossing raster edges are merged
like any other seam. Where rasters of a mosaic overlap, the **first raster in input order
with a valid pixel** there wins: the VRT lists its sources in reverse order (GDAL draws later
sources on top) and a source's NoData pixels are transparent. Rasters on other grids form
mosaics of their own; their overlaps are not de-duplicated.
"""

from __future__ import annotations

import glob
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree import ElementTree as ET

from rs_reasoner.atomic import write_text_atomic
from rs_reasoner.errors import RasterError
from rs_reasoner.raster import open_raster

#: File extensions taken from a folder.
RASTER_SUFFIXES = (".tif", ".tiff", ".vrt", ".jp2", ".img")

#: Origins closer than this (pixels) to the grid count as on it.
_GRID_EPS = 1e-6

_GDAL_TYPES = {
    "uint8": "Byte", "int8": "Int8", "uint16": "UInt16", "int16": "Int16",
    "uint32": "UInt32", "int32": "Int32", "float32": "Float32", "float64": "Float64",
}  # fmt: skip


@dataclass
class Source:
    """One raster a batch reads: a single file or a VRT mosaic of several.

    Attributes:
        path: What GDAL opens.
        members: The input rasters behind it, in input order.
    """

    path: str
    members: list[str] = field(default_factory=list)


def resolve_inputs(items: list[str]) -> list[str]:
    """Expand files, glob patterns and folders into raster paths, keeping the given order.

    Args:
        items: Paths, patterns (``tiles/*.tif``) or folders (their rasters, sorted by name).

    Returns:
        Unique raster paths.

    Raises:
        RasterError: Nothing matches an item, or no raster is found at all.
    """
    out: list[str] = []
    for item in items:
        if any(ch in item for ch in "*?["):
            found = sorted(glob.glob(item, recursive=True))
        elif Path(item).is_dir():
            found = sorted(
                str(p) for p in Path(item).iterdir() if p.suffix.lower() in RASTER_SUFFIXES
            )
        else:
            found = [item]
        if not found:
            raise RasterError(f"No raster matches {item!r}.", "Check the path or pattern.")
        out.extend(found)
    unique = list(dict.fromkeys(os.path.abspath(p) if Path(p).exists() else p for p in out))
    if not unique:
        raise RasterError("No input raster was given.", "Name rasters, a pattern or a folder.")
    return unique


@dataclass
class _Info:
    path: str
    key: tuple
    transform: tuple[float, ...]
    width: int
    height: int
    nodata: list[float | None]
    colorinterp: list[str]
    dtypes: list[str]
    crs_wkt: str


def _info(path: str) -> _Info:
    ds = open_raster(path)
    with ds:
        t = ds.transform
        crs_wkt = ds.crs.to_wkt() if ds.crs else ""
        key = (crs_wkt, round(t.a, 12), round(t.e, 12), t.b, t.d, ds.count, tuple(ds.dtypes),
               tuple(ds.nodatavals))
        return _Info(
            path=path, key=key, transform=tuple(t)[:6], width=ds.width, height=ds.height,
            nodata=list(ds.nodatavals), colorinterp=[c.name for c in ds.colorinterp],
            dtypes=list(ds.dtypes), crs_wkt=crs_wkt,
        )  # fmt: skip


def _on_grid(a: _Info, b: _Info) -> bool:
    """True when ``b``'s origin lies a whole number of pixels from ``a``'s."""
    pa, pe = a.transform[0], a.transform[4]
    dx = (b.transform[2] - a.transform[2]) / pa
    dy = (b.transform[5] - a.transform[5]) / pe
    return abs(dx - round(dx)) < _GRID_EPS and abs(dy - round(dy)) < _GRID_EPS


def group_rasters(paths: list[str]) -> list[list[str]]:
    """Group rasters that share one grid (see the module docstring), in input order."""
    infos = [_info(p) for p in paths]
    groups: list[list[_Info]] = []
    for info in infos:
        for group in groups:
            if group[0].key == info.key and group[0].crs_wkt and _on_grid(group[0], info):
                group.append(info)
                break
        else:
            groups.append([info])
    return [[i.path for i in g] for g in groups]


def _vrt_xml(members: list[_Info]) -> str:
    first = members[0]
    a, _, _, _, e, _ = first.transform
    # Offsets in pixels of each member from the group's top-left corner (north-up grids).
    offs = [
        (round((m.transform[2] - first.transform[2]) / a),
         round((m.transform[5] - first.transform[5]) / e)) for m in members
    ]  # fmt: skip
    x0 = min(o[0] for o in offs)
    y0 = min(o[1] for o in offs)
    width = max(o[0] + m.width for o, m in zip(offs, members, strict=True)) - x0
    height = max(o[1] + m.height for o, m in zip(offs, members, strict=True)) - y0
    root = ET.Element("VRTDataset", rasterXSize=str(width), rasterYSize=str(height))
    ET.SubElement(root, "SRS").text = first.crs_wkt
    ox = first.transform[2] + x0 * a
    oy = first.transform[5] + y0 * e
    ET.SubElement(root, "GeoTransform").text = f"{ox!r}, {a!r}, 0.0, {oy!r}, 0.0, {e!r}"
    for band, dtype in enumerate(first.dtypes, start=1):
        el = ET.SubElement(root, "VRTRasterBand", dataType=_GDAL_TYPES[dtype], band=str(band))
        nodata = first.nodata[band - 1]
        if nodata is not None:
            ET.SubElement(el, "NoDataValue").text = repr(float(nodata))
        ET.SubElement(el, "ColorInterp").text = first.colorinterp[band - 1].capitalize()
        # GDAL draws later sources over earlier ones: list them last-input-first so the
        # first raster in input order wins where valid pixels overlap.
        for m, (ox_, oy_) in reversed(list(zip(members, offs, strict=True))):
            src = ET.SubElement(el, "ComplexSource" if nodata is not None else "SimpleSource")
            ET.SubElement(src, "SourceFilename", relativeToVRT="0").text = m.path
            ET.SubElement(src, "SourceBand").text = str(band)
            ET.SubElement(src, "SrcRect", xOff="0", yOff="0", xSize=str(m.width),
                          ySize=str(m.height))
            ET.SubElement(src, "DstRect", xOff=str(ox_ - x0), yOff=str(oy_ - y0),
                          xSize=str(m.width), ySize=str(m.height))
            if nodata is not None:
                ET.SubElement(src, "NODATA").text = repr(float(nodata))
    return ET.tostring(root, encoding="unicode")


def build_sources(items: list[str], folder: str | os.PathLike[str]) -> list[Source]:
    """Resolve the inputs and make one :class:`Source` per grid (VRTs written in ``folder``).

    Args:
        items: What the user named (see :func:`resolve_inputs`).
        folder: Where mosaic VRTs are written (the batch's output folder).

    Returns:
        Sources in input order of their first raster.

    Raises:
        RasterError: An input that is missing or not a raster, or a rotated grid in a mosaic.
    """
    paths = resolve_inputs(items)
    sources = []
    for k, group in enumerate(group_rasters(paths)):
        if len(group) == 1:
            sources.append(Source(path=group[0], members=group))
            continue
        infos = [_info(p) for p in group]
        if infos[0].transform[1] or infos[0].transform[3] or not math.isfinite(
            infos[0].transform[0]
        ):
            raise RasterError(
                f"{group[0]} has a rotated grid, which cannot be mosaicked.",
                "Warp the rasters north-up first (gdalwarp) or pass them one by one.",
            )
        vrt = Path(folder) / f"mosaic-{k}.vrt"
        write_text_atomic(vrt, _vrt_xml(infos))
        sources.append(Source(path=str(vrt), members=group))
    return sources
