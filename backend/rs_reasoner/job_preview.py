"""PNG preview of a job's polygons over the image of its extent (``--preview``)."""

from __future__ import annotations

from pathlib import Path

from rs_reasoner.pipeline import SegmentationResult, open_dataset
from rs_reasoner.raster import ExtentReader
from rs_reasoner.schemas import SegmentRequest
from rs_reasoner.vector import reproject
from rs_reasoner.vector.preview import render_preview

MAX_PREVIEW_SIZE = 2048


def write_job_preview(
    request: SegmentRequest, result: SegmentationResult, path: Path, raster_path: str | None = None
) -> Path:
    """Render the job's polygons over its extent, downsampled to at most 2048 px.

    Args:
        request: The request that produced ``result``.
        result: The job's result.
        path: Output PNG.
        raster_path: Raster read for the image (default: ``request.raster``).

    Returns:
        ``path``.
    """
    opts = request.options
    with open_dataset(raster_path or request.raster) as ds:
        reader = ExtentReader.open(ds, request.extent, bands=opts.bands, resolution=opts.resolution)
        long_side = max(reader.height, reader.width)
        if long_side > MAX_PREVIEW_SIZE:
            working_res = opts.resolution or abs(ds.transform.a)
            coarser = working_res * long_side / MAX_PREVIEW_SIZE
            reader = ExtentReader.open(ds, request.extent, bands=opts.bands, resolution=coarser)
        image, _ = reader.read_extent()
        polygons = result.polygons
        if reader.crs is not None and polygons.crs is not None and polygons.crs != reader.crs:
            polygons = reproject(polygons, reader.crs)
        return render_preview(image, polygons, reader.transform, path, max_size=MAX_PREVIEW_SIZE)
