"""Image + mask folders (Dubai colour masks, index masks) as training data."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from rs_reasoner_training.data.dataset import IGNORE_INDEX
from rs_reasoner_training.data.folder import (
    DUBAI_COLOURS,
    MaskTable,
    dubai_pairs,
    dubai_training_data,
    folder_training_data,
    pair_files,
)
from rs_reasoner_training.errors import LabelLayerError

DUBAI_TABLE = MaskTable.from_colours(DUBAI_COLOURS)


def _colour_counts(path) -> dict[str, int]:
    rgb = np.asarray(Image.open(path).convert("RGB")).reshape(-1, 3)
    colours, counts = np.unique(rgb, axis=0, return_counts=True)
    return {
        "#" + bytes(c.tolist()).hex().upper(): int(n) for c, n in zip(colours, counts, strict=True)
    }


@pytest.mark.parametrize(
    "mask", ["tile1/masks/image_part_001.png", "tile2/masks/image_part_004.png"]
)
def test_dubai_colour_masks_decode_to_class_ids(shared_data, mask):
    path = shared_data / "dubai" / mask  # tile1: RGB PNG, tile2: palette PNG
    labels = DUBAI_TABLE.decode(Image.open(path))
    counts = _colour_counts(path)
    for class_id, colour in enumerate(DUBAI_COLOURS.values()):
        assert (labels == class_id).sum() == counts.get(colour, 0)
    assert (labels == IGNORE_INDEX).sum() == counts.get("#9B9B9B", 0)  # Unlabeled


def test_dubai_split_holds_out_whole_images_and_budget(shared_data):
    data = dubai_training_data(
        shared_data / "dubai", tile_size=64, downscale=8, val_fraction=0.2, label_budget=0.25
    )
    assert data.class_names == ["Building", "Land", "Road", "Vegetation", "Water"]
    counts = data.summary["images"]
    assert counts == {"val": 9, "train": 9, "unlabelled": 27}  # 45 images: 9 held out, 25% of 36
    train = {r.source for r in data.labelled.refs}
    val = {r.source for r in data.val.refs}
    unl = {r.source for r in data.unlabelled.refs}
    assert not (train & val or train & unl or val & unl)
    item = data.labelled[0]
    assert item["image"].shape == (3, 64, 64) and item["label"].shape == (64, 64)
    assert set(item["label"].unique().tolist()) <= {0, 1, 2, 3, 4, IGNORE_INDEX}
    assert (data.unlabelled[0]["label"] == IGNORE_INDEX).all()
    # Same seed, bigger budget: same validation images, labelled set grows.
    more = dubai_training_data(
        shared_data / "dubai", tile_size=64, downscale=8, val_fraction=0.2, label_budget=0.5
    )
    assert more.summary["val_images"] == data.summary["val_images"]
    assert set(data.summary["train_images"]) < set(more.summary["train_images"])


def test_index_masks_and_images_without_masks(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "mask").mkdir()
    for i in range(3):
        Image.fromarray(np.full((40, 50, 3), 60 * i, np.uint8)).save(tmp_path / "img" / f"a{i}.png")
    mask = np.zeros((40, 50), np.uint8)
    mask[:, 25:] = 1
    mask[0, :] = 7  # not in the table -> ignored
    for i in range(2):
        Image.fromarray(mask).save(tmp_path / "mask" / f"a{i}.png")
    pairs = pair_files(tmp_path / "img", tmp_path / "mask")
    assert [m is None for _, m in pairs] == [False, False, True]
    table = MaskTable.from_values({0: "soil", 1: "crop"})
    data = folder_training_data(pairs, table, tile_size=32, val_fraction=0.5)
    assert len(data.val.refs) == 4 and len(data.labelled.refs) == 4  # 2x2 padded tiles each
    assert len(data.unlabelled.refs) == 4  # the mask-less image
    label = data.labelled[0]["label"].numpy()
    assert (label[0] == IGNORE_INDEX).all() and (label[1:, :25] == 0).all()
    assert (label[1:, 25:] == 1).all()
    corner = data.labelled.refs[3]
    item = data.labelled[3]
    assert corner.row == 32 and not item["valid"][8:].any()  # padding is invalid and ignored
    assert (item["label"][8:] == IGNORE_INDEX).all()


def test_folder_errors(tmp_path):
    with pytest.raises(LabelLayerError, match="does not exist"):
        pair_files(tmp_path / "x", tmp_path)
    (tmp_path / "img").mkdir()
    (tmp_path / "mask").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "img" / "a.png")
    with pytest.raises(LabelLayerError, match="has a mask of the same name"):
        pair_files(tmp_path / "img", tmp_path / "mask")
    with pytest.raises(LabelLayerError, match="at least two classes"):
        MaskTable.from_colours({"only": "#FFFFFF"})
    with pytest.raises(LabelLayerError, match="tile"):
        dubai_pairs(tmp_path)
