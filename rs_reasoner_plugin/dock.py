"""The "Segment by description" dock: choose a raster, an area and a query, run it on the
backend in a QgsTask, get a styled layer.

Its widgets are laid out in :mod:`.dock_form`; the run's parameters are gathered into a
:class:`~rs_reasoner_plugin.tasks.RunSpec` on the GUI thread, and everything that waits
runs in :class:`~rs_reasoner_plugin.tasks.SegmentTask`.
"""

from __future__ import annotations

import os

from qgis.core import (
    Qgis,
    QgsApplication,
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsCsException,
    QgsGeometry,
    QgsProject,
    QgsRasterLayer,
    QgsRectangle,
    QgsVectorLayer,
)
from qgis.gui import QgsDockWidget, QgsMapToolExtent
from qgis.PyQt.QtCore import QTimer, pyqtSignal
from qgis.PyQt.QtWidgets import (
    QFileDialog,
    QWidget,
)

from . import messages
from .area_outline import AreaOutline
from .backend_process import BackendProcess
from .dock_form import AREAS, DockForm, spin_value
from .errors import InputError
from .export import FILE_FILTER, ExportLayerError, export_layer
from .land_cover_export import fusion_specs
from .params import (
    Extent,
)
from .raster_export import (
    ExportError,
    local_file_path,
    native_resolution,
    prepare_export,
)
from .result_preview import ResultPreview
from .result_style import result_layer_name
from .results import add_to_project
from .run_request import ChoiceError, RunChoices, build_request
from .settings import PluginSettings
from .task_runner import TaskRunner
from .tasks import (
    BackendStatus,
    BackendStatusTask,
    RunOutcome,
    RunSpec,
    SegmentTask,
    backend_config,
    format_status,
)

#: Seconds between two checks of the backend while the dock is shown.
STATUS_INTERVAL_S = 15

__all__ = ["AREAS", "InputError", "SegmentDock"]


