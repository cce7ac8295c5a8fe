from pathlib import Path

from rs_reasoner.batch.executor_local import run_local
from rs_reasoner.batch.run import plan_batch
from tests.backend.batch import kill_hooks
from tests.backend.batch.conftest import NEON, config


def _tasks(tmp_path: Path):
    from rs_reasoner.batch.run import _tasks

    cfg = config([NEON], tmp_path, unit_tiles=3)  # 3 x 3 units of 144 px
    manifest = plan_batch(cfg)
    return _tasks(manifest, cfg, manifest.units)


def test_a_dead_worker_costs_a_retry_not_a_unit(tmp_path: Path) -> None:
    tasks = _tasks(tmp_path)
    victim = tasks[4].unit_id
    (tmp_path / f"die-{victim}").touch()
    starts: list[str] = []
    outcomes = list(run_local(tasks, 2, starts.append, kill_hooks.die_once))
    assert sorted(o.unit_id for o in outcomes) == sorted(t.unit_id for t in tasks)
    assert all(o.report is not None for o in outcomes)
    assert starts.count(victim) == 2  # handed out again after its worker died
    parts = sorted(p.name for p in (tmp_path / "parts").glob("*.parquet"))
    assert len(parts) == 2 * len(tasks)  # one part and one pieces file per unit


def test_a_failing_unit_is_reported_not_raised(tmp_path: Path) -> None:
    tasks = _tasks(tmp_path)[:2]
    outcomes = list(run_local(tasks, 0, lambda _: None, kill_hooks.always_fail))
    assert [o.error for o in outcomes] == [f"ValueError: cannot do {t.unit_id}" for t in tasks]
