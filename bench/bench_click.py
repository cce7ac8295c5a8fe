"""Click-to-segment latency: one image encoding per session, then per-click cost.

SAM 2.1 at its real input side (1024²) with random weights (no checkpoint can be
downloaded here; the compute is that of the real model), on the NEON sample (400 x 400
at 10 cm) read as the plugin's session would. For each click: ``decode_ms`` (SAM's prompt
encoder + mask decoder, upsampling to the image), ``total_ms`` (plus vectorising and
GeoJSON), and over HTTP (``http_ms``: what the plugin waits for, on loopback).

    .venv/bin/python bench/bench_click.py --variant small --clicks 20 --device cpu

The target for a GPU is < 150 ms per click (``http_ms``); run this with ``--device cuda``
on one to measure it.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import rasterio
import torch
import uvicorn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rs_reasoner.interactive.predictors import SamPredictors  # noqa: E402
from rs_reasoner.pipeline import SegmentationPipeline  # noqa: E402
from rs_reasoner.segmenters.reasoning.sam import build_sam2_model  # noqa: E402
from rs_reasoner.service.app import create_app  # noqa: E402
from rs_reasoner.service.server import _bind  # noqa: E402

TOKEN = "bench-token"
DEFAULT_RASTER = REPO.parent / "shared" / "data" / "neon_osbs_rgb_10cm_utm17n.tif"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", default="small", help="SAM 2.1 size (tiny, small, ...)")
    ap.add_argument("--clicks", type=int, default=20)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--raster", type=Path, default=DEFAULT_RASTER)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    def build() -> torch.nn.Module:
        torch.manual_seed(0)
        return build_sam2_model(args.variant, None, args.device)

    app = create_app(SegmentationPipeline(device=args.device), TOKEN, Path(tempfile.mkdtemp()))
    app.state.interactive._source = SamPredictors(args.device, args.variant, build=build)
    sock = _bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    while not server.started:
        time.sleep(0.01)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    with rasterio.open(args.raster) as ds:
        b = ds.bounds
    extent = {"xmin": b.left, "ymin": b.bottom, "xmax": b.right, "ymax": b.top}
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"},
                      timeout=600) as client:
        t0 = time.perf_counter()
        r = client.post("/interactive/sessions", json={"raster": str(args.raster),
                                                       "extent": extent})
        r.raise_for_status()
        session = r.json()
        first_ms = (time.perf_counter() - t0) * 1000  # includes building the model
        t0 = time.perf_counter()
        r = client.post("/interactive/sessions", json={"raster": str(args.raster),
                                                       "extent": extent})
        session = r.json()
        session_ms = (time.perf_counter() - t0) * 1000
        decode, total, http = [], [], []
        w, h = b.right - b.left, b.top - b.bottom
        for k in range(args.clicks + 2):
            x = b.left + w * (0.1 + 0.8 * ((k * 0.37) % 1))
            y = b.bottom + h * (0.1 + 0.8 * ((k * 0.61) % 1))
            points = [{"x": x, "y": y}] if k % 2 else [
                {"x": x, "y": y}, {"x": x + w * 0.05, "y": y, "positive": False}]
            t0 = time.perf_counter()
            r = client.post(f"/interactive/sessions/{session['id']}/prompt",
                            json={"points": points})
            r.raise_for_status()
            if k < 2:
                continue  # warm-up
            http.append((time.perf_counter() - t0) * 1000)
            decode.append(r.json()["decode_ms"])
            total.append(r.json()["total_ms"])
    server.should_exit = True
    print(json.dumps({
        "variant": args.variant,
        "device": args.device,
        "cpu": platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "image": [session["width"], session["height"]],
        "first_session_ms_with_model_build": round(first_ms),
        "session_ms": round(session_ms),
        "encode_ms": session["encode_ms"],
        "clicks": args.clicks,
        "decode_ms_median": round(statistics.median(decode), 1),
        "total_ms_median": round(statistics.median(total), 1),
        "http_ms_median": round(statistics.median(http), 1),
        "http_ms_max": round(max(http), 1),
    }, indent=2))


if __name__ == "__main__":
    main()
