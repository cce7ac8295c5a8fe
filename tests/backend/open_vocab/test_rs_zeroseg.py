"""RS-ZeroSeg: forward, freezing, loss, checkpoints, Segmenter, and learning on real data.

Every model here is the real architecture (open_clip CLIP ViT + transformers Dinov2Model)
built small and randomly initialised; no weights are downloaded.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rs_reasoner.errors import UnknownModelError
from rs_reasoner.segmenters.open_vocab.rs_zeroseg import checkpoint as ckpt
from rs_reasoner.segmenters.open_vocab.rs_zeroseg.config import RSZeroSegConfig
from rs_reasoner.segmenters.open_vocab.rs_zeroseg.loss import (
    IGNORE_INDEX,
    RSZeroSegLoss,
    alignment_loss,
    bce_loss,
)
from rs_reasoner.segmenters.open_vocab.rs_zeroseg.model import (
    RSZeroSeg,
    rs_weight_spec,
    weight_specs,
)
from tests.support.dubai import DUBAI_CLASSES, labels_from_colours, load_dubai

CLASSES = (("building", "roof"), ("road",), ("water",))
#: A tiny open_clip CLIP (2 ViT layers of width 64, patch 8; 1 text layer of width 32).
TINY_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def tiny_config(image_size: int = 64, **overrides: object) -> RSZeroSegConfig:
    """A small RS-ZeroSeg: tiny CLIP, 2-layer DINOv2 (width 48, patch 8), narrow head."""
    base = {
        "clip_overrides": TINY_CLIP,
        "rs_overrides": {
            "hidden_size": 48,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "patch_size": 8,
            "image_size": image_size,
        },
        "image_size": image_size,
        "fused_dim": 64,
        "fine_dim": 32,
        "fine_stride": 4,
        "detail_dim": 16,
        "attn_heads": 4,
        "carh_heads": 4,
        "carh_hidden": 32,
    }
    base.update(overrides)
    return RSZeroSegConfig(**base)


def build(seed: int = 0, **overrides: object) -> RSZeroSeg:
    torch.manual_seed(seed)
    return RSZeroSeg.from_config(tiny_config(**overrides))


@pytest.fixture(scope="module")
def model() -> RSZeroSeg:
    return build()


def _images(n: int = 2, size: int = 64, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, size, size, generator=g)


# ----------------------------------------------------------------------------- config


def test_config_round_trips_and_validates() -> None:
    cfg = tiny_config(scales=(1.0, 0.5), clip_trainable="full")
    again = RSZeroSegConfig.from_dict(cfg.to_dict())
    assert again == cfg and again.scales == (1.0, 0.5)
    assert RSZeroSegConfig().align_weight == 0.2
    assert (RSZeroSegConfig().clip_trainable, RSZeroSegConfig().rs_trainable) == (
        "attention",
        "frozen",
    )
    with pytest.raises(ValueError, match="unknown"):
        RSZeroSegConfig.from_dict({**cfg.to_dict(), "bogus": 1})
    with pytest.raises(ValueError):
        RSZeroSegConfig(clip_trainable="some")  # type: ignore[arg-type]
    specs = weight_specs()
    assert [s.repo_id for s in specs] == [
        "timm/vit_base_patch16_clip_224.openai",
        "facebook/dinov2-small",
    ]


def test_default_dinov2_architecture_is_dinov2_small() -> None:
    from transformers import Dinov2Config

    kw = RSZeroSegConfig().rs_config_kwargs()
    cfg = Dinov2Config(**kw)
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads) == (384, 12, 6)
    assert (cfg.patch_size, cfg.image_size) == (14, 518)


# ----------------------------------------------------------------------------- forward


def test_forward_shapes_and_dtypes(model: RSZeroSeg) -> None:
    text = model.encode_classes(CLASSES)
    assert text.shape == (3, 32) and text.dtype == torch.float32
    assert torch.allclose(text.norm(dim=-1), torch.ones(3), atol=1e-5)
    model.eval()
    with torch.no_grad():
        out = model(_images(), text)
    assert out["logits"].shape == (2, 3, 64, 64) and out["logits"].dtype == torch.float32
    assert out["attention"].shape == (2, 3, 4, 16, 16)
    assert float(out["attention"].min()) >= 0 and float(out["attention"].max()) <= 1
    assert out["features"].shape == (2, 32, 16, 16)
    assert "align_embeddings" not in out  # eval: no alignment map unless asked
    assert torch.isfinite(out["logits"]).all()
    model.train()
    out = model(_images(), text)
    assert out["align_embeddings"].shape == (2, 32, 16, 16)
    model.eval()
    with pytest.raises(ValueError, match="multiple"):
        model(_images(size=60), text)
    with pytest.raises(ValueError, match="text_embeddings"):
        model(_images(), text[:, :8])


def test_classes_are_independent_queries(model: RSZeroSeg) -> None:
    """A class's mask does not depend on its position in the class list."""
    text = model.encode_classes(CLASSES)
    x = _images()
    with torch.no_grad():
        a = model(x, text)["logits"]
        b = model(x, text.flip(0))["logits"].flip(1)
    assert torch.allclose(a, b, atol=1e-4)


