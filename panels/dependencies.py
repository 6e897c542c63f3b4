"""The dependency box of the preferences (compute choice and its size, install state, the Engine Python and its
check), and the short notice the sidebar shows while dependencies are missing.

``dependencies.missing()`` runs ``find_spec`` per engine module; each draw function calls it once. It is not
cached across draws: after "Install Dependencies" the very next redraw must tell the truth.
"""

import bpy

from ..blender import dependencies, engine_python, installer, preferences

INSTALL_OPERATOR = "bend.install_dependencies"
CHECK_OPERATOR = "bend.check_engine_python"
OFFLINE_HINT = "Allow Online Access in Preferences > System to install"
LOG_TAIL = 3


def _draw_install_state(layout: bpy.types.UILayout) -> None:
    """While the installer runs, or after it failed: its status and last output lines."""
    code = installer.last_returncode()
    if installer.is_running():
        layout.label(text="Installing...", icon="SORTTIME")
    elif code not in (None, 0):
        row = layout.row()
        row.alert = True
        row.label(text=f"Install Failed (Exit Code {code})", icon="ERROR")
    else:
        return
    col = layout.column(align=True)
    col.scale_y = 0.8
    for line in installer.install_log()[-LOG_TAIL:]:
        col.label(text=line)


def _draw_engine_python(layout: bpy.types.UILayout, context: bpy.types.Context) -> None:
    """The Engine Python preference, its check button and what the last check found, one line per problem."""
    box = layout.box()
    box.label(text="Engine Python", icon="CONSOLE")
    box.prop(preferences.get(context), "engine_python")
    box.operator(CHECK_OPERATOR, icon="VIEWZOOM")
    result = installer.last_check(engine_python.engine_python(context))
    if result is None:
        return
    col = box.column(align=True)
    col.label(text=result.summary(), icon="CHECKMARK" if result.usable else "ERROR")
    for problem in result.problems:
        row = col.row()
        row.alert = True
        row.label(text=problem, icon="ERROR")
    for note in result.notes:
        col.label(text=note, icon="INFO")


def draw_dependencies(layout: bpy.types.UILayout, context: bpy.types.Context) -> None:
    missing = dependencies.missing()
    online = installer.online_access()
    prefs = preferences.get(context)

    box = layout.box()
    box.label(text="Engine Dependencies", icon="PREFERENCES")
    if missing:
        row = box.row()
        row.alert = True
        row.label(text="Missing: " + ", ".join(missing), icon="ERROR")
    elif prefs.engine_python:
        box.label(text="Not Needed: the Engine Python runs the engine", icon="CHECKMARK")
    else:
        box.label(text="All Installed", icon="CHECKMARK")

    folder = str(dependencies.site_packages())
    row = box.row(align=True)
    row.label(text=folder, icon="FILE_FOLDER")
    row.operator("wm.path_open", text="", icon="FILEBROWSER").filepath = folder

    # The choice and what it costs, before anything starts.
    box.prop(prefs, "compute")
    available = dependencies.compute_build(prefs.compute) is not None
    row = box.row()
    row.alert = not available
    row.label(text=dependencies.compute_summary(prefs.compute), icon="INFO" if available else "ERROR")

    _draw_install_state(box)
    if not online:
        box.label(text=OFFLINE_HINT, icon="INFO")
    row = box.row()
    row.enabled = online and available
    row.operator(INSTALL_OPERATOR, text="Install Dependencies" if missing else "Reinstall Dependencies", icon="IMPORT")
    _draw_engine_python(layout, context)


def draw_missing_notice(layout: bpy.types.UILayout) -> bool:
    """Draw an alert with the install button while dependencies are missing; True when it drew one."""
    missing = dependencies.missing()
    if not missing:
        return False
    online = installer.online_access()
    col = layout.column(align=True)
    row = col.row()
    row.alert = True
    row.label(text="Missing: " + ", ".join(missing), icon="ERROR")
    _draw_install_state(col)
    row = col.row()
    row.enabled = online
    row.operator(INSTALL_OPERATOR, text="Install Dependencies", icon="IMPORT")
    if not online:
        col.label(text=OFFLINE_HINT, icon="INFO")
    layout.separator()
    return True


# Nothing to register: this module only holds draw functions.
def register() -> None:
    pass


def unregister() -> None:
    pass
