"""Two parts of the fine-tune dialog that are not layout: the trainer choice (the names
come from the backend's schema, :mod:`.backend_schema`; the plugin only explains the
ones it knows) and the options remembered between QGIS sessions.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from qgis.core import QgsSettings
from qgis.PyQt.QtWidgets import QComboBox, QLabel, QVBoxLayout, QWidget

from .params import TrainParams, defaults
from .settings import PREFIX

_TRAIN = defaults(TrainParams)

#: One line on each trainer the plugin knows; others are shown by name only.
TRAINER_HELP = {
    "auto": "Trains the candidates in turn within the time budget and keeps the one that "
            "scores best on the validation parcels.",
    "classical": "A per-pixel learner (LightGBM) on every band, spectral indices and local "
                 "texture: trains in seconds, no GPU needed.",
    "random-forest": "A random forest on the bands, as dzetsaka or SCP would train it: "
                     "the usual baseline, to compare with what 'auto' serves.",
    "unet": "A U-Net trained from scratch on every band (a GPU helps).",
    "rs-zeroseg": "The open-vocabulary RS-ZeroSeg fine-tuned on your classes (on its "
                  "pretrained backbones when they are on the backend's computer).",
}


class TrainerChoice(QWidget):
    """A combo of the backend's trainers and a line explaining the chosen one.

    Until the backend said which trainers it has, only the default is listed and
    :meth:`trainer` is None: the request leaves the choice to the backend.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.combo = QComboBox(self)
        self.combo.setToolTip("What to train: 'auto' tries several trainers and keeps the "
                              "best on the validation parcels")
        self.combo.currentIndexChanged.connect(self._explain)
        self.combo.activated.connect(self._chosen)  # by the user only
        layout.addWidget(self.combo)
        self.help_label = QLabel("", self)
        self.help_label.setWordWrap(True)
        layout.addWidget(self.help_label)
        self.offered = False
        self._wanted: str | None = None
        self.set_trainers((), None)

    def set_trainers(self, names: tuple[str, ...] | list[str], default: str | None) -> None:
        """List the backend's trainers (empty: it takes no choice; the default is shown).
        The remembered or chosen trainer stays chosen when the backend has it."""
        wanted = self._wanted or self.combo.currentData()
        self.offered = bool(names)
        listed = list(names) or [default or _TRAIN["model"]]
        self.combo.blockSignals(True)
        self.combo.clear()
        for name in listed:
            self.combo.addItem(name, name)
        index = self.combo.findData(wanted)
        if index < 0:
            index = max(0, self.combo.findData(default or _TRAIN["model"]))
        self.combo.setCurrentIndex(index)
        self.combo.blockSignals(False)
        self.combo.setEnabled(self.offered)
        self._explain()

    def trainer(self) -> str | None:
        """The chosen trainer, or None when the backend offers no choice (yet)."""
        return str(self.combo.currentData()) if self.offered else None

    def preferred(self) -> str:
        """The trainer to choose next time: the chosen one, or one chosen before that the
        backend has not listed (yet)."""
        return self._wanted or str(self.combo.currentData())

    def set_trainer(self, name: str) -> None:
        """Choose ``name`` (kept until the backend lists it, if it does not yet)."""
        self._wanted = name
        index = self.combo.findData(name)
        if index >= 0:
            self.combo.setCurrentIndex(index)

    def _chosen(self, *_: Any) -> None:
        self._wanted = str(self.combo.currentData())

    def _explain(self, *_: Any) -> None:
        name = str(self.combo.currentData() or "")
        self.help_label.setText(TRAINER_HELP.get(name, f"Trained by the backend as '{name}'.")
                                if name else "")


@dataclass
class RememberedOptions:
    """The fine-tune dialog's options at its last run, kept per user (QgsSettings)."""

    model: str = _TRAIN["model"]
    val_fraction: float = _TRAIN["val_fraction"]
    epochs: int = _TRAIN["epochs"]
    label_budget: float = _TRAIN["label_budget"]
    tile_size: int = _TRAIN["tile_size"]
    time_budget_min: int = 0
    semi_supervised: bool = _TRAIN["semi_supervised"]
    verifier: bool = _TRAIN["verifier"]

    @classmethod
    def load(cls) -> RememberedOptions:
        """The stored options (defaults for missing or unreadable ones)."""
        s = QgsSettings()
        out = cls()
        for f in fields(cls):
            raw = s.value(f"{_GROUP}{f.name}", None)
            if raw is None:
                continue
            default = getattr(out, f.name)
            try:
                if isinstance(default, bool):
                    value: Any = str(raw).strip().lower() in ("1", "true", "yes", "on")
                else:
                    value = type(default)(raw)
            except (TypeError, ValueError):
                continue
            setattr(out, f.name, value)
        return out

    @classmethod
    def of(cls, d: Any) -> RememberedOptions:
        """The options a :class:`~.train_dialog.TrainDialog` shows."""
        return cls(
            model=d.trainer_choice.preferred(),
            val_fraction=d.val_spin.value() / 100.0,
            epochs=d.epochs_spin.value(),
            label_budget=d.budget_spin.value() / 100.0,
            tile_size=d.tile_spin.value(),
            time_budget_min=d.time_spin.value(),
            semi_supervised=d.semi_check.isChecked(),
            verifier=d.verifier_check.isChecked(),
        )

    def show_in(self, d: Any) -> None:
        """Set a :class:`~.train_dialog.TrainDialog`'s widgets to these options."""
        d.trainer_choice.set_trainer(self.model)
        d.val_spin.setValue(round(100 * self.val_fraction))
        d.epochs_spin.setValue(self.epochs)
        d.budget_spin.setValue(round(100 * self.label_budget))
        d.tile_spin.setValue(self.tile_size)
        d.time_spin.setValue(self.time_budget_min)
        d.semi_check.setChecked(self.semi_supervised)
        d.verifier_check.setChecked(self.verifier)

    def save(self) -> None:
        s = QgsSettings()
        for f in fields(self):
            s.setValue(f"{_GROUP}{f.name}", getattr(self, f.name))
        s.sync()


_GROUP = PREFIX + "train/"
