"""Class-wise fusion of a trained model's class scores with land-cover products.

LandSegmenter style: each source's vote for a class is weighted by how reliable that
source is *for that class*, so a class a product never maps (it merges roads into
built-up, say) comes from the model undiluted, while the classes a product gets right
over large areas keep its support. Weights are
:func:`~rs_reasoner.segmenters.open_vocab.fusion_rules.fusion_weights` of the measured
per-class reliabilities (precision against the user's parcels, or against the products'
confident weak labels when there are no parcels), and each product's vote is scaled by
its boundary weight (:func:`boundary_weight`): near its coarse class boundaries the model
decides.

    F_c(x) = w_model,c * P_c(x) + sum_p w_p,c * b_p(x) * [l_p(x) = c]

with ``w_s,c = r_s,c / sum_s' r_s',c`` and ``r_p,c = 0`` for a class product ``p``
never gives.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from rs_reasoner.segmenters.open_vocab.fusion_rules import fusion_weights

#: Label of pixels a product says nothing about.
NO_LABEL = 255
#: Boundary weight right on a product's class boundary.
BOUNDARY_FLOOR = 0.2


def boundary_weight(
    labels: np.ndarray, pixel_ratio: float, floor: float = BOUNDARY_FLOOR
) -> np.ndarray:
    """(H, W) float32 ``min(1, floor + d / pixel_ratio)``: ``d`` the distance (grid pixels)
    to the nearest pixel the product gives another class, ``pixel_ratio`` its pixel side
    over the grid's; 0 where it gives no label.

    A coarse product's blocky boundaries run up to a product pixel away from the true
    ones, so its labels there deserve less trust than deep inside its regions.
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


def fuse_with_products(
    probs: np.ndarray,
    model_reliability: np.ndarray,
    products: Sequence[np.ndarray],
    reliabilities: Sequence[np.ndarray],
    pixel_ratios: Sequence[float],
) -> np.ndarray:
    """Fused class scores (module docstring).

    Args:
        probs: (K, H, W) the model's class probabilities.
        model_reliability: (K,) the model's per-class reliability.
        products: (H, W) product labels in the model's classes (:data:`NO_LABEL` where
            none), on the same grid.
        reliabilities: (K,) per product.
        pixel_ratios: Each product's pixel side over the grid's.

    Returns:
        (K, H, W) float32 fused scores, summing to 1 per pixel where any source speaks.
    """
    k = probs.shape[0]
    if len(products) != len(reliabilities) or len(products) != len(pixel_ratios):
        raise ValueError("one reliability and pixel ratio per product")
    kappa = [np.asarray(model_reliability, np.float32)]
    for labels, rel in zip(products, reliabilities, strict=True):
        given = np.bincount(labels[labels != NO_LABEL].ravel(), minlength=k)[:k] > 0
        kappa.append(np.where(given, np.asarray(rel, np.float32), 0.0))
    weights = fusion_weights(np.stack(kappa))  # (1 + P, K)
    fused = weights[0][:, None, None] * probs.astype(np.float32)
    for w, labels, ratio in zip(weights[1:], products, pixel_ratios, strict=True):
        b = boundary_weight(labels, ratio)
        for c in range(k):
            fused[c] += np.where(labels == c, w[c] * b, 0.0).astype(np.float32)
    total = fused.sum(axis=0, keepdims=True)
    return np.where(total > 0, fused / np.maximum(total, 1e-12), fused).astype(np.float32)
