"""The interface the backend trains through, and finding the package that implements it.

The backend never imports the training package: ``rs-reasoner train`` and ``POST /train``
call a :class:`Trainer` found through the ``rs_reasoner.trainers`` entry-point group (as
segmenter plug-ins are found through ``rs_reasoner.segmenters``). ``rs_reasoner_training``
declares itself there (``pyproject.toml``); without it, training is a clear user error.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any, Protocol

from rs_reasoner.errors import RsReasonerError

log = logging.getLogger(__name__)

#: Entry-point group of trainers; the first one by name is used.
GROUP = "rs_reasoner.trainers"

#: ``callback(stage, fraction, message)``; stages ``preparing``, ``resuming``,
#: ``training``, ``evaluating``, ``saving``, ``done``.
StageFn = Callable[[str, float, "str | None"], None]


class TrainingUnavailableError(RsReasonerError):
    """No training package is installed."""

    status_code = 503


class TrainOutcome(Protocol):
    """What a run returns: how it ended and notes for the user."""

    #: ``"completed"``, ``"time_budget"`` or ``"cancelled"``.
    stopped: str
    #: ``model`` and ``verifier``: one-line descriptions of what was used.
    extra: dict[str, Any]


class Trainer(Protocol):
    """A training package as the backend uses it."""

    def option_names(self) -> frozenset[str]:
        """Names of the extra options :meth:`train_on_parcels` accepts (``--train-option``)."""
        ...

    def train_on_parcels(
        self,
        raster: str | os.PathLike[str],
        labels: str | os.PathLike[str],
        class_field: str,
        output_dir: str | os.PathLike[str],
        *,
        layer: str | None,
        aoi: str | os.PathLike[str] | None,
        background: str | None,
        bands: list[int] | None,
        resolution: float | None,
        tile_size: int,
        val_fraction: float,
        label_budget: float,
        seed: int,
        threads: int | None,
        callback: StageFn | None,
        cancel: threading.Event | None,
        **options: Any,
    ) -> TrainOutcome:
        """Train (or resume from ``output_dir/last.pt``) on labelled parcels; writes
        ``best.pt`` (the training checkpoint format of :mod:`rs_reasoner.models.checkpoint`)
        or ``classical.json``, and ``history.json`` into ``output_dir``. The plan (parcels
        and tiles per role) goes to ``callback`` as ``preparing`` messages first. Options
        include ``weak_labels`` and ``classes`` (a file naming the class field's values).

        Raises:
            JobCancelled: ``cancel`` was set (checkpoints are kept).
            CheckpointError: ``output_dir`` holds a run that does not match.
            RsReasonerError: Unusable inputs.
        """
        ...

    def train_on_folders(
        self,
        images: str | os.PathLike[str],
        masks: str | os.PathLike[str],
        classes: str | os.PathLike[str],
        output_dir: str | os.PathLike[str],
        *,
        bands: list[int] | None,
        tile_size: int,
        val_fraction: float,
        label_budget: float,
        seed: int,
        threads: int | None,
        callback: StageFn | None,
        cancel: threading.Event | None,
        **options: Any,
    ) -> TrainOutcome:
        """As :meth:`train_on_parcels`, on an image folder, a mask folder (same file
        names) and a class table file (``VALUE,NAME`` or ``#RRGGBB,NAME`` lines)."""
        ...


def load_trainer() -> Trainer:
    """The installed trainer (entry point of :data:`GROUP`; the first by name).

    Raises:
        TrainingUnavailableError: None is installed, or it fails to import.
    """
    found = sorted(entry_points(group=GROUP), key=lambda ep: ep.name)
    if not found:
        raise TrainingUnavailableError(
            "Training needs the rs_reasoner_training package, which is not installed.",
            "Install the backend with its training package ('pip install -e .' in the "
            "repository), then run the command again.",
        )
    ep = found[0]
    try:
        trainer = ep.load()
    except Exception as exc:  # an ImportError deep inside: say what and where
        log.debug("trainer %s failed to load", ep.value, exc_info=True)
        raise TrainingUnavailableError(
            f"The training package ({ep.value}) cannot be imported: "
            f"{type(exc).__name__}: {exc}",
            "Reinstall the backend ('pip install -e .') so its dependencies are complete.",
        ) from None
    return trainer() if isinstance(trainer, type) else trainer
