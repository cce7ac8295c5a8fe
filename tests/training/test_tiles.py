"""Tiles around parcels, a spatially disjoint validation split, and the label budget."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
from affine import Affine

from rs_reasoner_training.data.dataset import IGNORE_INDEX
from rs_reasoner_training.data.parcels import rasterize_parcels
from rs_reasoner_training.data.tiles import (
    LEFT_OUT,
    TRAIN,
    VAL,
    budget_parcels,
    group_parcels,
    parcel_training_data,
    split_groups,
)
from rs_reasoner_training.errors import LabelLayerError


@pytest.fixture
def atlanta(shared_data):
    return shared_data / "spacenet_atlanta_pan_utm16n.tif", gpd.read_file(
        shared_data / "spacenet_atlanta_buildings.geojson"
    )


def _window(source, ref) -> Affine:
    return source.transform @ Affine.translation(ref.col, ref.row)


def _burns(frame, source, ref) -> int:
    """Pixels of ``frame``'s parcels inside tile ``ref``."""
    if len(frame) == 0:
        return 0
    lab = rasterize_parcels(frame.assign(class_id=1), _window(source, ref), (ref.size,) * 2)
    return int((lab == 1).sum())


def test_validation_parcels_never_reach_training_tiles(atlanta):
    raster, frame = atlanta
    data = parcel_training_data(
        raster, frame, "building", background="other", tile_size=128, val_fraction=0.3, seed=3
    )
    src = data.labelled.source
    train, val, unl = data.labelled.refs, data.val.refs, data.unlabelled.refs
    keys = [{(r.row, r.col) for r in refs} for refs in (train, val, unl)]
    assert not (keys[0] & keys[1] or keys[0] & keys[2] or keys[1] & keys[2])
    assert len(src.val) >= 0.3 * len(frame) and len(src.train) + len(src.val) == len(frame)
    # No pixel of a validation parcel in any training or unlabelled tile, and no training
    # parcel pixel in a validation tile.
    assert all(_burns(src.val, src, r) == 0 for r in train + unl)
    assert all(_burns(src.train, src, r) == 0 for r in val)
    # Every validation parcel pixel is in some validation tile.
    full = rasterize_parcels(src.val.assign(class_id=1), src.transform, src.shape)
    covered = np.zeros(src.shape, bool)
    for r in val:
        covered[r.row : r.row + r.size, r.col : r.col + r.size] = True
    assert full.sum() > 0 and covered[full == 1].all()
    # Labels of every tile are exactly its parcels (+ background), as burnt from all of them.
    for dataset, parcels in ((data.labelled, src.train), (data.val, src.val)):
        for k, ref in enumerate(dataset.refs):
            item = dataset[k]
            expected = rasterize_parcels(parcels, _window(src, ref), (128, 128), fill=0)
            expected[~item["valid"].numpy().astype(bool)] = IGNORE_INDEX  # off the raster
            assert np.array_equal(item["label"].numpy(), expected), (dataset.role, k)
    item = data.labelled[0]
    assert item["image"].shape == (3, 128, 128) and 0 <= item["image"].min() <= 1
    assert (data.unlabelled[0]["label"] == IGNORE_INDEX).all()


def test_label_budget_keeps_a_nested_seeded_subset_and_the_same_validation(atlanta):
    raster, frame = atlanta
    kinds = frame.assign(kind=np.where(frame.area < 200, "small", "large"))
    runs = {
        b: parcel_training_data(raster, kinds, "kind", tile_size=128, label_budget=b, seed=5)
        for b in (0.25, 0.5, 1.0)
    }
    srcs = {b: d.labelled.source for b, d in runs.items()}
    val_ids = {b: set(s.val["parcel_id"]) for b, s in srcs.items()}
    assert val_ids[0.25] == val_ids[0.5] == val_ids[1.0]
    kept = {b: set(s.train["parcel_id"]) for b, s in srcs.items()}
    assert kept[0.25] <= kept[0.5] <= kept[1.0]
    full = srcs[1.0].train
    for b in (0.25, 0.5):
        for cls, n in full["class_name"].value_counts().items():
            got = (srcs[b].train["class_name"] == cls).sum()
            assert got == max(1, int(np.ceil(b * n)))
        # Left-out parcels are ignored where a kept parcel's tile shows them.
        assert len(srcs[b].left_out) == len(full) - len(kept[b])
        assert len(runs[b].labelled) < len(runs[1.0].labelled)
        assert len(runs[b].unlabelled) > len(runs[1.0].unlabelled)
    again = parcel_training_data(raster, kinds, "kind", tile_size=128, label_budget=0.25, seed=5)
    assert set(again.labelled.source.train["parcel_id"]) == kept[0.25]
    item = runs[0.25].labelled[0]
    assert set(item["label"].unique().tolist()) <= {0, 1, IGNORE_INDEX}


