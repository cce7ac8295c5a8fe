"""The answer parser: hand-written and generated answers, valid, malformed and adversarial.

Every input must give clean prompts (or none), never an exception.
"""

from __future__ import annotations

import json
import math
import random
import time

import numpy as np
import pytest

from rs_reasoner.segmenters.reasoning.parser import (
    MAX_OBJECTS,
    MAX_POINTS,
    MIN_BOX_SIDE,
    ObjectPrompt,
    ParsedAnswer,
    box_iou,
    parse_answer,
    suppress_duplicates,
)
from rs_reasoner.segmenters.reasoning.template import MODEL_SIZE

BOX_A = [310, 360, 567, 586]
PTS_A = [[434, 474], [450, 460]]
BOX_B = [10, 200, 100, 320]
PTS_B = [[50, 250], [90, 300]]
OBJ_A = ObjectPrompt((310.0, 360.0, 567.0, 586.0), ((434.0, 474.0), (450.0, 460.0)))
OBJ_B = ObjectPrompt((10.0, 200.0, 100.0, 320.0), ((50.0, 250.0), (90.0, 300.0)))
REFERENCE = (
    "<think> The ponds are the dark water bodies in the centre and on the left. </think>\n"
    '<answer>```json[{"bbox_2d": [310,360,567,586], "positive_points": [[434, 474], '
    '[450, 460]]}, {"bbox_2d": [10,200,100,320], "positive_points": [[50, 250], '
    "[90, 300]]}]```</answer>"
)


def assert_clean(parsed: ParsedAnswer, size: float = MODEL_SIZE) -> None:
    """Invariants every parse result must satisfy, whatever the input."""
    assert isinstance(parsed, ParsedAnswer)
    assert isinstance(parsed.think, str)
    assert len(parsed.objects) <= MAX_OBJECTS
    for o in parsed.objects:
        assert o.box is not None or o.points
        assert len(o.points) <= MAX_POINTS
        area = o.box if o.box is not None else (0.0, 0.0, size, size)
        if o.box is not None:
            x1, y1, x2, y2 = o.box
            assert all(isinstance(v, float) and math.isfinite(v) for v in o.box)
            assert 0 <= x1 < x2 <= size and 0 <= y1 < y2 <= size
            assert x2 - x1 >= MIN_BOX_SIDE and y2 - y1 >= MIN_BOX_SIDE
        for x, y in o.points:
            assert math.isfinite(x) and math.isfinite(y)
            assert area[0] <= x <= area[2] and area[1] <= y <= area[3]
        assert o.name is None or (isinstance(o.name, str) and o.name)
    boxes = [o.box for o in parsed.objects if o.box is not None]
    if len(boxes) > 1:
        iou = box_iou(np.array(boxes), np.array(boxes))
        np.fill_diagonal(iou, 0)
        assert iou.max() <= 0.5


def answer(objs: list[dict], think: str = "reasoning") -> str:
    return f"<think>{think}</think>\n<answer>```json{json.dumps(objs)}```</answer>"


# --- hand-written -------------------------------------------------------------------------

def ans(body: str) -> str:
    """An answer block around a body."""
    return f"<answer>{body}</answer>"


#: The reference example's first object, in the model's usual spelling.
A = '"bbox_2d": [310,360,567,586], "positive_points": [[434,474],[450,460]]'
A1 = ObjectPrompt(OBJ_A.box, ((434.0, 474.0),))
PTS_OUT = ObjectPrompt(None, ((50.0, 60.0), (70.0, 80.0)))

