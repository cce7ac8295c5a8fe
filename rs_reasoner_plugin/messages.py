"""Message bar entries and log lines: errors say what went wrong and what to do.

An error's message bar entry is one short line with a "Details…" button: the bar is one line
tall, so the full text (and the commands to run, with the backend's paths) opens in a dialog
with a Copy button. A new error replaces the plugin's older errors instead of stacking.
"""

from __future__ import annotations

from qgis.core import Qgis, QgsMessageLog
from qgis.PyQt.QtWidgets import QPushButton

from .error_report import ErrorReport, explain

TITLE = "RS Reasoner"
#: Object name of the "Details…" button of an error entry.
DETAILS_BUTTON = "RsReasonerDetailsButton"
#: Qt property of an error entry holding its full text.
FULL_TEXT_PROPERTY = "rs_reasoner_full_text"


def log(text: str, level: Qgis.MessageLevel = Qgis.Info) -> None:
    """A line in the 'RS Reasoner' tab of the log panel."""
    QgsMessageLog.logMessage(text, TITLE, level)


def _bar(iface):  # noqa: ANN001, ANN202
    return iface.messageBar() if iface is not None else None


def clear(iface, level: Qgis.MessageLevel | None = None) -> None:  # noqa: ANN001
    """Remove the plugin's entries (of ``level`` only, when given) from the message bar:
    a new run starts clean, a new error replaces the old one."""
    bar = _bar(iface)
    if bar is None:
        return
    for item in list(bar.items()):
        if item.title() == TITLE and (level is None or item.level() == level):
            bar.popWidget(item)


def push(iface, text: str, level: Qgis.MessageLevel = Qgis.Info,  # noqa: ANN001
         duration: int | None = None) -> None:
    """A message bar entry (errors stay until closed) and a log line."""
    log(text, level)
    bar = _bar(iface)
    if bar is None:
        return
    if duration is None:
        duration = 0 if level in (Qgis.Critical, Qgis.Warning) else 8
    bar.pushMessage(TITLE, text, level=level, duration=duration)


def report_for(error: BaseException | str) -> ErrorReport:
    """The error explained with the backend's paths from the settings."""
    from .settings import PluginSettings

    settings = PluginSettings.load()
    return explain(str(error), settings.python_path, settings.auto_start)


def push_error(iface, error: BaseException | str,  # noqa: ANN001
               details: str = "") -> ErrorReport:
    """An error: its first sentence in the message bar with a "Details…" button opening the
    whole text; the plugin's older errors are removed first.

    Args:
        iface: QgisInterface (None: log only).
        error: The error (its ``str()`` is message and hint).
        details: More text for the dialog and the log (e.g. a traceback).

    Returns:
        The report shown.
    """
    report = report_for(error)
    if details:
        report.notes.append(details)
    log(report.full_text(), Qgis.Critical)
    bar = _bar(iface)
    if bar is None:
        return report
    clear(iface, Qgis.Critical)  # the run's warnings stay: they may explain the error
    widget = bar.createMessage(TITLE, report.summary)
    widget.setProperty(FULL_TEXT_PROPERTY, report.full_text())
    button = QPushButton("Details…", widget)
    button.setObjectName(DETAILS_BUTTON)
    button.setToolTip("The whole message, the command to run, and a Copy button")
    parent = iface.mainWindow() if hasattr(iface, "mainWindow") else None
    button.clicked.connect(lambda: show_details(report, parent))
    widget.layout().addWidget(button)
    bar.pushWidget(widget, Qgis.Critical, 0)
    return report


def show_details(report: ErrorReport, parent=None):  # noqa: ANN001, ANN201
    """Open the Details dialog of ``report`` (non-modal); returns it."""
    from .error_dialog import ErrorDetailsDialog

    dialog = ErrorDetailsDialog(report, parent)
    dialog.show()
    dialog.raise_()
    return dialog
