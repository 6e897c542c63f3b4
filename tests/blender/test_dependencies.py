"""Install Dependencies (the command it runs, Online Access, the background path, the compute choice, pip's own
failures), vendor_setup.py's target and venv modes, and the Engine Python with its check."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import venv
from pathlib import Path

import blender_env
import bpy
import numpy
import pytest
from blender_env import ROOT, extension
from test_panels import draw_fn


def operator_module():
    return extension().operators.dependencies


def installer():
    return extension().blender.installer


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

    monkeypatch.setattr(installer().subprocess, "Popen", popen)
    monkeypatch.setattr(installer(), "online_access", lambda: True)
    monkeypatch.setattr(module.dependencies, "add_to_path", lambda: calls["add_to_path"].append(True))
    return calls


def _prefs():
    return bpy.context.preferences.addons[blender_env.MODULE].preferences


@pytest.fixture
def compute():
    """The Compute preference, put back afterwards."""
    old = _prefs().compute
    yield _prefs()
    _prefs().compute = old


def test_install_command_runs_vendor_setup_into_the_user_site_packages():
    command = installer().install_command("rocm")
    site = extension().blender.dependencies.site_packages()

    assert command[0] == sys.executable
    assert Path(command[1]).resolve() == (ROOT / "vendor_setup.py").resolve()
    assert command[2:] == ["--target", str(site), "--compute", "rocm"]
    assert "extensions" in site.parts and site.name == "site-packages"
    assert installer().install_environment()["PYTHONNOUSERSITE"] == "1"


def test_automatic_compute_is_resolved_before_the_installer_starts(vendor_setup):
    assert installer().install_command("auto")[-2:] == ["--compute", vendor_setup.default_compute()]


def test_without_online_access_nothing_runs(monkeypatch):

    started = []

    def popen(*args, **kwargs):
        # Recorded rather than raised: an exception inside the operator would also surface as RuntimeError.
        started.append(args)
        raise OSError("a child process was started")

    monkeypatch.setattr(installer().subprocess, "Popen", popen)
    monkeypatch.setattr(installer(), "online_access", lambda: False)

    with pytest.raises(RuntimeError, match=r"Allow Online Access in Preferences > System") as error:
        bpy.ops.bend.install_dependencies()
    assert "child process" not in str(error.value)
    assert started == []


def test_online_access_reads_blenders_setting():
    # The PyPI bpy module starts with online access off, like a fresh Blender.
    assert installer().online_access() is bpy.app.online_access


def test_background_install_blocks_logs_and_adds_to_path(fake_install, capsys):

    assert bpy.ops.bend.install_dependencies() == {"FINISHED"}

    ((args, kwargs),) = fake_install["popen"]
    assert args == installer().install_command(_prefs().compute)
    assert kwargs["env"]["PYTHONNOUSERSITE"] == "1"
    log = installer().install_log()
    assert log[-3:] == ["Collecting torch==2.13.0", "Installing collected packages: torch", "done"]
    assert log[0].startswith("$ ")
    assert "Installing collected packages: torch" in capsys.readouterr().out
    assert fake_install["add_to_path"] == [True]
    assert installer().last_returncode() == 0
    assert not installer().is_running()


def test_failed_install_reports_the_last_line(monkeypatch):
    module = operator_module()
    real_popen = subprocess.Popen
    added = []

    def popen(args, **kwargs):
        return real_popen(
            [sys.executable, "-c", "print('ERROR: no matching distribution'); raise SystemExit(1)"], **kwargs
        )

    monkeypatch.setattr(installer().subprocess, "Popen", popen)
    monkeypatch.setattr(installer(), "online_access", lambda: True)
    monkeypatch.setattr(module.dependencies, "add_to_path", lambda: added.append(True))

    with pytest.raises(RuntimeError, match="no matching distribution"):
        bpy.ops.bend.install_dependencies()
    assert installer().last_returncode() == 1
    assert added == []


def test_log_keeps_the_last_200_lines(monkeypatch):
    module = operator_module()
    real_popen = subprocess.Popen

    def popen(args, **kwargs):
        return real_popen([sys.executable, "-c", "for i in range(500): print(i)"], **kwargs)

    monkeypatch.setattr(installer().subprocess, "Popen", popen)
    monkeypatch.setattr(installer(), "online_access", lambda: True)
    monkeypatch.setattr(module.dependencies, "add_to_path", lambda: None)

    bpy.ops.bend.install_dependencies()
    log = installer().install_log()
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
    monkeypatch.setattr(vendor_setup, "this_os", lambda: "linux")
    pins = vendor_setup.read_pins()
    vendor_setup.install_target(target, pins, "cuda")

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
    real_popen = subprocess.Popen
    script = "import time; print('first', flush=True); time.sleep(0.5); print('second')"
    monkeypatch.setattr(
        installer().subprocess, "Popen", lambda args, **kwargs: real_popen([sys.executable, "-c", script], **kwargs)
    )

    process = installer().start()
    lines = installer().start_reader(process)
    started = time.monotonic()
    drains = 0
    while not installer().drain(lines):
        drains += 1
        time.sleep(0.02)
    assert process.wait() == 0
    assert installer().install_log()[-2:] == ["first", "second"]
    assert drains > 5  # drain returned while the child was still sleeping
    assert time.monotonic() - started < 10


def test_a_blender_without_numpy_gets_the_target_numpy_and_keeps_it(vendor_setup, monkeypatch, tmp_path):
    """Debian's Blender has no numpy: the pin with wheels for every Blender Python is installed, and left there."""
    target = tmp_path / "site-packages"
    seen: dict[str, list[str]] = {}

    def fake_pip(python, args):
        seen["args"] = list(args)
        for name in ("numpy", "numpy-2.3.5.dist-info", "numpy.libs", "torch"):
            (target / name).mkdir(parents=True)

    monkeypatch.setattr(vendor_setup, "_pip", fake_pip)
    monkeypatch.setattr(vendor_setup, "_installed_numpy_version", lambda: None)
    pins = vendor_setup.read_pins()
    vendor_setup.install_target(target, pins, "cpu")

    assert "--constraint" not in seen["args"]
    assert f"numpy=={pins['target-numpy']['numpy']}" in seen["args"]
    assert pins["target-numpy"]["numpy"] != pins["host"]["numpy"]  # 1.26.4 has no wheels for Python 3.13+
    assert sorted(p.name for p in target.iterdir()) == ["numpy", "numpy-2.3.5.dist-info", "numpy.libs", "torch"]


