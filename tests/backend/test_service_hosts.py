"""The Host-header allow-list (DNS rebinding) and the CDN-free ``/docs`` page."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from rs_reasoner.service.app import create_app
from rs_reasoner.service.hosts import host_name

TOKEN = "tok"


class _Pipeline:
    device = "cpu"

    def loaded_models(self) -> list[str]:
        return []


@pytest.fixture
def client(tmp_path: Path):
    app = create_app(_Pipeline(), TOKEN, tmp_path / "uploads")
    with TestClient(app, base_url="http://127.0.0.1") as c:
        yield c


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "127.0.0.1:8765", "localhost:8765", "LOCALHOST", "[::1]:8765",
             "[::1]", "127.0.0.2:80"],
)  # fmt: skip
def test_loopback_names_are_served(client: TestClient, host: str) -> None:
    assert client.get("/openapi.json", headers={"Host": host}).status_code == 200


@pytest.mark.parametrize(
    "host", ["evil.example", "evil.example:8765", "127.0.0.1.evil.example:8765",
             "localhost.evil.example", "10.0.0.1:8765", "[::2]:8765", "::1", "127.0.0.1:x",
             "[::1]x", "", "0.0.0.0:8765"],
)  # fmt: skip
@pytest.mark.parametrize("path", ["/openapi.json", "/docs", "/health", "/uploads"])
def test_other_hosts_get_400_on_every_path(client: TestClient, host: str, path: str) -> None:
    headers = {"Host": host, "Authorization": f"Bearer {TOKEN}"}  # even with the token
    r = client.get(path, headers=headers)
    assert r.status_code == 400
    assert "127.0.0.1, localhost or [::1]" in r.json()["detail"]
    assert r.json()["hint"]


def test_host_names_without_ports() -> None:
    assert host_name("[::1]:8000") == "::1"
    assert host_name("LocalHost:1") == "localhost"
    assert host_name("a:b:c") is None


def test_a_backend_for_the_network_serves_any_host(tmp_path: Path) -> None:
    app = create_app(_Pipeline(), TOKEN, tmp_path / "uploads", loopback_only=False)
    with TestClient(app) as c:
        assert c.get("/openapi.json", headers={"Host": "gpu-box.lan:8765"}).status_code == 200


def test_docs_load_nothing_from_elsewhere(client: TestClient) -> None:
    r = client.get("/docs")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert r.headers["content-security-policy"].startswith("default-src 'none'")
    page = r.text
    assert re.findall(r"(?:src|href)=['\"]([^'\"]+)", page) == ["/openapi.json"]
    assert "<script" not in page and "http://" not in page and "https://" not in page
    for endpoint in ("POST /uploads", "POST /jobs", "GET /jobs/{job_id}", "DELETE /jobs/{job_id}"):
        assert endpoint in page
    assert client.get("/docs/oauth2-redirect").status_code in (401, 404)
