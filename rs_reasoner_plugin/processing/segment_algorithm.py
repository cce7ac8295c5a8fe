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
from ..params import MODE_VALUES, MODES, Extent, SegmentOptions, SegmentParams, parse_bands
from ..raster_export import (
    ExportError,
    ExportJob,
    local_file_path,
    prepare_export,
)
from ..results import ResultError, build_fields, iter_features, result_crs
from ..settings import PluginSettings
from ..tasks import JobCancelled, backend_config, execute_job


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
            QgsProcessingParameterNumber(
                self.SCORE_THRESHOLD, "Score threshold", QgsProcessingParameterNumber.Double,
                defaultValue=0.5, minValue=0.0, maxValue=1.0),
            QgsProcessingParameterNumber(
                self.MIN_AREA, "Minimum polygon area (map units²)",
                QgsProcessingParameterNumber.Double, defaultValue=0.0, minValue=0.0),
            QgsProcessingParameterNumber(
                self.SIMPLIFY, "Simplification tolerance (map units)",
                QgsProcessingParameterNumber.Double, defaultValue=0.0, minValue=0.0),
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
        query = (self.parameterAsString(parameters, self.QUERY, context) or "").strip()
        mode = MODE_VALUES[self.parameterAsEnum(parameters, self.MODE, context)]
        settings = PluginSettings.load()
        model = (self.parameterAsString(parameters, self.MODEL, context) or "").strip()
        if not model:
            model = {"open_vocabulary": settings.model_open_vocabulary,
                     "reasoning": settings.model_reasoning}.get(mode, "")
        try:
            bands = parse_bands(self.parameterAsString(parameters, self.BANDS, context) or "")
        except ValueError as exc:
            raise QgsProcessingException(str(exc)) from None
        resolution = self.parameterAsDouble(parameters, self.RESOLUTION, context) or None
        options = SegmentOptions(
            bands=bands, resolution=resolution,
            score_threshold=self.parameterAsDouble(parameters, self.SCORE_THRESHOLD, context),
            min_area=self.parameterAsDouble(parameters, self.MIN_AREA, context),
            simplify=self.parameterAsDouble(parameters, self.SIMPLIFY, context),
        )
        extent = None
        if parameters.get(self.EXTENT) not in (None, ""):
            rect = self.parameterAsExtent(parameters, self.EXTENT, context, layer.crs())
            if not rect.isNull():
                extent = rect
        path = None if settings.always_upload else local_file_path(layer)
        export: ExportJob | None = None
        if path is not None:
            ext = None
            if extent is not None:
                ext = Extent(extent.xMinimum(), extent.yMinimum(), extent.xMaximum(),
                             extent.yMaximum(), None)
            params = SegmentParams(query, mode, model or None, ext, options)
        else:
            try:
                export = prepare_export(layer, extent, resolution)
            except ExportError as exc:
                raise QgsProcessingException(str(exc)) from None
            options.resolution = None
            params = SegmentParams(query, mode, model or None, None, options)
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
