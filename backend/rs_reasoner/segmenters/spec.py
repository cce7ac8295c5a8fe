"""A model's registration: what it is called, what it does, how to load it, and the facts
the pipeline needs before loading it.

Nothing here imports a model: listing models, checking a request and planning a job read
only these fields, so they never import torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rs_reasoner.schemas import Mode
from rs_reasoner.segmenters.base import SegmentationQuery, Segmenter
from rs_reasoner.weights import WeightSpec


@dataclass(frozen=True)
class ModelSpec:
    """A registered segmenter.

    Attributes:
        name: Short unique name used in requests (``--model``).
        modes: Modes it serves.
        description: One line for ``rs-reasoner models list`` and the plugin.
        factory: The loader: ``"module:attr"`` (``attr`` may be dotted, e.g.
            ``"Class.from_pretrained"``) or a callable, returning a ready Segmenter;
            called with ``device=``.
        weights: Weights it needs (empty for weight-free segmenters).
        default_for: Modes for which it is the default model.
        priority: Higher wins when several models claim the same default mode.
        tags: Free labels (``"trained"`` for models trained here).
        classes: The fixed classes of a closed-set model (trained here), else None.
        check_query: Optional cheap check of a parsed query, run when a job is submitted
            (raises a user error, e.g. for a class the model does not know).
        whole_extent: The model must see the whole extent at once (e.g. a reasoning model
            deciding which objects match); the pipeline then passes the full extent image
            instead of tiles and caps its size.
        input_size: Side in pixels of the square the network runs at (larger images are
            resized or windowed inside the segmenter); None when it takes any size or the
            size is only known from its checkpoint.
        input_bands: Image channels the segmenter reads (3: RGB).
        raw_bands: Raster bands (1-based, in order) the segmenter reads as raw values, for a
            model trained on normalised bands (it scales them itself); the pipeline then
            passes (H, W, bands) float32 images with NaN where a band has no data. None:
            8-bit RGB.
        check_raster: Optional check of the raster to segment (an open rasterio dataset),
            run before any pixel is read: returns notes for the job log, raises a user
            error for a raster the model cannot read (e.g. without its bands).
        default_devices: Device kinds (``"cuda"``) on which it may be a default; empty:
            any. A model too slow elsewhere is then the default only there, and only
            when its weights are present.
        source: Where its files are, when that can change under the same name (a trained
            model's checkpoint): a loaded model from another source is not reused.
    """

    name: str
    modes: tuple[Mode, ...]
    description: str
    factory: str | Callable[..., Segmenter]
    weights: tuple[WeightSpec, ...] = ()
    default_for: tuple[Mode, ...] = ()
    priority: int = 0
    tags: tuple[str, ...] = field(default_factory=tuple)
    classes: tuple[str, ...] | None = None
    check_query: Callable[[SegmentationQuery], None] | None = None
    whole_extent: bool = False
    input_size: int | None = None
    input_bands: int = 3
    raw_bands: tuple[int, ...] | None = None
    check_raster: Callable[[Any], list[str]] | None = None
    default_devices: tuple[str, ...] = ()
    source: str | None = None