# ----------------------------------------------------------------------------- freezing


def _grad_names(m: RSZeroSeg) -> set[str]:
    return {n for n, p in m.named_parameters() if p.requires_grad}


def test_default_freezing_trains_clip_attention_only() -> None:
    m = build()
    names = _grad_names(m)
    clip_visual = {n for n, _ in m.clip.visual.named_parameters()}
    trained_visual = {n for n in names if n.startswith("clip.visual.")}
    assert (
        trained_visual == {f"clip.visual.{n}" for n in clip_visual if ".attn." in n}
        and trained_visual
    )
    assert not any(n.startswith("clip.") and not n.startswith("clip.visual.") for n in names)
    assert not any(n.startswith("rs.") for n in names)  # RS stream frozen
    head = [n for n, _ in m.named_parameters() if not n.startswith(("clip.", "rs."))]
    assert head and all(n in names for n in head)
    # Gradients reach exactly the trainable parameters.
    m.train()
    text = m.encode_classes(CLASSES)
    m(_images(), text)["logits"].mean().backward()
    got = {n for n, p in m.named_parameters() if p.grad is not None}
    assert got <= names
    assert any(n.startswith("clip.visual.") for n in got)
    head_group, backbone_group = m.parameter_groups(1e-3, backbone_lr_scale=0.1)
    assert backbone_group["lr"] == pytest.approx(1e-4) and head_group["lr"] == 1e-3
    assert len(head_group["params"]) + len(backbone_group["params"]) == len(names)


def test_alternative_freezing_policies() -> None:
    m = build(clip_trainable="frozen", rs_trainable="attention")
    names = _grad_names(m)
    assert not any(n.startswith("clip.") for n in names)
    rs = {n for n in names if n.startswith("rs.")}
    assert rs and all(".attention." in n for n in rs)
    assert len(rs) == sum(1 for n, _ in m.rs.named_parameters() if ".attention." in n)
    full = build(clip_trainable="full", rs_trainable="full")
    names = _grad_names(full)
    assert {f"clip.visual.{n}" for n, _ in full.clip.visual.named_parameters()} <= names
    assert {f"rs.{n}" for n, _ in full.rs.named_parameters()} <= names
    assert "clip.token_embedding.weight" not in names  # text tower always frozen


# ----------------------------------------------------------------------------- loss


def test_bce_ignores_ignored_pixels_and_background_is_negative() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(1, 2, 4, 4, generator=g)
    targets = torch.tensor([[[0, 1, 2, IGNORE_INDEX]] * 4])
    loss = bce_loss(logits, targets)
    changed = logits.clone()
    changed[..., 3] = 100.0  # only ignored pixels change
    assert torch.allclose(bce_loss(changed, targets), loss)
    onehot = torch.zeros(1, 2, 4, 3)
    onehot[:, 0, :, 1] = 1
    onehot[:, 1, :, 2] = 1
    expected = F.binary_cross_entropy_with_logits(logits[..., :3], onehot)
    assert torch.allclose(loss, expected)
    all_ignored = torch.full((1, 4, 4), IGNORE_INDEX)
    assert float(bce_loss(logits, all_ignored)) == 0.0
    with pytest.raises(ValueError):
        bce_loss(logits, torch.full((1, 4, 4), 3))


