"""Which layer of a user's vector file to read, with errors that say what to fix."""

from __future__ import annotations

import os
from pathlib import Path

from rs_reasoner.errors import InvalidRequestError


def unreadable_layer_error(
    path: str | os.PathLike[str],
    what: str,
    exc: BaseException,
    error: type[InvalidRequestError] = InvalidRequestError,
) -> InvalidRequestError:
    """The error for a vector file GDAL cannot read (first line of its message only).

    Args:
        path: The vector file.
        what: How the layer is named in the message ("label layer", ...).
        exc: What GDAL/pyogrio raised.
        error: The error class to build.

    Returns:
        The error, ready to raise.
    """
    text = str(exc).strip()
    reason = text.splitlines()[0][:300] if text else type(exc).__name__
    return error(
        f"Cannot read the {what} {path}: {reason}",
        "Give a vector file GDAL can read (GeoPackage, Shapefile, GeoJSON).",
    )


def check_layer_choice(
    path: str | os.PathLike[str],
    layer: str | None,
    what: str = "label layer",
    error: type[InvalidRequestError] = InvalidRequestError,
) -> None:
    """The file exists and ``layer`` names one of its layers, or it has only one.

    Reads only the file's layer list, so it is cheap enough to check a request up front.

    Args:
        path: A GeoPackage, Shapefile, GeoJSON, ... file.
        layer: The layer asked for; None when the file should hold a single layer.
        what: How the layer is named in messages.
        error: The error class to raise (a subclass of InvalidRequestError).

    Raises:
        InvalidRequestError: (or ``error``) a missing or unreadable file, a layer that is
            not there, or several layers and none chosen; the message lists the layers.
    """
    import pyogrio

    if not Path(path).exists():
        raise error(
            f"The {what} does not exist: {path}",
            "Give the path of a GeoPackage, Shapefile or GeoJSON with polygons.",
        )
    try:
        layers = [str(row[0]) for row in pyogrio.list_layers(path)]
    except Exception as exc:  # GDAL raises many types; all mean "cannot read"
        raise unreadable_layer_error(path, what, exc, error) from None
    if layer is None and len(layers) > 1:
        raise error(
            f"{path} holds {len(layers)} layers: {', '.join(layers)}.",
            "Say which one to use (--layer on the command line, 'layer' in a request).",
        )
    if layer is not None and layer not in layers:
        raise error(
            f"{path} has no layer {layer!r}; it has: {', '.join(layers)}.",
            "Choose one of these layers.",
        )


def check_field_choice(
    fields: list[str],
    field: str,
    error: type[InvalidRequestError] = InvalidRequestError,
) -> None:
    """The layer has ``field``; otherwise an error listing its fields (and a near miss).

    Args:
        fields: The layer's attribute fields.
        field: The field asked for (e.g. the class field).
        error: The error class to raise (a subclass of InvalidRequestError).

    Raises:
        InvalidRequestError: (or ``error``) ``field`` is not among ``fields``; the hint
            names a field that differs only in case.
    """
    if field in fields:
        return
    close = [f for f in fields if f.lower() == field.lower()]
    raise error(
        f"The label layer has no field {field!r}. Available fields: "
        f"{', '.join(fields) if fields else '(none)'}.",
        f"Did you mean {close[0]!r}?" if close else "Choose the field that holds the class.",
    )


__all__ = ["check_field_choice", "check_layer_choice", "unreadable_layer_error"]


#: Geometry types that cannot answer "which pixels": labels and examples must be polygons.
_NOT_POLYGONS = {"Point", "MultiPoint", "LineString", "MultiLineString"}


def polygon_layer_info(path: str, layer: str | None, role: str, empty_hint: str) -> dict:
    """The metadata of a user's polygon layer (pyogrio's ``read_info``), after checking
    that the layer is there, readable, not empty and of polygons; reads no features.

    Args:
        path: The vector file.
        layer: Its layer (None: the only one).
        role: What the layer is, for messages ("label layer", "examples layer").
        empty_hint: What to do when the layer has no features.

    Raises:
        InvalidRequestError: What is wrong, with the layers to choose from.
    """
    import pyogrio

    check_layer_choice(path, layer, role)
    try:
        info = pyogrio.read_info(path, layer=layer)
    except Exception as exc:  # GDAL raises many types; all mean "cannot read"
        raise unreadable_layer_error(path, role, exc) from None
    if info.get("features") == 0:
        raise InvalidRequestError(f"The {role} {path} has no features.", empty_hint)
    if str(info.get("geometry_type")) in _NOT_POLYGONS:
        raise InvalidRequestError(
            f"Features of the {role} must be polygons; {path} has {info['geometry_type']} "
            "geometries.",
            "Convert them to polygons (e.g. buffer points or lines in QGIS).",
        )
    return info
