"""The set-up dialog: make the backend's own environment, install it, start and stop it.

The commands come from :mod:`.setup_plan`; :class:`SetupTask` runs them one after another
in a QgsTask, sending each output line to the dialog's log. On success the new
environment's interpreter becomes the backend interpreter in the settings (auto-start
on), so the next run finds or starts the backend with no more steps. An environment the
task created is removed again if the set-up fails or is cancelled.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from qgis.core import QgsApplication, QgsTask
from qgis.gui import QgsFileWidget
from qgis.PyQt.QtCore import pyqtSignal
from qgis.PyQt.QtGui import QFontDatabase
from qgis.PyQt.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from . import setup_plan
from .backend_process import BackendProcess, BackendStartError
from .backend_state import state_path
from .settings import PluginSettings


def default_venv() -> Path:
    """Where the environment goes unless the user says otherwise (in the QGIS profile)."""
    return Path(QgsApplication.qgisSettingsDirPath()) / "rs-reasoner" / "backend-venv"


def _clean_env() -> dict[str, str]:
    """The environment for the commands, without QGIS's Python paths."""
    env = dict(os.environ)
    for var in ("PYTHONHOME", "PYTHONPATH", "VIRTUAL_ENV", "QGIS_PREFIX_PATH",
                "PYTHONSTARTUP"):
        env.pop(var, None)
    env["PYTHONUNBUFFERED"] = "1"
    env["PIP_NO_INPUT"] = "1"
    return env


class SetupTask(QgsTask):
    """Runs the set-up steps; ``lineLogged`` carries their output, ``done`` the outcome
    (an error text, '' on success)."""

    lineLogged = pyqtSignal(str)  # noqa: N815 - Qt signal naming
    done = pyqtSignal(str)

    def __init__(self, options: setup_plan.SetupOptions) -> None:
        super().__init__("RS Reasoner: set up the backend", QgsTask.CanCancel)
        self.options = options
        self.steps = setup_plan.plan(options)
        self.error = ""
        self._proc: subprocess.Popen | None = None
        self._created = not options.venv.exists()
        if not self._created and setup_plan.venv_python(options.venv).exists():
            self.steps = self.steps[1:]  # an environment is there: install into it
        elif not self._created and any(options.venv.iterdir()):
            raise ValueError(f"{options.venv} exists and is not an empty folder nor a "
                             "Python environment; choose another folder.")

    def run(self) -> bool:
        env = _clean_env()
        for k, step in enumerate(self.steps):
            if self.isCanceled():
                self.error = "Cancelled."
                break
            self.setProgress(100.0 * k / len(self.steps))
            self.lineLogged.emit(f"▶ {step.label}: {' '.join(step.argv)}")
            try:
                self._proc = subprocess.Popen(
                    step.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                    errors="replace", env=env, stdin=subprocess.DEVNULL,
                )
            except OSError as exc:
                self.error = f"{step.label} failed: cannot run {step.argv[0]} ({exc})."
                break
            assert self._proc.stdout is not None
            for line in self._proc.stdout:
                self.lineLogged.emit(line.rstrip())
            self._proc.stdout.close()
            code = self._proc.wait()
            if self.isCanceled():
                self.error = "Cancelled."
                break
            if code != 0:
                self.error = f"{step.label} failed (exit status {code}); see the log above."
                break
        if self.error and self._created:
            shutil.rmtree(self.options.venv, ignore_errors=True)
            self.lineLogged.emit(f"Removed the unfinished environment {self.options.venv}.")
        self.setProgress(100.0)
        return not self.error

    def cancel(self) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
        super().cancel()

    def finished(self, result: bool) -> None:  # noqa: ARG002 - QgsTask API
        self.done.emit(self.error)


