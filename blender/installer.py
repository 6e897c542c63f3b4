"""Install Dependencies' child process and what it printed, and the last Engine Python check: the state the
operators (operators/dependencies.py) write and the preferences and panels read.

The child is Blender's own Python (``sys.executable``) running vendor_setup.py, so the wheels pip picks match
Blender. A reader thread moves the child's output lines into a queue; ``drain`` moves them into the log without
waiting, so the UI never waits on a pipe.
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
from collections import deque
from pathlib import Path

import bpy

from . import dependencies, engine_python

ROOT = Path(__file__).resolve().parent.parent  # the extension root, where vendor_setup.py lives
VENDOR_SETUP = ROOT / "vendor_setup.py"
LOG_LINES = 200
ONLINE_ACCESS_HINT = "Allow Online Access in Preferences > System"

LOG: deque[str] = deque(maxlen=LOG_LINES)
STATE = {"running": False, "returncode": None}


def install_log() -> list[str]:
    """The last lines the installer printed (for panels)."""
    return list(LOG)


def is_running() -> bool:
    return bool(STATE["running"])


def last_returncode() -> int | None:
    """The exit status of the last install that ran to the end, or None."""
    return STATE["returncode"]


def online_access() -> bool:
    """Whether the user allows Blender to go online (Preferences > System > Network)."""
    return bool(bpy.app.online_access)


def install_command(compute: str = "auto") -> list[str]:
    """Blender's Python running vendor_setup.py into the extension's user site-packages, for a compute choice."""
    return [
        sys.executable,
        str(VENDOR_SETUP),
        "--target",
        str(dependencies.site_packages()),
        "--compute",
        dependencies.resolve_compute(compute),
    ]


def install_environment() -> dict[str, str]:
    # No user site-packages, so a package the user installed for another Python never satisfies a pin.
    return dict(os.environ, PYTHONNOUSERSITE="1", PYTHONUNBUFFERED="1")


def start(compute: str = "auto") -> subprocess.Popen:
    LOG.clear()
    STATE["returncode"] = None
    command = install_command(compute)
    LOG.append("$ " + " ".join(command))
    return subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        bufsize=1,
        env=install_environment(),
        cwd=str(ROOT),
    )


def _read_lines(stream, lines: queue.Queue) -> None:
    try:
        for line in stream:
            lines.put(line.rstrip("\r\n"))
    finally:
        lines.put(None)  # end of output


def start_reader(process: subprocess.Popen) -> queue.Queue:
    """A queue the child's output lines arrive on, ending with None, filled by a daemon thread."""
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_read_lines, args=(process.stdout, lines), daemon=True).start()
    return lines


def drain(lines: queue.Queue) -> bool:
    """Move the lines that have arrived into the log without waiting; whether the output has ended."""
    while True:
        try:
            line = lines.get_nowait()
        except queue.Empty:
            return False
        if line is None:
            return True
        LOG.append(line)


CHECKED: dict[str, engine_python.EngineCheck] = {}


def last_check(python: str) -> engine_python.EngineCheck | None:
    """What the last "Check Engine Python" of this Python found (for the preferences); None if it was not checked."""
    return CHECKED.get(python)
