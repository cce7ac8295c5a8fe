"""Training-free open-vocabulary segmentation with CLIP (SegEarth-OV style).

Pipeline for one tile:

1. The RGB tile is normalised with CLIP's mean/std (NoData pixels set to the mean
   colour) and padded to at least one window.
2. Windows of ``window`` px every ``stride`` px (the last one flush with the edge) are
   batched through :class:`~.clip_dense.DenseClipEncoder`; one image encoding serves all
   classes.
3. Per window, patch logits ``cos(patch, t_c) - λ cos(cls, t_c)`` for the user's classes
   and the background names (:mod:`.prompts`) are upsampled bilinearly to the window's
   pixel size, accumulated over the tile and averaged where windows overlap.
4. Optional image-guided refinement (``upsampler="guided"``): a colour guided filter
   (He et al., "Guided Image Filtering", TPAMI 2013) re-fits the logits locally as an
   affine function of the RGB image, snapping class boundaries to image edges that the
   16-px patch grid blurs. Pure torch (box means by average pooling or cumulative sums);
   by default the fast variant fits the filter at 1/4 resolution (He & Sun 2015).
5. Probabilities: ``softmax(logit_scale · logits)`` over user classes + background names
   (``logit_scale`` is the softmax temperature; 50 as in SegEarth-OV's code, CLIP's own
   is 100). The background probability is the sum over the background names. Label =
   argmax over (background, classes), score = the probability of that label.

NoData pixels get label 0 and score 0; windows run only over the bounding box of the
valid pixels (a tile's context margin past the raster edge is NoData). The score threshold
of the request is applied by the pipeline, not here.

On CPU the segmenter takes a fast path unless asked for the exact one (``cpu_fast``, or
``exact`` for one call): half the working resolution, windows that do not overlap, and the
image tower in bfloat16 where the CPU computes it natively (int8 elsewhere). The price
of each shortcut, as agreement with the exact path, is in docs/benchmarks.md.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rs_reasoner.device import autocast
from rs_reasoner.errors import MissingWeightsError
from rs_reasoner.segmenters.base import SegmentationQuery, Segmenter, TileResult
from rs_reasoner.segmenters.hub_weights import (
    OPENAI_VIT_B16_WEIGHTS,
    REMOTECLIP_QUICK_GELU,
    REMOTECLIP_VIT_L14_WEIGHTS,
)
from rs_reasoner.segmenters.open_vocab.clip_dense import (
    ClsSource,
    DenseClipEncoder,
    Tokenizer,
    create_open_clip,
    global_bias_logits,
    weight_spec_for,
)
from rs_reasoner.segmenters.open_vocab.decision import argmax_result, require_classes
from rs_reasoner.segmenters.open_vocab.prompts import (
    DEFAULT_BACKGROUND,
    TEMPLATES,
    ClassKey,
    TextEmbeddingCache,
    ensemble_text_embeddings,
    select_background,
)
from rs_reasoner.segmenters.sliding_windows import window_starts
from rs_reasoner.weights import WeightSpec, resolve

log = logging.getLogger(__name__)

Upsampler = Literal["bilinear", "guided"]
Precision = Literal["float32", "bfloat16", "int8", "auto"]


# ---------------------------------------------------------------------------- helpers


def _box_sum(x: torch.Tensor, r: int, dim: int) -> torch.Tensor:
    n = x.shape[dim]
    c = torch.cumsum(x, dim)
    c = torch.cat([torch.zeros_like(c.narrow(dim, 0, 1)), c], dim)
    idx = torch.arange(n, device=x.device)
    hi, lo = (idx + r + 1).clamp(max=n), (idx - r).clamp(min=0)
    return c.index_select(dim, hi) - c.index_select(dim, lo)


#: Largest radius for which :func:`box_mean` uses separable average pooling: about five
#: times faster than cumulative sums for the fast guided filter's small radii, slower
#: for wide windows (its cost grows with the radius, that of cumulative sums does not).
_POOL_MAX_RADIUS = 8


def box_mean(x: torch.Tensor, r: int) -> torch.Tensor:
    """Mean over (2r+1)² windows, windows clipped at the borders.

    Args:
        x: (..., H, W).
        r: Window radius.

    Returns:
        Same shape as ``x``.
    """
    h, w = x.shape[-2:]
    if r <= _POOL_MAX_RADIUS:
        # Row means then column means; clipped windows divide by the pixels inside.
        y = x.reshape(-1, 1, h, w)
        k = 2 * r + 1
        y = F.avg_pool2d(y, (1, k), stride=1, padding=(0, r), count_include_pad=False)
        y = F.avg_pool2d(y, (k, 1), stride=1, padding=(r, 0), count_include_pad=False)
        return y.reshape(x.shape)
    ones_h = _box_sum(torch.ones(h, 1, device=x.device, dtype=x.dtype), r, 0)
    ones_w = _box_sum(torch.ones(1, w, device=x.device, dtype=x.dtype), r, 1)
    return _box_sum(_box_sum(x, r, -1), r, -2) / (ones_h * ones_w)


def guided_filter(
    guide: torch.Tensor,
    src: torch.Tensor,
    radius: int,
    eps: float,
    subsample: int = 1,
    chunk: int = 4,
) -> torch.Tensor:
    """Colour guided filter (He et al. 2013): ``q = a·I + b`` fitted in every window.

    With ``subsample > 1`` it is the fast guided filter (He & Sun 2015): ``a`` and ``b``
    are fitted on area-downsampled inputs and upsampled bilinearly, while ``q`` still uses
    the full-resolution guide, so edges stay sharp at a fraction of the cost. That suits
    CLIP logits, which carry no detail finer than a patch anyway.

    Args:
        guide: (3, H, W) guide image, values about [0, 1].
        src: (C, H, W) maps to filter (here: per-class logits).
        radius: Window radius in full-resolution pixels.
        eps: Regulariser; larger → smoother, smaller → follows guide edges more.
        subsample: Downsampling factor for fitting ``a`` and ``b``.
        chunk: Source channels processed at once (bounds memory).

    Returns:
        (C, H, W) float32 filtered maps.
    """
    h, w = guide.shape[-2:]
    # Filter and output are invariant to constant shifts; centring keeps the float32
    # cumulative sums accurate.
    guide = guide.float() - guide.float().mean(dim=(1, 2), keepdim=True)
    offset = src.float().mean(dim=(1, 2), keepdim=True)
    src = src.float() - offset
    small = (max(1, -(-h // subsample)), max(1, -(-w // subsample)))
    lo_guide, lo_src = guide, src
    if subsample > 1:
        lo_guide = F.interpolate(guide[None], size=small, mode="area")[0]
        lo_src = F.interpolate(src[None], size=small, mode="area")[0]
    r = max(1, round(radius / subsample))
    mean_i = box_mean(lo_guide, r)
    cov_ii = box_mean(lo_guide[:, None] * lo_guide[None], r) - mean_i[:, None] * mean_i[None]
    eye = torch.eye(3, device=guide.device)[:, :, None, None]
    inv = torch.linalg.inv((cov_ii + eps * eye).permute(2, 3, 0, 1))  # (h', w', 3, 3)
    out = []
    for p in lo_src.split(chunk):
        mean_p = box_mean(p, r)
        cov_ip = box_mean(lo_guide[:, None] * p[None], r) - mean_i[:, None] * mean_p[None]
        a = torch.einsum("hwij,jchw->ichw", inv, cov_ip)  # (3, c, h', w')
        b = mean_p - (a * mean_i[:, None]).sum(0)
        a, b = box_mean(a, r), box_mean(b, r)
        if subsample > 1:
            c = p.shape[0]
            a = F.interpolate(a.reshape(1, 3 * c, *small), size=(h, w), mode="bilinear")
            a = a.reshape(3, c, h, w)
            b = F.interpolate(b[None], size=(h, w), mode="bilinear")[0]
        out.append((a * guide[:, None]).sum(0) + b)
    return torch.cat(out) + offset


def _quantize_linear_layers(module: nn.Module) -> None:
    """Swap a module's ``nn.Linear`` layers for int8 dynamically quantised ones, in place.

    The feed-forward layers hold most of a ViT's arithmetic; attention projections inside
    ``nn.MultiheadAttention`` stay float (they are read as weights, not called).
    """
    import warnings

    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():  # torch.ao's deprecation notice; the API still works
        warnings.simplefilter("ignore")
        quantize_dynamic(module, {nn.Linear}, dtype=torch.qint8, inplace=True)


def native_bfloat16() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (AVX512-BF16 or AMX).

    Elsewhere oneDNN emulates bfloat16, which is slower than float32, so int8 is used.
    """
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)


