"""Uploaded rasters on disk: where they go, how long they stay, whether GDAL reads them."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import uuid
import warnings
from pathlib import Path

from rs_reasoner.service.errors import ApiError

log = logging.getLogger(__name__)

#: Largest accepted upload.
MAX_UPLOAD_BYTES = 4 * 1024**3
#: Uploads kept on disk (least recently used dropped first, unless a job still needs them).
MAX_UPLOADS_KEPT = 32

_UPLOAD_ID = re.compile(r"^[0-9a-f]{32}$")


class UploadStore:
    """Uploaded rasters: ``<upload_dir>/<upload_id>.tif``, least recently used dropped.

    Attributes:
        directory: Where uploads are written (created if missing).
        max_kept: Uploads kept on disk.
        max_bytes: Largest accepted upload.
    """

    def __init__(
        self,
        directory: Path,
        max_kept: int = MAX_UPLOADS_KEPT,
        max_bytes: int = MAX_UPLOAD_BYTES,
    ) -> None:
        self.directory = directory
        self.max_kept = max_kept
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        directory.mkdir(parents=True, exist_ok=True)

    def new(self) -> tuple[str, Path, Path]:
        """A fresh id, the temporary path to stream into and the final path."""
        upload_id = uuid.uuid4().hex
        final = self.directory / f"{upload_id}.tif"
        return upload_id, final.with_suffix(".part"), final

    def path(self, upload_id: str) -> Path | None:
        """The file of an upload (marked as recently used), or None."""
        if not _UPLOAD_ID.match(upload_id):
            return None
        path = self.directory / f"{upload_id}.tif"
        with self._lock:
            try:
                os.utime(path)
            except OSError:
                return None
        return path

    def evict(self, keep: set[str]) -> None:
        """Delete the oldest uploads beyond ``max_kept``, except paths in ``keep``."""
        with self._lock:
            files = []
            for p in self.directory.glob("*.tif"):
                with contextlib.suppress(OSError):
                    files.append((p.stat().st_mtime, p))
            files.sort()
            excess = len(files) - self.max_kept
            for _, p in files:
                if excess <= 0:
                    break
                if str(p) in keep:
                    continue
                with contextlib.suppress(OSError):
                    p.unlink()
                    log.info("removed old upload %s", p.name)
                excess -= 1


def check_raster(path: Path) -> None:
    """Raise a 422 :class:`ApiError` unless GDAL reads ``path`` to its last pixel."""
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning
    from rasterio.windows import Window

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as ds:
                if ds.count < 1 or ds.width < 1 or ds.height < 1:
                    raise ApiError(422, "The uploaded raster has no pixels or no bands.")
                # Read the last pixel: catches files cut off during the upload.
                ds.read(1, window=Window(ds.width - 1, ds.height - 1, 1, 1))
    except ApiError:
        raise
    except Exception as exc:  # noqa: BLE001 - anything GDAL dislikes is a bad upload
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ApiError(
            422,
            f"The uploaded file is not a raster GDAL can read ({reason[:300]}).",
            "Upload a GeoTIFF (Content-Type: image/tiff), e.g. exported with "
            "'Save Raster Layer As' in QGIS.",
        ) from None
