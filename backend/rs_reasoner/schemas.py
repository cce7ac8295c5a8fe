"""Request and option models shared by the CLI, the pipeline and the HTTP API.

These models are the one definition of every option's default, bounds and help text: the
CLI builds its flags from them (:mod:`rs_reasoner.arguments`), the training code reads
:data:`TRAIN_DEFAULTS`, and the plugin's tests check that its own copies still match.
"""

from __future__ import annotations

import re
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from rs_reasoner.service.limits import JobLimits

#: Upper bound on the working grid of one job (pixels after resampling); beyond this the
#: request is refused with advice to pick a coarser resolution or a smaller extent.
MAX_WORKING_PIXELS = 400_000_000

#: Largest extent coordinate accepted, either sign (map units: Earth-sized projected CRSs
#: stay within 1e8 m), so arithmetic on extents never overflows.
MAX_COORDINATE = 1e12
#: Ground resolutions accepted (map units per pixel); beyond them lie typos, not rasters.
MIN_RESOLUTION, MAX_RESOLUTION = 1e-9, 1e9
#: Band numbers accepted (GeoTIFF holds at most 65535 bands).
_Band = Annotated[int, Field(ge=1, le=65535)]


def defaults(model: type[BaseModel]) -> dict[str, Any]:
    """Each field's default value; fields without one (required fields) are left out."""
    return {
        name: info.get_default(call_default_factory=True)
        for name, info in model.model_fields.items()
        if not info.is_required()
    }


class Mode(str, Enum):
    """How the query is interpreted."""

    reasoning = "reasoning"
    open_vocabulary = "open_vocabulary"
    auto = "auto"


class Extent(BaseModel):
    """A rectangle in some CRS. ``crs`` is anything pyproj understands (EPSG:4326, WKT,
    PROJ string); ``None`` means the raster's own CRS (or pixel/line space for rasters
    without georeferencing)."""

    model_config = ConfigDict(extra="forbid")

    xmin: float = Field(ge=-MAX_COORDINATE, le=MAX_COORDINATE)
    ymin: float = Field(ge=-MAX_COORDINATE, le=MAX_COORDINATE)
    xmax: float = Field(ge=-MAX_COORDINATE, le=MAX_COORDINATE)
    ymax: float = Field(ge=-MAX_COORDINATE, le=MAX_COORDINATE)
    crs: str | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Extent:
        vals = (self.xmin, self.ymin, self.xmax, self.ymax)
        if any(v != v or v in (float("inf"), float("-inf")) for v in vals):
            raise ValueError("extent coordinates must be finite numbers")
        if not (self.xmax > self.xmin and self.ymax > self.ymin):
            raise ValueError(
                "extent must have xmax > xmin and ymax > ymin "
                f"(got {self.xmin}, {self.ymin}, {self.xmax}, {self.ymax})"
            )
        return self


_BANDS_HELP = (
    "1-based band indexes. Models that read an image: 1 or 3 bands used as R,G,B; default: "
    "bands whose colour interpretation is RGB, else the first three; a single band is "
    "replicated. Models trained on raw bands read the bands they were trained on; give as "
    "many, in the same order, to read other band numbers in their place."
)
_RESOLUTION_HELP = "Target ground resolution in raster CRS units per pixel."


def _valid_bands(v: list[int] | None) -> list[int] | None:
    if v is None:
        return v
    # How many depends on the model: 1 or 3 for models that read an image
    # (raster.bands.select_bands), the trained number for raw-band models
    # (pipeline.model_bands); both say so with the model known.
    if any(b < 1 for b in v):
        raise ValueError("band indexes start at 1")
    return v