def resolve_precision(precision: Precision) -> Precision:
    """``"auto"`` → bfloat16 where the CPU has it natively, else int8; others unchanged."""
    if precision != "auto":
        return precision
    return "bfloat16" if native_bfloat16() else "int8"


def reduced_precision_copy(visual: nn.Module, precision: Precision) -> nn.Module:
    """A copy of an image tower for CPU inference at ``precision`` (the original is kept
    in float32 for the exact path)."""
    precision = resolve_precision(precision)
    if precision == "float32":
        return visual
    fast = copy.deepcopy(visual)
    if precision == "bfloat16":
        return fast.to(torch.bfloat16)
    _quantize_linear_layers(fast)
    return fast


def valid_box(valid: np.ndarray) -> tuple[int, int, int, int] | None:
    """(row0, col0, row1, col1) of the smallest box holding every valid pixel; None if none."""
    rows, cols = np.flatnonzero(valid.any(1)), np.flatnonzero(valid.any(0))
    if not rows.size:
        return None
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


# -------------------------------------------------------------------------- segmenter


@dataclass(frozen=True)
class OpenVocabSettings:
    """Inference settings of :class:`ClipOpenVocabSegmenter`.

    Attributes:
        lam: Global-bias weight λ (0 disables it).
        cls_source: ``"dense"`` (SegEarth-OV code) or ``"global"`` CLS embedding.
        logit_scale: Softmax temperature applied to the cosine logits.
        window, stride: Sliding-window size and step in pixels of the working
            resolution (window a multiple of the patch size). Windows larger than the
            network's training size use resampled position embeddings.
        working_scale: The tile is resampled by this factor (0 < s <= 1) before the
            windows run; logits come back to full resolution before the guided filter,
            which restores edges from the full-resolution image. 0.5 encodes a quarter
            of the pixels (objects must stay a few patches wide at that scale).
        cpu_precision: Arithmetic of the image tower on CPU: ``"float32"``,
            ``"bfloat16"`` (fast only where the CPU has it natively), ``"int8"`` (dynamic
            quantisation of the feed-forward layers) or ``"auto"`` (bfloat16 where
            native, else int8). Ignored on GPU, which runs under autocast.
        cpu_fast: On CPU, run :func:`fast_settings` of these (``working_scale`` and
            ``cpu_precision`` from :data:`CPU_FAST`, stride = window); False keeps the
            values given here (the exact path with the defaults). The float32 model is
            kept for the exact path (``exact=True`` per call); the fast path's copy
            costs half its memory more in bfloat16. Ignored on GPU.
        batch_size: Windows per forward pass.
        upsampler: ``"bilinear"`` or ``"guided"`` (bilinear + guided-filter refinement).
        guided_radius: Guided-filter radius; default: the patch size.
        guided_eps: Guided-filter regulariser (guide in [0, 1]).
        guided_subsample: Fast-guided-filter downsampling factor (1 = exact filter).
        background: Background names (label 0), see :mod:`.prompts`.
        templates: Prompt templates (each with one ``{}``).
    """

    lam: float = 0.3
    cls_source: ClsSource = "dense"
    logit_scale: float = 50.0
    window: int = 224
    stride: int = 112
    working_scale: float = 1.0
    cpu_precision: Precision = "float32"
    cpu_fast: bool = True
    batch_size: int = 16
    upsampler: Upsampler = "guided"
    guided_radius: int | None = None
    guided_eps: float = 1e-2
    guided_subsample: int = 4
    background: tuple[str, ...] = DEFAULT_BACKGROUND
    templates: tuple[str, ...] = TEMPLATES

    def __post_init__(self) -> None:
        # Any sequence is accepted; stored as tuples (the settings are hashable, frozen).
        object.__setattr__(self, "background", tuple(self.background))
        object.__setattr__(self, "templates", tuple(self.templates))
        if self.window < 1 or not 1 <= self.stride <= self.window:
            raise ValueError(f"need 1 <= stride <= window, got {self.stride}, {self.window}")
        if not 0 < self.working_scale <= 1:
            raise ValueError(f"working_scale must be in (0, 1], not {self.working_scale}")
        if min(self.batch_size, self.guided_subsample) < 1:
            raise ValueError("batch_size and guided_subsample must be at least 1")
        if self.logit_scale <= 0 or self.guided_eps <= 0:
            raise ValueError("logit_scale and guided_eps must be positive")
        if self.cpu_precision not in ("float32", "bfloat16", "int8", "auto"):
            raise ValueError(f"unknown cpu_precision {self.cpu_precision!r}")
        if self.upsampler not in ("bilinear", "guided"):
            raise ValueError(f"upsampler must be 'bilinear' or 'guided', not {self.upsampler!r}")
        if not self.templates or any("{}" not in t for t in self.templates):
            raise ValueError("every template needs a '{}' for the class name")


