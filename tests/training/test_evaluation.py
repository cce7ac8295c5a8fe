"""Scoring on held-out tiles: one pass for several models, modes restored, no autograd."""

from __future__ import annotations

import torch

from rs_reasoner_training.evaluation import evaluate, evaluate_all
from rs_reasoner_training.models import UNet
from tests.training.helpers import CLASSES, synthetic_data


def test_evaluate_all_is_evaluate_per_model_in_one_pass():
    data = synthetic_data()
    torch.manual_seed(0)
    a, b = (UNet(len(CLASSES), base_channels=8, depth=2) for _ in range(2))
    b.eval()
    cpu = torch.device("cpu")
    both = evaluate_all([a, b], data.val, len(CLASSES), cpu, batch_size=1)
    assert torch.equal(both[0], evaluate(a, data.val, len(CLASSES), cpu))
    assert torch.equal(both[1], evaluate(b, data.val, len(CLASSES), cpu))
    assert not torch.equal(both[0], both[1])  # two different models were judged
    assert a.training and not b.training  # each model's mode is restored


def test_evaluate_all_records_no_gradients():
    # Scoring during training must not build an autograd graph per batch (GPU memory).
    torch.manual_seed(0)
    model = UNet(len(CLASSES), base_channels=8, depth=2)
    tracked = []
    model.register_forward_hook(lambda module, inputs, output: tracked.append(output.requires_grad))
    evaluate_all([model], synthetic_data().val, len(CLASSES), torch.device("cpu"))
    assert tracked and not any(tracked)
