"""The plan of a training run in words: what ``rs-reasoner train`` prints before training.

From the summary of the prepared :class:`~rs_reasoner_training.data.dataset.TrainingData`:
parcels (or images) and tiles per role, the tile size and why it was chosen, classes with
no validation pixels (their IoU cannot be measured), and the data notes (parcels left out,
reprojections).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: The summary entries a model records as its plan (``model.json``'s ``plan``).
PLAN_KEYS = (
    "source", "tile_size", "tile_size_asked", "parcels", "images", "tiles",
    "classes_without_validation", "val_images", "example_image",
)  # fmt: skip


def _roles(counts: Mapping[str, int], *extra: str) -> str:
    names = ("train", "val", *extra, "unlabelled")
    shown = {"train": "training", "val": "validation", "left_out": "left out by the label "
             "budget"}  # fmt: skip
    return ", ".join(f"{counts.get(k, 0)} {shown.get(k, k)}" for k in names if k in counts)


def plan_lines(summary: Mapping[str, Any]) -> list[str]:
    """The plan as lines (see the module docstring)."""
    lines = []
    tiles = summary.get("tiles") or {}
    size = summary.get("tile_size")
    if summary.get("parcels"):
        lines.append(f"plan: parcels {_roles(summary['parcels'], 'left_out')}")
    elif summary.get("images"):
        lines.append(f"plan: images {_roles(summary['images'])}")
    if tiles:
        lines.append(f"plan: tiles of {size} px: {_roles(tiles)}")
    notes = [str(n) for n in summary.get("notes") or []]
    lines += [f"plan: {n}" for n in notes if n.startswith("tiles of ")]
    missing = summary.get("classes_without_validation") or []
    if missing:
        lines.append(
            f"plan: classes absent from validation (their IoU is not measured): "
            f"{', '.join(missing)}"
        )
    lines += [n for n in notes if not n.startswith("tiles of ")]
    return lines


def plan_record(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The plan entries of a summary, for ``model.json``."""
    return {k: summary[k] for k in PLAN_KEYS if k in summary}