HAND: list[tuple[str, object, list[ObjectPrompt]]] = [
    ("reference example", REFERENCE, [OBJ_A, OBJ_B]),
    ("no code fence", "<think>x</think>" + ans(f"[{{{A}}}]"), [OBJ_A]),
    ("no answer tags, after think", f"<think>x</think> [{{{A}}}]", [OBJ_A]),
    ("bare json", json.dumps([{"bbox_2d": BOX_A, "positive_points": PTS_A}]), [OBJ_A]),
    ("single object not in a list", ans(f"{{{A}}}"), [OBJ_A]),
    ("wrapped in a dict", ans(f'{{"objects": [{{{A}}}]}}'), [OBJ_A]),
    ("prose around json", ans(f"Sure! Here's what I found: [{{{A}}}] I hope it's right."),
     [OBJ_A]),
    ("single quotes", ans("[{" + A.replace('"', "'") + "}]"), [OBJ_A]),
    ("unquoted keys", ans("[{" + A.replace('"', "") + "}]"), [OBJ_A]),
    ("trailing commas",
     ans('[{"bbox_2d": [310,360,567,586,], "positive_points": [[434,474],[450,460],],},]'),
     [OBJ_A]),
    ("missing commas",
     ans('[{"bbox_2d": [310 360 567 586] "positive_points": [[434 474] [450 460]]}]'), [OBJ_A]),
    ("missing colon", ans("[{" + A.replace(":", "") + "}]"), [OBJ_A]),
    ("equals for colon", ans("[{" + A.replace('"', "").replace(":", "=") + "}]"), [OBJ_A]),
    ("tuples", ans("[{'bbox_2d': (310,360,567,586), 'positive_points': ((434,474),(450,460))}]"),
     [OBJ_A]),
    ("numbers as strings",
     ans('[{"bbox_2d": ["310","360","567","586"], '
         '"positive_points": [["434","474"],["450","460"]]}]'),
     [OBJ_A]),
    ("list as a string",
     ans('[{"bbox_2d": "[310, 360, 567, 586]", "positive_points": "[[434, 474], [450, 460]]"}]'),
     [OBJ_A]),
    ("floats",
     ans('[{"bbox_2d": [310.5,360.25,567.0,586.75], '
         '"positive_points": [[434.5,474.5],[450,460]]}]'),
     [ObjectPrompt((310.5, 360.25, 567.0, 586.75), ((434.5, 474.5), (450.0, 460.0)))]),
    ("px suffix",
     ans('[{"bbox_2d": ["310px","360px","567px","586px"], '
         '"positive_points": [[434,474],[450,460]]}]'),
     [OBJ_A]),
    ("corner pairs box",
     ans('[{"bbox_2d": [[310,360],[567,586]], "positive_points": [[434,474],[450,460]]}]'),
     [OBJ_A]),
    ("flat points", ans('[{"bbox_2d": [310,360,567,586], "positive_points": [434,474,450,460]}]'),
     [OBJ_A]),
    ("one point as a pair", ans('[{"bbox_2d": [310,360,567,586], "positive_points": [434,474]}]'),
     [A1]),
    ("three points: first two kept",
     ans('[{"bbox_2d": [310,360,567,586], "positive_points": [[434,474],[450,460],[500,500]]}]'),
     [OBJ_A]),
    ("duplicate point merged",
     ans('[{"bbox_2d": [310,360,567,586], "positive_points": [[434,474],[434,474]]}]'), [A1]),
    ("key aliases", ans('[{"bbox": [310,360,567,586], "points": [[434,474],[450,460]]}]'),
     [OBJ_A]),
    ("key case and spaces",
     ans('[{"BBox 2D": [310,360,567,586], "Positive-Points": [[434,474],[450,460]]}]'), [OBJ_A]),
    ("extra keys ignored",
     ans(f'[{{{A}, "negative_points": [[1,1],[2,2]], "score": 0.9}}]'), [OBJ_A]),
    ("name kept", ans(f'[{{{A}, "label": "  fish   pond "}}]'),
     [ObjectPrompt(OBJ_A.box, OBJ_A.points, "fish pond")]),
    ("apostrophe in single-quoted name",
     ans("[{" + A.replace('"', "'") + ", 'name': 'the river's bank'}]"),
     [ObjectPrompt(OBJ_A.box, OBJ_A.points, "the river's bank")]),
    ("non-string name ignored", ans(f'[{{{A}, "label": 7}}]'), [OBJ_A]),
    ("null name ignored", ans(f'[{{{A}, "label": null}}]'), [OBJ_A]),
    ("inverted box reordered", ans("[{" + A.replace("310,360,567,586", "567,586,310,360") + "}]"),
     [OBJ_A]),
    ("box partly outside clipped",
     ans('[{"bbox_2d": [-50,800,100,1000], "positive_points": [[50,820],[60,830]]}]'),
     [ObjectPrompt((0.0, 800.0, 100.0, 840.0), ((50.0, 820.0), (60.0, 830.0)))]),
    ("box fully outside dropped",
     ans('[{"bbox_2d": [900,900,1000,1000], "positive_points": [[950,950],[960,960]]}]'), []),
    ("box outside, points inside image kept",
     ans('[{"bbox_2d": [900,900,1000,1000], "positive_points": [[50,60],[70,80]]}]'), [PTS_OUT]),
    ("degenerate box, no points", ans('[{"bbox_2d": [100,100,100,200]}]'), []),
    ("degenerate box, points kept",
     ans('[{"bbox_2d": [100,100,100.5,200], "positive_points": [[100,150],[100,160]]}]'),
     [ObjectPrompt(None, ((100.0, 150.0), (100.0, 160.0)))]),
    ("box only", ans('[{"bbox_2d": [310,360,567,586]}]'), [ObjectPrompt(OBJ_A.box, ())]),
    ("points only", ans('[{"positive_points": [[434,474],[450,460]]}]'),
     [ObjectPrompt(None, OBJ_A.points)]),
    ("point outside its box dropped",
     ans('[{"bbox_2d": [310,360,567,586], "positive_points": [[434,474],[700,700]]}]'), [A1]),
    ("point just outside clipped into box",
     ans('[{"bbox_2d": [310,360,567,586], "positive_points": [[308.5,474],[450,587.5]]}]'),
     [ObjectPrompt(OBJ_A.box, ((310.0, 474.0), (450.0, 586.0)))]),
    ("all points outside: box alone",
     ans('[{"bbox_2d": [310,360,567,586], "positive_points": [[10,10],[20,20]]}]'),
     [ObjectPrompt(OBJ_A.box, ())]),
    ("nan in box: points survive", ans("[{" + A.replace("310,", "NaN,") + "}]"),
     [ObjectPrompt(None, OBJ_A.points)]),
    ("none in box", ans('[{"bbox_2d": [310,None,567,586]}]'), []),
    ("null in box", ans('[{"bbox_2d": [310,null,567,586]}]'), []),
    ("infinity in box", ans('[{"bbox_2d": [310,360,Infinity,586]}]'), []),
    ("huge number in box", ans('[{"bbox_2d": [310,360,1e300,586]}]'), []),
    ("word in box", ans('[{"bbox_2d": [310,"left",567,586]}]'), []),
    ("bool in point", ans("[{" + A.replace("[434,", "[true,") + "}]"),
     [ObjectPrompt(OBJ_A.box, ((450.0, 460.0),))]),
    ("three numbers box", ans('[{"bbox_2d": [310,360,567]}]'), []),
    ("five numbers box", ans('[{"bbox_2d": [310,360,567,586,1]}]'), []),
    ("box is a dict", ans('[{"bbox_2d": {"x1": 310}}]'), []),
    ("missing keys", ans('[{"target": "pond"}]'), []),
    ("list of bare boxes is not an answer", ans("[[310,360,567,586]]"), []),
    ("bad object does not hide good one", ans(f'[{{"bbox_2d": "oops"}}, {{{A}}}]'), [OBJ_A]),
    ("empty list", "<think>Nothing here.</think><answer>```json[]```</answer>", []),
    ("empty answer", "<think>x</think><answer></answer>", []),
    ("prose only", "I could not find any ponds in this image.", []),
    ("empty string", "", []),
    ("none", None, []),
    ("number", 12345, []),
    ("bytes", ans(f"[{{{A}}}]").encode(), [OBJ_A]),
    ("truncated inside think", '<think>The ponds are at [{"bbox_2d": [310,360,567,586]', []),
    ("truncated after first object", f'<think>x</think><answer>```json[{{{A}}}, {{"bbox_2d": [10,2',
     [OBJ_A]),
    ("truncated inside last number", '<answer>[{"bbox_2d": [310,360,567,58', []),
    ("truncated inside a point",
     '<answer>[{"bbox_2d": [310,360,567,586], "positive_points": [[434, 474], [450, 46', [A1]),
    ("truncated after open bracket", "<answer>```json[", []),
    ("repeated answer blocks", REFERENCE + REFERENCE, [OBJ_A, OBJ_B]),
    ("repeated list in one block", ans(f"[{{{A}}}][{{{A}}}]"), [OBJ_A]),
    ("missing closing brace between objects",
     ans(f'[{{{A} {{"bbox_2d": [10,200,100,320], "positive_points": [[50,250],[90,300]]}}]'),
     [OBJ_A, OBJ_B]),
    ("extra closing brackets", ans("[{" + A.replace("586]", "586]]") + "}}]]]"), [OBJ_A]),
    ("case-insensitive tags",
     "<THINK>x</THINK><Answer>[{" + A.replace('"', "'") + "}]</Answer>", [OBJ_A]),
    ("answer tag unclosed", f"<think>x</think><answer>[{{{A}}}]", [OBJ_A]),
    ("first answer block empty, second has objects",
     ans("see below") + ans(f"[{{{A}}}]"), [OBJ_A]),
    ("escaped quotes in name", ans(f'[{{{A}, "name": "the \\"big\\" pond"}}]'),
     [ObjectPrompt(OBJ_A.box, OBJ_A.points, 'the "big" pond')]),
    ("nul bytes", ans("[{" + A.replace("567", "\x00567") + "}]"), [OBJ_A]),
    ("unicode noise around", ans(f"✓ résultat → [{{{A}}}] ✓"), [OBJ_A]),
]


