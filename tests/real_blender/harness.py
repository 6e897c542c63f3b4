"""The extension in a real Blender binary, step by step; runs inside the chroot (see ``chroot.sh``), stdlib only.

    python3 /src/tests/real_blender/harness.py [--src /src] [--out /out] [--from STEP] [--only STEP]

The steps, in order, each printing PASS or FAIL with its reason; the first FAIL ends the run (exit status 1):

    validate   ``blender --command extension validate`` on the checkout
    build      ``blender --command extension build`` into ``OUT/build`` (created first: the builder does not)
    install    ``install-file -r user_default -e ZIP`` into a fresh user folder (``OUT/user``)
    enable     the extension is enabled in that Blender, which has no numpy, and its preferences and sidebar
               say what to do (Missing: ..., an Install Dependencies button, the Online Access hint)
    deps       ``bpy.ops.bend.install_dependencies()`` for real, online; torch and diffusers then import from
               the extension's site-packages (pip's cache stays in the chroot, so a rerun is quicker)
    workflow   ``blender -b``: a synthesized song as a sound strip, bake, a bend driven by RMS, tiny-random render,
               export; the MP4 must hold H.264 and AAC; a DeprecationWarning from the extension's code is a FAIL
    windowed   a Blender window under Xvfb: the Sequencer's Bend tab, Render Bent Frames, Preview Frame and Live
               Preview run modally (a driven Parameter must show the driven colour), screenshots of the panels, the
               status bar, the preview and the strip (``OUT/screenshots``)

Every Blender run's full output is in ``OUT/logs/<step>.log``. ``--from`` starts at a later step, reusing what the
earlier steps left in OUT (the user folder with its installed dependencies, the workflow's .blend).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
EXTENSION_ID = "diffusion_bender"
MODULE = f"bl_ext.user_default.{EXTENSION_ID}"
SCREEN = "1600x1200x24"
# What a step's Blender may take before the harness calls it hung; Install Dependencies downloads GBs.
TIMEOUTS = {"deps": 3600, "workflow": 900, "windowed": 900}
DEFAULT_TIMEOUT = 300


class StepFailed(Exception):
    """A step's one-line reason."""


