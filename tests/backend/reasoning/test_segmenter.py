"""The reasoning segmenter: answer → pixels → SAM → maps, whole path and through the pipeline."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from rs_reasoner.errors import MissingWeightsError
from rs_reasoner.pipeline import SegmentationPipeline
from rs_reasoner.schemas import Mode, SegmentRequest
from rs_reasoner.segmenters import registry
from rs_reasoner.segmenters.base import SegmentationQuery, TileResult
from rs_reasoner.segmenters.hub_weights import PROMPTER_WEIGHTS, sam_weights
from rs_reasoner.segmenters.reasoning import ReasoningSegmenter
from rs_reasoner.segmenters.reasoning.geometry import ModelFrame, Window
from rs_reasoner.segmenters.reasoning.prompter import QwenPrompter
from rs_reasoner.segmenters.reasoning.sam import (
    ObjectMask,
    SamRefiner,
    build_sam2_model,
)
from rs_reasoner.segmenters.reasoning.segmenter import compose_masks, think2seg_rs_7b
from rs_reasoner.segmenters.reasoning.template import MODEL_SIZE
from tests.backend.reasoning.helpers import (
    BoxPredictor,
    FixedPrompter,
    SpyPredictor,
    box_mask,
    random_image,
)
from tests.support.rasters import UTM_TRANSFORM, write_geotiff

THINK = "The two dark ponds next to the road are the targets."
TWO_PONDS = (
    f"<think> {THINK} </think>\n<answer>```json["
    '{"bbox_2d": [84, 120, 252, 300], "positive_points": [[150, 200], [200, 250]]}, '
    '{"bbox_2d": [600, 500, 800, 700], "positive_points": [[700, 600], [650, 620]]}'
    "]```</answer>"
)


def query(text: str = "the ponds next to the road") -> SegmentationQuery:
    return SegmentationQuery(text=text, mode=Mode.reasoning)


def fixed_segmenter(answer: str, **kwargs: Any) -> tuple[ReasoningSegmenter, FixedPrompter,
                                                          BoxPredictor]:
    prompter, predictor = FixedPrompter(answer), BoxPredictor()
    seg = ReasoningSegmenter(prompter=prompter, sam=SamRefiner(predictor), **kwargs)
    return seg, prompter, predictor


@pytest.mark.parametrize("height,width", [(700, 1300), (3000, 2100)])
def test_fixed_answer_lands_on_the_right_pixels(height: int, width: int) -> None:
    """Boxes in 840 space come back as exactly those boxes in extent pixels, whether SAM
    ran on the whole extent (small) or on zoomed crops (large)."""
    seg, prompter, predictor = fixed_segmenter(TWO_PONDS)
    image = random_image(height, width)
    result = seg.segment(image, np.ones((height, width), bool), query())

    overview, asked = prompter.calls[0]
    assert overview.shape == (840, 840, 3) and asked == "the ponds next to the road"
    frame = ModelFrame(width=width, height=height)
    expected = [
        box_mask((height, width), frame.box_to_pixels(b))
        for b in [(84, 120, 252, 300), (600, 500, 800, 700)]
    ]
    assert isinstance(result, TileResult)
    assert result.class_names == ["the ponds next to the road"]
    np.testing.assert_array_equal(result.labels > 0, expected[0] | expected[1])
    np.testing.assert_array_equal(result.instances == 1, expected[0])
    np.testing.assert_array_equal(result.instances == 2, expected[1])
    assert result.scores[expected[0]].min() > 0.99 and result.scores[~expected[0]
                                                                     & ~expected[1]].max() == 0
    assert result.text == THINK
    crops = seg.last_run.sam.crops
    assert crops == (1 if max(height, width) <= 1024 else 2)
    assert seg.last_run.mode == "instances" and seg.last_run.objects == 2


def test_no_target_gives_an_empty_result_with_the_reasoning() -> None:
    seg, _, predictor = fixed_segmenter(
        "<think>There is no river in this image.</think><answer>```json[]```</answer>"
    )
    result = seg.segment(random_image(300, 400), np.ones((300, 400), bool), query("the river"))
    assert not result.labels.any() and not result.scores.any()
    assert result.class_names == ["the river"]
    assert result.text.startswith("There is no river in this image.")
    assert "No target found" in result.text
    assert predictor.calls == []  # SAM is not run


def test_garbage_answer_is_a_no_target_result() -> None:
    seg, _, _ = fixed_segmenter("��_3S]�<answer>[{'bbox_2d': [NaN")
    result = seg.segment(random_image(200, 200), np.ones((200, 200), bool), query())
    assert not result.labels.any() and "No target found" in result.text


def test_nodata_is_respected() -> None:
    seg, prompter, _ = fixed_segmenter(TWO_PONDS)
    valid = np.ones((840, 840), bool)
    valid[:, :200] = False
    result = seg.segment(random_image(840, 840), valid, query())
    assert not result.labels[:, :200].any() and result.labels[:, 200:].any()
    assert prompter.calls[0][0][:, :200].max() == 0  # NoData blacked out in the overview

    prompter.calls.clear()
    empty = seg.segment(random_image(50, 50), np.zeros((50, 50), bool), query())
    assert not empty.labels.any() and prompter.calls == []


def test_object_names_become_labels_and_union_mode_drops_instances() -> None:
    answer = (
        '<answer>[{"bbox_2d": [10, 10, 100, 100], "label": "warehouse"}, '
        '{"bbox_2d": [400, 400, 500, 500]}]</answer>'
    )
    seg, _, _ = fixed_segmenter(answer, instance_mode="union")
    result = seg.segment(random_image(840, 840), np.ones((840, 840), bool), query("depots"))
    assert result.class_names == ["warehouse", "depots"]
    assert result.instances is None
    assert result.labels[50, 50] == 1 and result.labels[450, 450] == 2


def test_raw_answer_goes_to_the_log(caplog: pytest.LogCaptureFixture) -> None:
    seg, _, _ = fixed_segmenter(TWO_PONDS)
    with caplog.at_level(logging.INFO, logger="rs_reasoner.segmenters.reasoning"):
        seg.segment(random_image(100, 100), np.ones((100, 100), bool), query())
    assert any(TWO_PONDS in r.getMessage() for r in caplog.records)
    assert any("2 object(s)" in r.getMessage() for r in caplog.records)


def test_bad_instance_mode() -> None:
    with pytest.raises(ValueError, match="instance_mode"):
        fixed_segmenter(TWO_PONDS, instance_mode="some")


def _mask(window: Window, logits: np.ndarray) -> ObjectMask:
    return ObjectMask(window=window, logits=logits.astype(np.float32), iou=0.9)


def test_compose_auto_keeps_disjoint_objects_as_instances() -> None:
    a = np.full((4, 4), -5.0)
    a[:2, :2] = 3.0
    b = np.full((4, 4), -5.0)
    b[2:, 2:] = 1.0
    masks = [_mask(Window(0, 0, 4, 4), a), _mask(Window(4, 4, 8, 8), b)]
    out = compose_masks(masks, ["x", "x"], (8, 8), np.ones((8, 8), bool))
    assert out.mode == "instances" and out.class_names == ["x"]
    assert out.instances[0, 0] == 1 and out.instances[6, 6] == 2
    assert out.scores[0, 0] == pytest.approx(1 / (1 + np.exp(-3.0)))
    assert out.scores[6, 6] == pytest.approx(1 / (1 + np.exp(-1.0)))
    assert out.labels.sum() == 8 and out.scores[3, 3] == 0


def test_compose_auto_unions_overlapping_objects_and_confidence_wins() -> None:
    a = np.full((10, 10), -5.0)
    a[:, :6] = 1.0
    b = np.full((10, 10), -5.0)
    b[:, 4:] = 4.0
    masks = [_mask(Window(0, 0, 10, 10), a), _mask(Window(0, 0, 10, 10), b)]
    out = compose_masks(masks, ["pond", "pond"], (10, 10), np.ones((10, 10), bool))
    assert out.mode == "union" and out.instances is None
    assert (out.labels == 1).all()
    assert out.scores[0, 5] == pytest.approx(1 / (1 + np.exp(-4.0)))  # b wins the overlap
    inst = compose_masks(masks, ["pond", "pond"], (10, 10), np.ones((10, 10), bool),
                         mode="instances")
    assert (inst.instances[:, :4] == 1).all() and (inst.instances[:, 4:] == 2).all()


def test_compose_renumbers_instances_that_lost_every_pixel() -> None:
    full = np.full((5, 5), 2.0)
    empty = np.full((5, 5), -2.0)
    masks = [_mask(Window(0, 0, 5, 5), empty), _mask(Window(0, 0, 5, 5), full)]
    out = compose_masks(masks, ["a", "a"], (5, 5), np.ones((5, 5), bool), mode="instances")
    assert set(np.unique(out.instances)) == {1}


def test_missing_weights_fail_fast_with_the_projects_error(empty_hub_cache: Path) -> None:
    with pytest.raises(MissingWeightsError) as info:
        ReasoningSegmenter.from_pretrained(device="cpu")
    assert "RicardoString/Think2Seg-RS-3B" in str(info.value)
    assert "rs-reasoner models pull think2seg-rs" in str(info.value)


def test_missing_sam_is_reported_even_when_the_prompter_is_there(
    empty_hub_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    snap = tmp_path / "snap"
    snap.mkdir()
    # A complete-looking prompter snapshot (the files it must have; never read: the missing
    # SAM is reported before anything is loaded).
    for name in ("config.json", "model.safetensors", "tokenizer_config.json",
                 "preprocessor_config.json"):
        (snap / name).write_text("{}")
    monkeypatch.setenv(PROMPTER_WEIGHTS["think2seg-rs-3b"].env_var, str(snap))
    with pytest.raises(MissingWeightsError, match="facebook/sam2.1-hiera-small"):
        ReasoningSegmenter.from_pretrained(device="cpu")  # nothing was loaded before the check


def test_whole_path_with_real_tiny_models_from_local_weights(
    qwen_parts: tuple[Any, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    empty_hub_cache: Path,
) -> None:
    """image → prompt → generation (tiny random Qwen2.5-VL) → parse → SAM 2.1 hiera-tiny
    (random, real 1024 input) → TileResult, built by the default constructor from local
    weights. The random model's text is extended with a real answer so SAM has prompts."""
    model, processor = qwen_parts
    model.save_pretrained(tmp_path / "qwen")
    processor.save_pretrained(tmp_path / "qwen")
    torch.manual_seed(0)
    sam_state = build_sam2_model("tiny", None, "cpu").state_dict()
    ckpt = tmp_path / "sam2.1_hiera_tiny.pt"
    torch.save({"model": sam_state}, ckpt)  # the layout of Meta's checkpoints
    monkeypatch.setenv(PROMPTER_WEIGHTS["think2seg-rs-3b"].env_var, str(tmp_path / "qwen"))
    monkeypatch.setenv(sam_weights("tiny").env_var, str(ckpt))

    seg = ReasoningSegmenter.from_pretrained(device="cpu", sam_variant="tiny", max_new_tokens=4)
    assert isinstance(seg.prompter, QwenPrompter)
    assert seg.prompter.model.config._attn_implementation == "sdpa"
    for name, value in seg.sam.predictor.model.state_dict().items():
        torch.testing.assert_close(value, sam_state[name])
    spy = SpyPredictor(seg.sam.predictor)
    seg.sam.predictor = spy
    decode = seg.prompter.processor.batch_decode
    seg.prompter.processor.batch_decode = lambda *a, **k: [decode(*a, **k)[0] + TWO_PONDS]

    height, width = 500, 700
    image = random_image(height, width, seed=7)
    result = seg.segment(image, np.ones((height, width), bool), query())

    run = seg.last_run
    assert 1 <= run.prompter.new_tokens <= 4 and run.prompter.prompt_tokens > 900
    assert run.answer.endswith(TWO_PONDS)
    assert run.objects == 2 and run.sam.crops == 1
    assert result.labels.shape == (height, width) and result.scores.dtype == np.float32
    assert result.text == THINK
    assert ((result.scores >= 0) & (result.scores <= 1)).all()
    frame = ModelFrame(width=width, height=height)
    np.testing.assert_allclose(
        spy.calls[0]["box"], frame.box_to_pixels((84, 120, 252, 300)), atol=1e-3
    )
    np.testing.assert_array_equal(spy.images[0], image)
    seg.close()