@pytest.mark.parametrize(
    "choice, os_name, index",
    [
        ("cuda", "linux", None),  # PyPI's Linux torch is the CUDA build
        ("cpu", "linux", "https://download.pytorch.org/whl/cpu"),
        ("rocm", "linux", "https://download.pytorch.org/whl/rocm7.2"),
        ("cuda", "windows", "https://download.pytorch.org/whl/cu130"),
        ("cpu", "windows", None),  # PyPI's Windows torch is the CPU build
        ("cpu", "macos", None),
        ("apple", "macos", None),
    ],
)
def test_each_compute_choice_picks_its_torch_build(vendor_setup, tmp_path, choice, os_name, index):
    pins = vendor_setup.read_pins()
    args = vendor_setup.target_pip_args(tmp_path, pins, choice, "1.26.4", tmp_path / "c.txt", os_name)
    indexes = [args[i + 1] for i, a in enumerate(args) if a in ("--extra-index-url", "--index-url")]
    assert indexes == ([index] if index else [])
    assert "--index-url" not in args  # PyPI stays the index for everything else
    # From PyTorch's index, torch is pinned with that index's local tag, so PyPI's build can never stand in for it.
    tag = f"+{index.rsplit('/', 1)[-1]}" if index else ""
    assert f"torch=={pins['engine']['torch']}{tag}" in args


@pytest.mark.parametrize("choice, os_name", [("rocm", "windows"), ("apple", "linux"), ("cuda", "macos")])
def test_a_choice_without_a_build_says_which_to_choose(vendor_setup, choice, os_name):
    with pytest.raises(SystemExit, match=rf"--compute {choice}: .* has no torch build for {os_name}; choose"):
        vendor_setup.compute_build(choice, os_name)


