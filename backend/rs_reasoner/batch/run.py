"""A whole batch: plan (or resume) the manifest, run the units left, merge the seams."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import shapely
from pyproj import CRS

from rs_reasoner.batch import writer
from rs_reasoner.batch.executor_local import run_local
from rs_reasoner.batch.inputs import build_sources
from rs_reasoner.batch.manifest import DONE, FAILED, RUNNING, Manifest, Unit
from rs_reasoner.batch.outcome import UnitFn
from rs_reasoner.batch.progress import Figures, Progress
from rs_reasoner.batch.units import UNIT_TILES, SourcePlan, plan_source
from rs_reasoner.batch.worker import UnitTask, attributes, run_unit
from rs_reasoner.errors import InvalidRequestError
from rs_reasoner.pipeline import SegmentationPipeline, model_bands
from rs_reasoner.schemas import SegmentRequest
from rs_reasoner.vector.writers import check_output_path, write_vector


@dataclass
class BatchConfig:
    """One ``rs-reasoner batch`` command.

    Attributes:
        inputs: Rasters, patterns, folders or VRTs.
        out: Output folder (holds the manifest; rerunning with it resumes).
        request: Query, mode, model, options and output CRS (its ``raster`` is ignored).
        area: Polygon file restricting the batch, and its layer.
        unit_tiles: Unit edge in tiles.
        workers: Local worker processes, or Ray units in flight (0: in-process / all CPUs).
        ray_address: Run on Ray (``auto``, ``ray://host:port``, ``local``) instead.
        device: Torch device of the model.
        merged: Also write everything into this one vector file (e.g. ``all.gpkg``).
        quiet: No progress bar.
    """

    inputs: list[str]
    out: Path
    request: SegmentRequest
    area: str | None = None
    area_layer: str | None = None
    unit_tiles: int = UNIT_TILES
    workers: int = 2
    ray_address: str | None = None
    device: str = "auto"
    merged: Path | None = None
    quiet: bool = False


@dataclass
class BatchResult:
    """How a batch ended.

    Attributes:
        manifest: Its final state.
        figures: This run's throughput and stage times.
        complete: Every unit done and the seams merged.
        seams: Objects the seam merge produced (0 when not complete).
    """

    manifest: Manifest
    figures: Figures = field(default_factory=Figures)
    complete: bool = False
    seams: int = 0


def _config(cfg: BatchConfig) -> dict[str, Any]:
    """What the batch computes; a rerun must match it to resume."""
    req = cfg.request
    return {
        "inputs": list(cfg.inputs),
        "query": req.query,
        "mode": req.mode.value,
        "model": req.model,
        "options": req.options.model_dump(mode="json"),
        "output_crs": req.output_crs,
        "area": cfg.area,
        "area_layer": cfg.area_layer,
        "unit_tiles": cfg.unit_tiles,
    }


def _read_area(path: str, layer: str | None) -> gpd.GeoSeries:
    try:
        frame = gpd.read_file(path, layer=layer)
    except Exception as exc:  # pyogrio raises several types for unreadable files
        raise InvalidRequestError(
            f"Cannot read the area layer {path!r}: {exc}", "Give a polygon file (.gpkg, .shp)."
        ) from None
    polygons = frame.geometry[frame.geometry.geom_type.isin(["Polygon", "MultiPolygon"])]
    if polygons.empty:
        raise InvalidRequestError(f"{path!r} holds no polygons.", "Give a polygon layer.")
    return gpd.GeoSeries([shapely.union_all(polygons.values)], crs=frame.crs)


def _area_in(area: gpd.GeoSeries | None, crs_wkt: str) -> Any:
    if area is None:
        return None
    if area.crs is None or not crs_wkt:
        return area.iloc[0]
    return area.to_crs(crs_wkt).iloc[0]


def plan_batch(cfg: BatchConfig) -> Manifest:
    """Load the manifest in ``cfg.out`` (checking it is this batch), or plan a new one."""
    config = _config(cfg)
    manifest = Manifest.load(cfg.out)
    if manifest is not None:
        manifest.check_config(config)
        return manifest
    if cfg.merged is not None:
        check_output_path(cfg.merged)
    pipeline = SegmentationPipeline(device="cpu")
    plan = pipeline._plan(cfg.request)  # an unknown model or mode fails here, not per unit
    if plan.spec.check_query is not None:
        plan.spec.check_query(plan.query)
    cfg.out.mkdir(parents=True, exist_ok=True)
    area = _read_area(cfg.area, cfg.area_layer) if cfg.area else None
    sources: list[SourcePlan] = []
    units: list[Unit] = []
    for source in build_sources(cfg.inputs, cfg.out):
        crs_wkt = _source_crs(source.path)
        plan_, windows = plan_source(
            source.path, cfg.request.options, _area_in(area, crs_wkt), cfg.unit_tiles,
            bands=model_bands(cfg.request, plan.spec), raw=plan.spec.raw_bands is not None,
        )  # fmt: skip
        index = len(sources)
        sources.append(plan_)
        for w in windows:
            units.append(Unit(id=f"s{index:03d}-r{w[0]:07d}-c{w[1]:07d}", source=index,
                              window=list(w)))  # fmt: skip
    if not units:
        raise InvalidRequestError(
            "Nothing to segment: the area misses every input raster.",
            "Check the area layer and the rasters' CRS.",
        )
    manifest = Manifest(folder=cfg.out, config=config, sources=sources, units=units)
    manifest.save()
    return manifest


def _source_crs(path: str) -> str:
    from rs_reasoner.pipeline import open_dataset

    with open_dataset(path) as ds:
        return ds.crs.to_wkt() if ds.crs else ""


def output_crs(manifest: Manifest) -> str:
    """WKT of the batch's one output CRS: the request's, else the first source's."""
    chosen = manifest.config.get("output_crs")
    if chosen:
        return CRS.from_user_input(chosen).to_wkt()
    return next((s.crs_wkt for s in manifest.sources if s.crs_wkt), "")


def _tasks(manifest: Manifest, cfg: BatchConfig, units: list[Unit]) -> list[UnitTask]:
    out_crs = output_crs(manifest)
    area = _read_area(cfg.area, cfg.area_layer) if cfg.area else None
    tasks = []
    for u in units:
        src = manifest.sources[u.source]
        request = cfg.request.model_copy(update={"raster": src.path, "upload_id": None})
        same = not src.crs_wkt or not out_crs or CRS.from_wkt(src.crs_wkt) == CRS.from_wkt(out_crs)
        geom = _area_in(area, src.crs_wkt)
        tasks.append(UnitTask(
            unit_id=u.id, source_index=u.source, source=src, window=tuple(u.window),
            # Unset options stay unset, so the workers apply the pipeline's own rules (a
            # closed-set model labels every pixel unless a threshold was asked for).
            request=request.model_dump(mode="json", exclude_unset=True), out_dir=str(cfg.out),
            output_crs="" if same else out_crs,
            area_wkb=None if geom is None else shapely.to_wkb(geom), device=cfg.device,
        ))  # fmt: skip
    return tasks


def run_batch(cfg: BatchConfig, fn: UnitFn = run_unit) -> BatchResult:
    """Run (or resume) a batch to the end.

    Args:
        cfg: The command.
        fn: The unit function (tests wrap it to kill workers).

    Returns:
        How it ended; ``complete`` is False when units failed (rerun to retry them).
    """
    manifest = plan_batch(cfg)
    todo = manifest.todo()
    by_id = {u.id: u for u in manifest.units}
    progress = Progress(len(manifest.units), len(manifest.units) - len(todo), cfg.quiet)

    def on_start(unit_id: str) -> None:
        unit = by_id[unit_id]
        unit.status, unit.attempts = RUNNING, unit.attempts + 1
        manifest.save(force=False)

    tasks = _tasks(manifest, cfg, todo)
    if cfg.ray_address:
        from rs_reasoner.batch.executor_ray import run_ray

        gpus = 1.0 if cfg.device.startswith("cuda") else 0.0
        outcomes = run_ray(tasks, cfg.ray_address, cfg.workers, on_start, fn, num_gpus=gpus)
    else:
        outcomes = run_local(tasks, cfg.workers, on_start, fn)
    try:
        for outcome in outcomes:
            unit = by_id[outcome.unit_id]
            if outcome.report is not None:
                r = outcome.report
                unit.status, unit.part, unit.error = DONE, r.part, None
                unit.seconds, unit.stages = round(r.seconds, 3), {
                    k: round(v, 3) for k, v in r.stages.items()
                }
                src = manifest.sources[unit.source]
                progress.advance(r, unit.pixels, src.pixel_area_m2)
            else:
                unit.status, unit.error = FAILED, outcome.error
            manifest.save(force=False)
    finally:
        manifest.save()
        figures = progress.close()
    result = BatchResult(manifest=manifest, figures=figures)
    if manifest.todo():
        return result
    result.seams = finish(manifest, cfg)
    result.complete = True
    return result


def finish(manifest: Manifest, cfg: BatchConfig) -> int:
    """Merge the seams (``seams.parquet``) and write the merged file; returns seam objects."""
    options = cfg.request.options
    by_source: dict[int, list[str]] = {}
    for u in manifest.units:
        by_source.setdefault(u.source, []).append(u.id)
    plan = SegmentationPipeline(device="cpu")._plan(cfg.request)
    attrs = attributes(cfg.request, plan.spec.name, plan.query.mode.value, None)
    out_crs = output_crs(manifest)
    merged = writer.merge_seams(cfg.out, by_source, manifest.sources, out_crs, options, attrs)
    if cfg.merged is not None:
        everything = writer.read_parts(
            cfg.out, [u.part for u in manifest.units if u.part] + [writer.SEAMS_NAME]
        )
        write_vector(everything, cfg.merged)
    manifest.merged = True
    manifest.save()
    return len(merged)
