"""The layers as folders: engine/ (numbers, no Blender) <- blender/ (state and services) <- operators/ (verbs)
and panels/ (views). Checked from the source, and for the engine also by importing it in a fresh interpreter."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _imports(path: Path) -> list[str]:
    """Every module a file imports, resolved to a dotted name from the extension root ("blender.compat")."""
    package = path.relative_to(ROOT).with_suffix("").parts[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = list(package[: len(package) - node.level + 1]) if node.level else []
            module = ".".join([*base, *(node.module.split(".") if node.module else [])])
            # "from ..blender import compat": each name may be a module of that package
            found += [module, *(f"{module}.{alias.name}" if module else alias.name for alias in node.names)]
    return found


def _files(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def _layer(module: str) -> str:
    return module.split(".")[0]


@pytest.mark.parametrize("path", _files("engine"), ids=lambda p: p.name)
def test_the_engine_imports_neither_blender_nor_the_extension(path):
    bad = [m for m in _imports(path) if _layer(m) in {"bpy", "aud", "mathutils", "blender", "operators", "panels"}]
    assert bad == [], f"{path.name} imports {bad}"


@pytest.mark.parametrize("path", _files("blender"), ids=lambda p: p.name)
def test_the_blender_services_never_import_the_verbs(path):
    assert [m for m in _imports(path) if _layer(m) == "operators"] == []


@pytest.mark.parametrize("path", _files("operators"), ids=lambda p: p.name)
def test_an_operator_module_never_imports_another(path):
    siblings = [m for m in _imports(path) if _layer(m) == "operators" and m not in {"operators", "operators.__init__"}]
    if path.name == "__init__.py":
        return  # the package lists its modules
    assert siblings == [], f"{path.name} imports {siblings}: shared code belongs in blender/"


@pytest.mark.parametrize("path", _files("panels"), ids=lambda p: p.name)
def test_a_panel_draws_verbs_by_name_and_never_imports_them(path):
    assert [m for m in _imports(path) if _layer(m) == "operators"] == []


def test_the_import_reader_sees_relative_imports():
    # The checks above only mean something if relative imports resolve to layers.
    assert "blender.compat" in _imports(ROOT / "operators" / "export.py")
    assert "engine.catalog" in _imports(ROOT / "blender" / "scene_job.py")


def test_importing_every_engine_module_leaves_bpy_unimported():
    """The dev venv has bpy installed, so only a fresh interpreter shows whether the engine pulls it in."""
    script = textwrap.dedent(
        """\
        import importlib, pkgutil, sys
        import engine
        for info in pkgutil.walk_packages(engine.__path__, "engine."):
            if info.name != "engine.__main__":  # the command line itself, which would run
                importlib.import_module(info.name)
        leaked = sorted(m for m in sys.modules if m.split(".")[0] in {"bpy", "aud", "mathutils", "bl_ext"})
        print(",".join(leaked))
        """
    )
    child = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={"OMP_NUM_THREADS": "1", "PATH": ""},
    )
    assert child.returncode == 0, child.stderr[-2000:]
    assert child.stdout.strip() == ""
