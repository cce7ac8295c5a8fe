"""The plugin object: toolbar buttons, Plugins menu entries, the dock, the fine-tuning
dialog, the Processing provider, and the backend child process (stopped on unload if the
plugin started it)."""

from __future__ import annotations

import os

from qgis.core import QgsApplication
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtGui import QIcon
from qgis.PyQt.QtWidgets import QAction

from .backend_process import BackendProcess

MENU = "&RS Reasoner"
ICON_PATH = os.path.join(os.path.dirname(__file__), "icon.svg")
TRAIN_ICON_PATH = os.path.join(os.path.dirname(__file__), "icon_train.svg")


class RsReasonerPlugin:
    """Created by :func:`classFactory`.

    Attributes:
        iface: QgisInterface (None under qgis_process: only initProcessing is called).
        dock: The dock (after initGui).
        train_dialog: The fine-tuning dialog (after it was first opened).
        provider: The Processing provider (after initProcessing).
        backend_process: The backend child process the plugin may start.
    """

    def __init__(self, iface) -> None:  # noqa: ANN001
        self.iface = iface
        self.dock = None
        self.train_dialog = None
        self.provider = None
        self.toolbar = None
        self.actions: list[QAction] = []
        self.backend_process = BackendProcess()
        self.tools = None

    # -- Processing ----------------------------------------------------------------------------

    def initProcessing(self) -> None:  # noqa: N802 - QGIS API
        if self.provider is not None:
            return
        from .processing.provider import RsReasonerProvider

        self.provider = RsReasonerProvider(self.backend_process)
        QgsApplication.processingRegistry().addProvider(self.provider)

    # -- GUI -----------------------------------------------------------------------------------

    def initGui(self) -> None:  # noqa: N802 - QGIS API
        from .dock import SegmentDock

        self.initProcessing()
        icon = QIcon(ICON_PATH)
        main = self.iface.mainWindow()
        self.dock = SegmentDock(self.iface, self.backend_process, main,
                                open_settings=self.show_settings)
        self.iface.addDockWidget(Qt.RightDockWidgetArea, self.dock)
        self.dock.hide()

        self.toggle_action = QAction(icon, "Segment by description", main)
        self.toggle_action.setObjectName("RsReasonerToggleDock")
        self.toggle_action.setCheckable(True)
        self.toggle_action.setToolTip("RS Reasoner: segment the imagery by description")
        self.toggle_action.toggled.connect(self._toggle_dock)
        self.dock.visibilityChanged.connect(self.toggle_action.setChecked)
        self.train_action = QAction(QIcon(TRAIN_ICON_PATH), "Fine-tune on labelled parcels…",
                                    main)
        self.train_action.setObjectName("RsReasonerTrain")
        self.train_action.setToolTip("RS Reasoner: fine-tune a model on polygons whose class "
                                     "you know")
        self.train_action.triggered.connect(self.show_train_dialog)
        self.settings_action = QAction("Settings…", main)
        self.settings_action.setObjectName("RsReasonerSettings")
        self.settings_action.triggered.connect(self.show_settings)
        self.actions = [self.toggle_action, self.train_action, self.settings_action]
        from .tool_actions import ToolActions

        self.tools = ToolActions(self.iface, self.backend_process)  # set-up, models, clicks
        self.actions += self.tools.actions

        self.toolbar = self.iface.addToolBar("RS Reasoner")
        self.toolbar.setObjectName("RsReasonerToolbar")
        self.toolbar.addAction(self.toggle_action)
        self.toolbar.addAction(self.train_action)
        self.toolbar.addAction(self.tools.click_action)
        for action in self.actions:
            self.iface.addPluginToMenu(MENU, action)

    def _toggle_dock(self, checked: bool) -> None:
        if self.dock is None:
            return
        self.dock.setVisible(checked)
        if checked:
            self.dock.raise_()
            if self.dock.last_status is None:
                self.dock.refresh_status()

    def show_train_dialog(self):  # noqa: ANN201 - TrainDialog, imported lazily
        """Open (or raise) the fine-tuning dialog; it stays the same while QGIS runs."""
        from .train_dialog import TrainDialog

        if self.train_dialog is None:
            dock = self.dock
            self.train_dialog = TrainDialog(
                self.iface, self.backend_process,
                parent=self.iface.mainWindow() if self.iface else None,
                known_models=dock.models if dock is not None else None,
            )
            self.train_dialog.trainingFinished.connect(self._training_finished)
        self.train_dialog.show()
        self.train_dialog.raise_()
        self.train_dialog.activateWindow()
        if self.dock is not None and self.dock.last_status is None:
            self.dock.refresh_status()  # learn the model names (built-in ones are refused)
        return self.train_dialog

    def _training_finished(self, outcome) -> None:  # noqa: ANN001 - TrainOutcome
        # A new model (or a cancelled one's checkpoint) may be on the backend: list it.
        if outcome.job_id is not None and self.dock is not None:
            self.dock.refresh_status()

    def show_settings(self) -> None:
        from .settings_dialog import SettingsDialog

        dialog = SettingsDialog(parent=self.iface.mainWindow() if self.iface else None)
        if dialog.exec_() and self.dock is not None:
            self.dock.settings_saved()

    def unload(self) -> None:
        """Remove everything initGui/initProcessing added; stop our backend."""
        if self.tools is not None:
            self.tools.unload()
            self.tools = None
        for action in self.actions:
            if self.iface is not None:
                self.iface.removePluginMenu(MENU, action)
            action.deleteLater()
        self.actions = []
        if self.toolbar is not None:
            if self.iface is not None and self.iface.mainWindow() is not None:
                self.iface.mainWindow().removeToolBar(self.toolbar)
            self.toolbar.deleteLater()
            self.toolbar = None
        if self.train_dialog is not None:
            self.train_dialog.shutdown()
            self.train_dialog.close()
            self.train_dialog.deleteLater()
            self.train_dialog = None
        if self.dock is not None:
            self.dock.shutdown()
            if self.iface is not None:
                self.iface.removeDockWidget(self.dock)
            self.dock.deleteLater()
            self.dock = None
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
        self.backend_process.stop()
