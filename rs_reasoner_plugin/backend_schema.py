"""What the running backend's requests take, read from its ``/openapi.json``: the
trainers ``POST /train`` offers (its ``model`` field) and whether segmentation takes
land-cover maps to fuse (``fuse_land_cover``).

Read rather than assumed so the plugin offers exactly what the backend it talks to
trains, and sends no field an older backend would refuse.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from typing import Any

from qgis.core import QgsTask
from qgis.PyQt.QtCore import pyqtSignal

from .api_client import BackendError
from .tasks import BackendConfig

#: The train request's model field, and the segment option that fuses land-cover maps.
MODEL_FIELD = "model"
FUSE_FIELD = "fuse_land_cover"


@dataclass(frozen=True)
class BackendSchema:
    """The parts of the backend's request schemas the plugin adapts to.

    Attributes:
        trainers: The values of ``TrainRequest.model`` in the backend's order (empty
            when the backend takes no model choice).
        default_trainer: Its default, or None.
        train_fields: Every field of ``TrainRequest``.
        segment_options: Every field of ``SegmentOptions``.
    """

    trainers: tuple[str, ...] = ()
    default_trainer: str | None = None
    train_fields: frozenset[str] = frozenset()
    segment_options: frozenset[str] = frozenset()

    @property
    def fuses_land_cover(self) -> bool:
        """Whether segmentation takes land-cover maps to fuse with a trained model."""
        return FUSE_FIELD in self.segment_options


def _resolve(doc: dict[str, Any], node: Any) -> dict[str, Any]:
    """``node`` with a ``$ref`` into ``components/schemas`` followed."""
    if isinstance(node, dict) and isinstance(node.get("$ref"), str):
        name = node["$ref"].rsplit("/", 1)[-1]
        return dict(doc.get("components", {}).get("schemas", {}).get(name, {}))
    return node if isinstance(node, dict) else {}


def _enum(doc: dict[str, Any], node: Any) -> list[str]:
    """The string values a field allows (``enum``, ``const``, or inside ``anyOf``)."""
    node = _resolve(doc, node)
    if "enum" in node:
        return [str(v) for v in node["enum"] if v is not None]
    if "const" in node:
        return [str(node["const"])]
    out: list[str] = []
    for option in node.get("anyOf", []) + node.get("oneOf", []):
        out += [v for v in _enum(doc, option) if v not in out]
    return out


def read_schema(doc: dict[str, Any]) -> BackendSchema:
    """The :class:`BackendSchema` of an OpenAPI document (missing parts: empty)."""
    schemas = doc.get("components", {}).get("schemas", {})
    train = _resolve(doc, schemas.get("TrainRequest", {})).get("properties", {})
    options = _resolve(doc, schemas.get("SegmentOptions", {})).get("properties", {})
    model = train.get(MODEL_FIELD)
    trainers = tuple(_enum(doc, model)) if model is not None else ()
    default = model.get("default") if isinstance(model, dict) else None
    return BackendSchema(
        trainers=trainers,
        default_trainer=str(default) if default is not None else None,
        train_fields=frozenset(train),
        segment_options=frozenset(options),
    )


class BackendSchemaTask(QgsTask):
    """Reads the backend's schema (no auto-start); emits ``schemaReady`` on the GUI thread
    with a :class:`BackendSchema`, or None when no backend answered."""

    schemaReady = pyqtSignal(object)

    def __init__(self, backend: BackendConfig) -> None:
        super().__init__("RS Reasoner: backend options", QgsTask.CanCancel)
        self.backend = dataclasses.replace(backend, auto_start=False)
        self.schema: BackendSchema | None = None

    def run(self) -> bool:
        with contextlib.suppress(BackendError):
            client, _health = self.backend.connect(self.isCanceled)
            self.schema = read_schema(client.openapi())
        return self.schema is not None

    def finished(self, result: bool) -> None:  # noqa: ARG002
        self.schemaReady.emit(self.schema)
