"""Training examples for the prompter: (image, query, target mask), from GIS data or a folder.

**From a polygon layer over a raster** (:func:`examples_from_layer`): the polygons answer
a query, from a field (``query_field``, one query per feature) or one ``query`` for the
whole layer. Each *positive* example is a square extent around an answer polygon
(``context`` times its larger side, at least ``min_side_px`` raster pixels, read at a
coarser resolution when larger than ``max_side_px``), its target every polygon of the
same query inside the extent; a polygon already inside an earlier extent of its query
makes no example of its own. *Negatives* ("no target" is the right answer) are extents of
the same sizes placed where no polygon of that query lies (``negatives`` per positive).
Pixels are read as serving reads them (:class:`ExtentReader`: same bands and stretch).

**Spatial hold-out**: examples are ordered along the raster's longer axis and the last
``holdout_fraction`` of them are held out; training examples whose extent touches a
held-out one are dropped, so no held-out pixel is trained on.

**EarthReason-style folder** (:func:`examples_from_folder`): ``images/<id>.*``,
``labels/<id>.png`` (non-zero = target; an all-zero mask is a "no target" example),
``QAs/<id>.json`` with ``{"questions": [...]}`` (the first question is used), either
directly in the folder or in ``train/``, ``val/``, ``test/`` (val and test held out).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rs_reasoner.errors import InvalidRequestError
from rs_reasoner.segmenters.reasoning.template import MAX_QUERY_CHARS

#: Defaults of the example builder (one place).
CONTEXT = 2.0
MIN_SIDE_PX = 64
MAX_SIDE_PX = 1024
NEGATIVES = 0.5
HOLDOUT_FRACTION = 0.2
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")


@dataclass
class Example:
    """One training or held-out example.

    Attributes:
        name: Where it came from (feature row / file id), for messages.
        image: (H, W, 3) uint8 RGB as serving reads it.
        valid: (H, W) bool.
        query: The question.
        target: (H, W) bool; all False for a "no target" example.
        heldout: Held out for evaluation.
        bounds: (xmin, ymin, xmax, ymax) in the raster's CRS (None for folder examples).
    """

    name: str
    image: np.ndarray
    valid: np.ndarray
    query: str
    target: np.ndarray
    heldout: bool = False
    bounds: tuple[float, float, float, float] | None = None

    @property
    def negative(self) -> bool:
        return not bool(self.target.any())


def check_query(query: object, where: str) -> str:
    """A usable query, or one clear error (empty, or longer than the prompt takes)."""
    text = " ".join(str(query if query is not None else "").split())
    if not text:
        raise InvalidRequestError(
            f"The query of {where} is empty.", "Give every example a question."
        )
    if len(text) > MAX_QUERY_CHARS:
        raise InvalidRequestError(
            f"The query of {where} has {len(text)} characters; the prompter's context takes "
            f"at most {MAX_QUERY_CHARS}.",
            "Shorten the question (it would be cut, and the model trained on a different one).",
        )
    return text


# -- from a polygon layer ---------------------------------------------------------------------


def _read_layer(path: str | os.PathLike[str], layer: str | None):  # noqa: ANN202 - GeoDataFrame
    import geopandas as gpd

    if not Path(path).exists():
        raise InvalidRequestError(
            f"The examples file does not exist: {path}", "Give a GeoPackage or Shapefile."
        )
    try:
        gdf = gpd.read_file(path, layer=layer)
    except Exception as exc:  # GDAL raises many types; all mean "cannot read"
        raise InvalidRequestError(
            f"The examples layer {path} cannot be read ({type(exc).__name__}: {exc}).",
            "Give a polygon layer (GeoPackage/Shapefile); name the layer if there are several.",
        ) from None
    if len(gdf) == 0:
        raise InvalidRequestError(f"The examples layer {path} has no features.")
    return gdf


def _queries(gdf, query_field: str | None, query: str | None, path: object) -> list[str]:  # noqa: ANN001
    if (query_field is None) == (query is None):
        raise InvalidRequestError(
            "Give either a query field or one query for the whole layer.",
            "Use --query-field FIELD (a question per polygon) or --query TEXT.",
        )
    if query is not None:
        return [check_query(query, "the layer")] * len(gdf)
    fields = [c for c in gdf.columns if c != gdf.geometry.name]
    if query_field not in fields:
        raise InvalidRequestError(
            f"The examples layer {path} has no field {query_field!r}.",
            f"Its fields: {', '.join(fields) or 'none'}. Choose the field holding the question.",
        )
    return [check_query(v, f"feature {i}") for i, v in enumerate(gdf[query_field])]


def _check_geometries(gdf, path: object) -> None:  # noqa: ANN001
    empty = [i for i, g in enumerate(gdf.geometry) if g is None or g.is_empty]
    if empty:
        rows = ", ".join(map(str, empty[:10])) + (" ..." if len(empty) > 10 else "")
        raise InvalidRequestError(
            f"{len(empty)} feature(s) of {path} have an empty geometry (rows {rows}).",
            "Draw their polygons or delete those features.",
        )
    kinds = set(gdf.geom_type) - {"Polygon", "MultiPolygon"}
    if kinds:
        raise InvalidRequestError(
            f"Example answers must be polygons; {path} has {', '.join(sorted(kinds))}.",
            "Convert them to polygons (e.g. buffer points or lines in QGIS).",
        )


def _square(cx: float, cy: float, side: float, bounds: tuple[float, ...]) -> tuple[float, ...]:
    """A square of ``side`` centred at (cx, cy), shifted (not cut) to stay in ``bounds``."""
    xmin, ymin, xmax, ymax = bounds
    side = min(side, xmax - xmin, ymax - ymin)
    x0 = min(max(cx - side / 2, xmin), xmax - side)
    y0 = min(max(cy - side / 2, ymin), ymax - side)
    return (x0, y0, x0 + side, y0 + side)


def examples_from_layer(
    raster: str | os.PathLike[str],
    examples: str | os.PathLike[str],
    *,
    query_field: str | None = None,
    query: str | None = None,
    layer: str | None = None,
    bands: list[int] | None = None,
    context: float = CONTEXT,
    min_side_px: int = MIN_SIDE_PX,
    max_side_px: int = MAX_SIDE_PX,
    negatives: float = NEGATIVES,
    holdout_fraction: float = HOLDOUT_FRACTION,
    seed: int = 0,
) -> list[Example]:
    """Examples from answer polygons over a raster (rules in the module docstring).

    Raises:
        InvalidRequestError: No query field (or both/neither of field and query), empty
            geometries, non-polygons, polygons outside the raster, an empty or too long
            query, no usable example.
    """
    from shapely import union_all
    from shapely.geometry import box

    from rs_reasoner.raster import open_raster

    gdf = _read_layer(examples, layer)
    queries = _queries(gdf, query_field, query, examples)
    _check_geometries(gdf, examples)
    ds = open_raster(raster)
    try:
        if gdf.crs is not None and ds.crs is not None:
            gdf = gdf.to_crs(ds.crs)
        rb = tuple(ds.bounds)
        pixel = abs(ds.transform.a)
        outside = [i for i, g in enumerate(gdf.geometry) if not g.intersects(box(*rb))]
        if outside:
            rows = ", ".join(map(str, outside[:10])) + (" ..." if len(outside) > 10 else "")
            raise InvalidRequestError(
                f"{len(outside)} polygon(s) of {examples} lie outside the raster {raster} "
                f"(rows {rows}).",
                "Check that the layer and the raster cover the same place (and their CRS), "
                "or delete those features.",
            )
        geoms = list(gdf.geometry)
        squares: list[tuple[str, str, tuple[float, ...]]] = []
        for q in dict.fromkeys(queries):
            mine = [g for g, qq in zip(geoms, queries, strict=True) if qq == q]
            done: list[tuple[float, ...]] = []
            for k, g in enumerate(mine):
                x0, y0, x1, y1 = g.bounds
                if any(box(*s).contains(g) for s in done):
                    continue
                side = max(context * max(x1 - x0, y1 - y0), min_side_px * pixel)
                sq = _square((x0 + x1) / 2, (y0 + y1) / 2, side, rb)
                done.append(sq)
                squares.append((f"{q!r} polygon {k}", q, sq))
            rng = np.random.default_rng(seed)
            want = int(round(negatives * len(done)))
            union = union_all(mine)
            for j in range(want):
                side = (done[j % len(done)][2] - done[j % len(done)][0])
                for _ in range(50):
                    cx = rng.uniform(rb[0], rb[2])
                    cy = rng.uniform(rb[1], rb[3])
                    sq = _square(cx, cy, side, rb)
                    if not box(*sq).intersects(union):
                        squares.append((f"{q!r} negative {j}", q, sq))
                        break
        out = [_read_example(ds, name, q, sq, gdf, queries, bands, max_side_px)
               for name, q, sq in squares]  # fmt: skip
    finally:
        ds.close()
    return spatial_holdout(out, holdout_fraction)


def _read_example(ds, name, q, sq, gdf, queries, bands, max_side_px) -> Example:  # noqa: ANN001
    from rasterio.features import rasterize

    from rs_reasoner.raster import ExtentReader
    from rs_reasoner.schemas import Extent

    side_px = (sq[2] - sq[0]) / abs(ds.transform.a)
    resolution = (sq[2] - sq[0]) / max_side_px if side_px > max_side_px else None
    extent = Extent(xmin=sq[0], ymin=sq[1], xmax=sq[2], ymax=sq[3])
    reader = ExtentReader.open(ds, extent, bands, resolution)
    image, valid = reader.read_extent()
    shapes = [g for g, qq in zip(gdf.geometry, queries, strict=True) if qq == q]
    target = rasterize(
        [(g, 1) for g in shapes], out_shape=image.shape[:2], transform=reader.transform,
        fill=0, dtype="uint8",
    ).astype(bool) & valid  # fmt: skip
    return Example(name, image, valid, q, target, bounds=tuple(float(v) for v in sq))


def spatial_holdout(examples: list[Example], fraction: float) -> list[Example]:
    """Mark the last ``fraction`` of the examples along the longer axis as held out and
    drop training examples that overlap a held-out extent (module docstring)."""
    if not examples:
        raise InvalidRequestError("No example could be built from the layer.")
    if not 0 <= fraction < 1:
        raise InvalidRequestError("The held-out fraction must be in [0, 1).")
    boxes = np.array([e.bounds for e in examples], float)
    spans = boxes[:, 2:].max(0) - boxes[:, :2].min(0)
    axis = 0 if spans[0] >= spans[1] else 1
    centre = (boxes[:, axis] + boxes[:, axis + 2]) / 2
    order = np.argsort(centre, kind="stable")
    n_out = int(math.ceil(fraction * len(examples))) if fraction > 0 else 0
    held = set(order[len(order) - n_out :].tolist()) if n_out else set()
    kept = []
    for i, e in enumerate(examples):
        e.heldout = i in held
        if not e.heldout and any(_overlap(boxes[i], boxes[j]) for j in held):
            continue
        kept.append(e)
    if not any(not e.heldout for e in kept):
        raise InvalidRequestError(
            "Every example is held out or overlaps a held-out one.",
            "Add examples elsewhere on the raster, or lower the held-out fraction.",
        )
    return kept


def _overlap(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3])


# -- from an EarthReason-style folder ---------------------------------------------------------


def examples_from_folder(folder: str | os.PathLike[str]) -> list[Example]:
    """Examples from an EarthReason-style folder (layout in the module docstring).

    Raises:
        InvalidRequestError: Missing folders, an image without label or questions, a label
            of another size, a bad questions file, or nothing found.
    """
    from PIL import Image

    root = Path(folder)
    splits = [(root / s, s != "train") for s in ("train", "val", "test") if (root / s).is_dir()]
    if not splits:
        splits = [(root, False)]
    out: list[Example] = []
    for base, heldout in splits:
        images = base / "images"
        if not images.is_dir():
            raise InvalidRequestError(
                f"{base} has no 'images' folder.",
                "Use the EarthReason layout: images/, labels/ (PNG masks), QAs/ (JSON).",
            )
        for path in sorted(p for p in images.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES):
            label = base / "labels" / f"{path.stem}.png"
            qa = base / "QAs" / f"{path.stem}.json"
            for need in (label, qa):
                if not need.is_file():
                    raise InvalidRequestError(
                        f"Image {path.name} has no {need.parent.name}/{need.name}.",
                        "Every image needs its mask and its questions.",
                    )
            try:
                questions = json.loads(qa.read_text(encoding="utf-8")).get("questions")
            except (ValueError, AttributeError):
                questions = None
            if not isinstance(questions, list) or not questions:
                raise InvalidRequestError(
                    f"{qa} holds no question list.", 'Write {"questions": ["..."]}.'
                )
            image = np.asarray(Image.open(path).convert("RGB"))
            mask = np.asarray(Image.open(label))
            mask = mask.any(axis=2) if mask.ndim == 3 else mask > 0
            if mask.shape != image.shape[:2]:
                raise InvalidRequestError(
                    f"The mask {label} is {mask.shape[1]}x{mask.shape[0]} but its image is "
                    f"{image.shape[1]}x{image.shape[0]}.",
                    "Masks must have their image's size.",
                )
            valid = np.ones(mask.shape, bool)
            q = check_query(questions[0], str(qa))
            out.append(Example(path.stem, image, valid, q, mask, heldout=heldout))
    if not out:
        raise InvalidRequestError(f"No image found in {root}.")
    return out
