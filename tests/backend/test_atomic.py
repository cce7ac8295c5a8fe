"""Atomic writes keep the old file when writing fails, file sets are swapped whole, and
the litter of killed writers is swept."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rs_reasoner.atomic import (
    LITTER_MAX_AGE_S,
    check_writable,
    exit_on_termination_signals,
    make_staging_dir,
    publish_file_set,
    sweep_litter,
    write_atomic,
    write_text_atomic,
)
from rs_reasoner.errors import OutputError


def test_write_replaces_content_and_creates_folders(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "model.json"
    assert write_text_atomic(path, "first") == path
    write_text_atomic(path, "second ✓")
    assert path.read_text(encoding="utf-8") == "second ✓"
    assert [p.name for p in path.parent.iterdir()] == ["model.json"]


def test_a_failing_write_keeps_the_previous_file(tmp_path: Path) -> None:
    path = tmp_path / "best.pt"
    path.write_bytes(b"good checkpoint")

    def half_then_crash(f) -> None:  # noqa: ANN001 - a binary file
        f.write(b"half a")
        raise KeyboardInterrupt  # e.g. Ctrl-C in the middle of torch.save

    with pytest.raises(KeyboardInterrupt):
        write_atomic(path, half_then_crash)
    assert path.read_bytes() == b"good checkpoint"
    assert [p.name for p in tmp_path.iterdir()] == ["best.pt"]


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.mark.skipif(os.name == "nt", reason="processes are probed on POSIX only")
def test_sweep_removes_litter_of_dead_writers_only(tmp_path: Path) -> None:
    dead = _dead_pid()
    (tmp_path / f".rs-reasoner-{dead}-abc").mkdir()
    (tmp_path / f".rs-reasoner-{dead}-abc" / "r.gpkg").write_bytes(b"half")
    (tmp_path / f".rs-reasoner-{dead}-model.json.x1.tmp").write_text("half")
    alive = tmp_path / f".rs-reasoner-{os.getppid()}-busy"  # a running writer's
    alive.mkdir()
    mine = tmp_path / f".rs-reasoner-{os.getpid()}-mine"
    mine.mkdir()
    legacy_old, legacy_new = tmp_path / ".rs-reasoner-k2j4x0", tmp_path / ".rs-reasoner-q8m1z3"
    legacy_old.mkdir()
    legacy_new.mkdir()
    day_ago = time.time() - LITTER_MAX_AGE_S - 60
    os.utime(legacy_old, (day_ago, day_ago))
    (tmp_path / "result.gpkg").write_bytes(b"user data")
    removed = sweep_litter(tmp_path)
    assert sorted(removed) == sorted(
        [f".rs-reasoner-{dead}-abc", f".rs-reasoner-{dead}-model.json.x1.tmp", legacy_old.name]
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [alive.name, mine.name, legacy_new.name, "result.gpkg"]
    )


def _stage(folder: Path, files: dict[str, str]) -> Path:
    staging = make_staging_dir(folder)
    for name, text in files.items():
        (staging / name).write_text(text)
    return staging


def test_publish_file_set_replaces_the_whole_set(tmp_path: Path) -> None:
    for name in ("r.shp", "r.shx", "r.dbf", "r.prj", "r.qix", "other.txt"):
        (tmp_path / name).write_text(f"old {name}")
    staging = _stage(tmp_path, {n: f"new {n}" for n in ("r.shp", "r.shx", "r.dbf")})
    publish_file_set(staging, "r.shp", obsolete=["r.shp", "r.shx", "r.dbf", "r.prj", "r.qix"])
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == {
        "r.shp": "new r.shp", "r.shx": "new r.shx", "r.dbf": "new r.dbf",
        "other.txt": "old other.txt",
    }  # fmt: skip


@pytest.mark.skipif(os.name == "nt", reason="processes are probed on POSIX only")
def test_a_swap_cut_short_is_finished_by_the_next_sweep(tmp_path: Path) -> None:
    """The state a writer killed after moving one sidecar leaves: no .shp, a journal."""
    for name in ("r.shp", "r.shx", "r.dbf"):
        (tmp_path / name).write_text(f"old {name}")
    staging = _stage(tmp_path, {n: f"new {n}" for n in ("r.shp", "r.shx", "r.dbf")})
    (staging / "publish.json").write_text(
        json.dumps({"key": "r.shp", "names": ["r.dbf", "r.shp", "r.shx"], "obsolete": []})
    )
    os.unlink(tmp_path / "r.shp")
    os.replace(staging / "r.dbf", tmp_path / "r.dbf")
    killed = staging.with_name(f".rs-reasoner-{_dead_pid()}-cut")
    staging.rename(killed)
    assert sweep_litter(tmp_path) == [killed.name]
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == {
        n: f"new {n}" for n in ("r.shp", "r.shx", "r.dbf")
    }


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")
def test_a_place_that_cannot_be_written_is_refused_even_if_os_access_says_yes() -> None:
    with pytest.raises(OutputError, match="/proc"):
        check_writable("/proc/x.gpkg")


def test_check_writable_leaves_nothing_and_accepts_new_folders(tmp_path: Path) -> None:
    assert check_writable(tmp_path / "new" / "deeper" / "r.png") == tmp_path / "new/deeper/r.png"
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "file").write_text("")
    with pytest.raises(OutputError, match="is a file"):
        check_writable(tmp_path / "file" / "r.png")
    with pytest.raises(OutputError, match="is a folder"):
        check_writable(tmp_path)


@pytest.mark.skipif(os.name == "nt", reason="SIGTERM cannot be caught on Windows")
def test_sigterm_runs_finally_blocks(tmp_path: Path) -> None:
    marker = tmp_path / "cleaned"
    code = (
        "import os, signal, sys\n"
        "from rs_reasoner.atomic import exit_on_termination_signals\n"
        "with exit_on_termination_signals():\n"
        "    try:\n"
        "        os.kill(os.getpid(), signal.SIGTERM)\n"
        "        signal.pause()\n"
        "    finally:\n"
        f"        open({str(marker)!r}, 'w').close()\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM
    assert marker.exists()


def test_the_swap_frees_nothing_while_the_key_file_is_missing(tmp_path: Path, monkeypatch) -> None:
    """Unlinking or overwriting a file can wait on the filesystem's journal for
    milliseconds; inside the swap that is time a reader finds no set."""
    for name in ("r.shp", "r.shx", "r.dbf", "r.prj"):
        (tmp_path / name).write_text(f"old {name}")
    staging = _stage(tmp_path, {n: f"new {n}" for n in ("r.shp", "r.shx", "r.dbf", "r.cpg")})
    calls: list[tuple[str, Path, bool]] = []
    real_replace, real_unlink = os.replace, os.unlink

    def replace(src, dst) -> None:  # noqa: ANN001
        calls.append(("replace", Path(dst), Path(dst).exists()))
        real_replace(src, dst)

    def unlink(path, *args, **kwargs) -> None:  # noqa: ANN001, ANN002, ANN003
        calls.append(("unlink", Path(path), True))
        real_unlink(path, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(os, "unlink", unlink)
    publish_file_set(staging, "r.shp", obsolete=["r.shp", "r.shx", "r.dbf", "r.prj"])
    swap = [c for c in calls if c[1].parent in (tmp_path, staging / "replaced")]
    shown = next(i for i, c in enumerate(swap) if c[:2] == ("replace", tmp_path / "r.shp"))
    assert swap[0][0] == "replace" and shown == len(swap) - 1
    assert all(op == "replace" and not existed for op, _, existed in swap)
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == {
        n: f"new {n}" for n in ("r.shp", "r.shx", "r.dbf", "r.cpg")
    }


def test_the_previous_signal_handlers_are_back_after_the_block() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with exit_on_termination_signals():
        assert signal.getsignal(signal.SIGTERM) is not before
    assert signal.getsignal(signal.SIGTERM) is before