@pytest.mark.parametrize("text,expected", [c[1:] for c in HAND], ids=[c[0] for c in HAND])
def test_hand_written(text: object, expected: list[ObjectPrompt]) -> None:
    parsed = parse_answer(text)
    assert_clean(parsed)
    assert parsed.objects == expected
    assert parsed.no_target == (not expected)


def test_think_text_and_counts() -> None:
    parsed = parse_answer(REFERENCE)
    assert parsed.think == "The ponds are the dark water bodies in the centre and on the left."
    assert (parsed.found, parsed.invalid, parsed.suppressed, parsed.capped) == (2, 0, 0, 0)
    assert parsed.summary().startswith("2 object(s) from 2")


@pytest.mark.parametrize(
    "text,think",
    [
        ("<think> open, never closed", "open, never closed"),
        ("<think> open </think> after", "open"),
        ("no open tag </think><answer>[]</answer>", "no open tag"),
        ("prose first <answer>[]</answer>", "prose first"),
        ("<think>a</think><think>b</think>", "a"),
        ("plain text", ""),
    ],
)
def test_think_variants(text: str, think: str) -> None:
    assert parse_answer(text).think == think


def test_empty_list_is_an_explicit_no_target() -> None:
    parsed = parse_answer("<think>No pond.</think><answer>```json[]```</answer>")
    assert parsed.no_target and parsed.explicit_empty
    assert "no target" in parsed.summary()
    cut = parse_answer("<think>x</think><answer>```json[")
    assert cut.no_target and not cut.explicit_empty


