"""Reading the prompter's answer into clean SAM prompts. Never raises, whatever the text.

The model is asked for ``<think>…</think> <answer>```json[{"bbox_2d": [x1,y1,x2,y2],
"positive_points": [[x,y],[x,y]]}, …]```</answer>`` in the 840x840 model space. Real
answers are often not valid JSON (truncated by the token budget, prose around the list,
single quotes, trailing commas, repeated lists, strings or NaN as numbers), so the answer
is read by a small lenient reader rather than ``json.loads``, and every object is checked
on its own: one bad object never costs the others.

Rules (model space, continuous pixel coordinates, image ``[0, size]``):

* An object needs a usable box or at least one usable point; names are optional
  (keys ``name``, ``label``, ``category``, ``class``); negative points are ignored (the
  paper found them unstable on aerial backgrounds and the template does not ask for them).
* Boxes: exactly four finite numbers (flat or as two corner pairs); corners put in
  order, clipped to the image; a box thinner than ``MIN_BOX_SIDE`` after clipping is
  dropped (the object survives on its points, if any).
* Points: pairs of finite numbers. A point within ``POINT_TOLERANCE`` of its box is
  clipped into it; one farther out is **dropped**, not clipped: a positive click moved
  onto the box edge usually lands on background and would pull SAM off the target,
  while the box alone is still a good prompt. Without a box, points are checked the same
  way against the image. At most ``MAX_POINTS`` (the first valid ones) are kept.
* Duplicates: boxes are suppressed by area-sorted NMS at IoU > ``NMS_IOU`` (largest box
  kept), as in the reference implementation; identical point-only objects are merged.
* At most ``MAX_OBJECTS`` objects are kept (in answer order, after NMS): more is a
  degenerate, repeating answer, and each object costs a SAM decode.
* An empty list, no answer, or nothing usable is a "no target" result, with a note why.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rs_reasoner.segmenters.reasoning.template import MODEL_SIZE

Box = tuple[float, float, float, float]
Point = tuple[float, float]

#: Objects kept after NMS (in answer order).
MAX_OBJECTS = 100
#: Objects read from one answer before the rest is ignored (bounds NMS cost).
MAX_CANDIDATES = 1000
#: Characters of the answer looked at; longer text is cut (bounds parse time).
MAX_TEXT_CHARS = 200_000
#: Boxes overlapping a larger kept box by more than this IoU are duplicates.
NMS_IOU = 0.5
#: Narrowest usable box side (model pixels), after clipping to the image.
MIN_BOX_SIDE = 1.0
#: How far (model pixels) a point may lie outside its box and still be clipped into it.
POINT_TOLERANCE = 2.0
#: Positive points kept per object (the template asks for exactly two).
MAX_POINTS = 2
#: Longest object name kept.
MAX_NAME_CHARS = 100
#: Coordinates beyond this magnitude are garbage rather than far-away pixels.
_MAX_ABS_COORD = 1e7
#: Nesting depth the lenient reader follows.
_MAX_DEPTH = 16
_MAX_THINK_CHARS = 20_000

_BOX_KEYS = ("bbox_2d", "bbox2d", "bbox", "box", "box_2d", "bounding_box")
_POINT_KEYS = ("positive_points", "positive_point", "points", "point", "points_2d", "point_2d")
_NAME_KEYS = ("name", "label", "category", "class", "object")
_NOT_NAMES = frozenset({"null", "none", "true", "false", "nan", "undefined", ""})

_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_SPLIT = re.compile(r"[\s,;\[\]()]+")
_THINK_OPEN = re.compile(r"<\s*think\s*>", re.I)
_THINK_CLOSE = re.compile(r"<\s*/\s*think\s*>", re.I)
_ANSWER = re.compile(r"<\s*answer\s*>(.*?)(?:<\s*/\s*answer\s*>|\Z)", re.S | re.I)
_ANSWER_OPEN = re.compile(r"<\s*answer\s*>", re.I)
_VALUE_START = re.compile(r"[\[{]")


@dataclass(frozen=True)
class ObjectPrompt:
    """One target's SAM prompt in model space (840x840 pixels, continuous coordinates).

    Attributes:
        box: ``(x1, y1, x2, y2)`` with ``x1 < x2``, ``y1 < y2`` inside the image, or
            ``None`` when the answer gave only points.
        points: Up to two positive points ``(x, y)``, inside ``box`` when there is one.
        name: The object's name if the model gave one.
    """

    box: Box | None
    points: tuple[Point, ...]
    name: str | None = None


@dataclass
class ParsedAnswer:
    """What the parser made of an answer.

    Attributes:
        objects: Clean prompts, in answer order; empty means "no target".
        think: The reasoning text (``<think>`` block, or prose before the answer).
        found: Candidate objects read before validation.
        invalid: Candidates dropped as unusable (no box and no point survived).
        suppressed: Candidates dropped as duplicates (NMS).
        capped: Candidates dropped over ``MAX_OBJECTS``.
        explicit_empty: The model answered with an empty list.
        notes: Human-readable remarks for the job log.
    """

    objects: list[ObjectPrompt]
    think: str = ""
    found: int = 0
    invalid: int = 0
    suppressed: int = 0
    capped: int = 0
    explicit_empty: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def no_target(self) -> bool:
        """True when no object is left to segment."""
        return not self.objects

    def summary(self) -> str:
        """One line for the log: how many objects came out and why others did not."""
        head = f"{len(self.objects)} object(s) from {self.found} in the answer"
        parts = [
            f"{n} {what}"
            for n, what in (
                (self.invalid, "unusable"),
                (self.suppressed, "duplicate"),
                (self.capped, "over the cap"),
            )
            if n
        ]
        tail = f" ({', '.join(parts)})" if parts else ""
        return head + tail + ("; " + "; ".join(self.notes) if self.notes else "")


class _Cut:
    """An atom or string cut off by the end of the text: never a usable value."""


class _Unclosed(list):
    """A list cut off by the end of the text (so ``[`` alone is not an empty answer)."""


class _Reader:
    """A lenient JSON-ish reader: objects, lists, strings and bare atoms.

    Tolerates single quotes, unquoted keys, ``=`` for ``:``, missing or trailing commas,
    tuples, stray closers and truncation (open containers are closed at the end). Every
    loop step consumes at least one character, so it always terminates in linear time.
    Atoms stay strings; numbers are converted later.
    """

    def __init__(self, text: str) -> None:
        self.s = text
        self.n = len(text)
        self.i = 0

    def values(self, limit: int) -> list[Any]:
        """Top-level ``{…}`` / ``[…]`` values, skipping any text between them."""
        out: list[Any] = []
        while self.i < self.n and len(out) < limit:
            m = _VALUE_START.search(self.s, self.i)
            if m is None:
                break
            self.i = m.start()
            start = self.i
            out.append(self.value(0))
            if self.i <= start:
                self.i = start + 1
        return out

    def _ws(self) -> None:
        while self.i < self.n and self.s[self.i].isspace():
            self.i += 1

    def value(self, depth: int) -> Any:
        self._ws()
        if self.i >= self.n:
            return None
        c = self.s[self.i]
        if depth > _MAX_DEPTH:
            self.i += 1
            return None
        if c == "{":
            return self._object(depth + 1)
        if c in "[(":
            return self._list(depth + 1)
        if c in "\"'":
            return self._string()
        return self._atom()

    def _object(self, depth: int) -> dict[str, Any]:
        self.i += 1  # "{"
        out: dict[str, Any] = {}
        while self.i < self.n:
            self._ws()
            if self.i >= self.n:
                break
            c = self.s[self.i]
            if c == "}":
                self.i += 1
                break
            if c in ",;])":
                self.i += 1
                continue
            start = self.i
            if c in "{[(":
                # A value where a key belongs (e.g. a missing "}" between objects):
                # keep it under a synthetic key so nested objects are still found.
                out[f"_nested_{len(out)}"] = self.value(depth)
            else:
                key = self._string() if c in "\"'" else self._bare_key()
                self._ws()
                if self.i < self.n and self.s[self.i] in ":=":
                    self.i += 1
                    self._ws()
                val = None
                if self.i < self.n and self.s[self.i] not in ",;}":
                    val = self.value(depth)
                norm = _norm_key(key) if isinstance(key, str) else ""
                if norm and norm not in out:
                    out[norm] = val
            if self.i <= start:
                self.i = start + 1
        return out

    def _list(self, depth: int) -> list[Any]:
        self.i += 1  # "[" or "("
        out: list[Any] = []
        while self.i < self.n:
            self._ws()
            if self.i >= self.n:
                break
            c = self.s[self.i]
            if c in "])":
                self.i += 1
                return out
            if c in ",;}:":
                self.i += 1
                continue
            start = self.i
            out.append(self.value(depth))
            if self.i <= start:
                self.i = start + 1
        return _Unclosed(out)

    def _string(self) -> str | _Cut:
        quote = self.s[self.i]
        self.i += 1
        chars: list[str] = []
        while self.i < self.n:
            c = self.s[self.i]
            if c == "\\" and self.i + 1 < self.n:
                nxt = self.s[self.i + 1]
                chars.append({"n": "\n", "t": "\t"}.get(nxt, nxt))
                self.i += 2
                continue
            self.i += 1
            # A single quote closes only before a delimiter, so "river's" survives.
            if c == quote and (quote == '"' or self._delimiter_follows()):
                return "".join(chars)
            chars.append(c)
        return _Cut()

    def _delimiter_follows(self) -> bool:
        j = self.i
        while j < self.n and self.s[j] in " \t":
            j += 1
        return j >= self.n or self.s[j] in ",:=}])\n\r;"

    def _atom(self) -> str | _Cut:
        start = self.i
        while self.i < self.n and self.s[self.i] not in ",;:=]})\n\r{[(\"'":
            self.i += 1
        if self.i >= self.n:
            return _Cut()  # runs into the end of the text: "58" may have been "586"
        return self.s[start : self.i].strip()

    def _bare_key(self) -> str:
        start = self.i
        while self.i < self.n and self.s[self.i] not in ":=,;{}[]()\"'\n\r":
            self.i += 1
        return self.s[start : self.i]


def _norm_key(key: Any) -> str:
    return re.sub(r"[\s\-]+", "_", str(key).strip().strip("`").lower())


def _num(value: Any) -> float | None:
    """A finite coordinate from an atom, a quoted number or a number; else ``None``."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        x = float(value)
    elif isinstance(value, str):
        token = value.strip().strip("`\"'").strip()
        if token.lower().endswith("px"):
            token = token[:-2].strip()
        if not _NUMBER.fullmatch(token):
            return None
        try:
            x = float(token)
        except (ValueError, OverflowError):
            return None
    else:
        return None
    if not math.isfinite(x) or abs(x) > _MAX_ABS_COORD:
        return None
    return x


def _leaves(value: Any, limit: int = 16) -> list[Any] | None:
    """Flatten nested lists into their atoms; ``None`` if a dict is inside or too many."""
    out: list[Any] = []
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, list):
            stack.extend(reversed(v))
        elif isinstance(v, dict):
            return None
        elif isinstance(v, str) and any(ch in v for ch in ",[] "):
            # A list written as a string: "[310, 360, 567, 586]".
            out.extend(t for t in _SPLIT.split(v) if t)
        else:
            out.append(v)
        if len(out) > limit:
            return None
    return out


