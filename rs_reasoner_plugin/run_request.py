"""The user's choices → the segmentation request: one rule for the dock and the Processing
algorithm (pure Python, no Qt), so both send the same request for the same choices."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from .params import (
    Extent,
    SegmentOptions,
    SegmentParams,
    auto_min_area,
    auto_simplify,
    defaults,
    parse_bands,
)

_OPTION_DEFAULTS = defaults(SegmentOptions)


class ChoiceError(ValueError):
    """A choice the backend cannot take; the message says what to change."""


@dataclass
class RunChoices:
    """What the user chose, as the widgets or parameters hold it.

    Attributes:
        query: Class names or a sentence, as typed.
        mode: ``auto``, ``reasoning`` or ``open_vocabulary``.
        model: Model chosen or typed; '' for the mode's default.
        bands: Band numbers as typed ("4 3 2"); '' for the backend's choice.
        resolution: Ground resolution; 0 for the raster's own.
        score_threshold, min_area, simplify: See :class:`~.params.SegmentOptions`;
            ``min_area`` and ``simplify`` None: derived from the ground resolution
            (:func:`~.params.auto_min_area`, :func:`~.params.auto_simplify`).
        tile_size: Tile edge; 0 for the backend's default.
        fuse_land_cover: Land-cover maps to fuse with a trained model's scores
            (``RASTER[:LEGEND][:MAPPING.csv]``); empty for none.
    """

    query: str
    mode: str = "auto"
    model: str = ""
    bands: str = ""
    resolution: float = 0.0
    score_threshold: float = _OPTION_DEFAULTS["score_threshold"]
    min_area: float | None = _OPTION_DEFAULTS["min_area"]
    simplify: float | None = _OPTION_DEFAULTS["simplify"]
    tile_size: int = 0
    fuse_land_cover: list[str] = field(default_factory=list)


@dataclass
class BuiltRequest:
    """The request, and how the raster reaches the backend.

    Attributes:
        params: Query, mode, model, extent and options.
        export_resolution: For rasters the backend cannot open by path: the resolution to
            export the area at (None: none known; the export then says what to set).
            None too when the backend reads the file itself.
    """

    params: SegmentParams
    export_resolution: float | None = None


def build_request(
    choices: RunChoices,
    *,
    by_path: bool,
    extent: Extent | None = None,
    default_models: Mapping[str, str] | None = None,
    native_resolution: float | None = None,
    view_resolution: float | None = None,
) -> BuiltRequest:
    """Turn ``choices`` into the request the backend runs.

    Args:
        choices: The user's choices.
        by_path: The backend opens the raster's file itself; otherwise the area is
            exported at :attr:`BuiltRequest.export_resolution` and uploaded (then the
            export covers the extent and applies the resolution, so neither is sent).
        extent: Area in the raster's CRS; None for the whole raster.
        default_models: Model per mode when none is chosen (the plugin's settings).
        native_resolution: The layer's own resolution, None for web and tile services.
        view_resolution: The map view's resolution: the last resort of the export of a
            layer without a native one (Processing has no view).

    Returns:
        The request.

    Raises:
        ChoiceError: The query is empty or the bands are not 1 or 3 numbers.
    """
    query = choices.query.strip()
    if not query:
        raise ChoiceError("Type what to segment in the query box, e.g. 'buildings, water'.")
    try:
        bands = parse_bands(choices.bands)
    except ValueError as exc:
        raise ChoiceError(str(exc)) from None
    mode = choices.mode or "auto"
    model = choices.model.strip() or (default_models or {}).get(mode, "")
    resolution = choices.resolution or None
    ground = resolution or native_resolution or view_resolution
    min_area, simplify = choices.min_area, choices.simplify
    if min_area is None:
        min_area = auto_min_area(ground) if ground else _OPTION_DEFAULTS["min_area"]
    if simplify is None:
        simplify = auto_simplify(ground) if ground else _OPTION_DEFAULTS["simplify"]
    options = SegmentOptions(
        bands=bands,
        resolution=resolution if by_path else None,
        score_threshold=choices.score_threshold,
        min_area=min_area,
        simplify=simplify,
        tile_size=choices.tile_size or None,
        fuse_land_cover=list(choices.fuse_land_cover) or None,
    )
    params = SegmentParams(
        query=query, mode=mode, model=model or None, extent=extent if by_path else None,
        options=options,
    )
    if by_path:
        return BuiltRequest(params)
    return BuiltRequest(params, resolution or native_resolution or view_resolution)
