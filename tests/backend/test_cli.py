"""The rs-reasoner command, in-process and as the installed console script."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
from PIL import Image
from pyproj import CRS

from rs_reasoner.cli import _build_parser, main
from rs_reasoner.schemas import (
    RunOptions,
    SegmentOptions,
    SegmentRequest,
    ServeOptions,
    TrainRequest,
    defaults,
)
from rs_reasoner.service.server import main as server_main
from tests.support.rasters import UTM_CRS, UTM_TRANSFORM, scene_with_squares, write_geotiff

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def scene(tmp_path: Path) -> Path:
    return write_geotiff(tmp_path / "scene.tif", scene_with_squares(squares=[(50, 60, 40)]))


@pytest.mark.parametrize("suffix", [".gpkg", ".shp", ".geojson"])
def test_segment_writes_each_format_with_crs_and_attributes(
    scene: Path, tmp_path: Path, suffix: str
) -> None:
    out = tmp_path / "out" / f"polygons{suffix}"
    assert main(["segment", str(scene), "-q", "bright", "--out", str(out), "--quiet"]) == 0
    gdf = gpd.read_file(out)
    assert CRS.from_user_input(gdf.crs) == CRS.from_user_input(UTM_CRS)
    assert list(gdf["label"]) == ["bright"]
    assert {"score", "query", "mode", "model"} <= set(gdf.columns)
    x0, y1 = UTM_TRANSFORM @ (60, 50)
    assert np.allclose(gdf.total_bounds, [x0, y1 - 80, x0 + 80, y1])


def test_extent_and_preview(scene: Path, tmp_path: Path) -> None:
    out, png = tmp_path / "p.gpkg", tmp_path / "p.png"
    x0, y0 = UTM_TRANSFORM @ (0, 150)
    x1, y1 = UTM_TRANSFORM @ (200, 0)
    code = main([
        "segment", str(scene), "-q", "bright", "--extent", str(x0), str(y0), str(x1), str(y1),
        "--extent-crs", UTM_CRS, "--out", str(out), "--preview", str(png), "--quiet",
    ])
    assert code == 0
    with Image.open(png) as img:
        assert img.size == (200, 150)
    assert len(gpd.read_file(out)) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["segment", "/no/such/raster.tif", "-q", "bright", "--out", "x.gpkg"], "does not exist"),
        (["segment", "{scene}", "-q", "  ", "--out", "x.gpkg"], "query is empty"),
        (["segment", "{scene}", "-q", "bright", "--out", "x.xyz"], ".gpkg"),
        (["segment", "{scene}", "-q", "bright", "--extent", "0", "0", "1", "1",
          "--out", "x.gpkg"], "outside"),
        (["segment", "{scene}", "-q", "bright", "--model", "nope", "--out", "x.gpkg"],
         "Unknown model"),
        (["segment", "{scene}", "-q", "bright", "--bands", "1", "2", "--out", "x.gpkg"],
         "1 or 3 bands"),
    ],
)
def test_bad_input_is_a_clear_error_not_a_traceback(
    scene: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    args = [a.replace("{scene}", str(scene)).replace("x.", str(tmp_path / "x.")) for a in args]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert not list(tmp_path.glob("x.*"))


def test_models_list_shows_builtin_and_test_models(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert "index-baseline" in out and "no weights needed" in out


def test_console_script_runs_end_to_end(scene: Path, tmp_path: Path) -> None:
    exe = shutil.which("rs-reasoner", path=str(Path(sys.executable).parent))
    assert exe, "the rs-reasoner console script is not installed"
    out = tmp_path / "o.shp"
    proc = subprocess.run(
        [exe, "segment", str(scene), "--query", "bright", "--out", str(out)],
        capture_output=True, text=True, timeout=120, cwd=REPO,
        env={
            "PATH": "/usr/bin:/bin",
            "RS_REASONER_SEGMENTER_MODULES": "tests.support.segmenters",
            "PYTHONPATH": str(REPO),
            "HOME": str(tmp_path),
        },
    )
    assert proc.returncode == 0, proc.stderr
    assert "1 polygons" in proc.stdout
    assert out.with_suffix(".prj").exists()
    proc = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=60)
    assert "segment" in proc.stdout and "serve" in proc.stdout and "models" in proc.stdout


def test_a_reader_that_leaves_early_gets_no_traceback() -> None:
    # `rs-reasoner models list | head -1`: the pipe closes before the listing is written.
    exe = shutil.which("rs-reasoner", path=str(Path(sys.executable).parent))
    assert exe, "the rs-reasoner console script is not installed"
    env = {**os.environ, "PYTHONPATH": str(REPO)}  # the test segmenters' module
    proc = subprocess.Popen([exe, "models", "list"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)  # fmt: skip
    proc.stdout.close()  # before the child (still importing) writes a byte
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 1
    assert "Traceback" not in err and "BrokenPipe" not in err, err


def test_a_segmenter_module_that_does_not_import_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from rs_reasoner.segmenters import registry

    monkeypatch.setattr(registry, "_LOADED_PLUGINS", False)
    monkeypatch.setenv(registry.ENV_MODULES, "no_such_module_here")
    assert main(["models", "list"]) == 2
    err = capsys.readouterr().err
    assert "error: Cannot import the segmenter module 'no_such_module_here'" in err
    assert f"hint: Fix {registry.ENV_MODULES}" in err


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


#: Which schema models each command's flags come from.
_COMMAND_MODELS = {
    "segment": (SegmentRequest, SegmentOptions, RunOptions),
    "train": (TrainRequest, RunOptions),
    "serve": (ServeOptions,),
}


@pytest.mark.parametrize("command", sorted(_COMMAND_MODELS))
def test_every_flag_default_is_the_schema_default(command: str) -> None:
    parser = _subparsers(_build_parser())[command]
    schema = {}
    for model in _COMMAND_MODELS[command]:
        schema.update({k: getattr(v, "value", v) for k, v in defaults(model).items()})
    # --time-budget is in minutes where the field is in seconds; both default to no limit.
    dests = {"time_budget": "time_budget_s"}
    compared = 0
    for action in parser._actions:
        field = dests.get(action.dest, action.dest)
        if field not in schema:
            continue
        assert action.default == schema[field], f"{command} {action.option_strings}"
        if schema[field] not in (None, False, True) and action.help:
            assert f"(default: {schema[field]})" in action.help
        compared += 1
    # Every schema field with a default that the command exposes was compared.
    assert compared >= {"segment": 12, "train": 15, "serve": 5}[command]


def test_the_server_module_has_the_serve_flags(capsys: pytest.CaptureFixture[str]) -> None:
    def options_part(run: Callable[[], object]) -> str:
        with pytest.raises(SystemExit):
            run()
        return capsys.readouterr().out.split("options:", 1)[1]

    served = options_part(lambda: server_main(["--help"]))
    assert served == options_part(lambda: main(["serve", "--help"]))
    assert "(default: 127.0.0.1)" in served


def test_a_tile_size_alone_gets_an_overlap_that_fits_it(scene: Path, tmp_path: Path) -> None:
    out = tmp_path / "small_tiles.geojson"
    args = ["segment", str(scene), "--query", "water", "--model", "index-baseline",
            "--tile-size", "64", "--out", str(out), "--quiet"]  # fmt: skip
    assert main(args) == 0
    assert len(gpd.read_file(out)) >= 1
    assert main([*args, "--overlap", "32"]) == 2  # an explicit overlap is not changed
