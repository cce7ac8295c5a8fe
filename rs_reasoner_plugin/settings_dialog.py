"""Settings dialog: backend URL/token, interpreter, auto-start, models, device, results."""

from __future__ import annotations

from qgis.gui import QgsFileWidget
from qgis.PyQt.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QLabel,
    QLineEdit,
    QVBoxLayout,
    QWidget,
)

from .backend_state import default_state_path
from .settings import DEFAULT_RESULTS_FOLDER, PluginSettings

DEVICES = ["auto", "cpu", "cuda", "cuda:0", "cuda:1"]


class SettingsDialog(QDialog):
    """Edits a :class:`PluginSettings`; ``accept()`` saves it."""

    def __init__(self, settings: PluginSettings | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("RS Reasoner settings")
        self.settings = settings or PluginSettings.load()
        layout = QVBoxLayout(self)

        conn = QGroupBox("Backend connection", self)
        form = QFormLayout(conn)
        self.url_edit = QLineEdit(conn)
        self.url_edit.setPlaceholderText("empty: read URL and token from the state file")
        form.addRow("URL", self.url_edit)
        self.token_edit = QLineEdit(conn)
        self.token_edit.setEchoMode(QLineEdit.PasswordEchoOnEdit)
        self.token_edit.setPlaceholderText("only with a URL")
        form.addRow("Token", self.token_edit)
        self.state_file = QgsFileWidget(conn)
        self.state_file.setStorageMode(QgsFileWidget.SaveFile)
        self.state_file.lineEdit().setPlaceholderText(str(default_state_path()))
        form.addRow("State file", self.state_file)
        self.timeout_spin = QDoubleSpinBox(conn)
        self.timeout_spin.setRange(1.0, 3600.0)
        self.timeout_spin.setSuffix(" s")
        form.addRow("Request timeout", self.timeout_spin)
        layout.addWidget(conn)

        start = QGroupBox("Start a backend when none is running", self)
        form = QFormLayout(start)
        self.python_file = QgsFileWidget(start)
        self.python_file.setStorageMode(QgsFileWidget.GetFile)
        self.python_file.lineEdit().setPlaceholderText("/path/to/rs-reasoner/.venv/bin/python")
        form.addRow("Python interpreter", self.python_file)
        self.auto_start = QCheckBox("Start it automatically (stopped when QGIS closes)", start)
        form.addRow("", self.auto_start)
        self.device_combo = QComboBox(start)
        self.device_combo.setEditable(True)
        self.device_combo.addItems(DEVICES)
        form.addRow("Device", self.device_combo)
        layout.addWidget(start)

        runs = QGroupBox("Runs", self)
        form = QFormLayout(runs)
        self.model_ov = QLineEdit(runs)
        self.model_ov.setPlaceholderText("backend default")
        form.addRow("Model for class lists", self.model_ov)
        self.model_reasoning = QLineEdit(runs)
        self.model_reasoning.setPlaceholderText("backend default")
        form.addRow("Model for descriptions", self.model_reasoning)
        self.results_folder = QgsFileWidget(runs)
        self.results_folder.setStorageMode(QgsFileWidget.GetDirectory)
        self.results_folder.lineEdit().setPlaceholderText(str(DEFAULT_RESULTS_FOLDER))
        form.addRow("Results folder", self.results_folder)
        self.crs_combo = QComboBox(runs)
        self.crs_combo.addItem("Raster's CRS", "raster")
        self.crs_combo.addItem("Project's CRS (reprojected)", "project")
        form.addRow("Result CRS", self.crs_combo)
        self.always_upload = QCheckBox("Upload every raster (backend on another machine)", runs)
        form.addRow("", self.always_upload)
        layout.addWidget(runs)

        note = QLabel("The backend never runs inside QGIS: it is a separate Python "
                      "environment with PyTorch, reached over HTTP on 127.0.0.1.", self)
        note.setWordWrap(True)
        layout.addWidget(note)
        box = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel, self)
        box.accepted.connect(self.accept)
        box.rejected.connect(self.reject)
        layout.addWidget(box)
        self._show(self.settings)

    def _show(self, s: PluginSettings) -> None:
        self.url_edit.setText(s.backend_url)
        self.token_edit.setText(s.token)
        self.state_file.setFilePath(s.state_file)
        self.timeout_spin.setValue(s.request_timeout)
        self.python_file.setFilePath(s.python_path)
        self.auto_start.setChecked(s.auto_start)
        self.device_combo.setEditText(s.device)
        self.model_ov.setText(s.model_open_vocabulary)
        self.model_reasoning.setText(s.model_reasoning)
        self.results_folder.setFilePath(s.results_folder)
        self.crs_combo.setCurrentIndex(max(0, self.crs_combo.findData(s.output_crs)))
        self.always_upload.setChecked(s.always_upload)

    def values(self) -> PluginSettings:
        """The settings as edited (history kept)."""
        s = PluginSettings.load()
        s.backend_url = self.url_edit.text().strip()
        s.token = self.token_edit.text().strip()
        s.state_file = self.state_file.filePath().strip()
        s.request_timeout = self.timeout_spin.value()
        s.python_path = self.python_file.filePath().strip()
        s.auto_start = self.auto_start.isChecked()
        s.device = self.device_combo.currentText().strip() or "auto"
        s.model_open_vocabulary = self.model_ov.text().strip()
        s.model_reasoning = self.model_reasoning.text().strip()
        s.results_folder = self.results_folder.filePath().strip()
        s.output_crs = self.crs_combo.currentData() or "raster"
        s.always_upload = self.always_upload.isChecked()
        return s

    def accept(self) -> None:
        self.settings = self.values()
        self.settings.save()
        super().accept()
