"""Load and faults against a real ``rs-reasoner serve`` (CPU, loopback, token).

Sections (all by default, or name some with ``--only``):

* ``concurrent``: ``--clients`` threads each submit ``--jobs`` jobs on their own raster
  of known squares (the deterministic ``test-colour`` segmenter), poll them and fetch
  the results; every result must hold exactly its squares. Meanwhile one keep-alive
  connection polls ``GET /jobs/{id}`` of a running job: latency p50/p95/max.
* ``cancel``: a job over a 100,000² mosaic VRT whose single 8192² tile is read at 12
  source pixels per working pixel; ``DELETE`` once the tile has been reading for a
  second; seconds until the job is ``cancelled``.
* ``coarse_read``: one 1000² working tile of that mosaic at 100 source pixels per
  working pixel, read by the reader as it is and with decimation off (the old bilinear
  read of every source pixel).
* ``memory``: ``--memory-jobs`` jobs of about 10,000 polygons each; the backend's RSS
  (from ``/health``) before and after, and the disk the stored results take.

    .venv/bin/python bench/bench_service.py                     # everything (~10 min)
    .venv/bin/python bench/bench_service.py --only concurrent cancel
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
from typing import Any

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rs_reasoner.raster import ExtentReader, open_raster  # noqa: E402
from rs_reasoner.raster import reader as reader_module  # noqa: E402
from tests.backend.test_raster_reader import mosaic_vrt  # noqa: E402
from tests.support import live_backend  # noqa: E402
from tests.support.rasters import UTM_TRANSFORM, scene_with_squares, write_geotiff  # noqa: E402

SEGMENTERS = {"RS_REASONER_SEGMENTER_MODULES": "tests.support.segmenters"}


def percentiles(values: list[float]) -> dict[str, float]:
    values = sorted(values)
    return {
        "n": len(values),
        "p50_ms": round(statistics.median(values), 2),
        "p95_ms": round(values[int(0.95 * (len(values) - 1))], 2),
        "max_ms": round(values[-1], 2),
    }


def wait(c: httpx.Client, job_id: str, timeout: float = 600) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = c.get(f"/jobs/{job_id}").json()
        if info["status"] in ("succeeded", "failed", "cancelled"):
            return info
        time.sleep(0.05)
    raise RuntimeError(f"job {job_id} did not finish")


# -- concurrent jobs and poll latency --------------------------------------------------------


def client_squares(i: int) -> list[tuple[int, int, int]]:
    """Each client's raster has its own number and places of squares."""
    return [(20 + 60 * k, 30 + 37 * i % 200, 24) for k in range(1 + i % 4)]


def run_client(backend, raster: Path, squares, jobs: int, outcome: dict[str, int]) -> None:
    with backend.client() as c:
        for _ in range(jobs):
            r = c.post("/jobs", json={"raster": str(raster), "query": "bright",
                                      "model": "test-colour"})  # fmt: skip
            if r.status_code != 202:
                outcome["refused"] += 1
                continue
            info = wait(c, r.json()["id"])
            ok = info["status"] == "succeeded"
            if ok:
                features = c.get(f"/jobs/{info['id']}/result").json()["features"]
                ok = len(features) == len(squares) and all(
                    _matches(f["geometry"], squares) for f in features
                )
            outcome["correct" if ok else "wrong"] += 1


def _matches(geometry: dict[str, Any], squares) -> bool:
    xs = [p[0] for ring in geometry["coordinates"] for p in ring]
    ys = [p[1] for ring in geometry["coordinates"] for p in ring]
    for r, c, s in squares:
        x0, y0 = UTM_TRANSFORM @ (c, r + s)
        x1, y1 = UTM_TRANSFORM @ (c + s, r)
        if max(abs(min(xs) - x0), abs(max(xs) - x1), abs(min(ys) - y0),
               abs(max(ys) - y1)) <= 1.0:  # fmt: skip
            return True
    return False


def concurrent(tmp: Path, clients: int, jobs: int) -> dict[str, Any]:
    rasters = []
    for i in range(clients):
        squares = client_squares(i)
        data = scene_with_squares(height=600, width=600, squares=squares)
        rasters.append((write_geotiff(tmp / f"client{i}.tif", data), squares))
    slow = write_geotiff(tmp / "slow.tif", scene_with_squares(height=2048, width=2048))
    backend = live_backend.start(tmp / "concurrent", env=SEGMENTERS)
    try:
        outcome = {"correct": 0, "wrong": 0, "refused": 0}
        latencies: list[float] = []
        with backend.client() as poller:
            idle = []  # the same poll with no job running: this machine's floor
            for _ in range(300):
                start = time.perf_counter()
                poller.get("/jobs/0")
                idle.append((time.perf_counter() - start) * 1000)
            # A long job to poll while the clients' jobs queue behind and run.
            slow_id = poller.post("/jobs", json={
                "raster": str(slow), "query": "bright", "model": "test-slow",
                "options": {"tile_size": 256, "overlap": 0}}).json()["id"]  # fmt: skip
            threads = [
                threading.Thread(target=run_client, args=(backend, r, s, jobs, outcome))
                for r, s in rasters
            ]
            t0 = time.monotonic()
            for t in threads:
                t.start()
            while any(t.is_alive() for t in threads):
                start = time.perf_counter()
                r = poller.get(f"/jobs/{slow_id}")
                latencies.append((time.perf_counter() - start) * 1000)
                assert r.status_code == 200
                time.sleep(0.01)
            elapsed = time.monotonic() - t0
            poller.delete(f"/jobs/{slow_id}")
    finally:
        live_backend.stop(backend)
    return {
        "clients": clients,
        "jobs_per_client": jobs,
        **outcome,
        "seconds": round(elapsed, 1),
        "poll_GET_jobs_id_keepalive": percentiles(latencies),
        "poll_with_no_job_running": percentiles(idle),
    }


