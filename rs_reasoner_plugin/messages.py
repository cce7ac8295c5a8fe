"""Message bar entries and log lines: errors say what went wrong and what to do."""

from __future__ import annotations

from qgis.core import Qgis, QgsMessageLog

TITLE = "RS Reasoner"


def log(text: str, level: Qgis.MessageLevel = Qgis.Info) -> None:
    """A line in the 'RS Reasoner' tab of the log panel."""
    QgsMessageLog.logMessage(text, TITLE, level)


def push(iface, text: str, level: Qgis.MessageLevel = Qgis.Info,  # noqa: ANN001
         duration: int | None = None) -> None:
    """A message bar entry (errors stay until closed) and a log line."""
    log(text, level)
    if iface is None:
        return
    bar = iface.messageBar()
    if bar is None:
        return
    if duration is None:
        duration = 0 if level in (Qgis.Critical, Qgis.Warning) else 8
    bar.pushMessage(TITLE, text, level=level, duration=duration)


def push_error(iface, error: BaseException | str) -> None:  # noqa: ANN001
    """An error (message + hint) in the message bar."""
    push(iface, str(error), Qgis.Critical)
