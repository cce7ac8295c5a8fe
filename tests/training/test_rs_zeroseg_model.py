"""RS-ZeroSeg as the trained model: learning on Dubai tiles, checkpoints, pretrained path.

The networks are the real architectures (open_clip CLIP ViT + transformers DINOv2), tiny
and randomly initialised; "pretrained" backbones are tiny random ones saved to local
files and found through the RS_REASONER_WEIGHTS_* overrides, as on an air-gapped install.
"""

from __future__ import annotations

import pytest
import torch

from rs_reasoner.errors import MissingWeightsError
from rs_reasoner.models.checkpoint import load_checkpoint, load_trained_model
from rs_reasoner.segmenters.open_vocab.rs_zeroseg.model import weight_specs
from rs_reasoner_training.api import choose_model, train_model
from rs_reasoner_training.data.folder import dubai_training_data
from rs_reasoner_training.loop import TrainConfig, train
from rs_reasoner_training.models.rs_zeroseg import build_rs_zeroseg
from tests.training.helpers import CLASSES, synthetic_data

TINY_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
#: RSZeroSegConfig overrides: tiny CLIP and DINOv2, narrow fusion and head.
TINY = {
    "clip_overrides": TINY_CLIP,
    "rs_overrides": {
        "hidden_size": 48,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "patch_size": 8,
    },
    "fused_dim": 32,
    "fine_dim": 16,
    "detail_dim": 8,
    "attn_heads": 2,
    "carh_heads": 2,
    "carh_hidden": 16,
    "scales": [1.0, 0.5],
}


def _config(out, **overrides) -> TrainConfig:
    base = dict(
        epochs=4,
        steps_per_epoch=5,
        batch_size=4,
        unlabelled_batch_size=2,
        lr=3e-3,
        eval_teacher=False,
        progress_bar=False,
    )
    return TrainConfig(str(out), **{**base, **overrides})


def test_tiny_random_rs_zeroseg_learns_dubai_tiles_and_round_trips(shared_data, tmp_path):
    data = dubai_training_data(
        shared_data / "dubai",
        tile_size=64,
        downscale=8,
        max_images=6,
        val_fraction=0.34,
        label_budget=0.5,
        seed=0,
    )
    assert data.unlabelled is not None  # the teacher-student path runs too
    torch.manual_seed(0)
    model = build_rs_zeroseg(data.class_names, pretrained=False, config=TINY, crop=64)
    assert model.config.image_size == 64 and model.text_embeddings.shape == (5, 32)
    assert (model.config.clip_trainable, model.config.rs_trainable) == ("attention", "frozen")
    result = train(model, data, _config(tmp_path), model_spec=model.spec())
    losses = [h["sup_loss"] for h in result.history]
    assert losses[-1] < losses[0] - 0.02, losses
    assert result.history[-1]["miou"] is not None

    served, names, meta = load_trained_model(result.last_path)
    assert names == data.class_names and meta["model_spec"]["arch"] == "rs-zeroseg"
    model.eval()
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    odd = torch.rand(1, 3, 50, 130, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        assert torch.equal(served(images), model(images))
        out = served(odd)  # other sizes: blended windows of the training size
        assert out.shape == (1, 5, 50, 130) and torch.equal(out, model(odd))
    # The backend serves it in windows of that size (no second windowing inside).
    from rs_reasoner.segmenters.trained import TrainedSegmenter

    assert TrainedSegmenter.load(result.best_path).window == model.native_window == 64


def test_pretrained_backbones_are_restored_from_local_files(tmp_path, monkeypatch, offline_weights):
    open_clip = pytest.importorskip("open_clip")
    from transformers import Dinov2Config, Dinov2Model

    # Local backbone files (tiny stand-ins for CLIP ViT-B/16 and DINOv2-small).
    torch.manual_seed(5)
    clip = open_clip.create_model(
        "ViT-B-16",
        pretrained=None,
        force_quick_gelu=True,  # the OpenAI tag's activation, as the real weights need
        **{**TINY_CLIP, "vision_cfg": {**TINY_CLIP["vision_cfg"], "image_size": 64}},
    )
    torch.save(clip.state_dict(), tmp_path / "clip.bin")
    dino = Dinov2Model(
        Dinov2Config(hidden_size=48, num_hidden_layers=1, num_attention_heads=2, patch_size=8)
    )
    dino.save_pretrained(tmp_path / "dino")
    assert choose_model("auto").arch == "unet"  # nothing local yet
    for spec, path in zip(weight_specs(), ("clip.bin", "dino"), strict=True):
        monkeypatch.setenv(spec.env_var, str(tmp_path / path))
    config = {k: v for k, v in TINY.items() if k != "rs_overrides"}  # DINOv2 from its files
    choice = choose_model("auto", rs_zeroseg=config)
    assert (choice.arch, choice.pretrained) == ("rs-zeroseg", True)

    torch.manual_seed(0)
    model = build_rs_zeroseg(CLASSES, pretrained=True, config=config, crop=64)
    assert torch.equal(model.net.clip.visual.conv1.weight, clip.visual.conv1.weight)
    before = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("net.rs.")}
    config_run = _config(tmp_path / "run", epochs=1, steps_per_epoch=2)
    result = train(model, synthetic_data(), config_run, model_spec=model.spec())
    stored = load_checkpoint(result.last_path)["model"]
    # Paper policy: CLIP attention trained and stored, DINOv2 and CLIP text tower frozen
    # and left to the local files.
    assert any(".attn." in k for k in stored if k.startswith("net.clip.visual."))
    assert not any(k.startswith(("net.rs.", "net.clip.transformer.")) for k in stored)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())

    served, names, _ = load_trained_model(result.last_path)
    assert names == CLASSES
    model.eval()
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.equal(served(images), model(images))

    monkeypatch.delenv("RS_REASONER_WEIGHTS_FACEBOOK_DINOV2_SMALL")
    with pytest.raises(MissingWeightsError) as info:  # never downloaded, clear hint
        load_trained_model(result.last_path)
    assert "models pull rs-zeroseg" in info.value.hint


def test_train_model_reports_the_chosen_model(tmp_path, offline_weights):
    messages = []
    result = train_model(
        synthetic_data(),
        tmp_path,
        model="rs-zeroseg",
        rs_zeroseg=TINY,
        epochs=1,
        steps_per_epoch=1,
        batch_size=2,
        semi_supervised=False,
        progress_bar=False,
        callback=lambda stage, fraction, message: messages.append((stage, message)),
    )
    assert messages[0][0] == "preparing"
    assert "rs-zeroseg, small and randomly initialised" in messages[0][1]
    assert "not on this machine" in messages[0][1]
    assert load_checkpoint(result.best_path)["model_spec"]["pretrained"] is False
