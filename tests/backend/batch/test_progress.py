import pytest

from rs_reasoner.batch.progress import Figures, Progress
from rs_reasoner.batch.worker import UnitReport


def test_figures_from_finished_units() -> None:
    p = Progress(total=4, done=1, quiet=True)
    for _ in range(2):
        p.advance(UnitReport("u", "p", 1.0, {"read+segment": 0.75, "write": 0.25}),
                  pixels=1_000_000, pixel_area_m2=100.0)  # fmt: skip
    f = p.close()
    assert (f.units, f.pixels) == (2, 2_000_000)
    assert f.area_km2 == pytest.approx(200.0)  # 2e6 px of 100 m² (10 m pixels)
    assert dict(f.stages) == {"read+segment": 1.5, "write": 0.5}
    f.wall_s = 4.0  # the arithmetic, on a fixed wall time
    assert f.units_per_s == 0.5 and f.mpx_per_s == 0.5
    assert f.km2_per_h == pytest.approx(200.0 * 3600 / 4)
    text = f.summary()
    assert "0.50 units/s" in text and "0.50 Mpx/s" in text and "180,000.0 km²/h" in text
    assert "read+segment 1.5 s (75 %)" in text


def test_no_area_without_georeferencing() -> None:
    f = Figures(units=1, pixels=10, wall_s=1.0)
    assert f.km2_per_h == 0.0 and "km²/h" not in f.summary()