class SegmentDock(DockForm, TaskRunner, QgsDockWidget):
    """The dock panel.

    Signals:
        runFinished(object): A :class:`RunOutcome` after each run (after the layer is
            added and messages are shown).
        statusChanged(object): A :class:`BackendStatus` after each status refresh.
    """

    runFinished = pyqtSignal(object)
    statusChanged = pyqtSignal(object)

    def __init__(self, iface, backend_process: BackendProcess | None = None,  # noqa: ANN001
                 parent: QWidget | None = None, open_settings=None) -> None:  # noqa: ANN001
        super().__init__("RS Reasoner — Segment by description", parent)
        self.setObjectName("RsReasonerDock")
        self.iface = iface
        self.backend_process = backend_process
        self.open_settings = open_settings
        self.settings = PluginSettings.load()
        self.task: SegmentTask | None = None
        self.status_task: BackendStatusTask | None = None
        self.last_outcome: RunOutcome | None = None
        self.last_layer: QgsVectorLayer | None = None
        self.last_status: BackendStatus | None = None
        self.drawn_extent: QgsRectangle | None = None
        self.drawn_crs: QgsCoordinateReferenceSystem | None = None
        self._extent_tool: QgsMapToolExtent | None = None
        self._previous_tool = None
        self._models: list[dict] = []
        self._refresh_again = False
        self.fusion_offered = False
        self.preview: ResultPreview | None = None
        canvas = iface.mapCanvas() if iface is not None else None
        self.outline = AreaOutline(canvas)
        self._build()
        self._load_history()
        self._restore_choices()
        self._update_area_widgets()
        self._update_fusion()
        self._set_running(False)
        # The status line follows the backend while the dock is shown (it may be started,
        # stopped or set up outside the dock).
        self.status_timer = QTimer(self)
        self.status_timer.setInterval(STATUS_INTERVAL_S * 1000)
        self.status_timer.timeout.connect(self._timed_refresh)
        self.visibilityChanged.connect(self._visibility_changed)

    def _restore_choices(self) -> None:
        """The mode, model and advanced options of the last run (per user)."""
        st = self.settings
        self.set_mode(st.last_mode)
        if st.last_model:
            self.model_combo.setEditText(st.last_model)
        self.bands_edit.setText(st.bands)
        self.resolution_spin.setValue(st.resolution)
        self.score_spin.setValue(st.score_threshold)
        self.min_area_spin.setValue(st.min_area)
        self.simplify_spin.setValue(st.simplify)
        self.tile_spin.setValue(int(st.tile_size))
        self.preview_check.setChecked(st.preview_results)
        self.per_class_check.setChecked(st.layer_per_class)

    def _remember_choices(self) -> None:
        """Store what :meth:`_restore_choices` restores (at each run)."""
        st = self.settings
        st.last_mode = self.mode_combo.currentData() or "auto"
        st.last_model = self.selected_model()
        st.bands = self.bands_edit.text().strip()
        st.resolution = self.resolution_spin.value()
        st.score_threshold = self.score_spin.value()
        st.min_area = self.min_area_spin.value()
        st.simplify = self.simplify_spin.value()
        st.tile_size = float(self.tile_spin.value())
        st.preview_results = self.preview_check.isChecked()
        st.layer_per_class = self.per_class_check.isChecked()

    def _load_history(self) -> None:
        current = self.query_combo.currentText()
        self.query_combo.clear()
        self.query_combo.addItems(self.settings.query_history)
        self.query_combo.setEditText(current)

    def _update_area_widgets(self) -> None:
        key = self.area_combo.currentData()
        self.draw_button.setVisible(key == "drawn")
        self.mask_combo.setVisible(key == "selection")
        self.mask_label.setVisible(key == "selection")
        self._update_outline()

    def _mask_changed(self, *_: object) -> None:
        # A polygon layer added to the project (a result) becomes the combo's choice: it is
        # the area only when the selection is.
        if self.area_combo.currentData() == "selection":
            self._update_outline()

    def _update_outline(self, *_: object) -> None:
        """Outline the chosen area on the map: the drawn rectangle or the selection."""
        key = self.area_combo.currentData()
        if key == "drawn" and self.drawn_extent is not None and not self.drawn_extent.isEmpty():
            self.outline.show(QgsGeometry.fromRect(self.drawn_extent),
                              self.drawn_crs or QgsCoordinateReferenceSystem())
        elif key == "selection":
            mask = self.mask_combo.currentLayer()
            geoms = [f.geometry() for f in mask.selectedFeatures() if f.hasGeometry()] if (
                isinstance(mask, QgsVectorLayer)) else []
            if geoms:
                self.outline.show(QgsGeometry.unaryUnion(geoms), mask.crs())
            else:
                self.outline.clear()
        else:
            self.outline.clear()

    def _set_running(self, running: bool) -> None:
        self.segment_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        if running:
            self.progress.setValue(0)

    def _open_settings(self) -> None:
        if self.open_settings is not None:
            self.open_settings()

    def reload_settings(self) -> None:
        """Re-read the settings (after the settings dialog)."""
        self.settings = PluginSettings.load()
        self._load_history()

    def settings_saved(self) -> BackendStatusTask | None:
        """The settings dialog was accepted: re-read it and check the backend at once,
        starting it when auto-start is on (the status line shows the new backend)."""
        self.reload_settings()
        self.status_label.setText("Backend: checking…")
        return self.refresh_status(start=True)

    def _visibility_changed(self, visible: bool) -> None:
        if visible:
            self.status_timer.start()
        else:
            self.status_timer.stop()

    def _timed_refresh(self) -> None:
        if self.task is None:  # a run reports the backend's state itself
            self.refresh_status()

    # -- helpers for callers and tests ----------------------------------------------------

    def set_query(self, text: str) -> None:
        self.query_combo.setEditText(text)

    def set_mode(self, mode: str) -> None:
        self.mode_combo.setCurrentIndex(max(0, self.mode_combo.findData(mode)))

    def set_area(self, key: str) -> None:
        self.area_combo.setCurrentIndex(max(0, self.area_combo.findData(key)))

    def set_drawn_extent(self, rect: QgsRectangle, crs: QgsCoordinateReferenceSystem) -> None:
        """Use ``rect`` (in ``crs``) as the drawn area and select that area choice."""
        self.drawn_extent = QgsRectangle(rect)
        self.drawn_crs = QgsCoordinateReferenceSystem(crs)
        self.set_area("drawn")
        self._update_outline()

    # -- drawing --------------------------------------------------------------------------

    def start_drawing(self) -> None:
        canvas = self.iface.mapCanvas() if self.iface is not None else None
        if canvas is None:
            return
        self._previous_tool = canvas.mapTool()
        self._extent_tool = QgsMapToolExtent(canvas)
        self._extent_tool.extentChanged.connect(self._extent_drawn)
        canvas.setMapTool(self._extent_tool)
        self.stage_label.setText("Drag a rectangle on the map.")

    def _extent_drawn(self, rect: QgsRectangle) -> None:
        canvas = self.iface.mapCanvas()
        if rect.isEmpty():
            return
        self.set_drawn_extent(rect, canvas.mapSettings().destinationCrs())
        self.stage_label.setText(
            f"Area: {rect.xMinimum():.2f}, {rect.yMinimum():.2f} – {rect.xMaximum():.2f}, "
            f"{rect.yMaximum():.2f}")
        if self._previous_tool is not None:
            canvas.setMapTool(self._previous_tool)
        else:
            canvas.unsetMapTool(self._extent_tool)

    # -- building a run -------------------------------------------------------------------

    def _transform_rect(self, rect: QgsRectangle, src: QgsCoordinateReferenceSystem,
                        dst: QgsCoordinateReferenceSystem) -> QgsRectangle:
        if not src.isValid() or not dst.isValid() or src == dst:
            return QgsRectangle(rect)
        tr = QgsCoordinateTransform(src, dst, QgsProject.instance())
        try:
            return tr.transformBoundingBox(rect)
        except QgsCsException:  # e.g. a world-wide view into a UTM zone
            raise InputError(
                f"The area cannot be expressed in the raster's CRS ({dst.authid() or 'custom'})"
                ": zoom to the raster (right-click it ▸ Zoom to Layer) or choose 'Layer "
                "extent' as the area.") from None

    def _area(self, layer: QgsRasterLayer) -> tuple[QgsRectangle | None, QgsGeometry | None]:
        """(extent in the raster's CRS or None for the whole layer, clip geometry in the
        raster's CRS or None)."""
        key = self.area_combo.currentData()
        raster_crs = layer.crs()
        if key == "layer":
            return None, None
        if key == "canvas":
            canvas = self.iface.mapCanvas() if self.iface is not None else None
            if canvas is None or canvas.extent().isEmpty():
                return None, None
            crs = canvas.mapSettings().destinationCrs()
            return self._transform_rect(canvas.extent(), crs, raster_crs), None
        if key == "drawn":
            if self.drawn_extent is None or self.drawn_extent.isEmpty():
                raise InputError("No rectangle drawn yet: click 'Draw' and drag a rectangle "
                                 "on the map.")
            crs = self.drawn_crs or raster_crs
            return self._transform_rect(self.drawn_extent, crs, raster_crs), None
        if key == "selection":
            mask = self.mask_combo.currentLayer()
            if not isinstance(mask, QgsVectorLayer) or mask.selectedFeatureCount() == 0:
                raise InputError("Select one or more polygons in the chosen polygon layer "
                                 "first (or choose another area).")
            geoms = [f.geometry() for f in mask.selectedFeatures() if f.hasGeometry()]
            union = QgsGeometry.unaryUnion(geoms)
            if mask.crs().isValid() and raster_crs.isValid() and mask.crs() != raster_crs:
                union.transform(QgsCoordinateTransform(mask.crs(), raster_crs,
                                                       QgsProject.instance()))
            return union.boundingBox(), union
        return None, None

    def selected_model(self) -> str:
        """The model chosen or typed in the advanced options ('' for the default)."""
        combo = self.model_combo
        idx = combo.currentIndex()
        if idx >= 0 and combo.currentText() == combo.itemText(idx):
            return str(combo.itemData(idx) or "")  # a listed entry ("(default…)" → "")
        return combo.currentText().strip()

    def choices(self) -> RunChoices:
        """What the widgets hold (the area aside)."""
        return RunChoices(
            query=self.query_combo.currentText(),
            mode=self.mode_combo.currentData() or "auto",
            model=self.selected_model(),
            bands=self.bands_edit.text(),
            resolution=self.resolution_spin.value(),
            score_threshold=self.score_spin.value(),
            min_area=spin_value(self.min_area_spin),
            simplify=spin_value(self.simplify_spin),
            tile_size=self.tile_spin.value(),
        )

    def build_spec(self) -> RunSpec:
        """The run the dock describes (GUI thread).

        Raises:
            InputError: Something is missing or wrong (the message says what).
        """
        layer = self.layer_combo.currentLayer()
        if not isinstance(layer, QgsRasterLayer) or not layer.isValid():
            raise InputError("Choose a raster layer to segment (add one to the project first).")
        choices = self.choices()
        if not choices.query.strip():  # before the area, whose problems come second
            raise InputError("Type what to segment in the query box, e.g. 'buildings, water'.")
        if self.fusion_offered and self.fuse_box.maps:
            choices.fuse_land_cover = fusion_specs(
                self.fuse_box.maps, layer, f"the classes of model '{choices.model}'")
        extent, clip = self._area(layer)
        self._check_overlap(layer, extent)
        path = None if self.settings.always_upload else local_file_path(layer)
        try:
            # Extent in the raster's CRS (crs None). Rasters without georeferencing: the
            # backend uses QGIS's pixel space (x = column, y = -row), so nothing to convert.
            built = build_request(
                choices,
                by_path=path is not None,
                extent=None if extent is None else Extent(
                    extent.xMinimum(), extent.yMinimum(), extent.xMaximum(),
                    extent.yMaximum(), None),
                default_models=self.settings.default_models(),
                native_resolution=native_resolution(layer),
                view_resolution=self._canvas_resolution(layer),
            )
            export = None if path is not None else prepare_export(
                layer, extent, built.export_resolution)
        except (ChoiceError, ExportError) as exc:
            raise InputError(str(exc)) from None
        project = QgsProject.instance()
        target = None
        if self.settings.output_crs == "project" and project.crs().isValid():
            target = project.crs()
        if clip is not None and target is not None and layer.crs().isValid() and (
            target != layer.crs()
        ):
            clip = QgsGeometry(clip)
            clip.transform(QgsCoordinateTransform(layer.crs(), target, project))
        return RunSpec(
            params=built.params,
            raster_path=path,
            export=export,
            raster_crs=layer.crs(),
            results_folder=self.settings.results_dir(),
            layer_name=result_layer_name(built.params.query),
            target_crs=target,
            transform_context=project.transformContext(),
            clip=clip,
        )

    def _check_overlap(self, layer: QgsRasterLayer, extent: QgsRectangle | None) -> None:
        """An area beside the raster is refused with what to do instead."""
        if extent is None or not layer.extent().isFinite() or layer.extent().isEmpty():
            return
        if extent.intersects(layer.extent()):
            return
        area = self.area_combo.currentText().lower()
        raise InputError(
            f"The area ({area}) does not overlap raster '{layer.name()}'. Zoom to the raster "
            "(right-click it in the Layers panel ▸ Zoom to Layer), draw the rectangle on it, "
            "or choose 'Layer extent' as the area.")

    def _canvas_resolution(self, layer: QgsRasterLayer) -> float | None:
        canvas = self.iface.mapCanvas() if self.iface is not None else None
        if canvas is None or canvas.width() <= 0:
            return None
        try:
            ext = self._transform_rect(canvas.extent(),
                                       canvas.mapSettings().destinationCrs(), layer.crs())
        except InputError:  # the view cannot say: the export falls back to the native one
            return None
        return ext.width() / canvas.width() if ext.width() > 0 else None

    # -- running --------------------------------------------------------------------------

    def start_run(self) -> SegmentTask | None:
        """Start a run with the dock's inputs; problems go to the message bar."""
        if self.task is not None:
            return None
        messages.clear(self.iface)  # the last run's messages are about the last run
        self.settings = PluginSettings.load()
        try:
            spec = self.build_spec()
        except InputError as exc:
            messages.push(self.iface, str(exc), Qgis.Warning)
            return None
        except OSError as exc:
            messages.push(self.iface, f"Cannot use the results folder: {exc}. Pick another one "
                          "in RS Reasoner ▸ Settings.", Qgis.Critical)
            return None
        self.settings.remember_query(spec.params.query)
        self._remember_choices()
        self.settings.save()
        if self.preview is not None:  # a new run replaces a result left unaccepted
            self.discard_preview()
        self._run_layer = self.layer_combo.currentLayer()
        self._outline_run(spec)
        self._load_history()
        self.query_combo.setEditText(spec.params.query)
        task = SegmentTask(spec, backend_config(self.settings, self.backend_process))
        task.runFinished.connect(self._run_finished)
        self.reasoning.clear()
        self._launch(task)
        return task

    def _outline_run(self, spec: RunSpec) -> None:
        """Outline the area the run reads (the drawn or selected area is outlined already)."""
        if self.area_combo.currentData() in ("drawn", "selection"):
            return
        layer = self.layer_combo.currentLayer()
        ext = spec.params.extent
        rect = QgsRectangle(ext.xmin, ext.ymin, ext.xmax, ext.ymax) if ext is not None else (
            spec.export.extent if spec.export is not None else layer.extent())
        self.outline.show(QgsGeometry.fromRect(rect), layer.crs())

    def cancel_run(self) -> None:
        """Cancel the running job (the backend stops after the current tile)."""
        self._cancel_task()

    def _run_finished(self, outcome: RunOutcome) -> None:
        task = self._task_done(outcome)
        self.progress.setValue(100 if outcome.status == "succeeded" else 0)
        if outcome.status == "succeeded" and outcome.written is not None and task is not None:
            self._result_ready(task.spec, outcome)
        elif outcome.status == "cancelled":
            self.stage_label.setText("cancelled")
            messages.push(self.iface, "Segmentation cancelled.", Qgis.Info)
        else:
            self.stage_label.setText("failed — see Details in the message bar")
            messages.push_error(self.iface, outcome.error or "The run failed.",
                                details=outcome.details)
        self.runFinished.emit(outcome)
        self.refresh_status()

    def _result_ready(self, spec: RunSpec, outcome: RunOutcome) -> None:
        """A result: explained when empty, else previewed or added."""
        written = outcome.written
        model = str((outcome.job or {}).get("model") or spec.params.model or "")
        name = result_layer_name(spec.params.query, model)
        reasoning = written.reasoning or str((outcome.job or {}).get("reasoning") or "")
        self.reasoning.setPlainText(reasoning)
        n = written.feature_count
        if n == 0:
            ResultPreview(written, name, None).discard()
            self.stage_label.setText("no polygons — see the message above the map")
            messages.push(self.iface, self._empty_hint(spec, model), Qgis.Warning)
            return
        canvas = self.iface.mapCanvas() if self.iface is not None else None
        preview = ResultPreview(written, name, canvas if self.preview_check.isChecked() else None,
                                per_class=self.per_class_check.isChecked())
        polygons = f"{n} polygon{'s' if n != 1 else ''}"
        if self.preview_check.isChecked():
            self.preview = preview
            self.preview_label.setText(f"Preview: {polygons} ({model or 'default model'}). "
                                       "Add them to the project?")
            self._show_preview_row(True)
            self.stage_label.setText(f"done: {polygons} — accept or discard the preview")
            return
        self._add_layers(preview)
        self.stage_label.setText(f"done: {polygons}")
        messages.push(self.iface, f"{polygons} in layer '{name}' ({written.path}).",
                      Qgis.Success)

    def _empty_hint(self, spec: RunSpec, model: str) -> str:
        """Why a run may have found nothing, and what to try."""
        opts = spec.params.options
        text = (f"No polygon matched '{spec.params.query}'"
                f"{f' (model {model})' if model else ''}. Try a lower score threshold (now "
                f"{opts.score_threshold:g}), a smaller minimum area (now {opts.min_area:g}), "
                "other words or another model, or a larger area.")
        layer = getattr(self, "_run_layer", None)
        if isinstance(layer, QgsRasterLayer) and layer.isValid() and layer.bandCount() == 1:
            text += (f" Raster '{layer.name()}' has a single band: classes told apart by "
                     "colour (trees, water) may not show in it; segment a colour raster.")
        return text

    def _add_layers(self, preview: ResultPreview) -> list[QgsVectorLayer]:
        try:
            layers = preview.accept()
        except Exception as exc:  # noqa: BLE001 - shown in the message bar
            messages.push_error(self.iface, exc)
            return []
        for layer in reversed(layers):
            add_to_project(layer)
        self.last_layer = layers[0] if layers else None
        return layers

    def accept_preview(self) -> list[QgsVectorLayer]:
        """Add the previewed result to the project; returns its layers."""
        preview, self.preview = self.preview, None
        self._show_preview_row(False)
        if preview is None:
            return []
        layers = self._add_layers(preview)
        n = preview.written.feature_count
        self.stage_label.setText(f"added: {n} polygon{'s' if n != 1 else ''}")
        if layers:
            messages.push(self.iface, f"{n} polygon{'s' if n != 1 else ''} in layer "
                          f"'{preview.name}' ({preview.written.path}).", Qgis.Success)
        return layers

    def discard_preview(self) -> None:
        """Drop the previewed result (its file is deleted)."""
        preview, self.preview = self.preview, None
        self._show_preview_row(False)
        if preview is not None:
            preview.discard()
            self.stage_label.setText("discarded")

    # -- backend status -------------------------------------------------------------------

    def refresh_status(self, start: bool = False) -> BackendStatusTask | None:
        """Ask the backend for its status in a task (``start``: auto-start it)."""
        if self.status_task is not None:
            # Models may have changed since that check started (a training just ended).
            self._refresh_again = True
            return None
        self.settings = PluginSettings.load()
        task = BackendStatusTask(backend_config(self.settings, self.backend_process),
                                 start=start)
        task.statusReady.connect(self._status_ready)
        self.status_task = task
        self.status_label.setText("Backend: checking…")
        QgsApplication.taskManager().addTask(task)
        return task

    def _status_ready(self, status: BackendStatus) -> None:
        self.status_task = None
        self.last_status = status
        self.status_label.setText(format_status(status))
        self.status_label.setToolTip(str(status.error) if status.error else status.endpoint)
        if status.connected:
            self._set_models(status.models)
        self.statusChanged.emit(status)
        if self._refresh_again:
            self._refresh_again = False
            self.refresh_status()

    def models(self) -> list[dict]:
        """The backend's models from the last status check (``GET /models`` entries)."""
        return list(self._models)

    def model_info(self, name: str) -> dict | None:
        """The ``/models`` entry of ``name``, or None."""
        return next((m for m in self._models if m.get("name") == name), None)

    def _set_models(self, models: list[dict]) -> None:
        current = self.selected_model()  # by name: labels change (classes), names do not
        self._models = models
        self.model_combo.blockSignals(True)
        self.model_combo.clear()
        self.model_combo.addItem("(default for the mode)", "")
        for m in models:
            name = str(m.get("name", ""))
            if not name:
                continue
            if m.get("trained"):
                classes = ", ".join(str(c) for c in m.get("classes") or [])
                label = f"{name} (fine-tuned: {classes})" if classes else f"{name} (fine-tuned)"
            else:
                note = "" if m.get("weights_available", True) else " (weights missing)"
                label = f"{name}{note}"
            self.model_combo.addItem(label, name)
        idx = self.model_combo.findData(current)
        if idx >= 0:
            self.model_combo.setCurrentIndex(idx)
        else:  # a typed name the backend does not list (yet): keep it
            self.model_combo.setEditText(current)
        self.model_combo.blockSignals(False)
        self._update_fusion()

    def select_model(self, name: str) -> bool:
        """Choose a listed model as if picked from the list; False when not listed."""
        idx = self.model_combo.findData(name)
        if idx < 0:
            return False
        self.model_combo.setCurrentIndex(idx)
        self._model_chosen(idx)
        return True

    def _model_chosen(self, index: int) -> None:
        """A fine-tuned model answers class lists: use its classes when the query is empty."""
        info = self.model_info(str(self.model_combo.itemData(index) or ""))
        if not info or not info.get("trained"):
            return
        if info.get("classes") and not self.query_combo.currentText().strip():
            self.set_query(", ".join(str(c) for c in info["classes"]))
        if self.mode_combo.currentData() == "reasoning":
            self.set_mode("open_vocabulary")  # it cannot answer sentences

    def _update_fusion(self, *_: object) -> None:
        """Land-cover fusion is offered for a fine-tuned model, onto its classes."""
        info = self.model_info(self.selected_model())
        classes = [str(c) for c in (info or {}).get("classes") or []]
        trained = bool(info and info.get("trained") and classes)
        self.fuse_box.setVisible(trained)
        self.fusion_offered = trained
        if trained:
            self.fuse_box.set_user_classes(classes)

    # -- export ---------------------------------------------------------------------------

    def export_target(self) -> QgsVectorLayer | None:
        """The layer Export… writes: the active vector layer, else the last result."""
        active = self.iface.activeLayer() if self.iface is not None else None
        if isinstance(active, QgsVectorLayer):
            return active
        if self.last_layer is not None:
            try:
                if self.last_layer.isValid():
                    return self.last_layer
            except RuntimeError:  # deleted
                return None
        return None

    def export_dialog(self) -> None:
        layer = self.export_target()
        if layer is None:
            messages.push(self.iface, "Run a segmentation (or select a vector layer) first.",
                          Qgis.Warning)
            return
        start = os.path.join(str(self.settings.results_dir()), layer.name())
        path, selected = QFileDialog.getSaveFileName(
            self, "Export result", start, FILE_FILTER)
        if not path:
            return
        fmt = selected.split(" (")[0] if selected else None
        try:
            out = export_layer(layer, path, fmt)
        except ExportLayerError as exc:
            messages.push_error(self.iface, exc)
            return
        messages.push(self.iface, f"Exported '{layer.name()}' to {out}.", Qgis.Success)

    # -- teardown -------------------------------------------------------------------------

    def shutdown(self) -> None:
        """Cancel running work (plugin unload)."""
        if self.task is not None:
            self.task.cancel()
        self.status_timer.stop()
        if self.preview is not None:
            self.preview.hide()  # the file stays for the user
            self.preview = None
        self.outline.clear()
        canvas = self.iface.mapCanvas() if self.iface is not None else None
        if canvas is not None and self._extent_tool is not None:
            canvas.unsetMapTool(self._extent_tool)
