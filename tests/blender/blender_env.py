"""The real extension inside the bpy module, loaded once per test process (see devtools/extension_session.py).

``ENGINE_PYTHON`` is the Engine Python preference the tests run the engine with (conftest sets it before each
test). The main dev venv (bpy 5.0) has the engine's packages, so there it is empty: Blender's own Python runs the
engine, as after Install Dependencies. The 4.2 and 4.5 test venvs hold no torch, so there it is the main dev venv's
Python: ``BEND_TEST_ENGINE_PYTHON`` (the Makefile passes it), else ``.venv`` beside this checkout.
"""

import importlib.util
import os
from pathlib import Path

from devtools.extension_session import EXTENSION_ID, MODULE, ROOT, disable, enable, extension, start

__all__ = ["ENGINE_PYTHON", "EXTENSION_ID", "MODULE", "ROOT", "disable", "enable", "extension"]

ENGINE_VARIABLE = "BEND_TEST_ENGINE_PYTHON"


def _engine_python() -> str:
    if importlib.util.find_spec("torch") is not None:
        return ""
    python = os.environ.get(ENGINE_VARIABLE) or str(
        ROOT / ".venv" / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    )
    if not Path(python).is_file():
        raise RuntimeError(
            f"This venv has no torch and {python} does not exist: set {ENGINE_VARIABLE} to a Python with the engine's "
            "packages, or build the dev venv with `make venvs-main`"
        )
    return python


ENGINE_PYTHON = _engine_python()

start()