def test_nms_suppresses_the_smaller_duplicate_like_the_reference() -> None:
    big = {"bbox_2d": [100, 100, 300, 300], "positive_points": [[200, 200], [210, 210]]}
    near = {"bbox_2d": [110, 110, 300, 300], "positive_points": [[200, 200], [220, 220]]}
    far = {"bbox_2d": [500, 500, 600, 600], "positive_points": [[550, 550], [560, 560]]}
    half = {"bbox_2d": [100, 100, 300, 200]}  # IoU exactly 0.5 with big: kept (> 0.5 only)
    parsed = parse_answer(answer([near, far, big, half]))
    boxes = [o.box for o in parsed.objects]
    assert boxes == [(500.0, 500.0, 600.0, 600.0), (100.0, 100.0, 300.0, 300.0),
                     (100.0, 100.0, 300.0, 200.0)]
    assert parsed.suppressed == 1


def test_nms_matches_a_brute_force_reference_on_random_boxes() -> None:
    rng = random.Random(3)
    for _ in range(60):
        objs = []
        for _ in range(rng.randint(0, 12)):
            x, y = rng.uniform(0, 700), rng.uniform(0, 700)
            objs.append(ObjectPrompt((x, y, x + rng.uniform(5, 140), y + rng.uniform(5, 140)), ()))
        kept = suppress_duplicates(objs)
        # Brute force: largest first, drop anything over IoU 0.5 with a kept box.
        order = sorted(range(len(objs)), key=lambda k: -(
            (objs[k].box[2] - objs[k].box[0]) * (objs[k].box[3] - objs[k].box[1])))
        ref: list[int] = []
        for k in order:
            if all(box_iou(np.array([objs[k].box]), np.array([objs[j].box]))[0, 0] <= 0.5
                   for j in ref):
                ref.append(k)
        assert kept == [objs[k] for k in sorted(ref)]


