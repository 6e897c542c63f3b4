"""Install Diffusion Bender's pinned dependencies (stdlib only: this runs under Blender's Python too).

The pins live in ``dependencies.toml`` beside this file, and nowhere else. Two destinations:

``--target DIR``
    Blender's Python (the "Install dependencies" button runs this with ``sys.executable``). Installs the
    ``[engine]`` group, with the torch build of ``--compute`` (NVIDIA CUDA, AMD ROCm, CPU only, Apple). Blender's
    own numpy is never replaced: the resolver is constrained to the numpy this interpreter already has, and any
    copy pip drops into DIR is removed afterwards. A Blender without numpy (Debian's) gets the
    ``[target-numpy]`` pin, which has wheels for every Python Blender ships. bpy is never installed there.

``--venv DIR``
    A dev venv (``make test`` calls this). Creates it if needed and installs every group, bpy included. With
    ``--blender X.Y`` (the 4.2 and 4.5 test venvs) it gets that bpy and only what Blender's own process runs
    (numpy, scipy, pillow) plus the dev tools: their tests run the engine in the main dev venv's Python.
    A stamp file holds the hash of what was installed, so an up-to-date venv is left alone.

Every pip invocation runs with ``PYTHONNOUSERSITE=1`` so a user's site-packages never leaks in. When pip fails,
this exits with pip's own last lines (the ones that say why), not a traceback.
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
from collections import deque
from collections.abc import Iterable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent
PINS_FILE = ROOT / "dependencies.toml"
STAMP_NAME = ".diffusion-bender-pins"
GROUPS = ("engine", "host", "dev", "dev-engine")
DEV_ENGINE = "dev-engine"
TEST_BLENDERS = "test-blenders"
TARGET_NUMPY = "target-numpy"
COMPUTE = "compute"
HOST_PROVIDED = ("numpy", "bpy")
# What a test venv for another Blender needs from [engine]: the bake computes features in Blender's own process
# (scipy), and the tests read frames (pillow). torch and the rest run in the engine's Python.
BLENDER_PROCESS_ENGINE = ("scipy", "pillow")
COMPUTE_CHOICES = ("cuda", "rocm", "cpu", "apple")
PIP_TAIL = 3
FAILED_PREFIX = "Install failed: "


class PipFailed(Exception):
    """pip exited with an error; ``lines`` are its own last words about why."""

    def __init__(self, returncode: int, lines: list[str]) -> None:
        super().__init__(" / ".join(lines) or f"pip exited with status {returncode}")
        self.returncode = returncode
        self.lines = lines


def read_pins(path: Path = PINS_FILE) -> dict[str, dict[str, str]]:
    """Return ``{group: {package: version}}`` from the pins file (the compute choices are read by ``read_compute``)."""
    data = _load(path)
    known = (*GROUPS, TEST_BLENDERS, TARGET_NUMPY)
    unknown = set(data) - {*known, COMPUTE}
    if unknown:
        raise SystemExit(f"{path.name}: unknown group(s) {sorted(unknown)}; expected {[*known, COMPUTE]}")
    return {group: {name: str(version) for name, version in data.get(group, {}).items()} for group in known}


def read_compute(path: Path = PINS_FILE) -> dict[str, dict]:
    """``{choice: {"label": ..., "description": ..., "<os>": {"index": ..., sizes...}}}`` from ``[compute.*]``."""
    choices = _load(path).get(COMPUTE, {})
    if set(choices) != set(COMPUTE_CHOICES):
        raise SystemExit(f"{path.name}: [compute] must have exactly {list(COMPUTE_CHOICES)}, not {sorted(choices)}")
    return choices


def _load(path: Path) -> dict:
    with open(path, "rb") as f:
        return tomllib.load(f)


def requirements(pins: dict[str, dict[str, str]], groups: Iterable[str]) -> list[str]:
    """``name==version`` lines for the given groups, in file order."""
    return [f"{name}=={version}" for group in groups for name, version in pins[group].items()]


def pins_digest(path: Path = PINS_FILE) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- compute choice ------------------------------------------------------------------------------------------


def this_os() -> str:
    """``linux``, ``windows`` or ``macos``: the keys of a ``[compute.*]`` choice."""
    return {"win32": "windows", "darwin": "macos"}.get(sys.platform, "linux")


def default_compute(os_name: str | None = None, has_nvidia_smi: bool | None = None) -> str:
    """The automatic choice: an NVIDIA driver (nvidia-smi on the PATH) means CUDA; a Mac means Apple; else CPU."""
    os_name = os_name or this_os()
    if has_nvidia_smi is None:
        has_nvidia_smi = shutil.which("nvidia-smi") is not None
    if has_nvidia_smi and os_name != "macos":
        return "cuda"
    return "apple" if os_name == "macos" else "cpu"


def compute_build(choice: str, os_name: str | None = None, path: Path = PINS_FILE) -> dict:
    """The ``[compute.<choice>]`` entry for this OS (its torch index and sizes); SystemExit when there is none."""
    os_name = os_name or this_os()
    entry = read_compute(path)[choice]
    build = entry.get(os_name)
    if build is None:
        available = [c for c, e in read_compute(path).items() if os_name in e]
        raise SystemExit(f"--compute {choice}: {entry['label']} has no torch build for {os_name}; choose {available}")
    return build


def _gb(mb: float) -> str:
    return f"{mb / 1000:.1f} GB"


def size_text(build: dict) -> str:
    """What the choice downloads and installs, saying which figures were measured and which were not."""
    parts = []
    if "download_mb" in build:
        parts.append(f"about {_gb(build['download_mb'])} to download")
    if "installed_mb" in build:
        parts.append(f"{_gb(build['installed_mb'])} installed")
    if not parts:
        return f"size unknown before the download ({build.get('sizes', 'not measured')})"
    return ", ".join(parts) + f" ({build['sizes']})"


# --- pip -----------------------------------------------------------------------------------------------------


def pip_failure_lines(lines: Sequence[str]) -> list[str]:
    """pip's own words about why it failed: a certificate problem, then its last ERROR lines, else its last lines."""
    lines = [line.strip() for line in lines if line.strip()]
    # pip's retry warnings name the certificate too, but its "Could not fetch URL" line says what it means.
    certificate = sorted((line for line in lines if "certificate" in line.lower()), key=lambda x: x.startswith("WARN"))[
        :1
    ]
    errors = [line for line in lines if line.startswith("ERROR:")][-PIP_TAIL:]
    chosen = certificate + [line for line in errors if line not in certificate]
    return chosen or lines[-PIP_TAIL:]


