import dataclasses
import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import geopandas as gpd
import pytest

from rs_reasoner.batch.manifest import DONE, RUNNING, Manifest
from rs_reasoner.batch.run import run_batch
from rs_reasoner.errors import InvalidRequestError
from rs_reasoner.pipeline import SegmentationPipeline
from tests.backend.batch.conftest import (
    NEON,
    assert_same_polygons,
    config,
    request,
    single_extent,
)

REPO = Path(__file__).resolve().parents[3]


def test_mosaic_batch_equals_the_single_extent_run(neon_tiles: list[Path], tmp_path: Path) -> None:
    merged = tmp_path / "all.gpkg"
    result = run_batch(config(neon_tiles, tmp_path / "out", merged=merged))
    assert result.complete and result.seams > 0
    assert all(u.status == DONE and u.attempts == 1 for u in result.manifest.units)
    assert result.figures.units == len(result.manifest.units) == 25
    want = single_extent(NEON)
    assert_same_polygons(gpd.read_file(merged), want)
    # The partitioned GeoParquet holds the same polygons as the merged file, in one CRS.
    parts = [gpd.read_parquet(p) for p in sorted((tmp_path / "out").rglob("*.parquet"))
             if not p.name.endswith(".pieces.parquet")]  # fmt: skip
    assert {p.crs.to_epsg() for p in parts} == {32617}
    assert sum(len(p) for p in parts) == len(want)


def test_killed_driver_resumes_without_redoing_or_losing_units(
    neon_tiles: list[Path], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    script = tmp_path / "driver.py"
    script.write_text(textwrap.dedent(f"""
        import os, signal, sys
        from pathlib import Path
        sys.path.insert(0, {str(REPO)!r})
        from rs_reasoner.batch import manifest
        manifest.SAVE_INTERVAL_S = 0.0  # every change on disk, so the test knows what ran
        from rs_reasoner.batch.run import run_batch
        from rs_reasoner.batch.worker import run_unit
        from tests.backend.batch.conftest import config
        done = []
        def fn(task):
            report = run_unit(task)  # the 4th unit's part is written, then the driver dies
            done.append(task.unit_id)
            if len(done) == 4:
                os.kill(os.getpid(), signal.SIGKILL)
            return report
        run_batch(config({[str(p) for p in neon_tiles]!r}, Path({str(out)!r})), fn=fn)
    """))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    before = Manifest.load(out)
    assert [u.status for u in before.units[:4]] == [DONE, DONE, DONE, RUNNING]
    assert all(u.attempts == 0 for u in before.units[4:])

    result = run_batch(config(neon_tiles, out, merged=tmp_path / "all.gpkg"))
    assert result.complete
    attempts = [u.attempts for u in result.manifest.units]
    assert attempts[:4] == [1, 1, 1, 2] and set(attempts[4:]) == {1}
    assert result.figures.units == len(result.manifest.units) - 3  # only what was left
    assert_same_polygons(gpd.read_file(tmp_path / "all.gpkg"), single_extent(NEON))


def test_rerunning_a_finished_batch_runs_nothing(tmp_path: Path) -> None:
    cfg = config([NEON], tmp_path / "out", unit_tiles=5)
    first = run_batch(cfg)
    again = run_batch(cfg)
    assert again.complete and again.figures.units == 0
    assert [u.attempts for u in again.manifest.units] == [u.attempts for u in first.manifest.units]


def test_another_command_on_the_same_folder_is_refused(tmp_path: Path) -> None:
    run_batch(config([NEON], tmp_path / "out", unit_tiles=5))
    cfg = config([NEON], tmp_path / "out", unit_tiles=5)
    cfg.request = cfg.request.model_copy(update={"query": "water"})
    with pytest.raises(InvalidRequestError, match="other settings"):
        run_batch(cfg)
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["config"]["query"] == (
        "trees"
    )


def test_failed_units_leave_the_batch_incomplete(tmp_path: Path) -> None:
    from tests.backend.batch.kill_hooks import always_fail

    result = run_batch(config([NEON], tmp_path / "out", unit_tiles=5), fn=always_fail)
    assert not result.complete
    assert not (tmp_path / "out" / "seams.parquet").exists()
    assert "failed" in result.manifest.status_text()
    assert run_batch(config([NEON], tmp_path / "out", unit_tiles=5)).complete  # retried


def test_closed_set_model_labels_every_pixel_as_the_single_extent_run(tmp_path: Path) -> None:
    # A model trained on the user's classes labels every valid pixel unless a threshold is
    # asked for; a batch used to apply the default 0.5 and drop every label of an unsure
    # model (its request crossed to the workers with every option marked as set).
    req = request().model_copy(update={"model": "test-closed-set", "query": "green"})
    merged = tmp_path / "all.gpkg"
    cfg = dataclasses.replace(config([NEON], tmp_path / "out", merged=merged), request=req)
    assert run_batch(cfg).complete
    want = SegmentationPipeline(device="cpu").run(
        req.model_copy(update={"raster": str(NEON)}), str(NEON)
    ).polygons
    assert len(want) > 0
    assert_same_polygons(gpd.read_file(merged), want)
