"""The model manager: every model with its weights' size, licence and presence; download
(with progress, cancel and a Hub token for gated repositories), delete and verify.

All work goes through the backend (``/models/{name}/weights``, ``/pulls/{id}``...), so the
weights land in the backend's Hugging Face cache whatever machine it runs on.
"""

from __future__ import annotations

import time
from typing import Any

from qgis.core import QgsApplication
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from .backend_process import BackendProcess
from .settings import PluginSettings
from .tasks import backend_config
from .tool_api import BackendCallTask, ToolClient

#: The name under which the backend lists click-to-segment's SAM 2.1 weights.
CLICK_MODEL = "sam2.1-click"
COLUMNS = ("Model", "Size", "Licence", "Weights", "Description")
#: Seconds between two looks at a running download.
POLL_INTERVAL = 0.2


def human_size(n: int | None) -> str:
    """Bytes as ``12.3 MB`` ('?' when unknown)."""
    if n is None:
        return "?"
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"


def _list_models(client: ToolClient, task: BackendCallTask) -> list[dict[str, Any]]:
    rows = []
    models = client.models() + [{"name": CLICK_MODEL, "description":
                                 "Click-to-segment on the map (SAM 2.1 small)",
                                 "weights": [{}], "trained": False}]
    for m in models:
        if task.isCanceled():
            break
        row = {"name": m["name"], "description": m.get("description", ""),
               "trained": m.get("trained", False), "needs_weights": bool(m.get("weights"))}
        if row["needs_weights"]:
            row.update(client.model_weights(m["name"]))
        rows.append(row)
    return rows