@pytest.mark.parametrize(
    "os_name, nvidia, expected",
    [("linux", True, "cuda"), ("linux", False, "cpu"), ("windows", True, "cuda"), ("macos", False, "apple")],
)
def test_the_automatic_compute(vendor_setup, os_name, nvidia, expected):
    assert vendor_setup.default_compute(os_name, nvidia) == expected


def test_every_build_states_its_size_and_where_the_figure_comes_from(vendor_setup):
    for choice, entry in vendor_setup.read_compute().items():
        for os_name in ("linux", "windows", "macos"):
            if os_name not in entry:
                continue
            text = vendor_setup.size_text(entry[os_name])
            assert ("GB to download" in text) or text.startswith("size unknown before the download"), (choice, text)
            assert "measured" in text or "published" in text, (choice, os_name, text)
    cuda = vendor_setup.size_text(vendor_setup.read_compute()["cuda"]["linux"])
    assert "5.1 GB installed" in cuda  # measured in a real Blender 5.2 (shared notes, real-blender.md)


FAKE_PIP_OUTPUTS = {
    "no-match": (
        "Collecting torch==2.13.0\n"
        "ERROR: Could not find a version that satisfies the requirement torch==2.13.0 (from versions: none)\n"
        "ERROR: No matching distribution found for torch==2.13.0\n",
        "No matching distribution found for torch==2.13.0",
    ),
    "certificate": (
        "WARNING: Retrying (Retry(total=4)) after connection broken by 'SSLError(SSLCertVerificationError(1, "
        "'[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: unable to get local issuer certificate'))'\n"
        "Could not fetch URL https://pypi.org/simple/torch/: There was a problem confirming the ssl certificate: "
        "HTTPSConnectionPool(host='pypi.org', port=443) - skipping\n"
        "ERROR: Could not find a version that satisfies the requirement torch==2.13.0 (from versions: none)\n"
        "ERROR: No matching distribution found for torch==2.13.0\n",
        "There was a problem confirming the ssl certificate",
    ),
    "disk-full": (
        "Installing collected packages: torch\n"
        "ERROR: Could not install packages due to an OSError: [Errno 28] No space left on device\n\n",
        "[Errno 28] No space left on device",
    ),
}


@pytest.fixture(params=sorted(FAKE_PIP_OUTPUTS))
def failing_pip(request, tmp_path, monkeypatch):
    """A ``pip`` package first on PYTHONPATH that prints what the real one prints when it fails, and exits 1."""
    output, reason = FAKE_PIP_OUTPUTS[request.param]
    package = tmp_path / "fake-pip" / "pip"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text(f"import sys\nsys.stdout.write({output!r})\nsys.exit(1)\n")
    monkeypatch.setenv("PYTHONPATH", str(package.parent))
    return reason


def test_a_failing_pip_ends_vendor_setup_with_its_own_reason(failing_pip, tmp_path):
    run = subprocess.run(
        [sys.executable, str(ROOT / "vendor_setup.py"), "--target", str(tmp_path / "t"), "--compute", "cpu"],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONNOUSERSITE="1"),
    )
    assert run.returncode == 1
    last = run.stdout.strip().splitlines()[-1]
    assert last.startswith("Install failed: ERROR:") or last.startswith("Install failed: Could not fetch")
    assert failing_pip in last
    assert "Traceback" not in run.stdout + run.stderr and "CalledProcessError" not in run.stdout + run.stderr


def test_a_failing_pip_is_reported_in_blender_and_in_the_log(failing_pip, monkeypatch):
    module = operator_module()
    added = []
    monkeypatch.setattr(installer(), "online_access", lambda: True)
    monkeypatch.setattr(module.dependencies, "add_to_path", lambda: added.append(True))

    with pytest.raises(RuntimeError) as error:
        bpy.ops.bend.install_dependencies()
    message = str(error.value)
    assert "Installing dependencies failed (exit status 1)" in message and failing_pip in message
    assert "Install failed:" not in message and "CalledProcessError" not in message
    assert failing_pip in installer().install_log()[-1]  # the preferences show the log's last lines
    assert installer().last_returncode() == 1 and added == []


