"""Click-to-segment: sessions embed an extent once; clicks and boxes in the session's CRS
come back as polygons where they were drawn.

The geometry is checked with a stand-in predictor whose mask is exactly the prompt box
(:class:`tests.support.interactive.RectPredictor`), on the real NEON sample; the real
SAM 2.1 code path (random tiny weights) is checked for encoding once and decoding per
click; the HTTP endpoints run in a real backend process.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from pydantic import ValidationError
from pyproj import Transformer
from shapely.geometry import box, shape

from rs_reasoner.errors import ExtentError, InvalidRequestError
from rs_reasoner.interactive.schemas import PromptRequest, SessionRequest
from rs_reasoner.interactive.session import MAX_SIDE
from rs_reasoner.interactive.store import SessionStore, UnknownSession
from tests.support import live_backend
from tests.support.interactive import CLICK_SQUARE, RectPredictor, rect, tiny_sam
from tests.support.rasters import write_geotiff

NEON = "neon_osbs_rgb_10cm_utm17n.tif"


@pytest.fixture
def neon(shared_data: Path) -> tuple[str, Any]:
    path = str(shared_data / NEON)
    with rasterio.open(path) as ds:
        return path, ds.bounds


def session_request(path: str, bounds: Any, crs: str | None = None, **extent: float) -> Any:
    ext = {"xmin": bounds.left, "ymin": bounds.bottom, "xmax": bounds.right,
           "ymax": bounds.top, **extent}
    if crs is not None:
        ext["crs"] = crs
    return SessionRequest(raster=path, extent=ext)


def only_polygon(answer: dict[str, Any]) -> Any:
    assert len(answer["features"]) == 1, answer
    return shape(answer["features"][0]["geometry"])


def test_box_comes_back_where_it_was_drawn(neon: tuple[str, Any]) -> None:
    path, b = neon
    store = SessionStore(rect())
    session = store.create(path, session_request(path, b))
    assert (session.width, session.height) == (400, 400)  # native 10 cm pixels
    drawn = (b.left + 10.0, b.bottom + 12.0, b.left + 17.5, b.bottom + 15.0)
    got = only_polygon(store.prompt(session.id, PromptRequest(box=drawn)))
    assert got.symmetric_difference(box(*drawn)).area < 1e-6
    answer = store.prompt(session.id, PromptRequest(box=drawn))
    assert answer["features"][0]["properties"]["area"] == pytest.approx(7.5 * 3.0)


def test_click_in_another_crs(neon: tuple[str, Any]) -> None:
    """Session extent in WGS 84 (a canvas in EPSG:4326): clicks in, polygon out in 4326."""
    path, b = neon
    to_wgs = Transformer.from_crs("EPSG:32617", "EPSG:4326", always_xy=True)
    west, south = to_wgs.transform(b.left, b.bottom)
    east, north = to_wgs.transform(b.right, b.top)
    req = SessionRequest(raster=path, extent={"xmin": west, "ymin": south, "xmax": east,
                                              "ymax": north, "crs": "EPSG:4326"})
    store = SessionStore(rect())
    session = store.create(path, req)
    cx, cy = b.left + 20.0, b.bottom + 20.0  # a pixel corner, in UTM
    lon, lat = to_wgs.transform(cx, cy)
    got = only_polygon(store.prompt(session.id, PromptRequest(points=[{"x": lon, "y": lat}])))
    to_utm = Transformer.from_crs("EPSG:4326", "EPSG:32617", always_xy=True)
    xs, ys = to_utm.transform(*got.exterior.coords.xy)
    side = CLICK_SQUARE * 0.1
    expected = box(cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)
    found = shape({"type": "Polygon", "coordinates": [list(zip(xs, ys, strict=True))]})
    assert found.symmetric_difference(expected).area < 1e-4


def test_positive_and_negative_clicks_reach_sam_in_pixels(neon: tuple[str, Any]) -> None:
    path, b = neon
    store = SessionStore(rect())
    session = store.create(path, session_request(path, b))
    store.prompt(session.id, PromptRequest(points=[
        {"x": b.left + 5.0, "y": b.top - 2.0},
        {"x": b.left + 8.0, "y": b.top - 3.0, "positive": False},
    ], box=(b.left + 1.0, b.top - 10.0, b.left + 20.0, b.top - 1.0)))
    call = session.predictor.calls[-1]
    np.testing.assert_allclose(call["point_coords"], [[50, 20], [80, 30]], atol=1e-3)
    assert call["point_labels"].tolist() == [1, 0]
    np.testing.assert_allclose(call["box"], [10, 10, 200, 100], atol=1e-3)
    assert call["multimask_output"] is False  # several prompts are not ambiguous


def test_embedding_computed_once_per_session(neon: tuple[str, Any]) -> None:
    path, b = neon
    store = SessionStore(rect())
    before = RectPredictor.encodings
    session = store.create(path, session_request(path, b))
    for k in range(5):
        store.prompt(session.id, PromptRequest(points=[{"x": b.left + 5 + k, "y": b.top - 5}]))
    assert RectPredictor.encodings - before == 1


def test_large_extent_is_read_at_most_sam_input_side(tmp_path: Path) -> None:
    data = np.random.default_rng(0).integers(0, 255, (3, 1500, 3000), dtype=np.uint8)
    path = str(write_geotiff(tmp_path / "wide.tif", data))
    with rasterio.open(path) as ds:
        b = ds.bounds
    session = SessionStore(rect()).create(path, session_request(path, b))
    assert (session.width, session.height) == (MAX_SIDE, 512)


def test_clicks_outside_and_bad_prompts_are_refused(neon: tuple[str, Any]) -> None:
    path, b = neon
    store = SessionStore(rect())
    half = session_request(path, b, xmax=b.left + 20.0)
    session = store.create(path, half)
    with pytest.raises(InvalidRequestError, match="outside the extent"):
        store.prompt(session.id, PromptRequest(points=[{"x": b.left + 30.0, "y": b.top - 5}]))
    with pytest.raises(ValidationError, match="at least one point or a box"):
        PromptRequest()
    with pytest.raises(ValidationError, match="positive point"):
        PromptRequest(points=[{"x": 0, "y": 0, "positive": False}])
    with pytest.raises(ValidationError, match="xmax > xmin"):
        PromptRequest(box=(2, 0, 1, 1))
    with pytest.raises(ExtentError):
        store.create(path, session_request(path, b, xmin=0, ymin=0, xmax=1, ymax=1))


def test_oldest_session_is_dropped(neon: tuple[str, Any]) -> None:
    path, b = neon
    store = SessionStore(rect(), max_sessions=2)
    first, second, third = (store.create(path, session_request(path, b)) for _ in range(3))
    with pytest.raises(UnknownSession):
        store.get(first.id)
    assert store.get(second.id) is second and store.get(third.id) is third
    store.close(third.id)
    with pytest.raises(UnknownSession):
        store.prompt(third.id, PromptRequest(box=(b.left, b.bottom, b.left + 1, b.bottom + 1)))


def test_real_sam_encodes_once_and_decodes_per_click(neon: tuple[str, Any]) -> None:
    """SAM 2.1 (hiera-tiny, random weights): the image encoder runs at session creation
    only; each click runs the decoder and gives a polygon inside the extent."""
    path, b = neon
    store = SessionStore(tiny_sam())
    session = store.create(path, session_request(path, b))
    encoder_runs = []
    session.predictor.model.image_encoder.register_forward_hook(
        lambda *_: encoder_runs.append(1))
    decoder_runs = []
    session.predictor.model.sam_mask_decoder.register_forward_hook(
        lambda *_: decoder_runs.append(1))
    extent = box(b.left, b.bottom, b.right, b.top)
    for k in range(3):
        answer = store.prompt(session.id, PromptRequest(
            points=[{"x": b.left + 10 + 5 * k, "y": b.bottom + 10}]))
        for f in answer["features"]:
            assert extent.buffer(1e-6).contains(shape(f["geometry"]))
            assert 0 <= f["properties"]["score"] <= 1.5
        assert answer["decode_ms"] > 0
    assert encoder_runs == [] and len(decoder_runs) == 3


# -- HTTP --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    backend = live_backend.start(
        tmp_path_factory.mktemp("interactive_backend"),
        env={"RS_REASONER_INTERACTIVE_PREDICTOR": "tests.support.interactive:rect"},
    )
    yield backend
    live_backend.stop(backend)


def test_http_session_prompt_close(server: Any, neon: tuple[str, Any]) -> None:
    path, b = neon
    extent = {"xmin": b.left, "ymin": b.bottom, "xmax": b.right, "ymax": b.top}
    with server.client() as client:
        r = client.post("/interactive/sessions", json={"raster": path, "extent": extent})
        assert r.status_code == 201, r.text
        info = r.json()
        assert (info["width"], info["height"]) == (400, 400)
        assert info["resolution"] == pytest.approx(0.1)
        sid = info["id"]
        drawn = [b.left + 1.0, b.bottom + 1.0, b.left + 4.0, b.bottom + 2.0]
        r = client.post(f"/interactive/sessions/{sid}/prompt", json={"box": drawn})
        assert r.status_code == 200, r.text
        assert only_polygon(r.json()).symmetric_difference(box(*drawn)).area < 1e-6
        r = client.post(f"/interactive/sessions/{sid}/prompt",
                        json={"points": [{"x": b.right + 5, "y": b.top - 1}]})
        assert r.status_code == 422 and "new session" in r.json()["hint"]
        assert client.delete(f"/interactive/sessions/{sid}").status_code == 200
        r = client.post(f"/interactive/sessions/{sid}/prompt", json={"box": drawn})
        assert r.status_code == 404 and "start a new one" in r.json()["hint"]
        r = client.post("/interactive/sessions", json={"raster": path + ".missing",
                                                        "extent": extent})
        assert r.status_code == 422
