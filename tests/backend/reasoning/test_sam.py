"""SAM 2.1 prompting: what the real predictor receives, crop by crop, after the 840 mapping."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rs_reasoner.errors import MissingWeightsError
from rs_reasoner.segmenters.hub_weights import SAM_VARIANTS, sam_weights
from rs_reasoner.segmenters.reasoning.geometry import ModelFrame, Window
from rs_reasoner.segmenters.reasoning.parser import ObjectPrompt
from rs_reasoner.segmenters.reasoning.sam import SamRefiner, build_sam2_model
from tests.backend.reasoning.helpers import BoxPredictor, SpyPredictor, random_image


def test_variants_use_the_packaged_sam21_configs_and_hub_checkpoints() -> None:
    import sam2

    root = Path(sam2.__file__).parent
    for variant, (config, repo, filename) in SAM_VARIANTS.items():
        assert (root / config).is_file(), config
        spec = sam_weights(variant)
        assert (spec.repo_id, spec.filename) == (repo, filename)
        assert repo.startswith("facebook/sam2.1-hiera-")
    assert sam_weights().repo_id == "facebook/sam2.1-hiera-small"  # the paper's choice
    with pytest.raises(ValueError, match="tiny, small"):
        sam_weights("huge")


def test_real_predictor_gets_crops_and_crop_space_prompts(small_input_sam: SamRefiner) -> None:
    """Two far-apart objects on a 1800x2600 extent: two full-resolution crops, each
    predictor call gets its object's box and points shifted into that crop's pixels."""
    height, width = 1800, 2600
    image = random_image(height, width, seed=1)
    frame = ModelFrame(width=width, height=height)
    model_prompts = [
        ObjectPrompt((100.0, 120.0, 180.0, 200.0), ((130.0, 150.0), (160.0, 170.0))),
        ObjectPrompt((700.0, 650.0, 760.0, 790.0), ((720.0, 700.0), (740.0, 760.0))),
    ]
    prompts = [frame.prompt_to_pixels(p) for p in model_prompts]
    spy = SpyPredictor(small_input_sam.predictor)
    refiner = SamRefiner(spy)
    masks = refiner.predict(image, prompts)

    assert refiner.last_stats.crops == 2 and len(spy.images) == 2
    assert len(masks) == len(spy.calls) == 2
    for mask, crop, call, prompt in zip(masks, spy.images, spy.calls, prompts, strict=True):
        w = mask.window
        assert (w.height, w.width) == (1024, 1024)  # native resolution, 1024 px of context
        np.testing.assert_array_equal(crop, image[w.row0 : w.row1, w.col0 : w.col1])
        x1, y1, x2, y2 = prompt.box
        np.testing.assert_allclose(
            call["box"], [x1 - w.col0, y1 - w.row0, x2 - w.col0, y2 - w.row0], atol=1e-3
        )
        expected_pts = [(x - w.col0, y - w.row0) for x, y in prompt.points]
        np.testing.assert_allclose(call["point_coords"], expected_pts, atol=1e-3)
        np.testing.assert_array_equal(call["point_labels"], [1, 1])
        assert call["multimask_output"] is False
        assert mask.logits.shape == (1024, 1024) and mask.logits.dtype == np.float32
        assert np.isfinite(mask.logits).all()
    # The first object's box in extent pixels: 840 → 2600 x 1800 is a plain scale.
    np.testing.assert_allclose(
        prompts[0].box, (100 * width / 840, 120 * height / 840, 180 * width / 840,
                         200 * height / 840)
    )


def test_small_extent_is_encoded_once_whole() -> None:
    predictor = BoxPredictor()
    refiner = SamRefiner(predictor)
    image = random_image(600, 900)
    prompts = [ObjectPrompt((10.0, 20.0, 100.0, 200.0), ()),
               ObjectPrompt((700.0, 400.0, 880.0, 590.0), ((800.0, 500.0),))]
    masks = refiner.predict(image, prompts)
    assert len(predictor.images) == 1 and predictor.images[0].shape == (600, 900, 3)
    assert all(m.window == Window(0, 0, 600, 900) for m in masks)
    assert predictor.calls[0]["point_coords"] is None  # box-only object: no points sent
    np.testing.assert_allclose(predictor.calls[1]["point_coords"], [[800.0, 500.0]])


def test_points_only_object_is_prompted_without_a_box() -> None:
    predictor = BoxPredictor()
    predictor.predict = lambda **kw: (  # type: ignore[method-assign]
        predictor.calls.append(kw) or (np.zeros((1, 300, 300), np.float32), np.ones(1), None)
    )
    SamRefiner(predictor).predict(random_image(300, 300), [ObjectPrompt(None, ((5.0, 6.0),))])
    assert predictor.calls[0]["box"] is None
    np.testing.assert_allclose(predictor.calls[0]["point_coords"], [[5.0, 6.0]])


def test_random_init_builds_the_real_hiera_tiny() -> None:
    from sam2.modeling.backbones.hieradet import Hiera
    from sam2.modeling.sam2_base import SAM2Base

    model = build_sam2_model("tiny", None, "cpu", image_size=256)
    assert isinstance(model, SAM2Base) and isinstance(model.image_encoder.trunk, Hiera)
    assert model.image_size == 256
    n = sum(p.numel() for p in model.parameters())
    assert 35e6 < n < 45e6  # hiera-tiny SAM 2.1 is ~39M parameters


def test_missing_checkpoint_is_the_projects_error(empty_hub_cache: Path) -> None:
    with pytest.raises(MissingWeightsError) as info:
        SamRefiner.load("small", model_name="think2seg-rs")
    message = str(info.value)
    assert "facebook/sam2.1-hiera-small/sam2.1_hiera_small.pt" in message
    assert "rs-reasoner models pull think2seg-rs" in message