def test_hundreds_of_objects_are_capped() -> None:
    objs = [
        {"bbox_2d": [c * 20, r * 20, c * 20 + 10, r * 20 + 10]}
        for r in range(20) for c in range(25)
    ]
    parsed = parse_answer(answer(objs))
    assert_clean(parsed)
    assert len(parsed.objects) == MAX_OBJECTS
    assert parsed.capped == 500 - MAX_OBJECTS
    assert parsed.objects[0].box == (0.0, 0.0, 10.0, 10.0)  # answer order kept


def test_a_repeated_object_collapses_to_one() -> None:
    one = {"bbox_2d": BOX_A, "positive_points": PTS_A}
    parsed = parse_answer(answer([one] * 800))
    assert parsed.objects == [OBJ_A]
    assert parsed.found == 800 and parsed.suppressed == 799


def test_points_only_duplicates_merge() -> None:
    p = {"positive_points": [[10, 10], [20, 20]]}
    parsed = parse_answer(answer([p, p, {"positive_points": [[30, 30]]}]))
    assert [o.points for o in parsed.objects] == [((10.0, 10.0), (20.0, 20.0)), ((30.0, 30.0),)]


def test_other_model_sizes() -> None:
    parsed = parse_answer('[{"bbox_2d": [10, 10, 2000, 90]}]', size=1000)
    assert parsed.objects[0].box == (10.0, 10.0, 1000.0, 90.0)


# --- generated ----------------------------------------------------------------------------


def _random_objects(rng: random.Random, n: int) -> list[tuple[list[float], list[list[float]]]]:
    """Non-overlapping boxes on a 6x6 grid of 140 px cells, points inside each."""
    cells = rng.sample(range(36), n)
    out = []
    for cell in cells:
        r, c = divmod(cell, 6)
        x1 = c * 140 + rng.randint(0, 40)
        y1 = r * 140 + rng.randint(0, 40)
        x2 = x1 + rng.randint(10, 90)
        y2 = y1 + rng.randint(10, 90)
        pts = [[rng.randint(x1, x2), rng.randint(y1, y2)] for _ in range(2)]
        out.append(([x1, y1, x2, y2], pts))
    return out


def _render(rng: random.Random, objs: list[tuple[list[float], list[list[float]]]]) -> str:
    """Serialise objects in one of many styles a model might use."""
    style = rng.randrange(8)
    items = []
    for box, pts in objs:
        b, p = list(box), [list(q) for q in pts]
        if style == 1:  # strings as numbers
            b = [str(v) for v in b]
        if style == 2:  # floats
            b = [float(v) for v in b]
        d = {"bbox_2d": b, "positive_points": p}
        if rng.random() < 0.3:
            d = {"positive_points": p, "bbox_2d": b, "label": "pond"}
        items.append(d)
    body = json.dumps(items, indent=rng.choice([None, 2]))
    if style == 3:
        body = body.replace('"', "'")
    if style == 4:
        body = body.replace("]", ",]").replace("}", ",}")  # trailing commas
    if style == 5:
        body = body.replace('"bbox_2d"', "bbox_2d").replace('"positive_points"', "positive_points")
    think = "<think> " + "reasoning " * rng.randint(0, 30) + "</think>"
    fence = rng.choice(["```json{}```", "{}", "```\n{}\n```"]).format(body)
    if style == 6:
        return f"{think}\nHere is the answer: {fence} Done."
    if style == 7:
        return f"{think}\n<answer>{fence}"  # unclosed answer tag
    return f"{think}\n<answer>{fence}</answer>"