def _fake_outputs(seed: int = 0) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    outputs = {
        "logits": torch.randn(2, 3, 8, 8, generator=g),
        "align_embeddings": torch.randn(2, 16, 4, 4, generator=g),
        "text_embeddings": F.normalize(torch.randn(3, 16, generator=g), dim=-1),
        "logit_scale": torch.tensor(10.0),
    }
    targets = torch.randint(0, 4, (2, 8, 8), generator=g)
    targets[:, :2] = IGNORE_INDEX
    return outputs, targets


def test_alignment_weight_scales_the_alignment_term() -> None:
    outputs, targets = _fake_outputs()
    parts = {lam: RSZeroSegLoss(align_weight=lam)(outputs, targets) for lam in (0.0, 0.2, 0.4)}
    align = parts[0.2]["align"]
    assert float(align) > 0
    for lam, p in parts.items():
        assert torch.allclose(p["bce"], parts[0.0]["bce"])
        if lam:
            assert torch.allclose(p["align"], align)
        assert torch.allclose(p["loss"], p["bce"] + lam * align)
    assert torch.allclose(parts[0.4]["loss"] - parts[0.2]["loss"], 0.2 * align)
    no_align = {k: v for k, v in outputs.items() if k != "align_embeddings"}
    assert float(RSZeroSegLoss(0.2)(no_align, targets)["align"]) == 0.0


def test_alignment_loss_rewards_matching_regions() -> None:
    text = F.normalize(torch.eye(3, 8), dim=-1)
    targets = torch.zeros(1, 8, 8, dtype=torch.long)
    targets[:, :4] = 1
    targets[:, 4:] = 3
    matched = torch.zeros(1, 8, 8, 8)
    matched[:, 0, :4] = 1  # region of class 1 looks like text 0 (class 1)
    matched[:, 2, 4:] = 1
    swapped = torch.zeros(1, 8, 8, 8)
    swapped[:, 2, :4] = 1
    swapped[:, 0, 4:] = 1
    good = alignment_loss(matched, text, targets, logit_scale=10.0)
    bad = alignment_loss(swapped, text, targets, logit_scale=10.0)
    assert float(good) < 0.01 < 5 < float(bad)
    # Ignored pixels do not enter the region pools.
    ignored = targets.clone()
    ignored[:, :4] = IGNORE_INDEX
    noisy = matched.clone()
    noisy[:, :, :4] = torch.randn(1, 8, 4, 8)
    assert torch.allclose(
        alignment_loss(noisy, text, ignored, 10.0), alignment_loss(matched, text, ignored, 10.0)
    )


# ----------------------------------------------------------------------------- checkpoint keys


def test_pretrained_checkpoints_keep_only_trained_weights(model: RSZeroSeg) -> None:
    keys = ckpt.checkpoint_keys(model, embedded=False)
    backbone = {k for k in keys if k.startswith(("clip.", "rs."))}
    assert backbone == set(model.trainable_backbone_names()) and backbone
    assert all(".attn." in k for k in backbone)
    assert {k for k in model.state_dict() if not k.startswith(("clip.", "rs."))} <= keys
    assert ckpt.checkpoint_keys(model, embedded=True) == set(model.state_dict())


