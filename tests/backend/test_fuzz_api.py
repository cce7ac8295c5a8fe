"""Fuzzing a real ``rs-reasoner serve`` process: schema-driven requests to every endpoint
(with the token), and numeric extremes in jobs on a real raster. No answer may be a 5xx,
no accepted job may crash, and the backend must still serve afterwards.

This is the bounded run of ``make test``; ``make fuzz`` (bench/fuzz_service.py) is the
long one.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from tests.support import live_backend
from tests.support.fuzz import Targets, fuzz
from tests.support.rasters import scene_with_squares, write_geotiff

#: Requests of the bounded schema run: 8 operations x 2 modes x this, at most.
EXAMPLES = 20


@pytest.fixture(scope="module")
def raster(tmp_path_factory) -> Path:
    return write_geotiff(tmp_path_factory.mktemp("fuzz") / "scene.tif", scene_with_squares())


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    b = live_backend.start(tmp_path_factory.mktemp("fuzz-backend"))
    yield b
    live_backend.stop(b)


def settle(backend: live_backend.LiveBackend, job_ids: list[str]) -> dict[str, int]:
    """Wait for the queue to empty; the accepted jobs' final statuses, counted."""
    statuses: dict[str, int] = {}
    with backend.client() as c:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            health = c.get("/health").json()
            if not health["queue_length"] and not health["running_job"]:
                break
            time.sleep(0.2)
        for job_id in job_ids:
            r = c.get(f"/jobs/{job_id}")
            if r.status_code == 404:  # left memory (only the newest finished are kept)
                continue
            info = r.json()
            statuses[info["status"]] = statuses.get(info["status"], 0) + 1
            error = info["error"] or {}
            assert "Internal error" not in (error.get("detail") or ""), info
    return statuses


@pytest.mark.slow
def test_schema_fuzz_gets_no_server_error(backend, raster: Path) -> None:
    targets = Targets(raster=str(raster), tiff=raster.read_bytes())
    report = fuzz(backend.url, backend.token, EXAMPLES, targets=targets)
    assert report.requests >= 300, report.summary()
    assert report.server_errors == [], report.server_errors[:5]
    # The aimed requests reached the handlers: jobs were accepted, uploads stored.
    assert report.by_status[202] > 0 and len(targets.upload_ids) > 0, report.summary()
    assert backend.alive(), backend.log_text()[-3000:]
    statuses = settle(backend, targets.job_ids)
    assert set(statuses) <= {"succeeded", "failed", "cancelled"}
    with backend.client() as c:
        assert c.get("/health").status_code == 200


#: Numbers at and past every edge: zero, signed zero, the smallest subnormal, the bounds
#: of the schema, the largest floats, integers past 64 bits.
EXTREMES = [
    0, -0.0, 5e-324, 1e-300, 1e-9, 1e-6, 0.5, 1, 2, 64, 8192, 8193, 1e7, 1e9, 1e12, 1e15,
    1e300, 1.7976931348623157e308, -1, -1e308, 2**31, 2**63, 2**64, -(2**63),
]


def number() -> st.SearchStrategy[Any]:
    return st.sampled_from(EXTREMES) | st.floats(allow_nan=False, allow_infinity=False)


@st.composite
def extreme_body(draw, raster: str) -> dict[str, Any]:
    options = {
        name: draw(number())
        for name in ("resolution", "score_threshold", "min_area", "simplify", "tile_size",
                     "overlap")
        if draw(st.booleans())
    }  # fmt: skip
    if draw(st.booleans()):
        options["bands"] = draw(st.lists(number(), min_size=0, max_size=4))
    body: dict[str, Any] = {
        "raster": raster,
        "query": draw(st.sampled_from(["trees, water", "water", "trees"])),
        "model": "index-baseline",
        "options": options,
    }
    if draw(st.booleans()):
        x = [draw(number()) for _ in range(4)]
        body["extent"] = {"xmin": x[0], "ymin": x[1], "xmax": x[2], "ymax": x[3]}
        if draw(st.booleans()):
            body["extent"]["crs"] = draw(st.sampled_from(["EPSG:4326", "EPSG:3857", None]))
    return body


@pytest.mark.slow
def test_numeric_extremes_in_jobs_on_a_real_raster(backend, raster: Path) -> None:
    answers: dict[int, int] = {}
    accepted: list[str] = []
    client = httpx.Client(
        base_url=backend.url, headers={"Authorization": f"Bearer {backend.token}"}, timeout=60
    )

    @seed(1)
    @settings(max_examples=80, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(body=extreme_body(str(raster)))
    def send(body: dict[str, Any]) -> None:
        # JSON has no infinities or NaN; the extremes above are all finite.
        assert all(math.isfinite(v) for v in body["options"].values() if isinstance(v, float))
        r = client.post("/jobs", json=body)
        answers[r.status_code] = answers.get(r.status_code, 0) + 1
        assert r.status_code < 500, (body, r.text)
        assert r.status_code in (202, 404, 422, 429), (body, r.text)
        if r.status_code == 202:
            accepted.append(r.json()["id"])

    with client:
        send()
    assert answers.get(422, 0) > 0 and accepted, answers
    statuses = settle(backend, accepted)
    assert statuses.get("succeeded", 0) > 0, statuses
    assert backend.alive()
