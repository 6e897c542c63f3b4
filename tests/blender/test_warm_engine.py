"""One warm engine process per Blender session for renders, sweeps and previews (``blender/warm_engine.py``).

The bpy module runs in background mode, where renders keep a process of their own as on a farm; these tests ask
for the warm engine with ``BEND_WARM_ENGINE=1``, as a script that renders many times would.
"""

from __future__ import annotations

import json
import os
import signal

import blender_env
import bpy
import pytest

FRAMES = 4


def _extension():
    return blender_env.extension()


def _engine():
    return _extension().blender.warm_engine.ENGINE


def _alive(pid: int) -> bool:
    return _extension().engine.frame_store._pid_alive(pid)


def _bend(scene):
    """The scene's one bend, R1."""
    return scene.bend.bends["R1"]


def _manifest(folder) -> dict[int, dict]:
    records = [json.loads(line) for line in (folder / "manifest.jsonl").read_text().splitlines() if line]
    return {r["frame"]: r for r in records}  # the last record of a frame wins, as the engine reads it


@pytest.fixture
def warm_scene(scene, tmp_path, monkeypatch):
    """A saved tiny-random scene, frames 1-4 at 64×64, 2 steps, one frame per batch, R1 keyed on every frame."""
    monkeypatch.setenv("BEND_WARM_ENGINE", "1")
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "warm.blend"))
    bpy.context.preferences.addons[blender_env.MODULE].preferences.model_source = "tiny-random"
    scene.frame_end = FRAMES
    scene.bend.steps = 2
    scene.bend.batch_size = 1
    bpy.ops.bend.bend_add(op="rotate_r1")
    bend = _bend(scene)
    for frame in range(1, FRAMES + 1):
        bend.param = 0.5 * frame
        bend.keyframe_insert("param", frame=frame)
    yield scene
    _engine().release()


def test_a_rerender_after_changing_one_key_renders_that_frame_in_the_same_process_loading_nothing(
    warm_scene, tmp_path, capsys
):
    folder = tmp_path / "bend" / warm_scene.name
    assert bpy.ops.bend.render() == {"FINISHED"}
    first = capsys.readouterr().out
    assert f"Bend: {FRAMES} frames to render, 0 already done" in first
    assert first.count("Bend: model tiny-random loaded on") == 1
    pid = _engine().engine.pid

    warm_scene.frame_set(3)
    _bend(warm_scene).param = 9.0
    _bend(warm_scene).keyframe_insert("param", frame=3)  # the artist moves one key
    assert bpy.ops.bend.render() == {"FINISHED"}
    second = capsys.readouterr().out
    assert f"Bend: 1 frames to render, {FRAMES - 1} already done" in second
    assert "model tiny-random loaded on" not in second and "Bend: model tiny-random already loaded on" in second
    assert _engine().engine.pid == pid
    manifest = _manifest(folder)
    assert sorted(manifest) == list(range(1, FRAMES + 1)) and manifest[3]["params"]["bends"]["R1"] == 9.0

    # A preview goes to the same process.
    assert bpy.ops.bend.preview_frame() == {"FINISHED"}
    assert _engine().engine.pid == pid


def test_other_model_settings_restart_the_engine_and_release_gpu_ends_it(warm_scene):
    assert bpy.ops.bend.preview_frame() == {"FINISHED"}
    first = _engine().engine.pid
    bpy.context.preferences.addons[blender_env.MODULE].preferences.cpu_threads = 1  # in the job's model section
    assert bpy.ops.bend.render(frame_start=1, frame_end=1) == {"FINISHED"}
    second = _engine().engine.pid
    assert second != first and not _alive(first)

    assert bpy.ops.bend.preview_release() == {"FINISHED"}
    assert not _engine().running and not _alive(second)


def test_background_renders_keep_a_process_of_their_own(warm_scene, monkeypatch):
    monkeypatch.delenv("BEND_WARM_ENGINE")
    assert bpy.ops.bend.render(frame_start=1, frame_end=1) == {"FINISHED"}
    assert not _engine().running  # nothing was left warm


def test_a_crash_mid_render_keeps_the_finished_frames_and_the_next_render_restarts_and_completes(
    warm_scene, tmp_path, monkeypatch, capsys
):
    warm_scene.bend.steps = 10  # a frame takes 10 U-Net calls: the kill lands long before the last one is done
    session = _extension().operators.render.RenderSession
    progress = session.progress
    killed: list[int] = []
    written: list[int] = []

    def kill_after_the_first_frame(self, kind: str, event: dict) -> str | None:
        if kind == "frame":
            written.append(event["frame"])
        elif kind == "step" and written and not killed:  # a frame is written and the next one renders
            killed.append(self.process.pid)
            os.kill(self.process.pid, signal.SIGKILL)
        return progress(self, kind, event)

    monkeypatch.setattr(session, "progress", kill_after_the_first_frame)
    with pytest.raises(RuntimeError, match=r"killed \(signal 9\).* new frames are kept; render again to resume"):
        bpy.ops.bend.render()
    folder = tmp_path / "bend" / warm_scene.name
    assert 1 <= len(written) < FRAMES
    assert sorted(_manifest(folder)) == written  # every frame reported written is there, and no other
    assert all((folder / f"frame_{frame:05d}.png").is_file() for frame in written)
    assert not list(folder.glob(".partial-*"))  # nothing half-written left behind

    monkeypatch.setattr(session, "progress", progress)
    capsys.readouterr()
    assert bpy.ops.bend.render() == {"FINISHED"}
    done = len(written)
    assert f"Bend: {FRAMES - done} frames to render, {done} already done" in capsys.readouterr().out
    assert _engine().engine.pid != killed[0]
    assert sorted(_manifest(folder)) == list(range(1, FRAMES + 1))
