"""Errors that reach the user: each says what went wrong and what to do about it."""

from __future__ import annotations


class RsReasonerError(Exception):
    """Base class for errors shown to users (CLI message, HTTP 4xx detail).

    Args:
        message: What went wrong, in the user's terms.
        hint: What to do about it (a command, an option to change).
    """

    status_code = 400

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} {self.hint}" if self.hint else self.message


class InvalidRequestError(RsReasonerError):
    """The request itself is wrong (empty query, unknown mode, bad option)."""

    status_code = 422


class RasterError(RsReasonerError):
    """The raster cannot be found, opened or read."""

    status_code = 422


class ExtentError(RsReasonerError):
    """The extent is empty, outside the raster, or too large."""

    status_code = 422


class UnknownModelError(RsReasonerError):
    """No segmenter is registered under the requested name."""

    status_code = 404


class MissingWeightsError(RsReasonerError):
    """Model weights are not on disk and could not be downloaded."""

    # 409: the request conflicts with what this install has; not a server fault (5xx
    # means a bug or an outage, and clients retry those).
    status_code = 409


class CheckpointError(RsReasonerError):
    """A model checkpoint is missing, unreadable, does not fit its architecture, or does
    not match the run that would resume it."""

    status_code = 422


class OutputError(RsReasonerError):
    """An output file cannot be written."""

    status_code = 422


class JobCancelled(Exception):
    """Raised inside a running job when its cancel flag is set."""
