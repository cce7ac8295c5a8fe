"""Batch throughput: units/s of ``rs-reasoner batch`` with the local executor and with Ray,
at 1 and 2 workers, and the scaling ratio (2 workers / 1 worker).

Input: a mosaic of the NEON 10 cm sample repeated ``--grid`` x ``--grid`` times (GeoTIFF
tiles side by side, so the batch builds a VRT mosaic and merges seams between them), model
``index-baseline`` (CPU, weight-free). Ray runs on a local cluster started once (its
start-up is not timed); each local run starts its worker processes (timed: that is what a
user pays). Every run writes to a fresh folder, so nothing is resumed.

    .venv/bin/python bench/bench_batch.py --grid 4 --unit-tiles 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
from pathlib import Path

import rasterio
from affine import Affine

from rs_reasoner.batch.run import BatchConfig, run_batch
from rs_reasoner.schemas import SegmentOptions, SegmentRequest

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
NEON = DATA / "neon_osbs_rgb_10cm_utm17n.tif"


def make_mosaic(folder: Path, grid: int) -> list[Path]:
    """``grid`` x ``grid`` copies of the NEON sample, side by side on one grid."""
    with rasterio.open(NEON) as ds:
        data, profile = ds.read(), ds.profile
    t = profile["transform"]
    paths = []
    for i in range(grid):
        for j in range(grid):
            x0, y0 = t.c + j * ds.width * t.a, t.f + i * ds.height * t.e
            shifted = Affine(t.a, t.b, x0, t.d, t.e, y0)
            path = folder / f"neon_{i}_{j}.tif"
            with rasterio.open(path, "w", **(profile | {"transform": shifted})) as out:
                out.write(data)
            paths.append(path)
    return paths


def run(tiles: list[Path], out: Path, workers: int, ray: bool, unit_tiles: int) -> dict:
    request = SegmentRequest(
        raster="batch", query="trees", model="index-baseline",
        options=SegmentOptions(tile_size=256, overlap=32, min_area=0.5),
    )  # fmt: skip
    cfg = BatchConfig(
        inputs=[str(p) for p in tiles], out=out, request=request, unit_tiles=unit_tiles,
        workers=workers, ray_address="auto" if ray else None, device="cpu", quiet=True,
    )  # fmt: skip
    result = run_batch(cfg)
    f = result.figures
    assert result.complete
    return {
        "executor": "ray" if ray else "local", "workers": workers, "units": f.units,
        "wall_s": round(f.wall_s, 2), "units_per_s": round(f.units_per_s, 3),
        "mpx_per_s": round(f.mpx_per_s, 3), "km2_per_h": round(f.km2_per_h, 3),
        "stages_s": {k: round(v, 2) for k, v in f.stages.items()},
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", type=int, default=4, help="mosaic of grid x grid NEON copies")
    parser.add_argument("--unit-tiles", type=int, default=1)
    parser.add_argument("--no-ray", action="store_true")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "tiles").mkdir()
        tiles = make_mosaic(folder / "tiles", args.grid)
        for workers in (1, 2):
            rows.append(run(tiles, folder / f"local{workers}", workers, False, args.unit_tiles))
        if not args.no_ray:
            import ray

            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
            for workers in (1, 2):
                rows.append(run(tiles, folder / f"ray{workers}", workers, True, args.unit_tiles))
            ray.shutdown()
    for executor in ("local", "ray"):
        one = next((r for r in rows if r["executor"] == executor and r["workers"] == 1), None)
        two = next((r for r in rows if r["executor"] == executor and r["workers"] == 2), None)
        if one and two:
            two["scaling_vs_1_worker"] = round(two["units_per_s"] / one["units_per_s"], 2)
    print(json.dumps({
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, no GPU",
        "mosaic_px": (args.grid * 400) ** 2, "results": rows,
    }, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
