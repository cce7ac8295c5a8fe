"""POST /train with ``kind: reasoner`` over HTTP (the real app, job worker, checks in
child processes and GRPO in-process): a tiny base prompter snapshot and a SAM 2.1
hiera-tiny checkpoint on disk, examples on the NEON sample.

Trained → listed by GET /models → served by POST /jobs; cancel registers the adapter so
far and the same name resumes; bad requests get a 4xx at once, before any training.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import geopandas as gpd
import pytest
import rasterio
from fastapi.testclient import TestClient
from shapely.geometry import box

from rs_reasoner import trained_models
from rs_reasoner.errors import MissingWeightsError
from rs_reasoner.pipeline import SegmentationPipeline
from rs_reasoner.segmenters.reasoning.template import MAX_QUERY_CHARS
from rs_reasoner.service.app import create_app
from tests.training.grpo.helpers import save_base_and_sam

RASTER = "neon_osbs_rgb_10cm_utm17n.tif"
TOKEN = "reasoner-token"
QUERY = "dark tree crowns"


@pytest.fixture(scope="module")
def base_and_sam(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return save_base_and_sam(tmp_path_factory.mktemp("weights"))


@pytest.fixture
def data(shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setenv(trained_models.ENV_MODELS_DIR, str(tmp_path / "models"))
    with rasterio.open(shared_data / RASTER) as ds:
        left, bottom, right, _ = ds.bounds
        crs = ds.crs
    step = (right - left) / 4
    geoms = [box(left + k * step, bottom + 20, left + k * step + 4, bottom + 24)
             for k in (1, 2, 3)]  # fmt: skip
    examples = tmp_path / "trees.gpkg"
    gpd.GeoDataFrame({"q": [QUERY] * 3}, geometry=geoms, crs=crs).to_file(examples)
    return {"raster": str(shared_data / RASTER), "examples": str(examples), "tmp": tmp_path,
            "corner": (left, bottom)}  # fmt: skip


@pytest.fixture
def client(tmp_path: Path):
    app = create_app(SegmentationPipeline(device="cpu"), TOKEN, tmp_path / "uploads")
    with TestClient(
        app, base_url="http://127.0.0.1", raise_server_exceptions=False,
        headers={"Authorization": f"Bearer {TOKEN}"},
    ) as c:  # fmt: skip
        yield c


def body(data: dict[str, Any], base_and_sam: tuple[Path, Path], **kw: Any) -> dict:
    base, sam = base_and_sam
    out = {
        "kind": "reasoner", "examples": data["examples"], "raster": data["raster"],
        "query_field": "q", "name": "trees-tuned", "base_prompter": str(base),
        "sam_variant": "tiny", "sam_checkpoint": str(sam), "negatives": 0,
        "holdout_fraction": 0.3, "group_size": 2, "max_new_tokens": 6, "steps": 1, "lr": 1e-3,
    }  # fmt: skip
    out.update(kw)
    return {k: v for k, v in out.items() if v is not None}


def wait(client: TestClient, job_id: str, until: Any, timeout: float = 300.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = client.get(f"/jobs/{job_id}").json()
        if until(info):
            return info
        time.sleep(0.1)
    raise AssertionError(f"job {job_id}: {info}")


def finished(info: dict[str, Any]) -> bool:
    return info["status"] in ("succeeded", "failed", "cancelled")


def test_reasoner_trained_listed_and_served(client, data, base_and_sam) -> None:
    r = client.post("/train", json=body(data, base_and_sam))
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    stages: set[str] = set()
    info = wait(client, job_id, lambda i: stages.add(i["stage"]) or finished(i))
    assert info["status"] == "succeeded", info
    assert info["kind"] == "train" and info["model"] == "trees-tuned" and info["query"] == ""
    assert stages & {"preparing", "evaluating", "training"} and info["progress"] == 1.0
    steps = [m for m in info["messages"] if m.startswith("training: step ")]
    assert len(steps) == 1 and "step 1/1: reward" in steps[0] and "parse failures" in steps[0]
    assert any(m.startswith("model 'trees-tuned' registered (completed, 1 steps; held-out")
               for m in info["messages"])  # fmt: skip

    result = client.get(f"/jobs/{job_id}/result").json()
    folder = data["tmp"] / "models" / "trees-tuned"
    assert result["model"] == "trees-tuned" and result["kind"] == "reasoner"
    assert result["classes"] == [QUERY] and result["steps"] == 1
    assert result["stopped"] == "completed"
    assert 0.0 <= result["heldout_iou_before"] <= 1 and 0.0 <= result["heldout_iou_after"] <= 1
    assert result["checkpoint"] == str(folder / "adapter-000001")
    assert (folder / "adapter-000001" / "adapter_model.safetensors").is_file()

    models = {m["name"]: m for m in client.get("/models").json()["models"]}
    assert models["trees-tuned"]["trained"] is True
    assert models["trees-tuned"]["modes"] == ["reasoning"]

    left, bottom = data["corner"]
    extent = {"xmin": left, "ymin": bottom, "xmax": left + 20, "ymax": bottom + 20}
    seg = {"raster": data["raster"], "query": QUERY, "mode": "reasoning",
           "model": "trees-tuned", "extent": extent}  # fmt: skip
    r = client.post("/jobs", json=seg)
    assert r.status_code == 202, r.text
    info = wait(client, r.json()["id"], finished)
    assert info["status"] == "succeeded" and info["model"] == "trees-tuned", info


def test_cancel_registers_the_adapter_and_the_same_name_resumes(
    client, data, base_and_sam
) -> None:
    request = body(data, base_and_sam, steps=50)
    job_id = client.post("/train", json=request).json()["id"]
    wait(client, job_id, lambda i: any(m.startswith("training: step 1/50")
                                       for m in i["messages"]))  # fmt: skip
    r = client.delete(f"/jobs/{job_id}")
    assert r.status_code == 200 and r.json()["cancel_requested"] is True
    info = wait(client, job_id, finished)
    assert info["status"] == "cancelled", info
    assert client.get(f"/jobs/{job_id}/result").status_code == 409
    done = json.loads((data["tmp"] / "models" / "trees-tuned" / "model.json").read_text())
    assert done["stopped"] == "cancelled" and 1 <= done["steps"] < 50
    assert "trees-tuned" in {m["name"] for m in client.get("/models").json()["models"]}

    again = client.post("/train", json={**request, "steps": done["steps"] + 1})
    assert again.status_code == 202, again.text
    info = wait(client, again.json()["id"], finished)
    assert info["status"] == "succeeded", info
    assert f"resuming: resuming after step {done['steps']}" in info["messages"]
    steps = [m.split(":")[1] for m in info["messages"] if m.startswith("training: step ")]
    assert steps == [f" step {done['steps'] + 1}/{done['steps'] + 1}"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"query_field": "question"}, "has no field 'question'. Available fields: q"),
        ({"query_field": "Q"}, "Did you mean 'q'?"),
        ({"query_field": None}, "Give either a query field"),
        ({"query": "trees"}, "one of 'query_field' or 'query'"),
        ({"query_field": None, "query": "x" * (MAX_QUERY_CHARS + 1)}, "characters"),
        ({"examples": "/no/such/trees.gpkg"}, "do not exist"),
        ({"raster": "/no/such/raster.tif"}, "/no/such/raster.tif"),
        ({"raster": None}, "need the raster"),
        ({"name": "Trees!"}, "not allowed"),
        ({"name": "think2seg-rs"}, "built-in model"),
        ({"kind": "prompter"}, "'kind' must be 'segmenter'"),
        ({"group_size": 1}, "group_size"),
        ({"steps": 0}, "steps"),
        ({"base_prompter": "no-such-prompter"}, "Unknown base prompter"),
        ({"sam_checkpoint": "/no/such/sam.pt"}, "checkpoint does not exist"),
        ({"sam_variant": "huge"}, "variant is not known"),
    ],
)
def test_bad_reasoner_requests_get_422_at_once(client, data, base_and_sam, change, message):
    request = body(data, base_and_sam, **change)
    for key, value in change.items():
        if value is None:
            request.pop(key, None)
    r = client.post("/train", json=request)
    assert r.status_code == 422, r.text
    assert message in json.dumps(r.json()), r.json()
    assert not (data["tmp"] / "models").exists()


def test_query_field_values_are_checked_at_submit(client, data, base_and_sam) -> None:
    layer = gpd.read_file(data["examples"])
    layer.loc[1, "q"] = "   "
    blank = data["tmp"] / "blank.gpkg"
    layer.to_file(blank)
    r = client.post("/train", json=body(data, base_and_sam, examples=str(blank)))
    assert r.status_code == 422 and "question of feature 1 ('q') is empty" in r.json()["detail"]


def test_missing_base_prompter_weights_are_refused_at_submit(
    offline_weights, client, data, base_and_sam
) -> None:
    request = body(data, base_and_sam)
    del request["base_prompter"]  # the default: the built-in reasoning model's prompter
    r = client.post("/train", json=request)
    assert r.status_code == MissingWeightsError.status_code, r.text
    assert "RicardoString/Think2Seg-RS-3B" in r.json()["detail"]
    assert "rs-reasoner models pull think2seg-rs'" in r.json()["hint"]
