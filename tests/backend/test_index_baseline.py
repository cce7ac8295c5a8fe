from pathlib import Path

import numpy as np
import pytest
import rasterio

from rs_reasoner.errors import InvalidRequestError
from rs_reasoner.schemas import Mode
from rs_reasoner.segmenters.base import SegmentationQuery
from rs_reasoner.segmenters.index_baseline import IndexBaselineSegmenter
from rs_reasoner.segmenters.index_classes import check_query, match_class


def query(*classes: tuple[str, ...]) -> SegmentationQuery:
    return SegmentationQuery(text="q", mode=Mode.open_vocabulary, classes=classes)


def test_synonyms_map_to_classes() -> None:
    assert match_class(("trees",)) == "vegetation"
    assert match_class(("lakes",)) == "water"
    assert match_class(("rooftop", "river")) == "water"
    assert match_class(("buildings",)) is None


def test_green_and_dark_blue_patches() -> None:
    image = np.full((20, 30, 3), 200, np.uint8)  # bright grey: neither class
    image[:, :10] = (40, 150, 40)  # vegetation green
    image[:, 20:] = (10, 20, 40)  # dark blue water
    valid = np.ones(image.shape[:2], bool)
    valid[0, 0] = False
    res = IndexBaselineSegmenter().segment(image, valid, query(("trees",), ("water",)))
    assert res.class_names == ["trees", "water"]
    thresholded = np.where(res.scores >= 0.5, res.labels, 0)
    assert (thresholded[1:, :10] == 1).all()
    assert (thresholded[:, 20:] == 2).all()
    assert (thresholded[:, 10:20] == 0).all()
    assert res.labels[0, 0] == 0


def test_unknown_class_is_a_clear_error() -> None:
    image = np.zeros((4, 4, 3), np.uint8)
    with pytest.raises(InvalidRequestError, match="buildings"):
        IndexBaselineSegmenter().segment(image, np.ones((4, 4), bool), query(("buildings",)))


def test_check_query_refuses_unknown_classes_without_an_image() -> None:
    check_query(query(("trees",), ("lake", "pond")))  # known: no error
    with pytest.raises(InvalidRequestError, match="'buildings', 'cars'") as err:
        check_query(query(("trees",), ("buildings",), ("cars",)))
    assert "vegetation" in err.value.hint


def test_finds_tree_canopy_on_real_neon_image(shared_data: Path) -> None:
    with rasterio.open(shared_data / "neon_osbs_rgb_10cm_utm17n.tif") as ds:
        image = np.moveaxis(ds.read([1, 2, 3]), 0, -1)
    res = IndexBaselineSegmenter().segment(
        image, np.ones(image.shape[:2], bool), query(("trees",))
    )
    veg = (res.scores >= 0.5) & (res.labels == 1)
    # The OSBS tile is pine savanna: canopy covers a real part of it, not none nor all.
    assert 0.05 < veg.mean() < 0.95
    # Vegetation pixels are greener than the rest.
    green_share = image[..., 1] / (image.sum(axis=2) + 1)
    assert green_share[veg].mean() > green_share[~veg].mean()
