"""Tiles on a lattice anchored at the working grid's origin, and stitching their results.

Tile cores sit on a lattice of the working grid that starts at working pixel (0, 0), not at
the extent's corner, so moving the extent by a few pixels leaves interior tiles — and their
results — unchanged. Each tile reads its lattice cell plus ``overlap`` pixels of context on
every side (always ``tile_size`` square; context may lie outside the extent or the raster);
only the core, the cell's part inside the extent, is kept. So every output pixel comes
from exactly one tile, where the model saw context on all sides, and objects crossing tile
edges join into one region of the stitched map.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rs_reasoner.segmenters.base import TileResult

Window = tuple[int, int, int, int]


@dataclass(frozen=True)
class Tile:
    """One tile, in global working-grid coordinates (row0, col0, row1, col1), end-exclusive.

    Attributes:
        core: The pixels this tile owns: its lattice cell clipped to the extent.
        read_window: The lattice cell plus ``overlap`` pixels on every side, not clipped
            (``tile_size`` square); this is what the segmenter sees.
    """

    core: Window
    read_window: Window

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols) of the read window, i.e. of the image the segmenter gets."""
        r0, c0, r1, c1 = self.read_window
        return r1 - r0, c1 - c0


def plan_tiles(
    row0: int, col0: int, row1: int, col1: int, tile_size: int, overlap: int
) -> list[Tile]:
    """Cover an extent window with tiles whose cores partition it.

    Args:
        row0, col0, row1, col1: The extent on the working grid.
        tile_size: Edge of a tile's read window in pixels.
        overlap: Context margin read around each core.

    Returns:
        Tiles in row-major order.

    Raises:
        ValueError: An empty window, a negative overlap, or ``tile_size <= 2 * overlap``.
    """
    stride = tile_size - 2 * overlap
    if overlap < 0 or stride < 1:
        raise ValueError(f"need overlap >= 0 and tile_size > 2*overlap ({tile_size}, {overlap})")
    if row1 <= row0 or col1 <= col0:
        raise ValueError(f"empty window {(row0, col0, row1, col1)}")
    tiles = []
    # Floor division rounds towards -inf, so the lattice holds for negative origins too.
    for r in range((row0 // stride) * stride, row1, stride):
        for c in range((col0 // stride) * stride, col1, stride):
            core = (max(r, row0), max(c, col0), min(r + stride, row1), min(c + stride, col1))
            read = (r - overlap, c - overlap, r + stride + overlap, c + stride + overlap)
            tiles.append(Tile(core=core, read_window=read))
    return tiles


def fit_tile(
    tile_size: int,
    overlap: int,
    extent_shape: tuple[int, int],
    grid_shape: tuple[int, int],
    minimum: int = 64,
) -> tuple[int, int]:
    """The tile size and overlap worth reading for an extent: no larger than it needs.

    A core larger than the extent, or context reaching past the whole raster, is read
    and segmented for nothing (a 8192-pixel tile over a 1 x 1 raster: 67 M pixels of
    NoData through the model). Extents larger than a tile keep the requested lattice.

    Args:
        tile_size: Requested tile edge.
        overlap: Requested context margin.
        extent_shape: (rows, cols) of the extent on the working grid.
        grid_shape: (rows, cols) of the whole raster on the working grid.
        minimum: Smallest tile handed to a model (when ``tile_size`` is not smaller).

    Returns:
        (tile_size, overlap) with ``tile_size > 2 * overlap``.
    """
    overlap = min(overlap, max(grid_shape))
    tile = min(tile_size, max(extent_shape) + 2 * overlap)
    tile = max(tile, min(tile_size, minimum))
    if 2 * overlap >= tile:
        overlap = (tile - 1) // 2
    return tile, overlap


class Stitcher:
    """Assembles per-tile results into extent-sized label and score maps.

    Class names are matched across tiles by name and numbered globally in order of first
    appearance (tiles may see different subsets, in different orders). Instance ids are
    numbered per tile, so each tile's are offset past those already stitched: ids stay
    unique, and an object crossing a tile's core edge becomes two objects (segmenters that
    must see whole objects see the whole extent instead, ``Segmenter.whole_extent``).

    Args:
        row0, col0, row1, col1: The extent on the working grid.
    """

    def __init__(self, row0: int, col0: int, row1: int, col1: int) -> None:
        if row1 <= row0 or col1 <= col0:
            raise ValueError(f"empty window {(row0, col0, row1, col1)}")
        self.window: Window = (row0, col0, row1, col1)
        shape = (row1 - row0, col1 - col0)
        self.labels = np.zeros(shape, np.int32)
        self.scores = np.zeros(shape, np.float32)
        self.class_names: list[str] = []
        self._ids: dict[str, int] = {}
        self._texts: list[str] = []
        self.instances: np.ndarray | None = None
        self._next_instance = 0

    def add(self, tile: Tile, result: TileResult) -> None:
        """Write the core part of one tile's result.

        Args:
            tile: The tile (from :func:`plan_tiles` for this extent).
            result: The segmenter's output for the tile's read window.

        Raises:
            ValueError: The result does not match the tile, or has labels without names.
        """
        r0, c0, r1, c1 = tile.read_window
        if result.labels.shape != (r1 - r0, c1 - c0):
            raise ValueError(
                f"segmenter returned {result.labels.shape} for a {(r1 - r0, c1 - c0)} tile"
            )
        cr0, cc0, cr1, cc1 = tile.core
        er0, ec0, er1, ec1 = self.window
        if not (r0 <= cr0 and c0 <= cc0 and cr1 <= r1 and cc1 <= c1) or not (
            er0 <= cr0 and ec0 <= cc0 and cr1 <= er1 and cc1 <= ec1
        ):
            raise ValueError(f"tile core {tile.core} is outside its read window or the extent")
        # Local label k -> global id of class_names[k - 1]; 0 stays background.
        lut = np.zeros(len(result.class_names) + 1, np.int32)
        for k, name in enumerate(result.class_names, start=1):
            if name not in self._ids:
                self.class_names.append(name)
                self._ids[name] = len(self.class_names)
            lut[k] = self._ids[name]
        src = (slice(cr0 - r0, cr1 - r0), slice(cc0 - c0, cc1 - c0))
        local = result.labels[src]
        if local.size and (local.min() < 0 or local.max() > len(result.class_names)):
            raise ValueError(
                f"segmenter returned labels up to {local.max()} with "
                f"{len(result.class_names)} class names"
            )
        dst = (slice(cr0 - er0, cr1 - er0), slice(cc0 - ec0, cc1 - ec0))
        self.labels[dst] = lut[local]
        self.scores[dst] = result.scores[src]
        if result.instances is not None:
            if self.instances is None:
                self.instances = np.zeros(self.labels.shape, np.int32)
            ids = result.instances[src]
            self.instances[dst] = np.where(ids > 0, ids + self._next_instance, 0)
            self._next_instance += int(ids.max(initial=0))
        text = (result.text or "").strip()
        if text and text not in self._texts:
            self._texts.append(text)

    def result(self) -> TileResult:
        """The stitched extent: labels, scores, global class names, joined texts."""
        return TileResult(
            labels=self.labels,
            scores=self.scores,
            class_names=list(self.class_names),
            instances=self.instances,
            text="\n\n".join(self._texts) or None,
        )
