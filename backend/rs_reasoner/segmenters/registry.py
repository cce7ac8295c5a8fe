"""Maps segmenter names to implementations and the weights they need.

Segmenters are registered from :data:`~rs_reasoner.segmenters.builtin.BUILTIN_SPECS`, by
installed packages through the ``rs_reasoner.segmenters`` entry-point group (their module
calls :func:`register`), or by modules named in the environment variable
``RS_REASONER_SEGMENTER_MODULES`` (comma-separated; how tests add theirs). Implementations
are imported only when a model is created, so listing models is cheap.

Models trained here (:mod:`rs_reasoner.trained_models`) are not registered: every call
of :func:`specs` and :func:`get_spec` rescans the models folder (a directory listing and
small JSON files), so a newly trained model appears without a restart. Registered names
always win: a trained model can never shadow a built-in one.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
from collections.abc import Callable
from importlib.metadata import entry_points

from rs_reasoner import trained_models
from rs_reasoner.errors import CheckpointError, RsReasonerError, UnknownModelError
from rs_reasoner.schemas import Mode
from rs_reasoner.segmenters.base import Segmenter
from rs_reasoner.segmenters.builtin import BUILTIN_SPECS
from rs_reasoner.segmenters.hub_weights import TRAINING_WEIGHTS
from rs_reasoner.segmenters.spec import ModelSpec
from rs_reasoner.segmenters.trained import trained_model_spec
from rs_reasoner.weight_files import repo_cache_dir
from rs_reasoner.weights import WeightSpec, is_available, resolve

__all__ = [
    "ENV_MODULES",
    "ModelSpec",
    "create",
    "default_for",
    "get_spec",
    "register",
    "registered_names",
    "resolve_factory",
    "specs",
    "weights_for",
]

log = logging.getLogger(__name__)

ENV_MODULES = "RS_REASONER_SEGMENTER_MODULES"


_SPECS: dict[str, ModelSpec] = {}
_LOCK = threading.Lock()
_LOADED_PLUGINS = False


def register(spec: ModelSpec) -> ModelSpec:
    """Register (or replace) a segmenter spec.

    Args:
        spec: The model's spec.

    Returns:
        The spec, so modules can keep a handle.
    """
    with _LOCK:
        _SPECS[spec.name] = spec
    return spec


def _load_plugins() -> None:
    global _LOADED_PLUGINS
    if _LOADED_PLUGINS:
        return
    for spec in BUILTIN_SPECS:
        register(spec)
    for ep in entry_points(group="rs_reasoner.segmenters"):
        try:
            ep.load()
        except Exception:  # a broken third-party package must not take the models down
            log.warning("segmenter plugin %s failed to load; skipped", ep.value, exc_info=True)
    for mod in filter(None, (m.strip() for m in os.environ.get(ENV_MODULES, "").split(","))):
        try:
            importlib.import_module(mod)
        except Exception as exc:
            raise RsReasonerError(
                f"Cannot import the segmenter module {mod!r} named in {ENV_MODULES}: "
                f"{type(exc).__name__}: {exc}",
                f"Fix {ENV_MODULES} (comma-separated importable module names) or unset it.",
            ) from None
    _LOADED_PLUGINS = True


def registered_names() -> set[str]:
    """Names of registered (built-in, plugin, test) models: not usable for trained ones."""
    _load_plugins()
    with _LOCK:
        return set(_SPECS)


def _trained_specs() -> list[ModelSpec]:
    reserved = registered_names()
    return [trained_model_spec(m) for m in trained_models.list_models(reserved)]


def specs() -> list[ModelSpec]:
    """All registered specs and the trained models found now, sorted by name."""
    _load_plugins()
    with _LOCK:
        registered = list(_SPECS.values())
    return sorted(registered + _trained_specs(), key=lambda s: s.name)


def get_spec(name: str) -> ModelSpec:
    """Look up a spec by name (registered first, then the trained models folder).

    Raises:
        UnknownModelError: With the list of known names.
    """
    _load_plugins()
    with _LOCK:
        spec = _SPECS.get(name)
    if spec is not None:
        return spec
    trained = trained_models.find_model(name, registered_names())
    if trained is not None:
        return trained_model_spec(trained)
    known = ", ".join(s.name for s in specs()) or "none"
    raise UnknownModelError(
        f"Unknown model '{name}'.", f"Known models: {known} (see 'rs-reasoner models list')."
    )


def weights_for(name: str) -> tuple[WeightSpec, ...]:
    """Weights ``rs-reasoner models pull NAME`` fetches: a model's, or those training
    builds on (:data:`~rs_reasoner.segmenters.hub_weights.TRAINING_WEIGHTS`).

    Raises:
        UnknownModelError: Neither a model nor a set of training weights.
    """
    if name in TRAINING_WEIGHTS and name not in registered_names():
        return TRAINING_WEIGHTS[name]
    return get_spec(name).weights


def default_for(mode: Mode, device: str = "auto") -> ModelSpec:
    """The default model for a mode: the highest priority among those claiming it whose
    weights are on disk, else the highest priority (whose error then names its weights), so
    a machine without a learned model's weights still answers with one that runs.

    A spec with ``default_devices`` claims the default only with its weights present and
    on one of those devices (``device``; ``auto`` is resolved only then, so planning
    imports torch only where such weights are installed).
    """

    def eligible(spec: ModelSpec) -> bool:
        if not spec.default_devices:
            return True
        if not all(map(is_available, spec.weights)):
            return False
        from rs_reasoner.device import resolve_device

        return resolve_device(device).partition(":")[0] in spec.default_devices

    candidates = [s for s in specs() if mode in s.default_for and eligible(s)]
    if not candidates:
        candidates = [s for s in specs() if mode in s.modes]
    if not candidates:
        raise UnknownModelError(
            f"No model is installed for mode '{mode.value}'.",
            "See 'rs-reasoner models list' for what is available.",
        )
    return max(candidates, key=lambda s: (all(map(is_available, s.weights)), s.priority))


def create(spec: ModelSpec, device: str = "cpu") -> Segmenter:
    """Instantiate a segmenter (loads its weights).

    Args:
        spec: The model spec.
        device: Torch device string (``"cuda"``, ``"cpu"``).

    Returns:
        A ready segmenter.

    Raises:
        CheckpointError: Weights on disk that do not load (damaged, cut short, or files
            of another model), naming the files and how to replace them.
    """
    try:
        return resolve_factory(spec)(device=device)
    except RsReasonerError:
        raise
    except Exception as exc:
        if not spec.weights or _out_of_memory(exc):
            raise  # not about the files: the caller reports it as it is
        raise _unloadable(spec, exc) from exc


def _out_of_memory(exc: BaseException) -> bool:
    return type(exc).__name__ == "OutOfMemoryError" or "out of memory" in str(exc).lower()


def _unloadable(spec: ModelSpec, exc: BaseException) -> CheckpointError:
    """A model whose weight files are present but do not load: which files, what to do."""
    places, fixes = [], []
    for w in spec.weights:
        try:
            places.append(str(resolve(w, spec.name)))
        except RsReasonerError:
            continue
        if os.environ.get(w.env_var):
            fixes.append(f"point {w.env_var} at the files of {w.repo_id} as published")
        else:
            fixes.append(f"delete {repo_cache_dir(w)}")
    text = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
    return CheckpointError(
        f"Model '{spec.name}' cannot be loaded from its weights ({', '.join(places)}): "
        f"{type(exc).__name__}{': ' + text if text else ''}. The files are damaged, cut "
        "short, or not the ones this model reads.",
        f"Replace the bad ones: {'; '.join(fixes)}; then run "
        f"'rs-reasoner models pull {spec.name}' "
        "(the service's model manager can check each file against the Hub's hash).",
    )


def resolve_factory(spec: ModelSpec) -> Callable[..., Segmenter]:
    """The spec's loader, importing its module if given as ``"module:attr"`` (``attr`` may
    be dotted: ``"module:Class.from_pretrained"``)."""
    factory = spec.factory
    if isinstance(factory, str):
        module, _, path = factory.partition(":")
        target: object = importlib.import_module(module)
        for attr in path.split("."):
            target = getattr(target, attr)
        factory = target  # type: ignore[assignment]
    return factory  # type: ignore[return-value]
