"""The one interface every model implements: image tile + query → label/score maps."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np

from rs_reasoner.schemas import Mode, SegmentOptions


@dataclass(frozen=True)
class SegmentationQuery:
    """What the user asked for, after parsing.

    Attributes:
        text: The query as typed.
        mode: ``reasoning`` or ``open_vocabulary`` (``auto`` is resolved before this).
        classes: Class names for open-vocabulary mode, each a list of synonyms
            (``"building; roof"`` → ``["building", "roof"]``); empty for reasoning.
        options: The run's options (score threshold etc.).
    """

    text: str
    mode: Mode
    classes: tuple[tuple[str, ...], ...] = ()
    options: SegmentOptions = field(default_factory=SegmentOptions)


@dataclass
class TileResult:
    """A segmenter's answer for one image.

    Attributes:
        labels: (H, W) int32; 0 is background, k > 0 means ``class_names[k - 1]``.
        scores: (H, W) float32 in [0, 1], the confidence of the label at each pixel.
        class_names: Names of the labels, in label order.
        instances: Optional (H, W) int32 instance ids (0 = none) for instance-level output.
        text: Optional free text (the reasoning segmenter's reasoning).
        notes: Lines for the job log (e.g. the model's raw answer), not for the polygons.
    """

    labels: np.ndarray
    scores: np.ndarray
    class_names: list[str]
    instances: np.ndarray | None = None
    text: str | None = None
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.labels.shape != self.scores.shape or self.labels.ndim != 2:
            raise ValueError(
                f"labels {self.labels.shape} and scores {self.scores.shape} must be equal 2-D"
            )
        if self.instances is not None and self.instances.shape != self.labels.shape:
            raise ValueError("instances must have the shape of labels")


class Segmenter(ABC):
    """A model that segments an RGB image for a query.

    Shape of an implementation (as SAM 2's ``SAM2ImagePredictor``): the constructor takes
    built modules (what tests pass), and a classmethod loader (``from_pretrained`` /
    ``load``) resolves weights and builds them; the registry's
    :class:`~rs_reasoner.segmenters.spec.ModelSpec` names the loader and carries the
    static facts the pipeline needs before loading (e.g. ``whole_extent``: the model gets
    the whole extent instead of tiles). Models stay resident; the service reuses one
    instance across jobs.
    """

    @abstractmethod
    def segment(
        self, image: np.ndarray, valid: np.ndarray, query: SegmentationQuery
    ) -> TileResult:
        """Segment one image.

        Args:
            image: (H, W, 3) uint8 RGB.
            valid: (H, W) bool, False where the raster has NoData (ignore those pixels).
            query: The parsed query.

        Returns:
            Label and score maps of shape (H, W).
        """

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release GPU memory; called when the service unloads the model."""
