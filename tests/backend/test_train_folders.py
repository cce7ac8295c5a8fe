"""``rs-reasoner train --images DIR --masks DIR --classes FILE`` on crops of the real Dubai
sample: the plan, the per-class IoU and the segment command it prints are true; a finished
run keeps only the served model; bad folders get one clear error each."""

from __future__ import annotations

import contextlib
import io
import json
import shlex
import shutil
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
from PIL import Image

from rs_reasoner import trained_models
from rs_reasoner.cli import main
from tests.support.mask_folders import DUBAI_CLASSES, DUBAI_CRS, write_dubai_crops
from tests.support.training import one_torch_thread  # noqa: F401

#: Two quick candidates (the classical learner and a small U-Net, one epoch).
QUICK = [
    "--epochs", "1", "--tile-size", "128", "--threads", "1", "--quiet",
    "--train-option=candidates=classical,unet", "--train-option=base_channels=8",
    "--train-option=depth=2", "--train-option=batch_size=4",
]  # fmt: skip


def run_cli(args: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(args)
    return code, out.getvalue(), err.getvalue()


def folder_args(paths: dict[str, Path], *extra: str) -> list[str]:
    return ["train", "--images", str(paths["images"]), "--masks", str(paths["masks"]),
            "--classes", str(paths["classes"]), *extra]  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from tests.conftest import SHARED_DATA

    if not (SHARED_DATA / "dubai").is_dir():
        pytest.skip("sample data missing")
    tmp = tmp_path_factory.mktemp("folders")
    paths = write_dubai_crops(SHARED_DATA / "dubai", tmp / "crops", geotiff=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(trained_models.ENV_MODELS_DIR, str(tmp / "models"))
        code, out, err = run_cli(folder_args(paths, *QUICK))
        yield {"code": code, "out": out, "err": err, "tmp": tmp, "paths": paths,
               "folder": tmp / "models" / "crops"}  # fmt: skip


def test_folders_train_a_model_and_the_plan_is_true(trained) -> None:
    assert trained["code"] == 0, trained["err"]
    out, folder = trained["out"], trained["folder"]
    info = json.loads((folder / "model.json").read_text())
    assert info["classes"] == DUBAI_CLASSES and info["images"] == str(trained["paths"]["images"])
    # 5 masked images, a fifth held out whole: 4 training, 1 validation, each 2x2 tiles.
    assert "plan: images 4 training, 1 validation, 0 unlabelled" in out
    assert "plan: tiles of 128 px: 16 training, 4 validation, 0 unlabelled" in out
    assert info["plan"]["tiles"] == {"train": 16, "val": 4, "unlabelled": 0}
    # Classes said to be absent from validation are exactly those of no pixel in the
    # held-out image's mask.
    (held_out,) = info["plan"]["val_images"]
    mask = np.asarray(Image.open(trained["paths"]["masks"] / held_out).convert("RGB"))
    colours = {"Building": (60, 16, 152), "Land": (132, 41, 246), "Road": (110, 193, 228),
               "Vegetation": (254, 221, 58), "Water": (226, 169, 41)}  # fmt: skip
    absent = [c for c in DUBAI_CLASSES if not (mask == colours[c]).all(-1).any()]
    assert info["plan"]["classes_without_validation"] == absent
    if absent:
        assert f"(their IoU is not measured): {', '.join(absent)}" in out
    # The comparison table, then the IoU per class in the model's class order, by name.
    assert "classical" in out and "unet" in out and "<- chosen" in out
    lines = out.splitlines()
    start = lines.index("  validation IoU per class:")
    shown = [line.split()[0] for line in lines[start + 1 : start + 6]]
    assert shown == DUBAI_CLASSES
    for name in DUBAI_CLASSES:
        value = info["per_class_iou"].get(name)
        line = lines[start + 1 + DUBAI_CLASSES.index(name)]
        assert (f"{value:.3f}" if value is not None else "not measured") in line


def test_a_finished_run_keeps_only_the_served_model(trained) -> None:
    folder = trained["folder"]
    info = json.loads((folder / "model.json").read_text())
    served = info["checkpoint"]
    assert served in ("best.pt", "classical.json")
    assert {p.name for p in folder.iterdir()} <= {served, "model.json", "history.json",
                                                  "auto.json"}  # fmt: skip
    # The comparison stays in model.json, without paths to the deleted candidates.
    names = [c["name"] for c in info["auto"]["comparison"]]
    assert names == ["classical", "unet"] and info["auto"]["chosen"] in names
    assert all("artefact" not in c for c in info["auto"]["comparison"])


def test_the_printed_segment_command_runs_and_keeps_the_crs(trained) -> None:
    line = next(li for li in trained["out"].splitlines() if li.startswith("use it: "))
    args = shlex.split(line.removeprefix("use it: "))
    assert args[:2] == ["rs-reasoner", "segment"]
    out = trained["tmp"] / "polygons.gpkg"
    args[args.index("--out") + 1] = str(out)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(trained_models.ENV_MODELS_DIR, str(trained["tmp"] / "models"))
        code, _, err = run_cli([*args[1:], "--quiet"])
    assert code == 0, err
    polygons = gpd.read_file(out)
    assert len(polygons) > 0 and set(polygons["label"]) <= {c.lower() for c in DUBAI_CLASSES}
    assert polygons.crs.to_string() == DUBAI_CRS  # a georeferenced image keeps its CRS


def test_keep_checkpoints_keeps_the_resume_state_and_a_pruned_run_starts_over(
    trained, monkeypatch
) -> None:
    monkeypatch.setenv(trained_models.ENV_MODELS_DIR, str(trained["tmp"] / "models"))
    args = folder_args(trained["paths"], *QUICK, "--train-option=candidates=unet")
    code, out, err = run_cli([*args, "--name", "kept", "--keep-checkpoints"])
    assert code == 0, err
    kept = trained["tmp"] / "models" / "kept"
    assert (kept / "candidates" / "unet" / "last.pt").is_file()
    # The finished, pruned model trained again: from the start, its epochs shown again.
    code, out, err = run_cli(folder_args(trained["paths"], *QUICK))
    assert code == 0, err
    assert "was trained before and kept no resume state" in out
    assert "unet: epoch 1/1: loss" in out
    assert not (trained["folder"] / "candidates").exists()


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "case", ["no-pairs", "orphan", "unknown", "size", "table", "unseen", "mixed"]
)
def test_bad_folders_exit_2_with_one_clear_error(shared_data, tmp_path, monkeypatch,
                                                 case) -> None:  # fmt: skip
    monkeypatch.setenv(trained_models.ENV_MODELS_DIR, str(tmp_path / "models"))
    paths = write_dubai_crops(shared_data / "dubai", tmp_path / "crops", parts=range(5, 8))
    extra: list[str] = []
    if case == "no-pairs":
        shutil.rmtree(paths["masks"])
        paths["masks"].mkdir()
        message = "has a mask of the same name"
    elif case == "orphan":
        shutil.copy(paths["masks"] / "image_part_005.png", paths["masks"] / "image_part_5.png")
        message = "1 mask(s) in"
    elif case == "unknown":
        # A real Dubai mask with 302 black pixels, a colour the dataset does not name.
        tile3 = shared_data / "dubai" / "tile3"
        shutil.copy(tile3 / "images" / "image_part_006.jpg", paths["images"] / "dark.jpg")
        shutil.copy(tile3 / "masks" / "image_part_006.png", paths["masks"] / "dark.png")
        message = "dark.png has value(s) the class table does not list: #000000 (302 px)"
    elif case == "size":
        mask = paths["masks"] / "image_part_006.png"
        Image.open(mask).crop((0, 0, 200, 256)).save(mask)
        message = "Mask image_part_006.png is 200x256 pixels but its image"
    elif case == "table":
        _write(paths["classes"], "#3C1098,Building\nLand\n")
        message = "Line 2 of classes.csv is not 'KEY,NAME'"
    elif case == "unseen":
        _write(paths["classes"], paths["classes"].read_text() + "#123456,Cloud\n")
        message = "No training mask shows class(es) Cloud"
    else:
        extra = ["--raster", str(shared_data / "landsat_rgb_utm18n.tif")]
        message = "raster: not used with image + mask folders"
    code, _, err = run_cli([*folder_args(paths, *QUICK), *extra])
    assert code == 2, err
    assert err.startswith("error: ") and message in err, err
    assert "Traceback" not in err
    if case != "mixed":
        assert "\nhint: " in err
    assert not (tmp_path / "models" / "crops").exists()  # nothing left behind
