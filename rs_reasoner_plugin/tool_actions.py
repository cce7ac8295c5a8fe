"""The plugin's actions for the set-up dialog, the model manager and click-to-segment.

:class:`ToolActions` owns them and what they open, so the plugin object only creates it
in ``initGui`` and calls :meth:`ToolActions.unload`.
"""

from __future__ import annotations

from typing import Any

from qgis.PyQt.QtWidgets import QAction

from .backend_process import BackendProcess


class ToolActions:
    """``Set up the backend…``, ``Models…`` and the checkable ``Click to segment``."""

    def __init__(self, iface: Any, backend_process: BackendProcess) -> None:
        self.iface = iface
        self.backend_process = backend_process
        self.setup_dialog: Any = None
        self.model_manager: Any = None
        self.click_tool: Any = None
        main = iface.mainWindow()
        self.setup_action = QAction("Set up the backend…", main)
        self.setup_action.setObjectName("RsReasonerSetup")
        self.setup_action.setToolTip("Create the backend's own Python environment, install "
                                     "it with the PyTorch build for this machine, start or "
                                     "stop it")
        self.setup_action.triggered.connect(self.show_setup)
        self.models_action = QAction("Models…", main)
        self.models_action.setObjectName("RsReasonerModels")
        self.models_action.setToolTip("Download, delete and verify model weights")
        self.models_action.triggered.connect(self.show_models)
        self.click_action = QAction("Click to segment", main)
        self.click_action.setObjectName("RsReasonerClick")
        self.click_action.setCheckable(True)
        self.click_action.setToolTip("Click inside an object (right click: outside it) or "
                                     "drag a box; Enter keeps the polygon, Esc discards it. "
                                     "With a polygon selected in the current layer, clicks "
                                     "add parts to it (right click: cut them out)")
        self.click_action.toggled.connect(self._toggle_click_tool)
        self.actions = [self.setup_action, self.models_action, self.click_action]

    def _parent(self) -> Any:
        return self.iface.mainWindow() if self.iface is not None else None

    def show_setup(self) -> Any:
        from .setup_dialog import SetupDialog

        if self.setup_dialog is None:
            self.setup_dialog = SetupDialog(self.backend_process, self._parent())
        self.setup_dialog.show()
        self.setup_dialog.raise_()
        return self.setup_dialog

    def show_models(self) -> Any:
        from .model_manager import ModelManagerDialog

        if self.model_manager is None:
            self.model_manager = ModelManagerDialog(self.backend_process, self._parent())
        self.model_manager.show()
        self.model_manager.raise_()
        self.model_manager.refresh()
        return self.model_manager

    def _toggle_click_tool(self, checked: bool) -> None:
        from .click_tool import ClickSegmentTool

        canvas = self.iface.mapCanvas()
        if self.click_tool is None:
            self.click_tool = ClickSegmentTool(canvas, self.backend_process)
            self.click_tool.setAction(self.click_action)
            self.click_tool.failed.connect(
                lambda text: self.iface.messageBar().pushWarning("Click to segment", text))
        if checked:
            canvas.setMapTool(self.click_tool)
        elif canvas.mapTool() is self.click_tool:
            canvas.unsetMapTool(self.click_tool)

    def unload(self) -> None:
        for dialog in (self.setup_dialog, self.model_manager):
            if dialog is not None:
                dialog.shutdown()
                dialog.close()
                dialog.deleteLater()
        self.setup_dialog = self.model_manager = None
        if self.click_tool is not None:
            canvas = self.iface.mapCanvas()
            if canvas.mapTool() is self.click_tool:
                canvas.unsetMapTool(self.click_tool)
            self.click_tool.clear()
            self.click_tool = None
        for action in self.actions:
            action.deleteLater()
        self.actions = []
