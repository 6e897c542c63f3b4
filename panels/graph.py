"""The Bends panel again in the Graph Editor sidebar, so the artist edits a parameter beside its curve."""

import bpy

from ..blender import compat
from .sequencer import CATEGORY, draw_bends


class BEND_PT_graph_bends(bpy.types.Panel):
    bl_space_type = "GRAPH_EDITOR"
    bl_region_type = "UI"
    bl_category = CATEGORY
    bl_label = "Bends"

    def draw(self, context):
        scene = compat.sequencer_scene(context)
        # Blender 5: this editor lists the window scene's curves, not those of the scene the Sequencer shows.
        if scene is not None and context.scene is not None and scene != context.scene:
            self.layout.label(text=f"Bends of {scene.name!r} (Sequencer)", icon="INFO")
            self.layout.label(text=f"Curves here: {context.scene.name!r} (window)")
        draw_bends(self.layout, context)


CLASSES = (BEND_PT_graph_bends,)


register, unregister = bpy.utils.register_classes_factory(CLASSES)
