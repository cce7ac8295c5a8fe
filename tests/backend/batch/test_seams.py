import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from affine import Affine

from rs_reasoner.batch.seams import merge_pieces, split_edge_objects
from rs_reasoner.pipeline import open_dataset
from rs_reasoner.raster import ExtentReader
from rs_reasoner.segmenters.index_baseline import index_scores
from rs_reasoner.vector import vectorize
from tests.backend.batch.conftest import NEON, assert_same_polygons


def _neon_labels() -> tuple[np.ndarray, np.ndarray, Affine, object]:
    with open_dataset(str(NEON)) as ds:
        reader = ExtentReader.open(ds, None)
        image, _ = reader.read_extent()
        crs, transform = ds.crs, reader.transform
    scores = index_scores(image)["vegetation"]
    return (scores >= 0.5).astype(np.int32), scores, transform, crs


def test_split_then_merge_equals_vectorising_the_whole_map() -> None:
    labels, scores, transform, crs = _neon_labels()
    want = vectorize(labels, scores, ["vegetation"], transform, crs, min_area=0.055)
    finished, pieces = [], []
    for r0, r1 in ((0, 130), (130, 400)):
        for c0, c1 in ((0, 77), (77, 300), (300, 400)):
            interior, p = split_edge_objects(
                labels[r0:r1, c0:c1], scores[r0:r1, c0:c1], ["vegetation"], (r0, c0, r1, c1), 0
            )
            t = transform @ Affine.translation(c0, r0)
            finished.append(vectorize(interior, scores[r0:r1, c0:c1], ["vegetation"], t, crs,
                                      min_area=0.055))  # fmt: skip
            pieces.append(p)
    all_pieces = gpd.GeoDataFrame(pd.concat(pieces, ignore_index=True))
    assert len(all_pieces) > 20  # the cuts do cross objects
    merged = merge_pieces(all_pieces, transform, crs, min_area=0.055)
    got = gpd.GeoDataFrame(pd.concat([*finished, merged], ignore_index=True), crs=crs)
    assert_same_polygons(got, want)


def test_pieces_touching_at_a_corner_stay_apart() -> None:
    # Two pixels meeting at a corner across a unit edge: two objects, as 4-connectivity says.
    labels = np.zeros((4, 4), np.int32)
    labels[1, 1] = labels[2, 2] = 1
    scores = np.ones((4, 4), np.float32)
    pieces = []
    for c0, c1 in ((0, 2), (2, 4)):
        _, p = split_edge_objects(labels[:, c0:c1], scores[:, c0:c1], ["x"], (0, c0, 4, c1), 0)
        pieces.append(p)
    merged = merge_pieces(gpd.GeoDataFrame(pd.concat(pieces, ignore_index=True)),
                          Affine.identity(), None)  # fmt: skip
    assert len(merged) == 2
    # Side by side they join into one object with the pixel-weighted mean score.
    labels[1, 2], scores[1, 1] = 1, 0.0
    pieces = [split_edge_objects(labels[:, c0:c1], scores[:, c0:c1], ["x"], (0, c0, 4, c1), 0)[1]
              for c0, c1 in ((0, 2), (2, 4))]  # fmt: skip
    merged = merge_pieces(gpd.GeoDataFrame(pd.concat(pieces, ignore_index=True)),
                          Affine.identity(), None)  # fmt: skip
    assert len(merged) == 1
    assert merged["score"].iloc[0] == round(2 / 3, 4) and merged["area"].iloc[0] == 3.0
    assert shapely.equals(merged.geometry.iloc[0], shapely.union_all(
        [shapely.box(1, 1, 3, 2), shapely.box(2, 2, 3, 3)]))


def test_interior_objects_are_not_pieces() -> None:
    labels = np.zeros((6, 6), np.int32)
    labels[2:4, 2:4] = 1  # inside
    labels[0, 0] = 1  # on the edge
    interior, pieces = split_edge_objects(labels, np.ones((6, 6)), ["x"], (10, 20, 16, 26), 0)
    assert interior.sum() == 4 and len(pieces) == 1
    assert pieces["pixels"].iloc[0] == 1
    assert pieces.geometry.iloc[0].bounds == (20.0, 10.0, 21.0, 11.0)  # working-grid pixels