class SetupDialog(QDialog):
    """Choose folder, source and PyTorch build; install; start or stop the backend."""

    def __init__(self, backend_process: BackendProcess, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("RS Reasoner — set up the backend")
        self.setObjectName("RsReasonerSetupDialog")
        self.backend_process = backend_process
        self.task: SetupTask | None = None
        self.gpu = setup_plan.detect_gpu()
        layout = QVBoxLayout(self)
        form = QFormLayout()
        layout.addLayout(form)

        self.venv_edit = QgsFileWidget(self)
        self.venv_edit.setStorageMode(QgsFileWidget.GetDirectory)
        self.venv_edit.setFilePath(str(default_venv()))
        self.venv_edit.setToolTip("Folder of the backend's own Python environment (created "
                                  "if missing; QGIS's Python is never changed).")
        form.addRow("Environment folder", self.venv_edit)

        self.uv = setup_plan.find_uv() or ""
        self.use_uv = QCheckBox(f"Use uv ({self.uv})" if self.uv else "Use uv (not found)")
        self.use_uv.setChecked(bool(self.uv))
        self.use_uv.setEnabled(bool(self.uv))
        self.use_uv.setToolTip("uv makes the environment and installs much faster than pip.")
        form.addRow("", self.use_uv)
        self.python_edit = QLineEdit(setup_plan.default_base_python())
        self.python_edit.setToolTip("Python 3.10 or newer to make the environment with "
                                    "(without uv).")
        form.addRow("Python", self.python_edit)

        self.source_combo = QComboBox()
        self.source_combo.addItem("PyPI (rs-reasoner)", "pypi")
        self.source_combo.addItem("A wheel (.whl)", "wheel")
        self.source_combo.addItem("A source folder", "folder")
        self.source_combo.setToolTip("Where rs-reasoner comes from.")
        self.source_path = QgsFileWidget(self)
        self.source_path.setEnabled(False)
        self.source_combo.currentIndexChanged.connect(self._source_changed)
        form.addRow("Install from", self.source_combo)
        form.addRow("", self.source_path)

        self.torch_combo = QComboBox()
        detected = setup_plan.torch_build(self.gpu)
        label = (f"{detected} — detected {self.gpu.name}, CUDA {self.gpu.cuda[0]}."
                 f"{self.gpu.cuda[1]}" if self.gpu else "cpu — no NVIDIA GPU detected")
        self.torch_combo.addItem(label, detected)
        for build in [setup_plan.CPU_BUILD, *(b for b, _ in setup_plan.TORCH_CUDA_BUILDS)]:
            if build != detected:
                self.torch_combo.addItem(build, build)
        self.torch_combo.addItem("none (PyTorch from PyPI with the backend)", "none")
        self.torch_combo.setToolTip("The PyTorch build: the newest CUDA build your driver "
                                    "runs, or CPU.")
        form.addRow("PyTorch", self.torch_combo)

        self.pip_args = QLineEdit()
        self.pip_args.setPlaceholderText("e.g. --no-index --find-links /path/to/wheels")
        self.pip_args.setToolTip("More options for installing rs-reasoner (offline installs, "
                                 "mirrors).")
        form.addRow("Extra pip options", self.pip_args)

        buttons = QHBoxLayout()
        self.install_button = QPushButton("Install")
        self.install_button.clicked.connect(self.install)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        self.start_button = QPushButton("Start backend")
        self.start_button.clicked.connect(self.start_backend)
        self.stop_button = QPushButton("Stop backend")
        self.stop_button.clicked.connect(self.stop_backend)
        for b in (self.install_button, self.cancel_button, self.start_button, self.stop_button):
            buttons.addWidget(b)
        layout.addLayout(buttons)
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        layout.addWidget(self.progress)
        self.status_label = QLabel("")
        self.status_label.setWordWrap(True)
        layout.addWidget(self.status_label)
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setFont(QFontDatabase.systemFont(QFontDatabase.FixedFont))
        self.log.setMinimumHeight(200)
        layout.addWidget(self.log)
        self.resize(640, 520)
        self._update_backend_buttons()

    # -- choices ---------------------------------------------------------------------------

    def _source_changed(self) -> None:
        kind = self.source_combo.currentData()
        self.source_path.setEnabled(kind != "pypi")
        if kind == "wheel":
            self.source_path.setStorageMode(QgsFileWidget.GetFile)
            self.source_path.setFilter("Wheels (*.whl)")
        elif kind == "folder":
            self.source_path.setStorageMode(QgsFileWidget.GetDirectory)

    def options(self) -> setup_plan.SetupOptions:
        """The choices as set-up options."""
        kind = self.source_combo.currentData()
        return setup_plan.SetupOptions(
            venv=Path(os.path.expanduser(self.venv_edit.filePath().strip())),
            source="pypi" if kind == "pypi" else self.source_path.filePath().strip(),
            torch_build=self.torch_combo.currentData(),
            base_python=self.python_edit.text().strip(),
            uv=self.uv if self.use_uv.isChecked() else "",
            extra_pip_args=self.pip_args.text().split(),
        )

    # -- install ---------------------------------------------------------------------------

    def install(self) -> None:
        """Start the set-up task (errors in the choices are shown, nothing runs)."""
        if self.task is not None:
            return
        try:
            options = self.options()
            if not str(options.venv).strip("."):
                raise ValueError("Choose the environment folder.")
            task = SetupTask(options)
        except ValueError as exc:
            self.status_label.setText(str(exc))
            return
        self.log.clear()
        self.status_label.setText("Installing…")
        task.lineLogged.connect(self.log.appendPlainText)
        task.progressChanged.connect(lambda p: self.progress.setValue(int(p)))
        task.done.connect(self._installed)
        self.task = task
        self._set_running(True)
        QgsApplication.taskManager().addTask(task)

    def cancel(self) -> None:
        if self.task is not None:
            self.status_label.setText("Cancelling…")
            self.task.cancel()

    def _set_running(self, running: bool) -> None:
        self.install_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)

    def _installed(self, error: str) -> None:
        task, self.task = self.task, None
        self._set_running(False)
        if error:
            self.status_label.setText(error)
            return
        python = str(setup_plan.venv_python(task.options.venv))
        settings = PluginSettings.load()
        settings.python_path = python
        settings.auto_start = True
        settings.save()
        self.status_label.setText(f"Installed. The backend interpreter is now {python}; "
                                  "the plugin starts it when needed.")
        self._update_backend_buttons()

    # -- backend ---------------------------------------------------------------------------

    def start_backend(self) -> None:
        """Start the backend with the interpreter in the settings (returns at once)."""
        settings = PluginSettings.load()
        try:
            pid = self.backend_process.start(settings.python_path, state_path(settings.state_file),
                                             settings.device)
        except BackendStartError as exc:
            self.status_label.setText(str(exc))
            return
        self.status_label.setText(f"Backend started (process {pid}); log: "
                                  f"{self.backend_process.log_path}")
        self._update_backend_buttons()

    def stop_backend(self) -> None:
        self.backend_process.stop()
        self.status_label.setText("Backend stopped.")
        self._update_backend_buttons()

    def _update_backend_buttons(self) -> None:
        running = self.backend_process.running()
        self.start_button.setEnabled(not running)
        self.stop_button.setEnabled(running)
        self.start_button.setToolTip("Start the backend with the interpreter set in Settings.")
        self.stop_button.setToolTip("Stop the backend this plugin started.")

    def shutdown(self) -> None:
        if self.task is not None:
            self.task.cancel()
