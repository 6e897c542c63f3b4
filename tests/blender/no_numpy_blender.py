"""Run by test_versions.py in a child Python that sees the bpy module but no numpy, scipy, torch or PIL.

Debian's Blender 5.2 comes without numpy. The child's path holds only the checkout and a folder with a link to
the bpy package (``python -S``: no site-packages), so this is what the extension meets there. It enables the
extension, draws every panel and the preferences into a layout that records labels, runs Bake and Render, and
prints one JSON line with what it saw. Any exception escapes and fails the test with its traceback.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from types import SimpleNamespace

HEAVY = ("numpy", "scipy", "torch", "PIL")


class Recorder:
    """Stands in for a UILayout: accepts any call, keeps every label text and operator idname."""

    def __init__(self, seen: dict[str, list[str]]) -> None:
        object.__setattr__(self, "_seen", seen)

    def __setattr__(self, name: str, value: object) -> None:
        pass  # layout flags (alert, enabled, scale_y...) and operator button properties

    def __getattr__(self, name: str):
        seen = self._seen

        def call(*args, **kwargs):
            if name == "label":
                seen["labels"].append(kwargs.get("text", args[0] if args else ""))
            elif name == "operator":
                seen["operators"].append(args[0] if args else kwargs["operator"])
            return Recorder(seen)

        return call


def main() -> None:
    blocked = [name for name in HEAVY if importlib.util.find_spec(name) is not None]
    assert not blocked, f"the child Python can import {blocked}: the test does not show a Blender without them"

    import bpy

    from devtools.extension_session import MODULE, start

    extension = start()
    from_extension = sorted(m for m in sys.modules if m.split(".")[0] in HEAVY)

    context = bpy.context
    panels = {}
    for module in extension.panels.MODULES:
        for cls in getattr(module, "CLASSES", ()):
            if issubclass(cls, bpy.types.Panel):
                seen = {"labels": [], "operators": []}
                cls.draw(SimpleNamespace(layout=Recorder(seen)), context)
                panels[cls.bl_label] = seen

    prefs = context.preferences.addons[MODULE].preferences
    seen = {"labels": [], "operators": []}
    proxy = SimpleNamespace(
        layout=Recorder(seen),
        **{p.identifier: getattr(prefs, p.identifier) for p in prefs.bl_rna.properties if p.identifier != "rna_type"},
    )
    type(prefs).draw(proxy, context)
    panels["Preferences"] = seen

    def refusal(operator) -> str:
        try:
            result = operator()
        except RuntimeError as exc:  # an ERROR report from an operator called by a script
            return str(exc)
        return f"not refused: {result}"

    print(
        json.dumps(
            {
                "heavy_modules": from_extension,
                "panels": panels,
                "bake": refusal(bpy.ops.bend.bake_audio),
                "render": refusal(bpy.ops.bend.render),
            }
        )
    )


if __name__ == "__main__":
    main()
    # The PyPI bpy 4.2 module segfaults while Python shuts down once a property with a Python callback is
    # registered (see tests/blender/conftest.py); everything is printed by now, so skip the teardown.
    sys.stdout.flush()
    os._exit(0)
