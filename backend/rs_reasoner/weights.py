"""Finding model weights: a local path, the Hugging Face cache, or a download.

Weights are looked up in this order: the environment variable named by
``WeightSpec.env_var`` (a local file or folder, for air-gapped installs), then the
standard Hugging Face cache (``HF_HUB_CACHE`` / ``HF_HOME``), then — only when allowed —
a download from the Hub. Nothing is downloaded implicitly during a job unless the user
asked for it; ``rs-reasoner models pull`` is the explicit way.
"""

from __future__ import annotations

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
    """

    repo_id: str
    filename: str | None = None
    revision: str | None = None
    purpose: str = ""
    allow_patterns: tuple[str, ...] | None = None

    @property
    def env_var(self) -> str:
        """Environment variable that may point at a local copy of these weights."""
        slug = re.sub(r"[^A-Za-z0-9]+", "_", self.repo_id).strip("_").upper()
        return f"RS_REASONER_WEIGHTS_{slug}"


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
    return path


def _from_hub(spec: WeightSpec, local_only: bool) -> Path:
    from huggingface_hub import hf_hub_download, snapshot_download

    if spec.filename:
        return Path(
            hf_hub_download(
                spec.repo_id, spec.filename, revision=spec.revision, local_files_only=local_only
            )
        )
    return Path(
        snapshot_download(
            spec.repo_id,
            revision=spec.revision,
            allow_patterns=list(spec.allow_patterns) if spec.allow_patterns else None,
            local_files_only=local_only,
        )
    )


def _describe(spec: WeightSpec) -> str:
    return spec.repo_id + (f"/{spec.filename}" if spec.filename else "")


def resolve(spec: WeightSpec, model_name: str, allow_download: bool = False) -> Path:
    """Find weights on disk (or download them when allowed).

    Args:
        spec: The weights.
        model_name: The model that needs them, for the error message.
        allow_download: Try the Hub when they are not cached.

    Returns:
        Path of the file (``filename`` given) or snapshot folder.

    Raises:
        MissingWeightsError: Naming the weights, where they were looked for, and the
            command that fetches them.
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
        raise _missing(spec, model_name, download_error) from None


def _missing(spec: WeightSpec, model_name: str, cause: Exception) -> MissingWeightsError:
    reason = type(cause).__name__
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
