"""Step "windowed" (``xvfb-run ... blender real.blend --python``): the extension in a Blender window, screenshotted.

Opened on the workflow step's .blend. A timer drives the UI the way an artist would: the biggest area becomes the
Sequencer with its sidebar on the Bend tab (clicked with xdotool: ``Region.active_panel_category`` is read-only),
another an Image Editor; then Render Bent Frames and Preview Frame run modally (``'INVOKE_DEFAULT'`` inside a
``context.temp_override``). Screenshots land in ``OUT/screenshots``: the window at each stage, and crops of the
sidebar, the status bar during the render, the strip in the Sequencer and the preview. A screenshot that is one
flat colour is a FAIL.
"""

import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bpy
from real_common import MODULE, OUT, ExtensionWarnings, extension, extension_folder
from real_ui import (
    SHOTS,
    check_not_blank,
    checks,
    choose_category,
    click,
    crop,
    crop_region,
    log,
    modal_running,
    override,
    region,
    region_pixels,
    run,
    screenshot,
    settled,
    state_colour_run,
    status_bar_height,
    theme_state_colour,
    wait_for,
    window,
)

RENDER_FOLDER = OUT / "windowed" / "frames"
SIZE = 64
STEPS = 3
PREVIEW_FRAME = 5
# Where the sidebar's first panel header sits below the region's top, and the spacing of folded headers (UI scale 1).
HEADER_TOP = 16
HEADER_PITCH = 28

# The Parameter field is about 150 px wide in a default sidebar; text inside it breaks a run only on some rows.
FIELD_RUN = 60

# --- the session -------------------------------------------------------------------------------------------


def check_driven_colour(scene, sequencer, sidebar):
    """The workflow drove R1 from RMS: its Parameter field must be drawn in the theme's driven colour (purple), and
    lose it when the driver goes (so the colour is the field's, not something else on screen). Then the same
    driver goes back on, for the render."""
    ext = extension()
    bend = ext.blender.bend_stack.active_bend(scene)
    tree = scene.bend.stack
    path = bend.path_from_id("param")
    [driver] = [d for d in tree.animation_data.drivers if d.data_path == path] or [None]
    if not checks.check(driver is not None, f"no driver on {path!r} of {tree.name!r}: the UI's path is not driven"):
        return
    # Driven against the other states a field can be in (keyed, animated, overridden, changed).
    others = ("inner_key", "inner_anim", "inner_overridden", "inner_changed")
    run = state_colour_run(sidebar, "inner_driven", others) if sidebar else 0
    log(f"driven colour {theme_state_colour('inner_driven')}: longest run {run} px in sidebar_bend_lower.png")
    checks.check(
        run >= FIELD_RUN,
        f"the driven Parameter of {bend.name!r} is not drawn in the theme's driven colour "
        f"{theme_state_colour('inner_driven')} (longest run {run} px, want {FIELD_RUN}); see sidebar_bend_lower.png",
    )
    expression, feature = driver.driver.expression, driver.driver.variables[0].targets[0].data_path
    with override(sequencer):
        bpy.ops.bend.remove_feature_driver()
    checks.check(not tree.animation_data.drivers, "Remove Driver left a driver on the stack")
    sequencer.tag_redraw()  # a change made from a timer redraws nothing by itself
    yield 0.5
    yield from settled(sequencer)
    undriven = crop_region(screenshot("window_bend_tab_undriven"), "sidebar_bend_undriven", sequencer, "UI")
    run_after = state_colour_run(undriven, "inner_driven", others) if undriven else FIELD_RUN
    checks.check(
        run_after < FIELD_RUN,
        f"the driven colour stays after the driver was removed (run {run_after} px): it is not the Parameter's",
    )
    # Back as it was: "low + span * feature" (operators/drive.py's expression).
    low, span = (float(part.split(" * ")[0]) for part in expression.split(" + "))
    ext.operators.drive.add_feature_driver(scene, bend.name, feature.rpartition(".")[2], low, low + span)
    sequencer.tag_redraw()
    yield 0.5
    yield from settled(sequencer)


