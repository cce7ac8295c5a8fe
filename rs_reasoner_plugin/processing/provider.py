"""The 'rsreasoner' Processing provider."""

from __future__ import annotations

import os

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from ..backend_process import BackendProcess
from .batch_algorithm import BatchSegmentAlgorithm
from .segment_algorithm import SegmentByDescriptionAlgorithm

ICON = os.path.join(os.path.dirname(os.path.dirname(__file__)), "icon.svg")


class RsReasonerProvider(QgsProcessingProvider):
    """Provider id ``rsreasoner``; algorithms use the plugin's backend process for
    auto-start."""

    def __init__(self, backend_process: BackendProcess | None = None) -> None:
        super().__init__()
        self.backend_process = backend_process

    def id(self) -> str:
        return "rsreasoner"

    def name(self) -> str:
        return "RS Reasoner"

    def longName(self) -> str:  # noqa: N802 - Qt API
        return "RS Reasoner: segment remote-sensing imagery by description"

    def icon(self) -> QIcon:
        return QIcon(ICON)

    def loadAlgorithms(self) -> None:  # noqa: N802
        self.addAlgorithm(SegmentByDescriptionAlgorithm(self.backend_process))
        self.addAlgorithm(BatchSegmentAlgorithm(self.backend_process))
