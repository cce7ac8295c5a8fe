"""The training-free CLIP open-vocabulary segmenter on randomly initialised real models."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rs_reasoner.errors import InvalidRequestError, MissingWeightsError
from rs_reasoner.schemas import Mode
from rs_reasoner.segmenters.base import SegmentationQuery
from rs_reasoner.segmenters.hub_weights import OPENAI_VIT_B16_WEIGHTS
from rs_reasoner.segmenters.open_vocab.prompts import TEMPLATES
from rs_reasoner.segmenters.open_vocab.training_free import (
    ClipOpenVocabSegmenter,
    guided_filter,
)
from rs_reasoner.segmenters.sliding_windows import window_starts
from rs_reasoner.weights import WeightSpec

CLASSES = (("building", "roof"), ("water",), ("tree", "forest"))


def query(classes=CLASSES) -> SegmentationQuery:
    return SegmentationQuery(text="q", mode=Mode.open_vocabulary, classes=classes)


def scene(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Blocks of flat colour plus noise: enough structure for a random CLIP to vary."""
    rng = np.random.default_rng(seed)
    img = np.zeros((h, w, 3), np.float32)
    colours = rng.uniform(0, 255, (4, 3))
    img[: h // 2, : w // 2], img[: h // 2, w // 2 :] = colours[0], colours[1]
    img[h // 2 :, : w // 3], img[h // 2 :, w // 3 :] = colours[2], colours[3]
    return np.clip(img + rng.normal(0, 12, img.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def seg(make_tiny) -> ClipOpenVocabSegmenter:
    """The exact path (the CPU fast path has its own tests in test_cpu_fast_path.py)."""
    model, tokenizer = make_tiny(0)
    return ClipOpenVocabSegmenter(
        model, tokenizer, window=64, stride=32, batch_size=4, templates=TEMPLATES[:4],
        cpu_fast=False,
    )


@pytest.mark.parametrize("shape", [(40, 50), (64, 64), (97, 150), (130, 70)])
def test_output_shapes_types_and_ranges(seg: ClipOpenVocabSegmenter, shape) -> None:
    h, w = shape
    result = seg.segment(scene(h, w), np.ones((h, w), bool), query())
    assert result.labels.shape == result.scores.shape == (h, w)
    assert result.labels.dtype == np.int32 and result.scores.dtype == np.float32
    assert result.labels.min() >= 0 and result.labels.max() <= len(CLASSES)
    assert np.isfinite(result.scores).all()
    assert result.scores.min() >= 0 and result.scores.max() <= 1
    assert result.class_names == ["building", "water", "tree"]


def test_all_windows_are_batched_through_one_image_encoding(seg, monkeypatch) -> None:
    calls: list[int] = []
    forward = seg.encoder.forward

    def spy(images: torch.Tensor):
        calls.append(images.shape[0])
        assert images.shape[1:] == (3, 64, 64)
        return forward(images)

    monkeypatch.setattr(seg.encoder, "forward", spy)
    seg.segment(scene(97, 150), np.ones((97, 150), bool), query())
    n_windows = len(window_starts(97, 64, 32)) * len(window_starts(150, 64, 32))
    assert sum(calls) == n_windows == 3 * 4  # every window once, for all classes at once
    assert calls == [4, 4, 4]


def test_overlapping_windows_are_averaged(seg, monkeypatch) -> None:
    """Every window sees the same features, so the averaged logits must be flat."""
    text = seg.text_embeddings([("water",), ("tree",)])
    embedding = text[0] + 0.5 * text[1]

    def constant(images: torch.Tensor):
        b, _, h, w = images.shape
        grid = embedding.expand(b, h // 16, w // 16, -1)
        return grid, torch.zeros(b, embedding.shape[0])

    monkeypatch.setattr(seg.encoder, "forward", constant)
    logits = seg._tile_logits(scene(97, 150), np.ones((97, 150), bool), text)
    expected = F.normalize(text, dim=-1) @ F.normalize(embedding, dim=0)
    assert logits.shape == (2, 97, 150)
    torch.testing.assert_close(logits, expected[:, None, None].expand(2, 97, 150))


def test_probabilities_sum_to_one_with_background_first(seg) -> None:
    probs = seg.predict_probabilities(scene(70, 90), np.ones((70, 90), bool), CLASSES)
    assert probs.shape == (1 + len(CLASSES), 70, 90) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(0), 1.0, atol=1e-5)
    result = seg.segment(scene(70, 90), np.ones((70, 90), bool), query())
    np.testing.assert_array_equal(result.labels, probs.argmax(0))
    np.testing.assert_allclose(result.scores, probs.max(0), atol=1e-6)


def test_nodata_pixels_get_label_and_score_zero(seg) -> None:
    valid = np.ones((80, 100), bool)
    valid[10:30, 20:70] = False
    valid[:, -7:] = False
    result = seg.segment(scene(80, 100), valid, query())
    assert (result.labels[~valid] == 0).all() and (result.scores[~valid] == 0).all()
    assert (result.scores[valid] > 0).all()


def test_deterministic(seg) -> None:
    a = seg.segment(scene(90, 120, 3), np.ones((90, 120), bool), query())
    b = seg.segment(scene(90, 120, 3), np.ones((90, 120), bool), query())
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.scores, b.scores)


def test_class_order_does_not_change_which_class_a_pixel_gets(seg) -> None:
    image, valid = scene(90, 120, 5), np.ones((90, 120), bool)
    a = seg.segment(image, valid, query(CLASSES))
    b = seg.segment(image, valid, query(CLASSES[::-1]))
    names_a = np.array(["", *a.class_names])[a.labels]
    names_b = np.array(["", *b.class_names])[b.labels]
    assert len(np.unique(a.labels)) > 1  # the check is not vacuous
    np.testing.assert_array_equal(names_a, names_b)
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-5)


def test_synonyms_form_one_class(seg) -> None:
    image, valid = scene(64, 64), np.ones((64, 64), bool)
    result = seg.segment(image, valid, query((("building", "roof", "house"), ("water",))))
    assert result.class_names == ["building", "water"] and result.labels.max() <= 2
    merged = seg.text_embeddings([("building", "roof", "house")])
    alone = seg.text_embeddings([("building",)])
    assert not torch.allclose(merged, alone)


def test_text_encoder_runs_once_per_class(make_tiny, monkeypatch) -> None:
    model, tokenizer = make_tiny(1)
    seg = ClipOpenVocabSegmenter(model, tokenizer, window=64, stride=64)
    prompts: list[int] = []
    encode_text = model.encode_text

    def spy(tokens: torch.Tensor, *args, **kwargs):
        prompts.append(tokens.shape[0])
        return encode_text(tokens, *args, **kwargs)

    monkeypatch.setattr(model, "encode_text", spy)
    image, valid = scene(64, 64), np.ones((64, 64), bool)
    seg.segment(image, valid, query((("building", "roof"),)))
    first = sum(prompts)
    assert first == len(TEMPLATES) * (2 + len(seg.settings.background))
    seg.segment(image, valid, query((("roof", "building"),)))
    assert sum(prompts) == first  # cache hit: the text encoder was not called again
    seg.segment(image, valid, query((("building", "roof"), ("water",))))
    assert sum(prompts) == first + len(TEMPLATES)  # only the new class


def test_empty_class_list_is_a_clear_error(seg) -> None:
    with pytest.raises(InvalidRequestError, match="at least one class"):
        seg.segment(scene(64, 64), np.ones((64, 64), bool), query(()))


# --------------------------------------------------------------------- upsampling


def step_scene(h: int = 64, w: int = 96, edge: int = 37, patch: int = 16):
    """An image with a sharp colour edge off the patch grid and patch-level logits."""
    img = torch.zeros(3, h, w)
    img[:, :, :edge] = torch.tensor([0.2, 0.5, 0.2])[:, None, None]
    img[:, :, edge:] = torch.tensor([0.6, 0.55, 0.5])[:, None, None]
    img += 0.03 * torch.randn(3, h, w, generator=torch.Generator().manual_seed(0))
    truth = torch.zeros(h, w, dtype=torch.long)
    truth[:, edge:] = 1
    # A perfect patch classifier: each 16-px patch takes its majority class.
    right = (F.avg_pool2d(truth[None, None].float(), patch)[0, 0] > 0.5).float()
    logits = 0.1 * torch.stack([1 - right, right])
    bilinear = F.interpolate(logits[None], size=(h, w), mode="bilinear", align_corners=False)[0]
    return img, truth, bilinear, edge


@pytest.mark.parametrize("subsample", [1, 4])
def test_guided_upsampler_keeps_a_sharp_edge_that_bilinear_blurs(subsample: int) -> None:
    img, truth, bilinear, edge = step_scene()
    guided = guided_filter(img, bilinear, radius=16, eps=1e-2, subsample=subsample)
    errors_bilinear = (bilinear.argmax(0) != truth).sum().item()
    errors_guided = (guided.argmax(0) != truth).sum().item()
    assert errors_bilinear >= 4 * 64  # the patch grid puts the edge >= 4 px off
    assert errors_guided <= 64  # at most one column off

    def jump(m: torch.Tensor) -> float:
        d = (m[1] - m[0]).mean(0)
        return ((d[edge] - d[edge - 1]) / (d[-1] - d[0])).item()

    assert jump(guided) > 0.4 and jump(bilinear) < 0.1


def test_guided_filter_leaves_smooth_inputs_and_flat_guides_alone() -> None:
    g = torch.Generator().manual_seed(0)
    src = torch.randn(2, 40, 50, generator=g)
    flat = torch.full((3, 40, 50), 0.5)
    # A flat guide explains nothing: the output is the box-smoothed source.
    out = guided_filter(flat, src, radius=3, eps=1e-2)
    assert out.shape == src.shape and out.std() < src.std()
    constant = torch.full((2, 40, 50), 0.7)
    torch.testing.assert_close(
        guided_filter(torch.rand(3, 40, 50, generator=g), constant, 5, 1e-3), constant
    )


def test_upsampler_is_selectable(make_tiny) -> None:
    model, tokenizer = make_tiny(0)
    common = {"window": 64, "stride": 32, "templates": TEMPLATES[:2], "cpu_fast": False}
    guided = ClipOpenVocabSegmenter(model, tokenizer, upsampler="guided", **common)
    plain = ClipOpenVocabSegmenter(model, tokenizer, upsampler="bilinear", **common)
    image, valid = scene(80, 80), np.ones((80, 80), bool)
    p_guided = guided.predict_probabilities(image, valid, CLASSES)
    p_plain = plain.predict_probabilities(image, valid, CLASSES)
    assert not np.allclose(p_guided, p_plain)
    with pytest.raises(ValueError, match="upsampler"):
        ClipOpenVocabSegmenter(model, tokenizer, upsampler="nearest")
    with pytest.raises(ValueError, match="multiple of the patch"):
        ClipOpenVocabSegmenter(model, tokenizer, window=72, stride=36)


# ------------------------------------------------------------------------ weights


def test_missing_weights_name_the_repo_and_the_pull_command(empty_hub_cache, monkeypatch) -> None:
    monkeypatch.delenv(OPENAI_VIT_B16_WEIGHTS.env_var, raising=False)
    with pytest.raises(MissingWeightsError) as info:
        ClipOpenVocabSegmenter.from_pretrained()
    err = info.value
    assert "timm/vit_base_patch16_clip_224.openai" in err.message
    assert str(empty_hub_cache) in err.message
    assert "rs-reasoner models pull clip-openvocab" in (err.hint or "")


def test_missing_checkpoint_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(MissingWeightsError, match="does not exist"):
        ClipOpenVocabSegmenter.from_pretrained(checkpoint=tmp_path / "RemoteCLIP-ViT-L-14.pt")


def test_loads_a_local_checkpoint_and_an_env_var_folder(
    make_tiny, tiny_model_name, tmp_path, empty_hub_cache, monkeypatch
) -> None:
    model, _ = make_tiny(7)
    folder = tmp_path / "weights"
    folder.mkdir()
    torch.save(model.state_dict(), folder / "open_clip_pytorch_model.bin")
    from_file = ClipOpenVocabSegmenter.from_pretrained(
        model_name=tiny_model_name, checkpoint=folder / "open_clip_pytorch_model.bin"
    )
    spec = WeightSpec("example/tiny-clip", filename="open_clip_pytorch_model.bin")
    monkeypatch.setenv(spec.env_var, str(folder))
    from_env = ClipOpenVocabSegmenter.from_pretrained(
        model_name=tiny_model_name, pretrained="custom", weights_spec=spec
    )
    for seg in (from_file, from_env):
        torch.testing.assert_close(
            seg.model.visual.proj.detach(), model.visual.proj.detach(), rtol=0, atol=0
        )


def test_close_releases_the_model(make_tiny) -> None:
    model, tokenizer = make_tiny(0)
    seg = ClipOpenVocabSegmenter(model, tokenizer, window=64, stride=64)
    seg.text_embeddings([("water",)])
    seg.close()
    assert seg.model is None and len(seg.text_cache) == 0
    with pytest.raises(RuntimeError, match="closed"):
        seg.segment(scene(64, 64), np.ones((64, 64), bool), query())


def test_real_vit_b16_architecture_random_init() -> None:
    """The full ViT-B/16 architecture (random weights, nothing downloaded) end to end."""
    start = time.perf_counter()
    seg = ClipOpenVocabSegmenter.from_pretrained(pretrained=None, templates=TEMPLATES[:2])
    built = time.perf_counter()
    assert seg.encoder.patch_size == 16 and seg.encoder.embed_dim == 512
    result = seg.segment(scene(120, 100), np.ones((120, 100), bool), query(CLASSES[:2]))
    done = time.perf_counter()
    assert result.labels.shape == (120, 100) and result.labels.max() <= 2
    assert (result.scores > 0).all()
    print(f"ViT-B-16 build {built - start:.1f} s, one-window segment {done - built:.1f} s")


def test_settings_are_checked_before_loading_and_stored_as_tuples() -> None:
    from rs_reasoner.segmenters.open_vocab.training_free import OpenVocabSettings

    with pytest.raises(ValueError, match="stride"):
        ClipOpenVocabSegmenter.from_pretrained(pretrained=None, window=64, stride=0)
    with pytest.raises(TypeError, match="no_such_setting"):
        ClipOpenVocabSegmenter.from_pretrained(pretrained=None, no_such_setting=1)
    s = OpenVocabSettings(templates=["a photo of {}."], background=["clutter"])
    assert s.templates == ("a photo of {}.",) and s.background == ("clutter",)
    hash(s)  # frozen and hashable


def _cache_file(cache: Path, repo_id: str, name: str) -> Path:
    snap = cache / f"models--{repo_id.replace('/', '--')}" / "snapshots" / ("c" * 40)
    snap.mkdir(parents=True, exist_ok=True)
    (snap.parents[1] / "refs").mkdir(exist_ok=True)
    (snap.parents[1] / "refs" / "main").write_text("c" * 40)
    return snap / name


def test_a_cache_filled_by_open_clip_itself_is_found(
    make_tiny, tiny_model_name, empty_hub_cache
) -> None:
    """open_clip caches only ``open_clip_model.safetensors`` where the repo has it."""
    from safetensors.torch import save_file

    from rs_reasoner.weights import is_available

    model, _ = make_tiny(8)
    repo = OPENAI_VIT_B16_WEIGHTS.repo_id
    (_cache_file(empty_hub_cache, repo, "open_clip_config.json")).write_text("{}")
    assert not is_available(OPENAI_VIT_B16_WEIGHTS)
    weights = _cache_file(empty_hub_cache, repo, "open_clip_model.safetensors")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    assert is_available(OPENAI_VIT_B16_WEIGHTS)
    seg = ClipOpenVocabSegmenter.from_pretrained(
        model_name=tiny_model_name, pretrained="openai", weights_spec=OPENAI_VIT_B16_WEIGHTS
    )
    assert seg.model_id.endswith("open_clip_model.safetensors")
    torch.testing.assert_close(seg.model.visual.proj, model.visual.proj, rtol=0, atol=0)


def test_remoteclip_loads_its_plain_state_dict_from_a_clone_with_quick_gelu(
    make_tiny, tiny_model_name, tmp_path, empty_hub_cache, monkeypatch
) -> None:
    """The production loader on a clone of chendelong/RemoteCLIP (a folder of ``.pt``
    state dicts), the architecture shrunk to the tiny config."""
    from open_clip.transformer import QuickGELU

    from rs_reasoner.segmenters.hub_weights import REMOTECLIP_VIT_L14_WEIGHTS
    from rs_reasoner.segmenters.open_vocab import training_free

    model, _ = make_tiny(9)
    clone = tmp_path / "RemoteCLIP"
    clone.mkdir()
    torch.save(model.state_dict(), clone / "RemoteCLIP-ViT-L-14.pt")  # plain state dict
    torch.save({}, clone / "RemoteCLIP-RN50.pt")
    monkeypatch.setenv(REMOTECLIP_VIT_L14_WEIGHTS.env_var, str(clone))
    built: dict = {}
    real = training_free.create_open_clip

    def tiny_instead(model_name, checkpoint, device="cpu", quick_gelu=False):
        built.update(model_name=model_name, checkpoint=checkpoint, quick_gelu=quick_gelu)
        return real(tiny_model_name, checkpoint, device=device, quick_gelu=quick_gelu)

    monkeypatch.setattr(training_free, "create_open_clip", tiny_instead)
    seg = training_free.remoteclip_segmenter()
    assert built["model_name"] == "ViT-L-14"
    assert built["checkpoint"] == clone / "RemoteCLIP-ViT-L-14.pt"
    assert built["quick_gelu"] is True
    acts = [m for m in seg.model.visual.modules() if isinstance(m, QuickGELU)]
    assert acts  # the blocks really run QuickGELU
    torch.testing.assert_close(seg.model.visual.proj, model.visual.proj, rtol=0, atol=0)


@pytest.mark.parametrize("radius", [1, 4, 8, 9, 30])
def test_box_mean_is_the_mean_over_the_clipped_window(radius: int) -> None:
    """Both ways of computing it (pooling for small radii, cumulative sums for large)."""
    from rs_reasoner.segmenters.open_vocab.training_free import box_mean

    x = torch.randn(2, 3, 23, 31, generator=torch.Generator().manual_seed(radius))
    out = box_mean(x, radius)
    expected = torch.empty_like(x)
    for i in range(23):
        for j in range(31):
            rows = slice(max(0, i - radius), i + radius + 1)
            cols = slice(max(0, j - radius), j + radius + 1)
            expected[..., i, j] = x[..., rows, cols].mean(dim=(-2, -1))
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
