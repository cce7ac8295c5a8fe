"""The "Fine-tune on labelled parcels" dialog: a raster, a polygon layer with a class
field, a model name and a few switches → a training job on the backend (``POST /train``),
followed in a :class:`~rs_reasoner_plugin.train_task.TrainTask`.

The dialog is modeless: QGIS stays usable while the model trains, and closing the dialog
does not stop the job (Cancel does).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from qgis.core import (
    Qgis,
    QgsApplication,
    QgsFeatureRequest,
    QgsMapLayerProxyModel,
    QgsRasterLayer,
    QgsVectorLayer,
)
from qgis.gui import QgsCollapsibleGroupBox, QgsFieldComboBox, QgsMapLayerComboBox
from qgis.PyQt.QtCore import pyqtSignal
from qgis.PyQt.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from . import messages
from .backend_process import BackendProcess
from .backend_schema import BackendSchema, BackendSchemaTask
from .errors import InputError
from .help import open_help
from .land_cover_export import prepare_sources
from .land_cover_picker import LandCoverPicker
from .params import TrainParams, bounds, defaults, model_name_problem, sanitize_model_name
from .parcels_export import ParcelsError, local_vector_file, prepare_parcels_export
from .raster_export import ExportError, local_file_path, prepare_export
from .reasoner_params import SAM_VARIANTS, ReasonerParams
from .settings import PluginSettings
from .task_runner import TaskRunner
from .tasks import backend_config
from .train_choices import guess_class_field, overlap_share, raster_under
from .train_options import RememberedOptions, TrainerChoice
from .train_task import TrainOutcome, TrainSpec, TrainTask

#: The initial values of the training options.
_TRAIN = defaults(TrainParams)

#: What the dialog trains: (combo text, ``kind`` of ``POST /train``).
KINDS = (("Segmenter (labelled parcels with a class)", "segmenter"),
         ("Teach the reasoner (examples with a query)", "reasoner"))

#: Hint for rasters that cannot be exported whole at their native resolution.
_SAVE_AS_HINT = ("Save the layer as a GeoTIFF (right-click ▸ Export ▸ Save As…), add it to "
                 "the project and train on that file.")


def _int_bounds(name: str) -> tuple[int, int]:
    low, high = bounds(TrainParams, name)
    return int(low), int(high)


def class_text(value: Any) -> str | None:
    """A class value as the backend names it ('' and NULL → None; 2.0 → '2')."""
    if value is None or (hasattr(value, "isNull") and value.isNull()):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    return text or None


def _stored_field(layer: QgsVectorLayer) -> str | None:
    """A field stored in the layer's data source (not the feature id), or None."""
    for i, fld in enumerate(layer.fields()):
        if i not in layer.primaryKeyAttributes() and fld.name().lower() != "fid":
            return fld.name()
    return None


def sorted_classes(names: set[str]) -> list[str]:
    """Numbers numerically ('2' before '10'), otherwise alphabetically (as the backend)."""
    try:
        return sorted(names, key=float)
    except ValueError:
        return sorted(names)


def parcel_classes(layer: QgsVectorLayer, field: str, selected_only: bool = False) -> list[str]:
    """The distinct class values of the (selected) parcels, sorted.

    Args:
        layer: Polygon layer.
        field: Class field.
        selected_only: Only the selected features.

    Returns:
        The class names; empty when the field is missing or has no values.
    """
    idx = layer.fields().indexOf(field)
    if idx < 0:
        return []
    if selected_only:
        request = QgsFeatureRequest().setFilterFids(list(layer.selectedFeatureIds()))
        request.setSubsetOfAttributes([idx])
        request.setFlags(QgsFeatureRequest.NoGeometry)
        values = {f.attribute(idx) for f in layer.getFeatures(request)}
    else:
        values = set(layer.uniqueValues(idx))
    return sorted_classes({t for t in map(class_text, values) if t is not None})


