"""Training-specific user errors, in the backend's style (message + hint, HTTP 4xx).

:class:`~rs_reasoner.errors.CheckpointError` is the backend's (checkpoints are read there
too) and is re-exported here for the training modules.
"""

from __future__ import annotations

from rs_reasoner.errors import CheckpointError, InvalidRequestError

__all__ = ["CheckpointError", "LabelLayerError"]


class LabelLayerError(InvalidRequestError):
    """The labelled parcels (or mask folder) cannot be used as training labels."""
