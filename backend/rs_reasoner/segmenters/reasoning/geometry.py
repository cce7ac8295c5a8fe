"""Coordinates between the 840x840 model image, the extent's pixels and SAM crop windows.

All coordinates are continuous pixel coordinates ``(x, y)``: pixel ``(row r, col c)``
covers ``[c, c+1) x [r, r+1)``, its centre is ``(c + 0.5, r + 0.5)``. This is the
convention of PIL's resize (the overview) and of SAM 2's prompt transform (it scales
coordinates by ``1024 / width``), so a box in model space maps to the extent by a plain
scale ``W / 840``, ``H / 840`` with no half-pixel offset, and back, exactly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from rs_reasoner.segmenters.reasoning.parser import Box, ObjectPrompt, Point
from rs_reasoner.segmenters.reasoning.template import MODEL_SIZE

#: Default crop geometry for SAM: at least this much context (SAM's own input side, so
#: small objects are seen at native resolution), grouping objects while the group's
#: boxes fit in ``max_side``.
CROP_MIN_SIDE = 1024
CROP_MAX_SIDE = 1024
#: Context added around a box on each side, as a fraction of its larger side...
CROP_MARGIN = 0.2
#: ...and at least this many pixels.
CROP_MIN_MARGIN_PX = 16


@dataclass(frozen=True)
class ModelFrame:
    """The map between the square model image and an extent of ``width`` x ``height``.

    Attributes:
        width: Extent width in pixels.
        height: Extent height in pixels.
        size: Side of the model image.
    """

    width: int
    height: int
    size: int = MODEL_SIZE

    @property
    def scale(self) -> tuple[float, float]:
        """Extent pixels per model pixel along x and y."""
        return self.width / self.size, self.height / self.size

    def point_to_pixels(self, point: Point) -> Point:
        """A model-space point in extent pixels."""
        sx, sy = self.scale
        return (point[0] * sx, point[1] * sy)

    def point_to_model(self, point: Point) -> Point:
        """An extent-pixel point in model space."""
        sx, sy = self.scale
        return (point[0] / sx, point[1] / sy)

    def box_to_pixels(self, box: Box) -> Box:
        """A model-space box ``(x1, y1, x2, y2)`` in extent pixels."""
        x1, y1 = self.point_to_pixels((box[0], box[1]))
        x2, y2 = self.point_to_pixels((box[2], box[3]))
        return (x1, y1, x2, y2)

    def box_to_model(self, box: Box) -> Box:
        """An extent-pixel box in model space."""
        x1, y1 = self.point_to_model((box[0], box[1]))
        x2, y2 = self.point_to_model((box[2], box[3]))
        return (x1, y1, x2, y2)

    def prompt_to_pixels(self, prompt: ObjectPrompt) -> ObjectPrompt:
        """A parsed prompt with its box and points in extent pixels."""
        box = self.box_to_pixels(prompt.box) if prompt.box is not None else None
        points = tuple(self.point_to_pixels(p) for p in prompt.points)
        return ObjectPrompt(box=box, points=points, name=prompt.name)


@dataclass(frozen=True)
class Window:
    """A crop of the extent: rows ``row0:row1``, columns ``col0:col1`` (end exclusive)."""

    row0: int
    col0: int
    row1: int
    col1: int

    @property
    def height(self) -> int:
        return self.row1 - self.row0

    @property
    def width(self) -> int:
        return self.col1 - self.col0

    @property
    def slices(self) -> tuple[slice, slice]:
        """Index the extent's arrays with ``array[window.slices]``."""
        return slice(self.row0, self.row1), slice(self.col0, self.col1)

    def point_to_local(self, point: Point) -> Point:
        """An extent-pixel point in the crop's pixel space."""
        return (point[0] - self.col0, point[1] - self.row0)

    def point_to_extent(self, point: Point) -> Point:
        """A crop-pixel point in the extent's pixel space."""
        return (point[0] + self.col0, point[1] + self.row0)

    def box_to_local(self, box: Box) -> Box:
        """An extent-pixel box in the crop's pixel space."""
        return (box[0] - self.col0, box[1] - self.row0, box[2] - self.col0, box[3] - self.row0)

    def box_to_extent(self, box: Box) -> Box:
        """A crop-pixel box in the extent's pixel space."""
        return (box[0] + self.col0, box[1] + self.row0, box[2] + self.col0, box[3] + self.row0)


