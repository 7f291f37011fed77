"""The README's test command on a fresh machine: no display at all, or a display that is set but cannot be
opened, never aborts the run; napari's window is only made through the fixtures that fall back."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

from conftest import probe_display

TESTS = Path(__file__).parent
ROOT = TESTS.parent
#: The fixtures that fall back to offscreen Qt (``make_viewer``) or skip saying why (``make_window_viewer``).
FALLBACK_FIXTURES = {"make_viewer", "make_window_viewer"}
#: napari's own fixtures, which open the real window whatever the display.
WINDOW_FIXTURES = {"make_napari_viewer", "make_napari_viewer_proxy"}


def window_made_without_fallback(source: str) -> list[str]:
    """Where a test module's source asks napari for its window directly: a test requesting one of
    :data:`WINDOW_FIXTURES`, or a call of ``napari.Viewer(...)`` / ``Viewer(...)``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for arg in node.args.args + node.args.kwonlyargs:
                if arg.arg in WINDOW_FIXTURES:
                    found.append(f"line {node.lineno}: {node.name} requests {arg.arg}")
        elif isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else None
            if name == "Viewer":
                found.append(f"line {node.lineno}: calls Viewer(...)")
    return found


def test_the_guard_finds_a_window_made_without_the_fallback():
    bad = ("def test_a(make_napari_viewer):\n    make_napari_viewer()\n"
           "def test_b():\n    import napari\n    napari.Viewer(show=False)\n")
    good = "def test_c(make_viewer, make_window_viewer):\n    make_viewer()\n"
    assert len(window_made_without_fallback(bad)) == 2
    assert window_made_without_fallback(good) == []


def test_no_test_opens_napari_window_without_the_fixture_that_falls_back():
    offenders = {p.name: hits for p in sorted(TESTS.glob("test_*.py")) if p.name != Path(__file__).name
                 if (hits := window_made_without_fallback(p.read_text()))}
    assert not offenders, (f"use make_viewer (ViewerModel without a display) or make_window_viewer (skipped without "
                           f"one) instead: {offenders}")


def test_a_display_that_cannot_be_opened_is_reported_not_fatal():
    problem = probe_display({**os.environ, "DISPLAY": ":917"}, timeout=60)
    assert problem is not None and ":917" in problem and "cannot use it" in problem
    assert probe_display({k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}) \
        .startswith("no display")


def test_the_suite_runs_where_display_is_set_but_unusable(tmp_path):
    """A Qt dock test and a canvas test, run by pytest with this conftest and ``DISPLAY`` naming a display that
    does not exist: the dock test passes offscreen, the canvas test is skipped with the reason, nothing aborts."""
    (tmp_path / "conftest.py").write_text((TESTS / "conftest.py").read_text())
    (tmp_path / "test_probe_run.py").write_text(
        "def test_dock(make_viewer, qtbot):\n"
        "    from qtpy.QtWidgets import QLabel\n"
        "    v = make_viewer()\n"
        "    v.add_image(__import__('numpy').zeros((8, 8)))\n"
        "    w = QLabel('x'); qtbot.addWidget(w)\n"
        "    assert len(v.layers) == 1\n"
        "def test_canvas(make_window_viewer):\n"
        "    make_window_viewer()\n")
    env = {k: v for k, v in os.environ.items() if k not in ("QT_QPA_PLATFORM", "WAYLAND_DISPLAY")}
    env["DISPLAY"] = ":917"
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:xvfb", "-p", "no:cacheprovider", "-rs", "-q",
                           str(tmp_path)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert re.search(r"1 passed, 1 skipped", out), out
    assert "cannot open here" in out and ":917" in out


def test_readme_names_the_system_packages_that_ci_installs():
    """The README's apt-get line for headless Linux and the packages .ci/run installs are one list."""
    readme = (ROOT / "README.md").read_text()
    line = next(ln for ln in readme.splitlines() if ln.strip().startswith("sudo apt-get install") and "xvfb" in ln)
    named = set(line.split("install", 1)[1].replace("-y", "").split())
    ci = (ROOT / ".ci" / "apt-packages.txt").read_text().split()
    assert named == set(ci) and "xvfb" in named and "libxcb-cursor0" in named
