"""Prompts: add and remove them, and keyframe crossfades between them at the timeline markers.

A prompt's weight is animated at its index path (``bend.prompts[0].weight``, the path Blender's UI gives it);
removing a prompt renumbers the others' animation with them (``blender/animated_list.py``). The engine mixes prompt
embeddings by weight, so a crossfade is just keyframed weights.
"""

import bpy

from ..blender import animated_list, compat
from ..blender.animation import write_keys


def _unique_prompt_name(prompts: bpy.types.bpy_prop_collection) -> str:
    taken = {p.name for p in prompts}
    number = 1
    while f"Prompt {number}" in taken:
        number += 1
    return f"Prompt {number}"


class BEND_OT_prompt_add(bpy.types.Operator):
    """Add a prompt; the first one gets weight 1, later ones 0 until you key them"""

    bl_idname = "bend.prompt_add"
    bl_label = "Add Prompt"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context: bpy.types.Context) -> set[str]:
        settings = compat.sequencer_scene(context).bend
        prompt = animated_list.add_item(settings.prompts, _unique_prompt_name(settings.prompts))
        prompt.weight = 1.0 if len(settings.prompts) == 1 else 0.0
        settings.prompt_index = len(settings.prompts) - 1
        return {"FINISHED"}


class BEND_OT_prompt_remove(bpy.types.Operator):
    """Remove the active prompt and its weight's animation"""

    bl_idname = "bend.prompt_remove"
    bl_label = "Remove Prompt"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        scene = compat.sequencer_scene(context)
        return scene is not None and 0 <= scene.bend.prompt_index < len(scene.bend.prompts)

    def execute(self, context: bpy.types.Context) -> set[str]:
        settings = compat.sequencer_scene(context).bend
        animated_list.remove_item(settings.prompts, settings.prompt_index)
        settings.prompt_index = max(0, min(settings.prompt_index, len(settings.prompts) - 1))
        return {"FINISHED"}


def key_crossfade(scene: bpy.types.Scene, frames: list[int]) -> None:
    """Prompt k has weight 1 at ``frames[k]`` and 0 at the others, linear in between (replacing earlier keys)."""
    for k, prompt in enumerate(scene.bend.prompts):
        write_keys(scene, prompt.path_from_id("weight"), frames, [1.0 if i == k else 0.0 for i in range(len(frames))])


class BEND_OT_crossfade_at_markers(bpy.types.Operator):
    """Keyframe prompt weights so that prompt k is full at marker k, crossfading linearly between markers"""

    bl_idname = "bend.crossfade_at_markers"
    bl_label = "Crossfade at Markers"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context: bpy.types.Context) -> set[str]:
        scene = compat.sequencer_scene(context)
        n = len(scene.bend.prompts)
        if n < 2:
            self.report({"ERROR"}, "Add at least two prompts to crossfade between")
            return {"CANCELLED"}
        markers = sorted(m.frame for m in scene.timeline_markers)
        if len(markers) < n:
            self.report(
                {"ERROR"},
                f"Crossfading {n} prompts needs {n} timeline markers, found {len(markers)}: "
                "add markers in the Timeline (M) where each prompt should be full",
            )
            return {"CANCELLED"}
        key_crossfade(scene, markers[:n])
        self.report({"INFO"}, f"Keyed a crossfade over {n} prompts at frames {', '.join(map(str, markers[:n]))}")
        return {"FINISHED"}


CLASSES = (BEND_OT_prompt_add, BEND_OT_prompt_remove, BEND_OT_crossfade_at_markers)


register, unregister = bpy.utils.register_classes_factory(CLASSES)
