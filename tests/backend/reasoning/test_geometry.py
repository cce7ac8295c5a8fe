"""Coordinates: 840² model space ↔ extent pixels ↔ SAM crops, and the overview image."""

from __future__ import annotations

import random

import numpy as np
import pytest

from rs_reasoner.segmenters.reasoning.geometry import (
    ModelFrame,
    Window,
    make_overview,
    object_extent,
    plan_windows,
)
from rs_reasoner.segmenters.reasoning.parser import ObjectPrompt

EXTENTS = [(700, 1500), (1201, 333), (840, 840), (50, 90), (9999, 10_000), (1024, 1024)]


@pytest.mark.parametrize("height,width", EXTENTS)
def test_model_frame_round_trips_exactly(height: int, width: int) -> None:
    frame = ModelFrame(width=width, height=height)
    rng = np.random.default_rng(0)
    for x, y in rng.uniform(0, 840, (200, 2)):
        px = frame.point_to_pixels((x, y))
        assert frame.point_to_model(px) == pytest.approx((x, y), abs=1e-9)
    box = (12.5, 30.0, 700.25, 839.0)
    assert frame.box_to_model(frame.box_to_pixels(box)) == pytest.approx(box, abs=1e-9)


@pytest.mark.parametrize("height,width", EXTENTS)
def test_model_frame_maps_corners_and_centre(height: int, width: int) -> None:
    frame = ModelFrame(width=width, height=height)
    assert frame.point_to_pixels((0, 0)) == (0, 0)
    assert frame.point_to_pixels((840, 840)) == pytest.approx((width, height))
    assert frame.point_to_pixels((420, 420)) == pytest.approx((width / 2, height / 2))
    # Centre of model pixel (u, v) is the centre of the extent area it summarises.
    assert frame.point_to_pixels((0.5, 0.5)) == pytest.approx((width / 1680, height / 1680))


def test_prompt_to_pixels_keeps_name_and_maps_everything() -> None:
    frame = ModelFrame(width=1680, height=420)
    p = ObjectPrompt((10.0, 20.0, 30.0, 40.0), ((15.0, 25.0), (20.0, 30.0)), "pond")
    q = frame.prompt_to_pixels(p)
    assert q.box == (20.0, 10.0, 60.0, 20.0)
    assert q.points == ((30.0, 12.5), (40.0, 15.0))
    assert q.name == "pond"
    assert frame.prompt_to_pixels(ObjectPrompt(None, ((1.0, 2.0),))).box is None


def _crossings(profile: np.ndarray) -> tuple[float, float]:
    """Sub-pixel positions (continuous coordinates) where a bright bar's edges cross 50%."""
    level = (float(profile.min()) + float(profile.max())) / 2
    above = profile >= level
    i = int(np.argmax(above))  # first sample above
    j = len(above) - 1 - int(np.argmax(above[::-1]))  # last sample above

    def cross(a: int, b: int) -> float:  # between sample centres a and b
        fa, fb = float(profile[a]), float(profile[b])
        return a + 0.5 + (level - fa) / (fb - fa) * (b - a)

    return cross(i - 1, i), cross(j, j + 1)


@pytest.mark.parametrize(
    "height,width,bar",
    [
        (700, 1500, (431.0, 1107.0, 207.0, 500.0)),  # x0, x1, y0, y1: downsampled, non-square
        (1500, 700, (100.0, 611.0, 333.0, 1234.0)),
        (300, 500, (123.0, 377.0, 41.0, 260.0)),  # upsampled
        (2000, 3000, (1000.0, 1900.0, 150.0, 1510.0)),
    ],
)
def test_what_the_model_sees_maps_back_within_half_a_pixel(
    height: int, width: int, bar: tuple[float, float, float, float]
) -> None:
    """An edge seen at model coordinate u is at extent coordinate u * W / 840 (± 0.5 px)."""
    x0, x1, y0, y1 = bar
    image = np.full((height, width, 3), 30, np.uint8)
    image[int(y0) : int(y1), int(x0) : int(x1)] = 220
    overview = make_overview(image)
    assert overview.shape == (840, 840, 3) and overview.dtype == np.uint8
    frame = ModelFrame(width=width, height=height)
    row = overview[int(840 * (y0 + y1) / 2 / height), :, 0]
    col = overview[:, int(840 * (x0 + x1) / 2 / width), 0]
    (u0, u1), (v0, v1) = _crossings(row), _crossings(col)
    got_x0, got_y0 = frame.point_to_pixels((u0, v0))
    got_x1, got_y1 = frame.point_to_pixels((u1, v1))
    assert got_x0 == pytest.approx(x0, abs=0.5)
    assert got_x1 == pytest.approx(x1, abs=0.5)
    assert got_y0 == pytest.approx(y0, abs=0.5)
    assert got_y1 == pytest.approx(y1, abs=0.5)


