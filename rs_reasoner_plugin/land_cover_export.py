"""The land-cover maps of a run as the backend reads them: each raster by path (a
non-file layer is first written to a GeoTIFF over the training raster, as rasters are
exported for upload) and its mapping table as a CSV, joined into
``RASTER[:LEGEND][:MAPPING.csv]``.

:func:`prepare_sources` runs on the GUI thread (it touches the layers);
:func:`write_sources` only uses cloned providers, so it runs inside ``QgsTask.run()``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field

from qgis.core import QgsCoordinateTransform, QgsProject, QgsRasterLayer, QgsRectangle

from .errors import InputError
from .land_cover_classes import LandCoverMap, overlaps, weak_spec, write_mapping
from .raster_export import ExportError, ExportJob, local_file_path, prepare_export, write_geotiff


@dataclass
class LandCoverSource:
    """One land-cover map of a run, resolved on the GUI thread.

    Exactly one of ``raster_path`` / ``raster_export`` is set.

    Attributes:
        name: The layer's name (messages).
        legend: A built-in legend's name, or None for the raster's own classes.
        rows: (product class, user class) rows of the mapping file.
        raster_path: The file the backend reads.
        raster_export: The layer's data to write to a GeoTIFF first.
    """

    name: str
    legend: str | None
    rows: list[tuple[str, str]] = field(default_factory=list)
    raster_path: str | None = None
    raster_export: ExportJob | None = None


def prepare_sources(maps: list[LandCoverMap], raster: QgsRasterLayer,
                    what: str = "your classes") -> list[LandCoverSource]:
    """The maps as sources of a run over ``raster``.

    Raises:
        InputError: A map with no class mapped, not overlapping ``raster``, or a non-file
            layer that cannot be exported.
    """
    out = []
    for m in maps:
        layer = m.layer
        if not m.rows():
            raise InputError(f"No class of land-cover map '{layer.name()}' is mapped to one of "
                             f"{what}: choose them in its table, or remove the map.")
        if not overlaps(layer, raster):
            raise InputError(f"Land-cover map '{layer.name()}' does not overlap raster "
                             f"'{raster.name()}': add a map of that area, or remove it.")
        source = LandCoverSource(layer.name(), m.legend.name if m.legend else None, m.rows())
        source.raster_path = local_file_path(layer)
        if source.raster_path is None:
            try:
                source.raster_export = prepare_export(layer, _area_in(raster, layer), None)
            except ExportError as exc:
                raise InputError(f"Land-cover map '{layer.name()}': {exc} Or save it as a "
                                 "GeoTIFF (Export ▸ Save As…) and add that file.") from None
        out.append(source)
    return out


def _area_in(raster: QgsRasterLayer, layer: QgsRasterLayer) -> QgsRectangle:
    """The training raster's extent in ``layer``'s CRS (what the export needs to cover)."""
    extent = QgsRectangle(raster.extent())
    if raster.crs().isValid() and layer.crs().isValid() and raster.crs() != layer.crs():
        tr = QgsCoordinateTransform(raster.crs(), layer.crs(), QgsProject.instance())
        extent = tr.transformBoundingBox(extent)
    return extent


def write_sources(sources: list[LandCoverSource], folder: str,
                  check: Callable[[], None] | None = None) -> list[str]:
    """Write the mapping files (and exported rasters) into ``folder``.

    Args:
        sources: From :func:`prepare_sources`.
        folder: An existing folder that outlives the job reading the files.
        check: Raises when the task was cancelled (called between files).

    Returns:
        The ``RASTER[:LEGEND][:MAPPING.csv]`` entries.
    """
    specs = []
    for i, source in enumerate(sources, 1):
        if check is not None:
            check()
        raster = source.raster_path
        if raster is None:
            assert source.raster_export is not None
            raster = write_geotiff(source.raster_export,
                                   os.path.join(folder, f"land_cover_{i}.tif"))
        mapping = write_mapping(os.path.join(folder, f"land_cover_{i}_mapping.csv"),
                                source.rows)
        specs.append(weak_spec(raster, source.legend, mapping))
    return specs


def fusion_specs(maps: list[LandCoverMap], raster: QgsRasterLayer, what: str) -> list[str]:
    """The ``fuse_land_cover`` entries of a segmentation run: mapping files written now (to
    a temporary folder); the maps must be files the backend reads.

    Raises:
        InputError: As :func:`prepare_sources`, and a map that is not a local file.
    """
    for m in maps:
        if local_file_path(m.layer) is None:
            raise InputError(f"Land-cover map '{m.layer.name()}' is not a file the backend can "
                             "read: save it as a GeoTIFF (Export ▸ Save As…) and add that file.")
    sources = prepare_sources(maps, raster, what)
    return write_sources(sources, tempfile.mkdtemp(prefix="rs_reasoner_fuse_"))
