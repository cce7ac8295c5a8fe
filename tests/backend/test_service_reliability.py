"""The HTTP side under files that never open, a full queue and results kept on disk.

The app runs in uvicorn on a loopback socket in this process (so the job limits can be
small); the pipeline is the real one where files matter and a test double where only the
queue does.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from rs_reasoner.errors import JobCancelled
from rs_reasoner.pipeline import SegmentationPipeline
from rs_reasoner.service.app import create_app
from rs_reasoner.service.limits import JobLimits
from rs_reasoner.service.server import _bind
from tests.support.rasters import scene_with_squares, write_geotiff

TOKEN = "reliability-token"


@contextlib.contextmanager
def served(app: Any) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free loopback port in a thread; yields its URL."""
    sock = _bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()


def client(url: str, timeout: float = 30.0) -> httpx.Client:
    return httpx.Client(
        base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=timeout
    )


class GatedPipeline:
    """Test double: jobs succeed with one feature; query ``wait`` blocks on ``gate``."""

    device = "cpu"

    def __init__(self) -> None:
        self.gate = threading.Event()

    def loaded_models(self) -> list[str]:
        return []

    def validate(self, request, raster_path) -> None:
        pass

    def run(self, request, raster_path, progress=None, cancel=None):
        if request.query == "wait":
            while not self.gate.wait(0.01):
                if cancel is not None and cancel.is_set():
                    raise JobCancelled()

        class Result:
            polygons = None
            model = "gated"
            mode = None
            reasoning = None
            messages: list[str] = []

        return Result()


def one_feature(_polygons) -> dict[str, Any]:
    return {
        "type": "FeatureCollection",
        "features": [{"type": "Feature", "geometry": None, "properties": {"n": "x" * 200}}],
    }


def wait_status(c: httpx.Client, job_id: str, statuses: set[str], timeout=30.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = c.get(f"/jobs/{job_id}").json()
        if info["status"] in statuses:
            return info
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} stayed {info['status']}")


@pytest.fixture
def fifo_vrt(tmp_path: Path) -> Iterator[Path]:
    """A VRT whose only source is a FIFO: it opens, but reading a pixel waits for a
    writer forever. Afterwards a writer comes and goes, so blocked reads end."""
    if not hasattr(os, "mkfifo"):
        pytest.skip("needs FIFOs (POSIX)")
    fifo = tmp_path / "pipe.tif"
    os.mkfifo(fifo)
    vrt = tmp_path / "pipe.vrt"
    vrt.write_text(
        '<VRTDataset rasterXSize="64" rasterYSize="64"><VRTRasterBand dataType="Byte" '
        f'band="1"><SimpleSource><SourceFilename>{fifo}</SourceFilename>'
        "<SourceBand>1</SourceBand></SimpleSource></VRTRasterBand></VRTDataset>"
    )
    yield vrt
    for _ in range(50):  # every blocked open gets its end of file
        try:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            break
        time.sleep(0.01)


def test_rasters_that_never_open_cannot_block_health(tmp_path: Path, fifo_vrt: Path) -> None:
    limits = JobLimits(check_timeout_s=1.0, max_pending_checks=4)
    app = create_app(
        SegmentationPipeline(device="cpu"), TOKEN, tmp_path / "uploads", job_limits=limits,
        isolate_checks=True,
    )
    fifo = fifo_vrt.with_suffix(".tif")
    bodies = [{"raster": str(fifo_vrt if i % 3 else fifo), "query": "trees"} for i in range(45)]
    with served(app) as url, client(url) as c, ThreadPoolExecutor(45) as pool:
        pending = [pool.submit(post_status, url, body) for body in bodies]
        time.sleep(0.5)
        health = c.get("/health", timeout=5)  # while the checks are stuck
        answers = [f.result() for f in pending]
        assert health.status_code == 200
        # Each is refused (422: not a regular file, or its check timed out) or, while
        # every check slot is taken, turned away at once (429). None hangs, none queues.
        assert set(answers) <= {422, 429} and answers.count(422) >= limits.max_pending_checks
        assert c.get("/health").json()["queue_length"] == 0
        body = c.post("/jobs", json={"raster": str(fifo), "query": "trees"}).json()
        assert "not a regular file" in body["detail"]
        body = c.post("/jobs", json={"raster": str(fifo_vrt), "query": "trees"}).json()
        assert "took longer than 1 s" in body["detail"]
        assert c.get("/health", timeout=5).status_code == 200


def post_status(url: str, body: dict[str, Any]) -> int:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    return httpx.post(url + "/jobs", json=body, headers=headers, timeout=60).status_code


def test_a_check_that_times_out_says_why(tmp_path: Path, fifo_vrt: Path) -> None:
    limits = JobLimits(check_timeout_s=0.5)
    app = create_app(
        SegmentationPipeline(device="cpu"), TOKEN, tmp_path / "uploads", job_limits=limits,
        isolate_checks=True,
    )
    with served(app) as url, client(url) as c:
        r = c.post("/jobs", json={"raster": str(fifo_vrt), "query": "trees"})
        assert r.status_code == 422
        assert "took longer than 0.5 s" in r.json()["detail"]
        assert "local disk" in r.json()["hint"]