# -- cancel inside one huge tile ---------------------------------------------------------


def mosaic(tmp: Path) -> Path:
    blocks = np.random.default_rng(3).integers(0, 256, (10, 10), dtype=np.uint8)
    return mosaic_vrt(tmp, 100, np.kron(blocks, np.ones((100, 100), np.uint8)))


def cancel(tmp: Path, repeats: int) -> dict[str, Any]:
    path = mosaic(tmp)
    backend = live_backend.start(tmp / "cancel", env=SEGMENTERS)
    seconds = []
    try:
        with backend.client() as c:
            for _ in range(repeats):
                job = c.post("/jobs", json={
                    "raster": str(path), "query": "bright", "model": "test-colour",
                    "options": {"resolution": 12.0, "tile_size": 8192, "overlap": 0},
                }).json()["id"]  # fmt: skip
                while c.get(f"/jobs/{job}").json()["stage"] != "reading":
                    time.sleep(0.01)
                time.sleep(1.0)  # well inside the tile's read
                t0 = time.perf_counter()
                c.delete(f"/jobs/{job}")
                info = wait(c, job)
                seconds.append(time.perf_counter() - t0)
                assert info["status"] == "cancelled", info
    finally:
        live_backend.stop(backend)
    return {
        "tile": "8192² working px at 12 source px each (98,304² source window)",
        "cancel_to_cancelled_s": [round(s, 3) for s in seconds],
        "max_s": round(max(seconds), 3),
    }


# -- one coarse tile, decimated vs filtered ----------------------------------------------


def coarse_read(tmp: Path, old: bool) -> dict[str, Any]:
    path = mosaic(tmp)
    out: dict[str, Any] = {"tile": "1000² working px at 100 source px each"}
    with open_raster(path) as ds:
        reader = ExtentReader.open(ds, None, resolution=100.0)
        t0 = time.perf_counter()
        reader.read(0, 0, 1000, 1000)
        out["decimated_s"] = round(time.perf_counter() - t0, 3)
        if old:
            saved = reader_module.MAX_FILTER_FACTOR, reader_module.CHUNK_SOURCE_PIXELS
            reader_module.MAX_FILTER_FACTOR = float("inf")
            reader_module.CHUNK_SOURCE_PIXELS = 1 << 62
            try:
                t0 = time.perf_counter()
                reader.read(0, 0, 1000, 1000)
                out["filtered_every_pixel_s"] = round(time.perf_counter() - t0, 3)
            finally:
                reader_module.MAX_FILTER_FACTOR, reader_module.CHUNK_SOURCE_PIXELS = saved
    return out


# -- memory after many large results ---------------------------------------------------------


def memory(tmp: Path, jobs: int) -> dict[str, Any]:
    squares = [(4 + 10 * r, 4 + 10 * c, 5) for r in range(100) for c in range(100)]
    raster = write_geotiff(tmp / "many.tif", scene_with_squares(1004, 1004, squares))
    backend = live_backend.start(tmp / "memory", env=SEGMENTERS)
    try:
        with backend.client() as c:
            before = c.get("/health").json()
            features, rss = [], []
            for i in range(jobs):
                job = c.post("/jobs", json={"raster": str(raster), "query": "bright",
                                            "model": "test-colour"}).json()["id"]  # fmt: skip
                features.append(wait(c, job)["feature_count"])
                if (i + 1) % 10 == 0:
                    rss.append(round(c.get("/health").json()["memory_rss"] / 1024**2, 1))
            after = c.get("/health").json()
    finally:
        live_backend.stop(backend)
    mib = 1024**2
    return {
        "jobs": jobs,
        "features_per_job": features[0],
        "rss_before_mib": round(before["memory_rss"] / mib, 1),
        "rss_after_mib": round(after["memory_rss"] / mib, 1),
        "rss_every_10_jobs_mib": rss,
        "peak_rss_mib": round(after["memory_peak_rss"] / mib, 1),
        "results_on_disk_mib": round(after["results_disk_bytes"] / mib, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+",
                        choices=["concurrent", "cancel", "coarse_read", "memory"])  # fmt: skip
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--jobs", type=int, default=10, help="jobs per client")
    parser.add_argument("--cancel-repeats", type=int, default=5)
    parser.add_argument("--memory-jobs", type=int, default=30)
    parser.add_argument("--skip-old-read", action="store_true",
                        help="do not time the old filtered read (tens of seconds)")
    args = parser.parse_args()
    only = set(args.only or ["concurrent", "cancel", "coarse_read", "memory"])
    summary: dict[str, Any] = {
        "machine": f"{platform.system()} {platform.machine()}, python {platform.python_version()}"
    }
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        if "concurrent" in only:
            summary["concurrent"] = concurrent(tmp, args.clients, args.jobs)
        if "cancel" in only:
            summary["cancel"] = cancel(tmp, args.cancel_repeats)
        if "coarse_read" in only:
            summary["coarse_read"] = coarse_read(tmp, old=not args.skip_old_read)
        if "memory" in only:
            summary["memory"] = memory(tmp, args.memory_jobs)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
