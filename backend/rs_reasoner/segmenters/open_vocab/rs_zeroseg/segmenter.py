"""RS-ZeroSeg as a :class:`~rs_reasoner.segmenters.base.Segmenter` (a network and its
training classes).

**Inference.** The tile is normalised (NoData pixels set to the mean colour), padded to
at least one window, and cut into overlapping windows of the model's input size
(``config.image_size``), run in batches under ``torch.inference_mode`` (bf16, or fp16
where bf16 is unsupported, autocast on CUDA only). Per-class sigmoid probabilities of
overlapping windows are blended with weights that fall off towards window borders
(where context is missing), then cropped back to the tile.

**Labels.** Each class is an independent sigmoid, so a pixel can belong to none. A pixel
gets the most probable class if that probability reaches the threshold (the
constructor's ``threshold``, else the query's ``score_threshold``, default 0.5), and
background (0) otherwise. Its score is the chosen class's probability, or ``1 - max``
for background; NoData pixels get label 0 and score 0.

**Classes.** Query classes are matched to the checkpoint's training classes by any
synonym (case- and space-insensitive) and then use the stored training text embedding;
other classes are embedded with the CLIP text tower (prompt-ensembled with the
checkpoint's templates, cached), since the model is open-vocabulary.

**Fusion.** :meth:`RSZeroSegSegmenter.class_probabilities` returns the raw (C, H, W)
sigmoids; :meth:`RSZeroSegSegmenter.predict_probabilities` returns a background-first
(1 + C, H, W) distribution (``p_bg = 1 - max_k p_k``, then normalised, so its argmax
equals the 0.5-threshold labelling) in the same layout as the training-free CLIP
segmenter's, for class-wise fusion.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rs_reasoner.device import autocast
from rs_reasoner.errors import InvalidRequestError
from rs_reasoner.segmenters.base import SegmentationQuery, Segmenter, TileResult
from rs_reasoner.segmenters.open_vocab.decision import require_classes
from rs_reasoner.segmenters.open_vocab.prompts import TextEmbeddingCache
from rs_reasoner.segmenters.open_vocab.rs_zeroseg.checkpoint import (
    LoadedCheckpoint,
    load_checkpoint,
)
from rs_reasoner.segmenters.open_vocab.rs_zeroseg.model import MODEL_NAME, RSZeroSeg
from rs_reasoner.segmenters.sliding_windows import blend_weight, window_starts


def _norm_name(name: str) -> str:
    return " ".join(name.lower().split())


class RSZeroSegSegmenter(Segmenter):
    """Open-vocabulary segmentation with an RS-ZeroSeg network and its training classes.

    Not registered: no shipped command writes the checkpoints it reads (models trained
    with ``rs-reasoner train`` are served as trained models). It is a library segmenter,
    e.g. a source of :class:`~..fused_segmenter.FusedOpenVocabSegmenter`.

    Args:
        loaded: The network, its training classes and their text embeddings (built in
            memory, or from :func:`~.checkpoint.load_checkpoint`).
        device: Torch device (``"cuda"``, ``"cpu"``); the network is moved there.
        batch_size: Windows per forward pass.
        overlap: Fraction of the window shared by neighbouring windows (0 ≤ overlap < 1).
        threshold: Least class probability for a label; ``None`` uses the query's
            ``score_threshold``.

    :meth:`from_pretrained` loads a checkpoint file.
    """

    def __init__(
        self,
        loaded: LoadedCheckpoint,
        device: str = "cpu",
        batch_size: int = 8,
        overlap: float = 0.25,
        threshold: float | None = None,
    ) -> None:
        if batch_size < 1 or not 0 <= overlap < 1:
            raise ValueError("need batch_size >= 1 and 0 <= overlap < 1")
        if threshold is not None and not 0 <= threshold <= 1:
            raise ValueError("threshold must be in [0, 1]")
        self.device = torch.device(device)
        self.model: RSZeroSeg | None = loaded.model.to(self.device).eval()
        self.window = self.model.config.image_size
        self.stride = max(1, self.window - int(round(self.window * overlap)))
        self.batch_size = batch_size
        self.threshold = threshold
        self.templates = loaded.templates or None
        self.class_names = list(loaded.class_names)
        self._known: dict[str, int] = {}
        for i, synonyms in enumerate(loaded.class_names):
            for name in synonyms:
                self._known.setdefault(_norm_name(name), i)
        self._known_embeddings = loaded.text_embeddings.to(self.device).float()
        self._cache = TextEmbeddingCache()  # classes not trained on, encoded on demand
        self._weight = blend_weight(self.window, self.window, self.device)

    @classmethod
    def from_pretrained(
        cls,
        checkpoint: str | Path,
        device: str = "cpu",
        allow_download: bool = False,
        **settings: Any,
    ) -> RSZeroSegSegmenter:
        """Load an RS-ZeroSeg checkpoint (:func:`~.checkpoint.save_checkpoint`'s format).

        Args:
            checkpoint: The file.
            device: Torch device.
            allow_download: Let missing pretrained backbone weights be downloaded.
            **settings: ``batch_size``, ``overlap``, ``threshold`` of the constructor.

        Raises:
            CheckpointError: The checkpoint is missing, corrupt or incompatible.
            MissingWeightsError: Pretrained backbone weights are missing.
        """
        loaded = load_checkpoint(checkpoint, device=device, allow_download=allow_download)
        return cls(loaded, device, **settings)

    # ------------------------------------------------------------------ text

    def text_embeddings(self, classes: Sequence[Sequence[str]]) -> torch.Tensor:
        """(C, D) embeddings: stored ones for training classes, encoded (cached) otherwise."""
        model = self._require_model()
        rows: list[torch.Tensor | None] = []
        new: list[tuple[str, ...]] = []
        for synonyms in classes:
            names = tuple(dict.fromkeys(_norm_name(s) for s in synonyms if s.strip()))
            if not names:
                raise InvalidRequestError("A class has no name.", "Give every class a name.")
            known = next((self._known[n] for n in names if n in self._known), None)
            rows.append(None if known is None else self._known_embeddings[known])
            if known is None:
                new.append(names)
        if new:

            def encode(keys: list[tuple[str, ...]]) -> torch.Tensor:
                with autocast(self.device):
                    return model.encode_classes(keys, self.templates).float()

            encoded = iter(self._cache.embed(MODEL_NAME, new, encode))
            rows = [next(encoded) if row is None else row for row in rows]
        return torch.stack(rows)

    # ------------------------------------------------------------------ inference

    def _require_model(self) -> RSZeroSeg:
        if self.model is None:
            raise RuntimeError("the segmenter was closed")
        return self.model

    def class_probabilities(
        self, image: np.ndarray, valid: np.ndarray, classes: Sequence[Sequence[str]]
    ) -> np.ndarray:
        """Independent per-class probabilities (sigmoid of the mask logits).

        Args:
            image: (H, W, 3) uint8 RGB.
            valid: (H, W) bool; invalid pixels get probability 0.
            classes: Classes, each a sequence of synonyms.

        Returns:
            (len(classes), H, W) float32 in [0, 1].
        """
        model = self._require_model()
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"need an (H, W, 3) uint8 image, got {image.shape} {image.dtype}")
        if valid.shape != image.shape[:2]:
            raise ValueError(f"valid {valid.shape} does not match image {image.shape[:2]}")
        if not classes:
            raise InvalidRequestError("No classes to segment.", "Give at least one class name.")
        text = self.text_embeddings(classes)
        h, w = valid.shape
        win = self.window
        with torch.inference_mode():
            # torch.tensor copies: inputs may be read-only views (e.g. of PIL images).
            rgb = torch.tensor(image, device=self.device)
            rgb = rgb.permute(2, 0, 1).float().div_(255).unsqueeze(0)
            mask = torch.tensor(valid, dtype=torch.bool, device=self.device)
            # NoData → mean colour (0 after normalisation) so it does not read as "dark".
            norm = model.normalize(rgb)[0] * mask
            hp, wp = max(h, win), max(w, win)
            norm = torch.nn.functional.pad(norm, (0, wp - w, 0, hp - h))
            spots = [
                (y, x)
                for y in window_starts(hp, win, self.stride)
                for x in window_starts(wp, win, self.stride)
            ]
            acc = torch.zeros(len(classes), hp, wp, device=self.device)
            total = torch.zeros(1, hp, wp, device=self.device)
            for i in range(0, len(spots), self.batch_size):
                batch = spots[i : i + self.batch_size]
                crops = torch.stack([norm[:, y : y + win, x : x + win] for y, x in batch])
                with autocast(self.device):
                    logits = model(crops, text, with_alignment=False)["logits"]
                probs = torch.sigmoid(logits.float())
                for (y, x), p in zip(batch, probs, strict=True):
                    acc[:, y : y + win, x : x + win] += p * self._weight
                    total[:, y : y + win, x : x + win] += self._weight
            probs = (acc / total)[:, :h, :w] * mask
            return probs.clamp_(0, 1).cpu().numpy().astype(np.float32)

    def predict_probabilities(
        self, image: np.ndarray, valid: np.ndarray, classes: Sequence[Sequence[str]]
    ) -> np.ndarray:
        """Background-first distribution (1 + C, H, W) for fusion (see the module doc)."""
        probs = self.class_probabilities(image, valid, classes)
        background = 1.0 - probs.max(axis=0, keepdims=True)
        stacked = np.concatenate([background, probs])
        return (stacked / np.maximum(stacked.sum(axis=0, keepdims=True), 1e-6)).astype(np.float32)

    def segment(self, image: np.ndarray, valid: np.ndarray, query: SegmentationQuery) -> TileResult:
        """Label each pixel with its most probable class above the threshold, else 0."""
        require_classes(query)
        probs = self.class_probabilities(image, valid, query.classes)
        best = probs.argmax(axis=0)
        top = probs.max(axis=0)
        threshold = self.threshold if self.threshold is not None else query.options.score_threshold
        labels = np.where(valid & (top >= threshold), best + 1, 0).astype(np.int32)
        scores = np.where(labels > 0, top, 1.0 - top)
        return TileResult(
            labels=labels,
            scores=np.where(valid, scores, 0.0).astype(np.float32),
            class_names=[syn[0] for syn in query.classes],
        )

    def close(self) -> None:
        """Drop the model and cached embeddings and release GPU memory."""
        self.model = None
        self._cache.clear()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
