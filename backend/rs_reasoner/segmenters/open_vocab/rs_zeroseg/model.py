"""The RS-ZeroSeg network (Yuan & He, 2025): DSFE → MS-CAM → CARH.

* **DSFE (dual-stream feature extractor).** The VLM stream is the image tower of an
  open_clip CLIP ViT: dense patch tokens of its last block, passed through ``ln_post``
  and ``proj`` so they live in the joint image-text space (F_VLM). The remote-sensing
  stream is a transformers ``Dinov2Model`` (DINO-style self-supervised ViT): its final
  patch tokens (F_RSI), resized to CLIP's patch grid. Both are projected by 1×1 convs to
  ``fused_dim`` and concatenated, and a 3×3 conv fuses them (paper Eqs. 3-5).
* **MS-CAM (multi-scale contextual alignment).** The fused map and the projected RS
  map are resampled to each pyramid scale. At each scale the fused (VLM-led) tokens
  cross-attend to the RS tokens with a residual (the paper's Eq. 6,
  ``CrossAttn(Q=F_VLM, K=V=F_RSI) + F_VLM``, with F_VLM taken as its fusion with RS
  features, as the paper allows), then to the class text embeddings, again with a
  residual, so the features are conditioned on the queried vocabulary. An FPN-style
  top-down pass (1×1 laterals, bilinear upsampling, sum, 3×3 smoothing) aggregates the
  scales at the finest one.
  The paper's F_MSCAM is at image resolution; a full-resolution map for every class is
  too costly for large windows, so the aggregated grid map is upsampled to output stride
  ``fine_stride`` (default 4) guided by a shallow conv stem on the image (``detail_dim``
  channels, as CAT-Seg-style decoders do), which restores boundaries that a 16-px patch
  grid cannot represent.
* **CARH (category-adaptive refinement head).** Each class text embedding is an
  attention query over F_MSCAM (keys/values are 1×1 convs of it; multi-head). The
  per-head scores give the category attention maps ``A_k = sigmoid(score)`` (Eq. 9);
  the features are multiplied by ``A_k`` (per head, on that head's channel group) and
  further modulated channel-wise (FiLM) by the attention-pooled context and the text
  query; a 3×3 conv → GN → GELU → 1×1 conv projection, which also sees the raw score
  maps, gives one mask logit per class (Eq. 10, sigmoid applied by the caller), which is
  bilinearly upsampled to the input size.

The model is open-vocabulary: classes enter only through their CLIP text embeddings
(prompt-ensembled, see :mod:`rs_reasoner.segmenters.open_vocab.prompts`), so any class
name can be scored, including ones never seen in training.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rs_reasoner.errors import MissingWeightsError
from rs_reasoner.segmenters.hub_weights import DINOV2_SMALL_WEIGHTS
from rs_reasoner.segmenters.open_vocab.clip_dense import weight_spec_for
from rs_reasoner.segmenters.open_vocab.rs_zeroseg.config import RSZeroSegConfig
from rs_reasoner.weights import WeightSpec, resolve

log = logging.getLogger(__name__)

Tokenizer = Callable[[list[str]], torch.Tensor]

#: Registry name used in missing-weights messages.
MODEL_NAME = "rs-zeroseg"
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


# ----------------------------------------------------------------------------- weights


def clip_weight_spec(config: RSZeroSegConfig) -> tuple[WeightSpec, bool]:
    """Hub weights of the CLIP stream (open_clip's own Hub copy for the tag).

    Args:
        config: The model config.

    Returns:
        The weight spec and whether the tag was trained with QuickGELU.

    Raises:
        ValueError: open_clip knows no Hub copy for the model and tag.
    """
    spec, quick_gelu = weight_spec_for(config.clip_model, config.clip_pretrained)
    return dataclasses.replace(spec, purpose=f"RS-ZeroSeg VLM stream: {spec.purpose}"), quick_gelu


def rs_weight_spec(config: RSZeroSegConfig) -> WeightSpec:
    """Hub snapshot of the remote-sensing stream (a transformers DINOv2 repo)."""
    return dataclasses.replace(DINOV2_SMALL_WEIGHTS, repo_id=config.rs_model)


def weight_specs(config: RSZeroSegConfig | None = None) -> tuple[WeightSpec, ...]:
    """Backbone weights a pretrained RS-ZeroSeg needs (for the model registry).

    Args:
        config: The config; default :class:`RSZeroSegConfig()`.

    Returns:
        ``(clip_spec, rs_spec)``, or only the RS spec when ``clip_checkpoint`` is set.
    """
    config = config or RSZeroSegConfig()
    specs = [] if config.clip_checkpoint else [clip_weight_spec(config)[0]]
    return (*specs, rs_weight_spec(config))


def _quick_gelu(config: RSZeroSegConfig) -> bool:
    if config.clip_quick_gelu is not None:
        return config.clip_quick_gelu
    import open_clip

    cfg = open_clip.get_pretrained_cfg(config.clip_model, config.clip_pretrained) or {}
    return bool(cfg.get("quick_gelu", False))


def build_clip(
    config: RSZeroSegConfig, pretrained: bool, allow_download: bool = False
) -> tuple[nn.Module, Tokenizer]:
    """The open_clip CLIP model (both towers) at ``config.image_size``, and its tokenizer.

    Args:
        config: The model config.
        pretrained: Load weights (``clip_checkpoint`` or the tag's Hub copy, resolved
            locally); False gives the architecture with random weights.
        allow_download: Let :func:`rs_reasoner.weights.resolve` download.

    Returns:
        The model (eval mode, CPU) and tokenizer.

    Raises:
        MissingWeightsError: Pretrained weights are not on disk.
    """
    import open_clip

    path: str | None = None
    if pretrained:
        if config.clip_checkpoint:
            local = Path(config.clip_checkpoint).expanduser()
            if not local.is_file():
                raise MissingWeightsError(
                    f"CLIP checkpoint {local} for model '{MODEL_NAME}' does not exist.",
                    "Fix clip_checkpoint in the RS-ZeroSeg config.",
                )
            path = str(local)
        else:
            path = str(resolve(clip_weight_spec(config)[0], MODEL_NAME, allow_download))
    overrides = copy.deepcopy(config.clip_overrides)
    if "vision_cfg" in overrides:  # it replaces the named config's, so carry the size
        overrides["vision_cfg"]["image_size"] = config.image_size
    model = open_clip.create_model(
        config.clip_model,
        pretrained=path,
        force_image_size=config.image_size,
        force_quick_gelu=_quick_gelu(config),
        **overrides,
    )
    return model.eval(), open_clip.get_tokenizer(config.clip_model)


def build_rs_stream(
    config: RSZeroSegConfig, pretrained: bool, allow_download: bool = False
) -> nn.Module:
    """The DINOv2 remote-sensing stream.

    Args:
        config: The model config.
        pretrained: Load ``config.rs_model`` from a local Hub snapshot; False builds the
            architecture from :meth:`RSZeroSegConfig.rs_config_kwargs` (offline).
        allow_download: Let :func:`rs_reasoner.weights.resolve` download.

    Returns:
        A ``transformers.Dinov2Model`` in eval mode.
    """
    from transformers import Dinov2Config, Dinov2Model

    if pretrained:
        path = resolve(rs_weight_spec(config), MODEL_NAME, allow_download)
        return Dinov2Model.from_pretrained(str(path)).eval()
    return Dinov2Model(Dinov2Config(**config.rs_config_kwargs())).eval()


# ----------------------------------------------------------------------------- blocks


def _gn(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(8, channels), channels)


def _conv_block(cin: int, cout: int, k: int = 3, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False), _gn(cout), nn.GELU()
    )


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == size:
        return x
    if size[0] <= x.shape[-2] and size[1] <= x.shape[-1]:
        return F.adaptive_avg_pool2d(x, size)  # averaging keeps small objects' signal
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class CrossAttention(nn.Module):
    """Pre-norm multi-head cross-attention with a residual: ``x + Attn(LN(x), LN(y))``.

    Args:
        dim: Token width.
        heads: Attention heads.
    """

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """Args: x (B, N, D) queries; context (B, M, D). Returns (B, N, D)."""
        kv = self.norm_kv(context)
        out, _ = self.attn(self.norm_q(x), kv, kv, need_weights=False)
        return x + out


class MultiScaleContextualAlignment(nn.Module):
    """MS-CAM: per-scale cross-attention alignment and FPN top-down aggregation.

    Args:
        dim: Feature width (``fused_dim``).
        heads: Attention heads.
        scales: Pyramid scales relative to the input grid.
        rs_attention: Fused tokens attend to RS tokens (paper Eq. 6).
        text_attention: Tokens then attend to the class text embeddings.
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        scales: Sequence[float],
        rs_attention: bool = True,
        text_attention: bool = True,
    ) -> None:
        super().__init__()
        self.scales = tuple(scales)
        n = len(self.scales)
        self.rs_attn = nn.ModuleList(CrossAttention(dim, heads) for _ in range(n))
        self.text_attn = nn.ModuleList(CrossAttention(dim, heads) for _ in range(n))
        self.rs_attention = rs_attention
        self.text_attention = text_attention
        self.lateral = nn.ModuleList(nn.Conv2d(dim, dim, 1) for _ in range(n))
        self.smooth = _conv_block(dim, dim)

    def forward(self, fused: torch.Tensor, rs: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """Align and aggregate.

        Args:
            fused: (B, D, h, w) DSFE output.
            rs: (B, D, h, w) projected RS-stream features.
            text: (C, D) projected class text embeddings.

        Returns:
            (B, D, h_max, w_max) at the largest scale.
        """
        b, _, h, w = fused.shape
        ctx_text = text.unsqueeze(0).expand(b, -1, -1)
        levels: list[tuple[tuple[int, int], torch.Tensor]] = []
        for i, s in enumerate(self.scales):
            size = (max(1, round(h * s)), max(1, round(w * s)))
            q = _resize(fused, size).flatten(2).transpose(1, 2)
            if self.rs_attention:
                q = self.rs_attn[i](q, _resize(rs, size).flatten(2).transpose(1, 2))
            if self.text_attention:
                q = self.text_attn[i](q, ctx_text)
            aligned = q.transpose(1, 2).reshape(b, -1, *size)
            levels.append((size, self.lateral[i](aligned)))
        levels.sort(key=lambda item: item[0][0] * item[0][1])
        top = levels[0][1]
        for size, lateral in levels[1:]:
            top = lateral + F.interpolate(top, size=size, mode="bilinear", align_corners=False)
        return self.smooth(top)


class DetailUpsampler(nn.Module):
    """Upsample grid features to output stride ``stride``, guided by a conv image stem.

    Args:
        in_dim: Input feature width.
        out_dim: Output width (``fine_dim``).
        detail_dim: Stem width; 0 means no stem (bilinear upsampling + convs only).
        stride: Output stride (1, 2 or 4).
    """

    def __init__(self, in_dim: int, out_dim: int, detail_dim: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.reduce = nn.Conv2d(in_dim, out_dim, 1)
        self.stem: nn.Module | None = None
        if detail_dim > 0:
            layers: list[nn.Module] = []
            cin = 3
            for _ in range(int(math.log2(stride))):
                layers.append(_conv_block(cin, detail_dim, stride=2))
                cin = detail_dim
            layers.append(_conv_block(cin, detail_dim))
            self.stem = nn.Sequential(*layers)
        self.fuse = nn.Sequential(
            _conv_block(out_dim + max(detail_dim, 0), out_dim), _conv_block(out_dim, out_dim)
        )

    def forward(self, features: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """Args: features (B, D, h, w); images (B, 3, H, W). Returns (B, out, H/s, W/s)."""
        size = (images.shape[-2] // self.stride, images.shape[-1] // self.stride)
        up = F.interpolate(self.reduce(features), size=size, mode="bilinear", align_corners=False)
        if self.stem is not None:
            up = torch.cat([up, _resize(self.stem(images), size)], dim=1)
        return self.fuse(up)


class CategoryAdaptiveRefinementHead(nn.Module):
    """CARH: text embeddings as attention queries → per-class maps → mask logits.

    Args:
        dim: Visual feature width (``fine_dim``).
        text_dim: Text embedding width.
        heads: Attention heads (channel groups modulated by their own map).
        hidden: Hidden width of the mask projection.
    """

    def __init__(self, dim: int, text_dim: int, heads: int, hidden: int) -> None:
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(text_dim, dim)
        self.key = nn.Conv2d(dim, dim, 1)
        self.value = nn.Conv2d(dim, dim, 1)
        self.film = nn.Linear(2 * dim, 2 * dim)
        nn.init.zeros_(self.film.weight)  # start as plain attention-map modulation
        nn.init.zeros_(self.film.bias)
        self.project = nn.Sequential(
            nn.Conv2d(dim + heads, hidden, 3, padding=1, bias=False),
            _gn(hidden),
            nn.GELU(),
            nn.Conv2d(hidden, 1, 1),
        )
        # Classes are sparse per pixel; a negative prior bias steadies early training.
        nn.init.constant_(self.project[-1].bias, -2.0)

    def forward(
        self, features: torch.Tensor, text: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-class mask logits.

        Args:
            features: (B, D, h, w) F_MSCAM.
            text: (C, D_text) unit-length class text embeddings.

        Returns:
            ``(logits, attention)``: (B, C, h, w) mask logits and (B, C, heads, h, w)
            category attention maps A_k in [0, 1].
        """
        b, d, h, w = features.shape
        c, nh = text.shape[0], self.heads
        dh = d // nh
        q = self.query(text).view(c, nh, dh)
        k = self.key(features).view(b, nh, dh, h * w)
        v = self.value(features).view(b, nh, dh, h * w)
        score = torch.einsum("chd,bhdn->bchn", q, k) * dh**-0.5  # (B, C, heads, hw)
        attention = torch.sigmoid(score)
        context = torch.einsum("bchn,bhdn->bchd", score.softmax(dim=-1), v).reshape(b, c, d)
        query = q.reshape(1, c, d).expand(b, -1, -1)
        gamma, beta = self.film(torch.cat([context, query], dim=-1)).chunk(2, dim=-1)
        modulated = features.view(b, 1, nh, dh, h * w) * attention.unsqueeze(3)
        modulated = modulated.reshape(b, c, d, h * w) * (1 + gamma[..., None]) + beta[..., None]
        x = torch.cat([modulated, score], dim=2).reshape(b * c, d + nh, h, w)
        logits = self.project(x).view(b, c, h, w)
        return logits, attention.view(b, c, nh, h, w)


# ----------------------------------------------------------------------------- model


class RSZeroSeg(nn.Module):
    """RS-ZeroSeg: open-vocabulary segmentation of remote-sensing images.

    Build with :meth:`from_config`. Inputs are normalised with CLIP's mean/std
    (:meth:`normalize`); the RS stream's ImageNet normalisation is derived internally.

    Args:
        config: The architecture config.
        clip_model: An open_clip CLIP (ViT image tower) built at ``config.image_size``.
        rs_model: A transformers ``Dinov2Model``.
        tokenizer: The CLIP tokenizer (for :meth:`encode_classes`).
        pretrained_backbones: Whether the backbones hold pretrained weights (decides
            what a checkpoint must store, see :mod:`.checkpoint`).
    """

    def __init__(
        self,
        config: RSZeroSegConfig,
        clip_model: nn.Module,
        rs_model: nn.Module,
        tokenizer: Tokenizer | None = None,
        pretrained_backbones: bool = False,
    ) -> None:
        super().__init__()
        from open_clip.transformer import VisionTransformer

        visual = clip_model.visual
        if not isinstance(visual, VisionTransformer) or visual.proj is None:
            raise ValueError("the VLM stream needs an open_clip ViT image tower with proj")
        self.config = config
        self.clip = clip_model
        self.rs = rs_model
        self.tokenizer = tokenizer
        self.pretrained_backbones = pretrained_backbones
        self.clip_patch = int(visual.patch_size[0])
        if config.image_size % self.clip_patch:
            raise ValueError(
                f"image_size {config.image_size} is not a multiple of the CLIP patch "
                f"{self.clip_patch}"
            )
        self.text_dim = int(visual.proj.shape[1])
        self.rs_patch = int(rs_model.config.patch_size)
        rs_dim = int(rs_model.config.hidden_size)
        self._rs_prefix = 1 + int(getattr(rs_model.config, "num_register_tokens", 0) or 0)
        d = config.fused_dim
        # DSFE: Proj_VLM, Proj_RSI (1x1) and the 3x3 fusion conv (paper Eqs. 3-5).
        self.proj_vlm = nn.Conv2d(self.text_dim, d, 1)
        self.proj_rs = nn.Conv2d(rs_dim, d, 1)
        self.fuse = _conv_block(2 * d, d)
        self.text_to_fused = nn.Linear(self.text_dim, d)
        self.mscam = MultiScaleContextualAlignment(
            d,
            config.attn_heads,
            config.scales,
            rs_attention=config.mscam_rs_attention,
            text_attention=config.mscam_text_attention,
        )
        self.upsample = DetailUpsampler(d, config.fine_dim, config.detail_dim, config.fine_stride)
        self.carh = CategoryAdaptiveRefinementHead(
            config.fine_dim, self.text_dim, config.carh_heads, config.carh_hidden
        )
        # Alignment loss: F_MSCAM projected into the text space, contrastive logit scale.
        self.align_proj = nn.Conv2d(config.fine_dim, self.text_dim, 1)
        self.align_logit_scale = nn.Parameter(torch.tensor(math.log(1 / config.align_temperature)))
        from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

        mean = getattr(visual, "image_mean", None) or OPENAI_DATASET_MEAN
        std = getattr(visual, "image_std", None) or OPENAI_DATASET_STD
        self.register_buffer("clip_mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("clip_std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.register_buffer(
            "rs_mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False
        )
        self.register_buffer(
            "rs_std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False
        )
        self.apply_freezing()

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_config(
        cls,
        config: RSZeroSegConfig,
        pretrained: bool = False,
        allow_download: bool = False,
    ) -> RSZeroSeg:
        """Build the real architectures, randomly initialised or with pretrained backbones.

        Args:
            config: The architecture config.
            pretrained: Load CLIP and DINOv2 weights through
                :func:`rs_reasoner.weights.resolve` (local files only unless
                ``allow_download``); False gives random backbones (tests, plumbing).
            allow_download: Allow the Hub download for missing backbone weights.

        Returns:
            The model (CPU, eval mode) with the config's freezing policy applied.

        Raises:
            MissingWeightsError: ``pretrained`` and the backbone weights are not on disk.
        """
        clip_model, tokenizer = build_clip(config, pretrained, allow_download)
        rs_model = build_rs_stream(config, pretrained, allow_download)
        return cls(config, clip_model, rs_model, tokenizer, pretrained_backbones=pretrained).eval()

    # ------------------------------------------------------------------ freezing

    @staticmethod
    def _is_attention(stream: str, name: str) -> bool:
        # open_clip blocks: "transformer.resblocks.N.attn.*"; HF DINOv2: "layer.N.attention.*".
        return ".attn." in name if stream == "clip" else ".attention." in name

    def _stream_params(self, stream: str) -> dict[str, nn.Parameter]:
        module = self.clip.visual if stream == "clip" else self.rs
        prefix = "clip.visual." if stream == "clip" else "rs."
        return {prefix + n: p for n, p in module.named_parameters()}

    def trainable_backbone_names(self) -> list[str]:
        """Backbone parameter names the freezing policy trains (state-dict keys)."""
        names = []
        policies = {"clip": self.config.clip_trainable, "rs": self.config.rs_trainable}
        for stream, policy in policies.items():
            for name in self._stream_params(stream):
                if policy == "full" or (policy == "attention" and self._is_attention(stream, name)):
                    names.append(name)
        return names

    def apply_freezing(self) -> None:
        """Set ``requires_grad`` from the config's policy.

        Backbones are frozen except what ``clip_trainable`` / ``rs_trainable`` allow
        (``"attention"``: only the attention layers of the ViT blocks); CLIP's text tower
        is always frozen; every new RS-ZeroSeg module is trainable.
        """
        for p in self.parameters():
            p.requires_grad_(True)
        for p in (*self.clip.parameters(), *self.rs.parameters()):
            p.requires_grad_(False)
        trainable = set(self.trainable_backbone_names())
        for stream in ("clip", "rs"):
            for name, p in self._stream_params(stream).items():
                p.requires_grad_(name in trainable)

    def is_backbone_key(self, key: str) -> bool:
        """True for state-dict keys of the (possibly pretrained) CLIP and RS backbones."""
        return key.startswith(("clip.", "rs."))

    def parameter_groups(self, lr: float, backbone_lr_scale: float = 0.1) -> list[dict[str, Any]]:
        """Optimizer groups: new modules at ``lr``, trainable backbone weights lower.

        The paper fine-tunes the CLIP stream "with a relatively smaller learning rate"
        than the randomly initialised modules, to keep its pretrained knowledge.

        Args:
            lr: Learning rate of the new modules.
            backbone_lr_scale: Factor for trainable backbone parameters.

        Returns:
            Parameter groups for ``torch.optim`` (empty groups left out).
        """
        head, backbone = [], []
        for name, p in self.named_parameters():
            if p.requires_grad:
                (backbone if self.is_backbone_key(name) else head).append(p)
        groups = [{"params": head, "lr": lr}, {"params": backbone, "lr": lr * backbone_lr_scale}]
        return [g for g in groups if g["params"]]

    def train(self, mode: bool = True) -> RSZeroSeg:
        """Train mode for the new modules; fully frozen backbones stay in eval mode."""
        super().train(mode)
        if self.config.clip_trainable == "frozen":
            self.clip.eval()
        if self.config.rs_trainable == "frozen":
            self.rs.eval()
        return self

    # ------------------------------------------------------------------ text

    def encode_classes(
        self, classes: Sequence[Sequence[str]], templates: Sequence[str] | None = None
    ) -> torch.Tensor:
        """Prompt-ensembled, unit-length CLIP text embeddings of classes.

        Args:
            classes: Classes, each a sequence of synonyms.
            templates: Prompt templates; default the shared remote-sensing templates.

        Returns:
            (len(classes), D_text) float32 on the model's device (an ordinary tensor,
            usable in training graphs).
        """
        from rs_reasoner.segmenters.open_vocab.prompts import TEMPLATES, ensemble_text_embeddings

        if self.tokenizer is None:
            raise RuntimeError("this RSZeroSeg has no tokenizer")
        device = self.clip_mean.device
        emb = ensemble_text_embeddings(
            self.clip, self.tokenizer, classes, tuple(templates or TEMPLATES), device
        )
        return emb.clone().float()  # clone: inference-mode tensors cannot enter autograd

    # ------------------------------------------------------------------ forward

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) RGB in [0, 1] → CLIP-normalised model input."""
        return (images - self.clip_mean) / self.clip_std

    def _vlm_features(self, images: torch.Tensor) -> torch.Tensor:
        visual = self.clip.visual
        grad = torch.is_grad_enabled() and self.config.clip_trainable != "frozen"
        with torch.set_grad_enabled(grad):
            out = visual.forward_intermediates(
                images.to(visual.conv1.weight.dtype),
                indices=1,
                normalize_intermediates=True,  # ln_post, as CLIP's pooled token gets
                intermediates_only=True,
                output_fmt="NCHW",
            )
            tokens = out["image_intermediates"][-1]
            return torch.einsum("bchw,cd->bdhw", tokens, visual.proj).float()

    def _rs_features(self, images: torch.Tensor) -> torch.Tensor:
        rgb = images * self.clip_std + self.clip_mean
        x = (rgb - self.rs_mean) / self.rs_std
        p = self.rs_patch
        gh, gw = max(1, round(x.shape[-2] / p)), max(1, round(x.shape[-1] / p))
        if (gh * p, gw * p) != tuple(x.shape[-2:]):
            x = F.interpolate(x, size=(gh * p, gw * p), mode="bilinear", align_corners=False)
        grad = torch.is_grad_enabled() and self.config.rs_trainable != "frozen"
        with torch.set_grad_enabled(grad):
            dtype = next(self.rs.parameters()).dtype
            hidden = self.rs(pixel_values=x.to(dtype)).last_hidden_state[:, self._rs_prefix :]
            return hidden.transpose(1, 2).reshape(x.shape[0], -1, gh, gw).float()

    def forward(
        self,
        images: torch.Tensor,
        text_embeddings: torch.Tensor,
        with_alignment: bool | None = None,
    ) -> dict[str, torch.Tensor]:
        """Segment a batch for a class list.

        Args:
            images: (B, 3, H, W) CLIP-normalised (:meth:`normalize`); H and W multiples of
                the CLIP patch size (normally ``config.image_size``).
            text_embeddings: (C, D_text) class text embeddings (:meth:`encode_classes`).
            with_alignment: Also return the alignment embedding map (default: in
                training mode only).

        Returns:
            ``logits`` (B, C, H, W) mask logits (sigmoid → per-class probability);
            ``attention`` (B, C, heads, h, w) CARH maps; ``features`` (B, fine_dim, h, w)
            F_MSCAM; ``text_embeddings`` (C, D_text) unit-length; ``logit_scale`` scalar;
            and with alignment ``align_embeddings`` (B, D_text, h, w).
        """
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
        if text_embeddings.ndim != 2 or text_embeddings.shape[1] != self.text_dim:
            raise ValueError(
                f"text_embeddings must be (C, {self.text_dim}), got {tuple(text_embeddings.shape)}"
            )
        h, w = images.shape[-2:]
        if h % self.clip_patch or w % self.clip_patch:
            raise ValueError(f"image size {(h, w)} is not a multiple of {self.clip_patch}")
        text = F.normalize(text_embeddings.float(), dim=-1)
        vlm = self._vlm_features(images)
        rs = _resize(self._rs_features(images), tuple(vlm.shape[-2:]))
        vlm, rs = self.proj_vlm(vlm), self.proj_rs(rs)
        fused = self.fuse(torch.cat([vlm, rs], dim=1))
        aligned = self.mscam(fused, rs, self.text_to_fused(text))
        fine = self.upsample(aligned, images)
        logits, attention = self.carh(fine, text)
        out = {
            "logits": F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False),
            "attention": attention,
            "features": fine,
            "text_embeddings": text,
            "logit_scale": self.align_logit_scale.clamp(max=math.log(100.0)).exp(),
        }
        want_alignment = self.training if with_alignment is None else with_alignment
        if want_alignment:
            out["align_embeddings"] = self.align_proj(fine)
        return out

    def extra_repr(self) -> str:
        return f"clip={self.config.clip_model}, rs={self.config.rs_model}"
