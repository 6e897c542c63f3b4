"""Install Diffusion Bender's pinned dependencies (stdlib only: this runs under Blender's Python too).

The pins live in ``dependencies.toml`` beside this file, and nowhere else. Two destinations:

``--target DIR``
    Blender's Python (the "Install dependencies" button runs this with ``sys.executable``). Installs the
    ``[engine]`` group only. numpy is never installed there: Blender ships its own, so the resolver is
    constrained to the numpy this interpreter already has, and any copy pip drops into DIR is removed
    afterwards. bpy is never installed there either.

``--venv DIR``
    The dev venv (``make test`` calls this). Creates it if needed and installs every group, bpy included.
    A stamp file holds the hash of the pins, so an up-to-date venv is left alone.

Every pip invocation runs with ``PYTHONNOUSERSITE=1`` so a user's site-packages never leaks in.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
import venv
from collections.abc import Iterable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent
PINS_FILE = ROOT / "dependencies.toml"
STAMP_NAME = ".diffusion-bender-pins"
GROUPS = ("engine", "host", "dev")
TEST_BLENDERS = "test-blenders"
HOST_PROVIDED = ("numpy", "bpy")


def read_pins(path: Path = PINS_FILE) -> dict[str, dict[str, str]]:
    """Return ``{group: {package: version}}`` from the pins file."""
    with open(path, "rb") as f:
        data = tomllib.load(f)
    known = (*GROUPS, TEST_BLENDERS)
    unknown = set(data) - set(known)
    if unknown:
        raise SystemExit(f"{path.name}: unknown group(s) {sorted(unknown)}; expected {list(known)}")
    return {group: {name: str(version) for name, version in data.get(group, {}).items()} for group in known}


def requirements(pins: dict[str, dict[str, str]], groups: Iterable[str]) -> list[str]:
    """``name==version`` lines for the given groups, in file order."""
    return [f"{name}=={version}" for group in groups for name, version in pins[group].items()]


def pins_digest(path: Path = PINS_FILE) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _pip(python: str | os.PathLike, args: Sequence[str]) -> None:
    env = dict(os.environ, PYTHONNOUSERSITE="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    command = [str(python), "-m", "pip", *args]
    print("+", " ".join(command), flush=True)
    subprocess.run(command, check=True, env=env)


def _installed_numpy_version() -> str | None:
    try:
        import numpy
    except ImportError:
        return None
    return numpy.__version__


def install_target(target: Path, pins: dict[str, dict[str, str]]) -> None:
    """Install the engine group into ``target`` for the running interpreter (Blender's Python)."""
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        args = ["install", "--upgrade", "--target", str(target), *requirements(pins, ["engine"])]
        numpy_version = _installed_numpy_version()
        if numpy_version:
            constraints = Path(tmp) / "constraints.txt"
            constraints.write_text(f"numpy=={numpy_version}\n")
            args += ["--constraint", str(constraints)]
        _pip(sys.executable, args)
    for name in HOST_PROVIDED:
        for entry in target.glob(f"{name}*"):
            if entry.name == name or entry.name.startswith((f"{name}-", f"{name}.libs")):
                print(f"removing {entry.name}: Blender provides {name}", flush=True)
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    for script_dir in (target / "bin",):
        # Console scripts point at this interpreter by absolute path; they are never used from Blender.
        shutil.rmtree(script_dir, ignore_errors=True)
    print(f"installed engine dependencies into {target}", flush=True)


def venv_python(venv_dir: Path) -> Path:
    return venv_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def install_venv(venv_dir: Path, pins: dict[str, dict[str, str]], host_overrides: dict[str, str]) -> None:
    """Create or refresh a dev venv with every group; a venv whose stamp matches the pins is left alone."""
    host = dict(pins["host"], **host_overrides)
    wanted = {**pins, "host": host}
    digest = hashlib.sha256((pins_digest() + repr(sorted(host.items()))).encode()).hexdigest()
    stamp = venv_dir / STAMP_NAME
    python = venv_python(venv_dir)
    if python.exists() and stamp.exists() and stamp.read_text().strip() == digest:
        print(f"{venv_dir} is up to date", flush=True)
        return
    if not python.exists():
        print(f"creating {venv_dir}", flush=True)
        venv.EnvBuilder(with_pip=True, clear=venv_dir.exists()).create(venv_dir)
    _pip(python, ["install", *requirements(wanted, GROUPS)])
    stamp.write_text(digest + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--target", type=Path, help="install the engine group into this folder (Blender's Python)")
    where.add_argument("--venv", type=Path, help="create or refresh a dev venv with every group")
    where.add_argument("--print", dest="print_groups", nargs="*", choices=GROUPS, help="print requirement lines")
    parser.add_argument("--blender", help="with --venv: use the bpy of this [test-blenders] version, e.g. 4.2")
    args = parser.parse_args(argv)

    pins = read_pins()
    if args.print_groups is not None:
        print("\n".join(requirements(pins, args.print_groups or GROUPS)))
    elif args.target:
        install_target(args.target.resolve(), pins)
    else:
        overrides = {}
        if args.blender:
            if args.blender not in pins[TEST_BLENDERS]:
                parser.error(f"--blender: no pin for {args.blender}; [{TEST_BLENDERS}] has {list(pins[TEST_BLENDERS])}")
            overrides["bpy"] = pins[TEST_BLENDERS][args.blender]
        install_venv(args.venv, pins, overrides)
    return 0


if __name__ == "__main__":
    sys.exit(main())
