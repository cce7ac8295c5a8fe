"""Weight downloads of the service, each in a thread of its own.

Downloads are network-bound, so they do not wait in the job queue behind segmentations
(:mod:`.jobs`); one download per model at a time, each followed by ``GET /pulls/{id}``
and stopped by ``DELETE /pulls/{id}``.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from rs_reasoner import weight_files
from rs_reasoner.errors import JobCancelled, RsReasonerError
from rs_reasoner.weights import WeightSpec

#: Finished downloads kept for their status.
MAX_KEPT = 50


@dataclass(eq=False)
class Pull:
    """One model's download (read it through :meth:`to_dict`)."""

    id: str
    model: str
    specs: tuple[WeightSpec, ...]
    status: str = "queued"  # queued → running → succeeded / failed / cancelled
    done_bytes: int = 0
    total_bytes: int | None = None
    current: str = ""
    error: dict[str, str | None] | None = None
    created: float = field(default_factory=time.time)
    finished: float | None = None
    cancel_event: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def running(self) -> bool:
        return self.status in ("queued", "running")

    def to_dict(self) -> dict[str, Any]:
        with self._lock:
            total = self.total_bytes
            progress = 1.0 if self.status == "succeeded" else (
                min(self.done_bytes / total, 1.0) if total else 0.0)
            return {
                "id": self.id,
                "model": self.model,
                "status": self.status,
                "progress": round(progress, 4),
                "done_bytes": self.done_bytes,
                "total_bytes": total,
                "current_file": self.current,
                "error": dict(self.error) if self.error else None,
                "cancel_requested": self.cancel_event.is_set(),
            }


class PullManager:
    """Starts, follows and cancels downloads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pulls: OrderedDict[str, Pull] = OrderedDict()

    def start(self, model: str, specs: tuple[WeightSpec, ...], token: str | None) -> Pull:
        """Start downloading ``specs`` for ``model`` (the running download if there is one)."""
        with self._lock:
            for pull in self._pulls.values():
                if pull.model == model and pull.running:
                    return pull
            pull = Pull(id=uuid.uuid4().hex, model=model, specs=specs)
            self._pulls[pull.id] = pull
            self._forget_old()
        thread = threading.Thread(target=self._run, args=(pull, token), daemon=True,
                                  name=f"pull-{model}")
        thread.start()
        return pull

    def get(self, pull_id: str) -> Pull | None:
        with self._lock:
            return self._pulls.get(pull_id)

    def running_for(self, model_specs: tuple[WeightSpec, ...]) -> Pull | None:
        """A running download of any of these weights."""
        repos = {s.repo_id for s in model_specs}
        with self._lock:
            for pull in self._pulls.values():
                if pull.running and repos & {s.repo_id for s in pull.specs}:
                    return pull
        return None

    def _forget_old(self) -> None:
        done = [k for k, p in self._pulls.items() if not p.running]
        for key in done[: max(0, len(self._pulls) - MAX_KEPT)]:
            del self._pulls[key]

    @staticmethod
    def _run(pull: Pull, token: str | None) -> None:
        with pull._lock:
            pull.status = "running"
        offsets = [0]

        def progress(done: int, total: int | None, current: str) -> None:
            with pull._lock:
                pull.done_bytes = offsets[0] + done
                pull.current = current

        try:
            # The total is known before any byte comes: ask the Hub for every set first.
            infos = [weight_files.hub_info(s, token) for s in pull.specs]
            sizes = [i.size for i in infos]
            with pull._lock:
                pull.total_bytes = None if None in sizes else sum(s or 0 for s in sizes)
            for spec, size in zip(pull.specs, sizes, strict=True):
                weight_files.download(spec, token, progress, pull.cancel_event)
                offsets[0] += size or 0
            status, error = "succeeded", None
        except JobCancelled:
            status, error = "cancelled", None
        except RsReasonerError as exc:
            status, error = "failed", {"detail": exc.message, "hint": exc.hint}
        except Exception as exc:  # noqa: BLE001 - a download thread must always end its record
            status, error = "failed", {"detail": f"{type(exc).__name__}: {exc}", "hint": None}
        with pull._lock:
            pull.status = status
            pull.error = error
            pull.finished = time.time()
