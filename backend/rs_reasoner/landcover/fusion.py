"""Land-cover products as class evidence next to a trained model at segmentation
(``segment --fuse-land-cover RASTER[:LEGEND][:MAPPING.csv]``).

Each product is read once onto the segmented extent's working grid (nearest neighbour),
its classes mapped to the model's (:mod:`.mapping`: a mapping file, or product classes
named like the model's), and each tile's class probabilities are multiplied by the
products' likelihoods over that tile
(:func:`~rs_reasoner.models.product_fusion.product_likelihood`, computed with a margin of
half a product pixel so tile borders do not show).

**Reliabilities.** A product's per-class reliability is the one measured when the model
was trained with it as weak labels (``weak_labels.json`` in the model folder, copied
into ``model.json``; matched by the product's file name, so a neighbouring tile of the
same product named alike is not matched: give the file the training product's name to
reuse them). A product the model was not trained with gets :data:`PRIOR_RELIABILITY`
for every class it gives: at segmentation time nothing says which of its classes to
trust more (no parcel is there to measure against), and measuring it against the model's
own predictions would only make the model agree with itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rs_reasoner.landcover import NO_LABEL, LandCoverError
from rs_reasoner.landcover.checks import mapping_table, parse_specs
from rs_reasoner.landcover.mapping import apply_mapping
from rs_reasoner.landcover.products import Grid, ProductSpec, read_product
from rs_reasoner.models.product_fusion import product_likelihood, share_window

#: Reliability of each class a product gives when none was measured (the weak-label
#: prior of training).
PRIOR_RELIABILITY = 0.7
#: Largest extent (working pixels) products are fused over.
MAX_FUSION_PIXELS = 200_000_000


@dataclass
class FusedProduct:
    """One product on the extent's grid, in the model's classes.

    Attributes:
        name: Its file's stem.
        labels: (H, W) uint8 model class ids, :data:`NO_LABEL` where it says nothing.
        reliability: (K,) per model class.
        given: (K,) bool, the classes its mapping gives.
        pixel_ratio: Its pixel side over the grid's.
        measured: Whether the reliabilities were measured on training parcels.
    """

    name: str
    labels: np.ndarray
    reliability: np.ndarray
    given: np.ndarray
    pixel_ratio: float
    measured: bool


def recorded_reliabilities(info: Mapping[str, Any] | None) -> dict[str, dict[str, float]]:
    """Per product name, its per-class reliabilities in a ``model.json`` (none: {})."""
    weak = (info or {}).get("weak_labels") or {}
    found: dict[str, dict[str, float]] = {}
    for report in weak.get("products") or []:
        name, rel = report.get("name"), report.get("reliability")
        if isinstance(name, str) and isinstance(rel, dict):
            found[name] = {str(c): float(v) for c, v in rel.items() if v is not None}
    return found


class LandCoverFusion:
    """The products of one segmentation run (module docstring).

    Args:
        products: The products on the extent's grid.
        classes: The model's classes.
    """

    def __init__(self, products: list[FusedProduct], classes: Sequence[str]) -> None:
        self.products = products
        self.classes = list(classes)
        self.margin = max(share_window(p.pixel_ratio) for p in products) // 2 if products else 0

    @classmethod
    def prepare(
        cls,
        specs: Sequence[str | ProductSpec],
        grid: Grid,
        classes: Sequence[str],
        info: Mapping[str, Any] | None = None,
        partial: bool = False,
    ) -> LandCoverFusion:
        """Read and map every product onto ``grid``.

        Args:
            specs: ``PATH[:LEGEND][:MAPPING.csv]`` entries.
            grid: The extent's working grid.
            classes: The model's classes.
            info: The model's ``model.json`` (recorded reliabilities).
            partial: ``grid`` is one window of the area (a batch unit): a product that
                says nothing there is accepted (neutral).

        Raises:
            LandCoverError: An unusable product or mapping, one that does not overlap the
                extent, a mapping to a class the model does not have, or an extent too
                large.
        """
        pixels = grid.shape[0] * grid.shape[1]
        if pixels > MAX_FUSION_PIXELS:
            raise LandCoverError(
                f"Land-cover products are fused over extents of at most "
                f"{MAX_FUSION_PIXELS:,} working pixels; this one has {pixels:,}.",
                "Segment a smaller extent or at a coarser resolution.",
            )
        recorded = recorded_reliabilities(info)
        products = []
        for spec in parse_specs(specs):
            product = read_product(spec, grid, allow_empty=partial)
            table = mapping_table(spec, product.legend, product.name, classes)
            given = np.zeros(len(classes), bool)
            given[sorted(set(table.values()))] = True
            measured = recorded.get(product.name)
            reliability = np.array(
                [(measured or {}).get(c, PRIOR_RELIABILITY) for c in classes], np.float32
            )
            products.append(
                FusedProduct(
                    product.name,
                    apply_mapping(product.codes, table),
                    reliability,
                    given,
                    product.pixel_ratio,
                    measured is not None,
                )
            )
        return cls(products, classes)

    def describe(self) -> list[str]:
        """One line per product for the job log."""
        lines = []
        for p in self.products:
            where = "measured on the training parcels" if p.measured else "prior"
            gives = [c for c, g in zip(self.classes, p.given, strict=True) if g]
            rel = ", ".join(
                f"{c} {r:.2f}" for c, r, g in zip(self.classes, p.reliability, p.given,
                                                  strict=True) if g
            )  # fmt: skip
            lines.append(
                f"land cover {p.name}: pixel {p.pixel_ratio:.1f}x the working grid's, gives "
                f"{', '.join(gives)}; reliabilities ({where}): {rel}"
            )
        return lines

    def likelihood(self, row0: int, col0: int, row1: int, col1: int) -> np.ndarray:
        """(K, h, w) product of the products' likelihoods over a window of the grid (it may
        reach outside the grid, where the products say nothing: 1)."""
        k = len(self.classes)
        m = self.margin
        out = np.ones((k, row1 - row0, col1 - col0), np.float32)
        for p in self.products:
            labels = _window(p.labels, row0 - m, col0 - m, row1 + m, col1 + m)
            if (labels == NO_LABEL).all():
                continue
            lik = product_likelihood(labels, p.reliability, p.given, p.pixel_ratio)
            out *= lik[:, m : m + row1 - row0, m : m + col1 - col0]
        return out



def _window(array: np.ndarray, row0: int, col0: int, row1: int, col1: int) -> np.ndarray:
    """``array[row0:row1, col0:col1]`` padded with :data:`NO_LABEL` outside it."""
    out = np.full((row1 - row0, col1 - col0), NO_LABEL, array.dtype)
    r0, c0 = max(row0, 0), max(col0, 0)
    r1, c1 = min(row1, array.shape[0]), min(col1, array.shape[1])
    if r1 > r0 and c1 > c0:
        out[r0 - row0 : r1 - row0, c0 - col0 : c1 - col0] = array[r0:r1, c0:c1]
    return out
