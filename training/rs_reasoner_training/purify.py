"""Pseudo-labels: VLM purification (SemiEarth's VLM-PP) and pixel selection policies.

VLM-PP, for teacher pseudo-label ``y`` with confidence ``c`` (max softmax) and verifier
class probabilities ``q`` at a pixel:

* only low-confidence pixels (``c < tau``, tau = 0.7) are checked, and only where the
  verifier has an opinion (its max probability > ``min_verifier_confidence``, 0.1);
* agreement (verifier argmax == y): fuse ``c' = a*c + (1-a)*q[y]`` with ``a = c/tau``, so
  the less sure the teacher, the more the verifier counts;
* disagreement with ``c < rectify_below`` (0.3): rectify, ``y' = argmax q`` and
  ``c' = max q``;
* disagreement with ``c >= rectify_below``: the label stays and, as in the reference
  implementation (github wangshanwen001/SemiEarth, ``vlm_pp.py``), the confidence is fused
  with the verifier's probability *of the teacher's label*, which lowers it; the paper's
  text does not say, so ``fuse_contested=False`` leaves these pixels untouched.

Selection policies then turn (labels, confidence) into per-pixel loss weights: a fixed
threshold (FixMatch/UniMatch style), confidence weighting, or a small learned per-class
threshold policy (Learning to Label: selection as a decision rewarded by its effect on
held-out labelled pixels).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import nn


@runtime_checkable
class Verifier(Protocol):
    """An independent, frozen segmenter asked about the teacher's unsure pixels."""

    def probs(self, images: torch.Tensor, class_names: Sequence[str]) -> torch.Tensor:
        """Class probabilities (B, C, H, W), channels in ``class_names`` order.

        Args:
            images: (B, 3, H, W) float in [0, 1] (the teacher's weak view).
            class_names: The classes being trained.
        """
        ...


@dataclass
class PseudoLabels:
    """Pseudo-labels of a batch.

    Attributes:
        labels: (B, H, W) int64 class ids.
        confidence: (B, H, W) float confidence of each label.
        purified: (B, H, W) bool, confidence fused with the verifier's.
        rectified: (B, H, W) bool, label replaced by the verifier's.
    """

    labels: torch.Tensor
    confidence: torch.Tensor
    purified: torch.Tensor
    rectified: torch.Tensor


def teacher_pseudo_labels(probs: torch.Tensor) -> PseudoLabels:
    """Argmax labels and max-probability confidences of teacher probabilities (B, C, H, W)."""
    confidence, labels = probs.max(dim=1)
    none = torch.zeros_like(labels, dtype=torch.bool)
    return PseudoLabels(labels, confidence, none, none.clone())


def vlm_purify(
    labels: torch.Tensor,
    confidence: torch.Tensor,
    verifier_probs: torch.Tensor,
    *,
    tau: float = 0.7,
    rectify_below: float = 0.3,
    min_verifier_confidence: float = 0.1,
    fuse_contested: bool = True,
) -> PseudoLabels:
    """Apply the VLM-PP rule (see the module docstring) pixel-wise.

    Args:
        labels: (B, H, W) teacher labels.
        confidence: (B, H, W) teacher confidences.
        verifier_probs: (B, C, H, W) verifier probabilities.
        tau: Pixels with confidence below it are checked.
        rectify_below: Disagreeing pixels below this confidence take the verifier's label.
        min_verifier_confidence: Verifier max probability needed to count as an opinion.
        fuse_contested: Fuse disagreeing pixels that are not rectified (reference code).

    Returns:
        Purified labels and confidences, and which pixels were purified/rectified.
    """
    q_max, q_label = verifier_probs.max(dim=1)
    q_of_label = verifier_probs.gather(1, labels.unsqueeze(1)).squeeze(1)
    checked = (confidence < tau) & (q_max > min_verifier_confidence)
    agree = q_label == labels
    rectified = checked & ~agree & (confidence < rectify_below)
    purified = checked & agree
    if fuse_contested:
        purified |= checked & ~agree & ~rectified
    alpha = confidence / tau
    fused = alpha * confidence + (1.0 - alpha) * q_of_label.to(confidence.dtype)
    new_conf = torch.where(purified, fused, confidence)
    new_conf = torch.where(rectified, q_max.to(confidence.dtype), new_conf)
    new_labels = torch.where(rectified, q_label, labels)
    return PseudoLabels(new_labels, new_conf, purified, rectified)


