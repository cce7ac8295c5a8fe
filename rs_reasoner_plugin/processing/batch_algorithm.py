"""``rsreasoner:batch_segment``: many rasters + query → one merged polygon layer.

Runs ``rs-reasoner batch`` with the backend's interpreter (RS Reasoner ▸ Settings), on this
machine's worker processes or on a Ray cluster, and loads the merged GeoPackage. The batch
folder keeps the manifest: running the algorithm again with the same folder resumes.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from typing import Any

from qgis.core import (
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
    QgsProcessingParameterVectorDestination,
    QgsProcessingParameterVectorLayer,
)

from ..settings import PluginSettings

#: How often the running batch is checked for output and cancellation (seconds).
_POLL_S = 0.2


def _file_of(layer: Any, what: str) -> str:
    path = layer.source().split("|")[0]
    if not os.path.isfile(path):
        raise QgsProcessingException(f"{what} '{layer.name()}' is not a local file; save it first.")
    return path


class BatchSegmentAlgorithm(QgsProcessingAlgorithm):
    INPUTS = "INPUTS"
    QUERY = "QUERY"
    MODEL = "MODEL"
    AREA = "AREA"
    RAY_ADDRESS = "RAY_ADDRESS"
    WORKERS = "WORKERS"
    FOLDER = "FOLDER"
    OUTPUT = "OUTPUT"

    def __init__(self, backend_process: Any = None) -> None:
        super().__init__()
        self.backend_process = backend_process

    def name(self) -> str:
        return "batch_segment"

    def displayName(self) -> str:  # noqa: N802 - Qt API
        return "Batch segment rasters by description"

    def shortHelpString(self) -> str:  # noqa: N802
        return (
            "Segments a whole collection of rasters (mosaicked where they share a grid; the "
            "first raster wins where they overlap) in resumable work units, on this machine "
            "or a Ray cluster (Ray address: auto or ray://host:port), and loads the merged "
            "polygons. Run again with the same batch folder to resume."
        )

    def createInstance(self) -> BatchSegmentAlgorithm:  # noqa: N802
        return BatchSegmentAlgorithm(self.backend_process)

    def initAlgorithm(self, config: dict | None = None) -> None:  # noqa: N802
        self.addParameter(QgsProcessingParameterMultipleLayers(
            self.INPUTS, "Rasters", QgsProcessing.TypeRaster))  # fmt: skip
        self.addParameter(QgsProcessingParameterString(self.QUERY, "Query"))
        self.addParameter(QgsProcessingParameterString(
            self.MODEL, "Model (empty: the mode's default)", optional=True))  # fmt: skip
        polygons = [QgsProcessing.TypeVectorPolygon]
        self.addParameter(QgsProcessingParameterVectorLayer(
            self.AREA, "Area (polygons)", polygons, optional=True))  # fmt: skip
        self.addParameter(QgsProcessingParameterString(
            self.RAY_ADDRESS, "Ray address (empty: this machine)", optional=True))  # fmt: skip
        integer = QgsProcessingParameterNumber.Integer
        self.addParameter(QgsProcessingParameterNumber(
            self.WORKERS, "Workers", integer, 2, minValue=0))  # fmt: skip
        self.addParameter(QgsProcessingParameterFolderDestination(self.FOLDER, "Batch folder"))
        self.addParameter(QgsProcessingParameterVectorDestination(
            self.OUTPUT, "Merged polygons"))  # fmt: skip

    def command(self, parameters: dict, context: Any) -> tuple[list[str], str, str]:
        """The ``rs-reasoner batch`` command line, the batch folder and the output file."""
        python = PluginSettings.load().python_path.strip()
        if not python:
            raise QgsProcessingException(
                "Set the backend's Python in RS Reasoner ▸ Settings to run a batch.")  # fmt: skip
        layers = self.parameterAsLayerList(parameters, self.INPUTS, context)
        if not layers:
            raise QgsProcessingException("Choose at least one raster.")
        inputs = [_file_of(layer, "Raster") for layer in layers]
        folder = self.parameterAsString(parameters, self.FOLDER, context)
        output = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        if not output.lower().endswith(".gpkg"):
            output = os.path.splitext(output)[0] + ".gpkg"
        argv = [python, "-m", "rs_reasoner.cli", "batch", *inputs,
                "--query", self.parameterAsString(parameters, self.QUERY, context),
                "--out", folder, "--merged", output, "--quiet",
                "--workers", str(self.parameterAsInt(parameters, self.WORKERS, context)),
                ]  # fmt: skip
        model = self.parameterAsString(parameters, self.MODEL, context).strip()
        if model:
            argv += ["--model", model]
        area = self.parameterAsVectorLayer(parameters, self.AREA, context)
        if area is not None:
            argv += ["--area", _file_of(area, "Area layer")]
        ray = self.parameterAsString(parameters, self.RAY_ADDRESS, context).strip()
        if ray:
            argv += ["--ray-address", ray]
        return argv, folder, output

    def processAlgorithm(self, parameters: dict, context: Any, feedback: Any) -> dict:  # noqa: N802
        argv, folder, output = self.command(parameters, context)
        feedback.pushInfo(" ".join(argv))
        # Output to a file, not a pipe: a long report would fill the pipe and block the batch.
        with tempfile.TemporaryFile("w+") as log:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, text=True)
            while proc.poll() is None:
                if feedback.isCanceled():
                    proc.terminate()  # the manifest keeps what is done: rerun to resume
                    proc.wait(30)
                    raise QgsProcessingException(f"Cancelled; rerun with {folder} to resume.")
                time.sleep(_POLL_S)
            log.seek(0)
            text = log.read()
        for line in text.splitlines():
            feedback.pushInfo(line)
        if proc.returncode != 0:
            raise QgsProcessingException(f"The batch failed: {text.strip()[-1000:]}")
        return {self.OUTPUT: output, self.FOLDER: folder}
