"""Atomic writes keep the old file when writing fails, and leave no temporary files."""

from __future__ import annotations

from pathlib import Path

import pytest

from rs_reasoner.atomic import write_atomic, write_text_atomic


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
