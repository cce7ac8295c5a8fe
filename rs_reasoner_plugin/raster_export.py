"""Rasters the backend cannot open by path (WMS, XYZ tiles, /vsimem, remote...) are read
through QGIS for the chosen extent at a chosen resolution and written to a temporary
GeoTIFF, which the task uploads.

:func:`prepare_export` runs on the GUI thread (it touches the layer); :func:`write_geotiff`
only uses the cloned provider and renderer, so it runs inside QgsTask.run().
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from qgis.core import (
    Qgis,
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransformContext,
    QgsRasterBlockFeedback,
    QgsRasterDataProvider,
    QgsRasterFileWriter,
    QgsRasterLayer,
    QgsRasterPipe,
    QgsRasterRenderer,
    QgsRectangle,
)

from .errors import PluginUserError
from .layer_files import local_source

#: Largest exported raster (pixels); beyond this the user is asked for a coarser resolution.
MAX_EXPORT_PIXELS = 16384 * 16384


class ExportError(PluginUserError):
    """The layer cannot be exported as asked. ``hint`` says what to change."""


def local_file_path(layer: QgsRasterLayer) -> str | None:
    """The file behind a layer when the backend can open it by path, else None.

    Only GDAL layers on a regular local file qualify; /vsi* paths (in memory, zip, curl),
    WMS/XYZ and other providers do not.
    """
    found = local_source(layer, "gdal")
    if found is None or found[1].get("layerName"):  # a subdataset, not the whole file
        return None
    return found[0]


@dataclass
class ExportJob:
    """A layer's data (cloned for a worker thread), an extent and a grid size.

    Attributes:
        provider: Clone of the layer's data provider.
        renderer: Clone of the layer's renderer when the provider only has rendered
            colours (WMS/XYZ); None to write the raw bands.
        crs: The layer's CRS (the GeoTIFF's CRS).
        extent: Area in the layer's CRS.
        width: Columns.
        height: Rows.
    """

    provider: QgsRasterDataProvider
    renderer: QgsRasterRenderer | None
    crs: QgsCoordinateReferenceSystem
    extent: QgsRectangle
    width: int
    height: int

    @property
    def resolution(self) -> float:
        return self.extent.width() / self.width


def native_resolution(layer: QgsRasterLayer) -> float | None:
    """Map units per pixel of a layer with a native grid, else None (WMS, XYZ)."""
    provider = layer.dataProvider()
    if provider is None or not (provider.capabilities() & QgsRasterDataProvider.Size):
        return None
    if provider.xSize() <= 0 or layer.rasterUnitsPerPixelX() <= 0:
        return None
    return float(layer.rasterUnitsPerPixelX())


def prepare_export(
    layer: QgsRasterLayer,
    extent: QgsRectangle | None,
    resolution: float | None,
    max_pixels: int = MAX_EXPORT_PIXELS,
) -> ExportJob:
    """Plan the export of ``layer`` over ``extent`` (layer CRS) at ``resolution``.

    Call on the GUI thread. ``extent`` None means the layer's extent (clipped to it
    otherwise, when the layer has one); ``resolution`` None means the native one.

    Raises:
        ExportError: No resolution is known, the extent misses the layer, or the grid is
            too large.
    """
    provider = layer.dataProvider()
    if provider is None or not layer.isValid():
        raise ExportError(f"Layer '{layer.name()}' is not valid.", "Pick another raster layer.")
    area = QgsRectangle(extent) if extent is not None else QgsRectangle(layer.extent())
    native = native_resolution(layer)
    if native is not None and not layer.extent().isEmpty():
        area = area.intersect(layer.extent())
    if area.isEmpty() or area.width() <= 0 or area.height() <= 0:
        raise ExportError(
            f"The chosen area does not overlap layer '{layer.name()}'.",
            "Zoom to the layer or choose 'Layer extent' as the area.",
        )
    res = resolution or native
    if not res or res <= 0:
        raise ExportError(
            f"Layer '{layer.name()}' has no native resolution (a web or tile service).",
            "Set a ground resolution in the advanced options (map units per pixel).",
        )
    width = max(1, int(math.ceil(area.width() / res - 1e-9)))
    height = max(1, int(math.ceil(area.height() / res - 1e-9)))
    if width * height > max_pixels:
        raise ExportError(
            f"The area is {width} x {height} pixels at {res:g} map units per pixel, more than "
            f"the {max_pixels:,} pixels the plugin exports at once.",
            "Choose a smaller area or a coarser ground resolution in the advanced options.",
        )
    # Snap the far edges so the pixels are exactly `res` wide.
    area = QgsRectangle(area.xMinimum(), area.yMaximum() - height * res,
                        area.xMinimum() + width * res, area.yMaximum())
    rgba_only = provider.dataType(1) in (Qgis.DataType.ARGB32, Qgis.DataType.ARGB32_Premultiplied)
    renderer = None
    if rgba_only and layer.renderer() is not None:
        renderer = layer.renderer().clone()
    return ExportJob(
        provider=provider.clone(),
        renderer=renderer,
        crs=QgsCoordinateReferenceSystem(layer.crs()),
        extent=area,
        width=width,
        height=height,
    )


def write_geotiff(job: ExportJob, path: str,
                  feedback: QgsRasterBlockFeedback | None = None) -> str:
    """Write ``job`` as a GeoTIFF at ``path`` (any thread).

    Returns:
        ``path``.

    Raises:
        ExportError: QGIS could not write the file (or ``feedback`` was cancelled).
    """
    pipe = QgsRasterPipe()
    if not pipe.set(job.provider.clone()):
        raise ExportError("Cannot read the layer's data for export.")
    if job.renderer is not None:
        pipe.set(job.renderer.clone())
    writer = QgsRasterFileWriter(path)
    writer.setOutputFormat("GTiff")
    writer.setCreateOptions(["COMPRESS=DEFLATE", "TILED=YES", "BIGTIFF=IF_SAFER"])
    err = writer.writeRaster(
        pipe, job.width, job.height, job.extent, job.crs, QgsCoordinateTransformContext(),
        feedback,
    )
    if feedback is not None and feedback.isCanceled():
        raise ExportError("Export cancelled.")
    if err != QgsRasterFileWriter.NoError:
        raise ExportError(
            f"QGIS could not write the raster for upload (error {int(err)}) to {path}.",
            "Check free space in the temporary folder, or save the layer as a GeoTIFF "
            "yourself (Export ▸ Save As) and use that file.",
        )
    return path
