"""Trained models: the models folder, model.json, names, the registry rescan, class
matching and the trained segmenter, on a small model trained on real NEON parcels."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio

from rs_reasoner import trained_models
from rs_reasoner.errors import InvalidRequestError, UnknownModelError
from rs_reasoner.pipeline import SegmentationPipeline
from rs_reasoner.schemas import Mode, SegmentRequest
from rs_reasoner.segmenters import registry
from rs_reasoner.segmenters.base import SegmentationQuery
from rs_reasoner.segmenters.trained import TrainedSegmenter, decide, match_classes
from tests.support.parcels import write_neon_parcels
from tests.support.training import NEON, SMALL_UNET, one_torch_thread  # noqa: F401


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """best.pt of a 1-epoch U-Net on the NEON parcels, with background class 'other'."""
    import torch

    from rs_reasoner_training.api import train_on_parcels
    from tests.conftest import SHARED_DATA

    if not (SHARED_DATA / NEON).exists():
        pytest.skip("sample data missing")
    tmp = tmp_path_factory.mktemp("ckpt")
    write_neon_parcels(SHARED_DATA / NEON, tmp / "parcels.gpkg")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = train_on_parcels(
            SHARED_DATA / NEON, tmp / "parcels.gpkg", "cover", tmp / "run",
            background="other", tile_size=64, epochs=1, semi_supervised=False,
            progress_bar=False, device="cpu", **SMALL_UNET,
        )  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    assert result.class_names == ["other", "sand", "tree"]
    return result.best_path


@pytest.fixture
def models_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "models"
    monkeypatch.setenv(trained_models.ENV_MODELS_DIR, str(root))
    return root


def install(root: Path, name: str, checkpoint: Path | None, classes: list[str]) -> Path:
    """A model folder as training leaves it (best.pt + model.json)."""
    folder = root / name
    folder.mkdir(parents=True)
    if checkpoint is not None:
        shutil.copy(checkpoint, folder / "best.pt")
    trained_models.write_info(folder, {"name": name, "classes": classes, "best_miou": 0.5})
    return folder


def test_models_dir_from_env_else_user_data_dir(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv(trained_models.ENV_MODELS_DIR, str(tmp_path / "m"))
    assert trained_models.models_dir() == tmp_path / "m"
    monkeypatch.delenv(trained_models.ENV_MODELS_DIR)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert trained_models.models_dir() == tmp_path / "data" / "rs-reasoner" / "models"


@pytest.mark.parametrize(
    ("text", "name"),
    [("My Parcels (2024)", "my-parcels-2024"), ("crops_v2", "crops_v2"), ("ÉÉ", "model"),
     ("x" * 60, "x" * 40), ("--a--", "a")],
)  # fmt: skip
def test_sanitised_names_are_valid(text: str, name: str) -> None:
    assert trained_models.sanitise_name(text) == name
    assert trained_models.check_name(name) == name


def test_bad_and_builtin_names_are_refused() -> None:
    for bad in ("", "Upper", "a b", "x" * 41, "a/b", "../x"):
        with pytest.raises(InvalidRequestError, match="not allowed"):
            trained_models.check_name(bad)
    with pytest.raises(InvalidRequestError, match="built-in") as info:
        trained_models.check_name("index-baseline", registry.registered_names())
    assert "index-baseline-trained" in info.value.hint


def test_model_json_is_written_atomically_without_nan(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    trained_models.write_info(folder, {"classes": ["a"], "best_miou": float("nan"), "p": folder})
    assert [p.name for p in folder.iterdir()] == ["model.json"]  # no temp file left
    data = json.loads((folder / "model.json").read_text())
    assert data == {"classes": ["a"], "best_miou": None, "p": str(folder)}


def test_listing_needs_best_pt_and_model_json_and_never_shadows(
    models_dir: Path, checkpoint: Path
) -> None:
    install(models_dir, "good", checkpoint, ["other", "sand", "tree"])
    install(models_dir, "no-weights", None, ["a", "b"])
    (models_dir / "no-json").mkdir()
    shutil.copy(checkpoint, models_dir / "no-json" / "best.pt")
    install(models_dir, "Bad Name", checkpoint, ["a", "b"])
    install(models_dir, "index-baseline", checkpoint, ["a", "b"])
    found = trained_models.list_models(registry.registered_names())
    assert [m.name for m in found] == ["good"]
    assert found[0].classes == ("other", "sand", "tree")
    # The built-in model keeps its name; the folder of the same name is ignored.
    assert registry.get_spec("index-baseline").tags == ()
    assert registry.get_spec("index-baseline").factory == (
        "rs_reasoner.segmenters.index_baseline:IndexBaselineSegmenter"
    )


def test_registry_rescans_the_folder_on_every_call(models_dir: Path, checkpoint: Path) -> None:
    before = {s.name for s in registry.specs()}
    assert "fresh" not in before
    with pytest.raises(UnknownModelError):
        registry.get_spec("fresh")
    install(models_dir, "fresh", checkpoint, ["other", "sand", "tree"])
    spec = registry.get_spec("fresh")
    assert spec.tags == ("trained",) and spec.classes == ("other", "sand", "tree")
    assert spec.modes == (Mode.open_vocabulary,) and spec.default_for == ()
    assert "fresh" in {s.name for s in registry.specs()}
    # Trained models never become a mode's default.
    assert registry.default_for(Mode.open_vocabulary).name != "fresh"
    with pytest.raises(UnknownModelError) as info:
        registry.get_spec("nope")
    assert "fresh" in info.value.hint
    shutil.rmtree(models_dir / "fresh")
    assert "fresh" not in {s.name for s in registry.specs()}


def test_query_classes_match_by_synonym_case_and_plural() -> None:
    model = ["Building", "low vegetation", "bus", "other"]
    assert match_classes([("buildings",)], model) == [(0,)]
    assert match_classes([("roof", "BUILDING")], model) == [(0,)]
    assert match_classes([("Low  Vegetation",), ("buses",)], model) == [(1,), (2,)]
    # Synonyms naming two classes join them.
    assert match_classes([("building; bus".split("; ")[0], "bus")], model) == [(0, 2)]
    with pytest.raises(InvalidRequestError) as info:
        match_classes([("water",), ("building",), ("roads",)], model, "crops")
    assert "'water', 'roads'" in info.value.message and "crops" in info.value.message
    assert "Building, low vegetation, bus, other" in info.value.hint
    with pytest.raises(InvalidRequestError, match="both name"):
        match_classes([("building",), ("buildings",)], model)


def test_decision_returns_only_the_classes_asked_for() -> None:
    # Model classes: other, sand, tree; one pixel each where that class wins.
    probs = np.array(
        [[[0.6, 0.2, 0.1, 0.4]], [[0.3, 0.7, 0.2, 0.35]], [[0.1, 0.1, 0.7, 0.25]]],
        dtype=np.float32,
    )
    valid = np.array([[True, True, True, False]])
    tree = decide(probs, valid, [(2,)], ["tree"])
    assert tree.labels.tolist() == [[0, 0, 1, 0]]
    assert np.allclose(tree.scores, [[0.6, 0.7, 0.7, 0.0]])
    both = decide(probs, valid, [(1,), (2,)], ["sand", "tree"])
    assert both.labels.tolist() == [[0, 1, 2, 0]] and both.class_names == ["sand", "tree"]
    # "sand; tree" as one class: their summed probability competes with "other".
    union = decide(probs, valid, [(1, 2)], ["plants"])
    assert union.labels.tolist() == [[0, 1, 1, 0]]
    assert np.allclose(union.scores[0, :3], [0.6, 0.8, 0.9])


def test_segmenter_windows_and_background_needs_asking(checkpoint: Path) -> None:
    import torch

    from tests.conftest import SHARED_DATA

    with rasterio.open(SHARED_DATA / NEON) as ds:
        image = ds.read([1, 2, 3], window=((0, 200), (0, 300))).transpose(1, 2, 0)
    valid = np.ones(image.shape[:2], bool)
    valid[:10] = False
    whole = TrainedSegmenter.load(checkpoint)
    assert whole.window == 512  # default; at least the training tile size (64)
    assert TrainedSegmenter.load(checkpoint, window=64).window == 64
    # Windows without overlap: each pixel is the model's softmax on its own window.
    tiled = TrainedSegmenter.load(checkpoint, window=100, overlap=0.0, batch_size=4)
    probs = tiled.class_probabilities(image)
    assert probs.shape == (3, 200, 300)
    # The model reads the raster's bands scaled by the training raster's statistics.
    assert tiled.stats is not None and tiled.stats.bands == (1, 2, 3)
    norm = tiled.stats.normalise(image[100:200, 200:300].transpose(2, 0, 1))
    x = torch.from_numpy(norm)[None]
    with torch.no_grad():
        direct = tiled.model(x).softmax(1)[0].numpy()
    assert np.allclose(probs[:, 100:200, 200:300], direct, atol=1e-5)
    p1 = whole.class_probabilities(image)
    assert p1.shape == (3, 200, 300) and np.allclose(p1.sum(0), 1, atol=1e-5)
    query = SegmentationQuery("tree, sand", Mode.open_vocabulary, (("trees",), ("sand",)))
    result = whole.segment(image, valid, query)
    assert result.class_names == ["trees", "sand"]
    assert set(np.unique(result.labels)) <= {0, 1, 2}
    assert (result.labels[:10] == 0).all() and (result.scores[:10] == 0).all()
    # Pixels the model gives to "other" stay background unless "other" is asked for.
    other = np.zeros_like(valid)
    other[10:] = whole.class_probabilities(image[10:]).argmax(0) == 0  # the valid part
    assert other.any()
    assert (result.labels[other] == 0).all()
    with_other = whole.segment(
        image, valid, SegmentationQuery("other", Mode.open_vocabulary, (("other",),))
    )
    assert (with_other.labels[other] == 1).all()
    with pytest.raises(InvalidRequestError, match="does not know 'water'"):
        whole.segment(image, valid, SegmentationQuery("w", Mode.open_vocabulary, (("water",),)))


def test_nodata_margin_does_not_change_the_result(checkpoint: Path) -> None:
    """Tiles at the raster's edge come padded with NoData; only valid pixels count."""
    from tests.conftest import SHARED_DATA

    with rasterio.open(SHARED_DATA / NEON) as ds:
        image = ds.read([1, 2, 3], window=((0, 200), (0, 300))).transpose(1, 2, 0)
    model = TrainedSegmenter.load(checkpoint)
    query = SegmentationQuery("tree", Mode.open_vocabulary, (("tree",),))
    alone = model.segment(image, np.ones((200, 300), bool), query)
    padded = np.zeros((500, 600, 3), np.uint8)
    padded[100:300, 150:450] = image
    valid = np.zeros((500, 600), bool)
    valid[100:300, 150:450] = True
    framed = model.segment(padded, valid, query)
    assert np.array_equal(framed.labels[100:300, 150:450], alone.labels)
    assert np.allclose(framed.scores[100:300, 150:450], alone.scores, atol=1e-5)
    assert not framed.labels[~valid].any()


