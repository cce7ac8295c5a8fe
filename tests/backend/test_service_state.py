"""The backend state file: location, atomic private writes, pid-guarded removal."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest

from rs_reasoner.service.state import (
    default_state_path,
    pid_alive,
    read_state,
    remove_state,
    write_state,
)


@pytest.mark.skipif(sys.platform != "linux", reason="XDG_STATE_HOME is a Linux convention")
def test_default_path_honours_xdg_state_home(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert default_state_path() == tmp_path / "state" / "rs-reasoner" / "backend.json"


def test_write_then_read(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "backend.json"
    write_state(path, "127.0.0.1", 8765, "tok", 1234, "0.1.0")
    state = read_state(path)
    assert state is not None
    assert state["host"] == "127.0.0.1"
    assert state["port"] == 8765
    assert state["token"] == "tok"
    assert state["pid"] == 1234
    assert state["version"] == "0.1.0"
    assert state["url"] == "http://127.0.0.1:8765"
    assert json.loads(path.read_text()) == state


def test_ipv6_url(tmp_path: Path) -> None:
    path = write_state(tmp_path / "s.json", "::1", 9000, "t", 1, "v")
    assert read_state(path)["url"] == "http://[::1]:9000"


@pytest.mark.skipif(os.name == "nt", reason="POSIX permissions")
def test_file_is_private_and_no_temp_left(tmp_path: Path) -> None:
    path = tmp_path / "backend.json"
    path.write_text("old")
    os.chmod(path, 0o644)
    write_state(path, "127.0.0.1", 1, "secret", 2, "v")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["backend.json"]


def test_read_missing_or_corrupt(tmp_path: Path) -> None:
    assert read_state(tmp_path / "nope.json") is None
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert read_state(bad) is None
    bad.write_text("[1, 2]")
    assert read_state(bad) is None


def test_remove_only_own_pid(tmp_path: Path) -> None:
    path = write_state(tmp_path / "backend.json", "127.0.0.1", 1, "t", 111, "v")
    assert remove_state(path, 222) is False
    assert path.exists()
    assert remove_state(path, 111) is True
    assert not path.exists()
    assert remove_state(path, 111) is False


def test_pid_alive() -> None:
    if os.name == "nt":
        pytest.skip("not probed on Windows")
    assert pid_alive(os.getpid())
    assert not pid_alive(-5)
    assert not pid_alive(2**22 + 12345)
