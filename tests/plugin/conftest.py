"""Fixtures for the plugin tests: real QGIS (Debian's python3-qgis, headless), a minimal
QgisInterface stand-in made of real QGIS widgets, and a real backend process with the
test-only segmenters.

Run with Debian's Python (it has the qgis bindings)::

    QT_QPA_PLATFORM=offscreen /usr/bin/python3 -m pytest tests/plugin

Under an interpreter without QGIS (the backend's venv) these tests are not collected.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]

try:  # Only the QGIS Python has these.
    import qgis  # noqa: F401
    from osgeo import gdal  # noqa: F401
except ImportError:
    collect_ignore_glob = ["test_*.py"]
    HAVE_QGIS = False
else:
    HAVE_QGIS = True

# -- process-wide isolation (before QgsApplication exists) --------------------------------------
# QgsSettings, the backend state file and the default results folder all live under HOME/XDG
# paths: point them at a throwaway folder so tests never touch the user's QGIS profile.
_SESSION_DIR = Path(tempfile.mkdtemp(prefix="rs_reasoner_plugin_tests_"))
if HAVE_QGIS:
    os.environ["HOME"] = str(_SESSION_DIR / "home")
    for var, sub in (("XDG_CONFIG_HOME", "config"), ("XDG_STATE_HOME", "state"),
                     ("XDG_DATA_HOME", "data"), ("XDG_CACHE_HOME", "cache"),
                     ("XDG_RUNTIME_DIR", "runtime")):
        os.environ[var] = str(_SESSION_DIR / sub)
        (_SESSION_DIR / sub).mkdir(parents=True, exist_ok=True, mode=0o700)
    (_SESSION_DIR / "home").mkdir(exist_ok=True)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ.pop("RS_REASONER_SEGMENTER_MODULES", None)  # set on the backend process only
    # The Processing framework ships as a plugin of QGIS's own.
    for plugins_dir in ("/usr/share/qgis/python/plugins", "/usr/lib/qgis/python/plugins"):
        if os.path.isdir(plugins_dir) and plugins_dir not in sys.path:
            sys.path.append(plugins_dir)
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))

#: Interpreter with the backend installed (the repository's venv by default).
BACKEND_PYTHON = os.environ.get("RS_REASONER_BACKEND_PYTHON", str(REPO / ".venv/bin/python"))
START_TIMEOUT = 90.0


_EXIT_STATUS = 0


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:  # noqa: ARG001
    global _EXIT_STATUS
    _EXIT_STATUS = int(exitstatus)
    shutil.rmtree(_SESSION_DIR, ignore_errors=True)


def pytest_unconfigure(config: pytest.Config) -> None:  # noqa: ARG001
    """Leave without Python's teardown: QGIS 3.22 can segfault while its wrappers are
    garbage-collected at interpreter exit, which would turn a green run red (exit 139)."""
    if HAVE_QGIS:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_EXIT_STATUS)


# -- QGIS --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def session_dir() -> Path:
    return _SESSION_DIR


@pytest.fixture(scope="session")
def qgis_app() -> Iterator[Any]:
    """A real QgsApplication (GUI enabled, offscreen) with Processing initialised."""
    from qgis.core import QgsApplication

    app = QgsApplication([], True)
    app.initQgis()
    from processing.core.Processing import Processing

    Processing.initialize()
    yield app
    Processing.deinitialize()
    # exitQgis() tears down providers while Python still holds wrappers; skipping it avoids
    # a crash at interpreter exit and leaves nothing behind (the process ends).


@pytest.fixture(scope="session")
def iface(qgis_app: Any) -> Any:  # noqa: ARG001
    from tests.plugin.helpers import IfaceStandIn

    return IfaceStandIn()


@pytest.fixture
def clean_project(iface: Any) -> Iterator[Any]:
    """An empty project and message bar before and after the test."""
    from qgis.core import QgsProject

    project = QgsProject.instance()
    project.clear()
    iface.messageBar().clearWidgets()
    iface.setActiveLayer(None)
    yield project
    project.clear()
    iface.messageBar().clearWidgets()


@pytest.fixture
def plugin_settings(qgis_app: Any, tmp_path: Path) -> Iterator[Any]:  # noqa: ARG001
    """Fresh plugin settings (results in ``tmp_path/results``), restored afterwards."""
    from qgis.core import QgsSettings

    from rs_reasoner_plugin.settings import PREFIX, PluginSettings

    s = QgsSettings()
    s.remove(PREFIX.rstrip("/"))
    # Results join the project at once (the preview's Accept is tested on its own).
    settings = PluginSettings(results_folder=str(tmp_path / "results"), auto_start=False,
                              preview_results=False)
    settings.save()
    yield settings
    s.remove(PREFIX.rstrip("/"))


@pytest.fixture
def squares_tif(tmp_path: Path) -> Path:
    from tests.plugin.helpers import write_squares_tif

    return write_squares_tif(tmp_path / "squares.tif")


# -- backend -----------------------------------------------------------------------------


class Backend:
    """A real backend process (``python -m rs_reasoner.service.server``)."""

    def __init__(self, proc: subprocess.Popen, state_file: Path, log: Path) -> None:
        self.proc = proc
        self.state_file = state_file
        self.log = log
        self.state: dict[str, Any] = json.loads(state_file.read_text())
        self.url = self.state.get("url") or f"http://127.0.0.1:{self.state['port']}"
        self.token = self.state["token"]

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def backend_env() -> dict[str, str]:
    """Environment for a backend process: test segmenters, the repo on PYTHONPATH, and the
    same (isolated) XDG state dir as this process, so its state file is where the plugin
    looks by default."""
    env = dict(os.environ)
    paths = [str(REPO), str(REPO / "backend")]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env.update(
        PYTHONPATH=os.pathsep.join(paths),
        RS_REASONER_SEGMENTER_MODULES="tests.support.segmenters",
        PYTHONUNBUFFERED="1",
    )
    for var in ("QT_QPA_PLATFORM", "PYTHONHOME"):
        env.pop(var, None)
    return env


def start_backend(state_file: Path, log: Path, *extra: str) -> Backend:
    if not os.path.isfile(BACKEND_PYTHON):
        pytest.skip(f"backend interpreter {BACKEND_PYTHON} is missing (run 'make venv')")
    state_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [BACKEND_PYTHON, "-m", "rs_reasoner.service.server", "--port", "0",
             "--state-file", str(state_file), "--device", "cpu", *extra],
            cwd=REPO, env=backend_env(), stdout=fh, stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(
                f"backend exited with {proc.returncode}:\n{log.read_text(errors='replace')}")
        try:
            state = json.loads(state_file.read_text())
        except (OSError, ValueError):
            state = None
        if state and state.get("pid") == proc.pid:
            return Backend(proc, state_file, log)
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"backend did not start:\n{log.read_text(errors='replace')}")


@pytest.fixture(scope="session")
def backend(qgis_app: Any) -> Iterator[Backend]:  # noqa: ARG001
    """One backend for the session, writing its state file to the default place
    ($XDG_STATE_HOME/rs-reasoner/backend.json) so the plugin finds it with no settings."""
    from rs_reasoner_plugin.backend_state import default_state_path

    b = start_backend(default_state_path(), _SESSION_DIR / "backend.log")
    yield b
    b.stop()
