"""Install Dependencies (vendor_setup.py in a child process, into the extension's user site-packages) and
Check Engine Python.

The install fetches the torch build of the Compute preference. When pip fails, vendor_setup.py's last line is
pip's own reason, and that is what the operator reports.

The child is Blender's own Python (``sys.executable``), so the wheels pip picks match Blender. The operator is
modal: a reader thread moves the child's output lines into a queue, and a window-manager timer drains it into the
log and the status bar, so the UI never waits on a pipe. In background mode there is no event loop; it blocks and
prints the output instead.
"""

# No "from __future__ import annotations": Blender reads property annotations as evaluated objects.
import subprocess

import bpy

from .. import vendor_setup
from ..blender import dependencies, engine_python, installer, preferences


class BEND_OT_install_dependencies(bpy.types.Operator):
    """Install torch, diffusers and the engine's other pinned packages for Blender's Python (needs Online Access)"""

    bl_idname = "bend.install_dependencies"
    bl_label = "Install Dependencies"
    bl_options = {"REGISTER"}

    # Plain attributes, not annotations: Blender would read annotations as operator properties.
    _process = None
    _lines = None
    _timer = None

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return not installer.is_running()

    def execute(self, context: bpy.types.Context) -> set[str]:
        if not installer.online_access():
            self.report({"ERROR"}, f"Installing dependencies downloads packages: {installer.ONLINE_ACCESS_HINT}")
            return {"CANCELLED"}
        compute = preferences.get(context).compute
        if dependencies.compute_build(compute) is None:
            self.report({"ERROR"}, dependencies.compute_summary(compute))
            return {"CANCELLED"}
        if bpy.app.background or context.window is None:
            return self._run_blocking(compute)
        return self._start_modal(context, compute)

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        return self.execute(context)

    # Background mode: no event loop to come back to.
    def _run_blocking(self, compute: str) -> set[str]:
        installer.STATE["running"] = True
        try:
            process = installer.start(compute)
        except OSError as exc:
            installer.STATE["running"] = False
            self.report({"ERROR"}, f"Could not start the installer ({exc})")
            return {"CANCELLED"}
        try:
            print(installer.LOG[-1], flush=True)
            for line in process.stdout:
                line = line.rstrip("\r\n")
                installer.LOG.append(line)
                print(line, flush=True)
            returncode = process.wait()
        except BaseException:  # Ctrl+C in a terminal: leave no pip running behind Blender
            process.terminate()
            raise
        finally:
            installer.STATE["running"] = False
        return self._finish(returncode)

    def _start_modal(self, context: bpy.types.Context, compute: str) -> set[str]:
        try:
            self._process = installer.start(compute)
        except OSError as exc:
            self.report({"ERROR"}, f"Could not start the installer ({exc})")
            return {"CANCELLED"}
        installer.STATE["running"] = True
        self._lines = installer.start_reader(self._process)
        wm = context.window_manager
        self._timer = wm.event_timer_add(0.2, window=context.window)
        wm.modal_handler_add(self)
        self._status(context, "Installing dependencies… (Esc to cancel)")
        return {"RUNNING_MODAL"}

    def modal(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        if event.type == "ESC" and event.value == "PRESS":
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
            installer.LOG.append("cancelled")
            self._cleanup(context)
            self.report({"WARNING"}, "Installing dependencies was cancelled; run it again to finish")
            return {"CANCELLED"}
        if event.type != "TIMER":
            return {"PASS_THROUGH"}

        done = installer.drain(self._lines)
        if installer.LOG:
            self._status(context, f"Installing dependencies (Esc to cancel): {installer.LOG[-1][:120]}")
        self._redraw(context)
        if not done:
            return {"PASS_THROUGH"}
        returncode = self._process.wait()
        self._cleanup(context)
        return self._finish(returncode)

    def _finish(self, returncode: int) -> set[str]:
        installer.STATE["returncode"] = returncode
        if returncode != 0:
            # vendor_setup.py ends with pip's own reason on one line ("Install failed: ERROR: ..."), so that is it.
            tail = next((line for line in reversed(installer.LOG) if line.strip()), "")
            tail = tail.removeprefix(vendor_setup.FAILED_PREFIX)
            self.report({"ERROR"}, f"Installing dependencies failed (exit status {returncode}): {tail}")
            return {"CANCELLED"}
        dependencies.add_to_path()
        missing = dependencies.missing()
        if missing:
            self.report({"WARNING"}, f"Installed, but Blender still cannot import: {', '.join(missing)}")
        else:
            self.report({"INFO"}, f"Installed the engine's dependencies into {dependencies.site_packages()}")
        return {"FINISHED"}

    def _cleanup(self, context: bpy.types.Context) -> None:
        installer.STATE["running"] = False
        if self._timer is not None:
            context.window_manager.event_timer_remove(self._timer)
            self._timer = None
        self._status(context, None)
        self._redraw(context)

    @staticmethod
    def _status(context: bpy.types.Context, text: str | None) -> None:
        if context.workspace is not None:
            context.workspace.status_text_set(text)

    @staticmethod
    def _redraw(context: bpy.types.Context) -> None:
        # The log shows in the preferences and the sidebar; redraw them so new lines appear.
        for window in context.window_manager.windows:
            if window.screen is not None:
                for area in window.screen.areas:
                    area.tag_redraw()


class BEND_OT_check_engine_python(bpy.types.Operator):
    """Run the Engine Python (or Blender's own when it is empty) and list what it lacks to run the engine"""

    bl_idname = "bend.check_engine_python"
    bl_label = "Check Engine Python"
    bl_options = {"REGISTER"}

    def execute(self, context: bpy.types.Context) -> set[str]:
        python = engine_python.engine_python(context)
        result = engine_python.check(python)
        installer.CHECKED.clear()  # only the latest check is shown
        installer.CHECKED[python] = result
        for area in (a for w in context.window_manager.windows if w.screen for a in w.screen.areas):
            area.tag_redraw()
        if not result.usable:
            self.report({"ERROR"}, f"The Engine Python cannot run the engine: {'; '.join(result.problems)}")
            return {"CANCELLED"}
        level = "WARNING" if result.notes else "INFO"
        self.report({level}, "; ".join([result.summary(), *result.notes]))
        return {"FINISHED"}


CLASSES = (BEND_OT_install_dependencies, BEND_OT_check_engine_python)


register, unregister = bpy.utils.register_classes_factory(CLASSES)
