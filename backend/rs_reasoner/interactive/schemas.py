"""Requests of the click-to-segment endpoints (``/interactive/sessions``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from rs_reasoner.schemas import MAX_COORDINATE, Extent

#: Clicks one prompt may carry (SAM gets them all at once).
MAX_POINTS = 64


class SessionRequest(BaseModel):
    """Body of ``POST /interactive/sessions``: the extent whose embedding the clicks use.

    Its ``extent.crs`` is the CRS of every later click and of the polygons returned (the
    map canvas's CRS, typically); None means the raster's own CRS.
    """

    model_config = ConfigDict(extra="forbid")

    raster: str | None = Field(None, description="Path of a raster GDAL can open.")
    upload_id: str | None = Field(None, description="Id returned by POST /uploads.")
    extent: Extent = Field(description="The area shown on the map (any CRS).")
    bands: list[int] | None = Field(
        None, min_length=1, max_length=3,
        description="1-based bands read as R,G,B (1 or 3); default as for jobs.",
    )

    @model_validator(mode="after")
    def _one_source(self) -> SessionRequest:
        if (self.raster is None) == (self.upload_id is None):
            raise ValueError("give exactly one of 'raster' (a path) or 'upload_id'")
        if self.bands is not None and len(self.bands) == 2:
            raise ValueError("bands: give 1 or 3 band numbers")
        return self


class ClickPoint(BaseModel):
    """A click: inside the object (``positive``) or outside it."""

    model_config = ConfigDict(extra="forbid")

    x: float = Field(ge=-MAX_COORDINATE, le=MAX_COORDINATE)
    y: float = Field(ge=-MAX_COORDINATE, le=MAX_COORDINATE)
    positive: bool = True


class PromptRequest(BaseModel):
    """Body of ``POST /interactive/sessions/{id}/prompt``: every click so far and at most
    one box, in the session's CRS (SAM sees them together; the answer does not depend on
    earlier prompts)."""

    model_config = ConfigDict(extra="forbid")

    points: list[ClickPoint] = Field(default_factory=list, max_length=MAX_POINTS)
    box: tuple[float, float, float, float] | None = Field(
        None, description="xmin, ymin, xmax, ymax in the session's CRS."
    )

    @model_validator(mode="after")
    def _something(self) -> PromptRequest:
        if not self.points and self.box is None:
            raise ValueError("give at least one point or a box")
        if self.points and not any(p.positive for p in self.points) and self.box is None:
            raise ValueError("give at least one positive point (inside the object) or a box")
        if self.box is not None:
            x0, y0, x1, y1 = self.box
            vals = (x0, y0, x1, y1)
            if any(v != v or abs(v) > MAX_COORDINATE for v in vals):
                raise ValueError("box coordinates must be finite map coordinates")
            if not (x1 > x0 and y1 > y0):
                raise ValueError("box must have xmax > xmin and ymax > ymin")
        return self
