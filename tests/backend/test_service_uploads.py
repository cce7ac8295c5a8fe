"""``POST /uploads``: GeoTIFF bytes only, bounded disk, no stalled bodies, no server paths."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import rasterio
import uvicorn
from fastapi.testclient import TestClient
from rasterio.shutil import copy as rio_copy

from rs_reasoner.service.app import create_app
from rs_reasoner.service.deps import get_jobs
from rs_reasoner.service.uploads import UploadLimits
from tests.support.rasters import UTM_CRS, UTM_TRANSFORM, scene_with_squares, write_geotiff

TOKEN = "tok"
TIFF = {"Content-Type": "image/tiff"}


class _Pipeline:
    device = "cpu"

    def loaded_models(self) -> list[str]:
        return []


class _Jobs:
    """The job manager as the upload route sees it: which upload files jobs still need."""

    def __init__(self) -> None:
        self.in_use: set[str] = set()

    def active_raster_paths(self) -> set[str]:
        return set(self.in_use)


@pytest.fixture
def scene(tmp_path: Path) -> Path:
    return write_geotiff(tmp_path / "scene.tif", scene_with_squares(squares=[(50, 60, 40)]))


@contextlib.contextmanager
def app_client(tmp_path: Path, limits: UploadLimits | None = None) -> Iterator[TestClient]:
    app = create_app(_Pipeline(), TOKEN, tmp_path / "uploads", upload_limits=limits)
    jobs = _Jobs()
    app.dependency_overrides[get_jobs] = lambda: jobs
    app.state.fake_jobs = jobs
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with TestClient(app, base_url="http://127.0.0.1", headers=headers) as client:
        yield client


def uploaded(tmp_path: Path) -> list[str]:
    """Upload files kept or being received (the folder holds job results too)."""
    folder = tmp_path / "uploads"
    return sorted(p.name for p in folder.iterdir() if p.suffix in (".tif", ".part"))


def test_a_geotiff_and_a_bigtiff_are_accepted(tmp_path: Path, scene: Path) -> None:
    big = tmp_path / "big.tif"
    with rasterio.open(big, "w", driver="GTiff", BIGTIFF="YES", width=40, height=30, count=1,
                       dtype="uint8", crs=UTM_CRS, transform=UTM_TRANSFORM) as dst:  # fmt: skip
        dst.write(np.full((1, 30, 40), 7, np.uint8))
    assert big.read_bytes()[:4] == b"II+\x00"
    with app_client(tmp_path) as c:
        for path in (scene, big):
            r = c.post("/uploads", content=path.read_bytes(), headers=TIFF)
            assert r.status_code == 200, r.text
            assert r.json()["size"] == path.stat().st_size
    assert len(uploaded(tmp_path)) == 2


def test_a_vrt_and_other_formats_are_refused(tmp_path: Path, scene: Path) -> None:
    """A VRT names other files (any local path the server can read); GDAL would open it."""
    vrt, png = tmp_path / "local.vrt", tmp_path / "scene.png"
    rio_copy(scene, vrt, driver="VRT")
    text = vrt.read_text().replace('relativeToVRT="1">scene.tif', f'relativeToVRT="0">{scene}')
    vrt.write_text(text)  # naming a server-side file by its absolute path
    assert str(scene) in text
    rio_copy(scene, png, driver="PNG")
    with app_client(tmp_path) as c:
        for path in (vrt, png):
            r = c.post("/uploads", content=path.read_bytes(), headers=TIFF)
            assert r.status_code == 422, r.text
            assert "only GeoTIFF files are" in r.json()["detail"]
        r = c.post("/uploads", content=b"II", headers=TIFF)  # shorter than a signature
        assert r.status_code == 422 and "only GeoTIFF" in r.json()["detail"]
        assert c.get("/openapi.json").status_code == 200  # still serving
    assert uploaded(tmp_path) == []


def test_a_bad_geotiff_is_a_422_that_names_no_server_path(tmp_path: Path, scene: Path) -> None:
    data = scene.read_bytes()
    with app_client(tmp_path) as c:
        for body in (data[: len(data) // 2], data[:4] + b"\0" * 200):
            r = c.post("/uploads", content=body, headers=TIFF)
            assert r.status_code == 422, r.text
            assert "not a raster GDAL can read" in r.json()["detail"]
            for internal in (str(tmp_path), "uploads", ".part", "/"):
                assert internal not in r.json()["detail"], r.json()["detail"]
    assert uploaded(tmp_path) == []


def test_the_oldest_unused_uploads_make_room(tmp_path: Path, scene: Path) -> None:
    data = scene.read_bytes()
    limits = UploadLimits(store_bytes=int(2.5 * len(data)), min_free_bytes=0)
    with app_client(tmp_path, limits) as c:
        ids = []
        for _ in range(4):
            r = c.post("/uploads", content=data, headers=TIFF)
            assert r.status_code == 200, r.text
            ids.append(r.json()["upload_id"])
            time.sleep(0.02)  # distinct last-used times
    assert uploaded(tmp_path) == sorted(f"{i}.tif" for i in ids[-2:])


def test_no_room_left_by_jobs_is_507(tmp_path: Path, scene: Path) -> None:
    data = scene.read_bytes()
    limits = UploadLimits(store_bytes=int(2.5 * len(data)), min_free_bytes=0)
    with app_client(tmp_path, limits) as c:
        for _ in range(2):
            assert c.post("/uploads", content=data, headers=TIFF).status_code == 200
        jobs = c.app.state.fake_jobs
        jobs.in_use = {str(p) for p in (tmp_path / "uploads").glob("*.tif")}  # both needed
        before = uploaded(tmp_path)

        def chunks() -> Iterator[bytes]:  # no Content-Length: checked while streaming
            yield data

        for body in (data, chunks()):
            r = c.post("/uploads", content=body, headers=TIFF)
            assert r.status_code == 507, r.text
            assert "in use" in r.json()["detail"] and r.json()["hint"]
        assert uploaded(tmp_path) == before
        jobs.in_use = set()
        assert c.post("/uploads", content=data, headers=TIFF).status_code == 200


def test_a_full_disk_is_507(tmp_path: Path, scene: Path) -> None:
    with app_client(tmp_path, UploadLimits(min_free_bytes=2**62)) as c:
        r = c.post("/uploads", content=scene.read_bytes(), headers=TIFF)
        assert r.status_code == 507
        assert "free" in r.json()["detail"] and "/" not in r.json()["detail"]
    assert uploaded(tmp_path) == []


# -- slow bodies, against a real uvicorn ---------------------------------------------------


@contextlib.contextmanager
def live_server(tmp_path: Path, limits: UploadLimits) -> Iterator[int]:
    app = create_app(_Pipeline(), TOKEN, tmp_path / "uploads", upload_limits=limits)
    app.dependency_overrides[get_jobs] = _Jobs
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive()
        time.sleep(0.01)
    try:
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def _start_upload(port: int, declared: int, first: bytes) -> socket.socket:
    conn = socket.create_connection(("127.0.0.1", port), timeout=20)
    conn.sendall(
        f"POST /uploads HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {TOKEN}\r\nContent-Type: image/tiff\r\n"
        f"Content-Length: {declared}\r\n\r\n".encode() + first
    )
    return conn


def _status(conn: socket.socket) -> int:
    head = conn.recv(4096)
    assert head.startswith(b"HTTP/1.1 "), head
    return int(head.split()[1])


def _another_request(port: int) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=20) as conn:
        conn.sendall(f"GET /openapi.json HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        return _status(conn)


def test_a_stalled_body_is_cut_off(tmp_path: Path, scene: Path) -> None:
    data = scene.read_bytes()
    limits = UploadLimits(idle_timeout_s=0.5)
    with live_server(tmp_path, limits) as port, _start_upload(port, len(data), data[:1000]) as conn:
        assert _another_request(port) == 200  # the stall (no more bytes) blocks no one else
        assert _status(conn) == 408
    assert uploaded(tmp_path) == []


def test_a_trickling_body_is_cut_off(tmp_path: Path, scene: Path) -> None:
    data = scene.read_bytes()
    limits = UploadLimits(grace_s=0.5, min_bytes_per_s=10**6)
    with live_server(tmp_path, limits) as port, _start_upload(port, len(data), data[:100]) as conn:
        conn.settimeout(0.1)
        status = None
        for i in range(100, len(data), 100):  # 100 bytes every 0.1 s: ~1 kB/s
            try:
                conn.sendall(data[i : i + 100])
                head = conn.recv(4096)
            except (TimeoutError, BlockingIOError):
                continue
            except OSError:  # the server answered and closed
                break
            status = int(head.split()[1])
            break
        if status is None:
            conn.settimeout(20)
            status = _status(conn)
        assert status == 408
    assert uploaded(tmp_path) == []
