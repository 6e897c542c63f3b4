"""Stopping on SIGINT and SIGTERM within a second, in every state, without losing a finished frame.

A stop request sets an event that the sampler checks between denoising steps. That alone cannot end a process that
waits inside one call (an ``open()`` of a FIFO, a long read, a sleep): Python retries an interrupted system call
after its handler returns (PEP 475). So the handler also raises ``RenderCancelled`` in the main thread, which ends
any such wait at once, unless the main thread is inside a ``critical()`` section (a frame's file and manifest
record being written): there the request waits for the section to end, and the next step check stops the render.
The exception is raised once; later signals only set the event, so cleanup (writing the frames already
encoded) runs to its end.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from .errors import RenderCancelled

_critical_depth = 0  # critical sections open in the main thread (signal handlers only ever run there)
_raised = False


@contextmanager
def critical() -> Iterator[None]:
    """A section a signal must not cut short (it only sets the stop event while the section runs)."""
    global _critical_depth
    main = threading.current_thread() is threading.main_thread()
    if main:
        _critical_depth += 1
    try:
        yield
    finally:
        if main:
            _critical_depth -= 1


def stop_on_signals(signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)) -> threading.Event:
    """Install handlers for ``signals``; the returned event is set on the first one."""
    global _raised
    stop = threading.Event()
    _raised = False

    def request_stop(signum: int, frame: object) -> None:
        global _raised
        stop.set()
        if not _raised and _critical_depth == 0:
            _raised = True
            raise RenderCancelled(f"stopped by {signal.Signals(signum).name}")

    for signum in signals:
        signal.signal(signum, request_stop)
    return stop
