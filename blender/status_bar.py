"""The status bar text of the extension's runs, with one owner: a render ending never clears a running preview.

Blender keeps one status text per workspace (``WorkSpace.status_text_set``), and each call replaces the last one.
So no run sets it directly: each run (a render, a sweep, a preview) posts its own line here under a key of its
own, the status bar shows every active line side by side, and it is cleared once, when the last run ends.

The composing is plain Python and runs headless; only ``show_in_windows`` touches Blender's windows.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Hashable

import bpy

SEPARATOR = "  |  "


def show_in_windows(text: str | None) -> None:
    """Put ``text`` in the status bar of every open window (none headless); None clears it."""
    window_manager = getattr(bpy.context, "window_manager", None)
    for window in getattr(window_manager, "windows", ()):
        workspace = window.workspace
        if workspace is not None:
            workspace.status_text_set(text)


class StatusBoard:
    """The active runs' status lines, in the order the runs started."""

    def __init__(self, show: Callable[[str | None], None] = show_in_windows) -> None:
        self._show = show
        self._lines: dict[Hashable, str] = {}
        self._shown = False

    def text(self) -> str | None:
        """What the status bar shows now: every active line, or None when no run is active."""
        return SEPARATOR.join(self._lines.values()) or None

    def post(self, key: Hashable, line: str) -> None:
        """Set the line of run ``key`` (added after the others when new)."""
        self._lines[key] = line
        self._refresh()

    def remove(self, key: Hashable) -> None:
        """The run ``key`` ended: drop its line; the status bar is cleared when it was the last one."""
        if self._lines.pop(key, None) is not None:
            self._refresh()

    def _refresh(self) -> None:
        text = self.text()
        # Clearing is Blender-wide: do it only when a line of ours is what the status bar shows.
        if text is None and not self._shown:
            return
        self._show(text)
        self._shown = text is not None


BOARD = StatusBoard()


def model_name(source: str) -> str:
    """A short name for the status bar: a local checkpoint's file or folder name, or a repo id as it is."""
    if os.path.isabs(source) or os.path.exists(source):
        return os.path.basename(os.path.normpath(source)) or source
    return source