def make_overview(
    image: np.ndarray, valid: np.ndarray | None = None, size: int = MODEL_SIZE
) -> np.ndarray:
    """The extent as the prompter sees it: resized to ``size`` x ``size``, Lanczos.

    The aspect ratio is not kept, as in training (square EarthReason images resized to
    840²); very elongated extents are therefore squeezed (see the package notes).

    Args:
        image: (H, W, 3) uint8 RGB extent.
        valid: (H, W) bool; NoData pixels are blacked out first so fill values do not
            read as content.
        size: Model image side.

    Returns:
        (size, size, 3) uint8.
    """
    if valid is not None and not valid.all():
        image = np.where(valid[..., None], image, 0)  # one copy; uint8 stays uint8
    pil = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8))
    return np.asarray(pil.resize((size, size), Image.Resampling.LANCZOS))


def object_extent(prompt: ObjectPrompt) -> Box:
    """The area an object's prompt covers: its box, else the hull of its points."""
    if prompt.box is not None:
        return prompt.box
    xs = [p[0] for p in prompt.points]
    ys = [p[1] for p in prompt.points]
    return (min(xs), min(ys), max(xs), max(ys))


def _core(box: Box, height: int, width: int, margin: float, min_margin: float) -> Window:
    """The box plus margin, in whole pixels, clipped to the extent (never empty)."""
    pad = max(margin * max(box[2] - box[0], box[3] - box[1]), min_margin)
    col0 = min(max(math.floor(box[0] - pad), 0), width - 1)
    row0 = min(max(math.floor(box[1] - pad), 0), height - 1)
    col1 = max(min(math.ceil(box[2] + pad), width), col0 + 1)
    row1 = max(min(math.ceil(box[3] + pad), height), row0 + 1)
    return Window(row0, col0, row1, col1)


def _grow(core: Window, height: int, width: int, min_side: int) -> Window:
    """Widen a window around its centre to ``min_side`` where the extent allows."""

    def span(lo: int, hi: int, limit: int) -> tuple[int, int]:
        side = min(max(hi - lo, min_side), limit)
        start = (lo + hi) // 2 - side // 2
        start = min(max(start, 0), limit - side)
        return start, start + side

    row0, row1 = span(core.row0, core.row1, height)
    col0, col1 = span(core.col0, core.col1, width)
    # The grown window must still hold the core (it can only be shifted by clipping).
    row0, row1 = min(row0, core.row0), max(row1, core.row1)
    col0, col1 = min(col0, core.col0), max(col1, core.col1)
    return Window(row0, col0, row1, col1)


def plan_windows(
    boxes: Sequence[Box],
    height: int,
    width: int,
    min_side: int = CROP_MIN_SIDE,
    max_side: int = CROP_MAX_SIDE,
    margin: float = CROP_MARGIN,
    min_margin: float = CROP_MIN_MARGIN_PX,
) -> list[tuple[Window, list[int]]]:
    """Group objects into full-resolution crops for SAM (zoom-in refinement).

    Each object's box plus margin (its *core*) must lie inside its crop. Objects join the
    first group whose cores, together with theirs, still fit in ``max_side`` x
    ``max_side``; each group's crop is its cores' hull widened to ``min_side`` (more
    context, same cost: SAM resizes every crop to its 1024² input). With the defaults an
    extent of at most 1024 x 1024 pixels gives a single crop, the whole extent. A core
    larger than ``max_side`` gets its own crop, which SAM downsamples (edge accuracy
    then ≈ crop side / 1024 pixels).

    Args:
        boxes: Objects' boxes in extent pixels.
        height: Extent height.
        width: Extent width.
        min_side: Smallest crop side (clipped to the extent).
        max_side: Largest side of a group's hull of cores.
        margin: Context per side as a fraction of the box's larger side.
        min_margin: Smallest context per side, pixels.

    Returns:
        ``(window, object indices)`` per crop, in order of first object.
    """
    groups: list[tuple[Window, list[int]]] = []
    for k, box in enumerate(boxes):
        core = _core(box, height, width, margin, min_margin)
        for g, (hull, members) in enumerate(groups):
            merged = Window(
                min(hull.row0, core.row0),
                min(hull.col0, core.col0),
                max(hull.row1, core.row1),
                max(hull.col1, core.col1),
            )
            if merged.height <= max_side and merged.width <= max_side:
                groups[g] = (merged, [*members, k])
                break
        else:
            groups.append((core, [k]))
    return [(_grow(hull, height, width, min_side), members) for hull, members in groups]
