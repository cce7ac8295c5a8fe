"""Cheap checks of land-cover products named in a request, done when it is submitted
(no product is read onto a grid): so a wrong path, a continuous band, a bad mapping or a
product elsewhere is refused at once (HTTP 422), not as a failed job."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from rasterio.crs import CRS
from rasterio.warp import transform_bounds

from rs_reasoner.landcover import LandCoverError
from rs_reasoner.landcover.mapping import build_mapping, read_mapping_rows
from rs_reasoner.landcover.products import ProductSpec, describe_product


def parse_specs(specs: Sequence[str | ProductSpec]) -> list[ProductSpec]:
    """``PATH[:LEGEND][:MAPPING.csv]`` entries parsed (parsed ones kept)."""
    return [s if isinstance(s, ProductSpec) else ProductSpec.parse(s) for s in specs]


def mapping_table(
    spec: ProductSpec, legend: Any, name: str, classes: Sequence[str]
) -> dict[int, int]:
    """Product code -> class id of ``classes`` from the spec's mapping file, or equal
    names (:func:`~.mapping.build_mapping`)."""
    rows = read_mapping_rows(spec.mapping) if spec.mapping else None
    return build_mapping(legend, classes, name, rows, spec.mapping or "same class names")


def check_products(
    specs: Sequence[str | ProductSpec],
    crs: CRS | None,
    bounds: tuple[float, float, float, float],
    classes: Sequence[str] | None = None,
    whose: str = "",
) -> None:
    """Each product exists, is categorical, its mapping file is readable and names classes
    its legend has (and only ``classes``, when given), and its bounds meet ``bounds``.

    Args:
        specs: ``PATH[:LEGEND][:MAPPING.csv]`` entries.
        crs: The raster's CRS (None: pixel coordinates).
        bounds: The area's (left, bottom, right, top) in that CRS.
        classes: The classes products map to (None: not known yet, e.g. the parcels'
            classes of a training request; only the product side is checked).
        whose: Whose classes they are, for messages ("model 'parcels'").

    Raises:
        LandCoverError: What is wrong and how to fix it.
    """
    for spec in parse_specs(specs):
        facts = describe_product(spec)
        if spec.mapping or classes is not None:
            rows = read_mapping_rows(spec.mapping) if spec.mapping else None
            # Without the classes, a mapping's own targets stand in: its product classes
            # are still checked against the legend.
            targets = list(classes) if classes is not None else sorted({u for _, u in rows or []})
            try:
                build_mapping(facts.legend, targets, facts.name, rows, spec.mapping or
                              "same class names")  # fmt: skip
            except LandCoverError as exc:
                if not whose:
                    raise
                raise LandCoverError(f"{exc.message} (classes of {whose})", exc.hint) from None
        if (facts.crs is None) != (crs is None):
            which = "land-cover raster" if facts.crs is None else "raster"
            raise LandCoverError(
                f"The {which} has no CRS, so {facts.name} cannot be placed on its grid.",
                "Assign the CRS (QGIS: Raster > Projections > Assign Projection).",
            )
        box = facts.bounds
        if crs is not None and facts.crs is not None and facts.crs != crs:
            box = transform_bounds(facts.crs, crs, *box, densify_pts=21)
        left, bottom, right, top = bounds
        if box[0] >= right or box[2] <= left or box[1] >= top or box[3] <= bottom:
            raise LandCoverError(
                f"The land-cover raster {facts.name} does not overlap the raster's area.",
                "Give a product covering the area (check its extent and CRS), or leave it "
                "out.",
            )


def check_products_over_raster(
    specs: Sequence[str | ProductSpec], raster_path: str | os.PathLike[str]
) -> None:
    """:func:`check_products` against a raster's whole area (a training request)."""
    from rs_reasoner.raster import open_raster

    ds = open_raster(os.fspath(raster_path))
    with ds:
        crs, bounds = ds.crs, tuple(ds.bounds)
    check_products(specs, crs, bounds)
