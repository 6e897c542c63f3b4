"""Write tests/data/legacy_bends_<blender>.blend: a file saved by the extension before bend stacks were node trees.

Run with the PREVIOUS extension (the commit before the change, aeb6b8f), never with this checkout:

    git -C . archive aeb6b8f | tar -x -C /tmp/prev
    .venv-bpy42/bin/python tests/data/make_legacy_stack.py /tmp/prev tests/data/legacy_bends_4_2.blend

Its bends, keys and drivers live on the Scene at ``bend.bends["Name"].param`` (and one at an index path, as the
UI's I key made them), its feature at ``bend.audio.rms``: what tests/blender/test_migration.py expects to find at
index paths and ``["bend_rms"]`` after loading.
"""

import os
import sys
import tempfile
from pathlib import Path

PREVIOUS, OUTPUT = Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve()
home = Path(tempfile.mkdtemp(prefix="bend-legacy-"))
os.environ["BLENDER_USER_RESOURCES"] = str(home / "user")
(home / "repo").mkdir()
(home / "repo" / "diffusion_bender").symlink_to(PREVIOUS, target_is_directory=True)

import bpy  # noqa: E402, I001  (after BLENDER_USER_RESOURCES)
import addon_utils  # noqa: E402  (importable once bpy is)

bpy.context.preferences.extensions.repos.new(
    name="dev", module="dev", custom_directory=str(home / "repo"), source="USER"
)
addon_utils.enable("bl_ext.dev.diffusion_bender", default_set=True)
ext = sys.modules["bl_ext.dev.diffusion_bender"]
assert not hasattr(ext.blender, "bend_stack"), "run this with the previous extension, not the current one"

bpy.ops.wm.read_homefile(use_empty=True)
scene = bpy.context.scene
scene.frame_start, scene.frame_end = 1, 12
for op in ("rotate_r1", "add", "rotate_six", "multiply", "erode"):
    bpy.ops.bend.bend_add(op=op)
bends = scene.bend.bends
ext.blender.animation.write_keys(scene, "bend.audio.rms", list(range(1, 13)), [i / 11 for i in range(12)])

# R1: a feature driver, with a Generator modifier on it.
ext.operators.drive.add_feature_driver(scene, "R1", "rms", 0.0, 6.0)
generator = scene.animation_data.drivers.find('bend.bends["R1"].param').modifiers.new("GENERATOR")
generator.coefficients = (0.5, 2.0)

# Add: Bezier keys with custom handles, then a CONSTANT one; a Cycles modifier.
add = bends["Add"]
add.selection, add.fraction, add.selection_seed = "random", 0.25, 7
for frame, value in ((1, 0.0), (6, 1.5), (12, -0.5)):
    add.param = value
    scene.keyframe_insert('bend.bends["Add"].param', frame=frame)
# 4.2 keeps the name in the path, 5.0 keys the item by index on insert.
curve = ext.blender.compat.find_fcurve(scene, 'bend.bends["Add"].param') or ext.blender.compat.find_fcurve(
    scene, "bend.bends[1].param"
)
curve.keyframe_points[1].handle_left_type = curve.keyframe_points[1].handle_right_type = "FREE"
curve.keyframe_points[1].handle_left = (4.0, 2.5)
curve.keyframe_points[1].handle_right = (8.0, 0.25)
curve.keyframe_points[2].interpolation = "CONSTANT"
curve.modifiers.new("CYCLES")

# Rotate Six: keys on components 0 and 2, a two-variable averaged driver on component 4.
six = bends["Rotate Six"]
six.latent_layer = 3
for frame, value in ((1, 0.25), (12, 1.0)):
    six.param_vector[0] = value
    six.param_vector[2] = -value
    scene.keyframe_insert('bend.bends["Rotate Six"].param_vector', index=0, frame=frame)
    scene.keyframe_insert('bend.bends["Rotate Six"].param_vector', index=2, frame=frame)
driver = scene.driver_add('bend.bends["Rotate Six"].param_vector', 4)
for modifier in list(driver.modifiers):
    driver.modifiers.remove(modifier)
driver.driver.type = "AVERAGE"
for name, path in (("a", "bend.audio.rms"), ("b", "frame_current")):
    variable = driver.driver.variables.new()
    variable.name, variable.type = name, "SINGLE_PROP"
    variable.targets[0].id_type, variable.targets[0].id, variable.targets[0].data_path = "SCENE", scene, path

# Erode: keyed, then renamed (the rename moved its curve to bend.bends["Grit"]), and disabled.
erode = bends["Erode"]
erode.normalize_dim = "1"
erode.param = 3.0
scene.keyframe_insert('bend.bends["Erode"].param', frame=4)
erode.name = "Grit"
erode.enabled = False
# Multiply: keyed at its index path (bend.bends[3].param), which 5.0's I key makes (4.2 stores the name);
# after the rename, which rewrites index paths as name paths.
multiply = bends["Multiply"]
multiply.place, multiply.unet_target, multiply.step_start, multiply.step_end = "UNET", "up_blocks.1", 2, 9
for frame, value in ((1, 1.0), (12, 3.0)):
    multiply.param = value
    scene.keyframe_insert("bend.bends[3].param", frame=frame)

scene.bend.bend_index = 2

scene.frame_set(1)
bpy.context.preferences.filepaths.save_version = 0  # no .blend1 beside the fixture when it is remade
bpy.ops.wm.save_as_mainfile(filepath=str(OUTPUT), compress=True)
print("saved", OUTPUT, OUTPUT.stat().st_size, "bytes")
for fcurve in ext.blender.animation.animation_curves(scene):
    print(" ", fcurve.data_path, fcurve.array_index)
sys.stdout.flush()
os._exit(0)  # the bpy 4.2 module segfaults at teardown with Python property callbacks (tests/blender/conftest.py)
