"""Every number a request carries is bounded in the schema (so OpenAPI documents it and
absurd values are refused at submission as a 422 or a CLI error, never an overflow)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from rs_reasoner.cli import main
from rs_reasoner.schemas import (
    Extent,
    ReasonerTrainRequest,
    SegmentOptions,
    SegmentRequest,
    TrainRequest,
)
from tests.support.rasters import scene_with_squares, write_geotiff


def _numeric_leaves(schema: dict[str, Any], defs: dict[str, Any], path: str) -> list:
    """(path, schema) of every number or integer in a JSON schema, lists' items included."""
    if "$ref" in schema:
        return _numeric_leaves(defs[schema["$ref"].split("/")[-1]], defs, path)
    out = []
    for branch in schema.get("anyOf", []):
        out += _numeric_leaves(branch, defs, path)
    if schema.get("type") in ("number", "integer"):
        out.append((path, schema))
    if schema.get("type") == "array":
        out += _numeric_leaves(schema["items"], defs, path + "[]")
    for name, prop in schema.get("properties", {}).items():
        out += _numeric_leaves(prop, defs, f"{path}.{name}")
    return out


@pytest.mark.parametrize(
    "model", [SegmentRequest, TrainRequest, ReasonerTrainRequest], ids=lambda m: m.__name__
)
def test_every_number_has_both_bounds_in_the_schema(model: type[BaseModel]) -> None:
    schema = model.model_json_schema()
    leaves = _numeric_leaves(schema, schema.get("$defs", {}), model.__name__)
    assert len(leaves) >= 8
    unbounded = [
        path
        for path, leaf in leaves
        if not ({"minimum", "exclusiveMinimum"} & set(leaf))
        or not ({"maximum", "exclusiveMaximum"} & set(leaf))
    ]
    assert unbounded == []


def test_query_and_bands_rules_are_in_the_schema() -> None:
    schema = SegmentRequest.model_json_schema()
    assert schema["properties"]["query"]["minLength"] == 1
    bands = next(b for b in schema["$defs"]["SegmentOptions"]["properties"]["bands"]["anyOf"]
                 if b.get("type") == "array")  # fmt: skip
    # Any number up to GeoTIFF's band limit: a raw-band model reads as many as it was trained
    # on; an image model's 1 or 3 are checked with the model known.
    assert (bands["minItems"], bands["maxItems"], bands["items"]["minimum"]) == (1, 65535, 1)


@pytest.mark.parametrize(
    ("build", "where"),
    [
        (lambda: SegmentOptions(resolution=1e-200), "resolution"),
        (lambda: SegmentOptions(resolution=1e300), "resolution"),
        (lambda: SegmentOptions(min_area=1e300), "min_area"),
        (lambda: SegmentOptions(bands=[1, 2, 70000]), "bands"),
        (lambda: Extent(xmin=-1e308, ymin=-1e308, xmax=1e308, ymax=1e308), "xmin"),
        (
            lambda: TrainRequest(raster="a.tif", labels="l.gpkg", class_field="c", name="m",
                                 seed=2**64),
            "seed",
        ),  # fmt: skip
    ],
)
def test_absurd_numbers_are_refused(build, where: str) -> None:
    with pytest.raises(ValidationError) as err:
        build()
    assert where in str(err.value)


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--resolution", "1e-200"], "resolution"),
        (["--extent", "-1e308", "-1e308", "1e308", "1e308"], "xmin"),
    ],
    ids=["resolution", "extent"],
)
def test_cli_refuses_absurd_numbers_without_a_traceback(
    tmp_path, capsys: pytest.CaptureFixture[str], flags: list[str], named: str
) -> None:
    raster = write_geotiff(tmp_path / "scene.tif", scene_with_squares())
    args = ["segment", str(raster), "-q", "bright", "--model", "index-baseline"]
    assert main([*args, "--out", str(tmp_path / "x.gpkg"), *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and named in err
    assert "Traceback" not in err and not list(tmp_path.glob("x.*"))