def _pip(python: str | os.PathLike, args: Sequence[str]) -> None:
    """Run pip, passing its output through as it comes; PipFailed with its last lines when it fails."""
    env = dict(os.environ, PYTHONNOUSERSITE="1", PIP_DISABLE_PIP_VERSION_CHECK="1", PYTHONUNBUFFERED="1")
    command = [str(python), "-m", "pip", *args]
    print("+", " ".join(command), flush=True)
    tail: deque[str] = deque(maxlen=200)
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace", bufsize=1
    )
    with process.stdout:
        for line in process.stdout:
            print(line, end="", flush=True)
            tail.append(line.rstrip("\r\n"))
    returncode = process.wait()
    if returncode != 0:
        raise PipFailed(returncode, pip_failure_lines(tail))


def _installed_numpy_version() -> str | None:
    try:
        import numpy
    except ImportError:
        return None
    return numpy.__version__


def target_pip_args(
    target: Path,
    pins: dict[str, dict[str, str]],
    compute: str,
    numpy_version: str | None,
    constraints: Path,
    os_name: str | None = None,
) -> list[str]:
    """The pip arguments that install the engine group for ``compute`` into ``target``.

    PyTorch's index is added beside PyPI, not instead of it: it publishes torch as ``2.13.0+cpu`` (``+rocm7.2``,
    ``+cu130``), a local version that sorts above PyPI's ``2.13.0``, so torch comes from there and the rest from PyPI.
    """
    build = compute_build(compute, os_name)
    args = ["install", "--upgrade", "--target", str(target)]
    wanted = requirements(pins, ["engine"])
    if build["index"]:
        args += ["--extra-index-url", build["index"]]
        # Pinned with the index's local tag (torch==2.13.0+cpu): when PyTorch's index cannot be reached, pip then
        # fails saying so, instead of quietly taking PyPI's 2.13.0, which on Linux is the 5 GB CUDA build.
        torch = f"torch=={pins['engine']['torch']}"
        wanted = [f"{torch}+{local_tag(build['index'])}" if line == torch else line for line in wanted]
    args += wanted
    if numpy_version:
        constraints.write_text(f"numpy=={numpy_version}\n")
        args += ["--constraint", str(constraints)]
    else:
        args += requirements(pins, [TARGET_NUMPY])
    return args


def local_tag(index: str) -> str:
    """The local version tag of the torch builds on a PyTorch index: ``.../whl/rocm7.2`` publishes ``+rocm7.2``."""
    return index.rstrip("/").rsplit("/", 1)[-1]