def _expected(objs: list[tuple[list[float], list[list[float]]]]) -> list[tuple]:
    return [
        (tuple(float(v) for v in box), tuple(dict.fromkeys((float(x), float(y)) for x, y in pts)))
        for box, pts in objs
    ]


def test_generated_valid_answers_round_trip() -> None:
    rng = random.Random(0)
    for _ in range(300):
        objs = _random_objects(rng, rng.randint(0, 8))
        text = _render(rng, objs)
        parsed = parse_answer(text)
        assert_clean(parsed)
        assert [(o.box, o.points) for o in parsed.objects] == _expected(objs), text


def test_every_truncation_is_safe_and_never_invents_coordinates() -> None:
    rng = random.Random(1)
    objs = _random_objects(rng, 3)
    text = _render(random.Random(0), objs)
    boxes = {tuple(float(v) for v in b) for b, _ in objs}
    points = {(float(x), float(y)) for _, pts in objs for x, y in pts}
    for cut in range(len(text) + 1):
        parsed = parse_answer(text[:cut])
        assert_clean(parsed)
        for o in parsed.objects:
            assert o.box is None or o.box in boxes, (cut, o)
            assert set(o.points) <= points, (cut, o)
    assert len(parse_answer(text).objects) == 3


_NOISE = list('[]{}(),:;"\'` \n0123456789-.eE') + ["NaN", "null", "<answer>", "</answer>",
                                                   "<think>", "bbox_2d", "positive_points"]


def _mutate(rng: random.Random, text: str) -> str:
    chars = list(text)
    for _ in range(rng.randint(1, 12)):
        op = rng.randrange(4)
        k = rng.randrange(len(chars) + 1)
        if op == 0 and chars:
            del chars[min(k, len(chars) - 1)]
        elif op == 1:
            chars.insert(k, rng.choice(_NOISE))
        elif op == 2 and chars:
            j = min(len(chars), k + rng.randint(1, 40))
            chars[k:k] = chars[k:j]  # duplicate a span
        else:
            chars = chars[:k]  # truncate
    return "".join(chars)


def test_mutated_answers_never_raise_and_stay_clean() -> None:
    rng = random.Random(2)
    for _ in range(1500):
        base = _render(rng, _random_objects(rng, rng.randint(0, 5)))
        assert_clean(parse_answer(_mutate(rng, base)))


def test_random_garbage_never_raises() -> None:
    rng = random.Random(4)
    alphabet = [chr(c) for c in range(32, 127)] + ["\n", "\t", "é", "→", "\ud7ff", "\x00"]
    for _ in range(400):
        n = rng.randint(0, 400)
        if rng.random() < 0.5:
            text = "".join(rng.choice(alphabet) for _ in range(n))
        else:
            text = "".join(rng.choice(_NOISE) for _ in range(n // 4))
        assert_clean(parse_answer(text))


@pytest.mark.parametrize(
    "text",
    [
        "[" * 100_000,
        "{" * 100_000,
        "<think>" * 30_000,
        "<answer>" * 20_000,
        "'" * 100_000,
        '"' * 100_000,
        "<answer>[{\"bbox_2d\": [" + "1," * 150_000,
        "[{\"bbox_2d\": [1,2,30,40]}," * 20_000,
        "x" * 1_000_000,
    ],
    ids=["brackets", "braces", "think-tags", "answer-tags", "squotes", "dquotes",
         "long-number-list", "many-objects", "megabyte"],
)
def test_adversarial_inputs_are_fast(text: str) -> None:
    start = time.perf_counter()
    parsed = parse_answer(text)
    assert time.perf_counter() - start < 3.0
    assert_clean(parsed)