def test_grouping_split_and_budget_helpers():
    # Tiles 0..2; parcels 0-1 share tile 0, 1-2 share tile 1, parcel 3 alone in tile 2.
    groups = group_parcels(5, np.array([0, 0, 1, 1, 2]), np.array([0, 1, 1, 2, 3]))
    assert groups[0] == groups[1] == groups[2] != groups[3]
    assert groups[4] not in (groups[0], groups[3])  # parcel 4 touches no tile
    classes = np.array([0, 1, 0, 1, 1])
    is_val = split_groups(groups, classes, 0.2, seed=0)
    # Whole groups only, and every class keeps a training parcel.
    for g in np.unique(groups):
        assert len(set(is_val[groups == g])) == 1
    assert set(classes[~is_val]) == {0, 1}
    with pytest.raises(LabelLayerError, match="No parcels can be held out"):
        split_groups(np.zeros(4, int), np.array([0, 1, 0, 1]), 0.5, seed=0)
    assert not split_groups(groups, classes, 0.0, seed=0).any()
    keep = budget_parcels(np.ones(5, bool), classes, 0.01, seed=0)
    assert keep.sum() == 2 and set(classes[keep]) == {0, 1}
    with pytest.raises(LabelLayerError, match="label budget"):
        budget_parcels(np.ones(5, bool), classes, 0.0, seed=0)
    assert (TRAIN, VAL, LEFT_OUT) == (0, 1, 2)


SLOVENIA = ("slovenia/slovenia_ndvi_68dates_utm33n.tif", "slovenia/slovenia_lulc.gpkg")


def test_all_bands_of_the_68_band_stack_normalised_and_held_out_one_by_one(shared_data):
    from rs_reasoner.raster.band_stats import BandStats

    raster, labels = (shared_data / p for p in SLOVENIA)
    data = parcel_training_data(raster, labels, "LULC_NAME", tile_size=32, all_bands=True)
    assert data.in_channels == 68
    stats = BandStats.from_dict(data.summary["band_stats"])
    assert stats.bands == tuple(range(1, 69)) and stats.names[0] == "NDVI 2015-07-11"
    sample = data.labelled.source.read(data.labelled.refs[0], "train")
    assert sample.image.shape == (32, 32, 68) and sample.image.dtype == np.float32
    assert np.isfinite(sample.image).all()
    # A large forest parcel touches every tile: one block, so parcels are held out one by
    # one, and a tile may serve both roles, each with only its own parcels' labels.
    assert any("held out one by one" in n for n in data.summary["notes"])
    source = data.labelled.source
    shared = set(data.labelled.refs) & set(data.val.refs)
    assert shared
    for ref in shared:
        train = source.read(ref, "train").label
        val = source.read(ref, "val").label
        assert not ((train != IGNORE_INDEX) & (val != IGNORE_INDEX)).any()
        assert _burns(source.val, source, ref) == 0 or (val != IGNORE_INDEX).any()


def test_a_class_with_one_parcel_is_refused_when_validating(atlanta, tmp_path):
    raster, frame = atlanta
    kinds = np.where(frame.area < 200, "small", "large").astype(object)
    kinds[0] = "shed"
    labels = tmp_path / "kinds.gpkg"
    frame.assign(kind=kinds)[["kind", "geometry"]].to_file(labels)
    with pytest.raises(LabelLayerError, match=r"'shed' have only one parcel") as err:
        parcel_training_data(raster, labels, "kind", tile_size=128)
    assert "validation fraction 0" in err.value.hint
    data = parcel_training_data(raster, labels, "kind", tile_size=128, val_fraction=0)
    assert "shed" in data.class_names
    # The background class needs no parcel of its own.
    frame.assign(kind="building")[["kind", "geometry"]].iloc[:2].to_file(tmp_path / "b.gpkg")
    parcel_training_data(raster, tmp_path / "b.gpkg", "kind", tile_size=128, background="other",
                         val_fraction=0.5)  # fmt: skip


def test_parcels_only_on_pixels_without_data_are_refused(shared_data, tmp_path):
    import rasterio

    from tests.support.rasters import write_geotiff

    with rasterio.open(shared_data / SLOVENIA[0]) as ds:
        data = ds.read()
        profile_crs, transform = ds.crs, ds.transform
    data[:, :, :40] = np.nan  # the western 40 columns hold no data in any band
    path = write_geotiff(tmp_path / "holes.tif", data, crs=profile_crs, transform=transform)
    frame = gpd.read_file(shared_data / SLOVENIA[1]).to_crs(profile_crs)
    x0 = transform.c
    west = frame.geometry.bounds["maxx"] < x0 + 38 * transform.a
    names = frame["LULC_NAME"].where(~west, "ghost")
    assert west.sum() >= 2  # several parcels, all in the hole
    labels = tmp_path / "ghost.gpkg"
    frame.assign(LULC_NAME=names).to_file(labels)
    with pytest.raises(LabelLayerError, match=r"class\(es\) 'ghost' lie only on pixels without"):
        parcel_training_data(path, labels, "LULC_NAME", tile_size=32, all_bands=True)
