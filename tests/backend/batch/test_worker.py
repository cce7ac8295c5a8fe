from pathlib import Path

import geopandas as gpd
import numpy as np
import shapely
from shapely.geometry import box

from rs_reasoner.batch.units import plan_source
from rs_reasoner.batch.worker import UnitTask, run_unit
from tests.backend.batch.conftest import NEON, OPTIONS, request, single_extent


def _task(tmp_path: Path, window, area=None) -> UnitTask:
    plan, _ = plan_source(str(NEON), OPTIONS, None, unit_tiles=2)
    req = request().model_copy(update={"raster": str(NEON)})
    wkb = None if area is None else shapely.to_wkb(area)
    return UnitTask(unit_id="u", source_index=0, source=plan, window=tuple(window),
                    request=req.model_dump(mode="json"), out_dir=str(tmp_path),
                    area_wkb=wkb, device="cpu")  # fmt: skip


def test_unit_writes_its_finished_polygons_and_pieces(tmp_path: Path) -> None:
    report = run_unit(_task(tmp_path, (96, 96, 192, 192)))
    part = gpd.read_parquet(tmp_path / report.part)
    pieces = gpd.read_parquet(tmp_path / "parts" / "u.pieces.parquet")
    assert len(part) == report.polygons > 0 and len(pieces) == report.pieces > 0
    # Finished polygons of the unit are polygons of the single-extent run, untouched.
    want = single_extent(NEON)
    for geom in part.geometry:
        assert shapely.area(shapely.symmetric_difference(want.geometry.values, geom)).min() < 1e-6
    assert set(report.stages) == {"model", "read+segment", "vectorise", "write"}


def test_area_restricts_polygons(tmp_path: Path) -> None:
    plan, _ = plan_source(str(NEON), OPTIONS, None)
    x0, y0 = plan.grid_transform[2], plan.grid_transform[5]
    area = box(x0 + 10, y0 - 25, x0 + 25, y0 - 10)  # pixels 100..250, past the unit's edge
    task = _task(tmp_path, (96, 96, 192, 192), area)
    report = run_unit(task)
    part = gpd.read_parquet(tmp_path / report.part)
    pieces = gpd.read_parquet(tmp_path / "parts" / "u.pieces.parquet")
    assert len(part) > 0 and len(pieces) > 0
    assert part.geometry.within(area.buffer(1e-6)).all()
    bounds = np.array([g.bounds for g in pieces.geometry])  # working-grid pixels
    assert bounds[:, :2].min() >= 100 and bounds[:, 2:].max() <= 192
