"""How to teach the reasoning prompter (``POST /train`` with ``kind: reasoner``).

Options left as None are not sent: the backend's trainer holds their defaults (the
published Think2Seg-RS run's where known), so the plugin keeps no copy of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: SAM 2.1 variants the backend knows (None: the reasoning model's).
SAM_VARIANTS = ("tiny", "small", "base_plus", "large")


@dataclass
class ReasonerParams:
    """The ``POST /train`` body of a reasoner run without the examples and raster.

    Attributes:
        name: Name of the fine-tuned model (the same name again resumes it).
        query_field: Field holding each polygon's question (or give ``query``).
        query: One question answered by every polygon (or give ``query_field``).
        steps: GRPO optimizer steps (None: the trainer's default).
        group_size: Completions sampled per example (None: the trainer's default).
        time_budget_s: Stop after this many seconds (None: no limit).
        base_prompter: Prompter weights name or local snapshot folder (None: built-in).
        sam_variant: SAM 2.1 variant of the reward (None: the reasoning model's).
        sam_checkpoint: A local SAM 2.1 checkpoint (None: the cached weights).
    """

    name: str
    query_field: str | None = None
    query: str | None = None
    steps: int | None = None
    group_size: int | None = None
    time_budget_s: float | None = None
    base_prompter: str | None = None
    sam_variant: str | None = None
    sam_checkpoint: str | None = None

    def to_request(
        self,
        examples: str,
        layer: str | None = None,
        raster: str | None = None,
        upload_id: str | None = None,
    ) -> dict[str, Any]:
        """The JSON body of ``POST /train``.

        Args:
            examples: Path of the examples layer's file.
            layer: Layer inside ``examples`` (GeoPackage), or None.
            raster: Raster path (or give ``upload_id``).
            upload_id: Id of an uploaded raster (or give ``raster``).
        """
        req: dict[str, Any] = {"kind": "reasoner", "examples": examples, "name": self.name}
        optional = {
            "layer": layer, "raster": raster, "upload_id": upload_id,
            "query_field": None if self.query else self.query_field, "query": self.query,
            "steps": self.steps, "group_size": self.group_size,
            "time_budget_s": self.time_budget_s, "base_prompter": self.base_prompter,
            "sam_variant": self.sam_variant, "sam_checkpoint": self.sam_checkpoint,
        }  # fmt: skip
        req.update({k: v for k, v in optional.items() if v not in (None, "")})
        return req
