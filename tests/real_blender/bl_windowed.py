"""Step "windowed" (``xvfb-run ... blender real.blend --python``): the extension in a Blender window, screenshotted.

Opened on the workflow step's .blend. A timer drives the UI the way an artist would: the biggest area becomes the
Sequencer with its sidebar on the Bend tab (clicked with xdotool: ``Region.active_panel_category`` is read-only),
another an Image Editor; then Render Bent Frames and Preview Frame run modally (``'INVOKE_DEFAULT'`` inside a
``context.temp_override``). Live Preview follows: on, the playhead moved three times without waiting, the last
frame shown in "Bend Preview" and never an older one after a newer one, then Esc. Last, in Blender 5, a second
scene shown in the Sequencer only: Add Bend lands on it, and the sidebars show it. Screenshots land in
``OUT/screenshots``: the window at each stage, and crops of the sidebar, the status bar during the render, the strip
in the Sequencer, the preview and the Preview panel with Live Preview's button and time. A screenshot that is one
flat colour is a FAIL.
"""

import re
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bpy
from real_common import MODULE, OUT, ExtensionWarnings, Recorder, extension, extension_folder
from real_ui import (
    SHOTS,
    check_not_blank,
    checks,
    choose_category,
    click,
    crop,
    crop_region,
    key,
    log,
    modal_running,
    override,
    record_until,
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
# Live Preview starts on PREVIEW_FRAME, then the playhead jumps through these without waiting for a preview. Out of
# order, so that an older frame means one asked for earlier, not a lower number.
LIVE_FRAMES = (2, 7, 3)
LIVE_GAP = 0.15  # between the jumps: a few of Live Preview's 0.05 s ticks, so each jump is seen as a request
LIVE_STATUS = re.compile(r"frame (\d+) in ([\d.]+) s")
# Where the sidebar's first panel header sits below the region's top, and the spacing of folded headers (UI scale 1).
HEADER_TOP = 16
HEADER_PITCH = 28

# The Parameter field is about 150 px wide in a default sidebar; text inside it breaks a run only on some rows.
FIELD_RUN = 60

# --- the session -------------------------------------------------------------------------------------------


def image_pixels(image) -> list[float]:
    return list(image.pixels[:])


def file_pixels(path) -> list[float] | None:
    """A PNG's pixels as Blender loads them (so they compare equal to an image's loaded from the same bytes)."""
    if not path.is_file():
        return None
    image = bpy.data.images.load(str(path), check_existing=False)
    try:
        return image_pixels(image)
    finally:
        bpy.data.images.remove(image)


def check_live_preview(scene, sequencer, image_editor):
    """Live Preview, modal, as an artist uses it: on, the playhead moved three times in quick succession, the newest
    frame shown and never an older one after it, the Preview panel with its button and time, then Esc."""
    ext = extension()
    live = ext.operators.preview.LIVE
    wm = bpy.context.window_manager
    image = bpy.data.images.get("Bend Preview")
    before = image_pixels(image) if image is not None else None
    scene.frame_set(PREVIEW_FRAME)
    log("live: bend.live_preview('INVOKE_DEFAULT')")
    with override(sequencer):
        result = bpy.ops.bend.live_preview("INVOKE_DEFAULT")
    if not checks.check(result == {"RUNNING_MODAL"}, f"bend.live_preview('INVOKE_DEFAULT') returned {result}"):
        return
    checks.check(wm.bend_live_preview, "WindowManager.bend_live_preview is off right after Live Preview started")
    seen: list[tuple[float, str]] = []  # (seconds, status) each time the status changed

    def status() -> str:
        return wm.bend_live_preview_status

    def names(frame: int):
        return lambda text: (m := LIVE_STATUS.search(text)) is not None and int(m.group(1)) == frame

    yield from record_until(status, names(PREVIEW_FRAME), 300, f"Live Preview to show frame {PREVIEW_FRAME}", seen)
    first_serial = live.serial
    # The jumps, each after a few of Live Preview's ticks and none after a preview: every one after the first lands
    # while a request is in flight, which then must be stopped and its answer dropped.
    for frame in LIVE_FRAMES:
        scene.frame_set(frame)
        yield LIVE_GAP
    requests = live.serial - first_serial
    last = LIVE_FRAMES[-1]
    yield from record_until(status, names(last), 300, f"Live Preview to show frame {last}, the last one asked", seen)
    shown = [frame for serial, frame in live.shown if serial > first_serial]
    log(f"live: status over time {seen}; shown after the jumps {shown}; {requests} requests for {len(LIVE_FRAMES)}")
    # Older means asked earlier: the statuses' frames must follow the order they were asked in.
    order = (PREVIEW_FRAME, *LIVE_FRAMES)
    frames = [int(m.group(1)) for _, text in seen if (m := LIVE_STATUS.search(text))]
    others = [text for _, text in seen if text and not LIVE_STATUS.search(text)]
    checks.check(not others, f"Live Preview's status said {others[0]!r}" if others else "")
    positions = [order.index(f) for f in frames if f in order]
    checks.check(
        all(f in order for f in frames) and positions == sorted(positions),
        f"Live Preview showed an older frame after a newer one, or one never asked: statuses {frames}, asked {order}",
    )
    serials = [serial for serial, _ in live.shown]
    checks.check(serials == sorted(set(serials)), f"Live Preview showed requests out of order: {list(live.shown)}")
    checks.check(
        bool(shown) and shown[-1] == last and requests >= 1,
        f"after the jumps Live Preview showed frames {shown} from {requests} requests; want the last to be {last}",
    )
    seconds = float(LIVE_STATUS.search(seen[-1][1]).group(2)) if frames and frames[-1] == last else float("nan")
    # The image: the frame the engine wrote for the last request, and no longer what Preview Frame showed.
    image = bpy.data.images.get("Bend Preview")
    bent = ext.operators.preview.preview_folder(scene) / "bent" / ext.engine.frame_store.frame_file_name(last)
    if checks.check(image is not None, "no 'Bend Preview' image after Live Preview"):
        now, expected = image_pixels(image), file_pixels(bent)
        checks.check(expected is not None, f"Live Preview left no {bent}")
        checks.check(
            expected is None or now == expected,
            f"'Bend Preview' does not hold Live Preview's frame {last} ({bent}): the image was not updated",
        )
        if before is not None and now == before:
            earlier = file_pixels(bent.with_name(ext.engine.frame_store.frame_file_name(PREVIEW_FRAME)))
            checks.check(
                earlier == expected,
                f"'Bend Preview' still shows what Preview Frame {PREVIEW_FRAME} showed after Live Preview of {last}",
            )
            checks.note(f"frames {PREVIEW_FRAME} and {last} preview to the same pixels")
    # What the Preview panel draws (its real draw code against a recording layout): the button and the time.
    recorded = Recorder()
    ext.panels.sequencer.draw_preview(recorded, bpy.context)
    checks.check(
        any(op[0] == "bend.live_preview" for op in recorded.operators),
        f"the Preview panel draws no Live Preview button: {recorded.operators}",
    )
    checks.check(status() in recorded.labels, f"the Preview panel does not show {status()!r}: {recorded.labels}")
    sequencer.tag_redraw()
    yield 0.5
    yield from settled(sequencer)
    on = region_pixels(sequencer)
    shot = screenshot("window_live_preview")
    crop_region(shot, "sidebar_live_preview", sequencer, "UI")
    crop(shot, "status_bar_live_preview", 0, 0, window().width, status_bar_height())
    with override(image_editor):
        bpy.ops.image.view_all(fit_view=True)
    # Esc, as an artist stops it; the keyboard goes to the window under the pointer.
    log("live: Esc")
    key("Escape")
    yield from wait_for(lambda: not modal_running("BEND_OT_live_preview"), 10, "Esc to end Live Preview")
    if modal_running("BEND_OT_live_preview"):  # still on: the toggle, so that the rest of the run is not disturbed
        with override(sequencer):
            bpy.ops.bend.live_preview("INVOKE_DEFAULT")
        yield from wait_for(lambda: not modal_running("BEND_OT_live_preview"), 10, "the toggle to end Live Preview")
    checks.check(not wm.bend_live_preview, "WindowManager.bend_live_preview is still on after Esc")
    checks.check(live.idle, "Live Preview still has a request in flight or pending after it stopped")
    yield 0.5
    yield from settled(sequencer)
    # The button is no longer drawn pressed: the sidebar changes, so the Preview panel is in the screenshot.
    checks.check(
        region_pixels(sequencer) != on,
        "the sidebar looks the same with Live Preview on and off: the Preview panel's button is not in view",
    )
    screenshot("window_live_preview_off")
    log(f"live: stopped; frame {last} in {seconds} s")
    return requests, len(shown), seconds


def check_driven_colour(scene, sequencer, sidebar):
    """The workflow drove R1 from RMS: its Parameter field must be drawn in the theme's driven colour (purple), and
    lose it when the driver goes (so the colour is the field's, not something else on screen). Then the same
    driver goes back on, for the render."""
    ext = extension()
    bend = ext.blender.bend_stack.active_bend(scene)
    path = bend.path_from_id("param")
    drivers = scene.animation_data.drivers if scene.animation_data else []
    [driver] = [d for d in drivers if d.data_path == path] or [None]
    if not checks.check(driver is not None, f"no driver on {path!r} of {scene.name!r}: the UI's path is not driven"):
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
    checks.check(not scene.animation_data.drivers, "Remove Driver left a driver on the scene")
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
    by_path = {ext.blender.audio_features.path(name): name for name in ext.engine.catalog.FEATURE_NAMES}
    ext.operators.drive.add_feature_driver(scene, bend.name, by_path[feature], low, low + span)
    sequencer.tag_redraw()
    yield 0.5
    yield from settled(sequencer)


def check_animation_editors(scene, area):
    """The animation editors list what the artist animated: the Drivers editor shows the driven bend's driver and
    the Graph Editor the baked features' curves (the previous node-tree stack was invisible to both). ``area`` is
    turned into a Graph Editor for the check, screenshotted in each mode, and given back its type."""
    bend = extension().blender.bend_stack.active_bend(scene)
    rms = extension().blender.audio_features.path("rms")
    kind = area.type
    area.type = "GRAPH_EDITOR"
    space = area.spaces.active
    space.dopesheet.show_only_selected = False
    for mode, wanted, name in (("DRIVERS", bend.path_from_id("param"), "drivers_editor"), ("FCURVES", rms, "graph")):
        space.mode = mode
        yield 0.5
        with override(area):
            bpy.ops.graph.view_all()
            listed = [f.data_path for f in bpy.context.visible_fcurves]
        log(f"{name}: lists {len(listed)} curves, {wanted!r} {'among them' if wanted in listed else 'MISSING'}")
        checks.check(wanted in listed, f"the {mode.title()} Graph Editor does not list {wanted!r}: it lists {listed}")
        yield from settled(area, "WINDOW")
        crop_region(screenshot(f"window_{name}"), name, area)
    area.type = kind
    yield 0.5


def check_sequencer_scene(scene, sequencer):
    """Blender 5 shows the workspace's Sequencer scene, which can differ from the window's: the Bend tab and its
    operators work on the one the Sequencer shows, and the Graph Editor's Bends panel says whose curves the editor
    lists. A second scene becomes the Sequencer's for the check (the window keeps ``scene``), then goes."""
    workspace = window().workspace
    if not hasattr(workspace, "sequencer_scene"):
        return
    second = bpy.data.scenes.new("Second Scene")
    workspace.sequencer_scene = second
    before = len(scene.bend.bends)
    with override(sequencer, "UI"):
        bpy.ops.bend.bend_add(op="threshold")
    checks.check(
        (len(second.bend.bends), len(scene.bend.bends)) == (1, before),
        f"Add Bend in the Sequencer's sidebar did not add to {second.name!r}, the scene the Sequencer shows",
    )
    yield 0.5
    yield from settled(sequencer)
    crop_region(screenshot("window_sequencer_scene"), "sidebar_sequencer_scene", sequencer, "UI")
    # The Sequencer's area, the widest, becomes a Graph Editor with its Bend tab for a moment.
    sequencer.type = "GRAPH_EDITOR"
    sequencer.spaces.active.show_region_ui = True
    yield 0.5
    yield from choose_category(sequencer)
    yield from settled(sequencer)
    crop_region(screenshot("window_graph_sequencer_scene"), "graph_bends_sequencer_scene", sequencer, "UI")
    sequencer.type = "SEQUENCE_EDITOR"
    workspace.sequencer_scene = scene
    bpy.data.scenes.remove(second)
    yield 0.5


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
    if extension().blender.compat.show_in_sequencer(scene):
        checks.note(f"made {scene.name!r} the sequencer scene of the workspaces that had none")
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
    yield from check_animation_editors(scene, image_editor)
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
    live = yield from check_live_preview(scene, sequencer, image_editor)
    yield from check_sequencer_scene(scene, sequencer)
    with override():
        bpy.ops.bend.preview_release()
    for warning in seen.of(DeprecationWarning):
        checks.fail(f"DeprecationWarning from the extension: {warning}")
    requests, shown, seconds = live or (0, 0, float("nan"))
    checks.finish(
        f"Bend tab, modal render of {rendered} frames, preview of frame {PREVIEW_FRAME}; "
        f"Live Preview through frames {', '.join(map(str, LIVE_FRAMES))}: {requests} requests, {shown} shown, "
        f"frame {LIVE_FRAMES[-1]} in {seconds:.2f} s; "
        f"{len(list(SHOTS.glob('*.png')))} screenshots in {SHOTS}"
    )


run(session, "windowed")
