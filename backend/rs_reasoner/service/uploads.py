"""Uploaded rasters on disk: what is accepted, how much disk they may take, how long they stay.

Policy (docs/reliability.md repeats it): only TIFF/BigTIFF bytes are accepted (checked on
the first bytes, so a VRT or any other GDAL format that could name local files or devices
is refused before it is written); one upload is at most :attr:`UploadLimits.max_bytes`;
all uploads together, kept and being received, at most :attr:`UploadLimits.store_bytes`
and never fill the disk past :attr:`UploadLimits.min_free_bytes` (the least recently used
uploads no queued or running job needs are deleted to make room, else HTTP 507); a body
that stalls or trickles is cut off (HTTP 408).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import threading
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path

from rs_reasoner.service.errors import ApiError

log = logging.getLogger(__name__)

#: The first bytes of a TIFF (little- and big-endian) and of a BigTIFF.
TIFF_SIGNATURES = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
SIGNATURE_BYTES = 4

_UPLOAD_ID = re.compile(r"^[0-9a-f]{32}$")
_GIB = 1024**3


@dataclass(frozen=True)
class UploadLimits:
    """How much the uploads may take, and how slow a body may be.

    Attributes:
        max_bytes: Largest upload (413 beyond).
        max_kept: Uploads kept on disk; the least recently used beyond are deleted.
        store_bytes: All uploads together, kept and being received (507 when the
            uploads that jobs still need leave no room).
        min_free_bytes: Free disk space the uploads always leave (507 otherwise).
        idle_timeout_s: A body that sends nothing for this long is refused (408).
        min_bytes_per_s: After ``grace_s``, a body slower than this on average is
            refused (408): a trickle of a byte a second would hold its slot for years.
        grace_s: Time before the average rate is judged.
    """

    max_bytes: int = 4 * _GIB
    max_kept: int = 32
    store_bytes: int = 16 * _GIB
    min_free_bytes: int = 1 * _GIB
    idle_timeout_s: float = 30.0
    min_bytes_per_s: int = 256 * 1024
    grace_s: float = 30.0


#: The defaults, by name (the plugin's hints and the tests name them).
MAX_UPLOAD_BYTES = UploadLimits.max_bytes
MAX_UPLOADS_KEPT = UploadLimits.max_kept


def _gib(n: float) -> str:
    return f"{n / _GIB:.3g} GiB"


class UploadStore:
    """Uploaded rasters: ``<upload_dir>/<upload_id>.tif``, least recently used dropped.

    Attributes:
        directory: Where uploads are written (created if missing).
        limits: Sizes, counts and timeouts.
    """

    def __init__(self, directory: Path, limits: UploadLimits | None = None) -> None:
        self.directory = directory
        self.limits = limits if limits is not None else UploadLimits()
        self._lock = threading.Lock()
        self._receiving: dict[str, int] = {}  # upload id → bytes reserved while receiving
        directory.mkdir(parents=True, exist_ok=True)

    @property
    def max_kept(self) -> int:
        return self.limits.max_kept

    @property
    def max_bytes(self) -> int:
        return self.limits.max_bytes

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

    def _kept(self) -> list[tuple[float, Path, int]]:
        """Kept uploads as (last used, path, bytes), least recently used first."""
        files = []
        for p in self.directory.glob("*.tif"):
            with contextlib.suppress(OSError):
                st = p.stat()
                files.append((st.st_mtime, p, st.st_size))
        files.sort()
        return files

    def reserve(self, upload_id: str, nbytes: int, keep: set[str]) -> None:
        """Make room for ``nbytes`` more of an upload being received.

        The least recently used uploads not in ``keep`` (paths that queued or running
        jobs read) are deleted as needed.

        Raises:
            ApiError: 507 when the store limit or the disk's free space leaves no room.
        """
        limits = self.limits
        with self._lock:
            wanted = self._receiving.get(upload_id, 0) + nbytes
            others = sum(n for k, n in self._receiving.items() if k != upload_id)
            kept = self._kept()
            used = others + wanted + sum(size for _, _, size in kept)
            for _, p, size in kept:
                if used <= limits.store_bytes:
                    break
                if str(p) not in keep:
                    self._delete(p)
                    used -= size
            if used > limits.store_bytes:
                raise ApiError(
                    507,
                    f"No room for this upload: uploads are limited to "
                    f"{_gib(limits.store_bytes)} in all, and {_gib(used - wanted)} are in use "
                    "(needed by queued or running jobs, or still being received).",
                    "Wait for those jobs to finish, or give the raster's path in 'raster' "
                    "instead of uploading it.",
                )
            free = shutil.disk_usage(self.directory).free
            if free - nbytes < limits.min_free_bytes:
                raise ApiError(
                    507,
                    f"No room for this upload: the backend's disk has {_gib(free)} free and "
                    f"uploads always leave {_gib(limits.min_free_bytes)}.",
                    "Free disk space on the backend's machine, or give the raster's path in "
                    "'raster' instead of uploading it.",
                )
            self._receiving[upload_id] = wanted

    def release(self, upload_id: str) -> None:
        """Forget the reservation of an upload that is finished (kept or refused)."""
        with self._lock:
            self._receiving.pop(upload_id, None)

    def evict(self, keep: set[str]) -> None:
        """Delete the oldest uploads beyond ``max_kept``, except paths in ``keep``."""
        with self._lock:
            files = self._kept()
            excess = len(files) - self.limits.max_kept
            for _, p, _ in files:
                if excess <= 0:
                    break
                if str(p) in keep:
                    continue
                self._delete(p)
                excess -= 1

    @staticmethod
    def _delete(path: Path) -> None:
        with contextlib.suppress(OSError):
            path.unlink()
            log.info("removed old upload %s", path.name)


def check_signature(head: bytes) -> None:
    """Raise a 422 :class:`ApiError` unless ``head`` (the first bytes) starts a TIFF."""
    if head[:SIGNATURE_BYTES] in TIFF_SIGNATURES:
        return
    shown = head[:SIGNATURE_BYTES].decode("latin-1").encode("unicode_escape").decode()
    raise ApiError(
        422,
        f"The upload is not a raster this backend accepts: only GeoTIFF files are, and "
        f"these bytes do not start like one (they start with '{shown}').",
        "Upload a GeoTIFF (e.g. exported with 'Save Raster Layer As' in QGIS); convert "
        "other formats (VRT, JPEG, PNG...) first, or give their path in 'raster'.",
    )


def _without_path(text: str, path: Path) -> str:
    """``text`` with the server's own file names replaced (GDAL messages name the file)."""
    for name in (str(path), str(path.parent), path.name):
        text = text.replace(name, "the upload")
    return text


def check_raster(path: Path) -> None:
    """Raise a 422 :class:`ApiError` unless GDAL's GeoTIFF driver reads ``path`` to its
    last pixel. The message never names the server's files."""
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning
    from rasterio.windows import Window

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path, driver="GTiff") as ds:
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
            "The uploaded file is not a raster GDAL can read "
            f"({_without_path(reason, path)[:300]}).",
            "Upload a GeoTIFF (Content-Type: image/tiff), e.g. exported with "
            "'Save Raster Layer As' in QGIS.",
        ) from None
