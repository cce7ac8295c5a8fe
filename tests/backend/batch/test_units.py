import numpy as np
import pytest
from shapely.geometry import box

from rs_reasoner.batch.units import plan_source
from rs_reasoner.errors import ExtentError
from rs_reasoner.pipeline import open_dataset
from rs_reasoner.raster import ExtentReader
from tests.backend.batch.conftest import DATA, NEON, OPTIONS


def test_units_partition_the_raster_on_the_tile_lattice() -> None:
    plan, windows = plan_source(str(NEON), OPTIONS, None, unit_tiles=2)
    step = 2 * (OPTIONS.tile_size - 2 * OPTIONS.overlap)
    cover = np.zeros((400, 400), int)
    for r0, c0, r1, c1 in windows:
        cover[r0:r1, c0:c1] += 1
        assert r0 % step == 0 and c0 % step == 0  # edges on the lattice
    assert (cover == 1).all()
    assert plan.window == [0, 0, 400, 400]


def test_one_stretch_for_the_whole_source() -> None:
    path = DATA / "spacenet_atlanta_pan_utm16n.tif"  # uint16: the stretch is computed
    plan, _ = plan_source(str(path), OPTIONS, None)
    with open_dataset(str(path)) as ds:
        whole = ExtentReader.open(ds, None)
    assert np.allclose(plan.lo, whole.lo) and np.allclose(plan.hi, whole.hi)
    assert plan.pixel_area_m2 == pytest.approx(0.25, rel=1e-6)


def test_area_keeps_only_units_it_touches() -> None:
    plan, all_windows = plan_source(str(NEON), OPTIONS, None, unit_tiles=2)
    t = plan.grid_transform
    x0, y0 = t[2], t[5]  # top-left corner; pixels of 0.1 m
    area = box(x0 + 1, y0 - 5, x0 + 5, y0 - 1)  # inside the first unit (96 px = 9.6 m)
    _, windows = plan_source(str(NEON), OPTIONS, area, unit_tiles=2)
    # One unit: the first one clipped to the area's pixels (1..5 m = 10..50 px).
    assert windows == [(10, 10, 50, 50)]
    assert all_windows[0] == (0, 0, 96, 96)


def test_area_missing_the_source_plans_nothing() -> None:
    _, windows = plan_source(str(NEON), OPTIONS, box(0, 0, 1, 1))
    assert windows == []


def test_empty_units_are_refused() -> None:
    with pytest.raises(ExtentError):
        plan_source(str(NEON), OPTIONS, None, unit_tiles=0)
