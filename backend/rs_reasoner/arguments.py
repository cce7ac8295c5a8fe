"""Command-line flags made from the pydantic fields of :mod:`rs_reasoner.schemas`, so a
flag's default, type, choices and help are the field's (one definition for the CLI, the
HTTP API and the training code)."""

from __future__ import annotations

import argparse
import types
from enum import Enum
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from rs_reasoner.schemas import ServeOptions


def _without_none(annotation: Any) -> Any:
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _shown(value: Any) -> str:
    return str(value.value if isinstance(value, Enum) else value)


def field_help(info: FieldInfo, default: Any = None, extra: str = "") -> str:
    """The field's description (first letter lowered, as argparse help reads), ``extra``,
    and the default when there is one worth showing."""
    text = (info.description or "").rstrip(".")
    if text[1:2].islower():  # "Drop smaller…" → "drop smaller…", but "CRS of…" stays
        text = text[:1].lower() + text[1:]
    if extra:
        text = f"{text}; {extra}" if text else extra
    if default is not None and default is not False:
        text += f" (default: {_shown(default)})"
    return text


def add_field(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    model: type[BaseModel],
    name: str,
    *flags: str,
    extra_help: str = "",
    **kwargs: Any,
) -> argparse.Action:
    """Add the flag of ``model``'s field ``name``.

    Type, ``nargs`` (lists), choices (``Literal`` and enums), default and help come from
    the field; ``kwargs`` override them (e.g. ``required`` or a CLI-specific ``help``).

    Args:
        parser: Parser or argument group.
        model: Pydantic model holding the field.
        name: Field name (also the ``dest``).
        *flags: Option strings (default: ``--field-name``); one name without dashes
            makes a positional argument.
        extra_help: Appended to the field's description.
        **kwargs: ``add_argument`` keywords that win over the derived ones.

    Returns:
        The argparse action.
    """
    info = model.model_fields[name]
    flags = flags or ("--" + name.replace("_", "-"),)
    positional = len(flags) == 1 and not flags[0].startswith("-")
    default = None if info.is_required() else info.get_default(call_default_factory=True)
    annotation = _without_none(info.annotation)
    derived: dict[str, Any] = {}
    if annotation is bool:
        derived["action"] = "store_true"
    elif get_origin(annotation) is list:
        derived.update(nargs="+", type=get_args(annotation)[0])
    elif get_origin(annotation) is Literal:
        derived.update(choices=list(get_args(annotation)), type=str)
    elif isinstance(annotation, type) and issubclass(annotation, Enum):
        derived.update(choices=[m.value for m in annotation], type=str)
        default = default.value if isinstance(default, Enum) else default
    elif annotation in (int, float, str, Path):
        derived["type"] = annotation
    if not positional:
        derived["dest"] = name
        if not info.is_required():
            derived["default"] = default
    derived["help"] = field_help(info, default, extra_help)
    derived.update(kwargs)
    return parser.add_argument(*flags, **derived)


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``rs-reasoner serve`` (and ``python -m rs_reasoner.service.server``)."""
    add_field(parser, ServeOptions, "host")
    add_field(parser, ServeOptions, "port")
    add_field(parser, ServeOptions, "allow_remote")
    add_field(parser, ServeOptions, "state_file")
    add_field(parser, ServeOptions, "device")
    add_field(parser, ServeOptions, "job_time_limit")
    add_field(parser, ServeOptions, "train_time_limit")
    add_field(parser, ServeOptions, "max_queued_jobs")


def serve_options(args: argparse.Namespace) -> dict[str, Any]:
    """The :class:`ServeOptions` values among parsed ``args`` (keyword arguments of
    :func:`rs_reasoner.service.server.serve`).

    Raises:
        pydantic.ValidationError: A value out of its field's bounds (e.g. a port above
            65535), so it is reported before anything starts.
    """
    values = {name: getattr(args, name) for name in ServeOptions.model_fields}
    ServeOptions(**values)
    return values
