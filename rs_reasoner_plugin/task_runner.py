"""GUI side of a backend job: one task at a time, followed by a progress bar and a stage
label. Shared by the segmentation dock and the fine-tuning dialog.
"""

from __future__ import annotations

from typing import Any

from qgis.core import QgsApplication
from qgis.PyQt.QtWidgets import QBoxLayout, QLabel, QProgressBar, QWidget

from .tasks import BackendJobTask


class TaskRunner:
    """Mixin for a widget that runs one :class:`~.tasks.BackendJobTask` at a time.

    The widget provides ``progress`` (a QProgressBar), ``stage_label`` (a QLabel) and
    overrides ``_set_running(running)``, and sets ``task`` and ``last_outcome`` to None in its
    ``__init__``.
    """

    task: Any
    last_outcome: Any
    progress: QProgressBar
    stage_label: QLabel

    def is_running(self) -> bool:
        return self.task is not None

    def _set_running(self, running: bool) -> None:
        """Enable/disable the widget's controls (the widget overrides this)."""
        raise NotImplementedError

    def _add_progress_widgets(self, layout: QBoxLayout, parent: QWidget) -> None:
        """Create ``progress`` and ``stage_label`` and add them to ``layout``.

        Args:
            layout: The widget's main layout.
            parent: Their parent widget.
        """
        self.progress = QProgressBar(parent)
        self.progress.setRange(0, 100)
        layout.addWidget(self.progress)
        self.stage_label = QLabel("", parent)
        self.stage_label.setWordWrap(True)
        layout.addWidget(self.stage_label)

    def _launch(self, task: BackendJobTask) -> None:
        """Show the task's progress and stage, mark the widget running and queue the task.

        Args:
            task: A task whose finished signal the widget has already connected.
        """
        task.progressChanged.connect(lambda p: self.progress.setValue(int(p)))
        task.stageChanged.connect(self.stage_label.setText)
        self.task = task
        self.stage_label.setText("starting…")
        self._set_running(True)
        QgsApplication.taskManager().addTask(task)

    def _cancel_task(self) -> None:
        """Ask the running task (if any) to stop."""
        if self.task is not None:
            self.stage_label.setText("cancelling…")
            self.task.cancel()

    def _task_done(self, outcome: Any) -> Any:
        """Forget the finished task and keep its outcome.

        Args:
            outcome: The task's outcome.

        Returns:
            The task that finished (None when the widget did not start it).
        """
        task, self.task = self.task, None
        self.last_outcome = outcome
        self._set_running(False)
        return task
