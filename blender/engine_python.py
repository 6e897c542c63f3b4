"""The Python that runs the engine, and the check that it can.

The engine always runs in a child process, so it need not run in Blender's Python: the Engine Python preference
names an existing environment that has the engine's packages (an artist's CUDA venv, a conda env). That sidesteps
Blender's own Python version and a second multi-GB torch. Empty means Blender's Python with the dependencies that
Install Dependencies put in the extension's folder.

The check runs ``engine_probe.py`` (stdlib only, imports nothing heavy) under that Python. Renders, previews and
sweeps refuse to start, with one line naming the preference, when it finds the Python unusable: it does not run,
it is older than the pinned packages allow, or a package is missing. A version other than the pinned one is only
a note: an artist's environment may well work with it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import bpy

from .. import vendor_setup
from . import dependencies, preferences
from .scene_job import SceneJobError

PROBE = Path(__file__).resolve().parent / "engine_probe.py"
# diffusers 0.42 and its neighbours in dependencies.toml need Python 3.11 or later.
MIN_PYTHON = (3, 11)
PROBE_TIMEOUT_S = 30
PREFERENCE = "Engine Python in Preferences > Add-ons > Diffusion Bender"

# Pythons that passed the check, keyed by path and modification time, so a render does not probe every time.
_passed: set[tuple[str, int]] = set()


@dataclass
class EngineCheck:
    """What the probe found. ``problems`` make the Python unusable; ``notes`` are versions other than the pins."""

    python: str
    version: str | None = None
    packages: dict[str, dict] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def usable(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        """One line: the Python and the versions it has."""
        found = ", ".join(f"{name} {p['version']}" for name, p in self.packages.items() if p["version"])
        return f"Python {self.version}: {found}" if self.version else self.python


def engine_pins() -> dict[str, str]:
    """The packages the engine imports, with their pins (numpy from [host]: Blender provides it otherwise)."""
    pins = vendor_setup.read_pins()
    return {**pins["engine"], "numpy": pins["host"]["numpy"]}


def probe_environment() -> dict[str, str]:
    """The environment the engine process gets (engine_process.EngineProcess), so the probe sees what it will."""
    env = dict(os.environ, PYTHONNOUSERSITE="1")
    env["PYTHONPATH"] = os.pathsep.join([str(PROBE.parent), str(dependencies.site_packages())])
    return env


def check(python: str) -> EngineCheck:
    """Run the probe under ``python`` and judge what it reports; never raises."""
    if os.sep not in python:  # a bare "python3": the one on PATH, as the engine process would start it
        python = shutil.which(python) or python
    result = EngineCheck(python)
    if not Path(python).is_file():
        result.problems.append(f"{python} does not exist")
        return result
    pins = engine_pins()
    try:
        completed = subprocess.run(
            [python, str(PROBE), json.dumps(pins)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=PROBE_TIMEOUT_S,
            env=probe_environment(),
            cwd=str(PROBE.parent),
        )
    except subprocess.TimeoutExpired:
        result.problems.append(f"{python} did not answer within {PROBE_TIMEOUT_S} s")
        return result
    except OSError as exc:
        result.problems.append(f"{python} cannot run ({exc.strerror or exc})")
        return result
    report = _last_event(completed.stdout)
    if completed.returncode != 0 or report is None:
        said = (completed.stderr.strip().splitlines() or completed.stdout.strip().splitlines() or ["no output"])[-1]
        result.problems.append(f"{python} is not a Python that runs the check ({said})")
        return result
    result.version = report["python"]
    result.packages = report["packages"]
    if tuple(int(part) for part in result.version.split(".")[:2]) < MIN_PYTHON:
        needed = ".".join(map(str, MIN_PYTHON))
        result.problems.append(f"Python {result.version} is too old: the pinned packages need {needed} or later")
    for name, found in result.packages.items():
        if found["version"] is None:
            result.problems.append(f"{name} is not installed (pinned {found['pin']})")
        elif not found["meets_pin"]:
            result.notes.append(f"{name} {found['version']} differs from the pinned {found['pin']}")
    return result


def _last_event(stdout: str) -> dict | None:
    for line in reversed(stdout.splitlines()):
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and event.get("event") == "check":
            return event
    return None


def _key(python: str) -> tuple[str, int]:
    return python, Path(python).stat().st_mtime_ns


def check_usable(python: str) -> EngineCheck | None:
    """The check's result when it finds problems; None when the Python is usable (remembered once it passed)."""
    try:
        if _key(python) in _passed:
            return None
    except OSError:
        pass
    result = check(python)
    if result.usable:
        _passed.add(_key(python))
        return None
    return result


def engine_python(context: bpy.types.Context) -> str:
    """The Python that runs the engine: the preference, or Blender's own."""
    return configured(context) or sys.executable


def configured(context: bpy.types.Context) -> str:
    """The Engine Python preference as an absolute path; empty when it is not set."""
    return bpy.path.abspath(preferences.get(context).engine_python)


def check_dependencies(context: bpy.types.Context) -> None:
    """Refuse early, naming the fix, when the engine could not run: its dependencies or its Python are unusable."""
    missing = dependencies.missing()
    if missing:
        raise SceneJobError(
            f"The engine's dependencies are missing ({', '.join(missing)}): install them in "
            "Preferences > Add-ons > Diffusion Bender, or set an Engine Python there"
        )
    python = configured(context)
    if not python:
        return
    failed = check_usable(python)
    if failed is not None:
        raise SceneJobError(
            f"The Engine Python cannot run the engine: {'; '.join(failed.problems)}. Set {PREFERENCE} "
            "to a Python with the engine's packages, or clear it to use Blender's own"
        )
