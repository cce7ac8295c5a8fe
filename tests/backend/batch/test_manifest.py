from pathlib import Path

import pytest

from rs_reasoner.batch.manifest import DONE, FAILED, RUNNING, Manifest, Unit
from rs_reasoner.batch.units import plan_source
from rs_reasoner.errors import InvalidRequestError
from tests.backend.batch.conftest import NEON, OPTIONS


def _manifest(folder: Path) -> Manifest:
    plan, windows = plan_source(str(NEON), OPTIONS, None, unit_tiles=2)
    units = [Unit(id=f"u{i}", source=0, window=list(w)) for i, w in enumerate(windows)]
    return Manifest(folder=folder, config={"query": "trees", "model": "m"}, sources=[plan],
                    units=units)  # fmt: skip


def test_round_trip_keeps_every_field(tmp_path: Path) -> None:
    m = _manifest(tmp_path)
    m.units[0].status, m.units[0].attempts, m.units[0].part = DONE, 2, "parts/u0.parquet"
    m.units[0].stages = {"read+segment": 0.5}
    m.units[1].status, m.units[1].error = FAILED, "RasterError: unreadable"
    m.save()
    back = Manifest.load(tmp_path)
    assert back is not None
    assert back.units == m.units and back.sources == m.sources and back.config == m.config
    assert [u.id for u in back.todo()] == [u.id for u in m.units[1:]]


def test_units_running_when_the_driver_died_are_redone(tmp_path: Path) -> None:
    m = _manifest(tmp_path)
    m.units[3].status = RUNNING
    assert m.units[3] in m.todo()
    assert m.counts()[RUNNING] == 1


def test_another_batch_in_the_folder_is_refused(tmp_path: Path) -> None:
    m = _manifest(tmp_path)
    with pytest.raises(InvalidRequestError, match="query"):
        m.check_config({"query": "water", "model": "m"})
    m.check_config({"query": "trees", "model": "m"})


def test_unreadable_manifest_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(InvalidRequestError, match="not a batch manifest"):
        Manifest.load(tmp_path)
    assert Manifest.load(tmp_path / "none") is None


def test_status_text_counts_pixels_and_failures(tmp_path: Path) -> None:
    m = _manifest(tmp_path)
    for u in m.units[:5]:  # the first row of 96 px units: 96 * 400 of 400 * 400 pixels
        u.status = DONE
    m.units[-1].status, m.units[-1].error = FAILED, "boom"
    text = m.status_text()
    assert f"5/{len(m.units)} units done (24.0 % of pixels)" in text
    assert "1 failed" in text and "boom" in text
