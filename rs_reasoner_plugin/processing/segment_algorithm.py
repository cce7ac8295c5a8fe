"""``rsreasoner:segment_by_description``: raster + extent + query → polygon layer.

``prepareAlgorithm`` (GUI/main thread) reads the layer; ``processAlgorithm`` (a worker
thread in the toolbox) talks to the backend with the same code as the dock's task.
"""

from __future__ import annotations

from typing import Any

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsFeatureSink,
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsRasterBlockFeedback,
    QgsWkbTypes,
)

from ..api_client import BackendError
from ..backend_process import BackendProcess
from ..params import MODE_VALUES, MODES, Extent, SegmentOptions, bounds, defaults
from ..raster_export import (
    ExportError,
    ExportJob,
    local_file_path,
    native_resolution,
    prepare_export,
)
from ..results import ResultError, build_fields, iter_features, result_crs
from ..run_request import ChoiceError, RunChoices, build_request
from ..settings import PluginSettings
from ..tasks import JobCancelled, backend_config, execute_job

#: The advanced parameters' defaults.
_OPTIONS = defaults(SegmentOptions)


class SegmentByDescriptionAlgorithm(QgsProcessingAlgorithm):
    INPUT = "INPUT"
    EXTENT = "EXTENT"
    QUERY = "QUERY"
    MODE = "MODE"
    MODEL = "MODEL"
    BANDS = "BANDS"
    RESOLUTION = "RESOLUTION"
    SCORE_THRESHOLD = "SCORE_THRESHOLD"
    MIN_AREA = "MIN_AREA"
    SIMPLIFY = "SIMPLIFY"
    OUTPUT = "OUTPUT"
    FEATURE_COUNT = "FEATURE_COUNT"
    REASONING = "REASONING"

    def __init__(self, backend_process: BackendProcess | None = None) -> None:
        super().__init__()
        self.backend_process = backend_process
        self._prepared: dict[str, Any] = {}

    # -- identity ----------------------------------------------------------------------------

    def name(self) -> str:
        return "segment_by_description"

    def displayName(self) -> str:  # noqa: N802 - Qt API
        return "Segment by description"

    def group(self) -> str:
        return "Segmentation"

    def groupId(self) -> str:  # noqa: N802
        return "segmentation"

    def shortHelpString(self) -> str:  # noqa: N802
        return (
            "Segments a raster by a text query on the local RS Reasoner backend and returns "
            "georeferenced polygons (attributes label, score, area, query, mode, model, "
            "reasoning) in the raster's CRS.\n\n"
            "Query: class names separated by commas ('buildings, roads; streets, water', "
            "';' separates synonyms) or a sentence ('the buildings most at risk from the "
            "river'). Auto mode sends lists to the open-vocabulary model and sentences to "
            "the reasoning model.\n\n"
            "File rasters are read by the backend directly; other layers (WMS, XYZ, "
            "in-memory) are read through QGIS for the extent and uploaded.\n\n"
            "The backend must be running ('rs-reasoner serve'), or its interpreter set in "
            "RS Reasoner ▸ Settings with auto-start on."
        )

    def createInstance(self) -> SegmentByDescriptionAlgorithm:  # noqa: N802
        return SegmentByDescriptionAlgorithm(self.backend_process)

    # -- parameters ----------------------------------------------------------------------------

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, "Raster layer"))
        self.addParameter(QgsProcessingParameterExtent(
            self.EXTENT, "Extent (default: the whole raster)", optional=True))
        self.addParameter(QgsProcessingParameterString(self.QUERY, "Query"))
        self.addParameter(QgsProcessingParameterEnum(
            self.MODE, "Mode", options=[label for _, label in MODES], defaultValue=0))
        advanced = [
            QgsProcessingParameterString(self.MODEL, "Model (default: the mode's default)",
                                         optional=True),
            QgsProcessingParameterString(self.BANDS, "Bands as R G B (e.g. '4 3 2')",
                                         optional=True),
            QgsProcessingParameterNumber(
                self.RESOLUTION, "Ground resolution (map units per pixel; 0 = native)",
                QgsProcessingParameterNumber.Double, defaultValue=0.0, minValue=0.0),
            _option_parameter(self.SCORE_THRESHOLD, "score_threshold", "Score threshold"),
            _option_parameter(self.MIN_AREA, "min_area", "Minimum polygon area (map units²)"),
            _option_parameter(self.SIMPLIFY, "simplify", "Simplification tolerance (map units)"),
        ]
        for p in advanced:
            p.setFlags(p.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
            self.addParameter(p)
        self.addParameter(QgsProcessingParameterFeatureSink(
            self.OUTPUT, "Segmented polygons", QgsProcessing.TypeVectorPolygon))
        self.addOutput(QgsProcessingOutputNumber(self.FEATURE_COUNT, "Number of polygons"))
        self.addOutput(QgsProcessingOutputString(self.REASONING, "Reasoning text"))

    # -- running -------------------------------------------------------------------------------

    def prepareAlgorithm(self, parameters: dict[str, Any], context, feedback) -> bool:  # noqa: N802, ANN001
        layer = self.parameterAsRasterLayer(parameters, self.INPUT, context)
        if layer is None or not layer.isValid():
            raise QgsProcessingException("The input raster layer is not valid.")
        settings = PluginSettings.load()
        extent = None
        if parameters.get(self.EXTENT) not in (None, ""):
            rect = self.parameterAsExtent(parameters, self.EXTENT, context, layer.crs())
            if not rect.isNull():
                extent = rect
        choices = RunChoices(
            query=self.parameterAsString(parameters, self.QUERY, context) or "",
            mode=MODE_VALUES[self.parameterAsEnum(parameters, self.MODE, context)],
            model=self.parameterAsString(parameters, self.MODEL, context) or "",
            bands=self.parameterAsString(parameters, self.BANDS, context) or "",
            resolution=self.parameterAsDouble(parameters, self.RESOLUTION, context),
            score_threshold=self.parameterAsDouble(parameters, self.SCORE_THRESHOLD, context),
            min_area=self.parameterAsDouble(parameters, self.MIN_AREA, context),
            simplify=self.parameterAsDouble(parameters, self.SIMPLIFY, context),
        )
        path = None if settings.always_upload else local_file_path(layer)
        export: ExportJob | None = None
        try:
            built = build_request(
                choices,
                by_path=path is not None,
                extent=None if extent is None else Extent(
                    extent.xMinimum(), extent.yMinimum(), extent.xMaximum(),
                    extent.yMaximum(), None),
                default_models=settings.default_models(),
                native_resolution=native_resolution(layer),
            )
            if path is None:
                export = prepare_export(layer, extent, built.export_resolution)
        except (ChoiceError, ExportError) as exc:
            raise QgsProcessingException(str(exc)) from None
        params = built.params
        self._prepared = {
            "params": params,
            "path": path,
            "export": export,
            "crs": QgsCoordinateReferenceSystem(layer.crs()),
            "backend": backend_config(settings, self.backend_process),
        }
        return True

    def processAlgorithm(self, parameters: dict[str, Any], context, feedback) -> dict[str, Any]:  # noqa: N802, ANN001
        prep = self._prepared
        backend = prep["backend"]

        def stage(text: str) -> None:
            feedback.setProgressText(text)

        try:
            stage("connecting to the backend")
            client, health = backend.connect(feedback.isCanceled, stage)
            feedback.pushInfo(f"backend {health.get('version', '?')} on {health.get('device')}"
                              f" at {client.url}")
            raster_feedback = QgsRasterBlockFeedback()
            feedback.canceled.connect(raster_feedback.cancel)
            info, collection = execute_job(
                client, prep["params"], prep["path"], prep["export"],
                is_cancelled=feedback.isCanceled, set_progress=feedback.setProgress,
                set_stage=stage, feedback=raster_feedback,
            )
        except JobCancelled:
            raise QgsProcessingException("Cancelled.") from None
        except (BackendError, ExportError) as exc:
            raise QgsProcessingException(str(exc)) from None
        for line in info.get("messages") or []:
            feedback.pushInfo(str(line))
        features = collection.get("features") or []
        fields = build_fields(features)
        src_crs, out_crs = result_crs(collection, prep["crs"])
        sink, dest_id = self.parameterAsSink(
            parameters, self.OUTPUT, context, fields, QgsWkbTypes.MultiPolygon, out_crs)
        if sink is None:
            raise QgsProcessingException(self.invalidSinkError(parameters, self.OUTPUT))
        count = 0
        reasoning = str(info.get("reasoning") or "")
        try:
            for feat in iter_features(collection, fields, src_crs, out_crs,
                                      context.transformContext(), None):
                if feedback.isCanceled():
                    break
                sink.addFeature(feat, QgsFeatureSink.FastInsert)
                if not reasoning and feat["reasoning"]:
                    reasoning = str(feat["reasoning"])
                count += 1
        except ResultError as exc:
            raise QgsProcessingException(str(exc)) from None
        feedback.pushInfo(f"{count} polygons")
        if reasoning:
            feedback.pushInfo(f"reasoning: {reasoning}")
        return {self.OUTPUT: dest_id, self.FEATURE_COUNT: count, self.REASONING: reasoning}


def _option_parameter(name: str, option: str, label: str) -> QgsProcessingParameterNumber:
    """A number parameter for a :class:`~..params.SegmentOptions` field: its default and
    bounds."""
    low, high = bounds(SegmentOptions, option)
    param = QgsProcessingParameterNumber(
        name, label, QgsProcessingParameterNumber.Double, defaultValue=_OPTIONS[option])
    if low is not None:
        param.setMinimum(low)
    if high is not None:
        param.setMaximum(high)
    return param
