"""What the set-up dialog runs to give the backend an environment of its own (no Qt here).

The backend gets its own virtual environment, made by ``uv`` when it is installed, else by
a Python's ``venv`` module, and never QGIS's Python environment: PyTorch and the
backend's packages must not mix with QGIS's. PyTorch comes from the PyTorch wheel index
that fits the GPU ``nvidia-smi`` reports (the newest CUDA build the driver runs), or the
CPU index; then ``rs-reasoner`` from PyPI, a wheel, or a source folder.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

#: PyTorch's wheel indexes per CUDA build, newest first, with the CUDA version the
#: driver must support (drivers run builds up to the CUDA version nvidia-smi reports).
TORCH_CUDA_BUILDS: tuple[tuple[str, tuple[int, int]], ...] = (
    ("cu130", (13, 0)),
    ("cu129", (12, 9)),
    ("cu128", (12, 8)),
    ("cu126", (12, 6)),
    ("cu124", (12, 4)),
    ("cu121", (12, 1)),
    ("cu118", (11, 8)),
)
TORCH_INDEX = "https://download.pytorch.org/whl/{build}"
CPU_BUILD = "cpu"
#: The PyPI name of the backend.
PACKAGE = "rs-reasoner"

_CUDA_VERSION = re.compile(r"CUDA Version:\s*(\d+)\.(\d+)")


@dataclass(frozen=True)
class Gpu:
    """What ``nvidia-smi`` says: the GPU's name and the newest CUDA its driver runs."""

    name: str
    cuda: tuple[int, int]


def parse_nvidia_smi(header: str, names: str) -> Gpu | None:
    """A GPU from ``nvidia-smi``'s banner (CUDA version) and its ``--query-gpu=name`` output.

    Returns:
        None when no CUDA version or no GPU name is found.
    """
    match = _CUDA_VERSION.search(header)
    gpus = [line.strip() for line in names.splitlines() if line.strip()]
    if match is None or not gpus:
        return None
    return Gpu(name=gpus[0], cuda=(int(match.group(1)), int(match.group(2))))


def detect_gpu(timeout: float = 10.0) -> Gpu | None:
    """Ask ``nvidia-smi`` (None when it is missing or fails: no usable NVIDIA GPU)."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        header = subprocess.run([exe], capture_output=True, text=True, timeout=timeout)
        names = subprocess.run([exe, "--query-gpu=name", "--format=csv,noheader"],
                               capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return None
    if header.returncode != 0 or names.returncode != 0:
        return None
    return parse_nvidia_smi(header.stdout, names.stdout)


def torch_build(gpu: Gpu | None) -> str:
    """The PyTorch build for this GPU: the newest CUDA build its driver runs, else CPU."""
    if gpu is None:
        return CPU_BUILD
    for build, needs in TORCH_CUDA_BUILDS:
        if gpu.cuda >= needs:
            return build
    return CPU_BUILD  # a driver older than any CUDA build PyTorch still ships


def torch_index(build: str) -> str:
    """The wheel index URL of a PyTorch build (``cpu``, ``cu126``...)."""
    return TORCH_INDEX.format(build=build)


def venv_python(venv: Path) -> Path:
    """The interpreter inside a virtual environment."""
    if os.name == "nt":
        return venv / "Scripts" / "python.exe"
    return venv / "bin" / "python"


def find_uv() -> str | None:
    """``uv`` on PATH, if installed."""
    return shutil.which("uv")


def default_base_python() -> str:
    """A Python to make the environment with: ``python3`` on PATH (on Windows QGIS's own
    interpreter is ``sys.executable`` of qgis-bin, so it is never used)."""
    for name in ("python3", "python"):
        found = shutil.which(name)
        if found:
            return found
    return sys.executable if os.path.basename(sys.executable).startswith("python") else ""


@dataclass
class SetupOptions:
    """The dialog's choices.

    Attributes:
        venv: Folder of the new environment.
        source: ``pypi``, or the path of a wheel or of a source folder.
        torch_build: ``cpu`` or a CUDA build (``cu126``...); ``none`` skips PyTorch (it
            then comes with the backend's own requirements from PyPI).
        base_python: The Python to make the environment with (ignored with uv).
        uv: The ``uv`` executable, or '' to use ``venv`` and pip.
        extra_pip_args: More arguments for installing the backend (e.g. ``--no-deps``).
    """

    venv: Path
    source: str = "pypi"
    torch_build: str = CPU_BUILD
    base_python: str = ""
    uv: str = ""
    extra_pip_args: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Step:
    """One command of the set-up, with what the log calls it."""

    label: str
    argv: list[str]


def install_target(source: str) -> str:
    """What pip installs: the PyPI name, or a wheel or source folder path.

    Raises:
        ValueError: A path that is neither a wheel nor a folder with a pyproject.toml.
    """
    if source == "pypi":
        return PACKAGE
    path = Path(os.path.expanduser(source))
    if path.is_file() and path.suffix == ".whl":
        return str(path)
    if path.is_dir() and ((path / "pyproject.toml").is_file() or (path / "setup.py").is_file()):
        return str(path)
    raise ValueError(
        f"{source} is neither a wheel (.whl) nor a source folder with a pyproject.toml."
    )


def plan(options: SetupOptions) -> list[Step]:
    """The commands that make the environment and install the backend, in order.

    Raises:
        ValueError: No way to make an environment (no uv, no base Python), or a bad source.
    """
    target = install_target(options.source)
    py = str(venv_python(options.venv))
    if options.uv:
        make = Step("Create the environment (uv)", [options.uv, "venv", str(options.venv)])

        def pip(*args: str) -> list[str]:
            return [options.uv, "pip", "install", "--python", py, *args]
    else:
        if not options.base_python:
            raise ValueError("No Python found to create the environment with; install "
                             "Python 3.10 or newer (or uv) and choose it.")
        make = Step("Create the environment (venv)",
                    [options.base_python, "-m", "venv", str(options.venv)])

        def pip(*args: str) -> list[str]:
            return [py, "-m", "pip", "install", "--disable-pip-version-check", *args]
    steps = [make]
    if options.torch_build != "none":
        steps.append(Step(f"Install PyTorch ({options.torch_build})",
                          pip("torch", "torchvision", "--index-url",
                              torch_index(options.torch_build))))
    steps.append(Step(f"Install {PACKAGE}", pip(*options.extra_pip_args, target)))
    steps.append(Step("Check the backend", [
        py, "-c", "import rs_reasoner; print('rs-reasoner', rs_reasoner.__version__)"]))
    return steps