def test_the_preferences_show_the_choice_and_its_size_before_installing(scene, compute, monkeypatch):
    panel = extension().panels.dependencies
    monkeypatch.setattr(installer(), "online_access", lambda: True)
    monkeypatch.setattr(extension().vendor_setup, "this_os", lambda: "linux")
    for choice in ("cuda", "cpu", "rocm"):
        compute.compute = choice
        rec = draw_fn(panel.draw_dependencies, bpy.context)
        labels = rec.labels()
        label = extension().blender.dependencies.compute_choices()[choice]["label"]
        [size] = [text for text in labels if text.startswith(label + ":")]
        assert "GB" in size or "unknown" in size
        assert rec.operator("bend.install_dependencies").state["enabled"] is True
    compute.compute = "apple"  # no such build on Linux: said, and the button is off
    rec = draw_fn(panel.draw_dependencies, bpy.context)
    assert any("has no torch build for linux" in text for text in rec.labels())
    assert rec.operator("bend.install_dependencies").state["enabled"] is False
    with pytest.raises(RuntimeError, match=r"Apple .* has no torch build for linux: choose another Compute"):
        bpy.ops.bend.install_dependencies()


# The Engine Python.


def _engine_module():
    return extension().blender.engine_python


@pytest.fixture
def renderable(scene, tmp_path):
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "song.blend"))
    _prefs().model_source = "tiny-random"
    scene.bend.steps = 2
    scene.frame_end = 2
    yield scene
    _prefs().engine_python = blender_env.ENGINE_PYTHON


def _bare_venv(where: Path) -> Path:
    """A venv with nothing installed (no pip either: the check must not need it)."""
    venv.EnvBuilder(with_pip=False, symlinks=os.name != "nt").create(where)
    return where / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _good_python() -> str:
    return blender_env.ENGINE_PYTHON or sys.executable


def test_the_probe_reads_versions_without_importing(tmp_path):
    python = _bare_venv(tmp_path / "venv")
    site = next((tmp_path / "venv").glob("lib/python3*/site-packages"), None) or tmp_path / "venv/Lib/site-packages"
    (site / "torch-2.12.0+cu126.dist-info").mkdir()
    (site / "torch-2.12.0+cu126.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: torch\nVersion: 2.12.0+cu126\n"
    )
    (site / "torch").mkdir()
    (site / "torch" / "__init__.py").write_text("raise SystemExit('imported')\n")  # importing it would show
    run = subprocess.run(
        [str(python), str(ROOT / "blender" / "engine_probe.py"), json.dumps({"torch": "2.12.0", "kornia": "0.9.0"})],
        capture_output=True,
        text=True,
    )
    report = json.loads(run.stdout)
    assert report["event"] == "check" and report["python"] == ".".join(map(str, sys.version_info[:3]))
    assert report["packages"] == {
        "torch": {"version": "2.12.0+cu126", "pin": "2.12.0", "meets_pin": True},
        "kornia": {"version": None, "pin": "0.9.0", "meets_pin": False},
    }


def test_a_good_engine_python_passes_the_check():
    result = _engine_module().check(_good_python())
    assert result.usable, result.problems
    if not blender_env.ENGINE_PYTHON:  # Blender's own Python runs the engine here
        assert result.version == ".".join(map(str, sys.version_info[:3]))
    assert set(result.packages) >= {"torch", "diffusers", "transformers", "kornia", "scipy", "numpy", "pillow"}
    assert result.packages["torch"]["meets_pin"] and result.notes == []


def test_the_check_lists_one_line_per_problem(tmp_path):
    result = _engine_module().check(str(_bare_venv(tmp_path / "venv")))
    assert not result.usable
    pins = _engine_module().engine_pins()
    assert result.problems == [f"{name} is not installed (pinned {pin})" for name, pin in pins.items()]


