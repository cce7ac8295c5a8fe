"""An error as the user reads it: a one-line summary for the message bar, the full text for
the Details dialog, and the commands it asks for, rewritten with the backend's own paths.

The backend's hints name commands as a user at a shell would type them (``rs-reasoner models
pull NAME``); the plugin knows which environment the backend runs in, so the commands it shows
name that environment's executable, and a weights variable is said to belong in QGIS's
environment when the plugin starts the backend itself.

Pure Python (no Qt), so the rules are tested without a GUI.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

#: Longest summary shown in the message bar (the rest is in Details).
SUMMARY_MAX = 160

_COMMAND = re.compile(r"'(rs-reasoner [^']+)'|`(rs-reasoner [^`]+)`")
_WEIGHTS_VAR = re.compile(r"\bRS_REASONER_WEIGHTS_[A-Z0-9_]+\b")


@dataclass
class ErrorReport:
    """What the plugin shows for one error.

    Attributes:
        summary: One short line for the message bar.
        text: The whole message and hint, the commands spelled out.
        commands: Shell commands the text asks the user to run (exact paths).
        notes: Extra sentences the plugin adds (where a variable must be set...).
    """

    summary: str
    text: str
    commands: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def full_text(self) -> str:
        """Everything, as the Details dialog shows and copies it."""
        parts = [self.text]
        if self.commands:
            parts.append("Run:\n" + "\n".join(f"  {c}" for c in self.commands))
        parts.extend(self.notes)
        return "\n\n".join(parts)


def backend_executable(python_path: str, name: str = "rs-reasoner") -> str | None:
    """The ``rs-reasoner`` script next to the backend's interpreter, or None when unknown."""
    if not python_path.strip():
        return None
    return os.path.join(os.path.dirname(os.path.expanduser(python_path.strip())), name)


def summarize(text: str, limit: int = SUMMARY_MAX) -> str:
    """The first sentence of ``text`` (at most ``limit`` characters)."""
    flat = " ".join(text.split())
    match = re.search(r"(?<=[.!?])\s", flat)
    first = flat[: match.start()] if match else flat
    if len(first) > limit:
        first = first[: limit - 1].rstrip() + "…"
    return first


def explain(message: str, python_path: str = "", auto_start: bool = False) -> ErrorReport:
    """The report of an error whose text (message and hint) is ``message``.

    Args:
        message: The error's text.
        python_path: The backend's interpreter from the settings ('' when unknown).
        auto_start: Whether the plugin starts that backend itself.

    Returns:
        Summary, full text, commands with the backend's path, and notes.
    """
    exe = backend_executable(python_path)
    commands = []
    for found in _COMMAND.finditer(message):
        command = found.group(1) or found.group(2)
        if exe is not None:
            command = exe + command[len("rs-reasoner"):]
        if command not in commands:
            commands.append(command)
    notes = []
    variables = sorted(set(_WEIGHTS_VAR.findall(message)))
    if variables and auto_start and exe is not None:
        notes.append(
            f"{', '.join(variables)} must be set where the backend starts: the plugin starts "
            "it from QGIS, so set the variable in QGIS (Settings ▸ Options ▸ System ▸ "
            "Environment), restart QGIS, then run again.")
    return ErrorReport(summary=summarize(message), text=message.strip(), commands=commands,
                       notes=notes)
