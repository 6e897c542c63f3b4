"""The Bends panel again in the Graph Editor sidebar, so the artist edits a parameter beside its curve."""

import bpy

from .sequencer import CATEGORY, draw_bends


class BEND_PT_graph_bends(bpy.types.Panel):
    bl_space_type = "GRAPH_EDITOR"
    bl_region_type = "UI"
    bl_category = CATEGORY
    bl_label = "Bends"

    def draw(self, context):
        draw_bends(self.layout, context)


CLASSES = (BEND_PT_graph_bends,)


register, unregister = bpy.utils.register_classes_factory(CLASSES)
