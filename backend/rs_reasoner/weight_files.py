"""Model weights in the Hugging Face cache: what the Hub offers, download with progress
and cancel, delete, verify.

Everything goes through ``huggingface_hub``, so ``HF_ENDPOINT`` (a mirror, or a local
stand-in in tests), ``HF_HUB_CACHE``/``HF_HOME`` and ``HF_TOKEN`` are honoured as the
library honours them. :mod:`rs_reasoner.weights` finds weights for a run; this module
is what the model manager (``/models/{name}/...`` endpoints) needs on top.

A cached file's blob is named by its Hub etag: the SHA-256 of the content for LFS
files, the git blob SHA-1 for small ones, so :func:`verify` can check every byte
without asking the Hub.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rs_reasoner.errors import JobCancelled, MissingWeightsError, RsReasonerError
from rs_reasoner.weights import WeightSpec, hub_cache_dir, resolve

#: Seconds to wait for the Hub's answer about a repository's files and licence.
HUB_INFO_TIMEOUT = 10.0

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_SHA1 = re.compile(r"^[0-9a-f]{40}$")


@dataclass
class HubFile:
    """One file of a weight set as the Hub lists it."""

    path: str
    size: int | None


@dataclass
class HubInfo:
    """What the Hub says about a weight set (None members: the Hub did not say)."""

    files: list[HubFile] = field(default_factory=list)
    license: str | None = None
    gated: bool = False

    @property
    def size(self) -> int | None:
        sizes = [f.size for f in self.files]
        return None if not sizes or None in sizes else sum(s for s in sizes if s is not None)


def repo_cache_dir(spec: WeightSpec) -> Path:
    """The cache folder of the spec's repository (``models--org--name``)."""
    return hub_cache_dir() / ("models--" + spec.repo_id.replace("/", "--"))


def wanted(spec: WeightSpec, path: str) -> bool:
    """Whether a file of the repository belongs to the weight set."""
    if spec.filename:
        return path in spec.filenames
    if not spec.allow_patterns:
        return True
    return any(fnmatch.fnmatch(path, p) for p in spec.allow_patterns)


def hub_info(spec: WeightSpec, token: str | None = None) -> HubInfo:
    """Files (with sizes), licence and gating of a weight set, asked of the Hub.

    Raises:
        MissingWeightsError: The Hub cannot be reached, refuses, or lacks the repository
            (its message says which).
    """
    from huggingface_hub import HfApi

    try:
        info = HfApi(token=token).model_info(
            spec.repo_id, revision=spec.revision, files_metadata=True, timeout=HUB_INFO_TIMEOUT
        )
    except Exception as exc:  # noqa: BLE001 - offline, 401, 404...: one explained error
        raise _hub_error(spec, exc) from None
    files = [
        HubFile(s.rfilename, s.size) for s in info.siblings or [] if wanted(spec, s.rfilename)
    ]
    if spec.filename:  # one file: the preferred name the repository has
        files = sorted(files, key=lambda f: spec.filenames.index(f.path))[:1]
    card = info.card_data.to_dict() if info.card_data is not None else {}
    license_ = card.get("license")
    if not license_:
        tags = [t for t in info.tags or [] if t.startswith("license:")]
        license_ = tags[0].split(":", 1)[1] if tags else None
    return HubInfo(files=files, license=license_, gated=bool(info.gated))


def cached_size(spec: WeightSpec) -> int:
    """Bytes of the weight set's files in the cache (0 when none are there)."""
    folder = repo_cache_dir(spec) / "snapshots"
    total = 0
    seen: set[Path] = set()
    for path in folder.rglob("*") if folder.is_dir() else ():
        rel = path.relative_to(folder).parts[1:]
        if not rel or not path.is_file() or not wanted(spec, "/".join(rel)):
            continue
        real = path.resolve()
        if real not in seen:
            seen.add(real)
            total += real.stat().st_size
    return total


class _Cancellable:
    """A tqdm stand-in that reports bytes and stops the download when asked to.

    huggingface_hub creates one per file and calls ``update(n)`` per chunk received; an
    exception raised there ends the download and leaves only the ``.incomplete`` file.
    """

    def __init__(self, sink: Callable[[int], None], cancel: threading.Event) -> None:
        self.sink = sink
        self.cancel = cancel

    def make(self) -> type:
        sink, cancel = self.sink, self.cancel

        from tqdm.auto import tqdm

        class Bar(tqdm):  # type: ignore[misc, valid-type]
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                kwargs["disable"] = True  # nothing on the server's console
                super().__init__(*args, **kwargs)

            def update(self, n: float | None = 1) -> bool | None:
                if cancel.is_set():
                    raise JobCancelled("Download cancelled.")
                sink(int(n or 0))
                return super().update(n)

        return Bar


