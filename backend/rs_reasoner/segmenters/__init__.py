"""Segmenters: the model interface, the registry, and the implementations."""

from rs_reasoner.segmenters.base import SegmentationQuery, Segmenter, TileResult
from rs_reasoner.segmenters.registry import (
    ModelSpec,
    create,
    default_for,
    get_spec,
    register,
    specs,
)

__all__ = [
    "ModelSpec",
    "SegmentationQuery",
    "Segmenter",
    "TileResult",
    "create",
    "default_for",
    "get_spec",
    "register",
    "specs",
]
