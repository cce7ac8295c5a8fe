"""Training-specific user errors, in the backend's style (message + hint, HTTP 4xx)."""

from __future__ import annotations

from rs_reasoner.errors import InvalidRequestError, RsReasonerError


class LabelLayerError(InvalidRequestError):
    """The labelled parcels (or mask folder) cannot be used as training labels."""


class CheckpointError(RsReasonerError):
    """A training checkpoint cannot be read or does not match this run."""

    status_code = 422
