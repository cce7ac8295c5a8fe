"""A model trained here (``rs-reasoner train``) as a :class:`Segmenter`.

**Model.** :meth:`TrainedSegmenter.load` rebuilds the checkpoint (``best.pt``) with
:func:`rs_reasoner.models.checkpoint.load_trained_model` (imported on first use, with
torch): any architecture of :mod:`rs_reasoner.models`, mapping images (B, 3, H, W) in
[0, 1] to logits over its K classes; the constructor takes an already built model. It runs
under ``torch.inference_mode`` on the pipeline's device (bf16 autocast on CUDA).

**Bands.** A model trained on normalised bands (its checkpoint's data summary has
``band_stats``) reads the raster's raw values of those bands (the pipeline passes them,
:attr:`ModelSpec.raw_bands`) and scales them with the training raster's statistics, NaN
set to 0 as in training; a raster without those bands is refused before reading. A
classical learner (``classical.json``) is served by :class:`ClassicalSegmenter` the
same way.

**Windows.** A tile larger than ``window`` pixels (default 512, at least the training tile
size; for RS-ZeroSeg its fixed input size) is cut into overlapping windows of that size (the
last flush with the edge), run in batches; softmax probabilities are blended with weights
that fall off towards window borders, where context is missing. Windows larger than the
training tiles give the convolutions more context (on the NEON sample, a U-Net trained on
64-px tiles agreed better with the parcels in 512-px windows than in 64-px ones). Only the
box around the tile's valid pixels is run (the pipeline pads tiles at the raster's edge with
NoData, which would skew normalisation layers); NoData pixels inside it are fed as the
reader gives them (as in training); all NoData pixels get label 0, score 0.

**Classes.** The query names classes of the model (any synonym, case-, space- and
plural-insensitive: ``"buildings; roof"`` finds ``building``); a class it does not know is
an :class:`~rs_reasoner.errors.InvalidRequestError` listing the classes it knows. A query
class whose synonyms name several model classes gets their summed probability. Only the
classes asked for come back, so a background class ("other", "background") gives polygons
only when the query names it.

**Decision.** Candidates per pixel are the query classes (their probability) and each
model class not asked for (its own probability); the most probable candidate wins. If it
is a query class, that is the pixel's label and its probability the score; otherwise the
pixel is background (label 0, score = that class's probability). With one model class per
query class this is the model's own argmax, whatever else the query names. The request's
``score_threshold`` is applied by the pipeline.

**Land cover.** With ``fuse_land_cover``, the pipeline passes each tile's land-cover
likelihoods (:mod:`rs_reasoner.landcover.fusion`); the probabilities are multiplied by
them and renormalised before the decision.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rs_reasoner.device import autocast
from rs_reasoner.errors import CheckpointError, InvalidRequestError
from rs_reasoner.raster.band_stats import BandStats
from rs_reasoner.schemas import Mode
from rs_reasoner.segmenters.base import SegmentationQuery, Segmenter, TileResult
from rs_reasoner.segmenters.sliding_windows import blend_weight, window_starts
from rs_reasoner.segmenters.spec import ModelSpec
from rs_reasoner.trained_models import TRAINED_TAG, TrainedModel

_DEFAULT_WINDOW = 512
#: Default batch: windows adding up to about this many pixels.
_PIXELS_PER_BATCH = 1 << 20


def _norm(name: str) -> str:
    return " ".join(name.lower().replace("_", " ").split())


def _forms(name: str) -> set[str]:
    """A name and its plural/singular variants ("buildings" ~ "building", "bus" ~ "buses")."""
    n = _norm(name)
    forms = {n, n + "s", n + "es"}
    if n.endswith("es"):
        forms.add(n[:-2])
    if n.endswith("s"):
        forms.add(n[:-1])
    return forms


def match_classes(
    query_classes: Sequence[Sequence[str]],
    model_classes: Sequence[str],
    model_name: str = "this model",
) -> list[tuple[int, ...]]:
    """Model class indices named by each query class.

    Args:
        query_classes: The query's classes, each a list of synonyms.
        model_classes: The model's classes, in channel order.
        model_name: For error messages.

    Returns:
        Per query class, the indices of the model classes it names (at least one).

    Raises:
        InvalidRequestError: No class, a class the model does not know, or two query
            classes naming the same model class.
    """
    if not query_classes:
        raise InvalidRequestError(
            f"Model '{model_name}' needs class names.",
            f"Ask for some of its classes: {', '.join(model_classes)}.",
        )
    exact = {_norm(c): i for i, c in enumerate(model_classes)}
    groups: list[tuple[int, ...]] = []
    unknown: list[str] = []
    owner: dict[int, str] = {}
    for synonyms in query_classes:
        found: list[int] = []
        for name in synonyms:
            idx = exact.get(_norm(name))
            hits = [idx] if idx is not None else [
                i for i, c in enumerate(model_classes) if _norm(c) in _forms(name)
            ]
            found.extend(i for i in hits if i not in found)
        if not found:
            unknown.append(synonyms[0])
            continue
        for i in found:
            if i in owner:
                raise InvalidRequestError(
                    f"'{owner[i]}' and '{synonyms[0]}' both name the class "
                    f"'{model_classes[i]}' of model '{model_name}'.",
                    "Name each class once (use ';' between synonyms of one class).",
                )
            owner[i] = synonyms[0]
        groups.append(tuple(found))
    if unknown:
        raise InvalidRequestError(
            f"Model '{model_name}' does not know {', '.join(map(repr, unknown))}.",
            f"It was trained on: {', '.join(model_classes)}. Ask for some of these "
            "(commas between classes).",
        )
    return groups


def check_query_classes(
    query: SegmentationQuery, *, model_name: str, model_classes: Sequence[str]
) -> None:
    """The registry's submit-time check for trained models (see :func:`match_classes`)."""
    match_classes(query.classes, model_classes, model_name)