def _box(value: Any, size: float) -> Box | None:
    leaves = _leaves(value)
    if leaves is None or len(leaves) != 4:
        return None
    nums = [_num(v) for v in leaves]
    if any(v is None for v in nums):
        return None
    x1, y1, x2, y2 = (float(v) for v in nums)  # type: ignore[arg-type]
    x1, x2 = sorted((min(max(x1, 0.0), size), min(max(x2, 0.0), size)))
    y1, y2 = sorted((min(max(y1, 0.0), size), min(max(y2, 0.0), size)))
    if x2 - x1 < MIN_BOX_SIDE or y2 - y1 < MIN_BOX_SIDE:
        return None
    return (x1, y1, x2, y2)


def _raw_points(value: Any) -> list[Point]:
    """Candidate points: ``[[x,y],…]``, a flat ``[x,y,x,y]`` or one ``[x,y]``."""
    if isinstance(value, list) and any(isinstance(v, list) for v in value):
        groups = [v for v in value[:64] if isinstance(v, list)]
    else:
        leaves = _leaves(value, limit=64)
        if not leaves:
            return []
        groups = [leaves[k : k + 2] for k in range(0, len(leaves) - 1, 2)]
    out: list[Point] = []
    for g in groups:
        leaves = _leaves(g, limit=4)
        if leaves is None or len(leaves) != 2:
            continue
        x, y = _num(leaves[0]), _num(leaves[1])
        if x is not None and y is not None:
            out.append((x, y))
    return out


