"""SAM 3's interactive head as the reasoning path's mask stage (instead of SAM 2.1).

SAM 3 keeps SAM 2's promptable-visual-segmentation task: a prompt encoder and mask
decoder (transformers' ``Sam3TrackerModel``) that take boxes and points, on the vision
backbone it shares with its concept detector. ``facebook/sam3`` publishes both in one
``Sam3VideoModel`` checkpoint; ``Sam3TrackerModel.from_pretrained`` takes the backbone,
the tracker's neck, prompt encoder and mask decoder from it and leaves the detector and
the video memory out.

:class:`Sam3Predictor` answers the ``set_image`` / ``predict`` calls that
:class:`~rs_reasoner.segmenters.reasoning.sam.SamRefiner` makes of SAM 2's image
predictor, with the same coordinates (crop pixels) and the same outputs (mask logits at
crop resolution, predicted IoU), so crop planning, zoom-in and composition stay one
implementation. Crops are planned at SAM 3's own input side (1008 px for
``facebook/sam3``) so small objects keep native resolution.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from rs_reasoner.segmenters.hub_weights import SAM3_WEIGHTS
from rs_reasoner.segmenters.reasoning.sam import SamRefiner
from rs_reasoner.weights import resolve


class Sam3Predictor:
    """SAM 2's image-predictor calls on SAM 3's interactive head.

    Args:
        model: A ``transformers.Sam3TrackerModel``; moved to ``device``, eval mode.
        processor: Its ``Sam3TrackerProcessor`` (image resize and prompt scaling).
        device: Torch device.
    """

    def __init__(self, model: Any, processor: Any, device: str = "cpu") -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.processor = processor
        self._embeddings: list[torch.Tensor] | None = None
        self._size: tuple[int, int] | None = None

    @property
    def input_size(self) -> int:
        """Side of the square SAM 3 resizes every crop to."""
        return int(self.processor.image_processor.size["height"])

    def set_image(self, image: np.ndarray) -> None:
        """Encode one (H, W, 3) uint8 RGB crop (once; every prompt on it reuses it)."""
        pixels = self.processor.image_processor(images=[image], return_tensors="pt")
        values = pixels["pixel_values"].to(self.device)
        self._embeddings = self.model.get_image_embeddings(pixel_values=values)
        self._size = (int(image.shape[0]), int(image.shape[1]))

    def predict(
        self,
        point_coords: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        multimask_output: bool = False,
        return_logits: bool = True,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One object's mask from its box and/or points, in crop pixels.

        Args:
            point_coords: (N, 2) points ``(x, y)``.
            point_labels: (N,) labels, 1 positive, 0 negative.
            box: (4,) ``x1, y1, x2, y2``.
            multimask_output: Three candidate masks instead of one.
            return_logits: Mask logits (else booleans at logit 0).

        Returns:
            ``(masks (M, H, W), predicted IoUs (M,), low-resolution logits (M, h, w))``, as
            SAM 2's image predictor returns them.
        """
        if self._embeddings is None or self._size is None:
            raise RuntimeError("set_image must be called before predict")
        if point_coords is None and box is None:
            raise ValueError("a prompt needs a box or points")
        prompts: dict[str, Any] = {}
        if point_coords is not None:
            labels = np.ones(len(point_coords)) if point_labels is None else point_labels
            # [image, object, point, xy]: one object per call.
            prompts["input_points"] = [[np.asarray(point_coords, float).tolist()]]
            prompts["input_labels"] = [[np.asarray(labels, int).tolist()]]
        if box is not None:
            prompts["input_boxes"] = [[np.asarray(box, float).reshape(4).tolist()]]
        # The processor scales crop pixels to the model's input square.
        inputs = self.processor(
            original_sizes=[list(self._size)], return_tensors="pt", **prompts
        )
        tensors = {k: v.to(self.device) for k, v in inputs.items() if k.startswith("input_")}
        out = self.model(
            image_embeddings=self._embeddings, multimask_output=multimask_output, **tensors
        )
        low_res = out.pred_masks[0, 0].float()  # (M, h, w)
        # Resized straight to the crop (the input square is unpadded), as SAM 2 does.
        masks = self.processor.post_process_masks(
            low_res[None, None], [list(self._size)], binarize=not return_logits
        )[0][0]
        ious = out.iou_scores[0, 0].float()
        return (
            masks.cpu().numpy().astype(np.float32 if return_logits else bool),
            ious.cpu().numpy(),
            low_res.cpu().numpy(),
        )

    def close(self) -> None:
        """Drop the model and the current image's features."""
        self.model = None
        self._embeddings = None


def load_sam3_parts(path: str | Path) -> tuple[Any, Any]:
    """``(Sam3TrackerModel, Sam3TrackerProcessor)`` from a folder in ``facebook/sam3``'s
    layout (a Hub snapshot or a clone of the repository)."""
    from transformers import Sam3TrackerModel, Sam3TrackerProcessor

    model = Sam3TrackerModel.from_pretrained(str(path), local_files_only=True)
    processor = Sam3TrackerProcessor.from_pretrained(str(path), local_files_only=True)
    return model, processor


def sam3_refiner(path: str | Path, device: str = "cpu") -> SamRefiner:
    """The mask stage on SAM 3 loaded from ``path``, crops at SAM 3's input side."""
    predictor = Sam3Predictor(*load_sam3_parts(path), device=device)
    side = predictor.input_size
    return SamRefiner(predictor, min_side=side, max_side=side)


def sam3_weights_path(model_name: str, allow_download: bool = False) -> Path:
    """Where ``facebook/sam3`` is on this machine.

    Raises:
        MissingWeightsError: It is not (or only partly) there; says how to get it.
    """
    return resolve(SAM3_WEIGHTS, model_name, allow_download=allow_download)