class SegmentOptions(BaseModel):
    """Knobs of one segmentation run. Distances and areas are in the raster CRS's units."""

    model_config = ConfigDict(extra="forbid")

    bands: list[_Band] | None = Field(
        None, min_length=1, max_length=65535, description=_BANDS_HELP
    )
    resolution: float | None = Field(
        None, ge=MIN_RESOLUTION, le=MAX_RESOLUTION, description=_RESOLUTION_HELP
    )
    score_threshold: float = Field(
        0.5, ge=0.0, le=1.0, description="Pixels scoring below this are left out (0-1)."
    )
    min_area: float = Field(
        0.0, ge=0.0, le=MAX_COORDINATE**2, description="Drop smaller polygons (map units²)."
    )
    simplify: float = Field(
        0.0, ge=0.0, le=MAX_COORDINATE, description="Simplification tolerance (map units)."
    )
    tile_size: int = Field(1024, ge=64, le=8192, description="Tile edge in working pixels.")
    overlap: int = Field(
        128,
        ge=0,
        le=2048,
        description="Context margin around each tile in working pixels; when not given, "
        "capped to less than half the tile size.",
    )
    instance_mode: Literal["auto", "union", "instances"] | None = Field(
        None,
        description="Reasoning mode: 'union' merges all matched objects into one region per "
        "label (semantic targets: 'all the ponds'), 'instances' keeps one polygon set per "
        "object ('the largest warehouse'), 'auto' keeps instances unless their masks overlap. "
        "Default: the model's setting ('auto').",
    )
    exact: bool = Field(
        False,
        description="On CPU, run the exact path of models with a faster CPU default "
        "(clip-openvocab: full resolution, overlapping windows, float32; several times "
        "slower).",
    )
    fuse_land_cover: list[str] | None = Field(
        None,
        min_length=1,
        max_length=8,
        description="Trained models: land-cover maps fused with the model's class scores, class "
        "by class: each RASTER[:LEGEND][:MAPPING.csv] (legend worldcover, dynamic-world or "
        "corine when the raster does not carry one; mapping rows 'product class,model class', "
        "else classes of the same name). Reliabilities are those measured when the model was "
        "trained with that product, else 0.7.",
    )

    @field_validator("bands")
    @classmethod
    def _bands(cls, v: list[int] | None) -> list[int] | None:
        return _valid_bands(v)

    @field_validator("fuse_land_cover")
    @classmethod
    def _land_cover(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and any(not item.strip() for item in v):
            raise ValueError("a land-cover entry is empty: give RASTER[:LEGEND][:MAPPING.csv]")
        return v

    @model_validator(mode="after")
    def _overlap(self) -> SegmentOptions:
        if "overlap" not in self.model_fields_set:
            # The default margin suits the default tiles; smaller tiles get the largest
            # margin they allow, so choosing a tile size alone is always valid.
            self.overlap = min(self.overlap, self.tile_size // 2 - 1)
        if 2 * self.overlap >= self.tile_size:
            raise ValueError("overlap must be less than half the tile size")
        return self


class SegmentRequest(BaseModel):
    """One segmentation job: a raster, an area, a query and options."""

    model_config = ConfigDict(extra="forbid")

    raster: str | None = Field(None, description="Path of a raster GDAL can open.")
    upload_id: str | None = Field(None, description="Id returned by POST /uploads.")
    extent: Extent | None = Field(None, description="Area to segment; default: whole raster.")
    query: str = Field(
        ...,
        min_length=1,
        max_length=2000,
        description="What to segment: class names or a sentence.",
    )
    mode: Mode = Field(
        Mode.auto, description="auto: class lists → open_vocabulary, sentences → reasoning."
    )
    model: str | None = Field(None, description="Segmenter name; default: the mode's default.")
    output_crs: str | None = Field(None, description="CRS of the polygons; default: raster's.")
    options: SegmentOptions = Field(default_factory=SegmentOptions)

    @field_validator("query")
    @classmethod
    def _query(cls, v: str) -> str:
        v = v.strip()
        if not v:
            raise ValueError("query is empty: describe what to segment, e.g. 'buildings, water'")
        if len(v) > 2000:
            raise ValueError("query is longer than 2000 characters")
        return v

    @model_validator(mode="after")
    def _one_source(self) -> SegmentRequest:
        if (self.raster is None) == (self.upload_id is None):
            raise ValueError("give exactly one of 'raster' (a path) or 'upload_id'")
        return self


#: Names of trained models: what ``rs-reasoner train --name`` and ``POST /train`` accept.
MODEL_NAME_PATTERN = r"^[a-z0-9_-]{1,40}$"


def _model_name(v: str) -> str:
    if not re.fullmatch(MODEL_NAME_PATTERN, v):
        raise ValueError(
            f"model name {v!r} is not allowed: use 1-40 lowercase letters, digits, '-' "
            "or '_' (e.g. 'my-parcels')"
        )
    return v


#: What ``rs-reasoner train --model`` and ``POST /train`` train (the training package's
#: choices; the backend never imports it).
TRAINERS = ("auto", "classical", "random-forest", "unet", "rs-zeroseg")


class TrainRequest(BaseModel):
    """One training job: a raster and labelled parcels, or image + mask folders, and the
    model to make of them.

    Shared by ``rs-reasoner train`` and ``POST /train`` (see docs/architecture.md).
    """

    model_config = ConfigDict(extra="forbid")

    kind: Literal["segmenter"] = Field(
        "segmenter",
        description="What to train: a segmenter on labelled parcels or on image + mask folders.",
    )
    raster: str | None = Field(None, description="Path of a raster GDAL can open.")
    upload_id: str | None = Field(None, description="Id returned by POST /uploads.")
    labels: str | None = Field(
        None, description="Polygon file (GeoPackage, Shapefile, GeoJSON) over the raster."
    )
    layer: str | None = Field(None, description="Layer inside a multi-layer file.")
    class_field: str | None = Field(
        None, min_length=1, description="Field holding each parcel's class."
    )
    images: str | None = Field(
        None,
        description="Folder of training images (GeoTIFF, PNG, JPEG...; every band is used), "
        "instead of a raster and parcels; needs masks and classes.",
    )
    masks: str | None = Field(
        None,
        description="Folder of label masks, each named like its image (any image suffix) and "
        "of its size; images without a mask are unlabelled.",
    )
    classes: str | None = Field(
        None,
        description="Class table: a text file with one 'VALUE,NAME' line per class for masks "
        "of class values, or '#RRGGBB,NAME' for colour masks; NAME '-' marks a value to "
        "ignore (e.g. unlabelled). Every mask value must be listed. With a raster: names of "
        "the class field's values (e.g. '3,forest'), classes in the file's order.",
    )
    aoi: str | None = Field(
        None, description="Polygon file limiting where unlabelled tiles are taken from."
    )
    name: str = Field(
        ...,
        description="Name of the new model: 1-40 lowercase letters, digits, '-' or '_'. "
        "The same name again resumes an interrupted run from its last checkpoint.",
    )
    model: Literal[TRAINERS] = Field(  # type: ignore[valid-type]
        "auto",
        description="What to train. 'auto': the classical learner and U-Net candidates "
        "(supervised, and teacher-student with purification), the one scoring best on the "
        "validation parcels kept, with the comparison printed and stored; 'classical': a "
        "LightGBM pixel classifier over bands, indices and local statistics (seconds, no "
        "GPU); 'random-forest': a random forest on the bands, the usual baseline (also an "
        "'auto' candidate when named: candidates=classical,random-forest); 'unet': one "
        "U-Net; 'rs-zeroseg': the "
        "open-vocabulary network fine-tuned (its backbones: rs-reasoner models pull "
        "rs-zeroseg).",
    )
    label_budget: float = Field(
        1.0,
        gt=0.0,
        le=1.0,
        description="Fraction of training parcels (or masked images) whose labels are used.",
    )
    epochs: int = Field(30, ge=1, le=10_000, description="Epochs to train.")
    time_budget_s: float | None = Field(
        None, gt=0, le=1e7, description="Stop after this much training time (seconds)."
    )
    semi_supervised: bool = Field(True, description="Teacher-student on unlabelled tiles.")
    verifier: bool = Field(
        True,
        description="Pseudo-label purification by a verifier model (ignored without "
        "semi_supervised).",
    )
    tile_size: int = Field(
        256,
        ge=32,
        le=2048,
        description="Training tile side in pixels, at most: a raster too small for 4x4 tiles "
        "of this side gets smaller tiles (down to 32), so parcels can be split between "
        "training and validation.",
    )
    background: str | None = Field(
        None,
        description="Class name for unlabelled pixels of tiles touching parcels (only when "
        "every object there is drawn); needed when all parcels have one class.",
    )
    val_fraction: float = Field(
        0.2,
        ge=0.0,
        lt=1.0,
        description="Fraction of parcels (or masked images) held out for validation (0: none).",
    )
    seed: int = Field(
        0, ge=0, le=2**32 - 1, description="Seed of the split, label budget and training."
    )
    threads: int | None = Field(
        None,
        ge=1,
        le=1024,
        description="CPU threads training may use (torch, LightGBM, GDAL). Default: all cores.",
    )
    keep_checkpoints: bool = Field(
        False,
        description="Keep the resume state (last.pt, the candidates of an auto run) after "
        "training ends, to continue it later with more epochs or time; by default only the "
        "model served is kept.",
    )
    bands: list[_Band] | None = Field(
        None,
        min_length=1,
        max_length=65535,
        description="1-based bands to train on, any number (e.g. all 10 of a Sentinel-2 "
        "stack). Default: every band (RS-ZeroSeg: 1 or 3, as for segmenting). The model "
        "records them and reads the same bands when it segments.",
    )
    resolution: float | None = Field(
        None,
        ge=MIN_RESOLUTION,
        le=MAX_RESOLUTION,
        description=_RESOLUTION_HELP + " Default: the raster's own.",
    )
    weak_labels: list[str] | None = Field(
        None,
        min_length=1,
        max_length=8,
        description="Land-cover maps as extra, weaker labels: each RASTER[:LEGEND][:MAPPING.csv] "
        "(legend worldcover, dynamic-world or corine when the raster does not carry one; "
        "mapping rows 'product class,your class', else classes of the same name). Parcels "
        "always win; the products' agreement with them (kappa) is reported before training.",
    )

    @field_validator("labels", "class_field", "images", "masks", "classes")
    @classmethod
    def _not_blank(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
            raise ValueError("must not be empty")
        return v

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _model_name(v)

    @model_validator(mode="after")
    def _one_source(self) -> TrainRequest:
        folders = [self.images, self.masks, self.classes]
        if self.images is not None or self.masks is not None:
            if any(v is None for v in folders):
                raise ValueError("image + mask folders need all of 'images', 'masks' and "
                                 "'classes'")  # fmt: skip
            parcel_only = ("raster", "upload_id", "labels", "layer", "class_field", "aoi",
                           "background", "resolution", "weak_labels")  # fmt: skip
            given = [k for k in parcel_only if getattr(self, k) is not None]
            if given:
                raise ValueError(
                    f"{', '.join(given)}: not used with image + mask folders (give either "
                    "a raster with labels and class_field, or images, masks and classes)"
                )
            return self
        if (self.raster is None) == (self.upload_id is None):
            raise ValueError(
                "give exactly one of 'raster' (a path) or 'upload_id' with 'labels' and "
                "'class_field', or 'images', 'masks' and 'classes' (folders)"
            )
        missing = [k for k in ("labels", "class_field") if getattr(self, k) is None]
        if missing:
            raise ValueError(f"a raster needs {' and '.join(map(repr, missing))}")
        return self

    @property
    def from_folders(self) -> bool:
        """Image + mask folders (else a raster and parcels)."""
        return self.images is not None


#: Defaults of the training options, for the training code's keyword arguments.
TRAIN_DEFAULTS: dict[str, Any] = defaults(TrainRequest)

#: Where a reasoner option left out takes its value from.
_TRAINER_DEFAULT = "Default: the trainer's (the published Think2Seg-RS run's where known)."


class ReasonerTrainRequest(BaseModel):
    """Fine-tuning of the reasoning prompter (GRPO, mask IoU reward) on examples: a
    polygon layer over a raster answering a query per polygon (``query_field``) or one
    ``query`` for the layer, or an EarthReason-style folder (no raster).

    Shared by ``rs-reasoner train-reasoner`` and ``POST /train`` with ``kind: reasoner``.
    Options left out (null) take the trainer's defaults, which are defined once in the
    training package; the bounds here only refuse absurd values at submission.
    """

    model_config = ConfigDict(extra="forbid")

    kind: Literal["reasoner"] = Field(
        description="What to train: the reasoning prompter on examples with a query."
    )
    examples: str = Field(
        ..., min_length=1,
        description="Polygon layer answering the queries (GeoPackage, Shapefile, GeoJSON), "
        "or an EarthReason-style folder (images/, labels/, QAs/).",
    )  # fmt: skip
    raster: str | None = Field(
        None, description="Raster the polygons lie on (omit for a folder of examples)."
    )
    upload_id: str | None = Field(None, description="Id returned by POST /uploads (the raster).")
    layer: str | None = Field(None, description="Layer inside a multi-layer file.")
    query_field: str | None = Field(
        None, min_length=1, description="Field holding each polygon's question."
    )
    query: str | None = Field(
        None, min_length=1, description="One question answered by every polygon of the layer."
    )
    name: str = Field(
        ...,
        description="Name of the fine-tuned model: 1-40 lowercase letters, digits, '-' or "
        "'_'. The same name again resumes the run.",
    )
    base_prompter: str | None = Field(
        None,
        description="Base prompter: a prompter weights name or a local snapshot folder. "
        "Default: the built-in reasoning model's.",
    )
    sam_variant: str | None = Field(
        None, description="SAM 2.1 variant of the reward (tiny, small, base_plus, large). "
        "Default: the reasoning model's.",
    )  # fmt: skip
    sam_checkpoint: str | None = Field(None, description="A local SAM 2.1 checkpoint (.pt).")
    holdout_fraction: float | None = Field(
        None, ge=0.0, lt=1.0, description="Share of examples held out (spatially). "
        + _TRAINER_DEFAULT,
    )  # fmt: skip
    negatives: float | None = Field(
        None, ge=0.0, le=100.0,
        description="'No target' extents per positive one. " + _TRAINER_DEFAULT,
    )  # fmt: skip
    group_size: int | None = Field(
        None, ge=2, le=1024, description="Completions sampled per example. " + _TRAINER_DEFAULT
    )
    kl_coef: float | None = Field(
        None, ge=0.0, le=100.0,
        description="Weight of the KL penalty towards the base prompter. " + _TRAINER_DEFAULT,
    )  # fmt: skip
    lr: float | None = Field(
        None, gt=0.0, le=1.0, description="Learning rate of the LoRA weights. " + _TRAINER_DEFAULT
    )
    max_new_tokens: int | None = Field(
        None, ge=1, le=32768, description="Completion budget (tokens). " + _TRAINER_DEFAULT
    )
    steps: int | None = Field(
        None, ge=1, le=1_000_000, description="Optimizer steps. " + _TRAINER_DEFAULT
    )
    time_budget_s: float | None = Field(
        None, gt=0, le=1e7,
        description="Stop (and register the adapter so far) after this many seconds.",
    )  # fmt: skip

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _model_name(v)

    @model_validator(mode="after")
    def _sources(self) -> ReasonerTrainRequest:
        if self.raster is not None and self.upload_id is not None:
            raise ValueError("give at most one of 'raster' (a path) or 'upload_id'")
        if self.query_field is not None and self.query is not None:
            raise ValueError("give one of 'query_field' or 'query', not both")
        return self

    @property
    def has_raster(self) -> bool:
        """Examples from a polygon layer over a raster (else: a folder)."""
        return self.raster is not None or self.upload_id is not None

    def trainer_arguments(self) -> dict[str, Any]:
        """The options given (not null), as ``run_reasoner_training`` keywords (without
        the examples, raster and name)."""
        skip = {"kind", "examples", "raster", "upload_id", "name"}
        return {k: v for k, v in self if k not in skip and v is not None}


def _train_kind(value: Any) -> str:
    """The ``kind`` of a training request body (``segmenter`` when left out)."""
    kind = value.get("kind") if isinstance(value, dict) else getattr(value, "kind", None)
    return "segmenter" if kind is None else str(kind)


#: The body of ``POST /train``: a segmenter (``kind`` left out or ``segmenter``) or the
#: reasoning prompter (``kind: reasoner``).
AnyTrainRequest = Annotated[
    Annotated[TrainRequest, Tag("segmenter")] | Annotated[ReasonerTrainRequest, Tag("reasoner")],
    Discriminator(
        _train_kind,
        custom_error_type="invalid_kind",
        custom_error_message="'kind' must be 'segmenter' (the default) or 'reasoner'",
    ),
]


class RunOptions(BaseModel):
    """Where models run (``segment``, ``train`` and ``serve``)."""

    model_config = ConfigDict(extra="forbid")

    device: str = Field("auto", description="Torch device: auto, cpu, cuda or cuda:N.")


class ServeOptions(RunOptions):
    """How the local service listens (``rs-reasoner serve``)."""

    host: str = Field("127.0.0.1", description="Bind address.")
    port: int = Field(0, ge=0, le=65535, description="Port; 0 picks a free one.")
    allow_remote: bool = Field(
        False,
        description="Allow binding a non-loopback address (exposes the service to the "
        "network).",
    )
    state_file: Path | None = Field(
        None,
        description="Where to write port/token/pid (default: the per-user state file the "
        "plugin reads).",
    )
    job_time_limit: float = Field(
        JobLimits.segment_time_limit_s,
        gt=0,
        le=1e7,
        description="Seconds a segmentation job may run before it is stopped.",
    )
    train_time_limit: float = Field(
        JobLimits.train_time_limit_s,
        gt=0,
        le=1e7,
        description="Seconds a training job may run before it is stopped (its checkpoints "
        "are kept).",
    )
    max_queued_jobs: int = Field(
        JobLimits.max_queued,
        ge=1,
        le=10_000,
        description="Jobs that may wait to run; more are refused (HTTP 429).",
    )
