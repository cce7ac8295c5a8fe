"""SAM 3's interactive head as the reasoning mask stage, loaded by the production loaders
from a tiny random SAM 3 saved in ``facebook/sam3``'s layout (see :mod:`.sam3_layout`)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import torch
from rasterio.windows import Window

from rs_reasoner.cli import main
from rs_reasoner.errors import MissingWeightsError
from rs_reasoner.schemas import Mode
from rs_reasoner.segmenters import registry
from rs_reasoner.segmenters.hub_weights import PROMPTER_WEIGHTS, SAM3_WEIGHTS
from rs_reasoner.segmenters.reasoning.parser import ObjectPrompt
from rs_reasoner.segmenters.reasoning.prompter import QwenPrompter
from rs_reasoner.segmenters.reasoning.sam import SamRefiner
from rs_reasoner.segmenters.reasoning.sam3_masks import (
    Sam3Predictor,
    sam3_refiner,
    sam3_weights_path,
)
from rs_reasoner.segmenters.reasoning.segmenter import ReasoningSegmenter, think2seg_sam3
from rs_reasoner.segmenters.reasoning.template import MODEL_SIZE
from rs_reasoner.segmenters.reasoning.tiny_qwen import tiny_processor, tiny_qwen
from tests.backend.published_layouts import snapshot_dir, write_think2seg
from tests.backend.reasoning.helpers import random_image
from tests.backend.reasoning.sam3_layout import tiny_sam3_video, write_sam3_video
from tests.support.segmenters import TINY_REASONING_ANSWER, TINY_REASONING_THINK

#: The tiny SAM 3's input side (facebook/sam3: 1008).
SIDE = 112


@pytest.fixture(scope="module")
def sam3_video() -> tuple[Any, Any]:
    """The tiny ``Sam3VideoModel`` (what facebook/sam3 holds) and its processor."""
    return tiny_sam3_video(image_size=SIDE)


@pytest.fixture
def sam3_snapshot(empty_hub_cache: Path, sam3_video: tuple[Any, Any]) -> Path:
    """``facebook/sam3`` in the (empty, offline) Hub cache."""
    return write_sam3_video(snapshot_dir(empty_hub_cache, "facebook/sam3"), *sam3_video)


class _PromptSpy:
    """Records what SAM 3's prompt encoder is given."""

    def __init__(self, encoder: torch.nn.Module) -> None:
        self.calls: list[dict[str, Any]] = []
        self.handle = encoder.register_forward_pre_hook(self, with_kwargs=True)

    def __call__(self, _module: Any, _args: tuple, kwargs: dict) -> None:
        self.calls.append({k: v for k, v in kwargs.items() if v is not None})


def test_the_tracker_loads_every_weight_from_facebook_sam3s_layout(
    sam3_snapshot: Path, sam3_video: tuple[Any, Any]
) -> None:
    """Backbone from the detector, neck from ``tracker_neck``, prompt encoder and mask
    decoder from ``tracker_model``: nothing of the head is left at random init."""
    path = sam3_weights_path("think2seg-sam3")  # resolved from the Hub id, as in production
    assert path == sam3_snapshot
    refiner = sam3_refiner(path)
    loaded = refiner.predictor.model.state_dict()
    published = sam3_video[0].state_dict()

    def source(name: str) -> str:
        if name.startswith("vision_encoder.backbone."):
            return "detector_model." + name
        if name.startswith("vision_encoder.neck."):
            return name.replace("vision_encoder.neck.", "tracker_neck.", 1)
        return "tracker_model." + name

    heads = 0
    for name, value in loaded.items():
        assert torch.equal(value, published[source(name)]), name
        heads += name.startswith(("prompt_encoder.", "mask_decoder."))
    assert heads > 20
    # Crops are planned at SAM 3's own input side.
    assert refiner.min_side == refiner.max_side == SIDE


def test_the_same_download_serves_sam3_openvocab(
    sam3_snapshot: Path, sam3_video: tuple[Any, Any]
) -> None:
    """One ``facebook/sam3`` snapshot: the concept detector loads from it too, every weight."""
    from rs_reasoner.segmenters.open_vocab.sam3_openvocab import Sam3OpenVocabSegmenter

    detector = Sam3OpenVocabSegmenter.from_pretrained(device="cpu").model
    published = sam3_video[0].state_dict()
    for name, value in detector.state_dict().items():
        assert torch.equal(value, published["detector_model." + name]), name