def install_target(target: Path, pins: dict[str, dict[str, str]], compute: str = "auto") -> None:
    """Install the engine group into ``target`` for the running interpreter (Blender's Python)."""
    compute = default_compute() if compute == "auto" else compute
    build = compute_build(compute)
    print(f"compute: {read_compute()[compute]['label']}: {size_text(build)}", flush=True)
    target.mkdir(parents=True, exist_ok=True)
    numpy_version = _installed_numpy_version()
    with tempfile.TemporaryDirectory() as tmp:
        _pip(sys.executable, target_pip_args(target, pins, compute, numpy_version, Path(tmp) / "constraints.txt"))
    # Blender's own numpy must win; a Blender without one keeps the numpy installed here.
    provided = HOST_PROVIDED if numpy_version else tuple(n for n in HOST_PROVIDED if n != "numpy")
    for name in provided:
        for entry in target.glob(f"{name}*"):
            if entry.name == name or entry.name.startswith((f"{name}-", f"{name}.libs")):
                print(f"removing {entry.name}: Blender provides {name}", flush=True)
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    for script_dir in (target / "bin",):
        # Console scripts point at this interpreter by absolute path; they are never used from Blender.
        shutil.rmtree(script_dir, ignore_errors=True)
    print(f"installed engine dependencies into {target}", flush=True)


# --- dev venvs -----------------------------------------------------------------------------------------------


def venv_python(venv_dir: Path) -> Path:
    return venv_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def venv_requirements(pins: dict[str, dict[str, str]], host_overrides: dict[str, str]) -> list[str]:
    """Every group for the main dev venv; for another Blender's test venv (a bpy override), no engine but what
    Blender's own process imports."""
    host = dict(pins["host"], **host_overrides)
    engine = pins["engine"]
    groups = GROUPS
    if "bpy" in host_overrides:
        engine = {name: version for name, version in engine.items() if name in BLENDER_PROCESS_ENGINE}
        groups = tuple(group for group in GROUPS if group != DEV_ENGINE)  # they would bring torch
    return requirements({**pins, "engine": engine, "host": host}, groups)


def install_venv(venv_dir: Path, pins: dict[str, dict[str, str]], host_overrides: dict[str, str]) -> None:
    """Create or refresh a dev venv; a venv whose stamp matches what it should hold is left alone."""
    wanted = venv_requirements(pins, host_overrides)
    digest = hashlib.sha256((pins_digest() + repr(wanted)).encode()).hexdigest()
    stamp = venv_dir / STAMP_NAME
    python = venv_python(venv_dir)
    if python.exists() and stamp.exists() and stamp.read_text().strip() == digest:
        print(f"{venv_dir} is up to date", flush=True)
        return
    if not python.exists():
        print(f"creating {venv_dir}", flush=True)
        venv.EnvBuilder(with_pip=True, clear=venv_dir.exists()).create(venv_dir)
    _pip(python, ["install", *wanted])
    stamp.write_text(digest + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--target", type=Path, help="install the engine group into this folder (Blender's Python)")
    where.add_argument("--venv", type=Path, help="create or refresh a dev venv")
    where.add_argument("--print", dest="print_groups", nargs="*", choices=GROUPS, help="print requirement lines")
    parser.add_argument(
        "--compute",
        choices=("auto", *COMPUTE_CHOICES),
        default="auto",
        help="with --target: the torch build (auto: CUDA when nvidia-smi is found, Apple on a Mac, else CPU)",
    )
    parser.add_argument("--blender", help="with --venv: use the bpy of this [test-blenders] version, e.g. 4.2")
    args = parser.parse_args(argv)

    pins = read_pins()
    try:
        if args.print_groups is not None:
            print("\n".join(requirements(pins, args.print_groups or GROUPS)))
        elif args.target:
            install_target(args.target.resolve(), pins, args.compute)
        else:
            overrides = {}
            if args.blender:
                if args.blender not in pins[TEST_BLENDERS]:
                    parser.error(
                        f"--blender: no pin for {args.blender}; [{TEST_BLENDERS}] has {list(pins[TEST_BLENDERS])}"
                    )
                overrides["bpy"] = pins[TEST_BLENDERS][args.blender]
            install_venv(args.venv, pins, overrides)
    except PipFailed as failure:
        # One line, last: Blender's operator reports the last line of this output.
        print(FAILED_PREFIX + str(failure), flush=True)
        return failure.returncode or 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
