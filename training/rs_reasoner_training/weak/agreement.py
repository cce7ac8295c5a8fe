"""Weak labels and their confidence from one or more products, checked against parcels.

Per product ``p`` (labels ``l_p`` in the user's classes, on the training grid):

* **reliability** ``r_p,c``: of the parcel pixels the product calls ``c``, the share that
  really is ``c`` (its precision), shrunk towards :data:`PRIOR_RELIABILITY` by
  :data:`PRIOR_PIXELS` pseudo-pixels so a class seen on a few parcel pixels is not taken
  at face value; :data:`PRIOR_RELIABILITY` where no parcel says anything (weak labels only);
* **boundary weight** ``b_p(x)``
  (:func:`~rs_reasoner.models.product_fusion.boundary_weight`): from
  ``BOUNDARY_FLOOR`` on the product's class boundaries to 1 one product pixel inside them;
* **agreement with the parcels**: Cohen's kappa overall and per class (one class vs the
  rest), on the parcel pixels the product labels.

Per pixel, the label is the class with the largest support
``S_c(x) = sum_p b_p(x) r_p,c [l_p(x) = c]`` and its confidence ``S_label(x) / n(x)``,
``n`` the number of products that label the pixel: one product gives ``b r``, products
that agree keep it, products that disagree divide it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from rs_reasoner.models.product_fusion import BOUNDARY_FLOOR, boundary_weight
from rs_reasoner_training.data.dataset import IGNORE_INDEX
from rs_reasoner_training.errors import LabelLayerError

#: Reliability assumed for a product class with no parcel evidence.
PRIOR_RELIABILITY = 0.7
#: Weight (in pixels) of that assumption against the parcel pixels.
PRIOR_PIXELS = 200.0


@dataclass
class ProductReport:
    """How one product agrees with the parcels.

    Attributes:
        name: The product.
        pixels: Parcel pixels it labels.
        kappa: Cohen's kappa over all classes (NaN without parcel pixels).
        class_kappa: Per user class, one-vs-rest kappa (None: class absent from both).
        reliability: Per user class, ``r_p,c``.
        pixel_ratio: Its pixel side over the grid's.
    """

    name: str
    pixels: int
    kappa: float
    class_kappa: dict[str, float | None]
    reliability: dict[str, float]
    pixel_ratio: float


@dataclass
class WeakLabels:
    """Weak labels on the training grid.

    Attributes:
        labels: (H, W) uint8 class ids, :data:`IGNORE_INDEX` where no product labels.
        confidence: (H, W) float32 in [0, 1] (0 where no label).
        reports: One per product.
    """

    labels: np.ndarray
    confidence: np.ndarray
    reports: list[ProductReport] = field(default_factory=list)


def cohen_kappa(truth: np.ndarray, pred: np.ndarray, k: int) -> float:
    """Cohen's kappa of two label vectors over ``k`` classes (NaN when undefined)."""
    if truth.size == 0:
        return math.nan
    cm = np.bincount(truth.astype(np.int64) * k + pred, minlength=k * k).reshape(k, k)
    n = cm.sum()
    observed = np.trace(cm) / n
    expected = float((cm.sum(0) * cm.sum(1)).sum()) / n**2
    if expected >= 1.0:
        return math.nan
    return float((observed - expected) / (1.0 - expected))


def measure(
    name: str,
    labels: np.ndarray,
    parcels: np.ndarray | None,
    class_names: Sequence[str],
    pixel_ratio: float = 1.0,
) -> ProductReport:
    """Reliability and kappa of one product against the parcel labels (module docstring).

    Args:
        name: The product.
        labels: (H, W) its labels in the user's classes.
        parcels: (H, W) parcel labels (:data:`IGNORE_INDEX` outside), or None.
        class_names: The user's classes.
        pixel_ratio: Its pixel side over the grid's.

    Raises:
        LabelLayerError: Parcels are given but the product labels none of their pixels.
    """
    k = len(class_names)
    both = np.zeros(labels.shape, bool)
    if parcels is not None and (parcels != IGNORE_INDEX).any():
        both = (parcels != IGNORE_INDEX) & (labels != IGNORE_INDEX)
        if not both.any():
            raise LabelLayerError(
                f"The land-cover product {name} does not overlap the training parcels (it "
                "labels none of their pixels in your classes), so its agreement with them "
                "cannot be measured.",
                "Give a product covering the labelled parcels (check its extent, CRS and "
                "class mapping), or leave it out.",
            )
    truth, pred = parcels[both] if parcels is not None else labels[both], labels[both]
    cm = np.bincount(truth.astype(np.int64) * k + pred, minlength=k * k).reshape(k, k)
    hits, called = np.diag(cm).astype(np.float64), cm.sum(0).astype(np.float64)
    reliability = (hits + PRIOR_PIXELS * PRIOR_RELIABILITY) / (called + PRIOR_PIXELS)
    class_kappa: dict[str, float | None] = {}
    for c, cname in enumerate(class_names):
        if cm[c].sum() == 0 and cm[:, c].sum() == 0:
            class_kappa[cname] = None
            continue
        value = cohen_kappa(truth == c, (pred == c).astype(np.int64), 2)
        class_kappa[cname] = None if math.isnan(value) else round(value, 3)
    return ProductReport(
        name,
        int(both.sum()),
        cohen_kappa(truth, pred.astype(np.int64), k),
        class_kappa,
        {cname: round(float(r), 3) for cname, r in zip(class_names, reliability, strict=True)},
        pixel_ratio,
    )