class TrainDialog(TaskRunner, QDialog):
    """Fine-tune a model on labelled parcels.

    Args:
        iface: QgisInterface (message bar).
        backend_process: The plugin's backend process (auto-start), or None.
        parent: Parent widget.
        known_models: Returns the backend's last ``/models`` list (built-in names are
            refused, trained ones resume), or None when unknown.

    Signals:
        trainingFinished(object): A :class:`TrainOutcome` after each run (after the
            messages are shown).
    """

    trainingFinished = pyqtSignal(object)

    def __init__(
        self,
        iface,  # noqa: ANN001
        backend_process: BackendProcess | None = None,
        parent: QWidget | None = None,
        known_models: Callable[[], list[dict[str, Any]]] | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("RsReasonerTrainDialog")
        self.setWindowTitle("RS Reasoner — Fine-tune on labelled parcels")
        self.setModal(False)
        self.iface = iface
        self.backend_process = backend_process
        self.known_models = known_models
        self.task: TrainTask | None = None
        self.last_outcome: TrainOutcome | None = None
        self._name_edited = False
        self._watched: QgsVectorLayer | None = None
        self.schema_task: BackendSchemaTask | None = None
        self._build()
        RememberedOptions.load().show_in(self)
        self._parcels_changed()
        self._set_running(False)

    # -- layout ---------------------------------------------------------------------------

    def _build(self) -> None:
        outer = QVBoxLayout(self)
        form = QFormLayout()
        self.form = form
        outer.addLayout(form)

        self.kind_combo = QComboBox(self)
        for text, kind in KINDS:
            self.kind_combo.addItem(text, kind)
        self.kind_combo.setToolTip(
            "Segmenter: a model that draws your parcels' classes. Reasoner: the reasoning "
            "model learns to answer your own questions from polygons that answer them")
        self.kind_combo.currentIndexChanged.connect(self._kind_changed)
        form.addRow("Teach", self.kind_combo)

        self.raster_combo = QgsMapLayerComboBox(self)
        self.raster_combo.setFilters(QgsMapLayerProxyModel.RasterLayer)
        self.raster_combo.setToolTip("Imagery to learn from (the parcels lie on it)")
        form.addRow("Raster", self.raster_combo)

        self.parcels_combo = QgsMapLayerComboBox(self)
        self.parcels_combo.setFilters(QgsMapLayerProxyModel.PolygonLayer)
        self.parcels_combo.setToolTip("Polygons whose class you know (any CRS)")
        self.parcels_combo.layerChanged.connect(self._parcels_changed)
        form.addRow("Parcels", self.parcels_combo)

        self.selected_check = QCheckBox("Only selected parcels", self)
        self.selected_check.setToolTip("Train on the parcels selected on the map only")
        self.selected_check.toggled.connect(self._update_classes)
        form.addRow("", self.selected_check)

        self.field_combo = QgsFieldComboBox(self)
        self.field_combo.setToolTip("The field holding each parcel's class")
        self.field_combo.fieldChanged.connect(self._update_classes)
        form.addRow("Class field", self.field_combo)
        self.query_edit = QLineEdit(self)
        self.query_edit.setPlaceholderText("or one question for every polygon")
        self.query_edit.setToolTip("One question that every polygon of the layer answers "
                                   "(used instead of the query field)")
        self.query_edit.textChanged.connect(self._update_classes)
        form.addRow("Query", self.query_edit)
        self.classes_label = QLabel("", self)
        self.classes_label.setWordWrap(True)
        form.addRow("", self.classes_label)

        self.name_edit = QLineEdit(self)
        self.name_edit.setMaxLength(40)
        self.name_edit.setToolTip("Lowercase letters, digits, '-' and '_'. The same name "
                                  "again resumes an interrupted run, or trains a finished "
                                  "model again from the start.")
        self.name_edit.textEdited.connect(self._name_typed)
        self.name_edit.textChanged.connect(self._update_name_note)
        form.addRow("Model name", self.name_edit)
        self.name_note = QLabel("", self)
        self.name_note.setWordWrap(True)
        form.addRow("", self.name_note)
        self.trainer_choice = TrainerChoice(self)
        form.addRow("Trainer", self.trainer_choice)

        self.budget_spin = QSpinBox(self)
        self.budget_spin.setRange(1, round(100 * bounds(TrainParams, "label_budget")[1]))
        self.budget_spin.setValue(round(100 * _TRAIN["label_budget"]))
        self.budget_spin.setSuffix(" %")
        self.budget_spin.setToolTip("Share of the training parcels whose labels are used")
        form.addRow("Label budget", self.budget_spin)

        self.epochs_spin = QSpinBox(self)
        self.epochs_spin.setRange(*_int_bounds("epochs"))
        self.epochs_spin.setValue(_TRAIN["epochs"])
        self.epochs_spin.setToolTip("Passes over the training tiles (the best epoch on the "
                                    "validation parcels is kept)")
        form.addRow("Epochs", self.epochs_spin)

        self.semi_check = QCheckBox("Semi-supervised (also learn from unlabelled tiles)", self)
        self.semi_check.setChecked(_TRAIN["semi_supervised"])
        self.semi_check.setToolTip("Teacher–student training that also learns from the "
                                   "unlabelled parts of the raster")
        self.semi_check.toggled.connect(self._update_switches)
        form.addRow("", self.semi_check)
        self.verifier_check = QCheckBox("Verifier (purify pseudo-labels with a VLM)", self)
        self.verifier_check.setChecked(_TRAIN["verifier"])
        self.verifier_check.setToolTip("A vision-language model checks the pseudo-labels of "
                                       "unlabelled tiles (needs its weights; slower)")
        form.addRow("", self.verifier_check)

        self.advanced = QgsCollapsibleGroupBox("Advanced options", self)
        self.advanced.setCollapsed(True)
        for button in self.advanced.findChildren(QToolButton):  # the collapse button
            button.setToolTip("Show or hide the advanced options")
        adv = QFormLayout(self.advanced)
        self.tile_spin = QSpinBox(self.advanced)
        self.tile_spin.setRange(*_int_bounds("tile_size"))
        self.tile_spin.setSingleStep(64)
        self.tile_spin.setValue(_TRAIN["tile_size"])
        self.tile_spin.setSuffix(" px")
        self.tile_spin.setToolTip("Side of the training tiles in pixels (smaller tiles need "
                                  "less GPU memory)")
        adv.addRow("Tile size", self.tile_spin)
        self.val_spin = QSpinBox(self.advanced)
        # The backend needs the fraction below 1: at most 95 % held out.
        self.val_spin.setRange(0, 95)
        self.val_spin.setSuffix(" %")
        self.val_spin.setSpecialValueText("none (no validation)")
        self.val_spin.setValue(round(100 * _TRAIN["val_fraction"]))
        self.val_spin.setToolTip("Share of the parcels held out to measure the model. 0: "
                                 "every parcel trains and no mIoU is reported (for few "
                                 "parcels)")
        adv.addRow("Validation parcels", self.val_spin)
        self.time_spin = QSpinBox(self.advanced)
        self.time_spin.setRange(0, 100000)
        self.time_spin.setSuffix(" min")
        self.time_spin.setSpecialValueText("no limit")
        self.time_spin.setValue(round((_TRAIN["time_budget_s"] or 0) / 60))
        self.time_spin.setToolTip("Stop training after this long (the best model is kept)")
        adv.addRow("Time budget", self.time_spin)
        outer.addWidget(self.advanced)
        self.land_cover = LandCoverPicker(parent=self)
        outer.addWidget(self.land_cover)
        self._build_reasoner_options(outer)

        buttons = QHBoxLayout()
        self.train_button = QPushButton("Train", self)
        self.train_button.setDefault(True)
        self.train_button.setToolTip("Start fine-tuning on the backend (QGIS stays usable; "
                                     "the new model appears in the dock's Model list)")
        self.train_button.clicked.connect(self.start_training)
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.setToolTip("Stop after the current step (checkpoints are kept)")
        self.cancel_button.clicked.connect(self.cancel_training)
        self.close_button = QPushButton("Close", self)
        self.close_button.setToolTip("Hide this dialog (a running training goes on)")
        self.close_button.clicked.connect(self.hide)
        buttons.addWidget(self.train_button, 1)
        buttons.addWidget(self.cancel_button)
        buttons.addWidget(self.close_button)
        self.help_button = QPushButton("Help", self)
        self.help_button.setToolTip("Open the fine-tuning guide in the web browser")
        self.help_button.clicked.connect(lambda: open_help("fine-tuning"))
        buttons.addWidget(self.help_button)
        outer.addLayout(buttons)

        self._add_progress_widgets(outer, self)
        self.epoch_label = QLabel("", self)
        self.epoch_label.setWordWrap(True)
        outer.addWidget(self.epoch_label)
        self.resize(460, self.sizeHint().height())
        self._kind_changed()

    def _build_reasoner_options(self, outer: QVBoxLayout) -> None:
        """The options of teaching the reasoner; 'default' leaves them to the backend."""
        self.reasoner_box = QgsCollapsibleGroupBox("Reasoner options", self)
        self.reasoner_box.setCollapsed(True)
        for button in self.reasoner_box.findChildren(QToolButton):  # the collapse button
            button.setToolTip("Show or hide the options of teaching the reasoner")
        form = QFormLayout(self.reasoner_box)
        self.steps_spin = QSpinBox(self.reasoner_box)
        self.steps_spin.setRange(0, 1_000_000)
        self.steps_spin.setSpecialValueText("default")
        self.steps_spin.setToolTip("GRPO steps (one example's group of answers each); "
                                   "default: the backend's")
        form.addRow("Steps", self.steps_spin)
        self.group_spin = QSpinBox(self.reasoner_box)
        self.group_spin.setRange(1, 1024)  # 1 = default: a group has at least 2 answers
        self.group_spin.setSpecialValueText("default")
        self.group_spin.setToolTip("Answers sampled per example and compared with each "
                                   "other (more: steadier, slower); default: the backend's")
        form.addRow("Group size", self.group_spin)
        self.reasoner_time_spin = QSpinBox(self.reasoner_box)
        self.reasoner_time_spin.setRange(0, 100000)
        self.reasoner_time_spin.setSuffix(" min")
        self.reasoner_time_spin.setSpecialValueText("no limit")
        self.reasoner_time_spin.setToolTip("Stop after this long (what was learnt is kept; "
                                           "the same name again resumes)")
        form.addRow("Time budget", self.reasoner_time_spin)
        self.base_edit = QLineEdit(self.reasoner_box)
        self.base_edit.setPlaceholderText("the built-in reasoning model's")
        self.base_edit.setToolTip("The prompter to start from: a prompter's name "
                                  "(think2seg-rs-7b) or a folder on the backend's computer")
        form.addRow("Base prompter", self.base_edit)
        self.sam_combo = QComboBox(self.reasoner_box)
        self.sam_combo.addItem("default", None)
        for variant in SAM_VARIANTS:
            self.sam_combo.addItem(variant, variant)
        self.sam_combo.setToolTip("The SAM 2.1 that draws masks from the answers (the "
                                  "reward); default: the reasoning model's")
        form.addRow("SAM 2.1", self.sam_combo)
        self.sam_checkpoint_edit = QLineEdit(self.reasoner_box)
        self.sam_checkpoint_edit.setPlaceholderText("its downloaded weights")
        self.sam_checkpoint_edit.setToolTip("A SAM 2.1 checkpoint (.pt) on the backend's "
                                            "computer, instead of the downloaded weights")
        form.addRow("SAM checkpoint", self.sam_checkpoint_edit)
        outer.addWidget(self.reasoner_box)

    def kind(self) -> str:
        """``segmenter`` or ``reasoner``."""
        return str(self.kind_combo.currentData())

    def set_kind(self, kind: str) -> None:
        """Choose what to teach (``segmenter`` or ``reasoner``)."""
        self.kind_combo.setCurrentIndex(self.kind_combo.findData(kind))

    def _kind_changed(self, *_: Any) -> None:
        reasoner = self.kind() == "reasoner"
        self.setWindowTitle("RS Reasoner — Teach the reasoner your questions" if reasoner
                            else "RS Reasoner — Fine-tune on labelled parcels")
        labels = {self.parcels_combo: ("Examples", "Parcels"),
                  self.field_combo: ("Query field", "Class field")}
        for widget, (when_reasoner, otherwise) in labels.items():
            label = self.form.labelForField(widget)
            if label is not None:
                label.setText(when_reasoner if reasoner else otherwise)
        self.parcels_combo.setToolTip(
            "Polygons that answer the questions (any CRS)" if reasoner
            else "Polygons whose class you know (any CRS)")
        self.field_combo.setToolTip("The field holding each polygon's question" if reasoner
                                    else "The field holding each parcel's class")
        for widget in (self.query_edit,):
            self._show_row(widget, reasoner)
        for widget in (self.budget_spin, self.epochs_spin, self.semi_check,
                       self.verifier_check, self.trainer_choice):
            self._show_row(widget, not reasoner)
        self.advanced.setVisible(not reasoner)
        self.land_cover.setVisible(not reasoner)
        self.reasoner_box.setVisible(reasoner)
        self._update_classes()

    def _show_row(self, widget: QWidget, visible: bool) -> None:
        widget.setVisible(visible)
        label = self.form.labelForField(widget)
        if label is not None:
            label.setVisible(visible)

    # -- reactions ------------------------------------------------------------------------

    def _parcels_changed(self, *_: Any) -> None:
        layer = self.parcels_combo.currentLayer()
        self._watch_selection(layer if isinstance(layer, QgsVectorLayer) else None)
        self.field_combo.setLayer(layer if isinstance(layer, QgsVectorLayer) else None)
        if isinstance(layer, QgsVectorLayer):
            # QgsFieldComboBox starts at the first field, often the feature id.
            self.field_combo.setField(guess_class_field(layer) or "")
            self._choose_raster_under(layer)
            if not self._name_edited:
                self.name_edit.setText(sanitize_model_name(layer.name()))
        self._update_classes()

    def _choose_raster_under(self, parcels: QgsVectorLayer) -> None:
        """Choose the raster covering most of the parcels, unless the chosen one does."""
        under = raster_under(parcels)
        current = self.raster_combo.currentLayer()
        if under is None or under is current:
            return
        if not isinstance(current, QgsRasterLayer) or (
            overlap_share(parcels, current) < overlap_share(parcels, under)
        ):
            self.raster_combo.setLayer(under)

    def _watch_selection(self, layer: QgsVectorLayer | None) -> None:
        """Keep the class summary right while parcels are (de)selected on the map."""
        if self._watched is not None:
            with contextlib.suppress(RuntimeError, TypeError):  # deleted / not connected
                self._watched.selectionChanged.disconnect(self._selection_changed)
        self._watched = layer
        if layer is not None:
            layer.selectionChanged.connect(self._selection_changed)

    def _selection_changed(self, *_: Any) -> None:
        if self.selected_check.isChecked():
            self._update_classes()

    def _name_typed(self, _text: str) -> None:
        self._name_edited = True

    def _update_switches(self) -> None:
        self.verifier_check.setEnabled(self.semi_check.isChecked() and self.task is None)

    def _update_classes(self, *_: Any) -> None:
        layer = self.parcels_combo.currentLayer()
        field = self.field_combo.currentField()
        reasoner = self.kind() == "reasoner"
        if reasoner and self.query_edit.text().strip():
            self.classes_label.setText("every polygon answers the query above")
            return
        if not isinstance(layer, QgsVectorLayer) or not field:
            self.classes_label.setText("")
            self.land_cover.set_user_classes([])
            return
        names = parcel_classes(layer, field, self.selected_check.isChecked())
        self.land_cover.set_user_classes([] if reasoner else names)
        shown = ", ".join(names[:12]) + (", …" if len(names) > 12 else "")
        if reasoner:
            self.classes_label.setText(
                f"{len(names)} question{'s' if len(names) != 1 else ''}: {shown}" if names
                else "no questions in this field")
            return
        self.classes_label.setText(
            f"{len(names)} class{'es' if len(names) != 1 else ''}: {shown}" if names
            else "no class values in this field")

    def _models(self) -> list[dict[str, Any]]:
        if self.known_models is None:
            return []
        try:
            return list(self.known_models() or [])
        except RuntimeError:  # the dock is gone
            return []

    def _update_name_note(self, *_: Any) -> None:
        name = self.name_edit.text().strip()
        trained = {str(m.get("name")) for m in self._models() if m.get("trained")}
        self.name_note.setText(
            f"A trained model '{name}' exists: an interrupted run resumes from its last "
            "checkpoint; a finished one is trained again from the start and replaced."
            if name in trained else "")
        self.name_note.setVisible(bool(self.name_note.text()))

    def showEvent(self, event: Any) -> None:  # noqa: N802 - Qt API
        self._update_classes()  # the selection or the layer may have changed meanwhile
        self._update_name_note()
        self.refresh_trainers()
        super().showEvent(event)

    def refresh_trainers(self) -> BackendSchemaTask | None:
        """Ask the backend which trainers it offers (in the background; no auto-start)."""
        if self.schema_task is not None:
            return None
        task = BackendSchemaTask(backend_config(PluginSettings.load(), self.backend_process))
        task.schemaReady.connect(self._schema_ready)
        self.schema_task = task
        QgsApplication.taskManager().addTask(task)
        return task

    def _schema_ready(self, schema: BackendSchema | None) -> None:
        self.schema_task = None
        if schema is not None:
            self.trainer_choice.set_trainers(schema.trainers, schema.default_trainer)

    def _set_running(self, running: bool) -> None:
        self.train_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        for w in (self.kind_combo, self.raster_combo, self.parcels_combo, self.selected_check,
                  self.field_combo, self.query_edit, self.name_edit, self.budget_spin,
                  self.epochs_spin, self.semi_check, self.advanced, self.reasoner_box,
                  self.trainer_choice):
            w.setEnabled(not running)
        self.trainer_choice.combo.setEnabled(not running and self.trainer_choice.offered)
        self.land_cover.set_busy(running)
        self.verifier_check.setEnabled(not running and self.semi_check.isChecked())
        if running:
            self.progress.setValue(0)

    # -- helpers for callers and tests ----------------------------------------------------

    def set_layers(self, raster: QgsRasterLayer, parcels: QgsVectorLayer,
                   field: str | None = None) -> None:
        """Choose the raster, the parcels layer and (optionally) the class field."""
        self.parcels_combo.setLayer(parcels)
        self.raster_combo.setLayer(raster)
        if field is not None:
            self.field_combo.setField(field)

    # -- building a run -------------------------------------------------------------------

    def build_spec(self, settings: PluginSettings | None = None) -> tuple[TrainSpec, list[str]]:
        """The run the dialog describes (GUI thread).

        Args:
            settings: Plugin settings (default: loaded now).

        Returns:
            The spec and warnings that do not block the run (e.g. only one class).

        Raises:
            InputError: Something is missing or wrong (the message says what to fix).
        """
        settings = settings or PluginSettings.load()
        raster = self.raster_combo.currentLayer()
        if not isinstance(raster, QgsRasterLayer) or not raster.isValid():
            raise InputError("Choose the raster layer to train on (add one to the project "
                             "first).")
        parcels = self.parcels_combo.currentLayer()
        if not isinstance(parcels, QgsVectorLayer) or not parcels.isValid():
            raise InputError("Choose the polygon layer with the labelled parcels (add one to "
                             "the project first).")
        if overlap_share(parcels, raster) == 0.0:
            under = raster_under(parcels)
            hint = (f"Choose raster '{under.name()}', which lies under them." if under else
                    "Add the raster the parcels were drawn on to the project.")
            raise InputError(f"The parcels of layer '{parcels.name()}' do not lie on raster "
                             f"'{raster.name()}'. {hint}")
        reasoner = self.kind() == "reasoner"
        query = self.query_edit.text().strip() if reasoner else ""
        field = self.field_combo.currentField()
        if query and (not field or parcels.fields().indexOf(field) < 0):
            field = _stored_field(parcels)  # only to write the polygons; never read
            if field is None:
                raise InputError(f"Layer '{parcels.name()}' has no attribute field to save "
                                 "its polygons with: add one (any), or save it as a file.")
        elif not field or parcels.fields().indexOf(field) < 0:
            what = "polygon's question" if reasoner else "parcel's class"
            raise InputError(f"Choose the field of layer '{parcels.name()}' that holds each "
                             f"{what}{', or type one query' if reasoner else ''}.")
        selected = self.selected_check.isChecked()
        if selected and parcels.selectedFeatureCount() == 0:
            raise InputError(f"No parcel of layer '{parcels.name()}' is selected: select "
                             "parcels on the map, or untick 'Only selected parcels'.")
        if parcels.featureCount() == 0:
            raise InputError(f"Layer '{parcels.name()}' has no parcels: draw or load labelled "
                             "polygons first.")
        classes = [query] if query else parcel_classes(parcels, field, selected)
        if not classes:
            what = "questions" if reasoner else "classes"
            raise InputError(f"No {'polygon' if reasoner else 'parcel'} has a value in field "
                             f"'{field}': choose the field that holds the {what}, or fill it "
                             "in.")
        warnings = []
        if len(classes) == 1 and not reasoner:
            warnings.append(
                f"Field '{field}' has only one class ('{classes[0]}'). Training needs at "
                "least two: add parcels of another class (e.g. 'background') if the backend "
                "refuses.")
        name = self.name_edit.text().strip()
        builtin = {str(m.get("name")) for m in self._models() if not m.get("trained")}
        problem = model_name_problem(name, builtin)
        if problem:
            raise InputError(problem)

        params: TrainParams | ReasonerParams
        if reasoner:
            params = self._reasoner_params(name, None if query else field, query or None)
        else:
            params = TrainParams(
                name=name,
                class_field=field,
                label_budget=self.budget_spin.value() / 100.0,
                epochs=self.epochs_spin.value(),
                semi_supervised=self.semi_check.isChecked(),
                verifier=self.verifier_check.isChecked(),
                tile_size=self.tile_spin.value(),
                time_budget_s=self.time_spin.value() * 60.0 or None,
                val_fraction=self.val_spin.value() / 100.0,
                model=self.trainer_choice.trainer(),
            )
        spec = TrainSpec(params=params, class_names=tuple(classes))
        if not reasoner:
            spec.land_cover = prepare_sources(self.land_cover.maps, raster,
                                              f"the classes of field '{field}'")
        spec.raster_path = None if settings.always_upload else local_file_path(raster)
        if settings.always_upload:
            command = "rs-reasoner train-reasoner" if reasoner else "rs-reasoner train"
            warnings.append(
                "'Upload every raster' is on, but the parcels are read from a file on this "
                "computer: fine-tuning works only with a backend running here. For a backend "
                f"on another machine, run '{command}' there.")
        if spec.raster_path is None:
            try:
                spec.raster_export = prepare_export(raster, None, None)
            except ExportError as exc:
                raise InputError(f"{exc.message} {_SAVE_AS_HINT}") from None
        found = None if selected else local_vector_file(parcels, field)
        if found is not None:
            spec.labels_path, spec.labels_layer = found
        else:
            try:
                spec.parcels_export = prepare_parcels_export(parcels, field, selected)
            except ParcelsError as exc:
                raise InputError(str(exc)) from None
        return spec, warnings

    def _reasoner_params(self, name: str, field: str | None, query: str | None
                         ) -> ReasonerParams:
        """The reasoner run's options ('default' widgets: left to the backend)."""
        text = {w: w.text().strip() or None for w in (self.base_edit, self.sam_checkpoint_edit)}
        return ReasonerParams(
            name=name,
            query_field=field,
            query=query,
            steps=self.steps_spin.value() or None,
            group_size=self.group_spin.value() if self.group_spin.value() > 1 else None,
            time_budget_s=self.reasoner_time_spin.value() * 60.0 or None,
            base_prompter=text[self.base_edit],
            sam_variant=self.sam_combo.currentData(),
            sam_checkpoint=text[self.sam_checkpoint_edit],
        )

    # -- running --------------------------------------------------------------------------

    def start_training(self) -> TrainTask | None:
        """Start training with the dialog's inputs; problems go to the message bar."""
        if self.task is not None:
            return None
        messages.clear(self.iface)  # the last run's messages are about the last run
        settings = PluginSettings.load()
        try:
            spec, warnings = self.build_spec(settings)
        except InputError as exc:
            messages.push(self.iface, str(exc), Qgis.Warning)
            return None
        for text in warnings:
            messages.push(self.iface, text, Qgis.Warning)
        if self.kind() == "segmenter":
            RememberedOptions.of(self).save()
        task = TrainTask(spec, backend_config(settings, self.backend_process))
        task.epochChanged.connect(self.epoch_label.setText)
        task.trainFinished.connect(self._training_finished)
        self.epoch_label.setText("")
        self._launch(task)
        return task

    def cancel_training(self) -> None:
        """Cancel the running job (it stops after the current step; checkpoints stay)."""
        self._cancel_task()

    def _training_finished(self, outcome: TrainOutcome) -> None:
        task = self._task_done(outcome)
        name = task.spec.params.name if task is not None else "?"
        if outcome.status == "succeeded" and outcome.result is not None:
            self.progress.setValue(100)
            text = describe_result(outcome.result)
            self.stage_label.setText("done")
            self.epoch_label.setText(text)
            mode = " with the reasoning mode" if outcome.result.get("kind") == "reasoner" else ""
            messages.push(self.iface, f"{text} Choose '{outcome.result['model']}' in the "
                          f"dock's Model list (Advanced options){mode}.", Qgis.Success)
        elif outcome.status == "cancelled":
            self.progress.setValue(0)
            self.stage_label.setText("cancelled")
            messages.push(self.iface, f"Training of '{name}' cancelled; its checkpoints are "
                          "kept: train again with the same name to resume.", Qgis.Info)
        else:
            self.progress.setValue(0)
            self.stage_label.setText("failed")
            if outcome.details:
                messages.log(outcome.details, Qgis.Critical)
            messages.push_error(self.iface, outcome.error or "The training failed.")
        if not self.trainer_choice.offered:  # the run may have started the backend
            self.refresh_trainers()
        self.trainingFinished.emit(outcome)

    def shutdown(self) -> None:
        """Cancel running work (plugin unload)."""
        self._watch_selection(None)
        if self.task is not None:
            self.task.cancel()
        if self.schema_task is not None:
            self.schema_task.cancel()


def describe_result(result: dict[str, Any]) -> str:
    """One sentence: model, best mIoU and epoch, per-class IoU (for a reasoner: steps and
    the held-out IoU before and after)."""
    if result.get("kind") == "reasoner":
        text = f"Reasoner '{result.get('model')}' taught: {result.get('steps')} steps"
        before, after = result.get("heldout_iou_before"), result.get("heldout_iou_after")
        if isinstance(before, (int, float)) and isinstance(after, (int, float)):
            text += f"; held-out mean IoU {float(before):.3f} → {float(after):.3f}"
        return text + "."
    miou = result.get("best_miou")
    score = f"{float(miou):.3f}" if isinstance(miou, (int, float)) else "n/a"
    text = f"Model '{result.get('model')}' trained: best mIoU {score}"
    if result.get("best_epoch") is not None:
        text += f" (epoch {result['best_epoch']} of {result.get('epochs_run', '?')})"
    per_class = result.get("per_class_iou") or {}
    parts = [f"{k} {float(v):.2f}" for k, v in per_class.items()
             if isinstance(v, (int, float))]
    if parts:
        text += f"; IoU per class: {', '.join(parts)}"
    return text + "."
