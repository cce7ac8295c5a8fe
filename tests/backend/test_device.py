"""Device helpers: rs_reasoner.device (one ``auto`` rule and one autocast rule for all)."""

from __future__ import annotations

import contextlib

import pytest
import torch

from rs_reasoner.device import autocast, resolve_device


def test_auto_follows_cuda_availability(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda"
    assert resolve_device("cuda:1") == "cuda:1" and resolve_device("cpu") == "cpu"


@pytest.mark.parametrize("device", ["cpu", torch.device("cpu")])
def test_autocast_is_a_no_op_off_cuda(device: object) -> None:
    assert isinstance(autocast(device), contextlib.nullcontext)
    with autocast(device):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


def test_autocast_picks_bf16_on_cuda_unless_disabled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    made: list[tuple[str, torch.dtype]] = []
    monkeypatch.setattr(torch, "autocast", lambda kind, dtype: made.append((kind, dtype)))
    autocast(torch.device("cuda", 0))
    autocast("cuda:0")
    assert made == [("cuda", torch.bfloat16)] * 2
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    autocast("cuda")
    assert made[-1] == ("cuda", torch.float16)
    assert isinstance(autocast("cuda", enabled=False), contextlib.nullcontext)
