"""The engine's child process as a group: what it starts in turn is stopped with it, and ends with it.

An artist's engine Python may be a wrapper (a conda or venv launcher script) that runs the real engine as its own
child. The wrapper is the process Blender knows; these tests put a synthetic wrapper in its place and check that
Esc reaches the engine behind it, that nothing of the run outlives it, and that its pipes are closed after it.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import signal
import stat
import sys
import textwrap
from pathlib import Path

import blender_env
import pytest

pytestmark = pytest.mark.skipif(os.name != "posix", reason="process groups are signalled on POSIX only")

# Long enough for a loaded machine to start two Pythons; a wrapper that never answers fails the test instead of
# hanging it.
EVENT_SECONDS = 120


def _module(name: str):
    return importlib.import_module(f"{blender_env.MODULE}.{name}")


def _wrapper(path: Path, body: str) -> str:
    """An executable Python script standing in for the engine Python; ``body`` runs with ``engine`` started."""
    path.write_text(f"#!{sys.executable}\n" + textwrap.dedent(body))
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def _next(process, kind: str) -> dict:
    while True:
        event = process.events.get(timeout=EVENT_SECONDS)
        assert event is not None, f"the stream ended before a {kind!r} event: {process.last_error_line()}"
        if event.get("event") == kind:
            return event


def _running(pid: int) -> bool:
    return _module("engine.frame_store")._pid_alive(pid)


def _reap(pid: int) -> None:
    """Kill a process the test started in the wrapper, should the code under test have left it running."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def test_a_wrapper_killed_mid_render_leaves_nothing_running_nor_half_written(tmp_path):
    """The out-of-memory killer takes the wrapper; its engine, mid-write, must be gone before the cleanup looks."""
    frame_store = _module("engine.frame_store")
    wrapper = _wrapper(
        tmp_path / "python-that-dies",
        """\
        import json, os, signal, subprocess, sys, time
        engine = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], stdout=subprocess.DEVNULL)
        print(json.dumps({"event": "spawned", "pid": engine.pid}), flush=True)
        sys.stdin.readline()  # the test has put the engine's half-written frame in place
        os.kill(os.getpid(), signal.SIGKILL)
        """,
    )
    process = _module("blender.engine_process").EngineProcess(["render", "job.json"], wrapper, interactive=True)
    engine_pid = _next(process, "spawned")["pid"]
    try:
        temp = tmp_path / frame_store.temp_name("frame_00002.png", pid=engine_pid)
        temp.write_bytes(b"\x89PNG half")
        process.send({"request": "die"})
        assert process.events.get(timeout=EVENT_SECONDS) is None
        assert process.wait() == -signal.SIGKILL
        assert not _running(engine_pid), "the engine behind the killed wrapper is still running"
        frame_store.FrameStore(tmp_path).remove_temporaries(pid=process.process.pid)  # what Blender does next
        assert not temp.exists()
        pipes = (process.process.stdin, process.process.stdout, process.process.stderr)
        assert [pipe.closed for pipe in pipes] == [True, True, True]
    finally:
        _reap(engine_pid)


def test_stop_reaches_the_engine_behind_a_wrapper(tmp_path):
    """Esc sends SIGTERM; a wrapper that ignores it (as launchers that wait for their child do) passes nothing on."""
    stopped = tmp_path / "stopped"
    engine = textwrap.dedent(f"""\
        import signal, sys, time
        def stop(signum, frame):
            open({str(stopped)!r}, "w").write("stopped between steps")
            sys.exit(130)
        signal.signal(signal.SIGTERM, stop)
        print("ready", flush=True)
        time.sleep(600)
        """)
    wrapper = _wrapper(
        tmp_path / "launcher",
        f"""\
        import json, signal, subprocess, sys
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        engine = subprocess.Popen([sys.executable, "-c", {engine!r}], stdout=subprocess.PIPE, text=True)
        engine.stdout.readline()
        print(json.dumps({{"event": "ready", "pid": engine.pid}}), flush=True)
        sys.exit(engine.wait())
        """,
    )
    process = _module("blender.engine_process").EngineProcess(["render", "job.json"], wrapper)
    engine_pid = _next(process, "ready")["pid"]
    try:
        process.stop()
        assert process.events.get(timeout=EVENT_SECONDS) is None, "the engine did not stop"
        assert process.wait() == 130
        assert stopped.read_text() == "stopped between steps"
    finally:
        _reap(engine_pid)
        process.process.kill()
        process.wait()


def test_the_dependencies_folder_is_on_the_path_of_blenders_own_python_only():
    """An artist's Engine Python has its own packages: wheels installed for Blender's Python must not shadow them."""
    engine_process, folder = _module("blender.engine_process"), str(_module("blender.dependencies").site_packages())
    assert folder in engine_process.engine_path(sys.executable)
    assert folder not in engine_process.engine_path("/opt/conda/envs/sd/bin/python")
    assert str(engine_process.EXTENSION_ROOT) in engine_process.engine_path("/opt/conda/envs/sd/bin/python")


def test_releasing_an_engine_process_that_already_exited_closes_its_pipes(tmp_path):
    warm = _module("blender.warm_engine").WarmEngine()
    ticket = warm.request(
        {"request": "render"},
        _wrapper(tmp_path / "python-that-exits", "import sys\nsys.stdin.readline()\nsys.exit(3)\n"),
        "k",
    )
    engine = ticket.engine
    assert ticket.get(timeout=EVENT_SECONDS) is None  # its stream ended without an answer
    assert ticket.wait() == 3  # the request's code is the process's own
    assert warm.release() is False  # nothing was running any more
    assert engine.process.stdin.closed and engine.process.returncode == 3