class ModelManagerDialog(QDialog):
    """The models table and its actions; one backend task at a time."""

    def __init__(self, backend_process: BackendProcess, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("RS Reasoner — models")
        self.setObjectName("RsReasonerModelManager")
        self.backend_process = backend_process
        self.task: BackendCallTask | None = None
        self.rows: list[dict[str, Any]] = []
        self.last_result: Any = None
        self.last_pull: dict[str, Any] | None = None
        self._note = ""  # what the last action did, kept above the refreshed listing
        layout = QVBoxLayout(self)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.itemSelectionChanged.connect(self._update_buttons)
        layout.addWidget(self.table)
        token_row = QHBoxLayout()
        token_row.addWidget(QLabel("Hub token"))
        self.token_edit = QLineEdit()
        self.token_edit.setEchoMode(QLineEdit.Password)
        self.token_edit.setPlaceholderText("only for gated models such as facebook/sam3")
        self.token_edit.setToolTip("A Hugging Face access token (read) of an account that "
                                   "accepted the model's licence. Sent with the download, "
                                   "never stored.")
        token_row.addWidget(self.token_edit)
        layout.addLayout(token_row)
        buttons = QHBoxLayout()
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.setToolTip("List the models and ask the Hub for sizes and licences.")
        self.download_button = QPushButton("Download")
        self.download_button.setToolTip("Download the selected model's weights into the "
                                        "backend's Hugging Face cache.")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop the download; nothing half-downloaded stays.")
        self.delete_button = QPushButton("Delete")
        self.delete_button.setToolTip("Remove the selected model's weights from the cache.")
        self.verify_button = QPushButton("Verify")
        self.verify_button.setToolTip("Check every byte of the cached weights against the "
                                      "Hub's hashes.")
        self.refresh_button.clicked.connect(self.refresh)
        self.download_button.clicked.connect(self.download_selected)
        self.cancel_button.clicked.connect(self.cancel)
        self.delete_button.clicked.connect(lambda: self.delete_selected())
        self.verify_button.clicked.connect(self.verify_selected)
        for b in (self.refresh_button, self.download_button, self.cancel_button,
                  self.delete_button, self.verify_button):
            buttons.addWidget(b)
        layout.addLayout(buttons)
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        layout.addWidget(self.progress)
        self.status_label = QLabel("")
        self.status_label.setWordWrap(True)
        self.status_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        layout.addWidget(self.status_label)
        self.resize(820, 420)
        self._update_buttons()

    # -- table -----------------------------------------------------------------------------

    def selected_name(self) -> str | None:
        rows = self.table.selectionModel().selectedRows()
        return self.rows[rows[0].row()]["name"] if rows else None

    def select(self, name: str) -> None:
        for k, row in enumerate(self.rows):
            if row["name"] == name:
                self.table.selectRow(k)

    def _fill(self, rows: list[dict[str, Any]]) -> None:
        selected = self.selected_name()
        self.rows = rows
        self.table.setRowCount(len(rows))
        for k, row in enumerate(rows):
            if row.get("trained"):
                status, size, licence = "trained here", "", ""
            elif not row["needs_weights"]:
                status, size, licence = "none needed", "", ""
            else:
                status = "present" if row.get("available") else "missing"
                size = human_size(row.get("size") if row.get("size") is not None
                                  else row.get("size_on_disk") or None)
                licences = sorted({w.get("license") or "?" for w in row.get("weights", [])})
                licence = ", ".join(licences)
            for c, text in enumerate((row["name"], size, licence, status, row["description"])):
                item = QTableWidgetItem(text)
                if row["needs_weights"] and c == 3:
                    hub_errors = [w["hub_error"] for w in row.get("weights", [])
                                  if w.get("hub_error")]
                    repos = ", ".join(w["repo_id"] for w in row.get("weights", []))
                    item.setToolTip("\n".join([repos, *hub_errors]))
                self.table.setItem(k, c, item)
        self.table.resizeColumnsToContents()
        if selected:
            self.select(selected)
        self._update_buttons()

    def _update_buttons(self) -> None:
        busy = self.task is not None
        row = next((r for r in self.rows if r["name"] == self.selected_name()), None)
        weights = bool(row and row["needs_weights"] and not row.get("trained"))
        self.refresh_button.setEnabled(not busy)
        self.download_button.setEnabled(not busy and weights and not row.get("available"))
        self.delete_button.setEnabled(not busy and weights and bool(row.get("size_on_disk")))
        self.verify_button.setEnabled(not busy and weights)
        self.cancel_button.setEnabled(busy)

    # -- tasks -----------------------------------------------------------------------------

    def _run(self, description: str, work: Any, then: Any) -> None:
        settings = PluginSettings.load()
        task = BackendCallTask(description, backend_config(settings, self.backend_process), work)

        def finished(result: Any, error: Any) -> None:
            self.task = None
            self.last_result = result
            self.progress.setValue(100 if error is None else 0)
            if error is not None:
                self.status_label.setText(str(error))
            else:
                then(result)
            self._update_buttons()

        task.done.connect(finished)
        self.progress.setValue(0)
        task.progressChanged.connect(lambda p: self.progress.setValue(int(p)))
        self.task = task
        self._update_buttons()
        QgsApplication.taskManager().addTask(task)

    def refresh(self) -> None:
        """List the models with their weights' sizes and licences."""
        self.status_label.setText("Asking the backend…")
        self._run("RS Reasoner: list models", _list_models, self._listed)

    def _listed(self, rows: list[dict[str, Any]]) -> None:
        self._fill(rows)
        missing = sum(1 for r in rows if r["needs_weights"] and not r.get("available"))
        listing = f"{len(rows)} models; {missing} without their weights."
        self.status_label.setText(f"{self._note}\n{listing}" if self._note else listing)
        self._note = ""

    def download_selected(self) -> None:
        """Download the selected model's weights, following the pull's progress."""
        name = self.selected_name()
        if name is None:
            return
        token = self.token_edit.text().strip() or None

        def work(client: ToolClient, task: BackendCallTask) -> dict[str, Any]:
            pull = client.pull(name, token)
            cancelled = False
            while pull["status"] in ("queued", "running"):
                if task.isCanceled() and not cancelled:
                    client.cancel_pull(pull["id"])
                    cancelled = True
                time.sleep(POLL_INTERVAL)
                pull = client.pull_status(pull["id"])
                task.setProgress(100.0 * pull["progress"])
            return pull

        self.status_label.setText(f"Downloading the weights of {name}…")
        self._run(f"RS Reasoner: download {name}", work, self._downloaded)

    def _downloaded(self, pull: dict[str, Any]) -> None:
        self.last_pull = pull
        name = pull["model"]
        if pull["status"] == "succeeded":
            text = f"Downloaded {name} ({human_size(pull['total_bytes'])})."
        elif pull["status"] == "cancelled":
            text = f"Download of {name} cancelled; nothing of it was kept."
        else:
            err = pull.get("error") or {}
            text = f"Download of {name} failed: {err.get('detail')} {err.get('hint') or ''}"
        self._note = text.strip()
        self.refresh()

    def cancel(self) -> None:
        if self.task is not None:
            self.status_label.setText("Cancelling…")
            self.task.cancel()

    def delete_selected(self, confirm: bool = True) -> None:
        """Delete the selected model's weights (after asking, unless ``confirm`` is off)."""
        name = self.selected_name()
        if name is None:
            return
        if confirm and QMessageBox.question(
            self, "Delete weights", f"Remove the weights of {name} from the backend's cache?"
        ) != QMessageBox.Yes:
            return

        def done(out: dict[str, Any]) -> None:
            also = out.get("also_removed_from") or []
            self._note = (f"Deleted the weights of {name} ({human_size(out['freed_bytes'])} "
                          "freed)." + (f" {', '.join(also)} used them too." if also else ""))
            self.refresh()

        self._run(f"RS Reasoner: delete {name}",
                  lambda client, task: client.delete_weights(name), done)

    def verify_selected(self) -> None:
        """Check the selected model's cached weights against the Hub's hashes."""
        name = self.selected_name()
        if name is None:
            return

        def done(out: dict[str, Any]) -> None:
            files = [f for w in out["weights"] for f in w["files"]]
            bad = [f"{f['path']}: {f['detail']}" for f in files if not f["ok"]]
            missing = [w["repo_id"] for w in out["weights"] if not w["present"]]
            if out["ok"]:
                self.status_label.setText(f"{name}: all {len(files)} files match the Hub.")
            else:
                self.status_label.setText(
                    f"{name}: " + "; ".join([*(f"{r} is missing" for r in missing), *bad])
                    + ". Delete and download again.")

        self._run(f"RS Reasoner: verify {name}",
                  lambda client, task: client.verify(name), done)

    def shutdown(self) -> None:
        if self.task is not None:
            self.task.cancel()
