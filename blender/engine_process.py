"""The engine in a child process: ``python -m engine <command>``, its JSON-lines events read on a thread.

Renders, sweeps and previews never run torch in Blender's process: the UI stays responsive, GPU memory is freed
when the child exits, and a crash in torch cannot take Blender down. The child's Python is Blender's own (or the
one set in the preferences), with the extension root and the dependencies folder on its path.

The child starts a process group of its own (POSIX: a new session; Windows: a new process group), so whatever it
starts in turn (a wrapper script's engine, say) belongs to the run: Esc reaches all of it, and when the child
ends, nothing it left behind may still be writing into the output folder when Blender cleans up after the run.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path

from . import dependencies

EXTENSION_ROOT = Path(__file__).resolve().parent.parent  # holds engine/
EXIT_STOPPED = 130
# How long the end of a run waits for the processes its child left behind to die after SIGKILL: a process stuck in
# the kernel (a hung network disk) must not hang Blender, while exiting with gigabytes mapped can take seconds.
GROUP_EXIT_SECONDS = 30.0


def engine_path(python: str) -> list[str]:
    """What the child's PYTHONPATH holds: the extension root, and the installed dependencies for Blender's Python.

    The dependencies folder holds wheels built for Blender's Python; an Engine Python of the artist's (a CUDA venv,
    a conda env) has its own packages, which that folder must not shadow.
    """
    paths = [str(EXTENSION_ROOT)]
    # Compared as paths, not as files: a venv's python is often a link to the very interpreter it was made from.
    if os.path.normcase(os.path.abspath(python)) == os.path.normcase(os.path.abspath(sys.executable)):
        paths.append(str(dependencies.site_packages()))
    return paths


class EngineProcess:
    """One engine command in a child process. Events arrive on ``events`` (None marks the end of the stream).

    ``interactive`` keeps the child's stdin open for requests (``python -m engine serve``); ``on_event``, when
    given, receives each event (and the None at the end) on the reading thread instead of ``events``."""

    def __init__(
        self,
        arguments: Sequence[str],
        python: str,
        *,
        interactive: bool = False,
        on_event: Callable[[EngineProcess, dict | None], None] | None = None,
    ) -> None:
        env = dict(os.environ, PYTHONNOUSERSITE="1")
        env["PYTHONPATH"] = os.pathsep.join(engine_path(python))
        self.process = subprocess.Popen(
            [python, "-m", "engine", *arguments],
            cwd=EXTENSION_ROOT,
            env=env,
            stdin=subprocess.PIPE if interactive else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
            **_own_group(),
        )
        self.events: queue.Queue = queue.Queue()
        self._deliver = (lambda event: on_event(self, event)) if on_event else self.events.put
        self.stderr_tail: deque[str] = deque(maxlen=40)
        self._readers = [
            threading.Thread(target=self._read_events, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read_events(self) -> None:
        # Each reader closes its own pipe at the end: closing it from another thread would block on the reader.
        with self.process.stdout:
            for line in self.process.stdout:
                try:
                    event = json.loads(line)
                except ValueError:
                    self.stderr_tail.append(line.rstrip())
                    continue
                self._deliver(event)
        self._deliver(None)  # end of stream

    def _read_stderr(self) -> None:
        with self.process.stderr:
            for line in self.process.stderr:
                self.stderr_tail.append(line.rstrip())

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    @property
    def pid(self) -> int:
        return self.process.pid

    def send(self, request: dict) -> None:
        """Write one request line to an interactive child."""
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()

    def stop(self) -> None:
        """Ask the engine to stop after the current denoising step (it keeps finished frames).

        SIGTERM goes to the whole group: an engine started by a wrapper script stops too."""
        if not self.running:
            return
        if os.name == "nt":
            self.process.terminate()
            return
        try:  # the child is not reaped yet, so its pid (the group's id) cannot have been reused
            os.killpg(self.process.pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            self.process.terminate()

    def wait(self) -> int:
        """Wait for the child, end whatever of its group outlived it, and close the pipes; the child's exit code."""
        code = self.process.wait()
        _end_group(self.process.pid)
        for reader in self._readers:
            reader.join(timeout=5)
        if self.process.stdin is not None:
            with contextlib.suppress(OSError):  # a child that died before reading its input: the rest is moot
                self.process.stdin.close()
        return code

    def last_error_line(self) -> str:
        return next((line for line in reversed(self.stderr_tail) if line.strip()), "")


def _own_group() -> dict:
    """``Popen`` options that start the child as the leader of a process group of its own."""
    if os.name == "nt":
        return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}
    return {"start_new_session": True}


def _end_group(group: int) -> None:
    """Kill what is left of process group ``group`` once its leader has exited, and wait until none of it runs.

    A wrapper killed by the out-of-memory killer can leave its engine exiting or still rendering; its half-written
    temporaries are only removable once it can write no more. Windows: skipped (ending a tree takes a job object).
    """
    if os.name == "nt":
        return
    deadline = time.monotonic() + GROUP_EXIT_SECONDS
    signalled = False
    while _group_alive(group) and time.monotonic() < deadline:
        if not signalled:
            try:
                os.killpg(group, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                return
            signalled = True
        time.sleep(0.01)


def _group_alive(group: int) -> bool:
    """Whether a process of ``group`` can still run: a zombie (killed, not yet reaped by init) cannot."""
    proc = Path("/proc")
    if not (proc / "self" / "stat").exists():  # no procfs (macOS): the group exists until init reaps it
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return False
        return True
    for stat in proc.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text(encoding="ascii", errors="replace").rpartition(")")[2].split()
        except OSError:  # it ended while we looked
            continue
        if len(fields) > 2 and fields[2] == str(group) and fields[0] not in ("Z", "X"):
            return True
    return False
