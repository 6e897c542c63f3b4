"""Progress events: one JSON object per line on the runner's event stream (stdout for the CLI).

Events, each with an ``"event"`` key:

* ``start``: ``frames`` (all selected), ``todo`` (to render), ``skipped`` (already done)
* ``loaded``: ``model``, ``device``, ``dtype``, ``batch_size``, ``seconds``
* ``step``: ``frames`` (the batch), ``step``, ``steps``
* ``frame``: ``frame``, ``file``, ``seconds``
* ``warning``: ``message``
* ``error``: ``message``
* ``cancelled``: ``rendered``
* ``done``: ``rendered``, ``skipped``, ``seconds``
"""

from __future__ import annotations

import json
import threading
from typing import Any, TextIO


class EventStream:
    """Writes events as JSON lines, flushed at once so a parent process sees them as they happen."""

    def __init__(self, stream: TextIO | None) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def emit(self, event: str, **fields: Any) -> None:
        record = {"event": event, **fields}
        if self._stream is None:
            return
        with self._lock:
            self._stream.write(json.dumps(record) + "\n")
            self._stream.flush()
