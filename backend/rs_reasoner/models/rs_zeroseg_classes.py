"""RS-ZeroSeg (the open-vocabulary model) fine-tuned on the user's classes.

:class:`RSZeroSegModel` wraps the backend's :class:`RSZeroSeg` network with a fixed class
list, so the training loop sees an ordinary segmentation model: images (B, 3, H, W) in
[0, 1] -> logits (B, C, H, W), channel k = ``class_names[k]``.

**Text.** The class names are embedded once with CLIP's (frozen) text tower,
prompt-ensembled as the backend does, and kept as a buffer: checkpoints carry the exact
embeddings trained with, and the model needs no tokenizer call at inference.

**Loss: softmax cross-entropy on the per-class mask logits, not BCE + λ·alignment.**
The user's classes are a closed, mutually exclusive set (every labelled pixel is exactly
one of them), which is what softmax cross-entropy models. The teacher-student loop also
needs one probability scale for everything: its pseudo-labels are softmax argmaxes, the
VLM-PP threshold τ = 0.7 and the fusion ``c' = α c + (1 - α) q`` act on softmax
confidences, and the unsupervised loss is a cross-entropy on the same logits; a BCE
supervised loss would train sigmoid scores that these rules do not read. The alignment
term exists to keep visual features close to *arbitrary* text queries when training
across vocabularies (the backend's own RS-ZeroSeg recipe); here the vocabulary is fixed
and its embeddings are frozen buffers, so the CARH attention already ties the features
to these texts. Served with softmax/argmax, the model labels every pixel with one of the
trained classes, like the U-Net.

**Freezing.** The paper's policy is kept for pretrained backbones (CLIP image tower:
attention layers trained at ``backbone_lr_scale`` x the learning rate; DINOv2 stream and
CLIP text tower frozen). Checkpoints then hold only what training changes (new modules,
trained attention weights, text embeddings); the frozen rest is rebuilt from the local
backbone files through :func:`rs_reasoner.weights.resolve` (never downloaded).

**Random init** (``pretrained=False``: tests, air-gapped machines). Without a config the
:data:`SMALL_RANDOM` preset is used: a small CLIP/DINOv2 pair trained entirely (freezing
random features would only fix noise; the paper's policy protects pretrained knowledge,
which a random backbone does not have). The whole network is then stored in checkpoints.

**Input size.** The CLIP stream is built for one square input (``config.image_size``,
normally the training crop). Other sizes are covered by overlapping windows of that size
whose logits are blended with tent weights (zero padding below one window), so the model
takes any (H, W), as serving needs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rs_reasoner.segmenters.sliding_windows import blend_weight, window_starts

ARCH = "rs-zeroseg"

#: Random-init preset (RSZeroSegConfig overrides): ~2 M parameters, all trained.
SMALL_RANDOM: dict[str, Any] = {
    "clip_overrides": {
        "embed_dim": 64,
        "vision_cfg": {"layers": 3, "width": 96, "patch_size": 8, "head_width": 32},
        "text_cfg": {
            "context_length": 77,
            "vocab_size": 49408,
            "width": 64,
            "heads": 2,
            "layers": 1,
        },
    },
    "rs_overrides": {
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "patch_size": 8,
    },
    "fused_dim": 64,
    "fine_dim": 32,
    "detail_dim": 16,
    "attn_heads": 4,
    "carh_heads": 4,
    "carh_hidden": 32,
    "clip_trainable": "full",
    "rs_trainable": "full",
}


class RSZeroSegModel(nn.Module):
    """RS-ZeroSeg with a fixed class list, as a plain segmentation model.

    Args:
        class_names: The classes (channel order of the logits).
        config: ``RSZeroSegConfig`` fields (dict) or a config; None: the paper's
            defaults when ``pretrained``, else :data:`SMALL_RANDOM`.
        pretrained: Load the CLIP and DINOv2 backbones from local files (raises
            ``MissingWeightsError`` when absent); False: random init.
        prompts: Optional synonyms per class name for the text embedding
            (e.g. ``{"Land": ["bare land", "sand"]}``); default the name itself.
        backbone_lr_scale: Learning-rate factor of trained backbone weights.
    """

    arch = ARCH

    def __init__(
        self,
        class_names: Sequence[str],
        config: Mapping[str, Any] | Any | None = None,
        pretrained: bool = False,
        prompts: Mapping[str, Sequence[str]] | None = None,
        backbone_lr_scale: float = 0.1,
    ) -> None:
        super().__init__()
        from rs_reasoner.segmenters.open_vocab.rs_zeroseg.config import RSZeroSegConfig
        from rs_reasoner.segmenters.open_vocab.rs_zeroseg.model import RSZeroSeg

        if config is None:
            cfg = RSZeroSegConfig() if pretrained else RSZeroSegConfig(**SMALL_RANDOM)
        elif isinstance(config, RSZeroSegConfig):
            cfg = config
        else:
            cfg = RSZeroSegConfig.from_dict(dict(config))
        if not class_names:
            raise ValueError("RS-ZeroSeg needs at least one class name")
        self.class_names = [str(c) for c in class_names]
        self.pretrained = bool(pretrained)
        self.prompts = {str(k): [str(s) for s in v] for k, v in (prompts or {}).items()}
        self.backbone_lr_scale = float(backbone_lr_scale)
        self.net = RSZeroSeg.from_config(cfg, pretrained=self.pretrained)
        synonyms = [self.prompts.get(name) or [name] for name in self.class_names]
        with torch.no_grad():
            embeddings = self.net.encode_classes(synonyms)
        self.register_buffer("text_embeddings", embeddings)

    @property
    def config(self) -> Any:
        """The network's ``RSZeroSegConfig``."""
        return self.net.config

    def spec(self) -> dict[str, Any]:
        """How to rebuild this model (plain data, see ``models.build_model``)."""
        return {
            "arch": self.arch,
            "class_names": list(self.class_names),
            "config": self.net.config.to_dict(),
            "pretrained": self.pretrained,
            "prompts": {k: list(v) for k, v in self.prompts.items()} or None,
            "backbone_lr_scale": self.backbone_lr_scale,
        }

    # ------------------------------------------------------------------ optimisation

    def parameter_groups(self, lr: float) -> list[dict[str, Any]]:
        """AdamW groups: new modules at ``lr``, trained backbone weights lower.

        Each group carries ``lr_scale`` so the loop's schedule keeps the ratio.
        """
        groups = self.net.parameter_groups(lr, self.backbone_lr_scale)
        for g in groups:
            g["lr_scale"] = g["lr"] / lr if lr else 1.0
        return groups

    # ------------------------------------------------------------------ checkpoints

    def _kept_keys(self) -> set[str]:
        from rs_reasoner.segmenters.open_vocab.rs_zeroseg.checkpoint import checkpoint_keys

        net = {"net." + k for k in checkpoint_keys(self.net, embedded=not self.pretrained)}
        return net | {k for k in self.state_dict() if not k.startswith("net.")}

    def checkpoint_state(self) -> dict[str, torch.Tensor]:
        """What a checkpoint stores: everything for random backbones; for pretrained
        ones only the new modules, trained backbone weights and text embeddings."""
        keep = self._kept_keys()
        return {k: v for k, v in self.state_dict().items() if k in keep}

    def load_checkpoint_state(self, state: Mapping[str, torch.Tensor]) -> None:
        """Load :meth:`checkpoint_state` output.

        Raises:
            RuntimeError: Keys or shapes that do not fit this model.
        """
        expected = self._kept_keys()
        missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
        if missing or unexpected:
            raise RuntimeError(
                f"state does not fit RS-ZeroSeg ({len(missing)} missing, e.g. {missing[:2]}; "
                f"{len(unexpected)} unexpected, e.g. {unexpected[:2]})"
            )
        self.load_state_dict(dict(state), strict=False)

    # ------------------------------------------------------------------ forward

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x, self.text_embeddings, with_alignment=False)["logits"]

    @property
    def native_window(self) -> int:
        """The input side the network runs at; larger inputs are cut into such windows."""
        return int(self.net.config.image_size)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits (B, C, H, W) of images (B, 3, H, W) in [0, 1], any H and W."""
        h, w = images.shape[-2:]
        win = self.native_window
        x = self.net.normalize(images)
        if (h, w) == (win, win):
            return self._logits(x)
        hp, wp = max(h, win), max(w, win)
        # Zero after normalisation = CLIP's mean colour: padding looks like nothing.
        x = F.pad(x, (0, wp - w, 0, hp - h))
        stride = max(1, win - win // 4)
        spots = [
            (r, c)
            for r in window_starts(hp, win, stride)
            for c in window_starts(wp, win, stride)
        ]
        b = x.shape[0]
        weight = blend_weight(win, win, x.device)
        acc = x.new_zeros(b, len(self.class_names), hp, wp)
        total = x.new_zeros(1, 1, hp, wp)
        per_call = max(1, 16 // b)  # windows per forward pass
        for i in range(0, len(spots), per_call):
            chunk = spots[i : i + per_call]
            crops = torch.cat([x[:, :, r : r + win, c : c + win] for r, c in chunk])
            logits = self._logits(crops).float().split(b)
            for (r, c), part in zip(chunk, logits, strict=True):
                acc[:, :, r : r + win, c : c + win] += part * weight
                total[:, :, r : r + win, c : c + win] += weight
        return (acc / total)[..., :h, :w]