#: The fast CPU path (``cpu_fast``): at most half the working resolution (a quarter of the
#: pixels), windows side by side instead of overlapping by half (a quarter of the windows
#: per pixel on a large tile), and bfloat16 or int8 arithmetic (about 1.7x). The price,
#: as agreement with the exact path, is in docs/benchmarks.md.
CPU_FAST: dict[str, Any] = {"working_scale": 0.5, "cpu_precision": "auto"}


def fast_settings(settings: OpenVocabSettings) -> OpenVocabSettings:
    """``settings`` with the :data:`CPU_FAST` shortcuts applied (stride = window)."""
    return replace(
        settings,
        working_scale=min(settings.working_scale, CPU_FAST["working_scale"]),
        stride=settings.window,
        cpu_precision=CPU_FAST["cpu_precision"],
        cpu_fast=False,
    )


class ClipOpenVocabSegmenter(Segmenter):
    """Training-free open-vocabulary segmentation from CLIP patch features.

    Args:
        model: A built open_clip CLIP model with a ViT image tower.
        tokenizer: Its tokenizer.
        device: Torch device (``"cuda"``, ``"cpu"``); the model is moved there.
        model_id: Key for the text-embedding cache; default: unique per model object.
        **settings: Fields of :class:`OpenVocabSettings` (``lam``, ``window``, ``stride``,
            ``upsampler``, ``background``, ``templates``, ...).

    :meth:`from_pretrained` resolves weights and builds the model.
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Tokenizer,
        device: str = "cpu",
        model_id: str | None = None,
        **settings: Any,
    ) -> None:
        self._setup(
            model,
            tokenizer,
            device,
            model_id or f"custom-{id(model)}",
            OpenVocabSettings(**settings),
        )

    @classmethod
    def from_pretrained(
        cls,
        device: str = "cpu",
        model_name: str = "ViT-B-16",
        pretrained: str | None = "openai",
        checkpoint: str | Path | None = None,
        weights_spec: WeightSpec | None = None,
        quick_gelu: bool | None = None,
        registry_name: str = "clip-openvocab",
        allow_download: bool = False,
        **settings: Any,
    ) -> ClipOpenVocabSegmenter:
        """Resolve CLIP weights and build the segmenter (the registry's loader).

        Args:
            device: Torch device.
            model_name: open_clip architecture (``"ViT-B-16"``; ``"ViT-L-14"`` etc. for
                RemoteCLIP / GeoRSCLIP / SkyCLIP checkpoints).
            pretrained: open_clip pretrained tag whose Hub weights are resolved with
                :func:`rs_reasoner.weights.resolve` (never downloaded unless
                ``allow_download``). ``None`` builds the architecture with RANDOM
                weights, for tests only.
            checkpoint: Local weights file (e.g. a RemoteCLIP ``.pt``); overrides
                ``pretrained``.
            weights_spec: Hub weights to resolve instead of the tag's; default: open_clip's
                Hub copy for ``(model_name, pretrained)``.
            quick_gelu: Use QuickGELU; default: what the tag was trained with (True for
                ``openai``), False for checkpoints.
            registry_name: Model name shown in the missing-weights hint.
            allow_download: Let :func:`~rs_reasoner.weights.resolve` download.
            **settings: Fields of :class:`OpenVocabSettings`.

        Raises:
            MissingWeightsError: The weights are not on this machine.
        """
        OpenVocabSettings(**settings)  # checked before loading anything
        path, gelu = cls._weights(
            model_name,
            pretrained,
            checkpoint,
            weights_spec,
            quick_gelu,
            registry_name,
            allow_download,
        )
        model, tokenizer = create_open_clip(model_name, path, device=device, quick_gelu=gelu)
        source = str(path) if path is not None else f"random-{id(model)}"
        return cls(model, tokenizer, device, f"{model_name}@{source}", **settings)

    @staticmethod
    def _weights(
        model_name: str,
        pretrained: str | None,
        checkpoint: str | Path | None,
        spec: WeightSpec | None,
        quick_gelu: bool | None,
        registry_name: str,
        allow_download: bool,
    ) -> tuple[Path | None, bool]:
        if checkpoint is not None:
            path = Path(checkpoint).expanduser()
            if not path.is_file():
                raise MissingWeightsError(
                    f"CLIP checkpoint {path} for model '{registry_name}' does not exist.",
                    "Point 'checkpoint' at the downloaded weights file.",
                )
            return path, bool(quick_gelu)
        if pretrained is None:
            return None, bool(quick_gelu)
        if spec is None:
            spec, tag_gelu = weight_spec_for(model_name, pretrained)
            if (model_name, pretrained) == ("ViT-B-16", "openai"):
                spec = OPENAI_VIT_B16_WEIGHTS
        else:
            import open_clip

            tag_cfg = open_clip.get_pretrained_cfg(model_name, pretrained) or {}
            tag_gelu = bool(tag_cfg.get("quick_gelu", False))
        # A folder override resolves to the file inside it (any of the spec's names).
        path = resolve(spec, registry_name, allow_download=allow_download)
        return path, tag_gelu if quick_gelu is None else quick_gelu

    def _setup(
        self,
        model: nn.Module,
        tokenizer: Tokenizer,
        device: str,
        model_id: str,
        settings: OpenVocabSettings,
    ) -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.model_id = model_id
        self.settings = settings
        #: The float32 encoder (the exact path, and every path on GPU).
        self.encoder = DenseClipEncoder(self.model.visual, settings.cls_source).eval()
        #: Reduced-precision copies for the CPU, built on first use.
        self._cpu_encoders: dict[str, DenseClipEncoder] = {}
        patch = self.encoder.patch_size
        if settings.window % patch:
            raise ValueError(f"window {settings.window} is not a multiple of the patch {patch}")
        self.guided_radius = settings.guided_radius or patch
        visual = self.model.visual
        from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

        mean = getattr(visual, "image_mean", None) or OPENAI_DATASET_MEAN
        std = getattr(visual, "image_std", None) or OPENAI_DATASET_STD
        self._mean = torch.tensor(mean, device=self.device).view(3, 1, 1)
        self._std = torch.tensor(std, device=self.device).view(3, 1, 1)
        self.text_cache = TextEmbeddingCache()

    # -------------------------------------------------------------------- inference

    def _encode_classes(self, keys: list[ClassKey]) -> torch.Tensor:
        with autocast(self.device):
            return ensemble_text_embeddings(
                self.model, self.tokenizer, keys, self.settings.templates, self.device
            )

    def text_embeddings(self, classes: Sequence[Sequence[str]]) -> torch.Tensor:
        """Cached, prompt-ensembled embeddings (len(classes), D) of classes."""
        return self.text_cache.embed(self.model_id, classes, self._encode_classes)

    def run_settings(self, exact: bool = False) -> OpenVocabSettings:
        """The settings a call runs with: :func:`fast_settings` on CPU unless ``exact`` or
        ``cpu_fast=False``; the given settings otherwise."""
        s = self.settings
        if self.device.type == "cpu" and s.cpu_fast and not exact:
            return fast_settings(s)
        return s

    def _encoder_for(self, settings: OpenVocabSettings) -> DenseClipEncoder:
        if self.device.type != "cpu":
            return self.encoder
        precision = resolve_precision(settings.cpu_precision)
        if precision == "float32":
            return self.encoder
        if precision not in self._cpu_encoders:
            visual = reduced_precision_copy(self.model.visual, precision)
            self._cpu_encoders[precision] = DenseClipEncoder(visual, settings.cls_source).eval()
        return self._cpu_encoders[precision]

    def predict_probabilities(
        self,
        image: np.ndarray,
        valid: np.ndarray,
        classes: Sequence[Sequence[str]],
        exact: bool = False,
    ) -> np.ndarray:
        """Per-pixel probabilities of background and each class.

        Args:
            image: (H, W, 3) uint8 RGB.
            valid: (H, W) bool.
            classes: The user's classes, each a sequence of synonyms.
            exact: Take the exact path on CPU too (see :meth:`run_settings`).

        Returns:
            (1 + len(classes), H, W) float32; channel 0 is background (sum over the
            background names), channel k is ``classes[k - 1]``; channels sum to 1.
            Pixels outside the valid pixels' bounding box are background with
            probability 1 (the pipeline scores NoData 0 anyway).
        """
        if self.model is None:
            raise RuntimeError("the segmenter was closed")
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"need an (H, W, 3) uint8 image, got {image.shape} {image.dtype}")
        if valid.shape != image.shape[:2]:
            raise ValueError(f"valid {valid.shape} does not match image {image.shape[:2]}")
        k = len(classes)
        out = np.zeros((1 + k, *valid.shape), np.float32)
        out[0] = 1.0
        box = valid_box(valid)
        if box is None:  # nothing to look at: no encoding at all
            return out
        r0, c0, r1, c1 = box
        s = self.run_settings(exact)
        background = select_background(classes, s.background)
        text = self.text_embeddings([*classes, *((b,) for b in background)])
        with torch.inference_mode():
            logits = self._tile_logits(image[r0:r1, c0:c1], valid[r0:r1, c0:c1], text, s)
            probs = torch.softmax(s.logit_scale * logits, dim=0)
            bg = probs[k:].sum(0, keepdim=True)
            out[:, r0:r1, c0:c1] = torch.cat([bg, probs[:k]]).cpu().numpy()
        return out

    def _tile_logits(
        self,
        image: np.ndarray,
        valid: np.ndarray,
        text: torch.Tensor,
        settings: OpenVocabSettings | None = None,
    ) -> torch.Tensor:
        s = settings or self.settings
        encoder = self._encoder_for(s)
        h, w = valid.shape
        rgb = torch.from_numpy(np.ascontiguousarray(image)).to(self.device)
        rgb = rgb.permute(2, 0, 1).float() / 255.0
        mask = torch.from_numpy(np.ascontiguousarray(valid)).to(self.device)
        # NoData → mean colour (0 after normalisation), so it does not look like "dark".
        norm = (rgb - self._mean) / self._std * mask
        if s.working_scale < 1:
            small = (max(1, round(h * s.working_scale)), max(1, round(w * s.working_scale)))
            norm = F.interpolate(norm[None], size=small, mode="area")[0]
        sh, sw = norm.shape[-2:]
        hp, wp = max(sh, s.window), max(sw, s.window)
        norm = F.pad(norm, (0, wp - sw, 0, hp - sh))
        spots = [
            (y, x)
            for y in window_starts(hp, s.window, s.stride)
            for x in window_starts(wp, s.window, s.stride)
        ]
        acc = torch.zeros(text.shape[0], hp, wp, device=self.device)
        count = torch.zeros(1, hp, wp, device=self.device)
        for i in range(0, len(spots), s.batch_size):
            batch = spots[i : i + s.batch_size]
            crops = torch.stack([norm[:, y : y + s.window, x : x + s.window] for y, x in batch])
            with autocast(self.device):
                patches, cls = encoder(crops)
            logits = global_bias_logits(patches, cls, text, s.lam)
            logits = F.interpolate(
                logits, size=(s.window, s.window), mode="bilinear", align_corners=False
            )
            for (y, x), window_logits in zip(batch, logits, strict=True):
                acc[:, y : y + s.window, x : x + s.window] += window_logits
                count[:, y : y + s.window, x : x + s.window] += 1
        logits = (acc / count)[:, :sh, :sw]
        if (sh, sw) != (h, w):
            logits = F.interpolate(logits[None], size=(h, w), mode="bilinear")[0]
        if s.upsampler == "guided":
            logits = guided_filter(
                rgb, logits, self.guided_radius, s.guided_eps, subsample=s.guided_subsample
            )
        return logits

    def segment(self, image: np.ndarray, valid: np.ndarray, query: SegmentationQuery) -> TileResult:
        """Label each pixel with the most probable class or background (see module doc)."""
        require_classes(query)
        probs = self.predict_probabilities(image, valid, query.classes, query.options.exact)
        return argmax_result(probs, valid, query.classes)

    def close(self) -> None:
        """Drop the model and cached embeddings and release GPU memory."""
        self.model = None
        self.encoder = None
        self._cpu_encoders.clear()
        self.text_cache.clear()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


def remoteclip_segmenter(device: str = "cpu", **settings: Any) -> ClipOpenVocabSegmenter:
    """The loader of ``remoteclip-openvocab``: the same method on RemoteCLIP ViT-L/14
    (patch 14, so 224-px windows are 16 x 16 patches), with QuickGELU as it was trained
    (see ``REMOTECLIP_QUICK_GELU``)."""
    return ClipOpenVocabSegmenter.from_pretrained(
        device=device,
        model_name="ViT-L-14",
        weights_spec=REMOTECLIP_VIT_L14_WEIGHTS,
        quick_gelu=REMOTECLIP_QUICK_GELU,
        registry_name="remoteclip-openvocab",
        **settings,
    )
