"""The frozen SAM 2.1 that turns each object's box + points into a mask, at full resolution.

SAM runs on full-resolution crops of the extent around the objects (zoom-in refinement,
see :func:`~rs_reasoner.segmenters.reasoning.geometry.plan_windows`), not on the 840²
overview the prompter saw, so a 10,000 px extent still gets edges at (about) native pixel
accuracy for objects up to ~730 px (box + 20 % context per side within 1024 px); larger
objects get a crop SAM downsamples to 1024², so their edge accuracy is about crop side /
1024 pixels. One image encoding per crop, one
mask decode per object (``multimask_output=False``: box + two points are unambiguous).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from rs_reasoner.device import autocast
from rs_reasoner.segmenters.hub_weights import DEFAULT_SAM_VARIANT, sam_variant, sam_weights
from rs_reasoner.segmenters.reasoning.geometry import (
    CROP_MARGIN,
    CROP_MAX_SIDE,
    CROP_MIN_SIDE,
    Window,
    object_extent,
    plan_windows,
)
from rs_reasoner.segmenters.reasoning.parser import ObjectPrompt
from rs_reasoner.weights import resolve

log = logging.getLogger(__name__)

def build_sam2_model(
    variant: str, checkpoint: str | None, device: str, image_size: int = 1024
) -> torch.nn.Module:
    """Build SAM 2.1 from the sam2 package's own config.

    Args:
        variant: SAM 2.1 size.
        checkpoint: Local ``.pt``; ``None`` leaves the weights random (tests only).
        device: Torch device.
        image_size: SAM's input side. Only tests change it (a smaller input makes a
            random-weight encoder cheaper on CPU); real checkpoints expect 1024.

    Returns:
        The model in eval mode.
    """
    from sam2.build_sam import build_sam2

    config, _, _ = sam_variant(variant)
    overrides = [] if image_size == 1024 else [f"++model.image_size={image_size}"]
    return build_sam2(config, checkpoint, device=device, hydra_overrides_extra=overrides)


@dataclass
class ObjectMask:
    """SAM's answer for one object.

    Attributes:
        window: The crop of the extent it was predicted in.
        logits: (window.height, window.width) float32 mask logits; > 0 is inside.
        iou: SAM's predicted IoU for the mask.
    """

    window: Window
    logits: np.ndarray
    iou: float


@dataclass
class SamStats:
    """Timings of the last :meth:`SamRefiner.predict` call."""

    crops: int = 0
    objects: int = 0
    encode_s: float = 0.0
    decode_s: float = 0.0
    windows: list[Window] = field(default_factory=list)


class SamRefiner:
    """Prompts a SAM 2 image predictor with each object's box and points, crop by crop.

    Args:
        predictor: A ``sam2.sam2_image_predictor.SAM2ImagePredictor`` (or a stand-in with
            ``set_image``/``predict``).
        min_side: Smallest crop side (context).
        max_side: Largest hull of grouped objects per crop.
        margin: Context around each box, fraction of its larger side.
    """

    def __init__(
        self,
        predictor: Any,
        min_side: int = CROP_MIN_SIDE,
        max_side: int = CROP_MAX_SIDE,
        margin: float = CROP_MARGIN,
    ) -> None:
        self.predictor = predictor
        self.min_side = min_side
        self.max_side = max_side
        self.margin = margin
        self.last_stats = SamStats()

    @classmethod
    def load(
        cls,
        variant: str = DEFAULT_SAM_VARIANT,
        device: str = "cpu",
        model_name: str = "think2seg-rs",
        allow_download: bool = False,
        **kwargs: Any,
    ) -> SamRefiner:
        """Load SAM 2.1 weights from the local cache (or a download when allowed).

        Args:
            variant: SAM 2.1 size.
            device: Torch device.
            model_name: Segmenter name, for the missing-weights message.
            allow_download: Fetch from the Hub if not cached.
            **kwargs: Crop options of the constructor.

        Raises:
            MissingWeightsError: The checkpoint is not available.
        """
        path = resolve(sam_weights(variant), model_name, allow_download=allow_download)
        return cls.from_model(build_sam2_model(variant, str(path), device), **kwargs)

    @classmethod
    def random_init(
        cls,
        variant: str = "tiny",
        device: str = "cpu",
        seed: int = 0,
        image_size: int = 1024,
        **kwargs: Any,
    ) -> SamRefiner:
        """The real SAM 2.1 architecture with random weights (tests, benchmarks).

        Args:
            variant: SAM 2.1 size.
            device: Torch device.
            seed: Torch seed for the initialisation.
            image_size: SAM input side (smaller is faster on CPU; see
                :func:`build_sam2_model`).
            **kwargs: Crop options of the constructor.
        """
        torch.manual_seed(seed)
        return cls.from_model(build_sam2_model(variant, None, device, image_size), **kwargs)

    @classmethod
    def from_model(cls, model: torch.nn.Module, **kwargs: Any) -> SamRefiner:
        """Wrap a built SAM 2 model in an image predictor."""
        from sam2.sam2_image_predictor import SAM2ImagePredictor

        predictor = SAM2ImagePredictor(model)
        side = model.image_size // 4
        # The predictor hard-codes the 1024-input feature sizes; keep them consistent
        # when a test builds a smaller input.
        predictor._bb_feat_sizes = [(side, side), (side // 2, side // 2), (side // 4, side // 4)]
        return cls(predictor, **kwargs)

    @property
    def device(self) -> torch.device:
        """Where the predictor runs."""
        return getattr(self.predictor, "device", torch.device("cpu"))

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def predict(self, image: np.ndarray, prompts: Sequence[ObjectPrompt]) -> list[ObjectMask]:
        """One mask per object.

        Args:
            image: (H, W, 3) uint8 RGB extent.
            prompts: Objects with box/points in extent pixels.

        Returns:
            One :class:`ObjectMask` per prompt, in prompt order.
        """
        height, width = image.shape[:2]
        plan = plan_windows(
            [object_extent(p) for p in prompts],
            height,
            width,
            min_side=self.min_side,
            max_side=self.max_side,
            margin=self.margin,
        )
        stats = SamStats(crops=len(plan), objects=len(prompts), windows=[w for w, _ in plan])
        out: dict[int, ObjectMask] = {}
        with torch.inference_mode(), autocast(self.device):  # bf16, as the reference ran SAM
            for window, members in plan:
                start = time.perf_counter()
                self.predictor.set_image(np.ascontiguousarray(image[window.slices]))
                self._sync()
                stats.encode_s += time.perf_counter() - start
                start = time.perf_counter()
                for k in members:
                    out[k] = self._predict_one(window, prompts[k])
                stats.decode_s += time.perf_counter() - start
        self.last_stats = stats
        log.debug("SAM: %d objects in %d crops", len(prompts), len(plan))
        return [out[k] for k in range(len(prompts))]

    def _predict_one(self, window: Window, prompt: ObjectPrompt) -> ObjectMask:
        box = None
        if prompt.box is not None:
            box = np.asarray(window.box_to_local(prompt.box), np.float32)
        coords = labels = None
        if prompt.points:
            coords = np.asarray([window.point_to_local(p) for p in prompt.points], np.float32)
            labels = np.ones(len(prompt.points), np.int32)
        masks, ious, _ = self.predictor.predict(
            point_coords=coords,
            point_labels=labels,
            box=box,
            multimask_output=False,
            return_logits=True,
        )
        logits = np.asarray(masks, np.float32).reshape(window.height, window.width)
        return ObjectMask(window=window, logits=logits, iou=float(np.ravel(ious)[0]))

    def close(self) -> None:
        """Drop the model (frees GPU memory once nothing else holds it)."""
        self.predictor = None