def session():
    if not checks.check(extension() is not None, f"{MODULE} is not loaded: the enable step must pass first"):
        return
    # The modal paths (the render's strip, the preview) touch Blender data the headless workflow does not.
    seen = ExtensionWarnings(extension_folder()).__enter__()
    shutil.rmtree(RENDER_FOLDER, ignore_errors=True)
    scene = bpy.context.scene
    scene.render.resolution_x = scene.render.resolution_y = SIZE
    scene.bend.steps = STEPS
    scene.bend.batch_size = 1
    scene.bend.output_folder = str(RENDER_FOLDER)
    bends = extension().blender.bend_stack.bends(scene)
    checks.check(len(bends) > 0, "the workflow's .blend has no bend")

    # The biggest area becomes the Sequencer, the next an Image Editor for the preview.
    by_size = sorted(window().screen.areas, key=lambda a: a.width * a.height, reverse=True)
    sequencer, image_editor = by_size[0], by_size[1]
    sequencer.type = "SEQUENCE_EDITOR"
    space = sequencer.spaces.active
    space.view_type = "SEQUENCER"
    space.show_region_ui = True
    image_editor.type = "IMAGE_EDITOR"
    # Blender 5 shows the workspace's sequencer scene in the Sequencer, not the window's; a file saved in
    # background mode has none.
    workspace = window().workspace
    if hasattr(workspace, "sequencer_scene") and workspace.sequencer_scene is None:
        workspace.sequencer_scene = scene
        checks.note(f"set the workspace {workspace.name!r}'s sequencer scene to {scene.name!r} (it had none)")
    yield 1.0
    with override(sequencer):
        bpy.ops.sequencer.view_all()
    yield 0.5
    yield from choose_category(sequencer)
    yield 1.0
    shot = screenshot("window_bend_tab")
    check_not_blank(shot)
    crop_region(shot, "sidebar_bend", sequencer, "UI")
    # The Bend tab is taller than the window, and neither the wheel nor view2d.scroll_down moves a sidebar here:
    # folding the first three panels (a click on each header, which then sit one above the other) brings Bends
    # (with the driven parameter), Sweep, Preview and Render into view.
    ui = region(sequencer, "UI")
    for k in range(3):
        before = region_pixels(sequencer)
        for _attempt in range(3):  # a click that lands while Blender is busy drawing can be lost
            click(ui.x + 60, ui.y + ui.height - (HEADER_TOP + k * HEADER_PITCH))
            yield from settled(sequencer)  # the fold is animated: the next header is in place once it ends
            if region_pixels(sequencer) != before:
                break
        else:
            checks.fail(f"clicking panel header {k + 1} of the Bend tab changed nothing")
    shot = screenshot("window_bend_tab_lower")
    sidebar = crop_region(shot, "sidebar_bend_lower", sequencer, "UI")
    yield from check_driven_colour(scene, sequencer, sidebar)
    # Render Bent Frames, modal; the status bar is caught after the first frame and before the last.
    log("render: bend.render('INVOKE_DEFAULT')")
    with override(sequencer):
        result = bpy.ops.bend.render("INVOKE_DEFAULT")
    if not checks.check(result == {"RUNNING_MODAL"}, f"bend.render('INVOKE_DEFAULT') returned {result}"):
        return
    frames = scene.frame_end - scene.frame_start + 1
    caught = False
    deadline = time.monotonic() + 600
    while modal_running("BEND_OT_render") and time.monotonic() < deadline:
        done = len(list(RENDER_FOLDER.glob("frame_*.png")))
        if not caught and 0 < done < frames:
            yield 0.15  # let the status bar redraw with the new count
            shot = screenshot("window_rendering")
            crop(shot, "status_bar_rendering", 0, 0, window().width, status_bar_height())
            crop_region(shot, "sequencer_rendering", sequencer)
            caught = True
            log(f"render: status bar caught after {done} of {frames} frames")
        yield 0.1
    checks.check(not modal_running("BEND_OT_render"), "the modal render did not end within 600 s")
    checks.check(caught, f"no screenshot mid-render: the {frames} frames came too fast or not at all")
    rendered = len(list(RENDER_FOLDER.glob("frame_*.png")))
    log(f"render: ended with {rendered} frames")
    checks.check(rendered == frames, f"the modal render made {rendered} of {frames} frames in {RENDER_FOLDER}")
    yield 1.0
    with override(sequencer):
        bpy.ops.sequencer.view_all()
    yield 3.0  # the strip's thumbnails load in a background job
    shot = screenshot("window_rendered")
    crop_region(shot, "sequencer_strip", sequencer)

    # Preview Frame, modal; the image lands in every Image Editor.
    scene.frame_set(PREVIEW_FRAME)
    yield 0.5
    log("preview: bend.preview_frame('INVOKE_DEFAULT')")
    with override(sequencer):
        result = bpy.ops.bend.preview_frame("INVOKE_DEFAULT")
    if not checks.check(result == {"RUNNING_MODAL"}, f"bend.preview_frame('INVOKE_DEFAULT') returned {result}"):
        return
    yield 0.3
    shot = screenshot("window_previewing")
    crop(shot, "status_bar_previewing", 0, 0, window().width, status_bar_height())
    yield from wait_for(lambda: not modal_running("BEND_OT_preview_frame"), 300, "the preview to finish")
    log("preview: ended")
    image = bpy.data.images.get("Bend Preview")
    if checks.check(image is not None and image.size[0] > 0, "no 'Bend Preview' image after Preview Frame"):
        with override(image_editor):
            bpy.ops.image.view_all(fit_view=True)
        yield 1.0
        shot = screenshot("window_preview")
        crop_region(shot, "preview", image_editor)
    with override():
        bpy.ops.bend.preview_release()
    for warning in seen.of(DeprecationWarning):
        checks.fail(f"DeprecationWarning from the extension: {warning}")
    checks.finish(
        f"Bend tab, modal render of {rendered} frames, preview of frame {PREVIEW_FRAME}; "
        f"{len(list(SHOTS.glob('*.png')))} screenshots in {SHOTS}"
    )


run(session, "windowed")
