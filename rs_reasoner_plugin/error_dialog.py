"""The Details dialog of an error: the full text (selectable), the commands to run, and a
button that copies it all."""

from __future__ import annotations

from qgis.PyQt.QtWidgets import (
    QApplication,
    QDialog,
    QDialogButtonBox,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from .error_report import ErrorReport


class ErrorDetailsDialog(QDialog):
    """Shows an :class:`ErrorReport` in full."""

    def __init__(self, report: ErrorReport, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("RsReasonerErrorDetails")
        self.setWindowTitle("RS Reasoner — what went wrong")
        self.report = report
        layout = QVBoxLayout(self)
        summary = QLabel(report.summary, self)
        summary.setWordWrap(True)
        layout.addWidget(summary)
        self.text_edit = QPlainTextEdit(self)
        self.text_edit.setReadOnly(True)
        self.text_edit.setPlainText(report.full_text())
        self.text_edit.setToolTip("The whole message; select any part to copy it")
        layout.addWidget(self.text_edit, 1)
        buttons = QDialogButtonBox(QDialogButtonBox.Close, self)
        self.copy_button = QPushButton("Copy", self)
        self.copy_button.setToolTip("Copy the whole message (with the commands) to the "
                                    "clipboard")
        self.copy_button.clicked.connect(self.copy)
        buttons.addButton(self.copy_button, QDialogButtonBox.ActionRole)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self.resize(640, 320)

    def copy(self) -> None:
        """Put the full text on the clipboard."""
        QApplication.clipboard().setText(self.report.full_text())
