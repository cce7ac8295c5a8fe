"""VLM-PP verifiers: the open-vocabulary CLIP segmenter as verifier, and the choices.

The CLIP model is the real open_clip architecture, tiny and randomly initialised (no
weights can be downloaded here); the images are Dubai tiles.
"""

from __future__ import annotations

import numpy as np
import open_clip
import pytest
import torch

from rs_reasoner.errors import InvalidRequestError, MissingWeightsError, UnknownModelError
from rs_reasoner.segmenters.open_vocab.training_free import ClipOpenVocabSegmenter
from rs_reasoner_training.api import train_model
from rs_reasoner_training.data.folder import dubai_training_data
from rs_reasoner_training.purify import ModelVerifier
from rs_reasoner_training.verifiers import SegmenterVerifier, plan_verifier
from tests.training.helpers import QUICK_RUN, run_job, synthetic_data

TINY_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def _clip_segmenter(**settings) -> ClipOpenVocabSegmenter:
    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-16", pretrained=None, **TINY_CLIP).eval()
    tokenizer = open_clip.get_tokenizer("ViT-B-16")
    options = {"window": 64, "stride": 32, **settings}
    return ClipOpenVocabSegmenter(model, tokenizer, model_id="tiny", **options)


@pytest.fixture
def dubai_batch(shared_data) -> tuple[torch.Tensor, list[str]]:
    data = dubai_training_data(shared_data / "dubai", tile_size=96, downscale=6, max_images=2)
    images = torch.stack([data.labelled[i]["image"] for i in range(2)])
    return images, data.class_names


def test_clip_verifier_gives_class_probabilities(dubai_batch):
    images, names = dubai_batch
    segmenter = _clip_segmenter()
    verifier = SegmenterVerifier(segmenter, name="clip-openvocab")
    probs = verifier.probs(images, names)
    assert probs.shape == (2, 5, 96, 96) and probs.dtype == torch.float32
    assert float(probs.min()) >= 0
    assert torch.allclose(probs.sum(1), torch.ones(2, 96, 96), atol=1e-5)
    assert float(probs.amax(1).min()) > 1 / 5 - 1e-6  # an opinion everywhere
    # Channels follow the class list given, whatever its order.
    flipped = verifier.probs(images, names[::-1])
    assert torch.allclose(flipped, probs.flip(1), atol=1e-6)
    # Dropping the background names and renormalising = the softmax over the class
    # prompts alone (what a segmenter without background names gives).
    no_background = _clip_segmenter(background=())
    image = (images[0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
    direct = no_background.predict_probabilities(
        image, np.ones(image.shape[:2], bool), [[n] for n in names]
    )
    assert np.allclose(direct[0], 0) and np.allclose(direct[1:], probs[0].numpy(), atol=1e-5)


def test_clip_verifier_purifies_in_training(tmp_path):
    verifier = SegmenterVerifier(_clip_segmenter(), name="clip-openvocab")
    result = train_model(synthetic_data(), tmp_path, verifier=verifier, epochs=1, **QUICK_RUN)
    first = result.history[0]
    # The untrained teacher is unsure everywhere, and the verifier always has an opinion.
    assert first["purified_fraction"] + first["rectified_fraction"] > 0.9, first
    assert result.extra["verifier"] == "SegmenterVerifier"


def test_verifier_choices(tmp_path, offline_weights):
    for off in (None, False, "none", "off"):
        assert plan_verifier(off).kind == "none"
    auto = plan_verifier("auto")
    assert auto.kind == "none" and "clip-openvocab weights are not on this machine" in (
        auto.description
    )
    assert plan_verifier(True).kind == "supervised"  # the default without CLIP weights
    assert plan_verifier("supervised").kind == "supervised"

    base = run_job(str(tmp_path / "sup"), epochs=1, semi_supervised=False)
    for choice in (f"checkpoint:{base.best_path}", str(base.best_path), base.best_path):
        plan = plan_verifier(choice)
        assert plan.kind == "checkpoint" and isinstance(plan.verifier, ModelVerifier)
    probs = plan.verifier.probs(torch.rand(1, 3, 32, 32), ["field", "background"])
    assert probs.shape == (1, 2, 32, 32)

    with pytest.raises(MissingWeightsError) as info:
        plan_verifier("clip-openvocab")
    assert "models pull clip-openvocab" in info.value.hint
    with pytest.raises(UnknownModelError):
        plan_verifier("no-such-model")
    with pytest.raises(InvalidRequestError, match="not understood"):
        plan_verifier(42)  # type: ignore[arg-type]