def test_box_and_points_reach_the_head_in_its_input_frame(
    sam3_snapshot: Path,
) -> None:
    """An object in the lower right of a 300 x 260 extent: SAM 3 is given that crop, and its
    prompt encoder the box and points in crop pixels scaled to the 112-px input."""
    refiner = sam3_refiner(sam3_snapshot)
    spy = _PromptSpy(refiner.predictor.model.prompt_encoder)
    image = random_image(260, 300, seed=3)
    box, points = (200.0, 150.0, 260.0, 230.0), ((220.0, 180.0), (240.0, 200.0))
    masks = refiner.predict(image, [ObjectPrompt(box=box, points=points)])
    spy.handle.remove()

    window = masks[0].window
    assert (window.row0, window.col0) != (0, 0)  # a crop, not the whole extent
    assert masks[0].logits.shape == (window.height, window.width) == (SIDE, SIDE)
    sx, sy = SIDE / window.width, SIDE / window.height
    (call,) = spy.calls
    expected_box = [(box[0] - window.col0) * sx, (box[1] - window.row0) * sy,
                    (box[2] - window.col0) * sx, (box[3] - window.row0) * sy]
    np.testing.assert_allclose(call["input_boxes"].reshape(4).numpy(), expected_box, atol=1e-4)
    expected_points = [[(x - window.col0) * sx, (y - window.row0) * sy] for x, y in points]
    np.testing.assert_allclose(call["input_points"].reshape(-1, 2).numpy(), expected_points,
                               atol=1e-4)
    assert call["input_labels"].reshape(-1).tolist() == [1, 1]


def test_masks_are_the_documented_calls_and_follow_the_box(sam3_snapshot: Path) -> None:
    """The stage's mask equals transformers' documented Sam3Tracker call (processor with
    the image and the prompts, model, post-processing) for the same crop; another box gives
    another mask."""
    refiner = sam3_refiner(sam3_snapshot)
    predictor: Sam3Predictor = refiner.predictor
    image = random_image(SIDE, SIDE, seed=4)

    def documented(box: list[float], points: list[list[float]]) -> np.ndarray:
        inputs = predictor.processor(
            images=image, input_points=[[points]], input_labels=[[[1] * len(points)]],
            input_boxes=[[box]], return_tensors="pt",
        )
        with torch.inference_mode():
            out = predictor.model(**inputs, multimask_output=False)
        return predictor.processor.post_process_masks(
            out.pred_masks, inputs["original_sizes"], binarize=False
        )[0][0, 0].numpy()

    results = []
    for box, points in (([10, 12, 60, 70], [[30, 40], [40, 50]]),
                        ([50, 40, 105, 100], [[80, 70]])):
        prompt = ObjectPrompt(box=tuple(map(float, box)), points=tuple(map(tuple, points)))
        (mask,) = refiner.predict(image, [prompt])
        reference = documented(box, points)
        # Random weights give logits of ~1e-5: compare at their own scale.
        scale = float(np.abs(reference).max())
        assert scale > 0
        np.testing.assert_allclose(mask.logits, reference, rtol=0, atol=1e-3 * scale)
        results.append(mask.logits / scale)
    assert np.abs(results[0] - results[1]).max() > 0.1


