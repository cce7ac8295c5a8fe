"""VLM-PP purification rule and pseudo-label selection policies on constructed tensors."""

from __future__ import annotations

import math

import pytest
import torch

from rs_reasoner_training.purify import (
    ConfidenceWeighted,
    FixedThreshold,
    LearnedThresholdPolicy,
    VlmPurifier,
    teacher_pseudo_labels,
    vlm_purify,
)

TAU = 0.7


def _case():
    """Six pixels (B=1, H=1, W=6), 3 classes; see the comments per pixel."""
    labels = torch.tensor([[[0, 0, 1, 2, 0, 1]]])
    conf = torch.tensor([[[0.9, 0.5, 0.2, 0.5, 0.2, 0.7]]])
    q = torch.tensor(
        [
            [0.1, 0.6, 0.7, 0.8, 0.05, 0.1],  # class 0
            [0.8, 0.3, 0.2, 0.1, 0.05, 0.8],  # class 1
            [0.1, 0.1, 0.1, 0.1, 0.05, 0.1],  # class 2
        ]
    ).view(1, 3, 1, 6)
    # p0: confident teacher (c >= tau) -> untouched although the verifier disagrees
    # p1: unsure, verifier agrees (0) -> fused with q[0] = 0.6
    # p2: unsure c=0.2 < 0.3, verifier says 0 -> rectified to 0, conf = 0.7
    # p3: unsure c=0.5 >= 0.3, verifier says 0 -> label kept, conf fused with q[2] = 0.1
    # p4: verifier has no opinion (max 0.05 <= 0.1) -> untouched
    # p5: c == tau exactly -> not checked (strictly below tau only)
    return labels, conf, q


def _fused(c: float, q: float, tau: float = TAU) -> float:
    a = c / tau
    return a * c + (1 - a) * q


def test_agreement_disagreement_and_thresholds_match_the_formulas():
    labels, conf, q = _case()
    out = vlm_purify(labels, conf, q, tau=TAU, rectify_below=0.3)
    assert out.labels.flatten().tolist() == [0, 0, 0, 2, 0, 1]
    expected = [0.9, _fused(0.5, 0.6), 0.7, _fused(0.5, 0.1), 0.2, 0.7]
    assert out.confidence.flatten().tolist() == pytest.approx(expected, abs=1e-6)
    assert out.purified.flatten().tolist() == [False, True, False, True, False, False]
    assert out.rectified.flatten().tolist() == [False, False, True, False, False, False]
    # Agreement raises an unsure confidence toward the verifier's; alpha = c / tau.
    assert out.confidence[0, 0, 1] > 0.5
    assert _fused(0.5, 0.6) == pytest.approx((0.5 / 0.7) * 0.5 + (1 - 0.5 / 0.7) * 0.6)


def test_contested_pixels_untouched_without_fuse_contested():
    labels, conf, q = _case()
    out = vlm_purify(labels, conf, q, fuse_contested=False)
    assert out.labels[0, 0, 3] == 2
    assert out.confidence[0, 0, 3] == pytest.approx(0.5)
    assert out.purified.flatten().tolist() == [False, True, False, False, False, False]


def test_rectification_threshold_and_tau_are_honoured():
    labels, conf, q = _case()
    # Rectify only below 0.1: p2 (c=0.2) keeps its label and is fused with q[1] = 0.2.
    out = vlm_purify(labels, conf, q, rectify_below=0.1)
    assert not out.rectified.any()
    assert out.labels[0, 0, 2] == 1
    assert out.confidence[0, 0, 2] == pytest.approx(_fused(0.2, 0.2))
    # tau = 0.4: the c = 0.5 pixels are no longer checked; alpha uses the new tau.
    out = vlm_purify(labels, conf, q, tau=0.4)
    assert out.purified.flatten().tolist() == [False] * 6
    assert out.confidence[0, 0, 2] == pytest.approx(0.7)  # still rectified (0.2 < 0.3)
    # A higher verifier bar hides p2's opinion (0.7) too.
    out = vlm_purify(labels, conf, q, min_verifier_confidence=0.75)
    assert out.rectified.sum() == 0 and out.labels[0, 0, 2] == 1


class _CountingVerifier:
    def __init__(self, probs: torch.Tensor) -> None:
        self.q, self.calls = probs, 0

    def probs(self, images, class_names):
        self.calls += 1
        assert list(class_names) == ["a", "b", "c"]
        return self.q


def test_purifier_runs_the_verifier_only_on_unsure_batches():
    labels, conf, q = _case()
    verifier = _CountingVerifier(q)
    purifier = VlmPurifier(verifier, ["a", "b", "c"])
    sure = torch.tensor([0.9, 0.05, 0.05]).view(1, 3, 1, 1).expand(1, 3, 1, 6)
    out = purifier(torch.zeros(1, 3, 1, 6), sure)
    assert verifier.calls == 0 and not out.purified.any()
    unsure = torch.tensor([0.4, 0.35, 0.25]).view(1, 3, 1, 1).expand(1, 3, 1, 6)
    out = purifier(torch.zeros(1, 3, 1, 6), unsure)
    assert verifier.calls == 1
    base = teacher_pseudo_labels(unsure)
    ref = vlm_purify(base.labels, base.confidence, q)
    assert torch.equal(out.labels, ref.labels) and torch.equal(out.confidence, ref.confidence)


def test_fixed_threshold_and_confidence_weighting():
    labels = torch.zeros(1, 1, 3, dtype=torch.long)
    conf = torch.tensor([[[0.5, 0.95, 0.99]]])
    assert FixedThreshold(0.95).weights(labels, conf).flatten().tolist() == [0, 1, 1]
    assert ConfidenceWeighted().weights(labels, conf).flatten().tolist() == pytest.approx(
        [0.5, 0.95, 0.99]
    )
    w = ConfidenceWeighted(min_confidence=0.9).weights(labels, conf)
    assert w.flatten().tolist() == pytest.approx([0.0, 0.95, 0.99])


def test_learned_policy_rewards_held_out_iou_change_relative_to_mean():
    policy = LearnedThresholdPolicy(2, arms=(0.5, 0.9), initial=0.9, epsilon=0.0, step_size=0.5)
    policy.begin_epoch(0)
    assert policy.thresholds.tolist() == pytest.approx([0.9, 0.9])  # ties -> initial
    assert policy.update([0.2, 0.4]) is None  # first call: baseline only
    reward = policy.update([0.5, 0.5])  # deltas 0.3 and 0.1, mean 0.2
    assert reward.tolist() == pytest.approx([0.1, -0.1])
    assert policy.values[:, 1].tolist() == pytest.approx([0.05, -0.05])
    policy.begin_epoch(1)  # greedy: class 1's 0.9 arm is now worse than untried 0.5
    assert policy.thresholds.tolist() == pytest.approx([0.9, 0.5])
    labels = torch.tensor([[[0, 1, 1]]])
    conf = torch.tensor([[[0.8, 0.6, 0.4]]])
    assert policy.weights(labels, conf).flatten().tolist() == [0, 1, 0]
    # NaN IoU (class absent) gives no reward to that class.
    reward = policy.update([0.6, math.nan])
    assert math.isnan(reward[1]) and reward[0] == pytest.approx(0.0)
    clone = LearnedThresholdPolicy(2, arms=(0.5, 0.9), epsilon=0.0)
    clone.load_state_dict(policy.state_dict())
    assert torch.equal(clone.values, policy.values) and torch.equal(clone.choice, policy.choice)
