"""The engine in a child process: ``python -m engine <command>``, its JSON-lines events read on a thread.

Renders, sweeps and previews never run torch in Blender's process: the UI stays responsive, GPU memory is freed
when the child exits, and a crash in torch cannot take Blender down. The child's Python is Blender's own (or the
one set in the preferences), with the extension root and the dependencies folder on its path.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import threading
from collections import deque
from collections.abc import Sequence
from pathlib import Path

from . import dependencies

EXTENSION_ROOT = Path(__file__).resolve().parent
EXIT_STOPPED = 130


class EngineProcess:
    """One engine command in a child process. Events arrive on ``events`` (None marks the end of the stream).

    ``interactive`` keeps the child's stdin open for requests (``python -m engine serve``)."""

    def __init__(self, arguments: Sequence[str], python: str, *, interactive: bool = False) -> None:
        env = dict(os.environ, PYTHONNOUSERSITE="1")
        env["PYTHONPATH"] = os.pathsep.join([str(EXTENSION_ROOT), str(dependencies.site_packages())])
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
        )
        self.events: queue.Queue = queue.Queue()
        self.stderr_tail: deque[str] = deque(maxlen=40)
        self._readers = [
            threading.Thread(target=self._read_events, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read_events(self) -> None:
        for line in self.process.stdout:
            try:
                self.events.put(json.loads(line))
            except ValueError:
                self.stderr_tail.append(line.rstrip())
        self.events.put(None)  # end of stream

    def _read_stderr(self) -> None:
        for line in self.process.stderr:
            self.stderr_tail.append(line.rstrip())

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def send(self, request: dict) -> None:
        """Write one request line to an interactive child."""
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()

    def stop(self) -> None:
        """Ask the engine to stop after the current denoising step (it keeps finished frames)."""
        if self.running:
            self.process.terminate()

    def wait(self) -> int:
        code = self.process.wait()
        for reader in self._readers:
            reader.join(timeout=5)
        return code

    def last_error_line(self) -> str:
        return next((line for line in reversed(self.stderr_tail) if line.strip()), "")
