"""Live Preview (``bend.live_preview``): the current frame again whenever the frame or a setting changes, newest wins.

The modal operator needs a window, which the bpy module lacks; it only calls ``LIVE.tick`` (``receive`` then
``update``) on a timer, so these tests call ``update`` and ``receive`` themselves, in the order that matters.
"""

from __future__ import annotations

import blender_env
import bpy
import pytest

EVENT_SECONDS = 120  # a hang guard for one engine event, never a measure


def _preview():
    return blender_env.extension().operators.preview


def _bend(scene):
    return scene.bend.bends["R1"]


@pytest.fixture
def live(scene, tmp_path):
    """Live Preview on, on a saved tiny-random scene previewed at 50 % and 1 step; off and released after."""
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "live.blend"))
    bpy.context.preferences.addons[blender_env.MODULE].preferences.model_source = "tiny-random"
    scene.bend.steps = 4
    scene.bend.preview.steps, scene.bend.preview.scale = 1, 50
    bpy.ops.bend.bend_add(op="rotate_r1")
    state = _preview().LIVE
    state.start()
    yield state
    state.stop()
    blender_env.extension().blender.warm_engine.ENGINE.release()


def settle(live) -> None:
    """Read answers and send what is pending until nothing is in flight or pending."""
    for _ in range(100):
        if live.idle:
            return
        live.receive(timeout=EVENT_SECONDS)
        live.update(bpy.context)
    raise AssertionError("Live Preview never settled")


def test_frames_changed_before_the_engine_answers_show_only_the_newest(live, scene):
    wm = bpy.context.window_manager
    assert wm.bend_live_preview
    for frame in (2, 5, 7):  # the playhead moves three times before any answer is read
        scene.frame_set(frame)
        live.update(bpy.context)
    assert live.in_flight[:2] == (1, 2)  # the first went out at once
    assert live.pending[:2] == (3, 7)  # frame 5's request was replaced while waiting: never sent
    settle(live)
    assert list(live.shown) == [(3, 7)]  # frame 2's answer came for an older request: not shown
    assert tuple(bpy.data.images["Bend Preview"].size) == (32, 32)
    assert wm.bend_live_preview_status.startswith("Live Preview: frame 7 in ")

    live.update(bpy.context)  # nothing changed: nothing is asked again
    assert live.idle and live.serial == 3


def test_a_setting_change_previews_again_and_an_older_frame_never_follows_a_newer(live, scene):
    scene.frame_set(2)
    live.update(bpy.context)
    settle(live)
    _bend(scene).param = 2.0
    bpy.context.view_layer.update()  # what Blender does after a change in the UI: the handler sees it
    assert live.dirty
    live.update(bpy.context)
    scene.frame_set(9)
    live.update(bpy.context)
    scene.frame_set(4)  # while frame 9 waits, or renders: 9 is stale
    live.update(bpy.context)
    settle(live)
    frames = [frame for _, frame in live.shown]
    serials = [serial for serial, _ in live.shown]
    assert frames[0] == 2 and frames[-1] == 4 and 9 not in frames
    assert serials == sorted(serials) and len(set(serials)) == len(serials)

    bpy.ops.bend.live_preview()  # the button again (from a script: no window) turns it off
    assert not bpy.context.window_manager.bend_live_preview and live.idle