def _points(value: Any, box: Box | None, size: float) -> tuple[Point, ...]:
    x1, y1, x2, y2 = box if box is not None else (0.0, 0.0, size, size)
    tol = POINT_TOLERANCE
    kept: list[Point] = []
    for x, y in _raw_points(value):
        if not (x1 - tol <= x <= x2 + tol and y1 - tol <= y <= y2 + tol):
            continue  # far outside its box (or the image): dropped, see module docs
        p = (min(max(x, x1), x2), min(max(y, y1), y2))
        if p not in kept:
            kept.append(p)
        if len(kept) == MAX_POINTS:
            break
    return tuple(kept)


def _name(d: dict[str, Any]) -> str | None:
    for key in _NAME_KEYS:
        v = d.get(key)
        if isinstance(v, str) and _num(v) is None and v.strip().lower() not in _NOT_NAMES:
            v = " ".join(v.split())[:MAX_NAME_CHARS]
            if v:
                return v
    return None


def _first(d: dict[str, Any], keys: tuple[str, ...]) -> tuple[bool, Any]:
    for key in keys:
        if key in d:
            return True, d[key]
    return False, None


_PROMPT_KEYS = frozenset(_BOX_KEYS + _POINT_KEYS)


def _candidates(values: list[Any]) -> list[dict[str, Any]]:
    """Dicts holding a box or points, in document order, found at any depth."""
    out: list[dict[str, Any]] = []
    stack: list[Any] = list(reversed(values))
    while stack and len(out) < MAX_CANDIDATES:
        v = stack.pop()
        if isinstance(v, list):
            stack.extend(reversed(v))
        elif isinstance(v, dict):
            if any(k in v for k in _PROMPT_KEYS):
                out.append(v)
            stack.extend(reversed([x for k, x in v.items() if k not in _PROMPT_KEYS]))
    return out


