"""One segmentation job: read the extent, run the segmenter tile by tile, vectorise.

The pipeline knows the segmenter interface and the registry's specs, and nothing of any
model's internals: what it must know before loading a model (whole extent or tiles) is on
the :class:`~rs_reasoner.segmenters.spec.ModelSpec`, so checking and planning a request
import no model code (and no torch). It is shared by the CLI and the service; the service
keeps one instance so loaded models stay resident between jobs.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import geopandas as gpd
import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning

from rs_reasoner.device import resolve_device
from rs_reasoner.errors import ExtentError, InvalidRequestError, JobCancelled
from rs_reasoner.query import resolve_mode, split_classes
from rs_reasoner.raster import ExtentReader, open_raster
from rs_reasoner.schemas import Mode, SegmentRequest
from rs_reasoner.segmenters import registry
from rs_reasoner.segmenters.base import SegmentationQuery, Segmenter, TileResult
from rs_reasoner.tiling import Stitcher, fit_tile, plan_tiles
from rs_reasoner.vector import reproject, vectorize

if TYPE_CHECKING:
    from rs_reasoner.landcover.fusion import LandCoverFusion

#: (stage, fraction 0..1, message or None)
ProgressFn = Callable[[str, float, str | None], None]

#: Largest extent (working pixels) handed at once to a whole-extent segmenter.
MAX_WHOLE_EXTENT_PIXELS = 100_000_000

#: Models kept loaded at once; loading another frees the least recently used (a VLM
#: prompter and a CLIP model together already fill a 24 GB GPU).
MAX_RESIDENT_MODELS = 2


@dataclass
class SegmentationResult:
    """What a job produces.

    Attributes:
        polygons: One row per polygon, in the output CRS.
        model: Name of the segmenter that ran.
        mode: The mode it ran in (``auto`` resolved).
        reasoning: The model's reasoning text, if any.
        messages: Notes for the job log.
    """

    polygons: gpd.GeoDataFrame
    model: str
    mode: Mode
    reasoning: str | None = None
    messages: list[str] = field(default_factory=list)


@dataclass
class _Plan:
    spec: registry.ModelSpec
    query: SegmentationQuery


@contextmanager
def open_dataset(path: str) -> Iterator[rasterio.DatasetReader]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        ds = open_raster(path)
    try:
        yield ds
    finally:
        ds.close()


class SegmentationPipeline:
    """Runs segmentation requests; keeps loaded models resident.

    Args:
        device: Torch device for models (``auto`` picks CUDA when present).
        max_resident: Models kept loaded; the least recently used beyond are freed.
    """

    def __init__(self, device: str = "auto", max_resident: int = MAX_RESIDENT_MODELS) -> None:
        self._requested_device = device
        self._max_resident = max(1, max_resident)
        self._device: str | None = None
        self._models: dict[str, Segmenter] = {}
        #: Where each loaded model came from (ModelSpec.source).
        self._sources: dict[str, str | None] = {}
        self._lock = threading.Lock()

    @property
    def device(self) -> str:
        """The resolved device (imports torch on first use)."""
        if self._device is None:
            self._device = resolve_device(self._requested_device)
        return self._device

    def loaded_models(self) -> list[str]:
        """Names of the models currently in memory."""
        with self._lock:
            return sorted(self._models)

    def _plan(self, request: SegmentRequest) -> _Plan:
        mode = resolve_mode(request.query, request.mode)
        if request.model:
            spec = registry.get_spec(request.model)
            if mode not in spec.modes:
                if request.mode is not Mode.auto:
                    raise InvalidRequestError(
                        f"Model '{spec.name}' does not do {mode.value} segmentation.",
                        f"It does: {', '.join(m.value for m in spec.modes)}.",
                    )
                mode = spec.modes[0]  # the user picked the model; auto follows it
        else:
            # The requested device, not a guess: a CUDA-only default must not serve CPU.
            spec = registry.default_for(mode, self._requested_device)
        classes = split_classes(request.query) if mode is Mode.open_vocabulary else ()
        query = SegmentationQuery(
            text=request.query, mode=mode, classes=classes, options=request.options
        )
        return _Plan(spec=spec, query=query)

    def _reader(
        self,
        ds: rasterio.DatasetReader,
        request: SegmentRequest,
        spec: registry.ModelSpec,
        check: Callable[[], None] | None = None,
    ) -> ExtentReader:
        return ExtentReader.open(
            ds,
            request.extent,
            bands=model_bands(request, spec),
            resolution=request.options.resolution,
            check=check,
            raw=spec.raw_bands is not None,
        )

    def validate(self, request: SegmentRequest, raster_path: str) -> None:
        """Cheap checks that let the service answer a bad request with a 4xx at once.

        Args:
            request: The request.
            raster_path: The raster to read (the request's path or an upload).

        Raises:
            RsReasonerError: What is wrong and how to fix it.
        """
        plan = self._plan(request)
        if plan.spec.check_query is not None:
            plan.spec.check_query(plan.query)  # e.g. a class a trained model does not know
        with open_dataset(raster_path) as ds:
            if plan.spec.check_raster is not None:
                plan.spec.check_raster(ds)  # e.g. a raster without the model's bands
            # No stretch statistics here (a decimated read of the whole extent): the job
            # computes them; one pixel proves the pixels can be read at all.
            opts = request.options
            reader = ExtentReader.place(
                ds, request.extent, model_bands(request, plan.spec), opts.resolution,
                raw=plan.spec.raw_bands is not None,
            )  # fmt: skip
            self._check_whole_extent(plan, reader)
            reader.probe()
            if opts.fuse_land_cover:
                from rs_reasoner.landcover.request import check_land_cover

                check_land_cover(request, plan.spec, reader)
        self._check_weights(plan.spec)
        if request.output_crs is not None:
            from pyproj import CRS
            from pyproj.exceptions import CRSError

            try:
                CRS.from_user_input(request.output_crs)
            except CRSError:
                raise InvalidRequestError(
                    f"output_crs {request.output_crs!r} is not a CRS.",
                    "Use e.g. 'EPSG:4326' or a WKT string.",
                ) from None

    @staticmethod
    def _check_weights(spec: registry.ModelSpec) -> None:
        """Refuse at submission a model whose weights are not on disk (jobs never
        download), instead of accepting a job that fails when it loads."""
        from rs_reasoner import weights

        for w in spec.weights:
            weights.resolve(w, spec.name, allow_download=False)

    @staticmethod
    def _check_whole_extent(plan: _Plan, reader: ExtentReader) -> None:
        if plan.spec.whole_extent and reader.height * reader.width > MAX_WHOLE_EXTENT_PIXELS:
            raise ExtentError(
                f"The extent is {reader.width}x{reader.height} pixels; model "
                f"'{plan.spec.name}' looks at the whole extent and takes at most "
                f"{MAX_WHOLE_EXTENT_PIXELS:,} pixels.",
                "Choose a coarser ground resolution or a smaller extent.",
            )

    def _model(self, spec: registry.ModelSpec) -> Segmenter:
        with self._lock:
            model = self._models.get(spec.name)
            stale = getattr(model, "is_stale", None)
            moved = model is not None and self._sources.get(spec.name) != spec.source
            if model is not None and (moved or (stale is not None and stale())):
                # A trained model whose checkpoint was replaced (training resumed), or
                # another model of that name (another models folder): reload.
                self._models.pop(spec.name).close()
                model = None
            if model is None:
                model = registry.create(spec, device=self.device)
                self._sources[spec.name] = spec.source
            self._models.pop(spec.name, None)
            self._models[spec.name] = model  # most recently used last
            while len(self._models) > self._max_resident:
                oldest = next(iter(self._models))
                self._models.pop(oldest).close()
            return model

    def unload(self, name: str | None = None) -> None:
        """Free one model (or all) and its memory."""
        with self._lock:
            names = [name] if name else list(self._models)
            for n in names:
                model = self._models.pop(n, None)
                if model is not None:
                    model.close()

    def run(
        self,
        request: SegmentRequest,
        raster_path: str,
        progress: ProgressFn | None = None,
        cancel: threading.Event | None = None,
    ) -> SegmentationResult:
        """Run one request.

        Args:
            request: The request.
            raster_path: The raster to read (the request's path or an upload).
            progress: Called with (stage, fraction, message) as work advances.
            cancel: When set, the job stops after the current tile.

        Returns:
            The polygons and what produced them.

        Raises:
            JobCancelled: When ``cancel`` was set.
            RsReasonerError: For user errors (bad raster, extent, query).
        """
        report = progress or (lambda stage, fraction, message: None)

        def check_cancel() -> None:
            if cancel is not None and cancel.is_set():
                raise JobCancelled()

        plan = self._plan(request)
        messages = [f"model {plan.spec.name}, mode {plan.query.mode.value}"]
        report("loading model", 0.0, f"loading {plan.spec.name}")
        model = self._model(plan.spec)
        check_cancel()
        report("reading", 0.0, "opening the raster")
        with open_dataset(raster_path) as ds:
            if plan.spec.check_raster is not None:
                messages.extend(plan.spec.check_raster(ds))
            # The reader runs the cancel check between the row bands of large reads.
            reader = self._reader(ds, request, plan.spec, check=check_cancel)
            messages.append(
                f"extent {reader.width}x{reader.height} working pixels, bands {reader.bands}"
            )
            fusion = None
            if request.options.fuse_land_cover:
                from rs_reasoner.landcover.request import land_cover_fusion

                report("reading", 0.0, "reading the land-cover maps")
                fusion = land_cover_fusion(request, plan.spec, reader)
                messages.extend(fusion.describe() if fusion is not None else [])
            if plan.spec.whole_extent:
                self._check_whole_extent(plan, reader)
                report("reading", 0.0, "whole extent")
                image, valid = read_window(reader, *reader.window)
                report("segmenting", 0.0, "whole extent")
                result = model.segment(image, valid, plan.query)
                valid_map = valid
                messages.extend(result.notes)  # e.g. the raw model answer, for the job log
                report("segmenting", 1.0, None)
            else:
                result, valid_map = self._tiled(
                    model, reader, plan.query, report, check_cancel, fusion
                )
        check_cancel()
        report("vectorising", 1.0, None)
        threshold = score_threshold_for(request, plan.spec)
        labels = np.where(result.scores >= threshold, result.labels, 0)
        polygons = vectorize(
            labels,
            result.scores,
            result.class_names,
            reader.transform,
            reader.crs,
            valid=valid_map,
            instances=result.instances,
            min_area=request.options.min_area,
            simplify=request.options.simplify,
            attributes={
                "query": request.query,
                "mode": plan.query.mode.value,
                "model": plan.spec.name,
                "reasoning": result.text or "",
            },
        )
        if request.output_crs is not None:
            if reader.crs is None:
                raise InvalidRequestError(
                    "The raster has no CRS, so its polygons cannot be reprojected.",
                    "Leave output_crs empty or georeference the raster first.",
                )
            polygons = reproject(polygons, request.output_crs)
        messages.append(f"{len(polygons)} polygons")
        report("done", 1.0, f"{len(polygons)} polygons")
        return SegmentationResult(
            polygons=polygons,
            model=plan.spec.name,
            mode=plan.query.mode,
            reasoning=result.text,
            messages=messages,
        )

    @staticmethod
    def _tiled(
        model: Segmenter,
        reader: ExtentReader,
        query: SegmentationQuery,
        report: ProgressFn,
        check_cancel: Callable[[], None],
        fusion: LandCoverFusion | None = None,
    ) -> tuple[TileResult, np.ndarray]:
        opts = query.options
        row0, col0, row1, col1 = reader.window
        tile_size, overlap = fit_tile(
            opts.tile_size, opts.overlap, (row1 - row0, col1 - col0), reader.grid_shape
        )
        tiles = plan_tiles(row0, col0, row1, col1, tile_size, overlap)
        stitcher = Stitcher(row0, col0, row1, col1)
        valid_map = np.zeros((row1 - row0, col1 - col0), dtype=bool)
        for i, tile in enumerate(tiles):
            check_cancel()
            r0, c0, r1, c1 = tile.read_window
            report("reading", i / len(tiles), None)
            image, valid = read_window(reader, r0, c0, r1, c1)
            report("segmenting", i / len(tiles), None)
            if fusion is None:
                result = model.segment(image, valid, query)
            else:  # the trained segmenters' land-cover likelihoods, on the extent's grid
                window = (r0 - row0, c0 - col0, r1 - row0, c1 - col0)
                result = model.segment(  # type: ignore[call-arg]
                    image, valid, query, land_cover=fusion.likelihood(*window)
                )
            stitcher.add(tile, result)
            cr0, cc0, cr1, cc1 = tile.core
            valid_map[cr0 - row0 : cr1 - row0, cc0 - col0 : cc1 - col0] = valid[
                cr0 - r0 : cr1 - r0, cc0 - c0 : cc1 - c0
            ]
            report("segmenting", (i + 1) / len(tiles), f"tile {i + 1}/{len(tiles)}")
        return stitcher.result(), valid_map


def model_bands(request: SegmentRequest, spec: registry.ModelSpec) -> list[int] | None:
    """The bands to read: the request's, else the model's own (models trained on raw
    bands), else None (the reader's RGB choice).

    Raises:
        InvalidRequestError: Bands given for a model trained on another number of bands.
    """
    asked = request.options.bands
    if spec.raw_bands is None:
        return asked
    if asked is not None and len(asked) != len(spec.raw_bands):
        raise InvalidRequestError(
            f"Model '{spec.name}' reads {len(spec.raw_bands)} band(s); {len(asked)} were "
            "given.",
            "Leave the bands out: the model reads the bands it was trained on.",
        )
    return list(asked or spec.raw_bands)


def read_window(reader: ExtentReader, row0: int, col0: int, row1: int, col1: int):
    """A window as the segmenter takes it: 8-bit RGB, or raw bands (H, W, B) float32."""
    if not reader.raw:
        return reader.read(row0, col0, row1, col1)
    raw, valid = reader.read_raw(row0, col0, row1, col1)
    return np.ascontiguousarray(np.moveaxis(raw, 0, -1)), valid


def score_threshold_for(request: SegmentRequest, spec: registry.ModelSpec) -> float:
    """Score threshold: the request's when given; a closed-set model (trained on the
    user's classes) otherwise labels every valid pixel with its most probable class."""
    options = request.options
    if spec.classes is not None and "score_threshold" not in options.model_fields_set:
        return 0.0
    return options.score_threshold