class Harness:
    def __init__(self, src: Path, out: Path) -> None:
        self.src = src
        self.out = out
        self.logs = out / "logs"
        self.user = out / "user"
        self.build_dir = out / "build"
        self.workflow_dir = out / "workflow"
        self.screenshots = out / "screenshots"
        self.blender = shutil.which("blender") or "/usr/bin/blender"

    # --- running Blender -----------------------------------------------------------------------------------

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            "HOME": os.environ.get("HOME", "/root"),
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            # Every user folder (config, extensions, their site-packages) in one fresh place.
            "BLENDER_USER_RESOURCES": str(self.user),
            # tiny-random's layers are too small to share among threads; the CPUs are shared with others.
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
            "REAL_BLENDER_OUT": str(self.out),
            "REAL_BLENDER_MODULE": MODULE,
            "PYTHONUNBUFFERED": "1",
        }
        if os.environ.get("REAL_BLENDER_COMPUTE"):
            env["REAL_BLENDER_COMPUTE"] = os.environ["REAL_BLENDER_COMPUTE"]
        env.update(extra)
        return env

    def run(self, step: str, args: list[str], timeout: int | None = None, **env: str) -> tuple[int, str]:
        """Run a command, its output appended to the step's log as it comes; (exit status, output)."""
        self.logs.mkdir(parents=True, exist_ok=True)
        log = self.logs / f"{step}.log"
        timeout = timeout or TIMEOUTS.get(step, DEFAULT_TIMEOUT)
        lines: list[str] = []
        with open(log, "a") as f:
            f.write(f"$ {' '.join(args)}\n")
            f.flush()
            process = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                errors="replace",
                env=self.env(**env),
                start_new_session=True,  # so a hung run is killed with everything it started
            )
            fired = threading.Event()

            def kill() -> None:
                fired.set()
                os.killpg(process.pid, signal.SIGKILL)

            killer = threading.Timer(timeout, kill)
            killer.start()
            try:
                for line in process.stdout:
                    f.write(line)
                    f.flush()
                    lines.append(line)
                code = process.wait()
            finally:
                killer.cancel()
            f.write(f"\n[exit status {code}]\n")
        if fired.is_set():
            raise StepFailed(f"{args[0]} did not finish within {timeout} s (log: {log})")
        return code, "".join(lines)

    def blender_script(self, step: str, script: str, *args: str, background: bool = True, **env: str) -> str:
        """Run one of this folder's ``bl_*.py`` scripts in Blender; its RESULT lines decide the step."""
        command = [self.blender]
        if background:
            command.append("-b")
        command += [*args, "--python-exit-code", "1", "--python", str(HERE / script)]
        code, output = self.run(step, command, **env)
        return check_result(output, code, self.logs / f"{step}.log")

    # --- the steps -----------------------------------------------------------------------------------------

    def validate(self) -> str:
        code, output = self.run("validate", [self.blender, "--command", "extension", "validate", str(self.src)])
        success = [line.strip() for line in output.splitlines() if line.startswith("Success")]
        if code != 0 or not success:
            raise StepFailed(f"extension validate exited with {code}: {last_line(output)}")
        return success[0]

    def build(self) -> str:
        shutil.rmtree(self.build_dir, ignore_errors=True)
        self.build_dir.mkdir(parents=True)
        code, output = self.run(
            "build",
            [
                self.blender,
                "--command",
                "extension",
                "build",
                "--source-dir",
                str(self.src),
                "--output-dir",
                str(self.build_dir),
            ],
        )
        zips = sorted(self.build_dir.glob(f"{EXTENSION_ID}-*.zip"))
        if code != 0 or len(zips) != 1:
            raise StepFailed(f"extension build exited with {code} and made {len(zips)} zip(s): {last_line(output)}")
        return f"{zips[0].name}, {zips[0].stat().st_size / 1e6:.2f} MB"

    def install(self) -> str:
        zips = sorted(self.build_dir.glob(f"{EXTENSION_ID}-*.zip"))
        if not zips:
            raise StepFailed(f"no {EXTENSION_ID}-*.zip in {self.build_dir}: run the build step first")
        discard(self.user)
        self.user.mkdir(parents=True)
        command = [self.blender, "--command", "extension", "install-file", "-r", "user_default", "-e", str(zips[0])]
        code, output = self.run("install", command)
        installed = self.user / "extensions" / "user_default" / EXTENSION_ID / "blender_manifest.toml"
        if code != 0 or not installed.is_file():
            errors = [line for line in output.splitlines() if line.startswith("Error:")]
            reason = errors[0] if errors else last_line(output)
            raise StepFailed(f"install-file -e exited with {code} ({reason}); installed: {installed.is_file()}")
        return f"installed into {installed.parent}"

    def enable(self) -> str:
        summary = self.blender_script("enable", "bl_enable.py")
        shutil.rmtree(self.screenshots, ignore_errors=True)
        self.screenshots.mkdir(parents=True)
        return summary + "; " + self.windowed_script("enable", "bl_prefs_window.py")

    def deps(self) -> str:
        return self.blender_script("deps", "bl_install_deps.py", "--online-mode")

    def workflow(self) -> str:
        shutil.rmtree(self.workflow_dir, ignore_errors=True)
        self.workflow_dir.mkdir(parents=True)
        return self.blender_script("workflow", "bl_workflow.py")

    def windowed_script(self, step: str, script: str, blend: Path | None = None) -> str:
        """Run a script in a Blender window on a virtual X screen that the window fills."""
        width, height = SCREEN.split("x")[:2]
        command = ["xvfb-run", "-a", "-s", f"-screen 0 {SCREEN}", self.blender]
        command += ["--window-geometry", "0", "0", width, height]
        command += [str(blend)] if blend else []
        command += ["--python-exit-code", "1", "--python", str(HERE / script)]
        code, output = self.run(step, command)
        return check_result(output, code, self.logs / f"{step}.log")

    def windowed(self) -> str:
        blend = self.workflow_dir / "real.blend"
        if not blend.is_file():
            raise StepFailed(f"{blend} is missing: run the workflow step first")
        return self.windowed_script("windowed", "bl_windowed.py", blend)


