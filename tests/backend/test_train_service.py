"""POST /train over HTTP (the real app, job worker, pipeline and training in-process):
train → poll → the model in GET /models → segment with it; cancel; 4xx for bad requests."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from rs_reasoner import trained_models
from rs_reasoner.pipeline import SegmentationPipeline
from rs_reasoner.service.app import create_app
from tests.support.parcels import write_neon_parcels
from tests.support.training import NEON, SMALL_UNET, one_torch_thread  # noqa: F401

TOKEN = "train-token"


@pytest.fixture
def data(shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setenv(trained_models.ENV_MODELS_DIR, str(tmp_path / "models"))
    labels = tmp_path / "parcels.gpkg"
    write_neon_parcels(shared_data / NEON, labels)
    return {"raster": str(shared_data / NEON), "labels": str(labels), "tmp": tmp_path}


@pytest.fixture
def client(tmp_path: Path):
    app = create_app(
        SegmentationPipeline(device="cpu"), TOKEN, tmp_path / "uploads", train_options=SMALL_UNET
    )
    with TestClient(
        app, base_url="http://127.0.0.1", raise_server_exceptions=False,
        headers={"Authorization": f"Bearer {TOKEN}"},
    ) as c:  # fmt: skip
        yield c


def body(data: dict[str, Any], **kw: Any) -> dict[str, Any]:
    out = {
        "raster": data["raster"], "labels": data["labels"], "class_field": "cover",
        "name": "neon", "epochs": 2, "tile_size": 64, "verifier": False,
    }  # fmt: skip
    out.update(kw)
    return {k: v for k, v in out.items() if v is not None}


def wait(client: TestClient, job_id: str, until: Any, timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = client.get(f"/jobs/{job_id}").json()
        if until(info):
            return info
        time.sleep(0.05)
    raise AssertionError(f"job {job_id}: {info}")


def finished(info: dict[str, Any]) -> bool:
    return info["status"] in ("succeeded", "failed", "cancelled")


def test_train_then_list_then_segment(client: TestClient, data) -> None:
    r = client.post("/train", json=body(data))
    assert r.status_code == 202, r.text
    assert r.json()["status"] in ("queued", "running")
    job_id = r.json()["id"]
    stages = set()
    info = wait(client, job_id, lambda i: stages.add(i["stage"]) or finished(i))
    assert info["status"] == "succeeded", info
    assert stages & {"preparing", "training"} and info["progress"] == 1.0
    assert info["kind"] == "train" and info["model"] == "neon" and info["query"] == ""
    epoch_lines = [m for m in info["messages"] if m.startswith("epoch ")]
    assert [m.split(":")[0] for m in epoch_lines] == ["epoch 1/2", "epoch 2/2"]
    assert all("val mIoU" in m and "purified" in m for m in epoch_lines)

    result = client.get(f"/jobs/{job_id}/result")
    assert result.status_code == 200
    assert result.headers["content-type"].startswith("application/json")
    summary = result.json()
    assert summary["model"] == "neon" and summary["classes"] == ["sand", "tree"]
    assert 0 < summary["best_miou"] <= 1 and summary["best_epoch"] in (1, 2)
    assert set(summary["per_class_iou"]) == {"sand", "tree"} and summary["epochs_run"] == 2
    folder = data["tmp"] / "models" / "neon"
    assert summary["checkpoint"] == str(folder / "best.pt")
    assert json.loads((folder / "model.json").read_text())["best_miou"] == summary["best_miou"]

    models = {m["name"]: m for m in client.get("/models").json()["models"]}
    assert models["neon"]["trained"] is True and models["neon"]["classes"] == ["sand", "tree"]
    assert models["neon"]["modes"] == ["open_vocabulary"] and models["neon"]["default_for"] == []
    assert models["neon"]["weights"] == [] and models["neon"]["weights_available"] is True
    assert models["index-baseline"]["trained"] is False
    assert models["index-baseline"]["classes"] is None

    seg = {"raster": data["raster"], "query": "trees", "model": "neon", "mode": "open_vocabulary"}
    r = client.post("/jobs", json=seg)
    assert r.status_code == 202, r.text
    info = wait(client, r.json()["id"], finished)
    assert info["status"] == "succeeded" and info["kind"] == "segment", info
    features = client.get(f"/jobs/{r.json()['id']}/result").json()["features"]
    assert features and {f["properties"]["label"] for f in features} == {"trees"}
    assert "neon" in client.get("/health").json()["loaded_models"]

    # A class the model does not know: 4xx at once, naming the classes it knows.
    r = client.post("/jobs", json={**seg, "query": "trees, water"})
    assert r.status_code == 422
    assert "water" in r.json()["detail"] and "sand, tree" in r.json()["hint"]


def test_cancel_keeps_checkpoints_and_resubmitting_resumes(client: TestClient, data) -> None:
    raster = Path(data["raster"]).read_bytes()
    upload = client.post("/uploads", content=raster, headers={"Content-Type": "image/tiff"})
    assert upload.status_code == 200
    request = body(data, raster=None, upload_id=upload.json()["upload_id"], epochs=200)
    job_id = client.post("/train", json=request).json()["id"]
    wait(client, job_id, lambda i: any(m.startswith("epoch 1/") for m in i["messages"]))
    r = client.delete(f"/jobs/{job_id}")
    assert r.status_code == 200 and r.json()["cancel_requested"] is True
    info = wait(client, job_id, finished, timeout=30)
    assert info["status"] == "cancelled", info
    assert any("submit the same name again to resume" in m for m in info["messages"])
    assert client.get(f"/jobs/{job_id}/result").status_code == 409
    folder = data["tmp"] / "models" / "neon"
    assert (folder / "last.pt").exists() and (folder / "best.pt").exists()
    done = json.loads((folder / "model.json").read_text())
    assert done["stopped"] == "cancelled" and 1 <= done["epochs_run"] < 200
    # The server still serves, and the cancelled model is usable.
    assert client.get("/health").json()["status"] == "ok"
    assert "neon" in {m["name"] for m in client.get("/models").json()["models"]}
    # The same name again continues where it stopped.
    again = client.post("/train", json={**request, "epochs": done["epochs_run"] + 1})
    info = wait(client, again.json()["id"], finished)
    assert info["status"] == "succeeded", info
    assert any(m.startswith(f"resuming model 'neon' after epoch {done['epochs_run']}/")
               for m in info["messages"])  # fmt: skip
    lines = [m for m in info["messages"] if m.startswith("epoch ")]
    assert [m.split(":")[0] for m in lines] == [
        f"epoch {done['epochs_run'] + 1}/{done['epochs_run'] + 1}"
    ]


@pytest.mark.parametrize(
    ("change", "status", "message"),
    [
        ({"class_field": "kind"}, 422, "Available fields: cover"),
        ({"name": "Neon!"}, 422, "not allowed"),
        ({"name": "index-baseline"}, 422, "built-in model"),
        ({"labels": "/no/such/parcels.gpkg"}, 422, "does not exist"),
        ({"raster": "/no/such/raster.tif"}, 422, "/no/such/raster.tif"),
        ({"upload_id": "0" * 32}, 422, "exactly one of 'raster'"),
        ({"raster": None, "upload_id": "0" * 32}, 404, "Unknown upload_id"),
        ({"label_budget": 0}, 422, "label_budget"),
        ({"epochs": 0}, 422, "epochs"),
        ({"model": "resnet"}, 422, "model"),  # a trainer the backend does not offer
        ({"trainer": "unet"}, 422, "trainer"),  # extra fields are refused
        ({"aoi": "/no/such/aoi.gpkg"}, 422, "area of interest does not exist"),
    ],
)
def test_bad_train_requests_get_4xx_at_once(client, data, change, status, message) -> None:
    r = client.post("/train", json=body(data, **change))
    assert r.status_code == status, r.text
    assert message in r.json()["detail"], r.json()
    assert not (data["tmp"] / "models").exists()


def test_empty_label_layer_is_refused_at_submit(client, data) -> None:
    import geopandas as gpd

    empty = data["tmp"] / "empty.gpkg"
    gpd.read_file(data["labels"]).iloc[:0].to_file(empty)
    r = client.post("/train", json=body(data, labels=str(empty)))
    assert r.status_code == 422 and "has no features" in r.json()["detail"]
    assert r.json()["hint"]


def test_a_training_failure_fails_the_job_with_the_reason(client, data) -> None:
    import geopandas as gpd

    one = data["tmp"] / "one.gpkg"
    gpd.read_file(data["labels"]).assign(cover="tree").to_file(one)
    job_id = client.post("/train", json=body(data, labels=str(one))).json()["id"]
    info = wait(client, job_id, finished)
    assert info["status"] == "failed"
    assert "same class ('tree')" in info["error"]["detail"]
    assert "background" in info["error"]["hint"]
    assert not (data["tmp"] / "models" / "neon").exists()
    assert client.get(f"/jobs/{job_id}/result").status_code == 409


def test_image_and_mask_folders_train_over_http(client: TestClient, data, shared_data) -> None:
    from tests.support.mask_folders import DUBAI_CLASSES, write_dubai_crops

    tmp_path = data["tmp"]  # its models folder
    paths = write_dubai_crops(shared_data / "dubai", tmp_path / "crops")
    request = {"images": str(paths["images"]), "masks": str(paths["masks"]),
               "classes": str(paths["classes"]), "name": "crops", "tile_size": 128,
               "epochs": 1, "threads": 1}  # fmt: skip
    # Folder and parcel fields do not mix; a missing folder is refused at once.
    r = client.post("/train", json={**request, "labels": "x.gpkg"})
    assert r.status_code == 422 and "not used with image + mask folders" in r.text
    r = client.post("/train", json={**request, "masks": str(tmp_path / "nope")})
    assert r.status_code == 422 and "mask folder does not exist" in r.json()["detail"]
    job_id = client.post("/train", json=request).json()["id"]
    info = wait(client, job_id, finished, timeout=600)
    assert info["status"] == "succeeded", info
    assert "plan: images 4 training, 1 validation, 0 unlabelled" in info["messages"]
    result = client.get(f"/jobs/{job_id}/result").json()
    assert result["model"] == "crops" and result["classes"] == DUBAI_CLASSES
    listed = {m["name"]: m for m in client.get("/models").json()["models"]}
    assert "crops" in listed and "images in" in listed["crops"]["description"]
