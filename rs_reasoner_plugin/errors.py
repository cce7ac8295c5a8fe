"""Errors the plugin shows the user as they are: what went wrong and what to change."""

from __future__ import annotations


class PluginUserError(Exception):
    """A problem the user can fix; ``hint`` says how (may be empty).

    Args:
        message: What went wrong, in the user's terms.
        hint: What to change.
    """

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(f"{message} {hint}".strip())
        self.message = message
        self.hint = hint


class InputError(Exception):
    """A problem with what the user entered in a dialog (shown in the message bar)."""
