"""What an executor reports for each unit it ran."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rs_reasoner.batch.worker import UnitReport, UnitTask

#: Attempts an executor makes at a unit whose worker died, before reporting it failed.
MAX_ATTEMPTS = 3

#: Called with a unit id each time a unit is handed to a worker (counted in the manifest).
OnStart = Callable[[str], None]
UnitFn = Callable[[UnitTask], UnitReport]


@dataclass
class Outcome:
    """One unit's end: a report, or the error that stopped it.

    Attributes:
        unit_id: The unit.
        report: Its report when it finished.
        error: Otherwise, why it failed.
    """

    unit_id: str
    report: UnitReport | None = None
    error: str | None = None


def describe(exc: BaseException) -> str:
    """One line for the manifest: the user-facing message of our errors, else the type."""
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {message}".splitlines()[0]