def test_overview_blacks_out_nodata() -> None:
    image = np.full((200, 300, 3), 200, np.uint8)
    valid = np.ones((200, 300), bool)
    valid[:, :150] = False
    overview = make_overview(image, valid)
    assert overview[:, :400].max() < 5  # left half is black
    assert overview[:, 440:].min() > 195


def test_window_local_round_trip() -> None:
    w = Window(row0=100, col0=250, row1=600, col1=900)
    assert (w.height, w.width) == (500, 650)
    box = (300.5, 120.0, 400.0, 380.25)
    assert w.box_to_local(box) == (50.5, 20.0, 150.0, 280.25)
    assert w.box_to_extent(w.box_to_local(box)) == box
    assert w.point_to_extent(w.point_to_local((260.0, 101.0))) == (260.0, 101.0)
    a = np.arange(1000 * 1000).reshape(1000, 1000)
    assert a[w.slices].shape == (500, 650)
    assert a[w.slices][0, 0] == a[100, 250]


def test_small_extent_is_one_crop_the_whole_extent() -> None:
    boxes = [(10.0, 10.0, 50.0, 50.0), (900.0, 700.0, 1000.0, 790.0), (400.0, 0.0, 410.0, 5.0)]
    plan = plan_windows(boxes, 800, 1024)
    assert plan == [(Window(0, 0, 800, 1024), [0, 1, 2])]


def test_far_apart_objects_get_their_own_native_resolution_crops() -> None:
    boxes = [(100.0, 100.0, 180.0, 160.0), (4000.0, 2500.0, 4100.0, 2590.0),
             (150.0, 300.0, 260.0, 420.0)]
    plan = plan_windows(boxes, 3000, 5000)
    assert [members for _, members in plan] == [[0, 2], [1]]
    for window, _ in plan:
        assert (window.height, window.width) == (1024, 1024)
        assert window.row0 >= 0 and window.row1 <= 3000
        assert window.col0 >= 0 and window.col1 <= 5000
    # Crops are centred on their boxes unless that would leave the extent: then shifted in.
    w1 = plan[1][0]
    assert w1.col0 + 512 == pytest.approx(4050, abs=1)
    assert w1.row1 == 3000  # centred at 2545 it would stick out below
    assert (plan[0][0].row0, plan[0][0].col0) == (0, 0)


def test_huge_object_gets_a_crop_covering_it_with_margin() -> None:
    plan = plan_windows([(1000.0, 1000.0, 4000.0, 2000.0), (50.0, 50.0, 60.0, 60.0)], 6000, 6000)
    (big, m0), (small, m1) = plan
    assert (m0, m1) == ([0], [1])
    assert (big.col0, big.col1) == (400, 4600)  # margin 0.2 * 3000 on each side
    assert big.row0 <= 400 and big.row1 >= 2600
    assert (small.height, small.width) == (1024, 1024)


def test_points_only_objects_are_planned_from_their_points() -> None:
    p = ObjectPrompt(None, ((2000.0, 3000.0), (2010.0, 3020.0)))
    assert object_extent(p) == (2000.0, 3000.0, 2010.0, 3020.0)
    (window, _), = plan_windows([object_extent(p)], 5000, 5000)
    assert window.col0 <= 2000 and window.col1 >= 2010
    assert window.row0 <= 3000 and window.row1 >= 3020


def test_random_plans_hold_every_box_with_its_margin() -> None:
    rng = random.Random(0)
    for _ in range(200):
        h, w = rng.randint(50, 8000), rng.randint(50, 8000)
        boxes = []
        for _ in range(rng.randint(1, 12)):
            x, y = rng.uniform(0, w - 1), rng.uniform(0, h - 1)
            x2, y2 = min(w, x + rng.uniform(1, w / 3)), min(h, y + rng.uniform(1, h / 3))
            boxes.append((x, y, x2, y2))
        min_side, max_side = rng.choice([(1024, 1024), (256, 1024), (512, 512)])
        plan = plan_windows(boxes, h, w, min_side=min_side, max_side=max_side)
        seen = sorted(k for _, members in plan for k in members)
        assert seen == list(range(len(boxes)))
        for window, members in plan:
            assert 0 <= window.row0 < window.row1 <= h and 0 <= window.col0 < window.col1 <= w
            assert window.height >= min(min_side, h) and window.width >= min(min_side, w)
            for k in members:
                x1, y1, x2, y2 = boxes[k]
                assert window.col0 <= x1 and x2 <= window.col1
                assert window.row0 <= y1 and y2 <= window.row1
