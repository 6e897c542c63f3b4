"""Step "enable", in a window (``xvfb-run ... blender --python``): what a new user sees before installing anything.

Blender starts on a fresh user folder where the extension was just installed, without numpy and with the engine's
dependencies missing. Screenshots: Preferences > Add-ons with the extension expanded (the dependency box with
Missing: ... and Install Dependencies), and the Sequencer's Bend tab (the Model panel's notice).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import addon_utils
import bpy
from real_common import MODULE, extension
from real_ui import checks, choose_category, click, crop_region, override, run, screenshot, window


def session():
    if not checks.check(extension() is not None, f"{MODULE} is not loaded: install-file -e did not enable it"):
        return
    main = max(window().screen.areas, key=lambda a: a.width * a.height)
    # A fresh user folder opens with the splash screen; a click beside it closes it.
    click(window().width // 2, window().height - 40)
    yield 0.5

    main.type = "PREFERENCES"
    yield 0.5
    with override(main):
        bpy.ops.preferences.addon_show(module=MODULE)  # Add-ons, searched for it, expanded
    yield 1.5
    fake = addon_utils.addons_fake_modules.get(MODULE)
    checks.check(
        fake is not None and addon_utils.module_bl_info(fake)["show_expanded"],
        "Preferences > Add-ons did not expand the extension",
    )
    shot = screenshot("missing_preferences_window")
    crop_region(shot, "missing_preferences", main)

    main.type = "SEQUENCE_EDITOR"
    main.spaces.active.view_type = "SEQUENCER"
    main.spaces.active.show_region_ui = True
    yield 1.0
    yield from choose_category(main)
    yield 1.0
    shot = screenshot("missing_sidebar_window")
    crop_region(shot, "missing_sidebar", main, "UI")
    checks.finish("screenshots of the preferences and the Bend tab without dependencies")


run(session, "preferences window", limit_s=300.0)
