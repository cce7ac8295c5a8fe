"""The long fuzz run (``make fuzz``): schema-driven requests to a real ``rs-reasoner serve``.

Starts a backend on loopback (CPU), sends ``--examples`` generated requests per operation
and generation mode (positive: fitting the schema; negative: breaking it) with the token,
half of them aimed at a real raster, real and corrupted TIFF bytes and the jobs made
(tests/support/fuzz.py), then waits for the accepted jobs and checks that none crashed
and that the backend still answers. Prints a JSON summary; exits 1 on any 5xx, crashed
job or dead backend.

    .venv/bin/python bench/fuzz_service.py --examples 160   # 17 operations: 5,440 requests
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support import live_backend  # noqa: E402
from tests.support.fuzz import Targets, fuzz  # noqa: E402
from tests.support.rasters import scene_with_squares, write_geotiff  # noqa: E402


def settle(backend: live_backend.LiveBackend, job_ids: list[str], timeout: float) -> dict:
    """Wait for the queue to empty; count the accepted jobs' outcomes."""
    outcome: dict[str, int] = {}
    crashed: list[str] = []
    with backend.client() as c:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            health = c.get("/health").json()
            if not health["queue_length"] and not health["running_job"]:
                break
            time.sleep(0.5)
        for job_id in job_ids:
            r = c.get(f"/jobs/{job_id}")
            status = "evicted" if r.status_code == 404 else r.json()["status"]
            outcome[status] = outcome.get(status, 0) + 1
            if r.status_code == 200 and "Internal error" in str(r.json()["error"]):
                crashed.append(f"{job_id}: {r.json()['error']}")
        health = c.get("/health").json()
    return {"jobs": outcome, "crashed": crashed, "health_after": health}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=160,
                        help="requests per operation and mode (default: 160)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        raster = write_geotiff(Path(tmp) / "scene.tif", scene_with_squares())
        backend = live_backend.start(Path(tmp) / "backend")
        try:
            targets = Targets(raster=str(raster), tiff=raster.read_bytes())
            report = fuzz(backend.url, backend.token, args.examples, args.seed, targets)
            settled = settle(backend, targets.job_ids, timeout=600)
            alive = backend.alive()
        finally:
            code = live_backend.stop(backend)
    summary = {
        "machine": f"{platform.system()} {platform.machine()}, python {platform.python_version()}",
        **report.summary(),
        "server_error_samples": report.server_errors[:10],
        "jobs_accepted": len(targets.job_ids),
        "uploads_stored": len(targets.upload_ids),
        **settled,
        "alive_after": alive,
        "exit_code": code,
    }
    print(json.dumps(summary, indent=1))
    failed = report.server_errors or settled["crashed"] or not alive
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
