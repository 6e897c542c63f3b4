"""What the ``bl_*.py`` scripts share: result lines, the installed extension, its warnings, a stand-in layout.

The scripts run inside the real Blender (``blender [-b] --python bl_x.py``) and report to harness.py through
lines on stdout: ``RESULT PASS <summary>``, ``RESULT FAIL <reason>`` (one per problem) and ``NOTE <text>``.
"""

from __future__ import annotations

import linecache
import os
import sys
import warnings
from pathlib import Path

MODULE = os.environ.get("REAL_BLENDER_MODULE", "bl_ext.user_default.diffusion_bender")
OUT = Path(os.environ.get("REAL_BLENDER_OUT", "/out"))


def say(kind: str, text: str) -> None:
    # One line each, starting a line: the harness reads them back from Blender's mixed output, where a report
    # Blender truncated may have left a line unfinished.
    print(f"\n{kind} {' '.join(str(text).split())}", flush=True)


class Checks:
    """Collects failures so that one run reports every problem, then ends with one verdict."""

    def __init__(self) -> None:
        self.failures: list[str] = []

    def fail(self, reason: str) -> None:
        self.failures.append(reason)
        say("RESULT FAIL", reason)

    def check(self, ok: bool, reason: str) -> bool:
        if not ok:
            self.fail(reason)
        return ok

    def note(self, text: str) -> None:
        say("NOTE", text)

    def finish(self, summary: str) -> None:
        if not self.failures:
            say("RESULT PASS", summary)


def extension():
    """The enabled extension's package, or None."""
    return sys.modules.get(MODULE)


def extension_folder() -> Path | None:
    module = extension()
    return Path(module.__file__).resolve().parent if module is not None else None


class ExtensionWarnings:
    """Records every warning raised from the extension's own files (its installed copy), with the source line.

    Blender issues its RNA deprecations (``SoundStrip.frame_start`` in 5.2, ...) as DeprecationWarning from the
    Python line that touched the property, so the file and line point into the extension. Warnings are shown
    only once per place by default; here every one is seen, and each place is recorded once.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.seen: dict[tuple[str, int, str], str] = {}
        self._previous = None

    def __enter__(self) -> ExtensionWarnings:
        self._previous = warnings.showwarning
        warnings.simplefilter("always")
        warnings.showwarning = self._record
        return self

    def __exit__(self, *exc) -> None:
        warnings.showwarning = self._previous

    def _record(self, message, category, filename, lineno, file=None, line=None) -> None:
        try:
            relative = Path(filename).resolve().relative_to(self.folder)
        except (ValueError, OSError):
            return  # not the extension's: Blender's, torch's (printing them all would bury the ones that count)
        key = (str(relative), lineno, f"{category.__name__}: {message}")
        if key not in self.seen:
            self.seen[key] = (line or linecache.getline(filename, lineno)).strip()

    def of(self, category: type[Warning]) -> list[str]:
        return [
            f"{path}:{lineno}: {text} [{source}]"
            for (path, lineno, text), source in sorted(self.seen.items())
            if text.startswith(category.__name__ + ":")
        ]


class Recorder:
    """Stands in for a ``UILayout`` to run a panel's or the preferences' real ``draw`` in background mode, where
    nothing is drawn: it records the labels, the operator buttons (with whether their row is enabled) and the
    properties shown."""

    def __init__(self, root: Recorder | None = None, enabled: bool = True) -> None:
        object.__setattr__(self, "root", root or self)
        object.__setattr__(self, "enabled_chain", enabled)
        if root is None:
            object.__setattr__(self, "labels", [])
            object.__setattr__(self, "operators", [])
            object.__setattr__(self, "props", [])

    def __setattr__(self, name: str, value) -> None:
        if name == "enabled":
            object.__setattr__(self, "enabled_chain", self.enabled_chain and bool(value))
        else:
            object.__setattr__(self, name, value)

    def _child(self, *args, **kwargs) -> Recorder:
        return Recorder(self.root, self.enabled_chain)

    row = column = box = split = column_flow = grid_flow = _child

    def panel(self, *args, **kwargs):
        return self._child(), self._child()

    def label(self, text: str = "", **kwargs) -> None:
        self.root.labels.append(text)

    def operator(self, idname: str, text: str | None = None, **kwargs):
        self.root.operators.append((idname, text, self.enabled_chain))

        class Properties:  # the operator's properties, set by the draw code
            pass

        return Properties()

    def prop(self, data, name: str, *args, **kwargs) -> None:
        self.root.props.append(name)

    def prop_search(self, data, name: str, *args, **kwargs) -> None:
        self.root.props.append(name)

    def template_list(self, *args, **kwargs) -> None:
        pass

    def separator(self, *args, **kwargs) -> None:
        pass

    def menu(self, *args, **kwargs) -> None:
        pass


class DrawSelf:
    """The ``self`` a ``draw`` method sees: the layout, and the real object's attributes (preferences)."""

    def __init__(self, layout: Recorder, target=None) -> None:
        self.layout = layout
        self._target = target

    def __getattr__(self, name: str):
        return getattr(self._target, name)
