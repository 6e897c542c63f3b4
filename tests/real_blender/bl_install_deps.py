"""Step "deps" (``blender -b --online-mode --python``): Install Dependencies for real, then import the engine's stack.

The operator runs vendor_setup.py with Blender's own Python into the extension's user site-packages (blocking in
background mode, printing pip's output). Afterwards torch and diffusers must import from that folder, and the
extension must report nothing missing.

The compute choice is the extension's default (Auto: CUDA with an NVIDIA driver, else CPU only). A machine that
reaches PyPI but not PyTorch's own index (where the Linux CPU build lives) can pick PyPI's build with
``REAL_BLENDER_COMPUTE=cuda``, which sets the preference first.
"""

import importlib
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bpy
from real_common import MODULE, Checks, extension


def folder_size(folder: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            if not os.path.islink(path):
                total += os.path.getsize(path)
    return total


def main() -> None:
    checks = Checks()
    if not checks.check(extension() is not None, f"{MODULE} is not loaded: the enable step must pass first"):
        return
    if not checks.check(bpy.app.online_access, "online access is off: run Blender with --online-mode"):
        return
    dependencies = sys.modules[f"{MODULE}.blender.dependencies"]
    site = Path(dependencies.site_packages()).resolve()
    preferences = bpy.context.preferences.addons[MODULE].preferences
    if os.environ.get("REAL_BLENDER_COMPUTE"):
        preferences.compute = os.environ["REAL_BLENDER_COMPUTE"]
    compute = getattr(preferences, "compute", "auto")
    resolved = dependencies.resolve_compute(compute) if hasattr(dependencies, "resolve_compute") else compute
    checks.note(f"compute choice: {compute} ({resolved})")
    started = time.monotonic()
    try:
        result = bpy.ops.bend.install_dependencies()
    except RuntimeError as exc:  # the operator's ERROR report
        checks.fail(f"bpy.ops.bend.install_dependencies() failed: {' '.join(str(exc).split())}")
        return
    seconds = time.monotonic() - started
    if not checks.check(result == {"FINISHED"}, f"bpy.ops.bend.install_dependencies() returned {result}"):
        return
    missing = dependencies.missing()
    checks.check(not missing, f"after installing, the extension still misses {missing}")
    versions = []
    for name in ("torch", "diffusers", "numpy"):
        try:
            module = importlib.import_module(name)
        except Exception as exc:  # an ImportError, or a broken wheel's own error
            checks.fail(f"import {name} failed after installing: {type(exc).__name__}: {exc}")
            continue
        where = Path(module.__file__).resolve()
        if name != "numpy":  # numpy may be Blender's own
            checks.check(site in where.parents, f"{name} imports from {where}, not from {site}")
        versions.append(f"{name} {module.__version__} ({'site-packages' if site in where.parents else where.parent})")
    if not checks.failures:
        import torch

        cuda = f"CUDA build {torch.version.cuda}" if torch.version.cuda else "CPU build"
        checks.note(f"torch is the {cuda}; cuda available here: {torch.cuda.is_available()}")
    size = folder_size(site)
    checks.note(f"site-packages: {size / 1e9:.2f} GB in {site}; install took {seconds:.0f} s")
    checks.finish(f"installed in {seconds:.0f} s ({size / 1e9:.2f} GB): {', '.join(versions)}")


main()
