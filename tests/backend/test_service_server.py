"""``rs-reasoner serve``'s process: its socket, and what it cleans up at start and on signals."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rs_reasoner.service.server import _bind, remove_dead_upload_dirs
from rs_reasoner.service.state import read_state
from tests.backend.test_service_http import REPO, server_env, start_backend, stop_backend


def test_accepted_connections_have_tcp_nodelay() -> None:
    """What uvicorn does with the bound socket (``loop.create_server(sock=...)``): every
    accepted connection must send small responses at once, not after a delayed ACK."""

    async def accept_one() -> int:
        accepted: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        class Probe(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                sock = transport.get_extra_info("socket")
                accepted.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                transport.close()

        server = await asyncio.get_running_loop().create_server(Probe, sock=_bind("127.0.0.1", 0))
        host, port = server.sockets[0].getsockname()[:2]
        _, writer = await asyncio.open_connection(host, port)
        try:
            return await asyncio.wait_for(accepted, 10)
        finally:
            writer.close()
            server.close()

    assert asyncio.run(accept_one()) != 0


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.mark.skipif(os.name == "nt", reason="processes are probed on POSIX only")
def test_upload_folders_of_dead_backends_are_removed(tmp_path: Path) -> None:
    dead, alive = f"{_dead_pid()}-x1", f"{os.getppid()}-x2"
    for name in (dead, alive, f"{os.getpid()}-mine", "notes"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "a.tif").write_bytes(b"II*\0")
    assert remove_dead_upload_dirs(tmp_path) == [dead]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [alive, f"{os.getpid()}-mine", "notes"]
    )


@pytest.mark.slow
@pytest.mark.skipif(os.name == "nt", reason="kill -9 is POSIX")
def test_restart_after_kill_9_cleans_the_litter(tmp_path: Path) -> None:
    first = start_backend(tmp_path)
    uploads = first.cache_home / "rs-reasoner" / "uploads"
    (uploads / f"{first.proc.pid}-abc").mkdir()  # and one left by an older start
    (uploads / f"{first.proc.pid}-abc" / "big.tif").write_bytes(b"\0" * 4096)
    first.proc.kill()
    first.proc.wait()
    assert read_state(first.state_file)["pid"] == first.proc.pid  # stale: names a dead pid
    litter = sorted(p.name for p in uploads.iterdir())
    assert len(litter) == 2

    second = start_backend(tmp_path)  # returns on seeing the stale file: wait for the new one
    try:
        deadline = time.monotonic() + 60
        while (read_state(second.state_file) or {}).get("pid") != second.proc.pid:
            assert time.monotonic() < deadline and second.proc.poll() is None, second.log_text()
            time.sleep(0.05)
        assert all(not (uploads / name).exists() for name in litter)
        assert [p.name.split("-")[0] for p in uploads.iterdir()] == [str(second.proc.pid)]
        log = second.log_text()
        assert f"removed the stale state file of backend pid {first.proc.pid}" in log
        assert "removed the uploads of a backend that is not running" in log
    finally:
        stop_backend(second)


@pytest.mark.slow
@pytest.mark.skipif(os.name == "nt", reason="SIGHUP is POSIX")
def test_sighup_shuts_down_cleanly(tmp_path: Path) -> None:
    b = start_backend(tmp_path)
    uploads = b.cache_home / "rs-reasoner" / "uploads"
    assert len(list(uploads.iterdir())) == 1
    assert stop_backend(b, signal.SIGHUP) == 0, b.log_text()
    assert not b.state_file.exists()
    assert list(uploads.iterdir()) == []
    assert "Traceback" not in b.log_text()


def _serve(tmp_path: Path, state_file: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rs_reasoner.service.server", "--port", "0",
         "--device", "cpu", "--state-file", str(state_file)],
        cwd=REPO, env=server_env(tmp_path), capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("place", ["/proc/rs-reasoner/backend.json", "{tmp}/file/backend.json"])
def test_an_unwritable_state_file_is_refused_before_serving(tmp_path: Path, place: str) -> None:
    """As root, os.access allows /proc, where nothing can be created."""
    if place.startswith("/proc") and not Path("/proc/self").is_dir():
        pytest.skip("needs Linux /proc")
    (tmp_path / "file").write_text("")
    proc = _serve(tmp_path, Path(place.format(tmp=tmp_path)))
    assert proc.returncode == 2, proc.stderr
    assert "error: Cannot write the state file" in proc.stderr
    assert "hint: Pass --state-file with a writable path." in proc.stderr
    assert "Traceback" not in proc.stderr
    assert "Uvicorn running" not in proc.stderr and "Started server" not in proc.stderr


def test_a_live_backend_in_the_state_file_is_not_removed(tmp_path: Path) -> None:
    from rs_reasoner.service.server import _forget_stale_state

    state = tmp_path / "backend.json"
    state.write_text(json.dumps({"pid": os.getppid(), "token": "t", "port": 1}))
    _forget_stale_state(state)
    assert state.exists()
    state.write_text(json.dumps({"pid": _dead_pid(), "token": "t", "port": 1}))
    _forget_stale_state(state)
    assert not state.exists()


def _status_for_host(port: int, host: str, token: str) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=20) as conn:
        conn.sendall(f"GET /health HTTP/1.1\r\nHost: {host}\r\n"
                     f"Authorization: Bearer {token}\r\n\r\n".encode())  # fmt: skip
        return int(conn.recv(4096).split()[1])


@pytest.mark.slow
def test_the_served_backend_refuses_other_host_names(tmp_path: Path) -> None:
    """DNS rebinding: a page on evil.example resolved to 127.0.0.1 names itself in Host."""
    b = start_backend(tmp_path)
    try:
        port = b.state["port"]
        assert _status_for_host(port, f"127.0.0.1:{port}", b.token) == 200
        assert _status_for_host(port, f"localhost:{port}", b.token) == 200
        assert _status_for_host(port, f"evil.example:{port}", b.token) == 400
    finally:
        stop_backend(b)
