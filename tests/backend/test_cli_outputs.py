"""The CLI checks every output place before the work, and reads negative numbers as values."""

from __future__ import annotations

import signal
from pathlib import Path

import geopandas as gpd
import pytest
from rasterio.transform import from_origin

from rs_reasoner.cli import _build_parser, _negative_numbers_as_values, main
from tests.support.rasters import scene_with_squares, write_geotiff

#: A scene whose map coordinates are all negative: x -1000..-200, y -600..0 (2 m pixels).
NEGATIVE_ORIGIN = from_origin(-1000.0, 0.0, 2.0, 2.0)


@pytest.fixture
def scene(tmp_path: Path) -> Path:
    data = scene_with_squares(squares=[(50, 60, 40)])  # x -880..-800, y -180..-100
    return write_geotiff(tmp_path / "scene.tif", data, transform=NEGATIVE_ORIGIN)


def test_negative_numbers_in_exponent_notation_are_extent_values() -> None:
    argv = ["segment", "r.tif", "-q", "x", "--out", "o.gpkg",
            "--extent", "-1e30", "-1.5E-3", "-.5", "-inf"]  # fmt: skip
    args = _build_parser().parse_args(_negative_numbers_as_values(argv))
    assert args.extent[:3] == [-1e30, -1.5e-3, -0.5]
    assert args.extent[3] == float("-inf")
    assert args.out == Path("o.gpkg") and args.query == "x"


def test_segment_with_an_extent_in_exponent_notation(
    scene: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "p.gpkg"
    code = main(["segment", str(scene), "-q", "bright", "--quiet", "--out", str(out),
                 "--extent", "-9e2", "-2e2", "-7.5e2", "-5e1"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    polygons = gpd.read_file(out)
    assert len(polygons) == 1
    assert polygons.total_bounds == pytest.approx([-880, -180, -800, -100])


@pytest.mark.parametrize("preview", ["{tmp}/file/p.png", "/proc/rs-reasoner.png"])
def test_an_unwritable_preview_is_refused_before_the_run(
    scene: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], preview: str
) -> None:
    """Before: the output was written, then the preview failed with a traceback."""
    if preview.startswith("/proc") and not Path("/proc/self").is_dir():
        pytest.skip("needs Linux /proc")
    (tmp_path / "file").write_text("")
    out = tmp_path / "p.gpkg"
    code = main(["segment", str(scene), "-q", "bright", "--quiet", "--out", str(out),
                 "--preview", preview.format(tmp=tmp_path)])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: Cannot ") and "hint:" in err
    assert not out.exists()


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")
def test_an_output_where_nothing_can_be_created_is_refused_before_the_run(
    scene: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """As root os.access allows /proc; the write used to fail after the whole run."""
    code = main(["segment", str(scene), "-q", "bright", "--quiet", "--out", "/proc/x.gpkg"])
    assert code == 2
    err = capsys.readouterr().err
    assert "error: Cannot write in '/proc'" in err
    assert "polygons" not in err


def test_the_signal_handlers_are_back_after_main(scene: Path, tmp_path: Path) -> None:
    """main() may run inside another program (a test runner, a notebook)."""
    before = signal.getsignal(signal.SIGTERM)
    assert main(["segment", str(scene), "-q", "bright", "--quiet", "--out",
                 str(tmp_path / "p.gpkg")]) == 0  # fmt: skip
    assert signal.getsignal(signal.SIGTERM) is before