@dataclass
class VlmPurifier:
    """Teacher probabilities -> pseudo-labels purified by a verifier.

    Attributes:
        verifier: The frozen verifier.
        class_names: Classes being trained (passed to the verifier).
        tau, rectify_below, min_verifier_confidence, fuse_contested: See :func:`vlm_purify`.
    """

    verifier: Verifier
    class_names: Sequence[str]
    tau: float = 0.7
    rectify_below: float = 0.3
    min_verifier_confidence: float = 0.1
    fuse_contested: bool = True

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, teacher_probs: torch.Tensor) -> PseudoLabels:
        """Pseudo-labels of a batch (the verifier runs only if some pixel is unsure)."""
        base = teacher_pseudo_labels(teacher_probs)
        if not bool((base.confidence < self.tau).any()):
            return base
        q = self.verifier.probs(images, list(self.class_names)).float()
        if q.shape[-2:] != teacher_probs.shape[-2:]:
            q = F.interpolate(
                q, size=teacher_probs.shape[-2:], mode="bilinear", align_corners=False
            )
        return vlm_purify(
            base.labels,
            base.confidence,
            q,
            tau=self.tau,
            rectify_below=self.rectify_below,
            min_verifier_confidence=self.min_verifier_confidence,
            fuse_contested=self.fuse_contested,
        )


class ModelVerifier:
    """A frozen segmentation model as verifier (e.g. one trained earlier on the labels).

    Without pretrained vision-language weights (air-gapped machines), an independently
    trained model is the available second opinion; any :class:`Verifier` can replace it.

    Args:
        model: Callable (B, 3, H, W) -> logits (B, K, H, W).
        model_classes: Class of each of the model's output channels.
    """

    def __init__(self, model: nn.Module, model_classes: Sequence[str]) -> None:
        self.model = model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.model_classes = list(model_classes)

    @torch.no_grad()
    def probs(self, images: torch.Tensor, class_names: Sequence[str]) -> torch.Tensor:
        """Probabilities in ``class_names`` order (see :class:`Verifier`)."""
        missing = [c for c in class_names if c not in self.model_classes]
        if missing:
            raise ValueError(f"verifier does not know class(es) {missing}")
        device = next(self.model.parameters()).device
        logits = self.model(images.to(device)).float()
        probs = logits.softmax(dim=1)
        order = [self.model_classes.index(c) for c in class_names]
        return probs[:, order].to(images.device)


class PseudoLabelSelector(Protocol):
    """Turns pseudo-labels into per-pixel weights of the unsupervised loss."""

    def weights(self, labels: torch.Tensor, confidence: torch.Tensor) -> torch.Tensor:
        """(B, H, W) float weights in [0, 1]."""
        ...


@dataclass
class FixedThreshold:
    """Keep pixels whose confidence is at least ``threshold`` (weight 1), drop the rest.

    Note: with the reference's 0.95, a fused confidence ``c**2/tau + (1 - c/tau)*q`` passes
    only if the teacher's ``c`` was under 0.037, impossible with fewer than 28 classes
    (``c >= 1/C``): only rectified pixels then gain from purification.
    """

    threshold: float = 0.95

    def weights(self, labels: torch.Tensor, confidence: torch.Tensor) -> torch.Tensor:
        """See :class:`PseudoLabelSelector`."""
        return (confidence >= self.threshold).float()


@dataclass
class ConfidenceWeighted:
    """Weight each pixel by its (purified) confidence; zero below ``min_confidence``."""

    min_confidence: float = 0.0

    def weights(self, labels: torch.Tensor, confidence: torch.Tensor) -> torch.Tensor:
        """See :class:`PseudoLabelSelector`."""
        return confidence.float() * (confidence >= self.min_confidence).float()