def test_pretrained_backbones_load_from_local_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pretrained=True loads both backbones via local files."""
    src = build(seed=0)
    clip_file = tmp_path / "clip.pt"
    torch.save(src.clip.state_dict(), clip_file)
    src.rs.save_pretrained(tmp_path / "dinov2")
    cfg = tiny_config(clip_checkpoint=str(clip_file))
    monkeypatch.setenv(rs_weight_spec(cfg).env_var, str(tmp_path / "dinov2"))
    torch.manual_seed(1)
    m = RSZeroSeg.from_config(cfg, pretrained=True)
    assert m.pretrained_backbones
    for key, value in src.state_dict().items():
        if key.startswith(("clip.", "rs.")):
            assert torch.equal(m.state_dict()[key], value), key


# ----------------------------------------------------------------------------- learning


def _miou(pred: np.ndarray, labels: np.ndarray, num_classes: int) -> tuple[float, float]:
    valid = labels != IGNORE_INDEX
    ious = []
    for k in range(1, num_classes + 1):
        truth, hit = (labels == k) & valid, (pred == k) & valid
        if truth.any():
            ious.append((truth & hit).sum() / (truth | hit).sum())
    return float(np.mean(ious)), float((pred == labels)[valid].mean())


def test_dubai_colour_masks_map_to_labels(shared_data: Path) -> None:
    mask = np.array([[[0x3C, 0x10, 0x98], [0xE2, 0xA9, 0x29], [0x9B, 0x9B, 0x9B], [1, 2, 3]]])
    assert labels_from_colours(mask.astype(np.uint8)).tolist() == [[1, 5, 255, 255]]
    samples = load_dubai(shared_data / "dubai", size=64, limit=2)
    assert samples[0].image.shape == (64, 64, 3) and samples[0].labels.shape == (64, 64)
    assert set(np.unique(samples[0].labels)) <= {1, 2, 3, 4, 5, IGNORE_INDEX}


def test_head_overfits_a_tiny_real_sample(shared_data: Path, tmp_path: Path) -> None:
    """4 Dubai images at 112 px: the full model learns them (mIoU ≥ 0.8 from ~0.1)."""
    size, steps_max = 112, 400
    samples = load_dubai(shared_data / "dubai", size=size, limit=4, stride=11)
    labels = np.stack([s.labels for s in samples])
    torch.manual_seed(0)
    model = RSZeroSeg.from_config(tiny_config(image_size=size))
    text = model.encode_classes(DUBAI_CLASSES)
    images = torch.from_numpy(np.stack([s.image for s in samples])).permute(0, 3, 1, 2)
    x = model.normalize(images.float() / 255)
    y = torch.from_numpy(labels).long()

    def evaluate() -> tuple[float, float]:
        model.eval()
        with torch.no_grad():
            pred = model(x, text)["logits"].argmax(1).numpy() + 1
        model.train()
        return _miou(pred, labels, len(DUBAI_CLASSES))

    untrained_miou, _ = evaluate()
    criterion = RSZeroSegLoss(align_weight=model.config.align_weight)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    model.train()
    start, first_loss, miou, acc = time.monotonic(), None, 0.0, 0.0
    for step in range(1, steps_max + 1):
        parts = criterion(model(x, text), y)
        optimizer.zero_grad()
        parts["loss"].backward()
        optimizer.step()
        first_loss = first_loss or {k: v.detach().item() for k, v in parts.items()}
        if step % 25 == 0:
            miou, acc = evaluate()
            if miou >= 0.85:
                break
    elapsed = time.monotonic() - start
    final = {k: v.detach().item() for k, v in parts.items()}
    print(
        f"overfit: {step} steps, {elapsed:.1f}s, mIoU {untrained_miou:.3f} -> {miou:.3f}, "
        f"acc {acc:.3f}, loss {first_loss} -> {final}"
    )
    assert untrained_miou < 0.3
    assert miou >= 0.8 and acc >= 0.9
    assert final["align"] < first_loss["align"] and final["bce"] < first_loss["bce"]


def test_serving_only_names_are_not_registered() -> None:
    """The network is served only fine-tuned on the user's classes, so the registry
    offers no model that would need a separate checkpoint (a model trained with
    ``rs-reasoner train --model rs-zeroseg`` is listed under its own name)."""
    from rs_reasoner.segmenters import registry

    names = {s.name for s in registry.specs()}
    assert not names & {"rs-zeroseg", "rs-zeroseg+clip"}
    with pytest.raises(UnknownModelError):
        registry.get_spec("rs-zeroseg")