def test_polygons_through_the_pipeline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A georeferenced 600x900 raster: the fixed answer's boxes come back as polygons at
    their map coordinates, with the reasoning text attribute."""
    height, width = 600, 900
    data = np.moveaxis(random_image(height, width, seed=2), -1, 0)
    path = write_geotiff(tmp_path / "scene.tif", data)

    def factory(device: str = "cpu") -> ReasoningSegmenter:
        return fixed_segmenter(TWO_PONDS)[0]

    spec = registry.ModelSpec(
        name="test-think2seg-fixed", modes=(Mode.reasoning,), description="test",
        factory=factory, whole_extent=True,
    )
    registry.specs()  # load the built-in registrations first
    monkeypatch.setitem(registry._SPECS, spec.name, spec)

    request = SegmentRequest(
        raster=str(path), query="the ponds next to the road", mode=Mode.reasoning,
        model=spec.name,
    )
    pipeline = SegmentationPipeline(device="cpu")
    pipeline.validate(request, str(path))
    result = pipeline.run(request, str(path))
    gdf = result.polygons.sort_values("instance")
    assert result.reasoning == THINK
    assert list(gdf["instance"]) == [1, 2]
    assert set(gdf["reasoning"]) == {THINK} and set(gdf["label"]) == {request.query}
    frame = ModelFrame(width=width, height=height)
    for geom, model_box in zip(gdf.geometry, [(84, 120, 252, 300), (600, 500, 800, 700)],
                               strict=True):
        x1, y1, x2, y2 = frame.box_to_pixels(model_box)
        # Whole pixels whose centres are inside the box, then to map coordinates.
        c0, c1 = np.ceil(x1 - 0.5), np.ceil(x2 - 0.5)
        r0, r1 = np.ceil(y1 - 0.5), np.ceil(y2 - 0.5)
        left, top = UTM_TRANSFORM @ (c0, r0)
        right, bottom = UTM_TRANSFORM @ (c1, r1)
        np.testing.assert_allclose(geom.bounds, (left, bottom, right, top))
        assert geom.area == pytest.approx((right - left) * (top - bottom))


@pytest.mark.parametrize(
    "name,prompter", [("think2seg-rs", "think2seg-rs-3b"), ("think2seg-rs-7b", "think2seg-rs-7b")]
)
def test_registration_matches_the_code(name: str, prompter: str) -> None:
    """The registered spec's weights are the ones the loader resolves; the model needs the
    whole extent, and reads the prompter's overview size."""
    spec = registry.get_spec(name)

    def key(w: Any) -> tuple:
        return (w.repo_id, w.filename, w.revision, w.allow_patterns)

    assert {key(w) for w in spec.weights} == {
        key(PROMPTER_WEIGHTS[prompter]), key(sam_weights("small"))
    }
    assert Mode.reasoning in spec.modes
    assert spec.whole_extent is True and spec.input_size == MODEL_SIZE
    loader = registry.resolve_factory(spec)
    assert loader in (ReasoningSegmenter.from_pretrained, think2seg_rs_7b)