def test_other_versions_are_notes_not_problems(tmp_path):
    python = _bare_venv(tmp_path / "venv")
    site = next((tmp_path / "venv").glob("lib/python3*/site-packages"))
    pins = _engine_module().engine_pins()
    for name, pin in pins.items():
        version = "2.12.0" if name == "torch" else pin
        info = site / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    result = _engine_module().check(str(python))
    assert result.usable and result.notes == [f"torch 2.12.0 differs from the pinned {pins['torch']}"]


def test_a_python_too_old_is_a_problem(tmp_path):
    old = tmp_path / "python3.10"
    old.write_text('#!/bin/sh\necho \'{"event": "check", "python": "3.10.14", "executable": "x", "packages": {}}\'\n')
    old.chmod(0o755)
    result = _engine_module().check(str(old))
    assert result.problems == ["Python 3.10.14 is too old: the pinned packages need 3.11 or later"]


def test_something_that_is_not_python_is_a_problem(tmp_path):
    broken = tmp_path / "not-python"
    broken.write_text("#!/bin/sh\necho 'bash: no such thing' >&2\nexit 127\n")
    broken.chmod(0o755)
    assert _engine_module().check(str(broken)).problems == [
        f"{broken} is not a Python that runs the check (bash: no such thing)"
    ]
    assert _engine_module().check(str(tmp_path / "nowhere")).problems == [f"{tmp_path / 'nowhere'} does not exist"]


def test_a_good_engine_python_renders(renderable, tmp_path):
    _prefs().engine_python = _good_python()
    assert bpy.ops.bend.render() == {"FINISHED"}
    assert sorted(p.name for p in (tmp_path / "bend" / renderable.name).glob("frame_*.png")) == [
        "frame_00001.png",
        "frame_00002.png",
    ]


@pytest.mark.parametrize("operator", ["render", "preview_frame", "sweep"])
def test_a_python_without_torch_is_refused_naming_the_preference(renderable, tmp_path, operator):
    bpy.ops.bend.bend_add(op="rotate_r1")  # the sweep needs a bend
    _prefs().engine_python = str(_bare_venv(tmp_path / "venv"))
    with pytest.raises(RuntimeError) as error:
        getattr(bpy.ops.bend, operator)()
    message = str(error.value).strip().removeprefix("Error: ").strip()
    assert "\n" not in message
    assert message.startswith("The Engine Python cannot run the engine: torch is not installed (pinned 2.13.0);")
    assert "Set Engine Python in Preferences > Add-ons > Diffusion Bender" in message
    assert not list((tmp_path / "bend").glob(f"{renderable.name}/frame_*.png"))


def test_check_engine_python_button(scene, tmp_path):
    panel = extension().panels.dependencies
    _prefs().engine_python = str(_bare_venv(tmp_path / "venv"))
    with pytest.raises(RuntimeError, match=r"The Engine Python cannot run the engine: torch is not installed"):
        bpy.ops.bend.check_engine_python()
    labels = draw_fn(panel.draw_dependencies, bpy.context).labels()
    assert "torch is not installed (pinned 2.13.0)" in labels and "kornia is not installed (pinned 0.9.0)" in labels

    _prefs().engine_python = _good_python()  # another Python: the old findings are not about it
    assert not any("not installed" in text for text in draw_fn(panel.draw_dependencies, bpy.context).labels())
    assert bpy.ops.bend.check_engine_python() == {"FINISHED"}
    labels = draw_fn(panel.draw_dependencies, bpy.context).labels()
    assert not any("not installed" in text for text in labels)
    assert any(text.startswith("Python 3.") and "torch 2.13.0" in text for text in labels)


def test_venvs_for_other_blenders_hold_no_engine(vendor_setup):
    pins = vendor_setup.read_pins()
    names = {line.split("==")[0] for line in vendor_setup.venv_requirements(pins, {"bpy": "4.5.4"})}
    assert names == {"scipy", "pillow", "numpy", "bpy", *pins["dev"]}
    assert "bpy==4.5.4" in vendor_setup.venv_requirements(pins, {"bpy": "4.5.4"})
    main = {line.split("==")[0] for line in vendor_setup.venv_requirements(pins, {})}
    assert main >= {"torch", "diffusers", *pins["dev-engine"]}  # peft needs torch: the main dev venv only
