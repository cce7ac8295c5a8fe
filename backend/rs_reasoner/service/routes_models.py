"""The model manager's endpoints: a model's weights (size, licence, present), download as
a followable, cancellable pull, delete, verify.

``GET /models`` (in :mod:`.routes_health`) lists the models; these work on one:

* ``GET /models/{name}/weights`` — each weight set: on disk or not, bytes on disk, and
  what the Hub says (size, licence, gated) unless ``hub=false``;
* ``POST /models/{name}/pull`` — start a download (body ``{"token": ...}`` for gated
  repositories), answered with the pull to follow at ``GET /pulls/{id}`` and to cancel
  with ``DELETE /pulls/{id}``;
* ``DELETE /models/{name}/weights`` — remove its weights from the cache;
* ``POST /models/{name}/verify`` — check every cached byte against the Hub's hashes.

``sam2.1-click`` (:data:`~rs_reasoner.interactive.predictors.CLICK_MODEL`) names the
SAM 2.1 weights of click-to-segment, which no registered model lists on its own.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from rs_reasoner import weight_files, weights
from rs_reasoner.errors import MissingWeightsError, RsReasonerError
from rs_reasoner.interactive.predictors import CLICK_MODEL
from rs_reasoner.segmenters.hub_weights import sam_weights
from rs_reasoner.service.errors import ApiError
from rs_reasoner.service.model_pulls import PullManager
from rs_reasoner.weights import WeightSpec

router = APIRouter(tags=["models"])


def get_pulls(request: Request) -> PullManager:
    """The app's download manager."""
    return request.app.state.pulls


Pulls = Annotated[PullManager, Depends(get_pulls)]


class PullRequest(BaseModel):
    """Body of ``POST /models/{name}/pull``."""

    model_config = ConfigDict(extra="forbid")
    token: str | None = Field(
        None, max_length=1000,
        description="Hugging Face access token for gated repositories (not stored).",
    )


def _weights_of(name: str) -> tuple[WeightSpec, ...]:
    """A model's weights; :data:`CLICK_MODEL` names click-to-segment's SAM 2.1."""
    from rs_reasoner.segmenters import registry

    if name == CLICK_MODEL:
        return (sam_weights(),)
    return registry.weights_for(name)  # UnknownModelError (404) for unknown names


def _used_by(spec: WeightSpec, name: str) -> list[str]:
    from rs_reasoner.segmenters import registry

    return sorted(s.name for s in registry.specs()
                  if s.name != name and any(w.repo_id == spec.repo_id for w in s.weights))


@router.get("/models/{name}/weights")
def model_weights(name: str, hub: bool = True) -> dict[str, Any]:
    """Each weight set of a model: present or not, bytes on disk, and the Hub's size,
    licence and gating (``hub=false``: do not ask the Hub)."""
    out = []
    for spec in _weights_of(name):
        item: dict[str, Any] = {
            "repo_id": spec.repo_id,
            "filename": spec.filename,
            "purpose": spec.purpose,
            "available": weights.is_available(spec),
            "size_on_disk": weight_files.cached_size(spec),
            "size": None,
            "license": None,
            "gated": None,
            "hub_error": None,
            "also_used_by": _used_by(spec, name),
        }
        if hub:
            try:
                info = weight_files.hub_info(spec)
                item.update(size=info.size, license=info.license, gated=info.gated)
            except MissingWeightsError as exc:
                item["hub_error"] = str(exc)
        out.append(item)
    sizes = [w["size"] for w in out]
    return {
        "model": name,
        "weights": out,
        "available": all(w["available"] for w in out),
        "size": None if None in sizes else sum(sizes),
        "size_on_disk": sum(w["size_on_disk"] for w in out),
    }


@router.post("/models/{name}/pull", status_code=202)
def pull(name: str, pulls: Pulls, body: PullRequest | None = None) -> dict[str, Any]:
    """Start downloading a model's weights (or return the download already running)."""
    specs = _weights_of(name)
    if not specs:
        raise ApiError(409, f"Model '{name}' needs no weights.", "Nothing to download.")
    return pulls.start(name, specs, body.token if body else None).to_dict()


@router.get("/pulls/{pull_id}")
def pull_status(pull_id: str, pulls: Pulls) -> dict[str, Any]:
    """Status, bytes done and in all, file being fetched, error."""
    return _pull(pulls, pull_id).to_dict()


@router.delete("/pulls/{pull_id}")
def cancel_pull(pull_id: str, pulls: Pulls) -> dict[str, Any]:
    """Ask a download to stop (within one chunk); what it fetched of the weight set it
    was on is removed, so the cache holds no half set."""
    p = _pull(pulls, pull_id)
    p.cancel_event.set()
    return p.to_dict()


def _pull(pulls: PullManager, pull_id: str) -> Any:
    p = pulls.get(pull_id)
    if p is None:
        raise ApiError(404, f"Unknown download '{pull_id}'.",
                       "Downloads live in the backend's memory: they are gone after a restart.")
    return p


@router.delete("/models/{name}/weights")
def delete_weights(name: str, pulls: Pulls) -> dict[str, Any]:
    """Remove a model's weights from the Hugging Face cache; says which other models
    used them too."""
    specs = _weights_of(name)
    running = pulls.running_for(specs)
    if running is not None:
        raise ApiError(409, f"The weights of '{name}' are being downloaded.",
                       f"Cancel the download first (DELETE /pulls/{running.id}).")
    freed = 0
    also: set[str] = set()
    for spec in specs:
        try:
            freed += weight_files.delete(spec)
        except RsReasonerError as exc:
            raise ApiError(409, exc.message, exc.hint) from None
        also.update(_used_by(spec, name))
    return {"model": name, "freed_bytes": freed, "also_removed_from": sorted(also)}


@router.post("/models/{name}/verify")
def verify(name: str) -> dict[str, Any]:
    """Check each cached file of a model against the hash the Hub gave it."""
    out = []
    for spec in _weights_of(name):
        checks = weight_files.verify(spec)
        out.append({
            "repo_id": spec.repo_id,
            "present": bool(checks) and weights.is_available(spec),
            "files": [{"path": c.path, "ok": c.ok, "detail": c.detail} for c in checks],
        })
    ok = all(w["present"] and all(f["ok"] for f in w["files"]) for w in out)
    return {"model": name, "ok": ok, "weights": out}