class LearnedThresholdPolicy:
    """Per-class confidence thresholds chosen by a bandit rewarded on held-out pixels.

    A small instance of Learning to Label's idea (selection as a decision rewarded by
    its effect): each class picks a threshold from ``arms`` per epoch (epsilon-greedy
    on value estimates); after the epoch, the reward of class k's choice is the change of
    its IoU on the held-out labelled pixels minus the mean change over classes (so the
    general rise of all IoUs during training is not credited to any threshold). Values
    follow rewards with a constant step (non-stationary: the model keeps changing).

    Args:
        num_classes: Number of classes.
        arms: Candidate thresholds.
        initial: Threshold preferred among equally valued arms (start: all equal).
        epsilon: Exploration probability per class and epoch.
        step_size: Value update rate.
        seed: Exploration seed (choices depend only on seed, epoch and values: resumable).
    """

    def __init__(
        self,
        num_classes: int,
        arms: Sequence[float] = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95),
        initial: float = 0.9,
        epsilon: float = 0.2,
        step_size: float = 0.5,
        seed: int = 0,
    ) -> None:
        self.arms = torch.tensor(list(arms), dtype=torch.float32)
        self.initial, self.epsilon, self.step_size, self.seed = initial, epsilon, step_size, seed
        self.values = torch.zeros(num_classes, len(arms), dtype=torch.float64)
        self.counts = torch.zeros(num_classes, len(arms), dtype=torch.int64)
        pref = int(torch.argmin((self.arms - initial).abs()))
        self.choice = torch.full((num_classes,), pref, dtype=torch.int64)
        self.previous_iou: torch.Tensor | None = None

    @property
    def thresholds(self) -> torch.Tensor:
        """(num_classes,) current thresholds."""
        return self.arms[self.choice]

    def begin_epoch(self, epoch: int) -> None:
        """Choose each class's threshold for this epoch."""
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        closeness = -(self.arms.double() - self.initial).abs() * 1e-9  # tie-break only
        for k in range(len(self.choice)):
            if float(torch.rand((), generator=g)) < self.epsilon:
                self.choice[k] = int(torch.randint(len(self.arms), (), generator=g))
            else:
                self.choice[k] = int(torch.argmax(self.values[k] + closeness))

    def weights(self, labels: torch.Tensor, confidence: torch.Tensor) -> torch.Tensor:
        """See :class:`PseudoLabelSelector`."""
        thr = self.thresholds.to(confidence.device)[labels]
        return (confidence >= thr).float()

    def update(self, per_class_iou: Sequence[float]) -> torch.Tensor | None:
        """Reward this epoch's choices with the held-out per-class IoU change.

        Args:
            per_class_iou: IoU of each class on held-out pixels after the epoch (NaN
                where not measurable).

        Returns:
            The per-class rewards (NaN where none), or None on the first call (baseline).
        """
        iou = torch.tensor(list(per_class_iou), dtype=torch.float64)
        prev, self.previous_iou = self.previous_iou, iou
        if prev is None:
            return None
        delta = iou - prev
        ok = ~torch.isnan(delta)
        if not ok.any():
            return None
        reward = torch.full_like(delta, float("nan"))
        reward[ok] = delta[ok] - delta[ok].mean()
        for k in torch.nonzero(ok).flatten().tolist():
            a = int(self.choice[k])
            self.counts[k, a] += 1
            self.values[k, a] += self.step_size * (reward[k] - self.values[k, a])
        return reward

    def state_dict(self) -> dict[str, Any]:
        """State for checkpoints."""
        return {
            "values": self.values.clone(),
            "counts": self.counts.clone(),
            "choice": self.choice.clone(),
            "previous_iou": None if self.previous_iou is None else self.previous_iou.clone(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.values = state["values"].clone()
        self.counts = state["counts"].clone()
        self.choice = state["choice"].clone()
        prev = state["previous_iou"]
        self.previous_iou = None if prev is None else prev.clone()