def test_segmenter_notices_a_replaced_checkpoint(tmp_path: Path, checkpoint: Path) -> None:
    path = tmp_path / "best.pt"
    shutil.copy(checkpoint, path)
    model = TrainedSegmenter.load(path)
    assert not model.is_stale()
    shutil.copy(checkpoint, tmp_path / "new.pt")
    os.utime(tmp_path / "new.pt", ns=(1, 1))
    os.replace(tmp_path / "new.pt", path)  # what training does when a better epoch comes
    assert model.is_stale()


def test_a_model_of_the_same_name_in_another_folder_is_loaded_not_reused(
    tmp_path: Path, checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pipeline (a batch worker's lives as long as its process) reused the model it had
    loaded under a name when that name came to mean another model (another models folder):
    two tests' models named 'lulc' gave one batch the other's polygons."""
    pipeline = SegmentationPipeline(device="cpu")
    loaded = []
    for folder in ("a", "b", "b"):
        root = tmp_path / folder
        if not (root / "m").exists():
            install(root, "m", checkpoint, ["other", "sand", "tree"])
        monkeypatch.setenv(trained_models.ENV_MODELS_DIR, str(root))
        loaded.append(pipeline._model(registry.get_spec("m")))
    assert loaded[0].checkpoint == tmp_path / "a" / "m" / "best.pt"
    assert loaded[1].checkpoint == tmp_path / "b" / "m" / "best.pt"
    assert loaded[2] is loaded[1]  # the same model again: reused


def test_pipeline_refuses_unknown_classes_at_submit(models_dir: Path, checkpoint: Path) -> None:
    from tests.conftest import SHARED_DATA

    install(models_dir, "neon", checkpoint, ["other", "sand", "tree"])
    pipeline = SegmentationPipeline(device="cpu")
    raster = str(SHARED_DATA / NEON)
    ok = SegmentRequest(raster=raster, query="trees, sand", model="neon")
    pipeline.validate(ok, raster)
    assert pipeline.loaded_models() == []  # validation loads no model
    bad = SegmentRequest(raster=raster, query="trees, water", model="neon")
    with pytest.raises(InvalidRequestError, match="does not know 'water'") as info:
        pipeline.validate(bad, raster)
    assert "other, sand, tree" in info.value.hint


@pytest.fixture(scope="module")
def classical_lulc(tmp_path_factory):
    """A classical learner trained by ``rs-reasoner train`` on the 68-band Slovenia stack."""
    import contextlib
    import io

    from rs_reasoner.cli import main
    from tests.conftest import SHARED_DATA

    root = SHARED_DATA / "slovenia"
    if not root.is_dir():
        pytest.skip("sample data missing")
    tmp = tmp_path_factory.mktemp("classical")
    raster = root / "slovenia_ndvi_68dates_utm33n.tif"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(trained_models.ENV_MODELS_DIR, str(tmp / "models"))
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
            code = main([
                "train", "--raster", str(raster), "--labels", str(root / "slovenia_lulc.gpkg"),
                "--class-field", "LULC_NAME", "--name", "lulc", "--tile-size", "32", "--quiet",
                "--model", "classical",
            ])  # fmt: skip
        assert code == 0
        yield {"tmp": tmp, "raster": raster, "out": out.getvalue()}


def _segment(*args: str) -> tuple[int, str]:
    import contextlib
    import io

    from rs_reasoner.cli import main

    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main(["segment", *args, "--quiet"])
    return code, err.getvalue()


def test_classical_model_serves_every_band_and_labels_every_valid_pixel(classical_lulc) -> None:
    import geopandas as gpd

    from rs_reasoner.raster.band_stats import read_bands

    tmp, raster = classical_lulc["tmp"], classical_lulc["raster"]
    info = json.loads((tmp / "models" / "lulc" / "model.json").read_text())
    assert info["architecture"] == "classical" and info["checkpoint"] == "classical.json"
    assert len(info["band_stats"]["bands"]) == 68
    assert "model 'lulc' (classical)" in classical_lulc["out"]
    assert "--bands" not in classical_lulc["out"]  # the model reads its own 68 bands
    query = "artificial surface, cultivated land, forest, grassland, schrubland"
    code, err = _segment(str(raster), "--model", "lulc", "--query", query,
                         "--out", str(tmp / "all.gpkg"))  # fmt: skip
    assert code == 0, err
    with rasterio.open(raster) as ds:
        _, valid = read_bands(ds, range(1, 69))
        pixel = abs(ds.transform.a * ds.transform.e)
    polygons = gpd.read_file(tmp / "all.gpkg")
    # Closed set: every valid pixel gets one of the classes (no score threshold).
    assert polygons.area.sum() == pytest.approx(valid.sum() * pixel, rel=1e-6)
    code, err = _segment(str(raster), "--model", "lulc", "--query", query,
                         "--score-threshold", "0.9", "--out", str(tmp / "sure.gpkg"))  # fmt: skip
    assert code == 0, err
    assert gpd.read_file(tmp / "sure.gpkg").area.sum() < polygons.area.sum()


def test_a_raster_without_the_models_bands_is_refused(classical_lulc, tmp_path) -> None:
    from tests.conftest import SHARED_DATA

    pan = SHARED_DATA / "spacenet_atlanta_pan_utm16n.tif"
    code, err = _segment(str(pan), "--model", "lulc", "--query", "forest",
                         "--out", str(tmp_path / "x.gpkg"))  # fmt: skip
    assert code == 2 and "Model 'lulc' reads 68 band(s)" in err and "this raster has 1" in err
    assert "Traceback" not in err and not (tmp_path / "x.gpkg").exists()
    code, err = _segment(str(classical_lulc["raster"]), "--model", "lulc", "--query", "forest",
                         "--bands", "1", "2", "3", "--out", str(tmp_path / "y.gpkg"))  # fmt: skip
    assert code == 2 and "reads 68 band(s); 3 were given" in err


def test_batch_of_a_raw_band_model_equals_its_single_extent_run(
    classical_lulc, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch used to read a raw-band model's raster as a stretched 8-bit RGB image (bands
    1-3), whatever bands the model was trained on."""
    import dataclasses

    import geopandas as gpd

    from rs_reasoner.batch.run import run_batch
    from tests.backend.batch.conftest import assert_same_polygons, config

    tmp, raster = classical_lulc["tmp"], classical_lulc["raster"]
    monkeypatch.setenv(trained_models.ENV_MODELS_DIR, str(tmp / "models"))
    query = "artificial surface, cultivated land, forest, grassland, schrubland"
    cfg = config([raster], tmp / "batch", merged=tmp / "batch.gpkg")
    req = cfg.request.model_copy(update={"model": "lulc", "query": query})
    assert run_batch(dataclasses.replace(cfg, request=req)).complete
    want = SegmentationPipeline(device="cpu").run(
        req.model_copy(update={"raster": str(raster)}), str(raster)
    ).polygons
    assert len(want) > 0 and set(want["label"]) > {"forest"}
    assert_same_polygons(gpd.read_file(tmp / "batch.gpkg"), want)


def test_a_raw_band_model_takes_its_band_numbers_in_the_request(classical_lulc) -> None:
    """The request's bands were capped at 3, so a 68-band model's bands could not be named."""
    import geopandas as gpd

    tmp, raster = classical_lulc["tmp"], classical_lulc["raster"]
    query = ["--model", "lulc", "--query", "forest, grassland"]
    all_bands = [str(b) for b in range(1, 69)]
    code, err = _segment(str(raster), *query, "--bands", *all_bands,
                         "--out", str(tmp / "named.gpkg"))  # fmt: skip
    assert code == 0, err
    code, err = _segment(str(raster), *query, "--out", str(tmp / "default.gpkg"))
    assert code == 0, err
    named, default = gpd.read_file(tmp / "named.gpkg"), gpd.read_file(tmp / "default.gpkg")
    assert len(named) == len(default) > 0
    assert named.area.sum() == pytest.approx(default.area.sum())
    code, err = _segment(str(raster), *query, "--bands", "1", "2", "3",
                         "--out", str(tmp / "three.gpkg"))  # fmt: skip
    assert code == 2 and "reads 68 band(s); 3 were given" in err
    assert not (tmp / "three.gpkg").exists()
