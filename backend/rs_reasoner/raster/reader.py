"""Reading an extent of a raster as 8-bit RGB windows of a working grid.

The working grid is the source grid scaled by ``scale`` (source pixels per working pixel)
and anchored at the raster origin: working pixel (r, c) covers source pixels
``[r*scale, (r+1)*scale)``. Reads take global working-grid windows, so tiles planned on a
lattice anchored at working pixel (0, 0) read the same pixels whatever the extent.

Reads cost what their output is worth, however coarse the working grid: GDAL answers a
downsampled read from the raster's overviews; where none is fine enough, a bilinear read
would filter every source pixel (a 1024² tile of a 102,400² mosaic: 10^10 pixels), so the
reader samples a fixed grid of :data:`DECIMATE_SAMPLES`² source pixels per working pixel
instead and averages them. Large reads are split into row bands of at most
:data:`CHUNK_SOURCE_PIXELS` source pixels, and the reader's ``check`` callback (a job's
cancel check) runs before each band, so cancelling never waits for a whole huge tile.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import MaskFlags, Resampling
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.windows import Window

from rs_reasoner.errors import ExtentError, RasterError
from rs_reasoner.raster.band_stats import check_band_numbers
from rs_reasoner.raster.bands import select_bands
from rs_reasoner.raster.extent_window import extent_to_window, working_shape
from rs_reasoner.raster.source import raster_transform
from rs_reasoner.raster.stretch import apply_stretch, stretch_params
from rs_reasoner.schemas import MAX_WORKING_PIXELS, Extent

#: Long side of the decimated read that the stretch percentiles are computed from.
STATS_SIZE = 1024

#: Source pixels per working pixel (along an axis, after GDAL's overviews) up to which a
#: read filters every source pixel (bilinear); coarser reads are decimated.
MAX_FILTER_FACTOR = 4.0

#: Samples per working pixel and axis of a decimated read (nearest, then averaged).
DECIMATE_SAMPLES = 4

#: Most source pixels (or samples) one GDAL read may cover; larger reads are split into
#: row bands and the cancel check runs between them.
CHUNK_SOURCE_PIXELS = 1 << 24

#: Scales this close to 1 are read natively (no resampling for float noise).
_SCALE_EPS = 1e-9

#: (working start, working end, source start, source end) along one axis.
_Piece = tuple[int, int, float, float]


def source_pixel_size(ds: rasterio.DatasetReader) -> float:
    """The raster's pixel width in CRS units (1 for rasters without georeferencing).

    Args:
        ds: The raster.

    Returns:
        Length of one pixel step along a row (``abs(a)`` for north-up rasters; rotation
        aware otherwise). The working grid uses one scale for both axes.
    """
    t = raster_transform(ds)
    return math.hypot(t.a, t.d)


def _axis_pieces(w0: int, w1: int, n_src: int, n_work: int, scale: float) -> list[_Piece]:
    """Split a working range (inside the raster) into reads GDAL can map exactly.

    GDAL clips a source window that runs past the raster and stretches what is left over
    the output, so the last working pixel, when only partly covered by source pixels, is
    read on its own from the part that exists.
    """
    full = min(n_work, math.floor(n_src / scale + 1e-6))  # working pixels wholly inside
    pieces: list[_Piece] = []
    if min(w1, full) > w0:
        pieces.append((w0, min(w1, full), w0 * scale, min(w1, full) * scale))
    if w1 > full and full < n_work:
        pieces.append((full, full + 1, full * scale, float(n_src)))
    return pieces


class ExtentReader:
    """Reads windows of a raster's working grid as stretched RGB plus validity, or as raw
    values of any bands (:meth:`read_raw`, for models trained on normalised bands).

    Create with :meth:`open`. The stretch is computed once for the extent, so all tiles
    of a job share it and no seams appear between them.

    Attributes:
        ds: The open raster (the caller closes it).
        bands: The three 1-based bands read as R, G, B (raw readers: the bands asked for).
        scale: Source pixels per working pixel.
        window: The extent on the working grid, (row0, col0, row1, col1).
        lo, hi: Per-band values mapped to 0 and 255.
        check: Called before every GDAL read (between the row bands of a large one);
            raises to stop, e.g. a job's cancel check. None: never stops.
    """

    def __init__(
        self,
        ds: rasterio.DatasetReader,
        bands: list[int],
        scale: float,
        window: tuple[int, int, int, int],
        lo: np.ndarray,
        hi: np.ndarray,
        check: Callable[[], None] | None = None,
    ) -> None:
        self.ds = ds
        self.bands = list(bands)
        self.scale = scale
        self.window = window
        self.lo = lo
        self.hi = hi
        self.check = check
        #: Raw reader (:meth:`read_raw`): a pixel is valid where any band is finite (a
        #: time series keeps a pixel with some cloudy dates); else where all bands are.
        self.raw = False
        self._unique = list(dict.fromkeys(self.bands))  # read a replicated band once
        self._dtype = np.result_type(*[ds.dtypes[b - 1] for b in self._unique])
        self._nodata = [ds.nodatavals[b - 1] for b in self._unique]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            self._all_valid = all(
                ds.mask_flag_enums[b - 1] == [MaskFlags.all_valid] for b in self._unique
            )
        # Decimation factors of the overviews GDAL picks from for downsampled reads.
        self._overviews = sorted({f for b in self._unique[:1] for f in ds.overviews(b)})

    @classmethod
    def open(
        cls,
        ds: rasterio.DatasetReader,
        extent: Extent | None,
        bands: list[int] | None = None,
        resolution: float | None = None,
        check: Callable[[], None] | None = None,
        raw: bool = False,
    ) -> ExtentReader:
        """Place the extent on the working grid and compute its stretch.

        Args:
            ds: The raster.
            extent: The area (any CRS) or None for the whole raster.
            bands: 1 or 3 band numbers, or None for the default choice; with ``raw``, any
                band numbers (None: every band).
            resolution: Working ground resolution in raster CRS units per pixel, or None
                for the native one.
            check: See the class attribute; it already runs during the stretch's read.
            raw: Read raw values with :meth:`read_raw` (no stretch is computed).

        Returns:
            A reader.

        Raises:
            ExtentError: The extent misses the raster, or its working grid is too large.
            RasterError: The bands cannot be shown as an image (complex values).
            InvalidRequestError: A band number the raster lacks.
        """
        reader = cls.place(ds, extent, bands, resolution, raw=raw)
        reader.check = check
        if not raw:
            reader.lo, reader.hi = reader._statistics()
        return reader

    @classmethod
    def place(
        cls,
        ds: rasterio.DatasetReader,
        extent: Extent | None,
        bands: list[int] | None = None,
        resolution: float | None = None,
        raw: bool = False,
    ) -> ExtentReader:
        """Check the request against the raster without reading a pixel.

        The cheap part of :meth:`open` (bands, resolution, extent, size), for checks at
        submission; its stretch is the identity, so read with :meth:`open`'s reader.

        Raises:
            The errors of :meth:`open`.
        """
        if raw:
            chosen = list(range(1, ds.count + 1)) if bands is None else [int(b) for b in bands]
            check_band_numbers(chosen, ds.count)
        else:
            chosen = select_bands(ds, bands)
        complex_bands = [b for b in chosen if np.dtype(ds.dtypes[b - 1]).kind == "c"]
        if complex_bands:
            raise RasterError(
                f"Band(s) {sorted(set(complex_bands))} hold complex values (e.g. radar SLC), "
                "which cannot be shown as an image.",
                "Derive amplitude or intensity first (e.g. gdal_calc.py or a VRT).",
            )
        pixel = source_pixel_size(ds)
        scale = 1.0 if resolution is None else resolution / pixel
        if abs(scale - 1.0) < _SCALE_EPS:
            scale = 1.0
        if not (math.isfinite(scale) and scale > 0):
            raise ExtentError(f"Resolution {resolution} is not usable.", "Give a positive number.")
        try:
            window = extent_to_window(ds, extent, scale)
        except OverflowError:
            # A resolution so fine that the grid's pixel numbers exceed a float.
            raise ExtentError(
                f"At resolution {resolution} the extent has more pixels than can be counted.",
                f"Give a resolution near the raster's own ({pixel:.6g} map units per pixel).",
            ) from None
        row0, col0, row1, col1 = window
        pixels = (row1 - row0) * (col1 - col0)
        if pixels > MAX_WORKING_PIXELS:
            # Pixel count falls with the square of the resolution (logs: counts may be
            # far beyond a float's range at an absurdly fine resolution).
            ratio = math.exp((math.log(pixels) - math.log(MAX_WORKING_PIXELS)) / 2)
            suggested = pixel * scale * ratio * 1.01
            exact = f"{col1 - col0} x {row1 - row0} = {pixels:,}"
            size = exact if pixels < 1e15 else f"about 1e{math.log10(pixels):.0f}"
            raise ExtentError(
                f"The extent is {size} working pixels at "
                f"resolution {pixel * scale:.6g}, more than the {MAX_WORKING_PIXELS:,} one "
                "job may process.",
                f"Choose a coarser ground resolution (at least {suggested:.6g} map units per "
                "pixel) or a smaller extent.",
            )
        n = len(chosen)
        reader = cls(ds, chosen, scale, window, np.zeros(n), np.full(n, 255.0))
        reader.raw = raw
        return reader

    def probe(self) -> None:
        """Read one source pixel of the extent: proves the pixels can be read (a damaged
        file, a VRT naming a missing or blocking source fail here) at the cost of a pixel.

        Raises:
            RasterError: The pixel cannot be read.
        """
        row0, col0 = self.window[:2]
        row = min(max(row0 * self.scale, 0.0), self.ds.height - 1.0)
        col = min(max(col0 * self.scale, 0.0), self.ds.width - 1.0)
        self._read_source(Window(int(col), int(row), 1, 1), (1, 1), Resampling.nearest)

    @property
    def height(self) -> int:
        """Rows of the extent on the working grid."""
        return self.window[2] - self.window[0]

    @property
    def width(self) -> int:
        """Columns of the extent on the working grid."""
        return self.window[3] - self.window[1]

    @property
    def crs(self) -> CRS | None:
        """The raster's CRS (None without one)."""
        return self.ds.crs

    @property
    def grid_shape(self) -> tuple[int, int]:
        """(rows, cols) of the whole raster on the working grid."""
        return working_shape(self.ds, self.scale)

    @property
    def grid_transform(self) -> Affine:
        """Affine of the working grid (its pixel (0, 0) is the raster's top-left)."""
        return raster_transform(self.ds) @ Affine.scale(self.scale)

    @property
    def transform(self) -> Affine:
        """Affine of the extent's top-left working pixel (for extent-sized arrays)."""
        return self.grid_transform @ Affine.translation(self.window[1], self.window[0])

    def _statistics(self) -> tuple[np.ndarray, np.ndarray]:
        """Stretch range from a decimated read of the extent's valid pixels."""
        if self._dtype == np.uint8:
            return stretch_params(np.zeros((3, 0), np.uint8), self._dtype)  # no read needed
        row0, col0, row1, col1 = self.window
        s = self.scale
        sr0, sc0 = row0 * s, col0 * s
        sr1, sc1 = min(row1 * s, self.ds.height), min(col1 * s, self.ds.width)
        factor = max(1.0, max(sr1 - sr0, sc1 - sc0) / STATS_SIZE)
        shape = (max(1, round((sr1 - sr0) / factor)), max(1, round((sc1 - sc0) / factor)))
        # Nearest keeps real pixel values and lets GDAL use overviews (cheap on COGs).
        data, valid = self._read_window(sr0, sc0, sr1, sc1, shape, Resampling.nearest)
        samples = data[:, valid]
        return stretch_params(samples[[self._unique.index(b) for b in self.bands]], self._dtype)

    def _filter_factor(self, factor: float) -> float:
        """Source pixels per output pixel a filtered read would touch along an axis, after
        GDAL picks the coarsest overview that is not coarser than the read."""
        overview = max([f for f in self._overviews if f <= factor], default=1)
        return factor / overview

    def _read_window(
        self,
        sr0: float,
        sc0: float,
        sr1: float,
        sc1: float,
        shape: tuple[int, int],
        resampling: Resampling,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Unique bands and validity of a source window resampled to ``shape``.

        Reads in row bands of bounded cost, running :attr:`check` before each; a
        downsampling read coarser than :data:`MAX_FILTER_FACTOR` (after overviews) is
        decimated instead of filtered.
        """
        rows, cols = shape
        fy, fx = (sr1 - sr0) / rows, (sc1 - sc0) / cols
        factor = max(fx, fy)
        residual = self._filter_factor(factor)
        decimate = resampling is not Resampling.nearest and residual > MAX_FILTER_FACTOR
        # Cost of one output row: the samples made, or the source pixels (of the overview
        # GDAL reads from) it spans, whichever is more (blocks are decoded whole).
        samples = cols * (DECIMATE_SAMPLES**2 if decimate else 1)
        row_cost = max(samples, (sc1 - sc0) * fy / (factor / residual) ** 2)
        step = max(1, int(CHUNK_SOURCE_PIXELS // row_cost))
        data = np.empty((len(self._unique), rows, cols), dtype=self._dtype)
        valid = np.empty((rows, cols), dtype=bool)
        for r0 in range(0, rows, step):
            if self.check is not None:
                self.check()
            r1 = min(rows, r0 + step)
            window = Window(sc0, sr0 + r0 * fy, sc1 - sc0, (r1 - r0) * fy)
            if decimate:
                part, ok = self._read_decimated(window, (r1 - r0, cols))
            else:
                part, ok = self._read_source(window, (r1 - r0, cols), resampling)
            data[:, r0:r1] = part
            valid[r0:r1] = ok
        return data, valid

    def _read_decimated(
        self, window: Window, shape: tuple[int, int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """A coarse read as the mean of a k x k grid of nearest samples per output pixel
        (k = :data:`DECIMATE_SAMPLES`): k² source pixels per pixel whatever the scale.
        Invalid samples are left out of the mean; a pixel is valid if any sample is."""
        k = DECIMATE_SAMPLES
        rows, cols = shape
        samples, ok = self._read_source(window, (rows * k, cols * k), Resampling.nearest)
        total = np.zeros((samples.shape[0], rows, cols), dtype=np.float64)
        count = np.zeros((rows, cols), dtype=np.int32)
        for i in range(k):
            for j in range(k):
                hit = ok[i::k, j::k]
                total += np.where(hit, samples[:, i::k, j::k], 0)
                count += hit
        mean = total / np.maximum(count, 1)
        if np.dtype(self._dtype).kind in "iu":
            mean = np.rint(mean)
        return mean.astype(self._dtype), count > 0

    def _read_source(
        self, window: Window, shape: tuple[int, int], resampling: Resampling
    ) -> tuple[np.ndarray, np.ndarray]:
        """Unique bands (len(unique), *shape) and validity of a source window."""
        count = len(self._unique)
        try:
            data = self.ds.read(
                self._unique,
                window=window,
                out_shape=(count, *shape),
                resampling=resampling,
                out_dtype=self._dtype,
            )
            if self._all_valid:
                valid = np.ones(shape, dtype=bool)
            else:
                # Band masks cover nodata, internal masks and alpha bands alike. A pixel is
                # NoData only where every band says so (GDAL's dataset-mask rule): with
                # nodata=255 on RGB, a saturated red roof (255, 90, 80) is still data.
                masks = self.ds.read_masks(
                    self._unique,
                    window=window,
                    out_shape=(count, *shape),
                    resampling=Resampling.nearest,
                )
                valid = (masks > 0).any(axis=0)
        except RasterioError as exc:
            # rasterio's own message only points at the GDAL error it chained.
            reason = exc.__cause__ or exc
            raise RasterError(
                f"Pixels of {self.ds.name} cannot be read: {reason}",
                "The file may be damaged or incomplete; check it with gdalinfo -checksum.",
            ) from None
        # Resampling can blend NoData into neighbours: re-check values, same all-bands rule.
        declared = [i for i, nd in enumerate(self._nodata) if nd is not None and not math.isnan(nd)]
        if declared and len(declared) == count:
            valid &= np.any([data[i] != self._nodata[i] for i in declared], axis=0)
        if data.dtype.kind == "f":
            finite = np.isfinite(data)
            valid &= finite.any(axis=0) if self.raw else finite.all(axis=0)
        return data, valid

    def _assemble(
        self, row0: int, col0: int, row1: int, col1: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Unique bands (native type, 0 outside the raster) and validity of a working-grid
        window (see :meth:`read`)."""
        if row1 <= row0 or col1 <= col0:
            raise ValueError(f"empty window {(row0, col0, row1, col1)}")
        shape = (row1 - row0, col1 - col0)
        data = np.zeros((len(self._unique), *shape), dtype=self._dtype)
        valid = np.zeros(shape, dtype=bool)
        rows, cols = self.grid_shape
        r0, c0, r1, c1 = max(row0, 0), max(col0, 0), min(row1, rows), min(col1, cols)
        if r1 > r0 and c1 > c0:
            native = self.scale == 1.0
            resampling = Resampling.nearest if native else Resampling.bilinear
            row_pieces = _axis_pieces(r0, r1, self.ds.height, rows, self.scale)
            col_pieces = _axis_pieces(c0, c1, self.ds.width, cols, self.scale)
            for wr0, wr1, sr0, sr1 in row_pieces:
                for wc0, wc1, sc0, sc1 in col_pieces:
                    part, ok = self._read_window(
                        sr0, sc0, sr1, sc1, (wr1 - wr0, wc1 - wc0), resampling
                    )
                    dst = (slice(wr0 - row0, wr1 - row0), slice(wc0 - col0, wc1 - col0))
                    data[(slice(None), *dst)] = part
                    valid[dst] = ok
        return data, valid

    def read(self, row0: int, col0: int, row1: int, col1: int) -> tuple[np.ndarray, np.ndarray]:
        """Read a window of the working grid, in global coordinates.

        The window may extend beyond the raster (outside is invalid and 0) and beyond the
        extent (inside the raster that context is read like any other pixel). Only the
        window's source pixels are read.

        Args:
            row0, col0, row1, col1: Window on the working grid, end-exclusive.

        Returns:
            (image (H, W, 3) uint8 RGB, valid (H, W) bool); invalid pixels (NoData, masked,
            NaN/inf, outside the raster) are 0 in the image.
        """
        data, valid = self._assemble(row0, col0, row1, col1)
        order = [self._unique.index(b) for b in self.bands]
        image = apply_stretch(data[order], self.lo, self.hi)
        image[~valid] = 0
        return image, valid

    def read_raw(
        self, row0: int, col0: int, row1: int, col1: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Raw values of :attr:`bands` in a working-grid window (see :meth:`read`).

        Returns:
            ((bands, H, W) float32, valid (H, W) bool): NaN where a band has no data (its
            declared NoData value, NaN/inf, or the pixel invalid or outside the raster).
        """
        data, valid = self._assemble(row0, col0, row1, col1)
        out = data[[self._unique.index(b) for b in self.bands]].astype(np.float32)
        for i, band in enumerate(self.bands):
            nodata = self._nodata[self._unique.index(band)]
            if nodata is not None and not math.isnan(nodata):
                out[i][data[self._unique.index(band)] == nodata] = np.nan
        out[~np.isfinite(out)] = np.nan
        out[:, ~valid] = np.nan
        return out, valid

    def read_extent(self) -> tuple[np.ndarray, np.ndarray]:
        """Read the whole extent window (see :meth:`read`)."""
        return self.read(*self.window)
