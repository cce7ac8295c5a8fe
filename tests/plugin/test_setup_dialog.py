"""The set-up dialog: which PyTorch build fits the GPU, the commands it runs, and a real
environment made and filled from a wheel of this repository (no dependencies, offline),
with the settings then pointing at it; a failed install leaves no environment behind;
the backend started and stopped from the dialog."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.plugin.conftest import BACKEND_PYTHON, REPO
from tests.plugin.helpers import wait_until

NVIDIA_SMI = """\
+-----------------------------------------------------------------------------------------+
| NVIDIA-SMI 550.54.15              Driver Version: 550.54.15      CUDA Version: 12.4     |
|-----------------------------------------+------------------------+----------------------+
"""


def test_torch_build_follows_the_driver_s_cuda() -> None:
    from rs_reasoner_plugin.setup_plan import Gpu, parse_nvidia_smi, torch_build, torch_index

    gpu = parse_nvidia_smi(NVIDIA_SMI, "NVIDIA GeForce RTX 4090\n")
    assert gpu == Gpu("NVIDIA GeForce RTX 4090", (12, 4))
    assert torch_build(gpu) == "cu124"
    assert torch_build(Gpu("x", (12, 5))) == "cu124"  # 12.6 builds need a newer driver
    assert torch_build(Gpu("x", (13, 1))) == "cu130"
    assert torch_build(Gpu("x", (11, 4))) == "cpu"  # older than any build PyTorch ships
    assert torch_build(None) == "cpu"
    assert parse_nvidia_smi("NVIDIA-SMI has failed", "") is None
    assert torch_index("cu126") == "https://download.pytorch.org/whl/cu126"


def test_plan_uses_uv_or_venv_and_never_qgis_python(tmp_path: Path) -> None:
    from rs_reasoner_plugin.setup_plan import SetupOptions, plan

    venv = tmp_path / "env"
    steps = plan(SetupOptions(venv=venv, torch_build="cu126", uv="/opt/uv"))
    assert steps[0].argv == ["/opt/uv", "venv", str(venv)]
    torch_step = steps[1].argv
    assert torch_step[:5] == ["/opt/uv", "pip", "install", "--python", str(venv / "bin/python")]
    assert torch_step[-2:] == ["--index-url", "https://download.pytorch.org/whl/cu126"]
    assert steps[2].argv[-1] == "rs-reasoner"
    steps = plan(SetupOptions(venv=venv, source=str(REPO), torch_build="none",
                              base_python="/usr/bin/python3"))
    assert steps[0].argv == ["/usr/bin/python3", "-m", "venv", str(venv)]
    assert [s.label for s in steps][1:] == ["Install rs-reasoner", "Check the backend"]
    assert steps[1].argv[0] == str(venv / "bin/python") and steps[1].argv[-1] == str(REPO)
    with pytest.raises(ValueError, match="neither a wheel"):
        plan(SetupOptions(venv=venv, source=str(tmp_path), base_python="/usr/bin/python3"))
    with pytest.raises(ValueError, match="No Python found"):
        plan(SetupOptions(venv=venv))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel of this repository, built with the backend's venv (no network)."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([BACKEND_PYTHON, "-m", "pip", "wheel", "-q", "--no-deps",
                    "--no-build-isolation", "-w", str(out), str(REPO)], check=True,
                   capture_output=True)
    return next(out.glob("rs_reasoner-*.whl"))


def _dialog(venv: Path, source_kind: str, source: str, pip_args: str) -> Any:
    from rs_reasoner_plugin.backend_process import BackendProcess
    from rs_reasoner_plugin.setup_dialog import SetupDialog

    dialog = SetupDialog(BackendProcess())
    dialog.venv_edit.setFilePath(str(venv))
    dialog.use_uv.setChecked(False)
    dialog.python_edit.setText("/usr/bin/python3")
    dialog.source_combo.setCurrentIndex(dialog.source_combo.findData(source_kind))
    dialog.source_path.setFilePath(source)
    dialog.torch_combo.setCurrentIndex(dialog.torch_combo.findData("none"))
    dialog.pip_args.setText(pip_args)
    return dialog


def test_install_from_a_wheel_sets_the_backend_interpreter(
        qgis_app: Any, plugin_settings: Any, wheel: Path, tmp_path: Path) -> None:
    from rs_reasoner_plugin.settings import PluginSettings

    venv = tmp_path / "backend env"
    dialog = _dialog(venv, "wheel", str(wheel), "--no-deps --no-index")
    dialog.install()
    assert dialog.task is not None
    wait_until(lambda: dialog.task is None, 300, "the set-up")
    assert dialog.status_label.text().startswith("Installed"), dialog.log.toPlainText()
    python = venv / "bin" / "python"
    assert PluginSettings.load().python_path == str(python)
    assert PluginSettings.load().auto_start is True
    assert "rs-reasoner 0.1.0" in dialog.log.toPlainText()
    out = subprocess.run([str(python), "-c", "import rs_reasoner; print(rs_reasoner.__file__)"],
                         capture_output=True, text=True, cwd=tmp_path, env={"PATH": "/usr/bin"})
    assert out.stdout.startswith(str(venv)), out  # installed into the new environment
    qgis_python = subprocess.run(["/usr/bin/python3", "-c", "import rs_reasoner"],
                                 capture_output=True, cwd=tmp_path, env={"PATH": "/usr/bin"})
    assert qgis_python.returncode != 0  # QGIS's Python was left alone


def test_failed_install_removes_the_environment(
        qgis_app: Any, plugin_settings: Any, tmp_path: Path) -> None:
    from rs_reasoner_plugin.settings import PluginSettings

    venv = tmp_path / "env"
    dialog = _dialog(venv, "pypi", "", "--no-index")  # PyPI, offline: pip cannot find it
    dialog.install()
    wait_until(lambda: dialog.task is None, 300, "the set-up")
    assert "Install rs-reasoner failed" in dialog.status_label.text()
    assert "Removed the unfinished environment" in dialog.log.toPlainText()
    assert not venv.exists()
    assert PluginSettings.load().python_path == ""

    bad = _dialog(venv, "wheel", str(tmp_path / "missing.whl"), "")
    bad.install()
    assert bad.task is None and "neither a wheel" in bad.status_label.text()


def test_start_and_stop_the_backend(qgis_app: Any, plugin_settings: Any, tmp_path: Path) -> None:
    from rs_reasoner_plugin.backend_process import BackendProcess
    from rs_reasoner_plugin.setup_dialog import SetupDialog

    plugin_settings.python_path = BACKEND_PYTHON
    plugin_settings.state_file = str(tmp_path / "state" / "backend.json")
    plugin_settings.device = "cpu"
    plugin_settings.save()
    process = BackendProcess()
    dialog = SetupDialog(process)
    assert dialog.start_button.isEnabled() and not dialog.stop_button.isEnabled()
    dialog.start_backend()
    try:
        assert process.running(), dialog.status_label.text()
        endpoint = process.wait_ready(timeout=90)
        assert endpoint.pid == process.pid
        assert dialog.stop_button.isEnabled()
    finally:
        dialog.stop_backend()
    assert not process.running()
    assert dialog.start_button.isEnabled() and not dialog.stop_button.isEnabled()
