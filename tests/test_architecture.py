"""Layering rules: the layer table below, no import cycles, Qt only under widgets/, heavy libraries only inside
functions, every manifest name imports."""

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "napari_vip"
QT = ("qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "superqt", "napari._qt", "napari.qt")
HEAVY = ("torch", "torchvision", "open_clip", "segment_anything", "timm", "transformers")


def imports(tree, top_level_only):
    nodes = tree.body if top_level_only else ast.walk(tree)
    for node in nodes:
        if isinstance(node, ast.Import):
            for a in node.names:
                yield node.lineno, a.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module


def modules():
    for path in sorted(PKG.rglob("*.py")):
        yield path.relative_to(PKG.parent), ast.parse(path.read_text())


def test_qt_is_imported_only_under_widgets():
    offenders = [f"{rel}:{line} imports {name}" for rel, tree in modules() if rel.parts[1] != "widgets"
                 for line, name in imports(tree, top_level_only=False) if name.startswith(QT)]
    assert not offenders, offenders


def test_heavy_libraries_are_imported_inside_functions_outside_models():
    """Only ``models/`` modules that define torch modules may import torch at the top; they are loaded lazily."""
    offenders = [f"{rel}:{line} imports {name} at module level" for rel, tree in modules() if rel.parts[1] != "models"
                 for line, name in imports(tree, top_level_only=True) if name.split(".")[0] in HEAVY]
    assert not offenders, offenders


def _loaded_after_importing(module_names, watch):
    code = (f"import sys, importlib\nfor m in {list(module_names)!r}: importlib.import_module(m)\n"
            f"print(sorted(m for m in {list(watch)!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_loading_the_plugin_imports_no_torch():
    """Every module napari, the worker registry or the CLI imports at start-up stays free of torch."""
    import npe2

    from napari_vip.cli.main import COMMANDS
    from napari_vip.worker.engine import JOB_MODULES

    manifest = npe2.PluginManifest.from_file(PKG / "napari.yaml")
    entry = {c.python_name.partition(":")[0] for c in manifest.contributions.commands or []}
    assert _loaded_after_importing(sorted(entry) + JOB_MODULES + COMMANDS + ["napari_vip.cli.main"],
                                   HEAVY) == "[]"


def test_core_and_worker_import_no_qt():
    names = ["napari_vip.core.markers", "napari_vip.core.image", "napari_vip.layers", "napari_vip.worker.client",
             "napari_vip.worker.engine", "napari_vip.cli.main", "napari_vip.models.clip", "napari_vip.io.samples"]
    assert _loaded_after_importing(names, ("torch", "PyQt6", "PyQt5", "PySide6", "qtpy")) == "[]"


def test_every_python_name_in_the_manifest_imports():
    import npe2

    manifest = npe2.PluginManifest.from_file(PKG / "napari.yaml")
    names = [c.python_name for c in manifest.contributions.commands or []]
    assert names
    for name in names:
        module, _, attr = name.partition(":")
        assert callable(getattr(importlib.import_module(module), attr)), name


def test_manifest_validates():
    exe = Path(sys.executable).parent / "npe2"
    if not exe.exists():
        pytest.skip("npe2 command not installed beside this Python")
    res = subprocess.run([str(exe), "validate", "napari-vip"], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_every_registered_job_module_and_command_imports():
    from napari_vip.cli.main import COMMANDS, build_parser
    from napari_vip.worker.engine import JOB_MODULES

    for name in JOB_MODULES + COMMANDS:
        importlib.import_module(name)
    parser = build_parser()
    assert parser.parse_args(["classify", "x.png", "--classes", "a"]).command == "classify"


#: Which parts of the package each part may import, the package root excepted (it holds only ``__version__``
#: and imports nothing, so every part may read it). A part is a sub-package or a top-level module of
#: ``napari_vip``. A new part gets a row here, placed in the table by what it needs:
#: the rules read top-down, lower layers never import upper ones.
LAYERS = {
    "core": set(),                                        # numpy / scikit-image / Pillow only
    "models": {"core"},                                   # torch modules, checkpoints
    "io": {"core"},                                       # files in and out, npe2 readers and writers
    "worker": {"models", "io", "core"},                   # requests, handlers, the Engine; jobs that read data
                                                          # sets (evaluation) read their files through io
    "layers": {"core"},                                   # napari layer data <-> core types, Qt-free
    "serve": {"worker", "models", "core"},                # the model server and its remote client (a transport)
    "widgets": {"serve", "worker", "models", "io", "core", "layers"},  # Qt docks: event wiring only
    "cli": {"widgets", "serve", "worker", "models", "io", "core", "layers"},  # CLI twin of every dock
}
ROOT = "napari_vip"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    rel = Path(*name.split("."))
    return (PKG.parent / rel).with_suffix(".py").is_file() or (PKG.parent / rel / "__init__.py").is_file()


def _package_imports(path: Path):
    """``(line, module)`` for every import of a ``napari_vip`` module in ``path``: absolute and relative,
    at module level and inside functions. ``from . import x`` counts as importing ``x`` when ``x`` is a module."""
    name = _module_name(path)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            targets = [f"{module}.{a.name}" if _is_module(f"{module}.{a.name}") else module for a in node.names]
        else:
            continue
        for target in targets:
            if target == ROOT or target.startswith(ROOT + "."):
                yield node.lineno, target


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ROOT


def _import_graph():
    return {_module_name(p): (p, sorted(set(_package_imports(p)))) for p in sorted(PKG.rglob("*.py"))}


def test_every_part_of_the_package_is_in_the_layer_table():
    unknown = sorted({_part(m) for m in _import_graph()} - set(LAYERS) - {ROOT})
    assert not unknown, (f"{unknown} not in the layer table: add each to LAYERS in tests/test_architecture.py "
                         f"with the parts it may import (see CONTRIBUTING.md)")


def test_no_part_imports_a_part_above_it():
    graph = _import_graph()
    root_imports = [m for _, m in graph[ROOT][1]]
    assert not root_imports, f"the package root imports {root_imports}; it holds only __version__"
    offenders = []
    for module, (path, imports) in graph.items():
        part = _part(module)
        allowed = LAYERS.get(part, set()) | {part, ROOT}
        offenders += [f"{path.relative_to(PKG.parent)}:{line} ({part}) imports {target} ({_part(target)}); "
                      f"{part} may import only {sorted(allowed - {ROOT})}"
                      for line, target in imports if _part(target) not in allowed]
    assert not offenders, "\n".join(offenders)


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_cycle_finder_finds_a_loop_through_a_function_level_import():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_between_modules():
    graph = _import_graph()
    edges = {m: {t for _, t in imports if t != m} for m, (_, imports) in graph.items()}
    cycles = _cycles(edges)
    detail = [" <-> ".join(c) + ": " + "; ".join(f"{m} imports {t} (line {line})" for m in c
                                               for line, t in graph[m][1] if t in c) for c in cycles]
    assert not cycles, "\n".join(detail)
