"""``rs-reasoner train`` on real NEON parcels, then ``models list`` and ``segment --model``."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import pytest
import shapely
import torch

from rs_reasoner import trained_models
from rs_reasoner.cli import main
from tests.support.parcels import write_neon_parcels
from tests.support.training import CLI_SMALL_UNET, NEON, one_torch_thread  # noqa: F401


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One CLI training run (2 epochs, 64-px tiles, small U-Net) into a private models dir."""
    from tests.conftest import SHARED_DATA

    if not (SHARED_DATA / NEON).exists():
        pytest.skip("sample data missing")
    tmp = tmp_path_factory.mktemp("cli-train")
    labels = tmp / "NEON Parcels.gpkg"
    parcels = write_neon_parcels(SHARED_DATA / NEON, labels)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(trained_models.ENV_MODELS_DIR, str(tmp / "models"))
        yield {"tmp": tmp, "labels": labels, "parcels": parcels, "raster": SHARED_DATA / NEON}


def train_args(raster: Path, labels: Path, *extra: str) -> list[str]:
    return [
        "train", "--raster", str(raster), "--labels", str(labels), "--class-field", "cover",
        "--epochs", "2", "--tile-size", "64", "--no-verifier", "--quiet", *CLI_SMALL_UNET,
        *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def run(trained):
    """The training run's exit code and output (the name comes from the labels file)."""
    import contextlib
    import io

    import torch

    out, err = io.StringIO(), io.StringIO()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(train_args(trained["raster"], trained["labels"]))
    finally:
        torch.set_num_threads(threads)
    return {"code": code, "out": out.getvalue(), "err": err.getvalue(), **trained}


def test_train_registers_the_model_and_says_how_to_use_it(run) -> None:
    assert run["code"] == 0, run["err"]
    folder = Path(run["tmp"]) / "models" / "neon-parcels"
    # A run that ended keeps only what serving needs: no resume state (last.pt).
    assert {p.name for p in folder.iterdir()} == {"best.pt", "history.json", "model.json"}
    info = json.loads((folder / "model.json").read_text())
    assert info["name"] == "neon-parcels" and info["classes"] == ["sand", "tree"]
    assert info["class_field"] == "cover" and info["epochs_run"] == 2
    assert info["stopped"] == "completed" and 1 <= info["best_epoch"] <= 2
    assert 0 < info["best_miou"] <= 1 and set(info["per_class_iou"]) == {"sand", "tree"}
    out = run["out"]
    assert "epoch 1/2: loss" in out and "epoch 2/2: loss" in out and "val mIoU" in out
    assert f"model 'neon-parcels' (unet): validation mIoU {info['best_miou']:.3f}" in out
    assert '--model neon-parcels --query "sand, tree"' in out
    assert "Traceback" not in run["err"]


def test_models_list_shows_the_trained_model(run, capsys) -> None:
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    line = next(li for li in out.splitlines() if li.startswith("neon-parcels"))
    assert "trained here" in line and "open_vocabulary" in line
    assert "classes: sand, tree" in out
    assert "index-baseline" in out


def test_segment_with_the_trained_model(run, capsys) -> None:
    out = Path(run["tmp"]) / "trees.gpkg"
    code = main([
        "segment", str(run["raster"]), "--model", "neon-parcels", "--query", "trees",
        "--out", str(out), "--quiet",
    ])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    polygons = gpd.read_file(out)
    assert len(polygons) > 0 and set(polygons["label"]) == {"trees"}
    assert set(polygons["model"]) == {"neon-parcels"}
    # It learned: tree parcels are mostly covered by "trees" polygons, sand parcels much less.
    found = shapely.union_all(polygons.geometry.values)
    parcels = run["parcels"]

    def covered(cls: str) -> float:
        geoms = parcels.loc[parcels["cover"] == cls].geometry
        return float(sum(g.intersection(found).area for g in geoms) / geoms.area.sum())

    tree, sand = covered("tree"), covered("sand")
    assert tree > 0.8 and tree > sand + 0.4, (tree, sand)


def test_unknown_class_lists_the_model_classes(run, capsys, tmp_path) -> None:
    code = main([
        "segment", str(run["raster"]), "--model", "neon-parcels", "--query", "tree, water",
        "--out", str(tmp_path / "x.gpkg"),
    ])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "does not know 'water'" in err and "sand, tree" in err
    assert "Traceback" not in err and not (tmp_path / "x.gpkg").exists()


def test_train_option_and_name_errors(run, capsys) -> None:
    raster, labels = run["raster"], run["labels"]
    cases = [
        (["--train-option", "nope=1"], "Unknown training option 'nope'"),
        (["--train-option", "epochs=3"], "Use --epochs"),
        (["--train-option", "model=unet"], "Use --model"),
        (["--name", "index-baseline"], "built-in model"),
        (["--name", "Bad Name"], "not allowed"),
        (["--label-budget", "0"], "label_budget"),
    ]
    for extra, message in cases:
        assert main(train_args(raster, labels, *extra)) == 2, extra
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and "Traceback" not in err


def test_bands_and_resolution_are_trained_on_recorded_and_repeated(trained, capsys) -> None:
    args = train_args(trained["raster"], trained["labels"], "--name", "swapped",
                      "--keep-checkpoints")  # fmt: skip
    assert main([*args, "--bands", "3", "2", "1", "--resolution", "0.2"]) == 0
    out = capsys.readouterr().out
    # The model reads the bands it was trained on by itself: the command only repeats
    # the resolution.
    assert "--model swapped --resolution 0.2 --query" in out
    info = json.loads((Path(trained["tmp"]) / "models" / "swapped" / "model.json").read_text())
    assert info["bands"] == [3, 2, 1] and info["resolution"] == 0.2
    assert info["band_stats"]["bands"] == [3, 2, 1]
    data = torch.load(Path(trained["tmp"]) / "models" / "swapped" / "best.pt")["data"]
    assert data["bands"] == [3, 2, 1] and data["scale"] == pytest.approx(2.0)  # 10 cm → 20 cm
    # Resuming the model with other bands would mix inputs: refused, with a hint.
    assert main([*args, "--bands", "1", "2", "3", "--resolution", "0.2"]) == 2
    assert "trained on other data" in capsys.readouterr().err
    # A band the raster does not have is an error with a hint, before any training.
    assert main([*train_args(trained["raster"], trained["labels"], "--name", "bad-band"),
                 "--bands", "7", "2", "1"]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "\nhint: " in err and "Traceback" not in err
    assert not (Path(trained["tmp"]) / "models" / "bad-band").exists()


def test_time_budget_before_the_first_epoch_is_an_error_not_a_model(trained, capsys) -> None:
    args = train_args(trained["raster"], trained["labels"], "--name", "no-epoch")
    assert main([*args, "--time-budget", "0.000001"]) == 2
    err = capsys.readouterr().err
    assert "error: No epoch finished within the time budget" in err and "\nhint: " in err
    assert "no-epoch" not in {m.name for m in trained_models.list_models()}
    assert not (Path(trained["tmp"]) / "models" / "no-epoch").exists()


@pytest.mark.parametrize("case", ["field", "empty", "one-class", "outside", "points"])
def test_bad_labels_exit_2_with_a_hint(trained, tmp_path, capsys, case) -> None:
    parcels = trained["parcels"]
    labels, field = tmp_path / f"{case}.gpkg", "cover"
    if case == "field":
        parcels.to_file(labels)
        field, message = "Cover", "has no field 'Cover'. Available fields: cover."
    elif case == "empty":
        parcels.iloc[:0].to_file(labels)
        message = "has no features"
    elif case == "one-class":
        parcels.assign(cover="tree").to_file(labels)
        message = "All parcels have the same class ('tree')"
    elif case == "outside":
        parcels.set_geometry(parcels.translate(5000, 0)).to_file(labels)
        message = "No parcel lies on the raster"
    else:
        parcels.set_geometry(parcels.centroid).to_file(labels)
        message = "must be polygons"
    args = train_args(trained["raster"], labels)
    args[args.index("cover")] = field
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err, err
    assert "\nhint: " in err and "Traceback" not in err
    assert not (Path(trained["tmp"]) / "models" / case).exists()  # nothing left behind
    if case == "field":
        assert "Did you mean 'cover'?" in err
