"""Dense CLIP features: self-correlation attention, global bias, open_clip internals."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from rs_reasoner.segmenters.hub_weights import OPENAI_VIT_B16_WEIGHTS
from rs_reasoner.segmenters.open_vocab.clip_dense import (
    DenseClipEncoder,
    global_bias_logits,
    self_correlation_attention,
    weight_spec_for,
)


def direct_formula(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, s: float) -> torch.Tensor:
    """(softmax(s q qᵀ) + softmax(s k kᵀ) + softmax(s v vᵀ)) v, written out."""
    attn = sum(torch.softmax(s * a @ a.transpose(-1, -2), dim=-1) for a in (q, k, v))
    return attn @ v


@pytest.mark.parametrize("scale", [None, 0.05])
def test_self_correlation_attention_matches_the_formula(scale: float | None) -> None:
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(2, 3, 11, 8, generator=g) for _ in range(3))
    expected = direct_formula(q, k, v, 8**-0.5 if scale is None else scale)
    got = self_correlation_attention(q, k, v, scale)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_global_bias_logits_subtract_lambda_times_cls_similarity() -> None:
    g = torch.Generator().manual_seed(2)
    patches = torch.randn(2, 3, 4, 16, generator=g)
    cls, text = torch.randn(2, 16, generator=g), torch.randn(5, 16, generator=g)
    got = global_bias_logits(patches, cls, text, lam=0.3)
    assert got.shape == (2, 5, 3, 4) and got.dtype == torch.float32
    for b in range(2):
        for c in range(5):
            cls_sim = F.cosine_similarity(cls[b], text[c], dim=0)
            for y in range(3):
                for x in range(4):
                    patch_sim = F.cosine_similarity(patches[b, y, x], text[c], dim=0)
                    assert got[b, c, y, x].item() == pytest.approx(
                        (patch_sim - 0.3 * cls_sim).item(), abs=1e-5
                    )
    torch.testing.assert_close(
        global_bias_logits(patches, cls, text, lam=0.0),
        torch.einsum("bhwd,cd->bchw", F.normalize(patches, dim=-1), F.normalize(text, dim=-1)),
    )


def reference_dense(model: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """SegEarth-OV's last block computed by hand from open_clip's parameters."""
    v = model.visual
    t = v.conv1(x).flatten(2).transpose(1, 2)
    t = torch.cat([v.class_embedding.expand(x.shape[0], 1, -1), t], dim=1)
    t = v.ln_pre(t + v.positional_embedding)
    for block in v.transformer.resblocks[:-1]:
        t = block(t)
    last = v.transformer.resblocks[-1]
    q, k, val = F.linear(last.ln_1(t), last.attn.in_proj_weight, last.attn.in_proj_bias).chunk(
        3, dim=-1
    )
    heads = last.attn.num_heads
    b, n, c = q.shape
    q, k, val = (a.reshape(b, n, heads, c // heads).transpose(1, 2) for a in (q, k, val))
    out = direct_formula(q, k, val, (c // heads) ** -0.5)
    out = last.attn.out_proj(out.transpose(1, 2).reshape(b, n, c))
    out = v.ln_post(out) @ v.proj
    return out[:, 1:], out[:, 0]


def test_dense_encoder_matches_a_hand_computation(make_tiny) -> None:
    model, _ = make_tiny(0)
    encoder = DenseClipEncoder(model.visual, cls_source="dense")
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        patches, cls = encoder(x)
        ref_patches, ref_cls = reference_dense(model, x)
    assert patches.shape == (2, 14, 14, 32) and cls.shape == (2, 32)
    torch.testing.assert_close(patches.reshape(2, 196, 32), ref_patches, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(cls, ref_cls, rtol=1e-4, atol=1e-4)


def test_last_block_has_no_ffn_and_global_cls_is_the_normal_embedding(make_tiny) -> None:
    model, _ = make_tiny(0)
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(4))
    dense = DenseClipEncoder(model.visual, cls_source="dense")
    glob = DenseClipEncoder(model.visual, cls_source="global")
    with torch.inference_mode():
        before, _ = dense(x)
        _, cls_global = glob(x)
        torch.testing.assert_close(cls_global, model.visual(x), rtol=1e-4, atol=1e-4)
        model.visual.transformer.resblocks[-1].mlp.c_fc.weight.mul_(3.0)  # FFN must not matter
        after, _ = dense(x)
        _, cls_global_changed = glob(x)
    torch.testing.assert_close(before, after)
    assert not torch.allclose(cls_global, cls_global_changed)


def test_non_native_sizes_interpolate_positional_embeddings(make_tiny) -> None:
    model, _ = make_tiny(0)
    encoder = DenseClipEncoder(model.visual)
    with torch.inference_mode():
        patches, cls = encoder(torch.randn(3, 3, 96, 160))
        native = encoder._positional_embedding(14, 14)
        resized = encoder._positional_embedding(6, 10)
    assert patches.shape == (3, 6, 10, 32) and cls.shape == (3, 32)
    assert native is model.visual.positional_embedding
    assert resized.shape == (1 + 60, 64)
    torch.testing.assert_close(resized[0], model.visual.positional_embedding[0].detach())
    assert torch.isfinite(patches).all()


def test_encoder_rejects_bad_inputs(make_tiny) -> None:
    model, _ = make_tiny(0)
    with pytest.raises(ValueError, match="cls_source"):
        DenseClipEncoder(model.visual, cls_source="mean")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="VisionTransformer"):
        DenseClipEncoder(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="multiple of 16"):
        DenseClipEncoder(model.visual)(torch.zeros(1, 3, 100, 96))


def test_weight_spec_for_openai_vit_b16_is_the_open_clip_hub_file() -> None:
    spec, quick_gelu = weight_spec_for("ViT-B-16", "openai")
    assert spec.repo_id == OPENAI_VIT_B16_WEIGHTS.repo_id == "timm/vit_base_patch16_clip_224.openai"
    # open_clip prefers the safetensors file and falls back to the pickled one: both count.
    assert spec.filenames == OPENAI_VIT_B16_WEIGHTS.filenames == (
        "open_clip_model.safetensors", "open_clip_pytorch_model.bin"
    )
    assert quick_gelu is True  # OpenAI weights were trained with QuickGELU
    laion, laion_gelu = weight_spec_for("ViT-B-32", "laion2b_s34b_b79k")
    assert laion.repo_id == "laion/CLIP-ViT-B-32-laion2B-s34B-b79K" and laion_gelu is False
    with pytest.raises(ValueError, match="no Hugging Face Hub weights"):
        weight_spec_for("ViT-B-16", "no-such-tag")
