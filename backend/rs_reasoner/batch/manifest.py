"""The batch manifest: every work unit, its status, attempts, output part and timing.

It lives in ``<out>/manifest.json`` and is rewritten atomically (never half-written). A
unit's part file is written, atomically, before the manifest marks the unit ``done``; so
after a crash at any point a unit is either done with its part on disk or is run again and
its part (named after the unit) replaced — never written twice, never lost.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rs_reasoner.atomic import write_text_atomic
from rs_reasoner.batch.units import SourcePlan
from rs_reasoner.errors import InvalidRequestError

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1

#: Unit states. ``running`` is only ever seen in a manifest left by a killed driver.
PENDING, RUNNING, DONE, FAILED = "pending", "running", "done", "failed"

#: Shortest time between two rewrites while units complete (a rewrite costs O(units)).
SAVE_INTERVAL_S = 1.0


@dataclass
class Unit:
    """One work unit.

    Attributes:
        id: Stable name, also the part file's stem.
        source: Index into the manifest's sources.
        window: (row0, col0, row1, col1) on the source's working grid.
        status: pending, running, done or failed.
        attempts: Times it was handed to an executor.
        part: Part file (relative to the output folder) once done.
        seconds: Wall time of the attempt that finished it.
        stages: Seconds per stage (read, segment, vectorise, write) of that attempt.
        error: Why the last attempt failed.
    """

    id: str
    source: int
    window: list[int]
    status: str = PENDING
    attempts: int = 0
    part: str | None = None
    seconds: float | None = None
    stages: dict[str, float] = field(default_factory=dict)
    error: str | None = None

    @property
    def pixels(self) -> int:
        r0, c0, r1, c1 = self.window
        return (r1 - r0) * (c1 - c0)


@dataclass
class Manifest:
    """The state of one batch (see the module docstring).

    Attributes:
        folder: The output folder.
        config: What the batch computes (query, model, options, inputs, output CRS); a
            rerun must match it.
        sources: The planned sources.
        units: All units.
        merged: True once the seams are merged and the final outputs written.
    """

    folder: Path
    config: dict[str, Any]
    sources: list[SourcePlan]
    units: list[Unit]
    merged: bool = False
    _saved_at: float = 0.0

    @property
    def path(self) -> Path:
        return self.folder / MANIFEST_NAME

    def save(self, force: bool = True) -> None:
        """Rewrite the file atomically (when ``force`` or the interval has passed)."""
        now = time.monotonic()
        if not force and now - self._saved_at < SAVE_INTERVAL_S:
            return
        data = {
            "version": FORMAT_VERSION,
            "config": self.config,
            "sources": [asdict(s) for s in self.sources],
            "units": [asdict(u) for u in self.units],
            "merged": self.merged,
        }
        write_text_atomic(self.path, json.dumps(data, indent=1))
        self._saved_at = now

    @classmethod
    def load(cls, folder: str | Path) -> Manifest | None:
        """The manifest in ``folder``, or None when there is none."""
        path = Path(folder) / MANIFEST_NAME
        if not path.exists():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("version") != FORMAT_VERSION:
                raise ValueError(f"format version {data.get('version')}")
            return cls(
                folder=Path(folder),
                config=data["config"],
                sources=[SourcePlan(**s) for s in data["sources"]],
                units=[Unit(**u) for u in data["units"]],
                merged=bool(data["merged"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidRequestError(
                f"{path} is not a batch manifest this version can read ({exc}).",
                "Use another output folder, or delete it to start over.",
            ) from None

    def check_config(self, config: dict[str, Any]) -> None:
        """Refuse to resume a batch that computes something else.

        Raises:
            InvalidRequestError: Naming the settings that differ.
        """
        differ = sorted(k for k in set(config) | set(self.config)
                        if config.get(k) != self.config.get(k))  # fmt: skip
        if differ:
            raise InvalidRequestError(
                f"{self.folder} holds a batch run with other settings ({', '.join(differ)}).",
                "Rerun with the same arguments to resume it, or choose another --out folder.",
            )

    def todo(self) -> list[Unit]:
        """Units still to run (pending, failed, or running when a driver died)."""
        return [u for u in self.units if u.status != DONE]

    def counts(self) -> dict[str, int]:
        """Units per status."""
        out = {PENDING: 0, RUNNING: 0, DONE: 0, FAILED: 0}
        for u in self.units:
            out[u.status] += 1
        return out

    def status_text(self) -> str:
        """A few lines for ``rs-reasoner batch --status``."""
        c = self.counts()
        total = len(self.units)
        done_px = sum(u.pixels for u in self.units if u.status == DONE)
        all_px = sum(u.pixels for u in self.units) or 1
        lines = [
            f"{self.folder}: {c[DONE]}/{total} units done ({100 * done_px / all_px:.1f} % of "
            f"pixels), {c[PENDING] + c[RUNNING]} to do, {c[FAILED]} failed; "
            + ("merged." if self.merged else "not merged yet."),
            f"query {self.config.get('query')!r}, model {self.config.get('model')}",
        ]
        for u in self.units:
            if u.status == FAILED:
                lines.append(f"failed {u.id} after {u.attempts} attempt(s): {u.error}")
        return "\n".join(lines)
