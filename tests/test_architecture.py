"""The direction of dependencies: backend ← training, plugin apart, no import cycles.

Every ``.py`` under backend/, training/ and rs_reasoner_plugin/ is parsed (not imported)
and its imports collected, including those inside functions and
``importlib.import_module("literal")`` calls, since imports hidden in functions are how
cycles went unseen. ``if TYPE_CHECKING:`` blocks are skipped (they never run).
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: Source roots → the folder their top-level packages live in.
ROOTS = {"backend": REPO / "backend", "training": REPO / "training", "plugin": REPO}
PACKAGES = {
    "rs_reasoner": "backend",
    "rs_reasoner_training": "training",
    "rs_reasoner_plugin": "plugin",
}


@dataclass
class SourceFile:
    module: str
    path: Path
    is_package: bool
    #: Each import: the names it may refer to, most specific first, and its line
    #: (``from a import b`` is module ``a.b`` if that exists, else a name in ``a``).
    imports: list[tuple[tuple[str, ...], int]] = field(default_factory=list)

    def imported_names(self) -> Iterator[tuple[str, int]]:
        """Every name an import may refer to (for rules on top-level packages)."""
        for names, line in self.imports:
            for name in names:
                yield name, line


def _module_name(path: Path, root: Path) -> tuple[str, bool]:
    parts = list(path.relative_to(root).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    if is_package:
        parts = parts[:-1]
    return ".".join(parts), is_package


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(node: ast.AST) -> Iterator[ast.AST]:
    """Every node below ``node``, except the bodies of ``if TYPE_CHECKING:``."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child):
            for other in child.orelse:
                yield other
                yield from _walk(other)
            continue
        yield child
        yield from _walk(child)


