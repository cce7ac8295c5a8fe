"""Atomic outputs: a crash, a signal or an exception never leaves a half-written or mixed one.

Single files go to a temporary file in the destination's folder, are flushed and fsynced,
then moved over the destination with :func:`os.replace`; the folder is fsynced too so the
rename survives a power cut where the platform allows it.

A set of files read together (a shapefile's ``.shp``, ``.shx``, ``.dbf``...) cannot be
renamed in one step: no filesystem swaps several names at once, and a folder swap would
need the user's output to be a folder. :func:`publish_file_set` therefore stages the
complete set in a folder beside the destination, records it in a journal, then removes the
old *key* file (the one readers open) first and moves the new key file in last. A reader
thus finds the whole old set, the whole new set, or, only if the writer dies inside that
swap (a few renames onto free names, well under a millisecond), no key file; the journal
lets the next write in that folder finish the swap (roll forward: the staged set is
complete and verified before the swap starts).

Temporary files and folders are named ``.rs-reasoner-<pid>-...``; :func:`sweep_litter`
removes those whose process is gone (killed writers), finishing interrupted swaps.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from rs_reasoner.errors import OutputError

#: Prefix of every temporary file or folder written beside an output.
LITTER_PREFIX = ".rs-reasoner-"
#: Litter whose writer cannot be probed (no pid in its name, Windows, a pid reused by
#: another process) is removed once it is this old; no write takes that long.
LITTER_MAX_AGE_S = 24 * 3600
#: The journal of a staged file set (see :func:`publish_file_set`).
JOURNAL = "publish.json"
#: Where a staged set's swap puts the files it replaces (deleted with the staging folder).
_REPLACED = "replaced"

_OWNER = re.compile(rf"^{re.escape(LITTER_PREFIX)}(\d+)-")


def pid_alive(pid: object) -> bool | None:
    """Whether a process with this id exists.

    Returns:
        True or False on POSIX (False for anything that is not a positive int); None on
        Windows, where ``os.kill`` would terminate the process instead of probing it.
    """
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    if os.name == "nt":
        return None
    try:
        os.kill(pid, 0)
    except PermissionError:
        return True
    except (OSError, OverflowError, ValueError):
        return False
    return True


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # persist renames; not possible everywhere
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def fsync_file(path: Path) -> None:
    """Flush a file another library wrote (e.g. GDAL) to disk before it is renamed."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: str | os.PathLike[str], write: Callable[[BinaryIO], object]) -> Path:
    """Write a file atomically.

    Args:
        path: Destination; its folder is created if missing.
        write: Called with the open binary temporary file (e.g. ``lambda f: torch.save(x, f)``).

    Returns:
        The destination path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_litter(path.parent)
    prefix = f"{LITTER_PREFIX}{os.getpid()}-{path.name}."
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)
    return path


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 text atomically (see :func:`write_atomic`)."""
    return write_atomic(path, lambda f: f.write(text.encode("utf-8")))


def _existing_ancestor(path: Path) -> Path:
    parent = path.absolute().parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    return parent


def check_writable(path: str | os.PathLike[str]) -> Path:
    """Check, before any work, that a file can be created or replaced at ``path``.

    A folder and a file are made and removed where the output will go (its nearest
    existing folder): permission bits alone do not tell, e.g. root passes ``os.access``
    on ``/proc``, where nothing can be created.

    Args:
        path: The file to be written; missing parent folders are created on write.

    Returns:
        ``path`` as a Path.

    Raises:
        OutputError: A folder in the way, a file where a folder must be, or no way to
            write there.
    """
    out = Path(path)
    if out.is_dir():
        raise OutputError(f"'{out}' is a folder.", "Give a file name, not a folder.")
    parent = _existing_ancestor(out)
    if not parent.is_dir():
        raise OutputError(
            f"Cannot create a folder for '{out}': '{parent}' is a file.",
            "Choose another folder, or another name for that file.",
        )
    if not os.access(parent, os.W_OK):
        raise OutputError(f"No permission to write in '{parent}'.", "Choose another folder.")
    try:
        probe = Path(tempfile.mkdtemp(prefix=f"{LITTER_PREFIX}{os.getpid()}-", dir=parent))
    except OSError as exc:
        raise OutputError(
            f"Cannot write in '{parent}': {exc.strerror or exc}.", "Choose another folder."
        ) from None
    try:
        (probe / "probe").write_bytes(b"")
    except OSError as exc:
        raise OutputError(
            f"Cannot write files in '{parent}': {exc.strerror or exc}.", "Choose another folder."
        ) from None
    finally:
        shutil.rmtree(probe, ignore_errors=True)
    return out


