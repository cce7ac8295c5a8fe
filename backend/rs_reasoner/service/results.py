"""Results of segmentation jobs, kept on disk instead of in memory.

Each result is the GeoJSON the client downloads, written once when its job succeeds
(``<job id>.geojson``) and streamed from the file on request, so the backend's memory
does not grow with the number or size of results kept. The folder is bounded in bytes:
beyond the limit the oldest results are deleted (their jobs answer 410 Gone).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, BinaryIO

log = logging.getLogger(__name__)


class ResultStore:
    """GeoJSON results in a folder, the oldest dropped beyond ``max_bytes``.

    Args:
        directory: Where results go (created); None: a temporary folder removed by
            :meth:`close`.
        max_bytes: Total size kept; the newest result is kept even when larger.
    """

    def __init__(self, directory: Path | None, max_bytes: int) -> None:
        self._owned = directory is None
        if directory is None:
            directory = Path(tempfile.mkdtemp(prefix="rs-reasoner-results-"))
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self._sizes: OrderedDict[str, int] = OrderedDict()  # oldest first
        self._lock = threading.Lock()

    def _path(self, job_id: str) -> Path:
        return self.directory / f"{job_id}.geojson"

    def write(self, job_id: str, collection: dict[str, Any]) -> int:
        """Store a job's FeatureCollection; returns its size in bytes.

        Written to a temporary name and renamed, so a reader never sees half a result.
        """
        path = self._path(job_id)
        part = path.with_suffix(".part")
        try:
            with open(part, "w", encoding="utf-8") as fh:
                json.dump(collection, fh, ensure_ascii=False, separators=(",", ":"))
            os.replace(part, path)
        finally:
            with contextlib.suppress(OSError):
                part.unlink()
        size = path.stat().st_size
        with self._lock:
            self._sizes[job_id] = size
            self._evict_locked(keep=job_id)
        return size

    def open(self, job_id: str) -> BinaryIO | None:
        """The stored result opened for reading, or None when there is none (any more).

        The open file stays readable even if the result is evicted meanwhile (POSIX).
        """
        with self._lock:
            if job_id not in self._sizes:
                return None
            try:
                return open(self._path(job_id), "rb")  # noqa: SIM115 - the caller closes it
            except OSError:
                return None

    def remove(self, job_id: str) -> None:
        """Delete a job's result (the job left memory)."""
        with self._lock:
            if self._sizes.pop(job_id, None) is not None:
                self._unlink(job_id)

    def total_bytes(self) -> int:
        """Bytes of results on disk."""
        with self._lock:
            return sum(self._sizes.values())

    def close(self) -> None:
        """Delete every result (and the folder, when the store made it)."""
        with self._lock:
            for job_id in list(self._sizes):
                self._unlink(job_id)
            self._sizes.clear()
        if self._owned:
            shutil.rmtree(self.directory, ignore_errors=True)

    def _evict_locked(self, keep: str) -> None:
        total = sum(self._sizes.values())
        for job_id in list(self._sizes):
            if total <= self.max_bytes:
                break
            if job_id == keep:
                continue
            total -= self._sizes.pop(job_id)
            self._unlink(job_id)
            log.info("result of job %s removed: results are kept under %d bytes", job_id,
                     self.max_bytes)

    def _unlink(self, job_id: str) -> None:
        with contextlib.suppress(OSError):
            self._path(job_id).unlink()