def _imports(
    tree: ast.Module, module: str, is_package: bool
) -> list[tuple[tuple[str, ...], int]]:
    package = module if is_package else module.rpartition(".")[0]
    found: list[tuple[tuple[str, ...], int]] = []
    for node in _walk(tree):
        groups: list[tuple[str, ...]] = []
        if isinstance(node, ast.Import):
            groups = [(alias.name,) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            groups = [(f"{base}.{alias.name}", base) for alias in node.names]
        elif isinstance(node, ast.Call):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            arg = node.args[0] if node.args else None
            if (
                called == "import_module"
                and isinstance(arg, ast.Constant)
                and isinstance(arg.value, str)
            ):
                groups = [(arg.value,)]
        found.extend((names, node.lineno) for names in groups)  # type: ignore[attr-defined]
    return found


def _sources() -> dict[str, SourceFile]:
    files: dict[str, SourceFile] = {}
    for package, root_key in PACKAGES.items():
        root = ROOTS[root_key]
        for path in sorted((root / package).rglob("*.py")):
            module, is_package = _module_name(path, root)
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            files[module] = SourceFile(module, path, is_package, _imports(tree, module, is_package))
    return files


SOURCES = _sources()


def _internal_edges(source: SourceFile) -> dict[str, int]:
    """Imports of ``source`` that are files of this repository (the module itself, or the
    package whose ``__init__`` defines an imported name)."""
    edges: dict[str, int] = {}
    for names, line in source.imports:
        target = next((n for n in names if n in SOURCES), names[-1])
        while target and target not in SOURCES:
            target = target.rpartition(".")[0]
        if target and target != source.module:
            edges.setdefault(target, line)
    return edges


GRAPH = {module: _internal_edges(source) for module, source in SOURCES.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in graph:
                    continue
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def _describe(component: list[str]) -> str:
    members = set(component)
    lines = [
        f"  {m} -> {t} ({SOURCES[m].path.relative_to(REPO)}:{line})"
        for m in component
        for t, line in sorted(GRAPH[m].items())
        if t in members
    ]
    return "\n".join(lines)


def test_the_walk_sees_function_level_and_importlib_imports() -> None:
    tree = ast.parse(
        "import importlib\n"
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    import hidden\n"
        "def f():\n    from .sibling import thing\n"
        "    importlib.import_module('pkg.plugin')\n"
    )
    found = {name for names, _ in _imports(tree, "pkg.mod", is_package=False) for name in names}
    assert {"pkg.sibling", "pkg.sibling.thing", "pkg.plugin", "importlib"} <= found
    assert "hidden" not in found
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_between_files() -> None:
    cycles = _cycles({m: set(edges) for m, edges in GRAPH.items()})
    assert not cycles, "import cycles:\n" + "\n\n".join(_describe(c) for c in cycles)


def test_no_import_cycle_between_packages() -> None:
    top = {package: set() for package in PACKAGES}
    for module, edges in GRAPH.items():
        for target in edges:
            a, b = module.partition(".")[0], target.partition(".")[0]
            if a != b:
                top[a].add(b)
    assert not _cycles(top), f"packages import each other: {top}"


def test_backend_never_imports_the_training_package() -> None:
    offenders = [
        f"{SOURCES[m].path.relative_to(REPO)}:{line} imports {name}"
        for m, source in SOURCES.items()
        if m.partition(".")[0] == "rs_reasoner"
        for name, line in source.imported_names()
        if name.partition(".")[0] == "rs_reasoner_training"
    ]
    assert not offenders, "\n".join(offenders)


def test_plugin_imports_neither_torch_nor_the_backend() -> None:
    banned = {"torch", "rs_reasoner", "rs_reasoner_training"}
    offenders = [
        f"{SOURCES[m].path.relative_to(REPO)}:{line} imports {name}"
        for m, source in SOURCES.items()
        if m.partition(".")[0] == "rs_reasoner_plugin"
        for name, line in source.imported_names()
        if name.partition(".")[0] in banned
    ]
    assert not offenders, "\n".join(offenders)


#: Builds the service app, then validates and plans a segmentation request for every kind
#: of model (tiled and whole-extent built-ins, a trained model), as POST /segment does
#: before queueing; prints the heavy modules imported.
_SUBMIT_SCRIPT = """
import json, sys
from pathlib import Path
from rs_reasoner.errors import MissingWeightsError
from rs_reasoner.pipeline import SegmentationPipeline
from rs_reasoner.schemas import SegmentRequest, TrainRequest
from rs_reasoner.service.app import create_app
from rs_reasoner.training_run import check_train_request

raster, labels, upload_dir = sys.argv[1:4]
pipeline = SegmentationPipeline(device="auto")
app = create_app(pipeline, token="t", upload_dir=Path(upload_dir))
checked = []
for model, query in [
    ("index-baseline", "trees"),
    ("clip-openvocab", "trees; water"),
    ("think2seg-rs", "the largest tree"),
    ("think2seg-rs-7b", "the largest tree"),
    ("parcels-model", "forest"),
]:
    request = SegmentRequest(raster=raster, query=query, model=model)
    try:
        pipeline.validate(request, raster)
    except MissingWeightsError:  # checked last, after the plan: no weights on this machine
        pass
    checked.append(model)
check_train_request(
    TrainRequest(raster=raster, labels=labels, class_field="class", name="new-model"), raster
)
app.state.jobs.shutdown()
heavy = sorted(m for m in ("torch", "open_clip", "transformers", "sam2") if m in sys.modules)
print(json.dumps({"checked": checked, "heavy": heavy}))
"""


def test_submitting_a_job_imports_no_torch(tmp_path: Path, shared_data: Path) -> None:
    models = tmp_path / "models"
    trained = models / "parcels-model"
    trained.mkdir(parents=True)
    # A registered trained model: model.json + best.pt (never read at submit time).
    (trained / "model.json").write_text(json.dumps({"classes": ["forest", "water"]}))
    (trained / "best.pt").write_bytes(b"")
    labels = tmp_path / "parcels.geojson"
    labels.write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [
                    {
                        "type": "Feature",
                        "properties": {"class": "forest"},
                        "geometry": {
                            "type": "Polygon",
                            "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]],
                        },
                    }
                ],
            }
        )
    )
    raster = shared_data / "neon_osbs_rgb_10cm_utm17n.tif"
    env = {**os.environ, "RS_REASONER_MODELS_DIR": str(models), "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-c", _SUBMIT_SCRIPT, str(raster), str(labels), str(tmp_path / "up")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    if out.returncode:
        pytest.fail(f"the submit script failed:\n{out.stderr[-3000:]}")
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["checked"] == [
        "index-baseline", "clip-openvocab", "think2seg-rs", "think2seg-rs-7b", "parcels-model"
    ]
    assert report["heavy"] == []