def _object(d: dict[str, Any], size: float) -> ObjectPrompt | None:
    has_box, box_value = _first(d, _BOX_KEYS)
    box = _box(box_value, size) if has_box else None
    has_points, points_value = _first(d, _POINT_KEYS)
    points = _points(points_value, box, size) if has_points else ()
    if box is None and not points:
        return None
    return ObjectPrompt(box=box, points=points, name=_name(d))


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix of two sets of ``(x1, y1, x2, y2)`` boxes.

    Args:
        a: (N, 4) boxes.
        b: (M, 4) boxes.

    Returns:
        (N, M) IoU values (0 where the union is empty).
    """
    a = np.asarray(a, np.float64).reshape(-1, 4)[:, None, :]
    b = np.asarray(b, np.float64).reshape(-1, 4)[None, :, :]
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = iw * ih
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    union = area_a + area_b - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def suppress_duplicates(
    objects: list[ObjectPrompt], iou_threshold: float = NMS_IOU
) -> list[ObjectPrompt]:
    """Area-sorted NMS: a box overlapping a larger kept box by IoU > threshold goes.

    Point-only objects are kept unless identical to an earlier one. Survivors keep
    their answer order.

    Args:
        objects: Prompts in answer order.
        iou_threshold: IoU above which the smaller box is a duplicate.

    Returns:
        The kept prompts, in answer order.
    """
    boxed = [k for k, o in enumerate(objects) if o.box is not None]
    keep = set()
    if boxed:
        boxes = np.array([objects[k].box for k in boxed], np.float64)
        areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        order = np.argsort(-areas, kind="stable")  # ties: earlier answer first
        iou = box_iou(boxes, boxes)
        kept: list[int] = []
        for j in order:
            if not kept or (iou[j, kept] <= iou_threshold).all():
                kept.append(int(j))
        keep = {boxed[j] for j in kept}
    seen: set[tuple[Point, ...]] = set()
    for k, o in enumerate(objects):
        if o.box is None and o.points not in seen:
            seen.add(o.points)
            keep.add(k)
    return [o for k, o in enumerate(objects) if k in keep]


def _think(text: str) -> str:
    # Tag positions are found with plain searches (no backtracking regex over the whole
    # text), so thousands of unclosed tags cost linear time.
    open_ = _THINK_OPEN.search(text)
    close = _THINK_CLOSE.search(text, open_.end() if open_ else 0)
    answer = _ANSWER_OPEN.search(text, open_.end() if open_ else 0)
    if open_ and close:
        think = text[open_.end() : close.start()]
    elif open_:  # unclosed: reasoning runs to the answer or the end (truncated)
        think = text[open_.end() : answer.start() if answer else len(text)]
    elif close:
        think = text[: close.start()]
    elif answer:  # prose before the answer serves as the reasoning
        think = text[: answer.start()]
    else:
        think = ""
    return think.strip()[:_MAX_THINK_CHARS]


def _regions(text: str) -> list[str]:
    """Text spans that may hold the answer list, most specific first."""
    blocks = [m.group(1) for m in _ANSWER.finditer(text)]
    if blocks:
        return blocks
    closes = list(_THINK_CLOSE.finditer(text))
    if closes:
        return [text[closes[-1].end() :]]
    if _THINK_OPEN.search(text):
        return []  # cut off while reasoning: there is no answer yet
    return [text]


def parse_answer(text: Any, size: float = MODEL_SIZE) -> ParsedAnswer:
    """Parse a prompter answer into clean prompts. Never raises.

    Args:
        text: The generated text (anything; non-strings are treated as text or empty).
        size: Side of the model image the coordinates refer to.

    Returns:
        The prompts (possibly none), the reasoning text and counts for the log.
    """
    try:
        return _parse(text, float(size))
    except Exception as exc:  # noqa: BLE001 - last line of defence: a bug here must not fail a job
        return ParsedAnswer(objects=[], notes=[f"answer could not be read ({type(exc).__name__})"])


def _parse(text: Any, size: float) -> ParsedAnswer:
    if text is None:
        text = ""
    elif isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    elif not isinstance(text, str):
        text = str(text)
    notes: list[str] = []
    if len(text) > MAX_TEXT_CHARS:
        text = text[:MAX_TEXT_CHARS]
        notes.append(f"answer cut to its first {MAX_TEXT_CHARS} characters")
    text = text.replace("\x00", "")
    result = ParsedAnswer(objects=[], think=_think(text), notes=notes)

    regions = _regions(text)
    if not regions:
        notes.append("no answer: the reasoning was cut off before <answer>")
        return result
    candidates: list[dict[str, Any]] = []
    for region in regions:
        values = _Reader(region).values(limit=MAX_CANDIDATES)
        candidates = _candidates(values)
        if candidates:
            break
        if any(isinstance(v, list) and not v and not isinstance(v, _Unclosed) for v in values):
            result.explicit_empty = True
            break
    result.found = len(candidates)
    if result.found >= MAX_CANDIDATES:
        notes.append(f"only the first {MAX_CANDIDATES} objects of the answer were read")
    objects = [o for o in (_object(d, size) for d in candidates) if o is not None]
    result.invalid = len(candidates) - len(objects)
    unique = suppress_duplicates(objects)
    result.suppressed = len(objects) - len(unique)
    result.capped = max(0, len(unique) - MAX_OBJECTS)
    result.objects = unique[:MAX_OBJECTS]
    if result.explicit_empty:
        notes.append("the model found no target (empty list)")
    elif not candidates:
        notes.append("no object with bbox_2d or positive_points in the answer")
    elif not result.objects:
        notes.append("no usable object: every box and point was invalid")
    return result