def test_missing_sam3_is_reported_before_anything_loads(
    empty_hub_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    snap = tmp_path / "prompter"
    snap.mkdir()
    for name in ("config.json", "model.safetensors", "tokenizer_config.json",
                 "preprocessor_config.json"):
        (snap / name).write_text("{}")  # never read: the missing SAM 3 is reported first
    monkeypatch.setenv(PROMPTER_WEIGHTS["think2seg-rs-3b"].env_var, str(snap))
    with pytest.raises(MissingWeightsError, match="facebook/sam3") as info:
        think2seg_sam3(device="cpu")
    assert "rs-reasoner models pull think2seg-sam3" in str(info.value)
    with pytest.raises(ValueError, match="mask_stage"):
        ReasoningSegmenter.from_pretrained(mask_stage="sam4")  # type: ignore[arg-type]


def test_registration_and_default_only_on_cuda_with_the_weights(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = registry.get_spec("think2seg-sam3")
    assert set(spec.weights) == {PROMPTER_WEIGHTS["think2seg-rs-3b"], SAM3_WEIGHTS}
    assert spec.whole_extent and spec.input_size == MODEL_SIZE
    assert spec.default_devices == ("cuda",)
    assert registry.resolve_factory(spec) is think2seg_sam3

    shipped = [registry.get_spec(n) for n in ("think2seg-rs", "think2seg-rs-7b", spec.name)]
    monkeypatch.setattr(registry, "specs", lambda: shipped)
    monkeypatch.setattr(registry, "is_available", lambda _w: True)
    assert registry.default_for(Mode.reasoning, "cuda").name == "think2seg-sam3"
    assert registry.default_for(Mode.reasoning, "cpu").name == "think2seg-rs"
    monkeypatch.setattr(registry, "is_available", lambda w: w != SAM3_WEIGHTS)
    assert registry.default_for(Mode.reasoning, "cuda").name == "think2seg-rs"


@pytest.fixture
def raster(shared_data: Path, tmp_path: Path) -> Path:
    """A 200 x 240 crop of the NEON 10 cm orthophoto."""
    out = tmp_path / "crop.tif"
    with rasterio.open(shared_data / "neon_osbs_rgb_10cm_utm17n.tif") as src:
        window = Window(300, 200, 240, 200)
        data = src.read([1, 2, 3], window=window)
        profile = src.profile | {"width": 240, "height": 200, "count": 3,
                                 "transform": src.window_transform(window)}
    profile.pop("photometric", None)
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(data)
    return out


def test_cli_segment_with_think2seg_sam3_returns_polygons(
    empty_hub_cache: Path, sam3_video: tuple[Any, Any], raster: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture,
) -> None:
    """``rs-reasoner segment --model think2seg-sam3`` through the production loaders: the
    Think2Seg-RS-3B snapshot (a tiny random Qwen2.5-VL) and facebook/sam3 (tiny random
    SAM 3). Random weights never write an answer, so a fixed one is appended to the
    generated text; parse → SAM 3 → polygons is the real path."""
    out = tmp_path / "answer.gpkg"
    args = ["segment", str(raster), "--query", "the bright patch", "--model", "think2seg-sam3",
            "--out", str(out), "--device", "cpu", "--quiet"]
    processor = tiny_processor()
    write_think2seg(snapshot_dir(empty_hub_cache, "RicardoString/Think2Seg-RS-3B"),
                    tiny_qwen(processor, seed=3), processor)
    assert main(args) == 2  # SAM 3 missing: the usual message, no traceback
    err = capsys.readouterr().err
    assert "facebook/sam3" in err and "rs-reasoner models pull think2seg-sam3" in err
    assert "Traceback" not in err

    write_sam3_video(snapshot_dir(empty_hub_cache, "facebook/sam3"), *sam3_video)
    generate = QwenPrompter.generate
    seen: list[QwenPrompter] = []

    def canned(self: QwenPrompter, image: np.ndarray, query: str) -> Any:
        self.max_new_tokens = 4  # the random model's text is discarded anyway
        seen.append(self)
        answer = generate(self, image, query)
        return replace(answer, text=answer.text + TINY_REASONING_ANSWER)

    monkeypatch.setattr(QwenPrompter, "generate", canned)
    spied: list[SamRefiner] = []
    load = ReasoningSegmenter.from_pretrained.__func__  # type: ignore[attr-defined]

    def spy(cls: type, **kwargs: Any) -> ReasoningSegmenter:
        seg = load(cls, **kwargs)
        spied.append(seg.sam)
        return seg

    monkeypatch.setattr(ReasoningSegmenter, "from_pretrained", classmethod(spy))
    assert main(args) == 0
    assert len(seen) == 1 and isinstance(spied[0].predictor, Sam3Predictor)

    gdf = gpd.read_file(out)
    assert len(gdf) >= 1
    assert set(gdf["label"]) == {"the bright patch"}
    assert set(gdf["reasoning"]) == {TINY_REASONING_THINK}
    with rasterio.open(raster) as ds:
        bounds = ds.bounds
    assert gdf.total_bounds[0] >= bounds.left and gdf.total_bounds[2] <= bounds.right
