"""Class-wise fusion of a trained model's class scores with land-cover products.

Each product is read as noisy evidence about the true class, class by class: where it
says ``c``, the truth is ``c`` with its per-class reliability ``r_p,c`` (precision
against the user's parcels, or the prior when there are none) and any other class
otherwise. A coarse product's label at a pixel is really the majority of a block around
it, so the evidence is its *local share* ``s_p,c(x)``: the fraction of a window one
product pixel wide (centred on ``x``) that it labels ``c``. The product's likelihood of
class ``c`` at ``x`` is

    L_p,c(x) = a_p,c * s_p,c(x) + (1 - a_p,c) * (1 - s_p,c(x)) / (K - 1)

with ``a_p,c = r_p,c``, for each class ``c`` the product gives. A class it never gives (its
legend merges or omits it: roads inside built-up) is neither supported nor ruled out by
it: its likelihood is the mean of the given classes' at that pixel, so the product only
ever shifts the model between the classes it can tell apart (a product mapping
everything to one class of a two-class model carries no evidence and changes nothing).
The fused scores are the model's posterior times the products' likelihoods (naive Bayes,
the products' errors taken as independent):

    F_c(x) ∝ P_c(x) * prod_p L_p,c(x)

Deep inside a product's region (``s = 1``) its class is favoured by ``r (K-1) / (1-r)``
(about 9x for ``r = 0.7`` and five classes), which a confident model can still overrule;
near its coarse class boundaries the shares split and the model's reading of the
full-resolution image decides between the classes the product gives there.

On Dubai (``bench/bench_weak_labels.py``) this is what lets a model trained on one 10x
coarser product alone beat that product on the full-resolution masks.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from rs_reasoner.landcover import NO_LABEL

#: Boundary weight right on a product's class boundary.
BOUNDARY_FLOOR = 0.2


def boundary_weight(
    labels: np.ndarray, pixel_ratio: float, floor: float = BOUNDARY_FLOOR
) -> np.ndarray:
    """(H, W) float32 ``min(1, floor + d / pixel_ratio)``: ``d`` the distance (grid pixels)
    to the nearest pixel the product gives another class, ``pixel_ratio`` its pixel side
    over the grid's; 0 where it gives no label.

    A coarse product's blocky boundaries run up to a product pixel away from the true
    ones, so its labels there deserve less trust than deep inside its regions (the
    confidence of weak labels in training).
    """
    labelled = labels != NO_LABEL
    edge = np.zeros(labels.shape, bool)
    vertical = (labels[1:] != labels[:-1]) & labelled[1:] & labelled[:-1]
    horizontal = (labels[:, 1:] != labels[:, :-1]) & labelled[:, 1:] & labelled[:, :-1]
    edge[1:] |= vertical
    edge[:-1] |= vertical
    edge[:, 1:] |= horizontal
    edge[:, :-1] |= horizontal
    if edge.any():
        distance = ndimage.distance_transform_edt(~edge)
        weight = np.minimum(1.0, floor + distance / max(pixel_ratio, 1.0)).astype(np.float32)
    else:
        weight = np.ones(labels.shape, np.float32)
    weight[~labelled] = 0.0
    return weight


def share_window(pixel_ratio: float) -> int:
    """Side (odd, grid pixels) of the window a product's local shares are taken over:
    one product pixel."""
    return max(1, int(round(pixel_ratio))) | 1


def product_likelihood(
    labels: np.ndarray,
    reliability: np.ndarray,
    given: np.ndarray,
    pixel_ratio: float,
) -> np.ndarray:
    """(K, H, W) float32 ``L_p,c(x)`` of one product (module docstring).

    Args:
        labels: (H, W) the product's labels in the model's classes (:data:`NO_LABEL`
            where none). Pixels it does not label get likelihood 1 for every class.
        reliability: (K,) its per-class reliability ``r_p,c``.
        given: (K,) bool, the classes its mapping gives.
        pixel_ratio: Its pixel side over the grid's.
    """
    k = len(reliability)
    given = np.asarray(given, bool)
    a = np.clip(np.asarray(reliability, np.float32), 0, 1)
    labelled = labels != NO_LABEL
    size = share_window(pixel_ratio)
    covered = ndimage.uniform_filter(labelled.astype(np.float32), size=size, mode="nearest")
    out = np.ones((k, *labels.shape), np.float32)
    for c in np.flatnonzero(given):
        share = ndimage.uniform_filter((labels == c).astype(np.float32), size=size, mode="nearest")
        # Shares among the labelled pixels of the window: the product's NoData is silence.
        share = np.where(covered > 0, share / np.maximum(covered, 1e-6), 0.0)
        out[c] = a[c] * share + (1 - a[c]) * (1 - share) / max(k - 1, 1)
    if given.any() and not given.all():
        # A fixed value here (1 / (K - 1)) outweighed the product's own class when K is
        # small: mapping everything to one class of a two-class model made it *less* likely.
        out[~given] = out[given].mean(axis=0)
    out[:, ~labelled] = 1.0
    return out


def fuse_with_products(
    probs: np.ndarray,
    products: Sequence[np.ndarray],
    reliabilities: Sequence[np.ndarray],
    pixel_ratios: Sequence[float],
    given: Sequence[np.ndarray] | None = None,
) -> np.ndarray:
    """Fused class scores (module docstring).

    Args:
        probs: (K, H, W) the model's class probabilities.
        products: (H, W) product labels in the model's classes (:data:`NO_LABEL` where
            none), on the same grid.
        reliabilities: (K,) per product.
        pixel_ratios: Each product's pixel side over the grid's.
        given: (K,) bool per product, the classes its mapping gives (default: those it
            gives on this grid; pass the mapping's on tiles, where a class can be absent).

    Returns:
        (K, H, W) float32 fused scores, summing to 1 per pixel.
    """
    k = probs.shape[0]
    if len(products) != len(reliabilities) or len(products) != len(pixel_ratios):
        raise ValueError("one reliability and pixel ratio per product")
    if given is None:
        given = [np.bincount(lp[lp != NO_LABEL].ravel(), minlength=k)[:k] > 0 for lp in products]
    likelihood = np.ones_like(probs, dtype=np.float32)
    for labels, rel, ratio, giv in zip(products, reliabilities, pixel_ratios, given, strict=True):
        likelihood *= product_likelihood(labels, rel, giv, ratio)
    return apply_likelihood(probs, likelihood)


def apply_likelihood(probs: np.ndarray, likelihood: np.ndarray) -> np.ndarray:
    """(K, H, W) float32 ``probs * likelihood`` renormalised per pixel (``probs`` where
    the product is 0 everywhere, e.g. NoData pixels the model gave no score)."""
    fused = probs.astype(np.float32) * likelihood
    total = fused.sum(axis=0, keepdims=True)
    return np.where(total > 0, fused / np.maximum(total, 1e-12), probs).astype(np.float32)