def download(
    spec: WeightSpec,
    token: str | None = None,
    progress: Callable[[int, int | None, str], None] | None = None,
    cancel: threading.Event | None = None,
) -> Path:
    """Download a weight set into the Hugging Face cache, file by file.

    Args:
        spec: The weights.
        token: Hub token (gated repositories); None uses the library's (``HF_TOKEN``).
        progress: Called with (bytes done, bytes in all or None, file being fetched).
        cancel: Set to stop; the download then raises :class:`JobCancelled`.

    Returns:
        The cached file (``spec.filename``) or snapshot folder.

    Raises:
        MissingWeightsError: The Hub refused or could not be reached.
        JobCancelled: ``cancel`` was set.
    """
    from huggingface_hub import hf_hub_download

    cancel = cancel or threading.Event()
    info = hub_info(spec, token)
    if not info.files:
        raise MissingWeightsError(
            f"The Hub repository {spec.repo_id} has no file this model needs "
            f"({spec.filename or ', '.join(spec.allow_patterns or ())}).",
            "The repository may have been reorganised; update rs-reasoner.",
        )
    total = info.size
    done = 0
    current = ""

    def sink(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, total, current)

    bar = _Cancellable(sink, cancel).make()
    before = _snapshot_files(spec)
    try:
        for f in info.files:
            if cancel.is_set():
                raise JobCancelled("Download cancelled.")
            current = f.path
            start = done
            try:
                hf_hub_download(
                    spec.repo_id, f.path, revision=spec.revision, token=token, tqdm_class=bar
                )
            except JobCancelled:
                raise
            except Exception as exc:  # noqa: BLE001 - network, auth, disk: one explained error
                raise _hub_error(spec, exc) from None
            if f.size is not None:
                done = start + f.size  # cached files report no bytes; count them as done
            if progress is not None:
                progress(done, total, current)
    except BaseException:
        _roll_back(spec, before)
        raise
    return resolve(spec, spec.repo_id)


def _snapshot_files(spec: WeightSpec) -> set[Path] | None:
    """The repository's cached snapshot files now (None: it has no cache folder)."""
    folder = repo_cache_dir(spec)
    if not folder.exists():
        return None
    snapshots = folder / "snapshots"
    return {p for p in snapshots.rglob("*") if not p.is_dir()} if snapshots.is_dir() else set()


def _roll_back(spec: WeightSpec, before: set[Path] | None) -> None:
    """Undo a download that did not finish: half a snapshot would look like weights that
    are present (the cache check finds the snapshot folder) and fail when loaded."""
    folder = repo_cache_dir(spec)
    if before is None:
        shutil.rmtree(folder, ignore_errors=True)
        return
    for path in (_snapshot_files(spec) or set()) - before:
        blob = path.resolve()
        path.unlink(missing_ok=True)
        if blob.parent.name == "blobs":
            blob.unlink(missing_ok=True)


def delete(spec: WeightSpec) -> int:
    """Remove the repository's folder from the cache.

    Returns:
        Bytes freed.

    Raises:
        RsReasonerError: The weights come from a local override (``RS_REASONER_WEIGHTS_*``),
            which is the user's copy, not the cache's.
    """
    if os.environ.get(spec.env_var):
        raise RsReasonerError(
            f"{spec.repo_id} is used from {os.environ[spec.env_var]} ({spec.env_var}), "
            "a copy this backend does not manage.",
            f"Delete that copy yourself, or unset {spec.env_var}.",
        )
    folder = repo_cache_dir(spec)
    if not folder.exists():
        return 0
    freed = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())
    shutil.rmtree(folder)
    return freed


@dataclass
class FileCheck:
    """One cached file checked against its Hub etag."""

    path: str
    ok: bool
    detail: str


def verify(spec: WeightSpec) -> list[FileCheck]:
    """Check every cached file of a weight set against the hash its blob is named by.

    Returns:
        One check per file; an empty list when nothing is cached. A local override
        (``RS_REASONER_WEIGHTS_*``) is reported as present but not checkable.
    """
    override = os.environ.get(spec.env_var)
    if override:
        exists = Path(override).expanduser().exists()
        return [FileCheck(override, exists, "local copy (not checked against the Hub)"
                          if exists else "does not exist")]
    folder = repo_cache_dir(spec) / "snapshots"
    out: list[FileCheck] = []
    for path in sorted(folder.rglob("*")) if folder.is_dir() else ():
        rel = "/".join(path.relative_to(folder).parts[1:])
        if not rel or path.is_dir() or not wanted(spec, rel):
            continue
        if not path.exists():
            out.append(FileCheck(rel, False, "its blob is missing from the cache"))
            continue
        out.append(_check_blob(rel, path.resolve()))
    return out


def _check_blob(rel: str, blob: Path) -> FileCheck:
    name = blob.name
    if _SHA256.match(name):
        digest = hashlib.sha256()
        kind = "SHA-256"
    elif _SHA1.match(name):
        digest = hashlib.sha1(f"blob {blob.stat().st_size}\0".encode())  # noqa: S324 - git's
        kind = "git SHA-1"
    else:
        return FileCheck(rel, True, "present (no hash to check against)")
    with open(blob, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    if digest.hexdigest() == name:
        return FileCheck(rel, True, f"{kind} matches")
    return FileCheck(rel, False, f"{kind} differs from the Hub's: the file is damaged")


def _hub_error(spec: WeightSpec, exc: BaseException) -> MissingWeightsError:
    status = getattr(getattr(exc, "response", None), "status_code", None)
    name = type(exc).__name__
    if status in (401, 403) or name == "GatedRepoError":
        return MissingWeightsError(
            f"The Hub refused {spec.repo_id} (HTTP {status or 'gated'}): it is gated or "
            "private.",
            f"Accept its licence on huggingface.co/{spec.repo_id} with your account, then "
            "give a Hub access token (read) with the download.",
        )
    if status == 404 or name in ("RepositoryNotFoundError", "EntryNotFoundError"):
        return MissingWeightsError(
            f"The Hub has no {spec.repo_id}"
            + (f" file {spec.filename}" if spec.filename else "") + ".",
            "Check HF_ENDPOINT if you use a mirror.",
        )
    return MissingWeightsError(
        f"Cannot download {spec.repo_id} from the Hub ({name}: {exc}).",
        "Check the internet connection (or HF_ENDPOINT for a mirror) and try again.",
    )
