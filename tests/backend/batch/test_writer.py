from pathlib import Path

import geopandas as gpd
import shapely

from rs_reasoner.batch.manifest import Unit
from rs_reasoner.batch.units import plan_source
from rs_reasoner.batch.writer import SEAMS_NAME, merge_seams, read_parts, write_part
from tests.backend.batch.conftest import NEON, OPTIONS


def test_part_round_trip_keeps_crs_and_columns(tmp_path: Path) -> None:
    frame = gpd.GeoDataFrame({"label": ["a"], "score": [0.5]},
                             geometry=[shapely.box(0, 0, 1, 1)], crs="EPSG:32617")  # fmt: skip
    write_part(frame, tmp_path / "parts" / "u.parquet")
    back = read_parts(tmp_path, ["parts/u.parquet"])
    assert back.crs == frame.crs and list(back.columns) == list(frame.columns)
    assert not [p for p in (tmp_path / "parts").iterdir() if p.name.startswith(".")]


def test_no_pieces_still_writes_an_empty_seams_layer(tmp_path: Path) -> None:
    plan, windows = plan_source(str(NEON), OPTIONS, None)
    unit = Unit(id="u", source=0, window=list(windows[0]))
    empty = gpd.GeoDataFrame({"source": [], "label": [], "pixels": [], "score_sum": []},
                             geometry=gpd.GeoSeries([]))  # fmt: skip
    write_part(empty, tmp_path / "parts" / "u.pieces.parquet")
    out = merge_seams(tmp_path, {0: [unit.id]}, [plan], "", OPTIONS, {"query": "trees"})
    assert len(out) == 0
    written = gpd.read_parquet(tmp_path / SEAMS_NAME)
    assert list(written.columns) == ["label", "score", "area", "query", "geometry"]
    assert written.crs is not None and written.crs.to_epsg() == 32617
