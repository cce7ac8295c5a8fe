"""The HTTP service end to end: a real uvicorn process on loopback, real GeoTIFFs, the real
pipeline with the test-only segmenters (tests.support.segmenters).

A few app-level behaviours that need a misbehaving pipeline (500 handling) or a tiny upload
limit run in-process at the end with a test double of the pipeline.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from shapely.geometry import box, shape

from rs_reasoner import __version__
from rs_reasoner.errors import RsReasonerError
from rs_reasoner.service.server import check_host, is_loopback, serve
from rs_reasoner.service.state import read_state
from tests.support.rasters import UTM_TRANSFORM, scene_with_squares, write_geotiff

REPO = Path(__file__).resolve().parents[2]
PIXEL = 2.0  # UTM_TRANSFORM pixel size
SQUARES = [(50, 60, 40), (150, 250, 30)]  # (row, col, size) in the 300 x 400 scene
START_TIMEOUT = 60.0


# -- helpers -----------------------------------------------------------------------------


def square_box(row: int, col: int, size: int):
    x0, y0 = UTM_TRANSFORM @ (col, row)
    x1, y1 = UTM_TRANSFORM @ (col + size, row + size)
    return box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))


def assert_squares(collection: dict[str, Any], squares: list[tuple[int, int, int]]) -> None:
    """Each square comes back as one polygon whose corners are within half a pixel."""
    features = collection["features"]
    assert len(features) == len(squares), [f["geometry"] for f in features]
    geoms = [shape(f["geometry"]) for f in features]
    for sq in squares:
        expected = square_box(*sq)
        match = [g for g in geoms if g.intersects(expected)]
        assert len(match) == 1, (sq, [g.bounds for g in geoms])
        got = np.array(match[0].bounds)
        assert np.abs(got - np.array(expected.bounds)).max() <= PIXEL / 2, (
            match[0].bounds,
            expected.bounds,
        )


@dataclass
class Backend:
    proc: subprocess.Popen
    state_file: Path
    state: dict[str, Any]
    url: str
    token: str
    log: Path
    cache_home: Path

    def client(self, token: str | None = "default") -> httpx.Client:
        headers = {}
        token = self.token if token == "default" else token
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return httpx.Client(base_url=self.url, headers=headers, timeout=30.0)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def server_env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    paths = [str(REPO), str(REPO / "backend")]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env.update(
        PYTHONPATH=os.pathsep.join(paths),
        RS_REASONER_SEGMENTER_MODULES="tests.support.segmenters",
        XDG_STATE_HOME=str(tmp / "state"),
        XDG_CACHE_HOME=str(tmp / "cache"),
        PYTHONUNBUFFERED="1",
    )
    return env


def start_backend(tmp: Path, *extra: str) -> Backend:
    tmp.mkdir(parents=True, exist_ok=True)
    state_file = tmp / "backend.json"
    log = tmp / "server.log"
    with open(log, "wb") as log_fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "rs_reasoner.service.server", "--port", "0",
             "--state-file", str(state_file), "--device", "cpu", *extra],
            cwd=REPO,
            env=server_env(tmp),
            stdout=log_fh,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"backend exited with {proc.returncode}:\n{log.read_text()}")
        state = read_state(state_file)
        if state is not None:
            return Backend(
                proc=proc,
                state_file=state_file,
                state=state,
                url=state["url"],
                token=state["token"],
                log=log,
                cache_home=tmp / "cache",
            )
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"backend did not write its state file:\n{log.read_text()}")


def stop_backend(backend: Backend, sig: int = signal.SIGTERM) -> int:
    if backend.proc.poll() is None:
        backend.proc.send_signal(sig)
        try:
            backend.proc.wait(15)
        except subprocess.TimeoutExpired:
            backend.proc.kill()
            backend.proc.wait(5)
    return backend.proc.returncode


def wait_job(client: httpx.Client, job_id: str, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = client.get(f"/jobs/{job_id}")
        assert r.status_code == 200, r.text
        info = r.json()
        if info["status"] in ("succeeded", "failed", "cancelled"):
            return info
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish: {info}")


def submit(client: httpx.Client, body: dict[str, Any]) -> str:
    r = client.post("/jobs", json=body)
    assert r.status_code == 202, r.text
    out = r.json()
    assert set(out) >= {"id", "status"}
    assert out["status"] in ("queued", "running")
    return out["id"]


# -- fixtures ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rasters(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("rasters")
    big = scene_with_squares(height=1024, width=1024, squares=[(100, 100, 50), (700, 800, 60)])
    notes = d / "notes.tif"
    notes.write_text("this is not a raster\n")
    return {
        "scene": write_geotiff(d / "scene.tif", scene_with_squares(squares=SQUARES)),
        "other": write_geotiff(d / "other.tif", scene_with_squares(squares=[(20, 300, 24)])),
        "big": write_geotiff(d / "big.tif", big),
        "notes": notes,
    }


@pytest.fixture(scope="module")
def backend(tmp_path_factory) -> Backend:
    b = start_backend(tmp_path_factory.mktemp("backend"))
    yield b
    stop_backend(b)


@pytest.fixture
def client(backend: Backend) -> httpx.Client:
    with backend.client() as c:
        yield c


# -- auth --------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer"},
    ],
    ids=["missing", "wrong", "basic", "empty"],
)
@pytest.mark.parametrize(
    "method,path", [("GET", "/health"), ("GET", "/models"), ("POST", "/jobs"),
                    ("GET", "/jobs/abc"), ("GET", "/no-such-endpoint")]
)  # fmt: skip
def test_token_required(backend: Backend, headers, method, path) -> None:
    r = httpx.request(method, backend.url + path, headers=headers, json={}, timeout=10)
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    body = r.json()
    assert body["detail"] and "token" in (body["detail"] + body["hint"]).lower()


@pytest.mark.slow
def test_upload_needs_token(backend: Backend, rasters) -> None:
    r = httpx.post(
        backend.url + "/uploads",
        content=rasters["scene"].read_bytes(),
        headers={"Content-Type": "image/tiff"},
    )
    assert r.status_code == 401


@pytest.mark.slow
def test_openapi_and_docs_are_public(backend: Backend) -> None:
    r = httpx.get(backend.url + "/openapi.json")
    assert r.status_code == 200
    spec = r.json()
    assert spec["info"]["title"] == "RS Reasoner backend"
    assert spec["info"]["version"] == __version__
    assert {"/health", "/models", "/uploads", "/jobs", "/jobs/{job_id}",
            "/jobs/{job_id}/result"} <= set(spec["paths"])  # fmt: skip
    assert httpx.get(backend.url + "/docs").status_code == 200


# -- health, models, state ---------------------------------------------------------------


@pytest.mark.slow
def test_health(client: httpx.Client) -> None:
    r = client.get("/health")
    assert r.status_code == 200
    h = r.json()
    assert h["status"] == "ok"
    assert h["version"] == __version__
    assert h["device"] == "cpu"
    assert h["gpu_name"] is None and h["gpu_memory_total"] is None
    assert "gpu_memory_free" in h
    assert isinstance(h["loaded_models"], list)
    assert isinstance(h["queue_length"], int)


@pytest.mark.slow
def test_models(client: httpx.Client) -> None:
    r = client.get("/models")
    assert r.status_code == 200
    models = {m["name"]: m for m in r.json()["models"]}
    colour = models["test-colour"]
    assert colour["modes"] == ["open_vocabulary"]
    assert colour["default_for"] == ["open_vocabulary"]
    assert colour["weights"] == [] and colour["weights_available"] is True
    assert "colour" in colour["description"].lower()
    assert {"test-slow", "test-reasoning"} <= set(models)
    for m in models.values():
        for w in m["weights"]:
            assert w["repo_id"] and isinstance(w["available"], bool)
        assert m["weights_available"] == all(w["available"] for w in m["weights"])


@pytest.mark.slow
def test_state_file(backend: Backend) -> None:
    state = read_state(backend.state_file)
    assert state["pid"] == backend.proc.pid
    assert state["host"] == "127.0.0.1"
    assert isinstance(state["port"], int) and state["port"] > 0
    assert state["url"] == f"http://127.0.0.1:{state['port']}"
    assert len(state["token"]) >= 40
    assert state["version"] == __version__
    if os.name != "nt":
        assert stat.S_IMODE(backend.state_file.stat().st_mode) == 0o600
    log = backend.log_text()
    assert f"RS Reasoner backend on http://127.0.0.1:{state['port']}" in log
    assert str(backend.state_file) in log
    assert state["token"] not in log


# -- bad requests ------------------------------------------------------------------------

BAD_REQUESTS = {
    "missing raster": (
        lambda r: {"raster": str(r["scene"].parent / "nope.tif"), "query": "bright"},
        422,
        "nope.tif",
    ),
    "not a raster": (lambda r: {"raster": str(r["notes"]), "query": "bright"}, 422, "notes.tif"),
    "extent outside": (
        lambda r: {
            "raster": str(r["scene"]),
            "query": "bright",
            "extent": {"xmin": 0, "ymin": 0, "xmax": 10, "ymax": 10, "crs": "EPSG:32633"},
        },
        422,
        "extent",
    ),
    "inverted extent": (
        lambda r: {
            "raster": str(r["scene"]),
            "query": "bright",
            "extent": {"xmin": 10, "ymin": 0, "xmax": 0, "ymax": 10},
        },
        422,
        "extent: extent must have xmax > xmin",
    ),
    "empty query": (
        lambda r: {"raster": str(r["scene"]), "query": "   "},
        422,
        "query: query is empty",
    ),
    "unknown mode": (
        lambda r: {"raster": str(r["scene"]), "query": "bright", "mode": "telepathy"},
        422,
        "mode:",
    ),
    "huge tile size": (
        lambda r: {"raster": str(r["scene"]), "query": "bright", "options": {"tile_size": 10**9}},
        422,
        "options.tile_size",
    ),
    "overlap too large": (
        lambda r: {
            "raster": str(r["scene"]),
            "query": "bright",
            "options": {"tile_size": 256, "overlap": 200},
        },
        422,
        "overlap",
    ),
    "absurd resolution": (
        lambda r: {"raster": str(r["scene"]), "query": "bright", "options": {"resolution": 1e-5}},
        422,
        "coarser",
    ),
    "negative resolution": (
        lambda r: {"raster": str(r["scene"]), "query": "bright", "options": {"resolution": -1}},
        422,
        "options.resolution",
    ),
    "unknown option": (
        lambda r: {"raster": str(r["scene"]), "query": "bright", "options": {"speed": 11}},
        422,
        "options.speed",
    ),
    "unknown model": (
        lambda r: {"raster": str(r["scene"]), "query": "bright", "model": "no-such-model"},
        404,
        "no-such-model",
    ),
    "unknown upload": (
        lambda r: {"upload_id": "0123456789abcdef0123456789abcdef", "query": "bright"},
        404,
        "upload",
    ),
    "path-like upload id": (
        lambda r: {"upload_id": "../../etc/passwd", "query": "bright"},
        404,
        "upload",
    ),
    "raster and upload": (
        lambda r: {"raster": str(r["scene"]), "upload_id": "x", "query": "bright"},
        422,
        "exactly one",
    ),
    "no query": (lambda r: {"raster": str(r["scene"])}, 422, "query: Field required"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_request_gets_clear_4xx(client: httpx.Client, rasters, case: str) -> None:
    make, status, needle = BAD_REQUESTS[case]
    r = client.post("/jobs", json=make(rasters))
    assert r.status_code == status, r.text
    body = r.json()
    assert isinstance(body["detail"], str) and body["detail"]
    assert needle in body["detail"] + " " + (body.get("hint") or ""), body
    assert "Traceback" not in r.text
    assert client.get("/health").status_code == 200


@pytest.mark.slow
def test_invalid_json_body(client: httpx.Client) -> None:
    r = client.post("/jobs", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 422
    assert "not valid JSON" in r.json()["detail"]
    r = client.post("/jobs")
    assert r.status_code == 422
    assert "body is missing" in r.json()["detail"]


@pytest.mark.slow
def test_unknown_job(client: httpx.Client) -> None:
    for method, path in [
        ("GET", "/jobs/nope"),
        ("DELETE", "/jobs/nope"),
        ("GET", "/jobs/nope/result"),
    ]:
        r = client.request(method, path)
        assert r.status_code == 404
        assert "Unknown job 'nope'" in r.json()["detail"]


@pytest.mark.slow
def test_unknown_endpoint_and_method(client: httpx.Client) -> None:
    r = client.get("/nothing-here")
    assert r.status_code == 404 and "No such endpoint" in r.json()["detail"]
    r = client.put("/health")
    assert r.status_code == 405 and "not allowed" in r.json()["detail"]


# -- jobs --------------------------------------------------------------------------------


@pytest.mark.slow
def test_job_on_geotiff_returns_georeferenced_polygons(client: httpx.Client, rasters) -> None:
    job_id = submit(client, {"raster": str(rasters["scene"]), "query": "bright"})
    info = wait_job(client, job_id)
    assert info["status"] == "succeeded", info
    assert info["progress"] == 1.0
    assert info["model"] == "test-colour"
    assert info["mode"] == "open_vocabulary"
    assert info["feature_count"] == len(SQUARES)
    assert info["error"] is None and info["messages"]

    r = client.get(f"/jobs/{job_id}/result")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/geo+json")
    fc = r.json()
    assert fc["type"] == "FeatureCollection"
    assert "32633" in json.dumps(fc["crs"])
    assert_squares(fc, SQUARES)
    for f in fc["features"]:
        props = f["properties"]
        assert props["label"] == "bright"
        assert props["score"] == pytest.approx(0.9, abs=1e-3)
        assert props["query"] == "bright"
        assert props["mode"] == "open_vocabulary"
        assert props["model"] == "test-colour"

    assert "test-colour" in client.get("/health").json()["loaded_models"]
    assert client.get("/models").json()["models"]  # still fine with a model loaded
    # Deleting a finished job leaves it as it was.
    r = client.delete(f"/jobs/{job_id}")
    assert r.status_code == 200 and r.json()["status"] == "succeeded"


@pytest.mark.slow
def test_upload_then_job(client: httpx.Client, rasters) -> None:
    data = rasters["scene"].read_bytes()
    r = client.post("/uploads", content=data, headers={"Content-Type": "image/tiff"})
    assert r.status_code == 200, r.text
    upload_id = r.json()["upload_id"]
    assert r.json()["size"] == len(data)
    job_id = submit(client, {"upload_id": upload_id, "query": "bright"})
    assert wait_job(client, job_id)["status"] == "succeeded"
    assert_squares(client.get(f"/jobs/{job_id}/result").json(), SQUARES)
    # The upload can be reused.
    job_id = submit(client, {"upload_id": upload_id, "query": "bright"})
    assert wait_job(client, job_id)["status"] == "succeeded"


@pytest.mark.slow
def test_bad_uploads(client: httpx.Client, rasters) -> None:
    tiff = rasters["scene"].read_bytes()
    r = client.post("/uploads", content=tiff, headers={"Content-Type": "text/plain"})
    assert r.status_code == 415 and "image/tiff" in r.json()["detail"]
    r = client.post("/uploads", content=b"plain text", headers={"Content-Type": "image/tiff"})
    assert r.status_code == 422 and "not a raster" in r.json()["detail"]
    r = client.post(
        "/uploads", content=tiff[: len(tiff) // 2], headers={"Content-Type": "image/tiff"}
    )
    assert r.status_code == 422, r.text
    r = client.post("/uploads", content=b"", headers={"Content-Type": "image/tiff"})
    assert r.status_code == 422 and "empty" in r.json()["detail"]
    assert client.get("/health").status_code == 200


@pytest.mark.slow
def test_cancel_running_job(client: httpx.Client, rasters) -> None:
    body = {
        "raster": str(rasters["big"]),
        "query": "bright",
        "model": "test-slow",
        "options": {"tile_size": 256, "overlap": 32},
    }
    job_id = submit(client, body)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        info = client.get(f"/jobs/{job_id}").json()
        if info["status"] == "running":
            break
        time.sleep(0.02)
    assert info["status"] == "running", info
    r = client.get(f"/jobs/{job_id}/result")
    assert r.status_code == 409
    assert r.json()["status"] == "running"
    assert "not ready" in r.json()["detail"]

    time.sleep(0.3)  # let it get into its tiles
    t0 = time.monotonic()
    r = client.delete(f"/jobs/{job_id}")
    assert r.status_code == 200
    assert r.json()["cancel_requested"] is True
    info = wait_job(client, job_id, timeout=10)
    elapsed = time.monotonic() - t0
    assert info["status"] == "cancelled", info
    assert elapsed < 2.0, elapsed
    r = client.get(f"/jobs/{job_id}/result")
    assert r.status_code == 409 and r.json()["status"] == "cancelled"

    # The worker serves the next job.
    job_id = submit(client, {"raster": str(rasters["scene"]), "query": "bright"})
    assert wait_job(client, job_id)["status"] == "succeeded"


@pytest.mark.slow
def test_cancel_queued_job(client: httpx.Client, rasters) -> None:
    slow = submit(
        client,
        {
            "raster": str(rasters["big"]),
            "query": "bright",
            "model": "test-slow",
            "options": {"tile_size": 256, "overlap": 32},
        },
    )
    queued = submit(client, {"raster": str(rasters["scene"]), "query": "bright"})
    info = client.get(f"/jobs/{queued}").json()
    assert info["status"] == "queued"
    assert client.get("/health").json()["queue_length"] >= 1
    r = client.delete(f"/jobs/{queued}")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    r = client.get(f"/jobs/{queued}/result")
    assert r.status_code == 409 and r.json()["status"] == "cancelled"
    client.delete(f"/jobs/{slow}")
    assert wait_job(client, slow, timeout=10)["status"] == "cancelled"


@pytest.mark.slow
def test_failed_job_reports_error(client: httpx.Client, rasters) -> None:
    # Valid request, but the test segmenter refuses the class at run time.
    job_id = submit(client, {"raster": str(rasters["scene"]), "query": "purple"})
    info = wait_job(client, job_id)
    assert info["status"] == "failed"
    assert "purple" in info["error"]["detail"]
    r = client.get(f"/jobs/{job_id}/result")
    assert r.status_code == 409 and r.json()["status"] == "failed"
    assert "purple" in r.json()["detail"]


@pytest.mark.slow
def test_concurrent_jobs(backend: Backend, rasters) -> None:
    cases = {"scene": SQUARES, "other": [(20, 300, 24)]}
    results: dict[str, Any] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(cases))

    def one(name: str) -> None:
        try:
            with backend.client() as c:
                barrier.wait(5)
                job_id = submit(c, {"raster": str(rasters[name]), "query": "bright"})
                info = wait_job(c, job_id)
                assert info["status"] == "succeeded", info
                results[name] = c.get(f"/jobs/{job_id}/result").json()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(name,)) for name in cases]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    for name, squares in cases.items():
        assert_squares(results[name], squares)


# -- server lifecycle --------------------------------------------------------------------


def test_loopback_check() -> None:
    for host in ("127.0.0.1", "127.0.0.2", "localhost", "::1", "[::1]"):
        assert is_loopback(host), host
        check_host(host)
    for host in ("0.0.0.0", "192.168.1.10", "::", "example.com", ""):
        assert not is_loopback(host), host
        with pytest.raises(RsReasonerError, match="loopback") as err:
            check_host(host)
        assert "--allow-remote" in err.value.hint
    check_host("0.0.0.0", allow_remote=True)


def test_serve_refuses_non_loopback(tmp_path: Path) -> None:
    with pytest.raises(RsReasonerError, match="not a loopback address"):
        serve(host="0.0.0.0", port=0, state_file=tmp_path / "s.json")
    assert not (tmp_path / "s.json").exists()


@pytest.mark.slow
def test_server_main_refuses_non_loopback(tmp_path: Path) -> None:
    state = tmp_path / "s.json"
    proc = subprocess.run(
        [sys.executable, "-m", "rs_reasoner.service.server", "--host", "0.0.0.0",
         "--state-file", str(state)],
        cwd=REPO, env=server_env(tmp_path), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "not a loopback address" in proc.stderr
    assert "--allow-remote" in proc.stderr
    assert not state.exists()


@pytest.mark.slow
@pytest.mark.skipif(os.name == "nt", reason="POSIX signals")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_shutdown_removes_state_file(tmp_path: Path, rasters, sig: int) -> None:
    b = start_backend(tmp_path)
    with b.client() as c:
        assert c.get("/health").status_code == 200
        data = rasters["scene"].read_bytes()
        r = c.post("/uploads", content=data, headers={"Content-Type": "image/tiff"})
        assert r.status_code == 200
    uploads = list((b.cache_home / "rs-reasoner" / "uploads").rglob("*.tif"))
    assert len(uploads) == 1
    assert stop_backend(b, sig) == 0, b.log_text()
    assert not b.state_file.exists()
    assert not uploads[0].exists()
    assert "Traceback" not in b.log_text()


@pytest.mark.slow
def test_state_file_of_newer_server_is_kept(tmp_path: Path) -> None:
    b = start_backend(tmp_path)
    state = dict(b.state)
    state["pid"] = state["pid"] + 100000  # another server took the file over
    b.state_file.write_text(json.dumps(state))
    assert stop_backend(b) == 0
    assert b.state_file.exists()


@pytest.mark.slow
def test_port_in_use(tmp_path: Path, backend: Backend) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "rs_reasoner.service.server", "--port",
         str(backend.state["port"]), "--state-file", str(tmp_path / "s.json")],
        cwd=REPO, env=server_env(tmp_path), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "Cannot listen" in proc.stderr and "--port" in proc.stderr
    assert read_state(backend.state_file)["pid"] == backend.proc.pid


# -- in-process app behaviours (test double of the pipeline) -----------------------------


class _Pipeline:
    device = "cpu"

    def __init__(self, validate_error: BaseException | None = None) -> None:
        self.validate_error = validate_error

    def loaded_models(self) -> list[str]:
        return []

    def validate(self, request, raster_path) -> None:
        if self.validate_error is not None:
            raise self.validate_error

    def run(self, request, raster_path, progress=None, cancel=None):
        raise AssertionError("not used")


def _app_client(tmp_path: Path, pipeline: _Pipeline, **kw):
    from fastapi.testclient import TestClient

    from rs_reasoner.service.app import create_app

    app = create_app(pipeline, "tok", tmp_path / "uploads", **kw)
    return TestClient(app, base_url="http://127.0.0.1", raise_server_exceptions=False,
                      headers={"Authorization": "Bearer tok"})  # fmt: skip


def test_unexpected_error_is_500_json_and_app_keeps_serving(tmp_path: Path) -> None:
    pipeline = _Pipeline(validate_error=ZeroDivisionError("secret internals"))
    with _app_client(tmp_path, pipeline) as c:
        r = c.post("/jobs", json={"raster": "x.tif", "query": "bright"})
        assert r.status_code == 500
        body = r.json()
        assert body["detail"] == "Internal error: ZeroDivisionError."
        assert "secret internals" not in r.text and "Traceback" not in r.text
        assert c.get("/health").status_code == 200


def test_rs_error_from_validate_is_mapped(tmp_path: Path) -> None:
    from rs_reasoner.errors import MissingWeightsError

    pipeline = _Pipeline(validate_error=MissingWeightsError("no weights", "pull them"))
    with _app_client(tmp_path, pipeline) as c:
        r = c.post("/jobs", json={"raster": "x.tif", "query": "bright"})
        assert r.status_code == 409
        assert r.json() == {"detail": "no weights", "hint": "pull them"}


def test_upload_size_limit(tmp_path: Path) -> None:
    from rs_reasoner.service.uploads import UploadLimits

    with _app_client(tmp_path, _Pipeline(), upload_limits=UploadLimits(max_bytes=1000)) as c:
        r = c.post("/uploads", content=b"x" * 1001, headers={"Content-Type": "image/tiff"})
        assert r.status_code == 413
        assert "limit" in r.json()["detail"]

        def chunks():  # no Content-Length: the limit is enforced while streaming
            yield b"II*\x00"  # a TIFF's first bytes: only the size is wrong
            for _ in range(10):
                yield b"x" * 200

        r = c.post("/uploads", content=chunks(), headers={"Content-Type": "image/tiff"})
        assert r.status_code == 413
        assert [p for p in (tmp_path / "uploads").iterdir() if p.is_file()] == []  # results/
        assert c.get("/health").status_code == 200


def test_old_uploads_are_evicted(tmp_path: Path, rasters) -> None:
    from rs_reasoner.service import uploads as uploads_module

    data = rasters["other"].read_bytes()
    with _app_client(tmp_path, _Pipeline()) as c:
        c.app.state.uploads.limits = uploads_module.UploadLimits(max_kept=2)
        ids = []
        for _ in range(4):
            r = c.post("/uploads", content=data, headers={"Content-Type": "image/tiff"})
            assert r.status_code == 200, r.text
            ids.append(r.json()["upload_id"])
            time.sleep(0.02)
        kept = sorted(p.stem for p in (tmp_path / "uploads").glob("*.tif"))
        assert kept == sorted(ids[-2:])
        assert uploads_module.MAX_UPLOADS_KEPT >= 2
