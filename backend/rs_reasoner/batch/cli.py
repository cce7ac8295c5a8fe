"""``rs-reasoner batch``: flags and the command (registered by :mod:`rs_reasoner.cli`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from rs_reasoner.arguments import add_field
from rs_reasoner.schemas import RunOptions, SegmentOptions, SegmentRequest
from rs_reasoner.schemas import defaults as field_defaults

EPILOG = """examples:
  rs-reasoner batch tiles/ --query "trees, water" --model index-baseline --out run1
  rs-reasoner batch 'county/*.tif' --query buildings --area county.gpkg \\
      --out run2 --merged buildings.gpkg --ray-address auto
  rs-reasoner batch --status --out run2
Rerunning the same command resumes: finished units are kept, the rest run.
Outputs: <out>/parts/<unit>.parquet and <out>/seams.parquet (GeoParquet, one CRS)."""

#: SegmentOptions fields that ``batch`` has flags for.
_OPTION_FLAGS = (
    "bands", "resolution", "score_threshold", "min_area", "simplify", "tile_size", "overlap",
)  # fmt: skip


def add_batch_parser(sub: argparse._SubParsersAction) -> None:
    """Add the ``batch`` subcommand to the ``rs-reasoner`` parser."""
    from rs_reasoner.batch.units import UNIT_TILES

    p = sub.add_parser(
        "batch",
        help="segment a whole collection of rasters, resumably, locally or on Ray",
        description="Segment many rasters (files, patterns, folders, VRT mosaics) in work "
        "units; resumable; seams between units merged once.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("inputs", nargs="*", help="rasters, glob patterns, folders or VRTs")
    p.add_argument("--out", "-o", required=True, type=Path, help="output folder (resumable)")
    p.add_argument("--status", action="store_true", help="report the batch's progress; run nothing")
    add_field(p, SegmentRequest, "query", "--query", "-q")
    add_field(p, SegmentRequest, "mode")
    add_field(p, SegmentRequest, "model", extra_help="see 'rs-reasoner models list'")
    for name in _OPTION_FLAGS:
        add_field(p, SegmentOptions, name)
    add_field(p, SegmentRequest, "output_crs")
    p.add_argument("--area", help="polygon file: only what lies inside is segmented")
    p.add_argument("--area-layer", help="layer of --area (multi-layer files)")
    p.add_argument("--merged", type=Path, help="also write everything into one file (.gpkg)")
    p.add_argument("--unit-tiles", type=int, default=UNIT_TILES,
                   help=f"work unit edge in tiles (default: {UNIT_TILES})")  # fmt: skip
    p.add_argument("--workers", type=int, default=2,
                   help="worker processes, or Ray units in flight (0: in this process / all "
                   "Ray CPUs) (default: 2)")  # fmt: skip
    p.add_argument("--ray-address", help="run on Ray: auto, ray://host:port, or local")
    add_field(p, RunOptions, "device")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run_batch_command(args: argparse.Namespace) -> int:
    """Run ``rs-reasoner batch``; exit status 0 when complete, 1 when units failed."""
    from rs_reasoner.batch.manifest import Manifest
    from rs_reasoner.batch.run import BatchConfig, run_batch
    from rs_reasoner.errors import InvalidRequestError

    if args.status:
        manifest = Manifest.load(args.out)
        if manifest is None:
            raise InvalidRequestError(f"No batch in {args.out}.", "Check the --out folder.")
        print(manifest.status_text())
        return 0
    if not args.inputs or not args.query:
        raise InvalidRequestError("batch needs inputs and --query.", "See rs-reasoner batch -h.")
    schema_defaults = field_defaults(SegmentOptions)
    options = {k: v for k in _OPTION_FLAGS if (v := getattr(args, k)) != schema_defaults[k]}
    request = SegmentRequest(
        raster="batch", query=args.query, mode=args.mode, model=args.model,
        output_crs=args.output_crs, options=SegmentOptions(**options),
    )  # fmt: skip
    cfg = BatchConfig(
        inputs=args.inputs, out=args.out, request=request, area=args.area,
        area_layer=args.area_layer, unit_tiles=args.unit_tiles, workers=args.workers,
        ray_address=args.ray_address, device=args.device, merged=args.merged, quiet=args.quiet,
    )  # fmt: skip
    result = run_batch(cfg)
    print(result.figures.summary())
    if not result.complete:
        print(result.manifest.status_text())
        print("some units failed; rerun the same command to retry them")
        return 1
    print(f"{len(result.manifest.units)} units done, {result.seams} objects across seams → "
          f"{args.out}" + (f", merged → {args.merged}" if args.merged else ""))  # fmt: skip
    return 0
