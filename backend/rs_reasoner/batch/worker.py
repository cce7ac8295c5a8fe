"""One work unit: read its window, segment it tile by tile, vectorise, write its part.

Runs in worker processes (local executor) or Ray workers; a process keeps the models it
loaded, so a worker loads each model once whatever number of units it runs. The tiled
segmentation is the pipeline's own, so a unit's label map is the single-extent run's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from affine import Affine
from rasterio.features import geometry_mask

from rs_reasoner.batch import seams, writer
from rs_reasoner.pipeline import (
    SegmentationPipeline,
    open_dataset,
    read_window,
    score_threshold_for,
)
from rs_reasoner.raster import ExtentReader
from rs_reasoner.schemas import SegmentRequest
from rs_reasoner.vector import reproject, vectorize

#: Pipelines (and so loaded models) of this process, by device.
_PIPELINES: dict[str, SegmentationPipeline] = {}
#: Planned (model spec, query) of this process, by device and request: planning looks the
#: model up in the registry and the trained-models folder, too slow to repeat per unit.
_PLANS: dict[tuple[str, str], Any] = {}


@dataclass
class UnitTask:
    """Everything a worker needs for one unit (plain data: it crosses process borders).

    Attributes:
        unit_id: The unit's name (its part files are named after it).
        source_index: Index of its source.
        source: The source's plan (see :class:`rs_reasoner.batch.units.SourcePlan`).
        window: The unit on the source's working grid.
        request: The batch's SegmentRequest as a dict (raster set to the source).
        out_dir: The batch's output folder.
        output_crs: CRS of the written polygons (WKT), or '' for the source's own.
        area_wkb: The area restricting the batch, in the source's CRS, or None.
        device: Torch device for the model.
    """

    unit_id: str
    source_index: int
    source: Any
    window: tuple[int, int, int, int]
    request: dict[str, Any]
    out_dir: str
    output_crs: str = ""
    area_wkb: bytes | None = None
    device: str = "auto"


@dataclass
class UnitReport:
    """What a finished unit reports back.

    Attributes:
        unit_id: The unit.
        part: Its polygons part, relative to the output folder.
        seconds: Wall time.
        stages: Seconds per stage (model, read+segment, vectorise, write).
        polygons: Finished polygons in the part; pieces: objects left for the seam merge.
    """

    unit_id: str
    part: str
    seconds: float
    stages: dict[str, float] = field(default_factory=dict)
    polygons: int = 0
    pieces: int = 0


def _pipeline(device: str) -> SegmentationPipeline:
    if device not in _PIPELINES:
        _PIPELINES[device] = SegmentationPipeline(device=device)
    return _PIPELINES[device]


def _area_mask(area_wkb: bytes, transform: Affine, shape: tuple[int, int]) -> np.ndarray:
    """True inside the area, on the unit's grid."""
    area = shapely.from_wkb(area_wkb)
    return geometry_mask([area], out_shape=shape, transform=transform, invert=True)


def run_unit(task: UnitTask) -> UnitReport:
    """Process one unit and write its part files atomically.

    Args:
        task: The unit.

    Returns:
        Its report.

    Raises:
        RsReasonerError: A user error (unreadable raster, unknown class for the model...).
    """
    start = time.perf_counter()
    stages: dict[str, float] = {}
    request = SegmentRequest.model_validate(task.request)
    pipeline = _pipeline(task.device)
    key = (task.device, request.model_copy(update={"raster": None}).model_dump_json())
    if key not in _PLANS:
        _PLANS[key] = pipeline._plan(request)
    plan = _PLANS[key]
    model = pipeline._model(plan.spec)
    stages["model"] = time.perf_counter() - start
    src = task.source
    row0, col0, row1, col1 = task.window
    t0 = time.perf_counter()
    with open_dataset(src.path) as ds:
        reader = ExtentReader(
            ds, src.bands, src.scale, tuple(task.window), np.asarray(src.lo), np.asarray(src.hi)
        )
        reader.raw = src.raw  # a model trained on raw bands reads them unstretched
        # The spec says it (newer registry); older segmenters carried it themselves.
        if getattr(plan.spec, "whole_extent", getattr(model, "whole_extent", False)):
            image, valid = read_window(reader, *task.window)
            result = model.segment(image, valid, plan.query)
        else:
            fusion = None
            if request.options.fuse_land_cover:  # the products over this unit's window
                from rs_reasoner.landcover.request import land_cover_fusion

                fusion = land_cover_fusion(request, plan.spec, reader, partial=True)
            result, valid = SegmentationPipeline._tiled(
                model, reader, plan.query, lambda *_: None, lambda: None, fusion
            )
        transform = reader.transform
        crs = reader.crs
    stages["read+segment"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    # The single-extent rule: a closed-set trained model labels every valid pixel unless a
    # threshold was asked for.
    labels = np.where(result.scores >= score_threshold_for(request, plan.spec), result.labels, 0)
    if task.area_wkb is not None:
        valid = valid & _area_mask(task.area_wkb, transform, labels.shape)
    labels = np.where(valid, labels, 0)
    interior, pieces = seams.split_edge_objects(
        labels, result.scores, result.class_names, task.window, task.source_index
    )
    polygons = vectorize(
        interior,
        result.scores,
        result.class_names,
        transform,
        crs,
        valid=valid,
        min_area=request.options.min_area,
        simplify=request.options.simplify,
        attributes=attributes(request, plan.spec.name, plan.query.mode.value, result.text),
    )
    if task.output_crs and crs is not None:
        polygons = reproject(polygons, task.output_crs)
    stages["vectorise"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    # Pieces first: a part on disk means the unit's pieces are on disk too.
    writer.write_part(pieces, Path(task.out_dir) / writer.pieces_path(task.unit_id))
    part = writer.part_path(task.unit_id)
    writer.write_part(polygons, Path(task.out_dir) / part)
    stages["write"] = time.perf_counter() - t0
    return UnitReport(
        unit_id=task.unit_id,
        part=str(part),
        seconds=time.perf_counter() - start,
        stages=stages,
        polygons=len(polygons),
        pieces=len(pieces),
    )


def attributes(request: SegmentRequest, model: str, mode: str, text: str | None) -> dict[str, Any]:
    """The columns the pipeline adds to every polygon (same names and values)."""
    return {"query": request.query, "mode": mode, "model": model, "reasoning": text or ""}
