"""Layering rules: Qt only under widgets/, heavy libraries only inside functions, every manifest name imports."""

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