def decide(
    probs: np.ndarray, valid: np.ndarray, groups: Sequence[Sequence[int]], names: list[str]
) -> TileResult:
    """Labels from class probabilities (the rule in the module docstring).

    Args:
        probs: (K, H, W) probabilities over the model's classes.
        valid: (H, W) bool.
        groups: Model class indices of each query class.
        names: Label of each query class.

    Returns:
        Labels 0..len(groups) (0 = background) and scores.
    """
    asked = {i for g in groups for i in g}
    rest = [k for k in range(probs.shape[0]) if k not in asked]
    candidates = [probs[list(g)].sum(axis=0) for g in groups] + [probs[k] for k in rest]
    stack = np.stack(candidates)
    best = stack.argmax(axis=0)
    scores = np.take_along_axis(stack, best[None], axis=0)[0]
    labels = np.where(best < len(groups), best + 1, 0)
    return TileResult(
        labels=np.where(valid, labels, 0).astype(np.int32),
        scores=np.where(valid, scores, 0.0).astype(np.float32),
        class_names=names,
    )


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


class TrainedSegmenter(Segmenter):
    """Serves a trained model (see the module docstring).

    Args:
        model: The built network (eval mode): images (B, 3, H, W) in [0, 1] → logits
            (B, K, H, W).
        class_names: Its K classes, in channel order.
        device: Torch device (``"cpu"``, ``"cuda"``, ``"cuda:1"``); the model is moved there.
        name: The model's name (for messages).
        window: Largest square run at once (pixels); larger tiles are windowed. Default:
            the model's ``native_window`` if it has one (RS-ZeroSeg), else 512 or
            ``trained_tile`` if larger.
        overlap: Fraction of a window shared with its neighbour (0 <= overlap < 1).
        batch_size: Windows per forward pass (default: about a million pixels' worth).
        trained_tile: Side of the tiles it was trained on, when known.
        stats: Band normalisation of a model trained on raw bands (images are then
            (H, W, bands) raw float32), or None (8-bit RGB).
    """

    def __init__(
        self,
        model: Any,
        class_names: Sequence[str],
        device: str = "cpu",
        name: str = "trained model",
        window: int | None = None,
        overlap: float = 0.25,
        batch_size: int | None = None,
        trained_tile: int | None = None,
        stats: BandStats | None = None,
    ) -> None:
        import torch

        self.name = name
        self.stats = stats
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.class_names: list[str] = list(class_names)
        #: The file it was loaded from (:meth:`load`), watched by :meth:`is_stale`.
        self.checkpoint: Path | None = None
        self._stamp: tuple[int, int] | None = None
        # A model that windows its input itself (RS-ZeroSeg) is served at that window:
        # larger windows here would be cut again inside it, at twice the cost.
        native = getattr(model, "native_window", None)
        self.window = int(window or native or max(int(trained_tile or 0), _DEFAULT_WINDOW))
        self.stride = max(1, round(self.window * (1 - overlap)))
        self.batch_size = max(1, int(batch_size or _PIXELS_PER_BATCH // self.window**2))

    @classmethod
    def load(
        cls,
        checkpoint: str | os.PathLike[str],
        device: str = "cpu",
        name: str = "trained model",
        **settings: Any,
    ) -> TrainedSegmenter:
        """Load a training checkpoint (``best.pt``): the registry's loader.

        Args:
            checkpoint: The file.
            device: Torch device.
            name: The model's name (for messages).
            **settings: ``window``, ``overlap``, ``batch_size`` of the constructor.

        Raises:
            CheckpointError: Unreadable file or a model that cannot be rebuilt.
            MissingWeightsError: Pretrained backbone files of the model are not here.
        """
        import torch

        from rs_reasoner.models.checkpoint import load_trained_model

        path = Path(checkpoint)
        stamp = _stamp(path)  # before reading: a replacement during the load shows as stale
        model, classes, meta = load_trained_model(path, map_location=torch.device(device))
        data = meta.get("data") or {}
        trained_tile = data.get("tile_size")
        stats = BandStats.from_dict(data["band_stats"]) if data.get("band_stats") else None
        self = cls(model, classes, device, name, trained_tile=trained_tile, stats=stats,
                   **settings)  # fmt: skip
        self.checkpoint, self._stamp = path, stamp
        return self

    def is_stale(self) -> bool:
        """True when ``best.pt`` changed on disk since it was loaded (training resumed)."""
        return self.checkpoint is not None and _stamp(self.checkpoint) != self._stamp

    def class_probabilities(self, image: np.ndarray) -> np.ndarray:
        """Softmax probabilities over the model's classes.

        Args:
            image: (H, W, 3) uint8 RGB, or (H, W, bands) raw float32 for a model trained
                on normalised bands.

        Returns:
            (K, H, W) float32.
        """
        import torch

        if self.model is None:
            raise RuntimeError(f"model {self.name} was closed")
        h, w = image.shape[:2]
        if self.stats is not None:
            norm = self.stats.normalise(np.moveaxis(image, -1, 0))
            x = torch.from_numpy(np.nan_to_num(norm, nan=0.0)).to(self.device)
        else:
            x = torch.from_numpy(np.ascontiguousarray(image)).to(self.device)
            x = x.permute(2, 0, 1).float().div_(255.0)
        wh, ww = min(self.window, h), min(self.window, w)
        boxes = [
            (r, c)
            for r in window_starts(h, wh, self.stride)
            for c in window_starts(w, ww, self.stride)
        ]
        k = len(self.class_names)
        total = torch.zeros((k, h, w), dtype=torch.float32, device=self.device)
        norm = torch.zeros((h, w), dtype=torch.float32, device=self.device)
        weight = blend_weight(wh, ww, self.device) if len(boxes) > 1 else None
        with torch.inference_mode(), autocast(self.device):
            for i in range(0, len(boxes), self.batch_size):
                chunk = boxes[i : i + self.batch_size]
                batch = torch.stack([x[:, r : r + wh, c : c + ww] for r, c in chunk])
                probs = self.model(batch).float().softmax(dim=1)
                for (r, c), p in zip(chunk, probs, strict=True):
                    if weight is None:
                        total[:, r : r + wh, c : c + ww] += p
                        norm[r : r + wh, c : c + ww] += 1.0
                    else:
                        total[:, r : r + wh, c : c + ww] += p * weight
                        norm[r : r + wh, c : c + ww] += weight
        return (total / norm.clamp(min=1e-6)).cpu().numpy()

    def segment(
        self,
        image: np.ndarray,
        valid: np.ndarray,
        query: SegmentationQuery,
        land_cover: np.ndarray | None = None,
    ) -> TileResult:
        """Label the pixels of the query's classes (see the module docstring);
        ``land_cover``: (K, H, W) land-cover likelihoods the probabilities are fused with
        (:mod:`rs_reasoner.landcover.fusion`)."""
        groups = match_classes(query.classes, self.class_names, self.name)
        probs = np.zeros((len(self.class_names), *valid.shape), dtype=np.float32)
        rows, cols = np.flatnonzero(valid.any(axis=1)), np.flatnonzero(valid.any(axis=0))
        if len(rows):
            # Only the box around valid pixels: the pipeline pads tiles at the raster's edge
            # with NoData, and a large blank margin skews the model's normalisation layers.
            box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
            probs[:, box[0], box[1]] = self.class_probabilities(image[box])
        if land_cover is not None:
            from rs_reasoner.models.product_fusion import apply_likelihood

            probs = apply_likelihood(probs, land_cover)
        return decide(probs, valid, groups, [syn[0] for syn in query.classes])

    def close(self) -> None:
        """Drop the model and free GPU memory."""
        self.model = None
        if self.device.type == "cuda":
            import torch

            torch.cuda.empty_cache()


class ClassicalSegmenter(Segmenter):
    """Serves a classical learner (``classical.json``): the pipeline reads the model's
    bands as raw values; the model computes its features and class probabilities
    (:class:`~rs_reasoner.models.classical.ClassicalModel`) on the CPU, without torch;
    classes are matched and decided as for the networks.

    Args:
        model: The loaded :class:`~rs_reasoner.models.classical.ClassicalModel`.
        name: The model's name (for messages).
    """

    def __init__(self, model: Any, name: str = "trained model") -> None:
        self.model = model
        self.name = name
        self.class_names: list[str] = list(model.class_names)
        self.checkpoint: Path | None = None
        self._stamp: tuple[int, int] | None = None

    @classmethod
    def load(
        cls, checkpoint: str | os.PathLike[str], device: str = "cpu", name: str = "trained model"
    ) -> ClassicalSegmenter:
        """Load ``classical.json``: the registry's loader (``device`` is ignored: CPU).

        Raises:
            CheckpointError: Not a readable classical model file.
        """
        from rs_reasoner.models.classical import ClassicalModel

        path = Path(checkpoint)
        stamp = _stamp(path)
        try:
            model = ClassicalModel.load(path)
        except ValueError as exc:
            raise CheckpointError(
                f"Model '{name}' cannot be loaded: {exc}",
                "Train it again (rs-reasoner train) to rewrite its files.",
            ) from None
        self = cls(model, name)
        self.checkpoint, self._stamp = path, stamp
        return self

    def is_stale(self) -> bool:
        """True when the model file changed on disk since it was loaded (trained again)."""
        return self.checkpoint is not None and _stamp(self.checkpoint) != self._stamp

    def segment(
        self,
        image: np.ndarray,
        valid: np.ndarray,
        query: SegmentationQuery,
        land_cover: np.ndarray | None = None,
    ) -> TileResult:
        """Label the pixels of the query's classes.

        Args:
            image: (H, W, bands) raw float32 values of the model's bands (NaN: no data).
            valid: (H, W) bool.
            query: The classes asked for.
            land_cover: (K, H, W) land-cover likelihoods to fuse the probabilities with.
        """
        groups = match_classes(query.classes, self.class_names, self.name)
        if self.model is None:
            raise RuntimeError(f"model {self.name} was closed")
        raw = np.moveaxis(np.asarray(image, dtype=np.float32), -1, 0)
        probs = self.model.predict_proba(raw, valid)
        if land_cover is not None:
            from rs_reasoner.models.product_fusion import apply_likelihood

            probs = apply_likelihood(probs, land_cover)
        return decide(probs, valid, groups, [syn[0] for syn in query.classes])

    def close(self) -> None:
        """Drop the model."""
        self.model = None


def trained_model_spec(model: TrainedModel) -> ModelSpec:
    """The registry's spec of a model in the models folder.

    Its loader is :meth:`TrainedSegmenter.load` on the model's ``best.pt`` (or
    :meth:`ClassicalSegmenter.load` on its ``classical.json``); ``check_query`` refuses
    classes the model does not know and ``check_raster`` a raster without the bands it
    was trained on (no torch needed). A fine-tuned prompter (``kind: reasoner-adapter``)
    is served by its own spec.
    """
    from rs_reasoner.segmenters.reasoning.adapter import ADAPTER_KIND, adapter_model_spec

    if model.info.get("kind") == ADAPTER_KIND:
        return adapter_model_spec(model)
    loader: Any = TrainedSegmenter.load
    if model.info.get("architecture") == "classical":
        loader = ClassicalSegmenter.load
    stats = model.info.get("band_stats")
    bands = BandStats.from_dict(stats) if stats else None
    return ModelSpec(
        name=model.name,
        modes=(Mode.open_vocabulary,),
        description=model.description,
        factory=functools.partial(loader, checkpoint=str(model.checkpoint), name=model.name),
        tags=(TRAINED_TAG,),
        classes=model.classes,
        check_query=functools.partial(
            check_query_classes, model_name=model.name, model_classes=model.classes
        ),
        input_bands=bands.count if bands else 3,
        raw_bands=bands.bands if bands else None,
        check_raster=functools.partial(bands.check_raster, model_name=f"Model '{model.name}'")
        if bands else None,
        source=str(model.checkpoint),
    )  # fmt: skip
