"""The CPU fast path of the CLIP segmenter (half resolution, side-by-side windows, reduced
precision) against its exact path, on randomly initialised real open_clip models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import nn

from rs_reasoner.schemas import Mode, SegmentOptions
from rs_reasoner.segmenters.base import SegmentationQuery
from rs_reasoner.segmenters.open_vocab import training_free
from rs_reasoner.segmenters.open_vocab.prompts import TEMPLATES
from rs_reasoner.segmenters.open_vocab.training_free import (
    CPU_FAST,
    ClipOpenVocabSegmenter,
    OpenVocabSettings,
    fast_settings,
    resolve_precision,
    valid_box,
)
from rs_reasoner.segmenters.sliding_windows import window_starts

CLASSES = (("building", "roof"), ("water",), ("tree", "forest"))


def blocks(h: int, w: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Four blocks of flat colour plus noise, and which block each pixel is in."""
    rng = np.random.default_rng(seed)
    truth = np.zeros((h, w), np.int64)
    truth[: h // 2, w // 2 :] = 1
    truth[h // 2 :, : w // 3] = 2
    truth[h // 2 :, w // 3 :] = 3
    colours = rng.uniform(0, 255, (4, 3))
    image = colours[truth] + rng.normal(0, 12, (h, w, 3))
    return np.clip(image, 0, 255).astype(np.uint8), truth


@pytest.fixture
def make_seg(make_tiny):
    def make(**settings) -> ClipOpenVocabSegmenter:
        model, tokenizer = make_tiny(0)
        common = {"window": 64, "stride": 32, "batch_size": 4, "templates": TEMPLATES[:2]}
        return ClipOpenVocabSegmenter(model, tokenizer, **{**common, **settings})

    return make


def spy_windows(encoder: nn.Module, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    forward = encoder.forward

    def spy(images: torch.Tensor):
        calls.append(images.shape[0])
        return forward(images)

    monkeypatch.setattr(encoder, "forward", spy)
    return calls


def test_fast_path_is_the_cpu_default_and_exact_switches_it_off(make_seg, monkeypatch) -> None:
    seg = make_seg()
    assert seg.settings.cpu_fast  # the default
    fast = seg.run_settings()
    assert fast.working_scale == CPU_FAST["working_scale"] and fast.stride == fast.window
    assert resolve_precision(fast.cpu_precision) in ("bfloat16", "int8")
    assert seg.run_settings(exact=True) == seg.settings
    assert make_seg(cpu_fast=False).run_settings() == make_seg(cpu_fast=False).settings

    image, valid = blocks(97, 150)
    exact_calls = spy_windows(seg.encoder, monkeypatch)
    p_exact = seg.predict_probabilities(image, valid, CLASSES, exact=True)
    fast_encoder = seg._encoder_for(fast)
    assert fast_encoder is not seg.encoder
    fast_calls = spy_windows(fast_encoder, monkeypatch)
    p_fast = seg.predict_probabilities(image, valid, CLASSES)
    # Exact: 64-px windows every 32 px over 97 x 150. Fast: the tile at half size
    # (48 x 75, padded to one window high), windows side by side.
    assert sum(exact_calls) == len(window_starts(97, 64, 32)) * len(window_starts(150, 64, 32))
    assert sum(fast_calls) == len(window_starts(64, 64, 64)) * len(window_starts(75, 64, 64))
    assert sum(fast_calls) < sum(exact_calls) / 4
    assert not np.allclose(p_exact, p_fast)


def test_fast_path_covers_every_pixel(make_seg) -> None:
    """A pixel no window covered would come out NaN (0 / 0) or with score 0."""
    seg = make_seg()
    for h, w in [(40, 50), (97, 150), (130, 70), (200, 33)]:
        image, _ = blocks(h, w)
        probs = seg.predict_probabilities(image, np.ones((h, w), bool), CLASSES)
        assert probs.shape == (1 + len(CLASSES), h, w)
        assert np.isfinite(probs).all()
        np.testing.assert_allclose(probs.sum(0), 1.0, atol=1e-4)
        assert (probs.max(0) > 0).all()


def test_exact_path_stays_float32_after_the_fast_path_ran(make_seg) -> None:
    seg = make_seg()
    image, valid = blocks(80, 96)
    before = seg.predict_probabilities(image, valid, CLASSES, exact=True)
    seg.predict_probabilities(image, valid, CLASSES)
    after = seg.predict_probabilities(image, valid, CLASSES, exact=True)
    np.testing.assert_array_equal(before, after)
    assert all(p.dtype == torch.float32 for p in seg.model.visual.parameters())


@pytest.mark.parametrize("native_bf16", [True, False])
def test_auto_precision_is_bfloat16_where_native_else_int8(
    make_seg, monkeypatch, native_bf16: bool
) -> None:
    monkeypatch.setattr(training_free, "native_bfloat16", lambda: native_bf16)
    seg = make_seg()
    encoder = seg._encoder_for(seg.run_settings())
    linears = [m for m in encoder.visual.modules() if "Linear" in type(m).__name__]
    if native_bf16:
        assert encoder.visual.conv1.weight.dtype == torch.bfloat16
    else:
        assert encoder.visual.conv1.weight.dtype == torch.float32
        assert any("quantized" in type(m).__module__ for m in linears)
    image, _ = blocks(70, 90)
    probs = seg.predict_probabilities(image, np.ones((70, 90), bool), CLASSES)
    assert np.isfinite(probs).all()


@pytest.mark.parametrize("seed", range(4))
def test_fast_path_agrees_with_the_exact_path_away_from_edges(make_seg, seed: int) -> None:
    """Classes whose embeddings are the exact path's mean patch embedding in each block:
    the exact labels follow the blocks, and the fast path must find the same blocks.

    The fast path sees a 32-px square of the tile as one patch (16 px at half scale), so
    its labels may differ from the exact path's where a patch straddles a block edge,
    and a little further through the guided filter and window context; farther than
    1.5 fast patches (48 px) from any edge they must agree. Over the whole image at
    least 90 % agree (the band within 48 px of an edge is about half of it; measured
    0.93-0.996 over these seeds).
    """
    seg = make_seg(background=())
    image, truth = blocks(256, 320, seed)
    valid = np.ones(truth.shape, bool)
    norm = (torch.from_numpy(image).permute(2, 0, 1).float() / 255 - seg._mean) / seg._std
    with torch.inference_mode():
        patches, _ = seg.encoder(norm[None])
    patch_truth = F.interpolate(
        torch.from_numpy(truth)[None, None].float(), size=patches.shape[1:3], mode="nearest"
    )[0, 0].long()
    feats = F.normalize(patches[0], dim=-1)
    centres = torch.stack([feats[patch_truth == c].mean(0) for c in range(4)])
    seg.text_embeddings = lambda _classes: centres  # type: ignore[method-assign]
    classes = [("a",), ("b",), ("c",), ("d",)]
    exact = seg.predict_probabilities(image, valid, classes, exact=True)[1:].argmax(0)
    fast = seg.predict_probabilities(image, valid, classes)[1:].argmax(0)
    assert (exact == truth).mean() > 0.85  # the reference follows the blocks
    edges = np.zeros(truth.shape, bool)
    edges[:-1] |= truth[:-1] != truth[1:]
    edges[:, :-1] |= truth[:, :-1] != truth[:, 1:]
    far = ndimage.distance_transform_edt(~edges) > 48
    assert (fast == exact)[far].all()
    assert (fast == exact).mean() >= 0.9


def test_windows_run_only_over_the_valid_pixels(make_seg, monkeypatch) -> None:
    """A tile's context margin past the raster edge is NoData: it costs no encoding, and
    a tile with no valid pixel runs no window at all."""
    seg = make_seg(cpu_fast=False)
    calls = spy_windows(seg.encoder, monkeypatch)
    image, _ = blocks(200, 200)
    valid = np.zeros((200, 200), bool)
    valid[130:, 150:] = True  # a 70 x 50 corner of the raster
    query = SegmentationQuery(text="q", mode=Mode.open_vocabulary, classes=CLASSES)
    result = seg.segment(image, valid, query)
    assert sum(calls) == len(window_starts(70, 64, 32)) * len(window_starts(64, 64, 32))
    assert (result.labels[~valid] == 0).all() and (result.scores[~valid] == 0).all()
    assert (result.scores[valid] > 0).all()
    calls.clear()
    probs = seg.predict_probabilities(image, np.zeros((200, 200), bool), CLASSES)
    assert calls == [] and (probs[0] == 1).all() and (probs[1:] == 0).all()


def test_valid_box() -> None:
    valid = np.zeros((6, 7), bool)
    assert valid_box(valid) is None
    valid[2, 3] = valid[4, 1] = True
    assert valid_box(valid) == (2, 1, 5, 4)


def test_fast_settings_keep_the_rest_and_a_smaller_working_scale() -> None:
    s = OpenVocabSettings(window=96, stride=48, working_scale=0.25, lam=0.1)
    f = fast_settings(s)
    assert (f.window, f.stride, f.working_scale, f.lam) == (96, 96, 0.25, 0.1)
    assert not f.cpu_fast
    with pytest.raises(ValueError, match="cpu_precision"):
        OpenVocabSettings(cpu_precision="fp8")


def test_the_request_option_exact_takes_the_exact_path(make_seg, monkeypatch) -> None:
    seg = make_seg()
    image, valid = blocks(97, 150)
    runs: list[OpenVocabSettings] = []
    tile_logits = seg._tile_logits

    def spy(image, valid, text, settings=None):
        runs.append(settings)
        return tile_logits(image, valid, text, settings)

    monkeypatch.setattr(seg, "_tile_logits", spy)
    for exact in (False, True):
        options = SegmentOptions(exact=exact)
        query = SegmentationQuery("q", Mode.open_vocabulary, classes=CLASSES, options=options)
        seg.segment(image, valid, query)
    assert runs == [seg.run_settings(), seg.settings]
