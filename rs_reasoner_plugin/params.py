"""The parameters of one run, as plain dataclasses (no Qt), and the backend request they
make (``SegmentRequest`` of docs/architecture.md).

These dataclasses are the plugin's one copy of the backend's defaults and bounds (the
plugin runs in QGIS's Python and cannot import the backend's schemas): the dock, the
Processing algorithm and the fine-tune dialog read their initial values and ranges from
here, and the plugin tests check them against the backend's schemas and CLI.
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

#: Modes as the backend names them, with the labels the dock shows.
MODES: list[tuple[str, str]] = [
    ("auto", "Auto"),
    ("reasoning", "Describe (reasoning)"),
    ("open_vocabulary", "Classes (open vocabulary)"),
]
MODE_VALUES = [m for m, _ in MODES]


@dataclass
class Extent:
    """A rectangle; ``crs`` is an authority id (``EPSG:32633``), WKT, or None for the
    raster's own CRS / pixel space."""

    xmin: float
    ymin: float
    xmax: float
    ymax: float
    crs: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"xmin": self.xmin, "ymin": self.ymin, "xmax": self.xmax, "ymax": self.ymax,
                "crs": self.crs}


def _bounded(default: Any, minimum: float | None = None, maximum: float | None = None) -> Any:
    """A dataclass field with the backend's bounds (``ge``/``le``) as metadata."""
    return field(default=default, metadata={"min": minimum, "max": maximum})


def defaults(cls: type) -> dict[str, Any]:
    """The defaults of a params dataclass's fields (fields without one are left out)."""
    return {
        f.name: f.default
        for f in dataclasses.fields(cls)
        if f.default is not dataclasses.MISSING
    }


def bounds(cls: type, name: str) -> tuple[float | None, float | None]:
    """(minimum, maximum) the backend accepts for field ``name`` of ``cls``."""
    meta = next(f for f in dataclasses.fields(cls) if f.name == name).metadata
    return meta.get("min"), meta.get("max")


#: The dock's automatic minimum area and simplification, in pixels of the ground resolution
#: the run reads at: polygons under 50 pixels (0.5 m² at 10 cm, 0.5 ha at 10 m) are mostly
#: speckle, and one pixel of simplification removes the staircase of the pixel edges.
AUTO_MIN_AREA_PX = 50.0
AUTO_SIMPLIFY_PX = 1.0


def auto_min_area(resolution: float) -> float:
    """Minimum area (map units²) at ``resolution`` map units per pixel."""
    return AUTO_MIN_AREA_PX * resolution * resolution


def auto_simplify(resolution: float) -> float:
    """Simplification tolerance (map units) at ``resolution`` map units per pixel."""
    return AUTO_SIMPLIFY_PX * resolution


@dataclass
class SegmentOptions:
    """Advanced options (see ``SegmentOptions`` in the backend's schemas). None means the
    backend's default (for the tile size and overlap: the model's and the tile's)."""

    bands: list[int] | None = None
    resolution: float | None = None
    score_threshold: float = _bounded(0.5, 0.0, 1.0)
    min_area: float = _bounded(0.0, 0.0)
    simplify: float = _bounded(0.0, 0.0)
    tile_size: int | None = _bounded(None, 64, 8192)
    overlap: int | None = None
    #: Trained models: land-cover maps fused with the model's class scores, each
    #: ``RASTER[:LEGEND][:MAPPING.csv]``.
    fuse_land_cover: list[str] | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "min_area": float(self.min_area),
            "simplify": float(self.simplify),
        }
        # Left out at its default so the backend applies its own rule: a model trained on
        # the user's classes labels every valid pixel unless a threshold is asked for (the
        # CLI without --score-threshold does the same); other models use that default.
        if self.score_threshold != defaults(SegmentOptions)["score_threshold"]:
            out["score_threshold"] = float(self.score_threshold)
        if self.bands:
            out["bands"] = [int(b) for b in self.bands]
        if self.resolution:
            out["resolution"] = float(self.resolution)
        if self.tile_size:
            out["tile_size"] = int(self.tile_size)  # the backend fits its overlap to it
        if self.overlap is not None:
            out["overlap"] = int(self.overlap)
        if self.fuse_land_cover:
            out["fuse_land_cover"] = list(self.fuse_land_cover)
        return out


@dataclass
class SegmentParams:
    """What to segment and how.

    Attributes:
        query: Class names ("buildings, roads; streets") or a sentence.
        mode: ``auto``, ``reasoning`` or ``open_vocabulary``.
        model: Segmenter name, or None for the mode's default.
        extent: Area to segment; None for the whole raster.
        options: Advanced options.
    """

    query: str
    mode: str = "auto"
    model: str | None = None
    extent: Extent | None = None
    options: SegmentOptions = field(default_factory=SegmentOptions)

    def to_request(self, raster: str | None = None, upload_id: str | None = None) -> dict[str, Any]:
        """The JSON body of ``POST /jobs`` for a raster path or an upload."""
        req: dict[str, Any] = {
            "query": self.query,
            "mode": self.mode,
            "options": self.options.to_json(),
        }
        if raster is not None:
            req["raster"] = raster
        if upload_id is not None:
            req["upload_id"] = upload_id
        if self.model:
            req["model"] = self.model
        if self.extent is not None:
            req["extent"] = self.extent.to_json()
        return req