STEPS: tuple[tuple[str, Callable[[Harness], str]], ...] = (
    ("validate", Harness.validate),
    ("build", Harness.build),
    ("install", Harness.install),
    ("enable", Harness.enable),
    ("deps", Harness.deps),
    ("workflow", Harness.workflow),
    ("windowed", Harness.windowed),
)


def discard(folder: Path) -> None:
    """Move a folder aside and delete it in the background: an earlier run's user folder holds GBs of wheels."""
    if not folder.exists():
        return
    aside = folder.with_name(f"{folder.name}.old-{os.getpid()}-{time.monotonic_ns()}")
    folder.rename(aside)
    subprocess.Popen(["rm", "-rf", str(aside)], start_new_session=True)


def last_line(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


def check_result(output: str, code: int, log: Path) -> str:
    """The scripts print ``RESULT PASS <summary>`` or ``RESULT FAIL <reason>`` lines, and ``NOTE`` lines."""
    fails = [
        line.removeprefix("RESULT FAIL ").strip() for line in output.splitlines() if line.startswith("RESULT FAIL")
    ]
    passes = [
        line.removeprefix("RESULT PASS ").strip() for line in output.splitlines() if line.startswith("RESULT PASS")
    ]
    for line in output.splitlines():
        if line.startswith("NOTE "):
            print(f"    note: {line[5:]}", flush=True)
        elif "matches no enum" in line:  # Blender's own complaint about a setting the extension wrote or read
            print(f"    note: Blender printed: {line.strip()}", flush=True)
    if fails:
        for reason in fails[1:]:
            print(f"    also: {reason}", flush=True)
        raise StepFailed(fails[0] + (f" (and {len(fails) - 1} more, above)" if len(fails) > 1 else ""))
    if code != 0 or not passes:
        raise StepFailed(f"Blender exited with {code} without a result line: {last_line(output)} (log: {log})")
    return "; ".join(passes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--src", type=Path, default=Path("/src"), help="the checkout (default /src)")
    parser.add_argument("--out", type=Path, default=Path("/out"), help="logs, build, user folder, screenshots")
    names = [name for name, _ in STEPS]
    parser.add_argument("--from", dest="first", choices=names, default=names[0], help="start at this step")
    parser.add_argument("--only", choices=names, help="run this step alone")
    args = parser.parse_args(argv)

    harness = Harness(args.src.resolve(), args.out.resolve())
    harness.out.mkdir(parents=True, exist_ok=True)
    if args.first == names[0] and not args.only:
        shutil.rmtree(harness.logs, ignore_errors=True)
    version = subprocess.run([harness.blender, "--version"], capture_output=True, text=True, errors="replace")
    blender_line = next((line for line in version.stdout.splitlines() if line.startswith("Blender")), "(no version)")
    print(f"real Blender: {blender_line} ({harness.blender}); output in {harness.out}", flush=True)
    started = time.monotonic()
    selected = [STEPS[names.index(args.only)]] if args.only else STEPS[names.index(args.first) :]
    results = {}
    for name, step in selected:
        step_started = time.monotonic()
        print(f"[{name}] ...", flush=True)
        try:
            summary = step(harness)
        except StepFailed as exc:
            seconds = time.monotonic() - step_started
            print(f"FAIL {name} ({seconds:.0f} s): {exc}", flush=True)
            results[name] = {"result": "FAIL", "reason": str(exc), "seconds": round(seconds, 1)}
            write_summary(harness, results, started)
            print(f"logs: {harness.logs}", flush=True)
            return 1
        seconds = time.monotonic() - step_started
        print(f"PASS {name} ({seconds:.0f} s): {summary}", flush=True)
        results[name] = {"result": "PASS", "summary": summary, "seconds": round(seconds, 1)}
    write_summary(harness, results, started)
    print(f"all {len(selected)} steps passed in {time.monotonic() - started:.0f} s; logs: {harness.logs}", flush=True)
    return 0


def write_summary(harness: Harness, results: dict, started: float) -> None:
    summary = {"steps": results, "seconds": round(time.monotonic() - started, 1)}
    (harness.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
