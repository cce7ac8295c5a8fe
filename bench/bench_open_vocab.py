"""End-to-end speed of open-vocabulary segmentation: read → CLIP windows → polygons.

Runs the production pipeline with the ``clip-openvocab`` segmenter. Without the CLIP
weights on disk (no downloads here) it uses the same ViT-B/16 architecture randomly
initialised (``--random-weights``, automatic when the weights are missing): the arithmetic,
memory and data flow are those of the real model, only the polygons are meaningless.
The input is the bundled NEON sample mirrored to ``--size`` pixels (real texture).

    .venv/bin/python bench/bench_open_vocab.py --size 1024            # CPU here
    .venv/bin/python bench/bench_open_vocab.py --size 8192 --device cuda
    .venv/bin/python bench/bench_open_vocab.py --random-weights --settings '{"cpu_fast": false}'

``--settings`` overrides fields of ``OpenVocabSettings`` on the random-weights model, to
compare a change with the defaults back to back (``{"cpu_fast": false}``: the exact CPU
path). Besides wall time it reports the process's CPU time: on a machine shared with
other jobs that is what the run itself cost, and ``size² / cpu_s`` is a floor for the
speed on an idle machine with as many cores (it counts the two threads' time twice).
bench/bench_clip_settings.py gives each shortcut's agreement with the exact path.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from rs_reasoner.pipeline import SegmentationPipeline
from rs_reasoner.schemas import Mode, SegmentOptions, SegmentRequest
from rs_reasoner.segmenters import registry
from rs_reasoner.weights import is_available

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_pipeline import mosaic  # noqa: E402

QUERY = "buildings, roads, water, trees, grass"


def register_random(settings: dict) -> str:
    """Register ViT-B/16 with random weights under a bench-only name."""
    from rs_reasoner.segmenters.open_vocab.training_free import ClipOpenVocabSegmenter

    def factory(device: str = "cpu") -> ClipOpenVocabSegmenter:
        torch.manual_seed(0)
        return ClipOpenVocabSegmenter.from_pretrained(
            device=device, pretrained=None, **settings
        )

    registry.register(registry.ModelSpec(
        name="bench-clip-random", modes=(Mode.open_vocabulary,),
        description="ViT-B/16 CLIP, random weights (benchmark only)", factory=factory,
    ))  # fmt: skip
    return "bench-clip-random"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024, help="raster side in pixels")
    parser.add_argument("--tile-size", type=int, default=1024)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--random-weights", action="store_true")
    parser.add_argument("--settings", type=json.loads, default={},
                        help="JSON object of OpenVocabSettings fields (random weights only)")
    args = parser.parse_args()

    spec = registry.get_spec("clip-openvocab")
    random_weights = args.random_weights or not all(is_available(w) for w in spec.weights)
    model = register_random(args.settings) if random_weights else spec.name
    with tempfile.TemporaryDirectory() as tmp:
        path = mosaic(args.size, Path(tmp) / "mosaic.tif")
        request = SegmentRequest(
            raster=str(path), query=QUERY, model=model,
            options=SegmentOptions(tile_size=args.tile_size, score_threshold=0.0, min_area=0.5),
        )
        pipeline = SegmentationPipeline(device=args.device)
        start = time.perf_counter()
        pipeline.run(request, str(path))  # warm-up: model load, text embeddings, kernels
        first_s = time.perf_counter() - start
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        times, cpu_times = [], []
        for _ in range(args.repeat):
            start, cpu_start = time.perf_counter(), time.process_time()
            result = pipeline.run(request, str(path))
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
            cpu_times.append(time.process_time() - cpu_start)
    best, best_cpu = min(times), min(cpu_times)
    gpu = {}
    if args.device.startswith("cuda"):
        gpu = {
            "gpu": torch.cuda.get_device_name(),
            "peak_gpu_memory_mib": round(torch.cuda.max_memory_allocated() / 2**20),
        }
    print(json.dumps({
        "machine": platform.machine(), "device": args.device, **gpu,
        "torch_threads": torch.get_num_threads(), "weights": "random" if random_weights else "real",
        "settings": args.settings, "load_average": round(os.getloadavg()[0], 1),
        "size_px": args.size, "tile_size": args.tile_size, "classes": QUERY,
        "first_run_s": round(first_s, 2), "best_s": round(best, 2),
        "megapixels_per_s": round(args.size**2 / best / 1e6, 3),
        "cpu_s": round(best_cpu, 2),
        "megapixels_per_cpu_s": round(args.size**2 / best_cpu / 1e6, 3),
        "polygons": len(result.polygons),
    }, indent=2))


if __name__ == "__main__":
    main()
