"""Step "enable" (``blender -b --python``): the extension is enabled in a Blender without numpy and says what to do.

Run after ``install-file -e`` into a fresh user folder and without ``--online-mode``, so the dependencies are
missing and online access is off: the preferences and the sidebar's Model panel must name what is missing, show
the Install Dependencies button, and say that Online Access must be allowed first.
"""

import importlib.util
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import addon_utils
import bpy
from real_common import MODULE, Checks, DrawSelf, Recorder, extension

INSTALL = "bend.install_dependencies"


def draw(cls, target=None) -> Recorder:
    layout = Recorder()
    cls.draw(DrawSelf(layout, target), bpy.context)
    return layout


def check_says_what_to_do(checks: Checks, where: str, layout: Recorder) -> None:
    missing = [text for text in layout.labels if text.startswith("Missing:")]
    checks.check(
        bool(missing) and "torch" in missing[0], f"{where} shows no 'Missing: ... torch' line (labels: {layout.labels})"
    )
    buttons = [(text, enabled) for idname, text, enabled in layout.operators if idname == INSTALL]
    checks.check(bool(buttons), f"{where} has no {INSTALL} button (buttons: {layout.operators})")
    # Online access is off in this run: the button must be greyed out, with the hint next to it.
    checks.check(
        all(not enabled for _, enabled in buttons), f"{where}: the Install Dependencies button is enabled offline"
    )
    checks.check(
        any("Online Access" in text for text in layout.labels),
        f"{where} does not say to allow Online Access (labels: {layout.labels})",
    )


def main() -> None:
    checks = Checks()
    numpy = importlib.util.find_spec("numpy")
    if not checks.check(
        numpy is None, f"numpy is importable ({numpy and numpy.origin}): this step needs a Blender without it"
    ):
        return
    checks.check(not bpy.app.online_access, "online access is on; this step checks the offline hint")
    if not checks.check(
        MODULE in bpy.context.preferences.addons,
        f"{MODULE} is not among the enabled add-ons: install-file -e did not enable it",
    ):
        return
    loaded = addon_utils.check(MODULE)[1]
    module = extension()
    if not checks.check(
        loaded and module is not None, f"{MODULE} is enabled in the preferences but did not load (see the log)"
    ):
        return
    dependencies = sys.modules[f"{MODULE}.blender.dependencies"]
    missing = dependencies.missing()
    checks.check("torch" in missing, f"dependencies.missing() is {missing}, expected torch among them")
    if not checks.check(hasattr(bpy.types, "BEND_OT_install_dependencies"), f"no {INSTALL} operator registered"):
        return

    preferences = bpy.context.preferences.addons[MODULE].preferences
    check_says_what_to_do(checks, "The preferences", draw(type(preferences), preferences))
    panel = getattr(bpy.types, "BEND_PT_model", None)
    if checks.check(panel is not None, "no BEND_PT_model panel registered"):
        check_says_what_to_do(checks, "Sequencer > Bend > Model", draw(panel))
    checks.finish(f"enabled without numpy; preferences and the Model panel show Missing: {', '.join(missing)}")


main()