def parse_bands(text: str) -> list[int] | None:
    """``"4 3 2"`` / ``"4,3,2"`` → ``[4, 3, 2]``; empty → None.

    Raises:
        ValueError: Not 1 or 3 positive integers.
    """
    parts = [p for p in text.replace(",", " ").split() if p]
    if not parts:
        return None
    try:
        bands = [int(p) for p in parts]
    except ValueError:
        raise ValueError(f"bands must be numbers like '4 3 2', not {text!r}") from None
    if len(bands) not in (1, 3) or any(b < 1 for b in bands):
        raise ValueError("give 1 or 3 band numbers (starting at 1), e.g. '4 3 2'")
    return bands


#: Longest model name the backend accepts.
MODEL_NAME_MAX = 40
_NAME_RE = re.compile(rf"^[a-z0-9_-]{{1,{MODEL_NAME_MAX}}}$")


def sanitize_model_name(text: str, fallback: str = "model") -> str:
    """A model name the backend accepts, made from ``text`` (e.g. a layer name).

    Lowercase; runs of anything but letters, digits, ``-`` and ``_`` become one ``-``;
    accents are dropped; at most :data:`MODEL_NAME_MAX` characters.

    Args:
        text: Any text.
        fallback: Used when nothing usable is left.

    Returns:
        E.g. ``"Parcels 2024 (Ghent)"`` → ``"parcels-2024-ghent"``.
    """
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    name = re.sub(r"[^a-z0-9_-]+", "-", ascii_text.lower()).strip("-_")
    name = name[:MODEL_NAME_MAX].rstrip("-_")
    return name or fallback


def model_name_problem(name: str, builtin: set[str] | frozenset[str] = frozenset()) -> str | None:
    """Why ``name`` cannot name a new model, or None when it can.

    Args:
        name: The proposed name.
        builtin: Names of the backend's built-in models (not allowed).
    """
    if not _NAME_RE.match(name):
        return (f"The model name {name!r} is not valid: use 1–{MODEL_NAME_MAX} lowercase "
                "letters, digits, '-' or '_' (e.g. 'parcels-2024').")
    if name in builtin:
        return f"'{name}' is the name of a built-in model; choose another name."
    return None


@dataclass
class TrainParams:
    """How to fine-tune (the ``POST /train`` body without raster and labels).

    Attributes:
        name: Name of the new model (a trained model's name again resumes an interrupted
            run, or trains a finished model again).
        class_field: Field holding each parcel's class.
        label_budget: Fraction (0, 1] of the training parcels whose labels are used.
        epochs: Epochs to train.
        semi_supervised: Also learn from unlabelled tiles (teacher–student).
        verifier: VLM pseudo-label purification (only with ``semi_supervised``).
        tile_size: Tile side in pixels.
        time_budget_s: Stop after this many seconds of training (None: no limit).
        val_fraction: Fraction of the parcels held out to validate on (0: none; the
            backend requires it below 1).
        model: The trainer (``auto`` tries several and keeps the best on validation);
            None leaves it to the backend (one that offers no choice).
    """

    name: str
    class_field: str
    label_budget: float = _bounded(1.0, 0.0, 1.0)
    epochs: int = _bounded(30, 1, 10_000)
    semi_supervised: bool = True
    verifier: bool = True
    tile_size: int = _bounded(256, 32, 2048)
    time_budget_s: float | None = None
    val_fraction: float = _bounded(0.2, 0.0, 1.0)
    model: str | None = "auto"

    def to_request(
        self,
        labels: str,
        layer: str | None = None,
        raster: str | None = None,
        upload_id: str | None = None,
        weak_labels: list[str] | None = None,
    ) -> dict[str, Any]:
        """The JSON body of ``POST /train``.

        Args:
            labels: Path of the parcels file.
            layer: Layer inside ``labels`` (GeoPackage), or None.
            raster: Raster path (or give ``upload_id``).
            upload_id: Id of an uploaded raster (or give ``raster``).
            weak_labels: Land-cover maps as ``RASTER[:LEGEND][:MAPPING.csv]``, or None.

        Returns:
            The request body.
        """
        req: dict[str, Any] = {
            "labels": labels,
            "class_field": self.class_field,
            "name": self.name,
            "label_budget": float(self.label_budget),
            "epochs": int(self.epochs),
            "semi_supervised": bool(self.semi_supervised),
            "verifier": bool(self.verifier and self.semi_supervised),
            "tile_size": int(self.tile_size),
            "val_fraction": float(self.val_fraction),
        }
        if layer:
            req["layer"] = layer
        if raster is not None:
            req["raster"] = raster
        if upload_id is not None:
            req["upload_id"] = upload_id
        if self.time_budget_s:
            req["time_budget_s"] = float(self.time_budget_s)
        if self.model is not None:
            req["model"] = self.model
        if weak_labels:
            req["weak_labels"] = list(weak_labels)
        return req
