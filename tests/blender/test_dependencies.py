"""Install Dependencies: the command it runs, Online Access, the background path, and vendor_setup.py's target mode."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import bpy
import numpy
import pytest
from blender_env import ROOT, extension


def operator_module():
    return extension().operators.dependencies


@pytest.fixture
def fake_install(monkeypatch):
    """Popen replaced by a short real child that prints a few lines and exits 0; add_to_path recorded."""
    module = operator_module()
    calls: dict[str, list] = {"popen": [], "add_to_path": []}
    real_popen = subprocess.Popen
    script = "print('Collecting torch==2.13.0'); print('Installing collected packages: torch'); print('done')"

    def popen(args, **kwargs):
        calls["popen"].append((list(args), kwargs))
        return real_popen([sys.executable, "-c", script], **kwargs)

    monkeypatch.setattr(module.subprocess, "Popen", popen)
    monkeypatch.setattr(module, "online_access", lambda: True)
    monkeypatch.setattr(module.dependencies, "add_to_path", lambda: calls["add_to_path"].append(True))
    return calls


def test_install_command_runs_vendor_setup_into_the_user_site_packages():
    module = operator_module()
    command = module.install_command()
    site = extension().dependencies.site_packages()

    assert command[0] == sys.executable
    assert Path(command[1]).resolve() == (ROOT / "vendor_setup.py").resolve()
    assert command[2:] == ["--target", str(site)]
    assert "extensions" in site.parts and site.name == "site-packages"
    assert module.install_environment()["PYTHONNOUSERSITE"] == "1"


def test_without_online_access_nothing_runs(monkeypatch):
    module = operator_module()

    started = []

    def popen(*args, **kwargs):
        # Recorded rather than raised: an exception inside the operator would also surface as RuntimeError.
        started.append(args)
        raise OSError("a child process was started")

    monkeypatch.setattr(module.subprocess, "Popen", popen)
    monkeypatch.setattr(module, "online_access", lambda: False)

    with pytest.raises(RuntimeError, match=r"Allow Online Access in Preferences > System") as error:
        bpy.ops.bend.install_dependencies()
    assert "child process" not in str(error.value)
    assert started == []


def test_online_access_reads_blenders_setting():
    # The PyPI bpy module starts with online access off, like a fresh Blender.
    assert operator_module().online_access() is bpy.app.online_access


def test_background_install_blocks_logs_and_adds_to_path(fake_install, capsys):
    module = operator_module()

    assert bpy.ops.bend.install_dependencies() == {"FINISHED"}

    ((args, kwargs),) = fake_install["popen"]
    assert args == module.install_command()
    assert kwargs["env"]["PYTHONNOUSERSITE"] == "1"
    log = module.install_log()
    assert log[-3:] == ["Collecting torch==2.13.0", "Installing collected packages: torch", "done"]
    assert log[0].startswith("$ ")
    assert "Installing collected packages: torch" in capsys.readouterr().out
    assert fake_install["add_to_path"] == [True]
    assert module.last_returncode() == 0
    assert not module.is_running()


def test_failed_install_reports_the_last_line(monkeypatch):
    module = operator_module()
    real_popen = subprocess.Popen
    added = []

    def popen(args, **kwargs):
        return real_popen(
            [sys.executable, "-c", "print('ERROR: no matching distribution'); raise SystemExit(1)"], **kwargs
        )

    monkeypatch.setattr(module.subprocess, "Popen", popen)
    monkeypatch.setattr(module, "online_access", lambda: True)
    monkeypatch.setattr(module.dependencies, "add_to_path", lambda: added.append(True))

    with pytest.raises(RuntimeError, match="no matching distribution"):
        bpy.ops.bend.install_dependencies()
    assert module.last_returncode() == 1
    assert added == []


def test_log_keeps_the_last_200_lines(monkeypatch):
    module = operator_module()
    real_popen = subprocess.Popen

    def popen(args, **kwargs):
        return real_popen([sys.executable, "-c", "for i in range(500): print(i)"], **kwargs)

    monkeypatch.setattr(module.subprocess, "Popen", popen)
    monkeypatch.setattr(module, "online_access", lambda: True)
    monkeypatch.setattr(module.dependencies, "add_to_path", lambda: None)

    bpy.ops.bend.install_dependencies()
    log = module.install_log()
    assert len(log) == 200
    assert log[-1] == "499"


# vendor_setup.py, pure (it is stdlib only and never imports Blender).


def test_print_engine_lists_only_the_engine_pins(vendor_setup, capsys):
    assert vendor_setup.main(["--print", "engine"]) == 0
    lines = capsys.readouterr().out.split()
    engine = vendor_setup.read_pins()["engine"]
    assert lines == [f"{name}=={version}" for name, version in engine.items()]
    names = {line.split("==")[0] for line in lines}
    assert "torch" in names
    assert not names & {"numpy", "bpy", "pytest", "ruff", "av"}


def test_install_target_never_leaves_numpy(vendor_setup, monkeypatch, tmp_path):
    target = tmp_path / "site-packages"
    seen: dict[str, object] = {}

    def fake_pip(python, args):
        seen["python"], seen["args"] = python, list(args)
        constraint = Path(args[args.index("--constraint") + 1])
        seen["constraint"] = constraint.read_text()
        for name in ("numpy", "numpy-1.26.4.dist-info", "numpy.libs", "torch", "torch-2.13.0.dist-info", "bin"):
            (target / name).mkdir(parents=True)

    monkeypatch.setattr(vendor_setup, "_pip", fake_pip)
    pins = vendor_setup.read_pins()
    vendor_setup.install_target(target, pins)

    assert seen["python"] == sys.executable
    args = seen["args"]
    assert args[:4] == ["install", "--upgrade", "--target", str(target)]
    assert [a for a in args if "==" in a] == vendor_setup.requirements(pins, ["engine"])
    # The resolver may only use the numpy Blender already has.
    assert seen["constraint"] == f"numpy=={numpy.__version__}\n"
    left = sorted(p.name for p in target.iterdir())
    assert left == ["torch", "torch-2.13.0.dist-info"]


def test_modal_reader_never_blocks_and_sees_every_line(monkeypatch):
    # The modal path needs a window; its reader and drain are the parts that must not block, so test them here.
    module = operator_module()
    real_popen = subprocess.Popen
    script = "import time; print('first', flush=True); time.sleep(0.5); print('second')"
    monkeypatch.setattr(
        module.subprocess, "Popen", lambda args, **kwargs: real_popen([sys.executable, "-c", script], **kwargs)
    )

    process = module._start()
    lines = module.start_reader(process)
    started = time.monotonic()
    drains = 0
    while not module.drain(lines):
        drains += 1
        time.sleep(0.02)
    assert process.wait() == 0
    assert module.install_log()[-2:] == ["first", "second"]
    assert drains > 5  # drain returned while the child was still sleeping
    assert time.monotonic() - started < 10
