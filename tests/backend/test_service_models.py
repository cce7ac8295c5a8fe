"""The model manager's endpoints against a real backend process whose Hugging Face Hub is
a local stand-in (HF_ENDPOINT → :class:`tests.support.hub_server.FakeHub`): size and
licence, download with progress, cancel, gated repositories and tokens, verify, delete."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support import live_backend
from tests.support.hub_repos import GATED_TOKEN, hub_repos
from tests.support.hub_server import FakeHub

#: Bytes of test-hub-model's weight sets (model.bin, then config.json + tokenizer.json).
REPOS = hub_repos()
MODEL_BYTES = len(REPOS["test-org/tiny-weights"].files["model.bin"])
CONFIG_BYTES = sum(len(REPOS["test-org/tiny-config"].files[n])
                   for n in ("config.json", "tokenizer.json"))


@pytest.fixture(scope="module")
def hub() -> Iterator[FakeHub]:
    with FakeHub(hub_repos()) as server:
        yield server


@pytest.fixture(scope="module")
def server(hub: FakeHub, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    tmp = tmp_path_factory.mktemp("models_backend")
    backend = live_backend.start(tmp, env={
        "HF_ENDPOINT": hub.url,
        "HF_HUB_CACHE": str(tmp / "hub"),
        "HF_HUB_OFFLINE": "0",
        "HF_TOKEN": "",
        "NO_PROXY": "127.0.0.1,localhost",
        "RS_REASONER_SEGMENTER_MODULES": "tests.support.segmenters,tests.support.hub_models",
    })
    backend.hub_cache = tmp / "hub"  # type: ignore[attr-defined]
    yield backend
    live_backend.stop(backend)


@pytest.fixture
def client(server: Any) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


def wait_pull(client: httpx.Client, pull_id: str, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = client.get(f"/pulls/{pull_id}").json()
        if info["status"] in ("succeeded", "failed", "cancelled"):
            return info
        time.sleep(0.05)
    raise AssertionError(f"download {pull_id} did not finish: {info}")


def listed(client: httpx.Client, name: str) -> dict[str, Any]:
    return next(m for m in client.get("/models").json()["models"] if m["name"] == name)


def test_weights_show_hub_size_and_licence_before_download(client: httpx.Client) -> None:
    out = client.get("/models/test-hub-model/weights").json()
    assert [w["repo_id"] for w in out["weights"]] == ["test-org/tiny-weights",
                                                      "test-org/tiny-config"]
    # Only the files the model needs count (not unused.bin nor README.md).
    assert [w["size"] for w in out["weights"]] == [MODEL_BYTES, CONFIG_BYTES]
    assert out["size"] == MODEL_BYTES + CONFIG_BYTES
    assert [w["license"] for w in out["weights"]] == ["mit", "apache-2.0"]
    assert out["available"] is False and out["size_on_disk"] == 0
    offline = client.get("/models/test-hub-model/weights", params={"hub": "false"}).json()
    assert offline["size"] is None and offline["weights"][0]["license"] is None


def test_pull_verify_damage_delete(client: httpx.Client, server: Any) -> None:
    r = client.post("/models/test-hub-model/pull", json={})
    assert r.status_code == 202, r.text
    info = wait_pull(client, r.json()["id"])
    assert info["status"] == "succeeded", info
    assert info["progress"] == 1.0
    assert info["done_bytes"] == info["total_bytes"] == MODEL_BYTES + CONFIG_BYTES
    assert listed(client, "test-hub-model")["weights_available"] is True
    weights = client.get("/models/test-hub-model/weights").json()
    assert weights["available"] and weights["size_on_disk"] == MODEL_BYTES + CONFIG_BYTES

    verified = client.post("/models/test-hub-model/verify").json()
    assert verified["ok"] is True
    assert [f["path"] for w in verified["weights"] for f in w["files"]] == [
        "model.bin", "config.json", "tokenizer.json"]

    # One flipped byte in the cached weights: verify names the damaged file.
    blob = next((server.hub_cache / "models--test-org--tiny-weights" / "blobs").iterdir())
    data = bytearray(blob.read_bytes())
    data[1000] ^= 0xFF
    blob.write_bytes(bytes(data))
    damaged = client.post("/models/test-hub-model/verify").json()
    assert damaged["ok"] is False
    bad = [f for w in damaged["weights"] for f in w["files"] if not f["ok"]]
    assert [f["path"] for f in bad] == ["model.bin"] and "damaged" in bad[0]["detail"]

    deleted = client.delete("/models/test-hub-model/weights").json()
    assert deleted["freed_bytes"] >= MODEL_BYTES + CONFIG_BYTES  # and the refs files
    assert not (server.hub_cache / "models--test-org--tiny-weights").exists()
    assert listed(client, "test-hub-model")["weights_available"] is False
    assert client.post("/models/test-hub-model/verify").json()["ok"] is False


def test_cancel_stops_the_download(client: httpx.Client, hub: FakeHub, server) -> None:
    hub_cache = server.hub_cache
    hub.repos["test-org/tiny-config"].delay = 1.0  # model.bin comes at once, then a wait
    try:
        pull_id = client.post("/models/test-hub-model/pull").json()["id"]
        deadline = time.monotonic() + 10
        while client.get(f"/pulls/{pull_id}").json()["done_bytes"] < MODEL_BYTES:
            assert time.monotonic() < deadline, "model.bin never arrived"
            time.sleep(0.02)
        assert client.delete(f"/pulls/{pull_id}").json()["cancel_requested"] is True
        info = wait_pull(client, pull_id)
    finally:
        hub.repos["test-org/tiny-config"].delay = 0.0
    assert info["status"] == "cancelled", info
    assert info["done_bytes"] < info["total_bytes"]
    # Nothing of the cancelled set stays (a half snapshot would count as present).
    assert not (hub_cache / "models--test-org--tiny-config").exists()
    assert listed(client, "test-hub-model")["weights_available"] is False
    client.delete("/models/test-hub-model/weights")


def test_gated_repository_needs_a_token(client: httpx.Client) -> None:
    info = wait_pull(client, client.post("/models/test-gated-model/pull").json()["id"])
    assert info["status"] == "failed"
    assert "gated" in info["error"]["detail"] and "token" in info["error"]["hint"]
    assert listed(client, "test-gated-model")["weights_available"] is False

    pull = client.post("/models/test-gated-model/pull", json={"token": GATED_TOKEN}).json()
    assert GATED_TOKEN not in str(pull)
    assert wait_pull(client, pull["id"])["status"] == "succeeded"
    assert listed(client, "test-gated-model")["weights_available"] is True


def test_unknown_model_and_download(client: httpx.Client) -> None:
    r = client.post("/models/no-such-model/pull")
    assert r.status_code == 404 and "Known models" in r.json()["hint"]
    r = client.get("/pulls/0123")
    assert r.status_code == 404 and "restart" in r.json()["hint"]
    r = client.post("/models/test-colour/pull")
    assert r.status_code == 409 and "needs no weights" in r.json()["detail"]


def test_delete_refused_while_downloading(client: httpx.Client, hub: FakeHub) -> None:
    hub.repos["test-org/tiny-weights"].delay = 1.0
    try:
        pull_id = client.post("/models/test-hub-model/pull").json()["id"]
        r = client.delete("/models/test-hub-model/weights")
        assert r.status_code == 409 and pull_id in r.json()["hint"]
        client.delete(f"/pulls/{pull_id}")
        wait_pull(client, pull_id)
    finally:
        hub.repos["test-org/tiny-weights"].delay = 0.0



def test_click_to_segment_weights_are_listed(client: httpx.Client) -> None:
    from rs_reasoner.interactive.predictors import CLICK_MODEL
    from rs_reasoner.segmenters.hub_weights import sam_weights

    out = client.get(f"/models/{CLICK_MODEL}/weights", params={"hub": "false"}).json()
    assert [w["repo_id"] for w in out["weights"]] == [sam_weights().repo_id]
    assert out["available"] is False  # the backend's cache is empty