def combine(
    product_labels: Sequence[np.ndarray],
    reliabilities: Sequence[np.ndarray],
    boundary_weights: Sequence[np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    """Label and confidence per pixel from several products (module docstring).

    Args:
        product_labels: (H, W) uint8 labels per product.
        reliabilities: (K,) ``r_p,c`` per product.
        boundary_weights: (H, W) ``b_p`` per product.

    Returns:
        (labels (H, W) uint8, confidence (H, W) float32).
    """
    shape = product_labels[0].shape
    best_label = np.full(shape, IGNORE_INDEX, np.uint8)
    best_support = np.zeros(shape, np.float32)
    speaking = np.zeros(shape, np.float32)
    for lp in product_labels:
        speaking += lp != IGNORE_INDEX
    # Only a class some product gives can win: score each product's own label.
    for lp in product_labels:
        support = np.zeros(shape, np.float32)
        for lq, rq, bq in zip(product_labels, reliabilities, boundary_weights, strict=True):
            agree = (lq == lp) & (lp != IGNORE_INDEX)
            rel = np.asarray(rq, np.float32)[np.minimum(lq, len(rq) - 1)]
            support += np.where(agree, bq * rel, 0.0).astype(np.float32)
        better = support > best_support
        best_label[better] = lp[better]
        best_support[better] = support[better]
    confidence = np.where(speaking > 0, best_support / np.maximum(speaking, 1), 0.0)
    return best_label, confidence.astype(np.float32)


def weak_labels(
    names: Sequence[str],
    product_labels: Sequence[np.ndarray],
    pixel_ratios: Sequence[float],
    parcels: np.ndarray | None,
    class_names: Sequence[str],
) -> WeakLabels:
    """Reports, reliabilities, boundary weights and the combined labels of products."""
    reports = [
        measure(n, lp, parcels, class_names, ratio)
        for n, lp, ratio in zip(names, product_labels, pixel_ratios, strict=True)
    ]
    rel = [np.array([r.reliability[c] for c in class_names], np.float32) for r in reports]
    bounds = [
        boundary_weight(lp, ratio) for lp, ratio in zip(product_labels, pixel_ratios, strict=True)
    ]
    labels, confidence = combine(product_labels, rel, bounds)
    return WeakLabels(labels, confidence, reports)


def report_lines(reports: Sequence[ProductReport], class_names: Sequence[str]) -> list[str]:
    """The agreement table printed before training: kappa per product and class."""
    width = max([len(c) for c in class_names] + [10])
    lines = [
        "weak labels: agreement with the training parcels (Cohen's kappa; "
        "reliability = share of the product's pixels of a class that the parcels confirm)"
    ]
    for r in reports:
        overall = "-" if math.isnan(r.kappa) else f"{r.kappa:.3f}"
        lines.append(
            f"  {r.name}: kappa {overall} on {r.pixels} parcel pixels; pixel "
            f"{r.pixel_ratio:.1f}x the training grid's"
        )
        for c in class_names:
            kappa = r.class_kappa.get(c)
            shown = "-" if kappa is None else f"{kappa:.3f}"
            lines.append(f"    {c:<{width}} kappa {shown:>6}  reliability {r.reliability[c]:.2f}")
    return lines


__all__ = [
    "BOUNDARY_FLOOR",
    "ProductReport",
    "WeakLabels",
    "boundary_weight",
    "cohen_kappa",
    "combine",
    "measure",
    "report_lines",
    "weak_labels",
]
