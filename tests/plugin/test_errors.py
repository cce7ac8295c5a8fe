"""A backend that is down, crashed, refuses the token or returns an error gives a message bar
entry with the fix, never a traceback; the plugin can start and stop its own backend."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from qgis.core import Qgis, QgsApplication, QgsRasterLayer
from qgis.PyQt.QtCore import QEvent

import rs_reasoner_plugin
from rs_reasoner_plugin.dock import SegmentDock
from rs_reasoner_plugin.tasks import RunOutcome, SegmentTask, backend_config
from tests.plugin.conftest import BACKEND_PYTHON, REPO
from tests.plugin.helpers import item_text, message_texts, wait_until


@pytest.fixture
def dock(iface, clean_project, plugin_settings, squares_tif) -> Any:
    d = SegmentDock(iface, None, iface.mainWindow())
    raster = QgsRasterLayer(str(squares_tif), "squares")
    clean_project.addMapLayer(raster)
    d.layer_combo.setLayer(raster)
    d.set_query("bright")
    d.set_area("layer")
    yield d
    if d.task is not None:
        d.task.cancel()
        wait_until(lambda: d.task is None, 30, "the task to stop")
    d.deleteLater()
    QgsApplication.sendPostedEvents(None, QEvent.DeferredDelete)


def run_and_wait(dock: SegmentDock, timeout: float = 60.0) -> RunOutcome:
    outcomes: list[RunOutcome] = []
    dock.runFinished.connect(outcomes.append)
    assert dock.start_run() is not None, message_texts(dock.iface)
    wait_until(lambda: bool(outcomes), timeout, "the run to end")
    return outcomes[0]


def critical_texts(iface) -> list[str]:  # noqa: ANN001
    return [f"{i.title()}: {item_text(i)}" for i in iface.messageBar().items()
            if i.level() == Qgis.Critical]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_backend_down_is_a_message_with_the_fix(dock, plugin_settings, iface) -> None:
    plugin_settings.backend_url = f"http://127.0.0.1:{free_port()}"
    plugin_settings.save()
    outcome = run_and_wait(dock)
    assert outcome.status == "failed"
    texts = critical_texts(iface)
    assert len(texts) == 1, message_texts(iface)
    assert "not running (connection refused)" in texts[0]
    assert "rs-reasoner serve" in texts[0]
    assert dock.segment_button.isEnabled()


def test_no_state_file_is_a_message_with_the_fix(dock, plugin_settings, iface,
                                                 tmp_path: Path) -> None:
    plugin_settings.state_file = str(tmp_path / "nowhere" / "backend.json")
    plugin_settings.save()
    outcome = run_and_wait(dock)
    assert outcome.status == "failed"
    (text,) = critical_texts(iface)
    assert "No RS Reasoner backend is running" in text and "auto-start" in text


def test_crashed_backend_is_detected_from_the_state_file(dock, plugin_settings, iface,
                                                         tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    state = tmp_path / "backend.json"
    state.write_text(json.dumps({"host": "127.0.0.1", "port": free_port(), "token": "x",
                                 "pid": dead.pid, "version": "0"}))
    plugin_settings.state_file = str(state)
    plugin_settings.save()
    outcome = run_and_wait(dock)
    assert outcome.status == "failed"
    (text,) = critical_texts(iface)
    assert "no longer running" in text and "crashed" in text


def test_wrong_token_says_where_the_token_comes_from(dock, plugin_settings, iface,
                                                     backend) -> None:
    plugin_settings.backend_url = backend.url
    plugin_settings.token = "not-the-token"
    plugin_settings.save()
    outcome = run_and_wait(dock)
    assert outcome.status == "failed" and outcome.error.status == 401
    (text,) = critical_texts(iface)
    assert "refused the token" in text and "state file" in text


def test_backend_validation_error_reaches_the_message_bar(dock, iface, backend) -> None:
    """An empty query (the dock refuses it, so send it straight from a task) comes back
    as the backend's 422 detail."""
    spec = dock.build_spec()
    spec.params.query = "   "
    outcomes: list[RunOutcome] = []
    task = SegmentTask(spec, backend_config(dock.settings, None))
    task.runFinished.connect(dock._run_finished)
    task.runFinished.connect(outcomes.append)
    QgsApplication.taskManager().addTask(task)
    wait_until(lambda: bool(outcomes), 30, "the task")
    assert outcomes[0].status == "failed"
    assert outcomes[0].error.status == 422
    (text,) = critical_texts(iface)
    assert "query is empty" in text


def test_bad_interpreter_for_auto_start_is_a_message(dock, plugin_settings, iface,
                                                     tmp_path: Path) -> None:
    from rs_reasoner_plugin.backend_process import BackendProcess

    plugin_settings.state_file = str(tmp_path / "state" / "backend.json")
    plugin_settings.auto_start = True
    plugin_settings.python_path = str(tmp_path / "no-venv" / "bin" / "python")
    plugin_settings.save()
    dock.backend_process = BackendProcess()
    outcome = run_and_wait(dock)
    assert outcome.status == "failed"
    (text,) = critical_texts(iface)
    assert "does not exist" in text and "Settings" in text


def test_plugin_starts_a_backend_and_stops_it_on_unload(
    iface, clean_project, plugin_settings, tmp_path: Path, monkeypatch
) -> None:
    if not os.path.isfile(BACKEND_PYTHON):
        pytest.skip(f"backend interpreter {BACKEND_PYTHON} is missing")
    paths = [str(REPO), str(REPO / "backend")]
    if os.environ.get("PYTHONPATH"):
        paths.append(os.environ["PYTHONPATH"])
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(paths))
    monkeypatch.setenv("RS_REASONER_SEGMENTER_MODULES", "tests.support.segmenters")
    state_file = tmp_path / "own-state" / "backend.json"
    plugin_settings.state_file = str(state_file)
    plugin_settings.auto_start = True
    plugin_settings.python_path = BACKEND_PYTHON
    plugin_settings.device = "cpu"
    plugin_settings.save()

    plugin = rs_reasoner_plugin.classFactory(iface)
    plugin.initGui()
    try:
        statuses: list[Any] = []
        plugin.dock.statusChanged.connect(statuses.append)
        plugin.dock.refresh_status(start=True)
        wait_until(lambda: bool(statuses), 120, "the started backend to answer")
        status = statuses[0]
        assert status.connected, status.error
        assert plugin.backend_process.running()
        pid = plugin.backend_process.pid
        assert json.loads(state_file.read_text())["pid"] == pid
        assert "device cpu" in plugin.dock.status_label.text()
    finally:
        plugin.unload()
    assert not plugin.backend_process.running()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not state_file.exists()  # the server removes it on a clean shutdown
