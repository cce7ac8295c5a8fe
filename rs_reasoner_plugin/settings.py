"""The plugin's settings: a dataclass persisted with QgsSettings under ``rs_reasoner/``."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path

from qgis.core import QgsSettings

from .api_client import REQUEST_TIMEOUT
from .params import SegmentOptions, defaults

_OPTIONS = defaults(SegmentOptions)
#: Stored for the minimum area or simplification "by ground resolution".
AUTO = -1.0

PREFIX = "rs_reasoner/"
#: Queries kept in the dock's history.
MAX_HISTORY = 30

#: Where result layers go when no results folder is set.
DEFAULT_RESULTS_FOLDER = Path.home() / "rs-reasoner-results"


@dataclass
class PluginSettings:
    """Everything the settings dialog edits, plus the query history.

    Attributes:
        backend_url: URL of a running backend (e.g. ``http://127.0.0.1:8765``); empty to
            read URL and token from the backend's state file.
        token: Bearer token for ``backend_url`` (ignored when the state file is used).
        state_file: The backend's state file; empty for the default
            (``$XDG_STATE_HOME/rs-reasoner/backend.json``).
        python_path: Python interpreter of a virtual environment with the backend
            installed, used to start a backend when none is running.
        auto_start: Start the backend (with ``python_path``) when none is reachable.
        device: Device for a backend the plugin starts (auto, cpu, cuda, cuda:N).
        model_open_vocabulary: Model for class lists; empty for the backend's default.
        model_reasoning: Model for sentences; empty for the backend's default.
        results_folder: Folder of the GeoPackages the runs write; empty for
            ``~/rs-reasoner-results``.
        output_crs: ``raster`` (results in the raster's CRS) or ``project`` (reprojected
            to the project's CRS).
        always_upload: Read every raster through QGIS and upload it, even local files
            (for a backend on another machine).
        request_timeout: Seconds to wait for one HTTP answer.
        query_history: Most recent queries first.
        last_mode: The dock's mode at the last run.
        last_model: The model chosen in the dock at the last run ('' for the default).
        bands, resolution, score_threshold, tile_size: The dock's advanced options at the
            last run (see :class:`~.params.SegmentOptions`; 0: the backend's choice).
        min_area, simplify: The same; negative for "by ground resolution".
        preview_results: Show a result on the map to accept or discard before adding it.
        layer_per_class: Add one layer per class instead of one layer.
    """

    backend_url: str = ""
    token: str = ""
    state_file: str = ""
    python_path: str = ""
    auto_start: bool = True
    device: str = "auto"
    model_open_vocabulary: str = ""
    model_reasoning: str = ""
    results_folder: str = ""
    output_crs: str = "raster"
    always_upload: bool = False
    request_timeout: float = REQUEST_TIMEOUT
    query_history: list[str] = field(default_factory=list)
    last_mode: str = "auto"
    last_model: str = ""
    bands: str = ""
    resolution: float = 0.0
    score_threshold: float = _OPTIONS["score_threshold"]
    min_area: float = AUTO
    simplify: float = AUTO
    tile_size: float = 0.0
    preview_results: bool = True
    layer_per_class: bool = False

    @classmethod
    def load(cls) -> PluginSettings:
        """Read the settings (defaults for missing or unreadable values)."""
        s = QgsSettings()
        out = cls()
        for f in fields(cls):
            default = getattr(out, f.name)
            raw = s.value(PREFIX + f.name, None)
            if raw is None:
                continue
            try:
                setattr(out, f.name, _convert(raw, default))
            except (TypeError, ValueError):
                continue
        return out

    def save(self) -> None:
        """Write every field."""
        s = QgsSettings()
        for f in fields(self):
            value = getattr(self, f.name)
            s.setValue(PREFIX + f.name, list(value) if isinstance(value, list) else value)
        s.sync()

    def results_dir(self) -> Path:
        """The results folder (created if missing)."""
        folder = Path(os.path.expanduser(self.results_folder)) if self.results_folder else (
            DEFAULT_RESULTS_FOLDER
        )
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def default_models(self) -> dict[str, str]:
        """Model per mode when the user chooses none ('' for the backend's default)."""
        return {"open_vocabulary": self.model_open_vocabulary, "reasoning": self.model_reasoning}

    def remember_query(self, query: str) -> None:
        """Put ``query`` first in the history (no duplicates, at most MAX_HISTORY)."""
        query = query.strip()
        if not query:
            return
        history = [q for q in self.query_history if q != query]
        self.query_history = [query, *history][:MAX_HISTORY]


def _convert(raw: object, default: object) -> object:
    if isinstance(default, bool):
        if isinstance(raw, str):
            return raw.strip().lower() in ("1", "true", "yes", "on")
        return bool(raw)
    if isinstance(default, float):
        return float(raw)  # type: ignore[arg-type]
    if isinstance(default, list):
        if isinstance(raw, str):
            return [raw] if raw else []
        return [str(v) for v in raw]  # type: ignore[union-attr]
    return str(raw)
