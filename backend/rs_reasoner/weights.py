"""Finding model weights: a local path, the Hugging Face cache, or a download.

Weights are looked up in this order: the environment variable named by
``WeightSpec.env_var`` (a local file or folder, for air-gapped installs), then the
standard Hugging Face cache (``HF_HUB_CACHE`` / ``HF_HOME``), then — only when allowed —
a download from the Hub. Nothing is downloaded implicitly during a job unless the user
asked for it; ``rs-reasoner models pull`` is the explicit way.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from rs_reasoner.errors import MissingWeightsError


@dataclass(frozen=True)
class WeightSpec:
    """One set of weights on the Hugging Face Hub.

    Attributes:
        repo_id: Hub repository, e.g. ``"facebook/sam2.1-hiera-small"``.
        filename: A single file in the repo; ``None`` means the whole snapshot.
        revision: Branch, tag or commit; ``None`` is the default branch.
        purpose: Short human text ("SAM 2.1 mask decoder").
        allow_patterns: File globs to fetch for whole-snapshot weights.
        alternatives: Other names of the same single file that are accepted in a cache or
            a local folder (open_clip caches ``open_clip_model.safetensors`` where a repo
            has it, ``open_clip_pytorch_model.bin`` otherwise).
        required: File globs a snapshot must match, each at least once, to count as
            present (a snapshot with only ``config.json`` is not a model). Shards named by
            a ``*.safetensors.index.json`` are always required.
    """

    repo_id: str
    filename: str | None = None
    revision: str | None = None
    purpose: str = ""
    allow_patterns: tuple[str, ...] | None = None
    alternatives: tuple[str, ...] = ()
    required: tuple[str, ...] = ()

    @property
    def env_var(self) -> str:
        """Environment variable that may point at a local copy of these weights."""
        slug = re.sub(r"[^A-Za-z0-9]+", "_", self.repo_id).strip("_").upper()
        return f"RS_REASONER_WEIGHTS_{slug}"

    @property
    def filenames(self) -> tuple[str, ...]:
        """Accepted names of a single-file weight set, preferred first (empty: snapshot)."""
        return (self.filename, *self.alternatives) if self.filename else ()


def missing_files(spec: WeightSpec, folder: Path) -> list[str]:
    """What a snapshot folder lacks of the files the spec requires (empty: complete).

    Args:
        spec: Whole-snapshot weights.
        folder: The snapshot (cache snapshot or a local clone).

    Returns:
        The required globs that match no file, then any shard an index names that is
        absent.
    """
    names = [p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()]
    lacking = [g for g in spec.required if not any(fnmatch.fnmatch(n, g) for n in names)]
    for index in folder.glob("*.safetensors.index.json"):
        try:
            shards = set(json.loads(index.read_text()).get("weight_map", {}).values())
        except (OSError, ValueError, AttributeError):
            lacking.append(f"{index.name} (unreadable)")
            continue
        lacking += sorted(s for s in shards if not (folder / s).is_file())
    return lacking


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache this process uses."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def _local_override(spec: WeightSpec) -> Path | None:
    value = os.environ.get(spec.env_var)
    if not value:
        return None
    path = Path(value).expanduser()
    if not path.exists():
        raise MissingWeightsError(
            f"{spec.env_var} points to {path}, which does not exist.",
            f"Fix or unset {spec.env_var}.",
        )
    if spec.filename and path.is_dir():
        # A clone of the Hub repository (or any folder holding the file).
        for name in spec.filenames:
            if (path / name).is_file():
                return path / name
        raise MissingWeightsError(
            f"{spec.env_var} points to the folder {path}, which has no "
            f"{' or '.join(spec.filenames)}.",
            f"Point {spec.env_var} at the weights file, or at a folder that holds it.",
        )
    if not spec.filename:
        if not path.is_dir():
            raise MissingWeightsError(
                f"{spec.env_var} points to the file {path}; {spec.repo_id} is a folder of "
                "files (a snapshot of the Hub repository).",
                f"Point {spec.env_var} at the folder.",
            )
        lacking = missing_files(spec, path)
        if lacking:
            raise MissingWeightsError(
                f"{spec.env_var} points to {path}, which lacks {', '.join(lacking)}.",
                f"Copy the whole {spec.repo_id} repository there.",
            )
    return path


class _Incomplete(Exception):
    """A cached snapshot lacks files its model needs."""


def _from_hub(spec: WeightSpec, local_only: bool) -> Path:
    from huggingface_hub import hf_hub_download, snapshot_download

    if spec.filename:
        errors: list[Exception] = []
        for name in spec.filenames:  # preferred first; a 404 or a cache miss tries the next
            try:
                return Path(
                    hf_hub_download(
                        spec.repo_id, name, revision=spec.revision, local_files_only=local_only
                    )
                )
            except Exception as exc:  # noqa: BLE001 - try the next accepted name
                errors.append(exc)
        raise errors[0]
    folder = Path(
        snapshot_download(
            spec.repo_id,
            revision=spec.revision,
            allow_patterns=list(spec.allow_patterns) if spec.allow_patterns else None,
            local_files_only=local_only,
        )
    )
    lacking = missing_files(spec, folder)
    if lacking:
        raise _Incomplete(f"the cached snapshot lacks {', '.join(lacking)}")
    return folder


def _describe(spec: WeightSpec) -> str:
    return spec.repo_id + (f"/{spec.filename}" if spec.filename else "")


def resolve(spec: WeightSpec, model_name: str, allow_download: bool = False) -> Path:
    """Find weights on disk (or download them when allowed).

    Args:
        spec: The weights.
        model_name: The model that needs them, for the error message.
        allow_download: Try the Hub when they are not cached.

    Returns:
        Path of the file (``filename`` given; inside the folder when the override names a
        folder) or snapshot folder (complete: every required file there).

    Raises:
        MissingWeightsError: Naming the weights, where they were looked for, and the
            command that fetches them (for a gated repository: the licence step and the
            login).
    """
    override = _local_override(spec)
    if override is not None:
        return override
    try:
        return _from_hub(spec, local_only=True)
    except Exception as cached_error:  # noqa: BLE001 - any miss means "not cached"
        if not allow_download:
            raise _missing(spec, model_name, cached_error) from None
    try:
        return _from_hub(spec, local_only=False)
    except Exception as download_error:  # noqa: BLE001 - network, auth, disk: all reported
        if _refused(download_error):
            raise _gated(spec) from None
        raise _missing(spec, model_name, download_error) from None


def _refused(exc: BaseException) -> bool:
    """The Hub answered that the repository is gated or private (no token, or no access)."""
    status = getattr(getattr(exc, "response", None), "status_code", None)
    return status in (401, 403) or type(exc).__name__ == "GatedRepoError"


def _gated(spec: WeightSpec) -> MissingWeightsError:
    return MissingWeightsError(
        f"The Hub refused {spec.repo_id}: its licence must be accepted before download.",
        f"Accept the licence at https://huggingface.co/{spec.repo_id} with your Hugging Face "
        "account, then log in on this machine with 'hf auth login' (or set HF_TOKEN to a "
        "read token) and pull again.",
    )


def _missing(spec: WeightSpec, model_name: str, cause: Exception) -> MissingWeightsError:
    reason = str(cause) if isinstance(cause, _Incomplete) else type(cause).__name__
    return MissingWeightsError(
        f"Weights '{_describe(spec)}' for model '{model_name}' are not available "
        f"(looked in ${spec.env_var} and the Hugging Face cache {hub_cache_dir()}; {reason}).",
        f"Run 'rs-reasoner models pull {model_name}' on a machine with internet access, "
        f"or set {spec.env_var} to a local copy.",
    )


def is_available(spec: WeightSpec) -> bool:
    """True when the weights resolve without downloading."""
    try:
        resolve(spec, model_name="?", allow_download=False)
    except MissingWeightsError:
        return False
    return True
