"""The extension as Blender sees it: its manifest passes Blender's own validate and build, and enabling, disabling
and re-enabling it leaves nothing behind."""

from __future__ import annotations

import contextlib
import io
import sys
import zipfile
from pathlib import Path

import blender_env
import bpy
import pytest
from blender_env import MODULE, ROOT, extension

# What a built zip must hold, and what must never ship in it.
REQUIRED = (
    "__init__.py",
    "blender_manifest.toml",
    "engine/catalog.py",
    "operators/",
    "panels/",
    "blender/",
    "blender/engine_probe.py",
    "vendor_setup.py",
    "dependencies.toml",
)
FORBIDDEN_PREFIXES = ("tests/", "bench/", ".venv", ".ci/", ".git/", ".hypothesis/", ".pytest_cache/", ".ruff_cache/")
FORBIDDEN_FILES = ("Makefile", "pyproject.toml", ".gitignore")


def blender_extension_cli(*args: str) -> tuple[int, str]:
    """Run ``blender --command extension <args>`` in-process; its exit status and output."""
    from bl_pkg.bl_extension_cli import cli_extension_handler

    output = io.StringIO()
    with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
        try:
            code = cli_extension_handler(list(args))
        except SystemExit as exc:  # argparse errors and fatal errors exit instead of returning
            code = exc.code if isinstance(exc.code, int) else 1
    return code, output.getvalue()


def test_manifest_passes_blenders_validate():
    code, output = blender_extension_cli("validate", str(ROOT))
    assert code == 0, output


def test_build_ships_the_extension_and_nothing_else(tmp_path):
    code, output = blender_extension_cli("build", "--source-dir", str(ROOT), "--output-dir", str(tmp_path))
    assert code == 0, output
    (archive,) = tmp_path.glob("*.zip")
    with zipfile.ZipFile(archive) as zf:
        names = zf.namelist()
        unpacked_size = sum(info.file_size for info in zf.infolist())

    for required in REQUIRED:
        if required.endswith("/"):
            assert any(n.startswith(required) for n in names), f"{required} missing from {archive.name}"
        else:
            assert required in names, f"{required} missing from {archive.name}"
    for name in names:
        assert not name.startswith(FORBIDDEN_PREFIXES), f"{name} should be excluded by [build] paths_exclude_pattern"
        assert name not in FORBIDDEN_FILES, f"{name} should be excluded by [build] paths_exclude_pattern"
        parts = Path(name).parts
        assert "__pycache__" not in parts and not name.endswith(".pyc"), name
    assert unpacked_size < 20_000_000, "a stray venv, model or render got into the zip"


# Registration.


def _from_extension(obj: object) -> bool:
    module = getattr(obj, "__module__", None) or ""
    return module == MODULE or module.startswith(MODULE + ".")


def _extension_classes() -> list[type]:
    """Every Blender class (operator, panel, list, property group, preferences) the extension's modules define."""
    classes = []
    for name, module in list(sys.modules.items()):
        if module is None or not (name == MODULE or name.startswith(MODULE + ".")):
            continue
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, bpy.types.bpy_struct) and value.__module__ == name:
                classes.append(value)
    return classes


def _leftovers(property_group_names: set[str], site_packages: str) -> list[str]:
    """Everything the extension registers that is still there."""
    found = []
    if hasattr(bpy.types.Scene, "bend"):
        found.append("bpy.types.Scene.bend")
    for name in dir(bpy.types):
        if name.startswith("BEND_") or name in property_group_names:
            found.append(f"bpy.types.{name}")
    # Property groups and preferences are not reachable as bpy.types attributes; ask the classes themselves.
    found += [
        f"registered class {cls.__module__}.{cls.__qualname__}" for cls in _extension_classes() if cls.is_registered
    ]
    found += [f"bpy.ops.bend.{name}" for name in dir(bpy.ops.bend)]
    with contextlib.suppress(AttributeError, RuntimeError):
        bpy.ops.bend.render.poll()
        found.append("bpy.ops.bend.render can still be polled")
    # Menus, headers and panels appended to; read without _dyn_ui_initialize, which would extend every class.
    for name in dir(bpy.types):
        draw = getattr(getattr(bpy.types, name, None), "draw", None)
        for func in getattr(draw, "_draw_funcs", None) or ():
            if _from_extension(func):
                found.append(f"{name} draw function {func.__qualname__}")
    for name in dir(bpy.app.handlers):
        handlers = getattr(bpy.app.handlers, name)
        if isinstance(handlers, list):
            found += [f"bpy.app.handlers.{name}: {f.__qualname__}" for f in handlers if _from_extension(f)]
    for id_type in (bpy.types.Scene, bpy.types.WindowManager, bpy.types.Object):
        found += [
            f"{id_type.__name__}.{p.identifier}" for p in id_type.bl_rna.properties if p.identifier.startswith("bend")
        ]
    keyconfig = bpy.context.window_manager.keyconfigs.addon
    if keyconfig is not None:
        for keymap in keyconfig.keymaps:
            found += [f"keymap {keymap.name}: {i.idname}" for i in keymap.keymap_items if i.idname.startswith("bend.")]
    if site_packages in sys.path:
        found.append(f"sys.path entry {site_packages}")
    return found


def test_disable_leaves_nothing_and_enable_restores_everything():
    ext = extension()
    property_group_names = {cls.__name__ for cls in ext.blender.properties.CLASSES} | {"BendPreferences"}
    site_packages = str(ext.blender.dependencies.site_packages())
    export_menu = ext.operators.export.draw_menu

    # The checker itself sees the enabled extension, so an empty list below means something.
    assert "bpy.types.Scene.bend" in _leftovers(property_group_names, site_packages)
    try:
        blender_env.disable()
        assert _leftovers(property_group_names, site_packages) == []

        blender_env.enable()
        assert hasattr(bpy.types.Scene, "bend")
        assert hasattr(bpy.types, "BEND_OT_render"), "bpy.ops.bend.render is missing (not written yet?)"
        assert hasattr(bpy.types, "BEND_OT_export_video")
        assert hasattr(bpy.types, "BEND_OT_install_dependencies")
        assert bpy.ops.bend.export_video.poll() in (True, False)
        assert export_menu in bpy.types.TOPBAR_MT_render._dyn_ui_initialize()
        assert site_packages in sys.path
        for cls in (*ext.blender.properties.CLASSES, ext.blender.preferences.BendPreferences):
            assert cls.is_registered, cls

        # A second round finds the same clean state: nothing was registered twice.
        blender_env.disable()
        assert _leftovers(property_group_names, site_packages) == []
    finally:
        if MODULE not in bpy.context.preferences.addons:
            blender_env.enable()
    assert MODULE in bpy.context.preferences.addons


@pytest.mark.parametrize("menu", ["TOPBAR_MT_render"])
def test_render_menu_entry_is_registered_once(menu):
    draw_funcs = getattr(bpy.types, menu)._dyn_ui_initialize()
    export_menu = extension().operators.export.draw_menu
    assert draw_funcs.count(export_menu) == 1
