"""JobManager with a fake pipeline: queueing, progress, cancel, failures, eviction."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from rs_reasoner.errors import ExtentError, JobCancelled, RasterError
from rs_reasoner.schemas import Mode, SegmentRequest
from rs_reasoner.service.checks import ChecksBusy, CheckTimedOut
from rs_reasoner.service.job import MAX_MESSAGES, JobStatus
from rs_reasoner.service.jobs import JobManager, QueueFull
from rs_reasoner.service.limits import JobLimits


@dataclass
class FakeResult:
    polygons: Any
    model: str = "fake"
    mode: Mode = Mode.open_vocabulary
    reasoning: str | None = None
    messages: list[str] = field(default_factory=lambda: ["fake done"])


class FakePipeline:
    """Test double of SegmentationPipeline: behaviour chosen by the query text.

    ``ok`` succeeds; ``tiles:N`` reports N tiles, 20 ms each, honouring cancel;
    ``gate`` waits for ``self.gate``; ``user-error``/``bug`` raise; ``bad`` fails validate;
    ``stuck-check`` blocks validate until ``self.check_gate`` (a raster that never opens).
    ``loaded_models`` is ``["fake"]`` once a job ran, until ``unload``.
    """

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.check_gate = threading.Event()
        self.loaded: list[str] = []
        self.unloads = 0
        self.started = threading.Event()
        self.runs: list[str] = []
        self.active = 0
        self.max_active = 0
        self._lock = threading.Lock()

    def validate(self, request: SegmentRequest, raster_path: str) -> None:
        if request.query == "bad":
            raise ExtentError("The extent is outside the raster.", "Pick another extent.")
        if raster_path == "missing.tif":
            raise RasterError("missing.tif does not exist.")
        if request.query == "stuck-check":
            self.check_gate.wait(10)

    def loaded_models(self) -> list[str]:
        return list(self.loaded)

    def unload(self, name: str | None = None) -> None:
        self.unloads += 1
        self.loaded.clear()

    def run(self, request, raster_path, progress=None, cancel=None) -> FakeResult:
        progress = progress or (lambda *a: None)
        with self._lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            self.loaded[:] = ["fake"]
            self.runs.append(request.query)
            self.started.set()
            q = request.query
            progress("loading model", 0.0, "loading fake")
            if q.startswith("tiles:"):
                n = int(q.split(":")[1])
                for i in range(n):
                    if cancel is not None and cancel.is_set():
                        raise JobCancelled()
                    time.sleep(0.02)
                    progress("segmenting", (i + 1) / n, f"tile {i + 1}/{n}")
            elif q == "gate":
                assert self.gate.wait(5)
            elif q == "user-error":
                raise ExtentError("Nothing to read here.", "Move the extent.")
            elif q == "bug":
                raise ZeroDivisionError("division by zero")
            progress("vectorising", 1.0, None)
            return FakeResult(polygons=[q], reasoning="because" if q == "ok" else None)
        finally:
            with self._lock:
                self.active -= 1


def to_geojson(polygons: list[str]) -> dict:
    return {
        "type": "FeatureCollection",
        "crs": {"type": "name", "properties": {"name": "EPSG:32633"}},
        "features": [
            {"type": "Feature", "geometry": None, "properties": {"q": p}} for p in polygons
        ],
    }


def request(query: str = "ok", **kw) -> SegmentRequest:
    return SegmentRequest(raster="x.tif", query=query, **kw)


def stored_result(manager: JobManager, job) -> dict:
    fh = manager.open_result(job)
    assert fh is not None
    with fh:
        return json.load(fh)


def wait_for(job, statuses: set[str], timeout: float = 5.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = job.to_dict()
        if info["status"] in statuses:
            return info
        time.sleep(0.005)
    raise AssertionError(f"job stayed {job.to_dict()['status']}, wanted {statuses}")


@pytest.fixture
def pipeline() -> FakePipeline:
    return FakePipeline()


@pytest.fixture
def manager(pipeline: FakePipeline):
    m = JobManager(pipeline, to_geojson=to_geojson)
    yield m
    pipeline.gate.set()
    m.shutdown(timeout=5)


def test_success(manager: JobManager) -> None:
    job = manager.submit(request("ok", model="fake"), "x.tif")
    assert len(job.id) == 32 and int(job.id, 16) >= 0
    assert manager.get(job.id) is job
    info = wait_for(job, {"succeeded"})
    assert info["progress"] == 1.0
    assert info["error"] is None
    assert info["model"] == "fake"
    assert info["mode"] == "open_vocabulary"
    assert info["reasoning"] == "because"
    assert info["feature_count"] == 1
    assert info["created"] and info["started"] and info["finished"]
    assert info["created"] <= info["started"] <= info["finished"]
    assert "fake done" in info["messages"]
    result = stored_result(manager, job)
    assert result["features"][0]["properties"] == {"q": "ok"}
    assert result["crs"]["properties"]["name"] == "EPSG:32633"
    assert job.result is None  # segmentation results are on disk, not in memory


def test_validation_error_is_raised_synchronously(manager: JobManager) -> None:
    with pytest.raises(ExtentError, match="outside"):
        manager.submit(request("bad"), "x.tif")
    with pytest.raises(RasterError):
        manager.submit(request(), "missing.tif")
    assert manager.jobs() == []


def test_progress_and_stage_messages(manager: JobManager) -> None:
    job = manager.submit(request("tiles:10"), "x.tif")
    seen = []
    while job.to_dict()["status"] not in ("succeeded", "failed"):
        seen.append(job.to_dict()["progress"])
        time.sleep(0.005)
    assert seen == sorted(seen), "progress must not go backwards"
    assert all(0.0 <= p <= 1.0 for p in seen)
    messages = job.to_dict()["messages"]
    # One line for the segmenting stage, holding the last tile.
    tile_lines = [m for m in messages if m.startswith("segmenting")]
    assert tile_lines == ["segmenting: tile 10/10"]


def test_jobs_run_one_at_a_time_in_order(manager: JobManager, pipeline: FakePipeline) -> None:
    jobs = [manager.submit(request(f"tiles:{3}"), "x.tif") for _ in range(4)]
    for job in jobs:
        wait_for(job, {"succeeded"})
    assert pipeline.max_active == 1
    started = [j.started for j in jobs]
    assert started == sorted(started)


def test_cancel_queued_job_at_once(manager: JobManager, pipeline: FakePipeline) -> None:
    blocker = manager.submit(request("gate"), "x.tif")
    assert pipeline.started.wait(5)
    queued = manager.submit(request("ok"), "x.tif")
    assert queued.to_dict()["status"] == "queued"
    assert manager.queue_length() == 1
    assert manager.cancel(queued.id) is queued
    assert queued.to_dict()["status"] == "cancelled"
    assert manager.queue_length() == 0
    pipeline.gate.set()
    wait_for(blocker, {"succeeded"})
    time.sleep(0.05)
    assert pipeline.runs == ["gate"], "a cancelled queued job must never run"


def test_cancel_running_job(manager: JobManager) -> None:
    job = manager.submit(request("tiles:500"), "x.tif")
    wait_for(job, {"running"})
    t0 = time.monotonic()
    manager.cancel(job.id)
    assert job.to_dict()["cancel_requested"] is True
    info = wait_for(job, {"cancelled", "succeeded", "failed"})
    assert info["status"] == "cancelled"
    assert time.monotonic() - t0 < 1.0
    assert job.result is None
    # The worker keeps going.
    after = manager.submit(request("ok"), "x.tif")
    assert wait_for(after, {"succeeded", "failed"})["status"] == "succeeded"


def test_cancel_finished_and_unknown(manager: JobManager) -> None:
    job = manager.submit(request("ok"), "x.tif")
    wait_for(job, {"succeeded"})
    assert manager.cancel(job.id).to_dict()["status"] == "succeeded"
    assert manager.cancel("nope") is None
    assert manager.get("nope") is None


def test_user_error_and_bug_fail_job_but_worker_survives(manager: JobManager) -> None:
    user = manager.submit(request("user-error"), "x.tif")
    bug = manager.submit(request("bug"), "x.tif")
    ok = manager.submit(request("ok"), "x.tif")
    u = wait_for(user, {"failed", "succeeded"})
    assert u["status"] == "failed"
    assert u["error"] == {"detail": "Nothing to read here.", "hint": "Move the extent."}
    b = wait_for(bug, {"failed", "succeeded"})
    assert b["status"] == "failed"
    assert "ZeroDivisionError" in b["error"]["detail"]
    assert "Traceback" not in b["error"]["detail"]
    assert b["error"]["hint"]
    assert wait_for(ok, {"failed", "succeeded"})["status"] == "succeeded"


def test_converter_failure_fails_job(pipeline: FakePipeline) -> None:
    def broken(_):
        raise ValueError("cannot convert")

    m = JobManager(pipeline, to_geojson=broken)
    try:
        job = m.submit(request("ok"), "x.tif")
        info = wait_for(job, {"failed", "succeeded"})
        assert info["status"] == "failed"
        assert "cannot convert" in info["error"]["detail"]
    finally:
        m.shutdown()


def test_finished_jobs_are_bounded(pipeline: FakePipeline) -> None:
    m = JobManager(pipeline, max_finished=3, to_geojson=to_geojson)
    try:
        jobs = [m.submit(request("ok"), "x.tif") for _ in range(6)]
        wait_for(jobs[-1], {"succeeded"})
        time.sleep(0.05)
        kept = m.jobs()
        assert len(kept) == 3
        assert [j.id for j in kept] == [j.id for j in jobs[-3:]]
        assert m.get(jobs[0].id) is None
    finally:
        m.shutdown()


def test_messages_are_bounded(pipeline: FakePipeline, manager: JobManager) -> None:
    job = manager.submit(request("ok"), "x.tif")
    wait_for(job, {"succeeded"})
    for i in range(MAX_MESSAGES + 50):
        job._note(f"note {i}")
    messages = job.to_dict()["messages"]
    assert len(messages) == MAX_MESSAGES
    assert messages[-1] == f"note {MAX_MESSAGES + 49}"


def test_thread_safe_submit_and_poll(manager: JobManager) -> None:
    jobs: list = []
    lock = threading.Lock()

    def client() -> None:
        for _ in range(5):
            job = manager.submit(request("tiles:2"), "x.tif")
            with lock:
                jobs.append(job)
            job.to_dict()

    threads = [threading.Thread(target=client) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({j.id for j in jobs}) == 30
    for job in jobs:
        assert wait_for(job, {"succeeded", "failed"})["status"] == "succeeded"


def test_active_raster_paths(manager: JobManager, pipeline: FakePipeline) -> None:
    running = manager.submit(request("gate"), "a.tif")
    queued = manager.submit(request("ok"), "b.tif")
    assert pipeline.started.wait(5)
    assert manager.active_raster_paths() == {"a.tif", "b.tif"}
    assert manager.current() is running
    pipeline.gate.set()
    wait_for(queued, {"succeeded"})
    assert manager.active_raster_paths() == set()


def test_shutdown_cancels_and_refuses_new_jobs(pipeline: FakePipeline) -> None:
    m = JobManager(pipeline, to_geojson=to_geojson)
    running = m.submit(request("tiles:1000"), "x.tif")
    queued = m.submit(request("ok"), "x.tif")
    wait_for(running, {"running"})
    t0 = time.monotonic()
    m.shutdown(timeout=5)
    assert time.monotonic() - t0 < 2
    assert running.to_dict()["status"] == "cancelled"
    assert queued.to_dict()["status"] == "cancelled"
    with pytest.raises(Exception, match="shutting down"):
        m.submit(request("ok"), "x.tif")
    m.shutdown()  # idempotent


def test_job_status_values() -> None:
    assert [s.value for s in JobStatus] == [
        "queued",
        "running",
        "succeeded",
        "failed",
        "cancelled",
    ]
    assert JobStatus.cancelled.finished and not JobStatus.running.finished


def test_queue_is_bounded_and_refuses_with_429(pipeline: FakePipeline) -> None:
    m = JobManager(pipeline, to_geojson=to_geojson, limits=JobLimits(max_queued=2))
    try:
        running = m.submit(request("gate"), "x.tif")
        assert pipeline.started.wait(5)
        waiting = [m.submit(request("ok"), "x.tif") for _ in range(2)]
        with pytest.raises(QueueFull, match="queue is full: 2 jobs") as err:
            m.submit(request("ok"), "x.tif")
        assert err.value.status_code == 429 and "DELETE /jobs" in err.value.hint
        assert len(m.jobs()) == 3  # the refused one left no trace
        m.cancel(waiting[0].id)  # room again
        waiting.append(m.submit(request("ok"), "x.tif"))
        pipeline.gate.set()
        assert wait_for(running, {"succeeded"})["status"] == "succeeded"
        assert wait_for(waiting[-1], {"succeeded"})["status"] == "succeeded"
    finally:
        pipeline.gate.set()
        m.shutdown()


def test_job_past_its_time_limit_is_stopped_and_the_queue_goes_on(
    pipeline: FakePipeline,
) -> None:
    m = JobManager(
        pipeline, to_geojson=to_geojson, limits=JobLimits(segment_time_limit_s=0.3)
    )
    try:
        slow = m.submit(request("tiles:100000"), "x.tif")  # honours cancel between tiles
        after = m.submit(request("ok"), "x.tif")
        info = wait_for(slow, {"failed", "succeeded", "cancelled"})
        assert info["status"] == "failed" and slow.timed_out
        assert "time limit of 0.3 s" in info["error"]["detail"]
        assert "--job-time-limit" in info["error"]["hint"]
        assert wait_for(after, {"succeeded", "failed"})["status"] == "succeeded"
    finally:
        m.shutdown()


def test_job_that_ignores_its_time_limit_is_abandoned_to_a_new_worker(
    pipeline: FakePipeline,
) -> None:
    limits = JobLimits(segment_time_limit_s=0.2, stop_grace_s=0.2)
    m = JobManager(pipeline, to_geojson=to_geojson, limits=limits)
    try:
        stuck = m.submit(request("gate"), "x.tif")  # never checks cancel
        after = m.submit(request("ok"), "x.tif")
        info = wait_for(stuck, {"failed", "succeeded"})
        assert info["status"] == "failed" and "did not stop" in info["error"]["detail"]
        # A fresh worker runs the queue while the old one is still inside the job.
        assert wait_for(after, {"succeeded", "failed"})["status"] == "succeeded"
        assert pipeline.active == 1 and m.abandoned_workers() == 1
        pipeline.gate.set()  # the stuck call returns: its late result is dropped
        deadline = time.monotonic() + 5
        while pipeline.active and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.05)
        assert stuck.to_dict()["status"] == "failed" and m.open_result(stuck) is None
        assert m.current() is None
        again = m.submit(request("ok"), "x.tif")
        assert wait_for(again, {"succeeded", "failed"})["status"] == "succeeded"
    finally:
        pipeline.gate.set()
        m.shutdown()


def test_stuck_file_checks_time_out_and_are_bounded(pipeline: FakePipeline) -> None:
    limits = JobLimits(check_timeout_s=0.2, max_pending_checks=2)
    m = JobManager(pipeline, to_geojson=to_geojson, limits=limits)
    try:
        for _ in range(2):
            with pytest.raises(CheckTimedOut, match="took longer than 0.2 s") as err:
                m.submit(request("stuck-check"), "/mnt/dead-share/a.tif")
            assert err.value.status_code == 422 and "/mnt/dead-share/a.tif" in err.value.message
        # Both checks are still stuck: a third submission is refused at once.
        with pytest.raises(ChecksBusy) as busy:
            m.submit(request("ok"), "x.tif")
        assert busy.value.status_code == 429
        assert m.jobs() == []
        pipeline.check_gate.set()  # the stuck checks end and free their slots
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                job = m.submit(request("ok"), "x.tif")
                break
            except ChecksBusy:
                time.sleep(0.01)
        assert wait_for(job, {"succeeded", "failed"})["status"] == "succeeded"
    finally:
        pipeline.check_gate.set()
        m.shutdown()


def test_async_submit_waits_for_checks_without_a_thread(pipeline: FakePipeline) -> None:
    import asyncio

    limits = JobLimits(check_timeout_s=0.2)
    m = JobManager(pipeline, to_geojson=to_geojson, limits=limits)

    async def scenario() -> tuple[list[int], object]:
        ticks: list[int] = []

        async def ticker() -> None:  # the event loop keeps running during the check
            for i in range(1000):
                ticks.append(i)
                await asyncio.sleep(0.01)

        tick = asyncio.ensure_future(ticker())
        with pytest.raises(CheckTimedOut):
            await m.submit_async(request("stuck-check"), "x.tif")
        job = await m.submit_async(request("ok"), "x.tif")
        tick.cancel()
        return ticks, job

    try:
        ticks, job = asyncio.run(scenario())
        assert len(ticks) >= 5
        assert wait_for(job, {"succeeded", "failed"})["status"] == "succeeded"
    finally:
        pipeline.check_gate.set()
        m.shutdown()


def test_idle_models_are_freed(pipeline: FakePipeline) -> None:
    m = JobManager(pipeline, to_geojson=to_geojson, limits=JobLimits(model_idle_s=0.2))
    try:
        wait_for(m.submit(request("ok"), "x.tif"), {"succeeded"})
        assert pipeline.loaded == ["fake"]
        deadline = time.monotonic() + 5
        while pipeline.loaded and time.monotonic() < deadline:
            time.sleep(0.01)
        assert pipeline.loaded == [] and pipeline.unloads == 1
        time.sleep(0.5)
        assert pipeline.unloads == 1  # freed once, not every idle period
        wait_for(m.submit(request("ok"), "x.tif"), {"succeeded"})
        assert pipeline.loaded == ["fake"]
    finally:
        m.shutdown()


def test_results_live_on_disk_within_their_byte_limit(pipeline: FakePipeline, tmp_path) -> None:
    limits = JobLimits(result_store_bytes=600)  # room for about two results
    m = JobManager(
        pipeline, max_finished=4, to_geojson=to_geojson, limits=limits, result_dir=tmp_path
    )
    try:
        jobs = []
        for _ in range(5):
            jobs.append(m.submit(request("ok"), "x.tif"))
            wait_for(jobs[-1], {"succeeded"})
        files = sorted(tmp_path.glob("*.geojson"))
        assert 1 <= len(files) <= 3 and sum(f.stat().st_size for f in files) <= 600
        assert m.results.total_bytes() <= 600
        newest = stored_result(m, jobs[-1])
        assert newest["features"][0]["properties"] == {"q": "ok"}
        # The oldest result was deleted; its job is still known, without a result.
        assert m.get(jobs[1].id) is not None and m.open_result(jobs[1]) is None
    finally:
        m.shutdown()
    assert list(tmp_path.glob("*.geojson")) == []


def test_results_leave_with_their_jobs(pipeline: FakePipeline, tmp_path) -> None:
    m = JobManager(pipeline, max_finished=2, to_geojson=to_geojson, result_dir=tmp_path)
    try:
        jobs = [m.submit(request("ok"), "x.tif") for _ in range(4)]
        for job in jobs:
            wait_for(job, {"succeeded"})
        deadline = time.monotonic() + 5  # eviction follows the last job's end
        while len(list(tmp_path.glob("*.geojson"))) > 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        names = {f.stem for f in tmp_path.glob("*.geojson")}
        assert names == {jobs[2].id, jobs[3].id}
    finally:
        m.shutdown()
