"""A segmentation request's ``fuse_land_cover``: who may use it, its submit-time checks
and the products of a run (:class:`~.fusion.LandCoverFusion`) on the extent's grid."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rasterio.transform import array_bounds

from rs_reasoner.landcover import LandCoverError
from rs_reasoner.landcover.checks import check_products
from rs_reasoner.landcover.fusion import LandCoverFusion
from rs_reasoner.landcover.products import Grid

if TYPE_CHECKING:
    from rs_reasoner.raster import ExtentReader
    from rs_reasoner.schemas import SegmentRequest
    from rs_reasoner.segmenters.spec import ModelSpec


def _model_info(spec: ModelSpec) -> dict[str, Any] | None:
    """The trained model's ``model.json``; refuses a model that is not trained here."""
    from rs_reasoner.trained_models import TRAINED_TAG, find_model

    found = find_model(spec.name) if TRAINED_TAG in spec.tags and spec.classes else None
    if found is None:
        raise LandCoverError(
            f"fuse_land_cover fuses land-cover maps with the class scores of a model trained "
            f"here (rs-reasoner train); '{spec.name}' is not one.",
            "Choose a trained model (its classes are mapped from the products' classes), "
            "or leave fuse_land_cover out.",
        )
    return found.info


def check_land_cover(request: SegmentRequest, spec: ModelSpec, reader: ExtentReader) -> None:
    """Submit-time checks of ``fuse_land_cover`` (nothing when it is not set): a trained
    model, products that exist, are categorical, map only to its classes and overlap the
    extent.

    Raises:
        LandCoverError: What is wrong and how to fix it.
    """
    specs = request.options.fuse_land_cover
    if not specs:
        return
    _model_info(spec)
    bounds = array_bounds(reader.height, reader.width, reader.transform)
    check_products(specs, reader.crs, bounds, list(spec.classes or ()), f"model '{spec.name}'")


def land_cover_fusion(
    request: SegmentRequest, spec: ModelSpec, reader: ExtentReader, partial: bool = False
) -> LandCoverFusion | None:
    """The run's products on the extent's working grid, or None when not asked for
    (``partial``: the reader's window is one part of the area, a batch unit).

    Raises:
        LandCoverError: As :func:`check_land_cover`, and an extent too large to fuse.
    """
    specs = request.options.fuse_land_cover
    if not specs:
        return None
    info = _model_info(spec)
    grid = Grid(reader.crs, reader.transform, (reader.height, reader.width))
    return LandCoverFusion.prepare(specs, grid, list(spec.classes or ()), info, partial)
