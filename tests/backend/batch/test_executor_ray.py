"""Batches on a local Ray (2 CPUs, loopback): one Ray start for the module."""

from pathlib import Path

import geopandas as gpd
import pytest

from rs_reasoner.batch.run import run_batch
from tests.backend.batch import kill_hooks
from tests.backend.batch.conftest import NEON, assert_same_polygons, config, single_extent

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             _node_ip_address="127.0.0.1")  # fmt: skip
    # Test modules are shipped by value: the workers do not have tests/ on their path.
    ray.cloudpickle.register_pickle_by_value(kill_hooks)
    yield
    ray.shutdown()


def test_ray_batch_equals_the_single_extent_run_despite_a_dead_worker(
    local_ray, neon_tiles: list[Path], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    victims = ["s000-r0000096-c0000096", "s000-r0000288-c0000192"]
    for unit_id in victims:
        (out / f"die-{unit_id}").touch()
    result = run_batch(
        config(neon_tiles, out, ray_address="auto", workers=2, merged=tmp_path / "all.gpkg"),
        fn=kill_hooks.die_once,
    )
    assert result.complete
    assert not list(out.glob("die-*"))  # both workers were killed, Ray retried their units
    assert all(u.attempts == 1 for u in result.manifest.units)  # retries are Ray's
    assert len(list((out / "parts").glob("*.pieces.parquet"))) == len(result.manifest.units)
    assert_same_polygons(gpd.read_file(tmp_path / "all.gpkg"), single_extent(NEON))
