"""Class-wise confidence-guided fusion of several segmenters' probability maps.

LandSegmenter (Liu, Huang & Zhu, 2025) fuses its own zero-shot prediction with CLIP's
class by class, guided by confidence, so that a class one source misses ("semantic
omission") is recovered from the other. The summary available to us does not give the
formula, so the rules below are our own, stated exactly.

Inputs: ``S`` sources, each ``P_s`` of shape (C, H, W) with per-pixel probabilities over
the same C classes (channel order agreed beforehand, e.g. background first), and an
optional validity mask ``V`` (H, W).

* ``"mean"``: ``F_c(x) = (1/S) Σ_s P_s,c(x)`` — the plain baseline.
* ``"max"``: ``F_c(x) = max_s P_s,c(x)`` — per class and pixel, the most confident
  source wins.
* ``"confidence_weighted"``: each source's reliability on class c is its mean
  confidence over the pixels it assigns to c::

      M_s,c = {x ∈ V : argmax_k P_s,k(x) = c}
      κ_s,c = mean_{x ∈ M_s,c} P_s,c(x)   if |M_s,c| ≥ min_pixels, else 0
      w_s,c = κ_s,c / Σ_s' κ_s',c          (w_s,c = 1/S when all κ_·,c are 0)
      F_c(x) = Σ_s w_s,c P_s,c(x)

  A source that never predicts c gets weight 0 for c, so c comes undiluted from the
  sources that do predict it instead of being averaged away.

With ``renormalize=True`` (default) the fused maps are divided by their sum over classes
so that each pixel is again a distribution; argmax labels are unchanged by this.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

FusionRule = Literal["mean", "max", "confidence_weighted"]
RULES: tuple[str, ...] = ("mean", "max", "confidence_weighted")


def _stack(sources: Sequence[np.ndarray]) -> np.ndarray:
    if not sources:
        raise ValueError("need at least one source")
    arrays = [np.asarray(s, dtype=np.float32) for s in sources]
    shape = arrays[0].shape
    if len(shape) != 3 or any(a.shape != shape for a in arrays):
        raise ValueError(f"sources must share one (C, H, W) shape, got {[a.shape for a in arrays]}")
    return np.stack(arrays)


def class_confidences(
    sources: Sequence[np.ndarray], valid: np.ndarray | None = None, min_pixels: int = 1
) -> np.ndarray:
    """κ: each source's mean confidence on the pixels it assigns to each class.

    Args:
        sources: S arrays (C, H, W) of class probabilities.
        valid: Optional (H, W) bool; only these pixels count.
        min_pixels: Fewer assigned pixels than this count as "class not predicted" (0).

    Returns:
        (S, C) float32.
    """
    probs = _stack(sources)
    s, c = probs.shape[:2]
    mask = np.ones(probs.shape[2:], bool) if valid is None else np.asarray(valid, bool)
    winners = probs.argmax(axis=1)  # (S, H, W)
    kappa = np.zeros((s, c), np.float32)
    for i in range(s):
        for k in range(c):
            where = (winners[i] == k) & mask
            n = int(where.sum())
            if n >= max(min_pixels, 1):
                kappa[i, k] = probs[i, k][where].mean()
    return kappa


def fusion_weights(kappa: np.ndarray) -> np.ndarray:
    """w: κ normalised over sources per class; uniform where no source predicts the class.

    Args:
        kappa: (S, C) from :func:`class_confidences`.

    Returns:
        (S, C) float32, columns summing to 1.
    """
    kappa = np.asarray(kappa, np.float32)
    total = kappa.sum(axis=0, keepdims=True)
    uniform = np.full_like(kappa, 1.0 / kappa.shape[0])
    return np.where(total > 0, kappa / np.where(total > 0, total, 1.0), uniform)


def fuse_probabilities(
    sources: Sequence[np.ndarray],
    rule: FusionRule = "confidence_weighted",
    valid: np.ndarray | None = None,
    min_pixels: int = 1,
    renormalize: bool = True,
) -> np.ndarray:
    """Fuse per-class probability maps from several sources (formulas in the module doc).

    Args:
        sources: S arrays (C, H, W) over the same classes.
        rule: ``"mean"``, ``"max"`` or ``"confidence_weighted"``.
        valid: Optional (H, W) bool mask for the confidence statistics.
        min_pixels: See :func:`class_confidences`.
        renormalize: Make each pixel sum to 1 over classes.

    Returns:
        (C, H, W) float32 fused probabilities.
    """
    probs = _stack(sources)
    if rule == "mean":
        fused = probs.mean(axis=0)
    elif rule == "max":
        fused = probs.max(axis=0)
    elif rule == "confidence_weighted":
        w = fusion_weights(class_confidences(list(probs), valid, min_pixels))
        fused = np.einsum("sc,schw->chw", w, probs)
    else:
        raise ValueError(f"unknown fusion rule {rule!r}; use one of {', '.join(RULES)}")
    if renormalize:
        fused = fused / np.maximum(fused.sum(axis=0, keepdims=True), 1e-12)
    return fused.astype(np.float32)