def make_staging_dir(folder: Path) -> Path:
    """A new private folder for temporary output inside ``folder`` (same filesystem, so
    its files can be renamed over the destination), named with this process's pid.

    Raises:
        OutputError: The folder cannot be created.
    """
    try:
        return Path(tempfile.mkdtemp(prefix=f"{LITTER_PREFIX}{os.getpid()}-", dir=folder))
    except OSError as exc:
        raise OutputError(f"Cannot write in '{folder}': {exc.strerror or exc}.") from None


def publish_file_set(staging: Path, key: str, obsolete: Iterable[str] = ()) -> None:
    """Move every file of ``staging`` into its parent folder as one set (see module doc).

    Args:
        staging: A folder from :func:`make_staging_dir` holding the complete new set.
        key: The file readers open (e.g. ``result.shp``); removed first, moved in last.
        obsolete: Other names in the destination that belong to the set and must go when
            the new set lacks them (e.g. an old ``.prj`` or spatial index).

    The staging folder is removed when done. Interrupted by a signal, the swap is still
    completed before the interruption propagates; killed, the next :func:`sweep_litter`
    of the folder completes it.
    """
    names = sorted(p.name for p in staging.iterdir())
    if key not in names:
        raise ValueError(f"the staged set lacks its key file {key}")
    for name in names:
        fsync_file(staging / name)
    (staging / _REPLACED).mkdir()
    _fsync_dir(staging)
    journal = {"key": key, "names": names, "obsolete": sorted(set(obsolete) - set(names))}
    write_text_atomic(staging / JOURNAL, json.dumps(journal))
    try:
        _finish_publication(staging)
    except (KeyboardInterrupt, SystemExit):
        _finish_publication(staging)  # a signal mid-swap: complete it, then stop
        raise


def _set_aside(path: Path, folder: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.replace(path, folder / path.name)


def _finish_publication(staging: Path) -> None:
    """Complete (idempotently) the swap a journal in ``staging`` describes.

    Only renames onto free names happen between hiding the old key file and showing the
    new one: old files are set aside in the staging folder, not unlinked or overwritten,
    because freeing an inode can wait milliseconds on the filesystem's journal, and that
    is the moment a reader finds no set. They are deleted with the staging folder after.
    """
    journal: dict[str, Any] = json.loads((staging / JOURNAL).read_text(encoding="utf-8"))
    dest = staging.parent
    key = str(journal["key"])
    replaced = staging / _REPLACED
    if (staging / key).exists():  # the key file is not published yet
        replaced.mkdir(exist_ok=True)
        _set_aside(dest / key, replaced)  # from here readers find no set, never a mix
        for name in journal["obsolete"]:
            _set_aside(dest / name, replaced)
        for name in journal["names"]:
            if name != key and (staging / name).exists():
                _set_aside(dest / name, replaced)
                os.replace(staging / name, dest / name)
        os.replace(staging / key, dest / key)
        _fsync_dir(dest)
    shutil.rmtree(staging, ignore_errors=True)


def _is_litter(entry: os.DirEntry[str], now: float) -> bool:
    match = _OWNER.match(entry.name)
    owner = int(match.group(1)) if match else None
    if owner == os.getpid():
        return False
    if owner is not None and pid_alive(owner) is False:
        return True
    try:
        return now - entry.stat(follow_symlinks=False).st_mtime > LITTER_MAX_AGE_S
    except OSError:
        return False


def sweep_litter(folder: str | os.PathLike[str]) -> list[str]:
    """Remove the temporary files and folders of dead writers in ``folder``.

    A staging folder with a journal is published first (its set is complete), so an
    output whose writer was killed mid-swap appears as the new set.

    Args:
        folder: An output folder.

    Returns:
        The names removed (empty when there was nothing, or on any listing error).
    """
    removed: list[str] = []
    now = time.time()
    try:
        entries = [e for e in os.scandir(folder) if e.name.startswith(LITTER_PREFIX)]
    except OSError:
        return removed
    for entry in entries:
        if not _is_litter(entry, now):
            continue
        path = Path(entry.path)
        try:
            if entry.is_dir(follow_symlinks=False) and (path / JOURNAL).is_file():
                _finish_publication(path)
            elif entry.is_dir(follow_symlinks=False):
                shutil.rmtree(path)
            else:
                path.unlink()
        except (OSError, ValueError, KeyError):
            continue  # another process got there first, or not ours to judge
        removed.append(entry.name)
    return removed


@contextlib.contextmanager
def exit_on_termination_signals() -> Iterator[None]:
    """Inside the block, SIGTERM and SIGHUP raise ``SystemExit`` (status 128 + signal
    number) so ``finally`` blocks remove temporary files; the previous handlers are back
    after it (the CLI may run inside another program, e.g. a test runner). Outside the
    main thread, where handlers cannot be set, it does nothing."""

    def _exit(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = {}
    for name in ("SIGTERM", "SIGHUP"):
        sig = getattr(signal, name, None)
        if sig is not None:
            with contextlib.suppress(ValueError, OSError):  # not the main thread
                previous[sig] = signal.signal(sig, _exit)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
