"""Land-cover products fused with a trained model at segmentation (``fuse_land_cover``)
and checked at submission, on the Slovenia stack: a classical learner trained by
``rs-reasoner train --weak-labels`` with a made-up 3x coarser WorldCover product."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from fastapi.testclient import TestClient

from rs_reasoner import trained_models
from rs_reasoner.landcover import LandCoverError
from rs_reasoner.landcover.checks import check_products_over_raster
from rs_reasoner.landcover.fusion import PRIOR_RELIABILITY, LandCoverFusion
from rs_reasoner.landcover.products import Grid
from rs_reasoner.pipeline import SegmentationPipeline
from rs_reasoner.schemas import SegmentOptions, SegmentRequest
from tests.conftest import SHARED_DATA
from tests.training.test_weak_labels import MAPPING, write_product

QUERY = "artificial surface, cultivated land, forest, grassland, schrubland"
TOKEN = "fusion-token"


def _cli(*args: str) -> tuple[int, str, str]:
    from rs_reasoner.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Any]:
    """``rs-reasoner train --weak-labels wc.tif:mapping.csv`` (classical learner)."""
    from rs_reasoner_training.data.parcels import label_raster

    root = SHARED_DATA / "slovenia"
    if not root.is_dir():
        pytest.skip("sample data missing")
    tmp = tmp_path_factory.mktemp("fusion")
    raster = root / "slovenia_ndvi_68dates_utm33n.tif"
    labels, parcels = label_raster(raster, root / "slovenia_lulc.gpkg", "LULC_NAME")
    with rasterio.open(raster) as ds:
        grid = Grid(ds.crs, ds.transform, (ds.height, ds.width))
    product = write_product(tmp, parcels, grid)
    mapping = tmp / "mapping.csv"
    mapping.write_text(MAPPING)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(trained_models.ENV_MODELS_DIR, str(tmp / "models"))
        code, out, err = _cli(
            "train", "--raster", str(raster), "--labels", str(root / "slovenia_lulc.gpkg"),
            "--class-field", "LULC_NAME", "--name", "lulc", "--tile-size", "32", "--quiet",
            "--model", "classical", "--weak-labels", f"{product}:{mapping}",
        )  # fmt: skip
        assert code == 0, err
        yield {
            "tmp": tmp, "raster": raster, "product": product, "mapping": mapping,
            "labels": labels, "classes": parcels.class_names, "grid": grid,
            "models": tmp / "models",
        }  # fmt: skip


@pytest.fixture
def models(trained, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(trained_models.ENV_MODELS_DIR, str(trained["models"]))
    return trained["models"]


def test_training_records_the_products_reliabilities(trained) -> None:
    info = json.loads((trained["models"] / "lulc" / "model.json").read_text())
    (report,) = info["weak_labels"]["products"]
    assert report["name"] == "wc" and report["pixels"] > 0
    assert report["spec"] == f"{trained['product']}:{trained['mapping']}"
    # Measured on the parcels: the product of the parcels themselves is mostly right,
    # but not uniformly (its blocky boundaries cost the small classes more).
    rel = report["reliability"]
    assert set(rel) == set(trained["classes"])
    assert max(rel.values()) > 0.9 and len(set(rel.values())) > 1


def test_fusion_uses_the_recorded_reliabilities_else_the_prior(trained, tmp_path) -> None:
    info = json.loads((trained["models"] / "lulc" / "model.json").read_text())
    classes = trained["classes"]
    spec = f"{trained['product']}:{trained['mapping']}"
    fusion = LandCoverFusion.prepare([spec], trained["grid"], classes, info)
    (product,) = fusion.products
    assert product.measured and product.given.all()
    recorded = info["weak_labels"]["products"][0]["reliability"]
    np.testing.assert_allclose(product.reliability, [recorded[c] for c in classes], rtol=1e-6)
    assert "measured on the training parcels" in fusion.describe()[0]
    # The same product under another name was not trained with: the prior.
    other = tmp_path / "other.tif"
    other.write_bytes(trained["product"].read_bytes())
    fusion = LandCoverFusion.prepare([f"{other}:{trained['mapping']}"], trained["grid"],
                                     classes, info)  # fmt: skip
    assert not fusion.products[0].measured
    assert (fusion.products[0].reliability == np.float32(PRIOR_RELIABILITY)).all()
    # Windows reaching outside the grid are neutral there.
    h, w = trained["grid"].shape
    lik = fusion.likelihood(-5, -5, h + 5, w + 5)
    assert lik.shape == (len(classes), h + 10, w + 10)
    assert (lik[:, :5] == 1).all() and (lik[:, 5:-5, 5:-5] != 1).any()


def test_segment_fuses_the_product_class_by_class(trained, models) -> None:
    tmp, raster = trained["tmp"], trained["raster"]
    spec = f"{trained['product']}:{trained['mapping']}"
    base = SegmentRequest(raster=str(raster), query=QUERY, model="lulc")
    fused = SegmentRequest(
        raster=str(raster), query=QUERY, model="lulc",
        options=SegmentOptions(fuse_land_cover=[spec]),
    )  # fmt: skip
    pipeline = SegmentationPipeline(device="cpu")
    pipeline.validate(fused, str(raster))
    plain, mixed = pipeline.run(base, str(raster)), pipeline.run(fused, str(raster))
    assert any("land cover wc" in m and "measured" in m for m in mixed.messages)
    # Both label every valid pixel (closed set), differently where the model and the
    # product disagree.
    assert mixed.polygons.area.sum() == pytest.approx(plain.polygons.area.sum(), rel=1e-6)
    by_class = {
        name: result.polygons.dissolve("label").area
        for name, result in (("plain", plain), ("fused", mixed))
    }
    assert not np.allclose(by_class["plain"].sort_index(), by_class["fused"].sort_index())
    # The CLI flag goes the same way.
    code, _, err = _cli("segment", str(raster), "--model", "lulc", "--query", QUERY,
                        "--fuse-land-cover", spec, "--out", str(tmp / "fused.gpkg"),
                        "--quiet")  # fmt: skip
    assert code == 0, err
    assert (tmp / "fused.gpkg").exists()


def _moved(product: Path, path: Path, east: float, fill: int | None = None) -> Path:
    """A copy of a product moved ``east`` (its CRS units), or filled with ``fill``."""
    from affine import Affine

    with rasterio.open(product) as ds:
        profile, codes, colours = ds.profile, ds.read(1), ds.colormap(1)
    profile["transform"] = Affine.translation(east, 0) @ profile["transform"]
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(codes if fill is None else np.full_like(codes, fill), 1)
        ds.write_colormap(1, colours)  # the legend is recognised by it
    return path


def _refused(request: SegmentRequest) -> LandCoverError:
    with pytest.raises(LandCoverError) as err:
        SegmentationPipeline(device="cpu").validate(request, request.raster or "")
    return err.value


def test_segment_refusals_are_one_clear_error_each(trained, models, tmp_path) -> None:
    raster = str(trained["raster"])
    spec = f"{trained['product']}:{trained['mapping']}"

    def request(*specs: str, model: str = "lulc", query: str = QUERY) -> SegmentRequest:
        return SegmentRequest(raster=raster, query=query, model=model,
                              options=SegmentOptions(fuse_land_cover=list(specs)))  # fmt: skip

    err = _refused(request(spec, model="index-baseline", query="water"))
    assert "'index-baseline' is not one" in err.message and "trained" in err.hint
    err = _refused(request(str(tmp_path / "missing.tif")))
    assert "missing.tif does not exist" in err.message
    err = _refused(request(f"{raster}:{trained['mapping']}"))
    assert "continuous" in err.message and "not a land-cover map" in err.message
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("Tree cover,woodland\nCropland,cultivated land\n")
    err = _refused(request(f"{trained['product']}:{wrong}"))
    assert "Tree cover -> woodland" in err.message and "model 'lulc'" in err.message
    far = _moved(trained["product"], tmp_path / "far.tif", 0.5)  # half a degree east
    err = _refused(request(f"{far}:{trained['mapping']}"))
    assert "far does not overlap the raster's area" in err.message
    empty = _moved(trained["product"], tmp_path / "empty.tif", 0.0, fill=0)
    err = _refused(request(f"{empty}:{trained['mapping']}"))
    assert "empty holds only NoData" in err.message
    with pytest.raises(ValueError, match="land-cover entry is empty"):
        SegmentOptions(fuse_land_cover=[" "])


def test_service_refuses_bad_land_cover_paths_at_submit(trained, models, tmp_path) -> None:
    from rs_reasoner.service.app import create_app

    app = create_app(SegmentationPipeline(device="cpu"), TOKEN, tmp_path / "uploads")
    with TestClient(
        app, base_url="http://127.0.0.1", raise_server_exceptions=False,
        headers={"Authorization": f"Bearer {TOKEN}"},
    ) as client:  # fmt: skip
        r = client.post("/jobs", json={
            "raster": str(trained["raster"]), "query": QUERY, "model": "lulc",
            "options": {"fuse_land_cover": [str(tmp_path / "none.tif")]},
        })  # fmt: skip
        assert r.status_code == 422 and "none.tif does not exist" in r.json()["detail"], r.text
        r = client.post("/train", json={
            "raster": str(trained["raster"]), "name": "lulc2", "class_field": "LULC_NAME",
            "labels": str(SHARED_DATA / "slovenia" / "slovenia_lulc.gpkg"),
            "weak_labels": [f"{trained['raster']}"],
        })  # fmt: skip
        assert r.status_code == 422 and "continuous" in r.json()["detail"], r.text
        assert not (trained["models"] / "lulc2").exists()


def test_weak_label_products_checked_against_the_raster(trained, tmp_path) -> None:
    raster = trained["raster"]
    check_products_over_raster([f"{trained['product']}:{trained['mapping']}"], raster)
    bad = tmp_path / "bad.csv"
    bad.write_text("Moss,forest\n")
    with pytest.raises(LandCoverError, match="'Moss' that wc does not have"):
        check_products_over_raster([f"{trained['product']}:{bad}"], raster)
    with pytest.raises(LandCoverError, match="does not exist"):
        check_products_over_raster([str(tmp_path / "x.tif")], raster)


def test_batch_fuses_like_the_single_extent_run(trained, models) -> None:
    import dataclasses

    import geopandas as gpd

    from rs_reasoner.batch.run import run_batch
    from tests.backend.batch.conftest import assert_same_polygons, config

    tmp, raster = trained["tmp"], trained["raster"]
    options = SegmentOptions(fuse_land_cover=[f"{trained['product']}:{trained['mapping']}"])
    cfg = config([raster], tmp / "batch", merged=tmp / "batch.gpkg")
    req = cfg.request.model_copy(update={"model": "lulc", "query": QUERY, "options": options})
    assert run_batch(dataclasses.replace(cfg, request=req)).complete
    pipeline = SegmentationPipeline(device="cpu")
    single = req.model_copy(update={"raster": str(raster)})
    want = pipeline.run(single, str(raster)).polygons
    assert_same_polygons(gpd.read_file(tmp / "batch.gpkg"), want)
    # Not the model alone: the batch did fuse.
    plain = pipeline.run(single.model_copy(update={"options": SegmentOptions()}), str(raster))
    assert not np.isclose(
        want.dissolve("label").area.sort_index(), plain.polygons.dissolve("label").area.sort_index()
    ).all()
