"""Throughput of the raster → polygons pipeline (reading, tiling, stitching, vectorising).

Uses the weight-free ``index-baseline`` segmenter, so the figures are the pipeline's own
overhead: a model's time adds on top. The input is the bundled NEON sample mosaicked to the
requested size (real texture, so vectorising has real work to do).

    .venv/bin/python bench/bench_pipeline.py --size 4096 --tile-size 1024 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio

from rs_reasoner.pipeline import SegmentationPipeline
from rs_reasoner.schemas import SegmentOptions, SegmentRequest
from rs_reasoner.vector import vectorize

SAMPLE = Path(__file__).resolve().parents[1] / "resources/sample_data/neon_osbs_rgb_10cm_utm17n.tif"


def mosaic(size: int, out: Path) -> Path:
    """Tile the sample (mirrored, so edges match) into a ``size`` x ``size`` GeoTIFF."""
    with rasterio.open(SAMPLE) as src:
        data = src.read()
        profile = src.profile
    tile = np.concatenate([data, data[:, ::-1]], axis=1)
    tile = np.concatenate([tile, tile[:, :, ::-1]], axis=2)
    reps = (1, -(-size // tile.shape[1]), -(-size // tile.shape[2]))
    big = np.tile(tile, reps)[:, :size, :size]
    profile.update(height=size, width=size, tiled=True, blockxsize=512, blockysize=512,
                   compress="deflate")
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(big)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096, help="raster side in pixels")
    parser.add_argument("--tile-size", type=int, default=1024)
    parser.add_argument("--overlap", type=int, default=128)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        path = mosaic(args.size, Path(tmp) / "mosaic.tif")
        request = SegmentRequest(
            raster=str(path), query="trees", model="index-baseline",
            options=SegmentOptions(tile_size=args.tile_size, overlap=args.overlap,
                                   min_area=0.5, simplify=0.1),
        )
        pipeline = SegmentationPipeline(device="cpu")
        pipeline.run(request, str(path))  # warm-up: model construction, GDAL caches
        times, stages = [], {}
        for _ in range(args.repeat):
            marks: dict[str, float] = {}

            def progress(stage: str, fraction: float, message: str | None,
                         marks: dict[str, float] = marks) -> None:
                marks.setdefault(stage, time.perf_counter())

            start = time.perf_counter()
            result = pipeline.run(request, str(path), progress=progress)
            end = time.perf_counter()
            times.append(end - start)
            stages = {
                "segmenting_s": round(marks["vectorising"] - marks["segmenting"], 3),
                "vectorising_s": round(marks["done"] - marks["vectorising"], 3),
            }
        # Vectorising alone, on a dense label raster of the same size.
        labels = (np.random.default_rng(0).random((args.size, args.size)) > 0.5).astype(np.int32)
        start = time.perf_counter()
        vectorize(labels, np.ones(labels.shape, np.float32), ["x"],
                  rasterio.transform.from_origin(0, 0, 1, 1), "EPSG:32617", min_area=0)
        noise_s = time.perf_counter() - start

    best = min(times)
    print(json.dumps({
        "machine": f"{platform.processor() or platform.machine()}, {platform.node()}",
        "size_px": args.size, "tile_size": args.tile_size, "overlap": args.overlap,
        "polygons": len(result.polygons),
        "best_s": round(best, 3), "median_s": round(sorted(times)[len(times) // 2], 3),
        "megapixels_per_s": round(args.size**2 / best / 1e6, 2),
        **stages,
        "vectorise_random_noise_s": round(noise_s, 3),
    }, indent=2))


if __name__ == "__main__":
    main()