def test_full_queue_is_a_429_with_advice(tmp_path: Path) -> None:
    pipeline = GatedPipeline()
    app = create_app(pipeline, TOKEN, tmp_path / "uploads", job_limits=JobLimits(max_queued=2))
    app.state.jobs._to_geojson = one_feature
    with served(app) as url, client(url) as c:
        running = c.post("/jobs", json={"raster": "a.tif", "query": "wait"}).json()["id"]
        wait_status(c, running, {"running"})
        queued = [c.post("/jobs", json={"raster": "a.tif", "query": "ok"}) for _ in range(2)]
        assert [r.status_code for r in queued] == [202, 202]
        full = c.post("/jobs", json={"raster": "a.tif", "query": "ok"})
        assert full.status_code == 429
        assert "queue is full" in full.json()["detail"] and full.json()["hint"]
        assert c.get("/health").json()["queue_length"] == 2
        pipeline.gate.set()
        for r in queued:
            assert wait_status(c, r.json()["id"], {"succeeded"})["status"] == "succeeded"


def test_results_are_streamed_from_disk_and_old_ones_answer_410(tmp_path: Path) -> None:
    pipeline = GatedPipeline()
    limits = JobLimits(result_store_bytes=500)  # room for one ~300-byte result
    app = create_app(pipeline, TOKEN, tmp_path / "uploads", job_limits=limits)
    app.state.jobs._to_geojson = one_feature
    with served(app) as url, client(url) as c:
        ids = []
        for _ in range(3):
            ids.append(c.post("/jobs", json={"raster": "a.tif", "query": "ok"}).json()["id"])
            wait_status(c, ids[-1], {"succeeded"})
        newest = c.get(f"/jobs/{ids[-1]}/result")
        assert newest.status_code == 200
        assert newest.headers["content-type"].startswith("application/geo+json")
        assert int(newest.headers["content-length"]) == len(newest.content)
        assert newest.json()["features"][0]["properties"]["n"] == "x" * 200
        gone = c.get(f"/jobs/{ids[0]}/result")
        assert gone.status_code == 410 and "deleted" in gone.json()["detail"]
        files = list((tmp_path / "uploads" / "results").glob("*.geojson"))
        assert [f.stem for f in files] == [ids[-1]]
        health = c.get("/health").json()
        assert health["results_disk_bytes"] == files[0].stat().st_size
        if os.path.exists("/proc/self/statm"):
            assert health["memory_rss"] > 10 * 1024**2
            assert health["memory_peak_rss"] >= health["memory_rss"]


def test_job_past_its_time_limit_fails_with_the_limit_named(tmp_path: Path) -> None:
    pipeline = GatedPipeline()
    limits = JobLimits(segment_time_limit_s=0.5)
    app = create_app(pipeline, TOKEN, tmp_path / "uploads", job_limits=limits)
    with served(app) as url, client(url) as c:
        job = c.post("/jobs", json={"raster": "a.tif", "query": "wait"}).json()["id"]
        info = wait_status(c, job, {"failed", "succeeded", "cancelled"})
        assert info["status"] == "failed"
        assert "time limit of 0.5 s" in info["error"]["detail"]
        assert "--job-time-limit" in info["error"]["hint"]
        r = c.get(f"/jobs/{job}/result")
        assert r.status_code == 409 and "time limit" in r.json()["detail"]


def test_real_job_result_is_streamed(tmp_path: Path) -> None:
    raster = write_geotiff(tmp_path / "scene.tif", scene_with_squares())
    app = create_app(SegmentationPipeline(device="cpu"), TOKEN, tmp_path / "uploads")
    with served(app) as url, client(url) as c:
        body = {"raster": str(raster), "query": "trees, water", "model": "index-baseline"}
        job = c.post("/jobs", json=body).json()["id"]
        info = wait_status(c, job, {"succeeded", "failed"})
        assert info["status"] == "succeeded", info
        result = c.get(f"/jobs/{job}/result").json()
        assert result["type"] == "FeatureCollection"
        assert len(result["features"]) == info["feature_count"]
        assert result["crs"]["properties"]["name"].endswith("32633")


@pytest.mark.parametrize(
    ("flags", "named"),
    [(["--job-time-limit", "-5"], "job_time_limit"), (["--port", "70000"], "port"),
     (["--max-queued-jobs", "0"], "max_queued_jobs")],
)  # fmt: skip
def test_serve_refuses_out_of_bounds_limits_without_a_traceback(
    tmp_path: Path, flags: list[str], named: str
) -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "rs_reasoner.service.server", "--state-file",
         str(tmp_path / "s.json"), *flags],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.startswith("error: ") and named in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "s.json").exists()


def _children(pid: int) -> set[int]:
    """Pids of the processes whose parent is ``pid`` (Linux /proc)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = (entry / "stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    found.add(int(entry.name))
    return found


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_a_stuck_check_dies_with_a_killed_server(tmp_path: Path, fifo_vrt: Path) -> None:
    import signal

    from tests.support import live_backend

    backend = live_backend.start(tmp_path / "backend")
    try:
        body = {"raster": str(fifo_vrt), "query": "trees"}
        with ThreadPoolExecutor(1) as pool:
            headers = {"Authorization": f"Bearer {backend.token}"}
            pending = pool.submit(
                lambda: httpx.post(backend.url + "/jobs", json=body, headers=headers, timeout=60)
            )
            time.sleep(5)  # the check is now stuck reading the FIFO in a child process
            children = _children(backend.proc.pid)
            assert children
            backend.proc.send_signal(signal.SIGKILL)
            backend.proc.wait(10)
            with contextlib.suppress(httpx.HTTPError):
                pending.result()
        deadline = time.monotonic() + 10
        alive = children
        while alive and time.monotonic() < deadline:
            time.sleep(0.1)
            alive = {p for p in children if Path(f"/proc/{p}").exists()
                     and "(Z)" not in Path(f"/proc/{p}/stat").read_text()[:200]}  # fmt: skip
        assert not alive, "check processes outlived the killed server"
    finally:
        for pid in _children(1) & locals().get("children", set()):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        live_backend.stop(backend)
