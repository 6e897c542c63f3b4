"""Faults a render meets in the field, injected for real: a kill mid-write, Ctrl-C or SIGTERM, a full disk, the GPU
out of memory, a very long render, and several workers sharing one output folder.

The process-level faults run ``python -m engine`` through ``tests/fault_injection.py``, which patches one write or
one U-Net call to fail the way the real fault does, then checks what a user would find in the folder afterwards.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from diffusers import UNet2DConditionModel
from job_documents import job_document, write_job
from PIL import Image

from engine import frame_store, runner
from engine.errors import EngineError
from engine.events import EventStream
from engine.frame_store import MANIFEST_NAME, TEMP_PREFIX, FrameStore, temp_name
from engine.job import load_job, parse_job
from engine.runner import Runner

ROOT = Path(__file__).resolve().parents[1]
INJECT = Path(__file__).resolve().parent / "fault_injection.py"
ROT = {"name": "rot", "op": "rotate_r1", "latent_layer": 0}
# Six frames in batches of two: a kill at frame 3 leaves 1-2 done, and the resumed batches line up with an
# uninterrupted render's, so the frames must match it byte for byte.
KILL_JOB = job_document(6, [ROT], width=16, height=16, steps=2, batch_size=2)
ENV = dict(os.environ, PYTHONPATH=str(ROOT))


def _engine(*args: str, fault: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    command = [sys.executable, str(INJECT), *fault, "--", *args] if fault else [sys.executable, "-m", "engine", *args]
    return subprocess.run(command, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)


def _events(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines()]


def _frames(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("frame_*.png"))


def _records(folder: Path) -> list[dict]:
    """The manifest's readable records (a torn last line is not one)."""
    records = []
    for line in (folder / MANIFEST_NAME).read_text().splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


def _assert_consistent(folder: Path) -> None:
    """Every frame on disk decodes; every readable manifest record points at a file with its checksum."""
    for name in _frames(folder):
        with Image.open(folder / name) as image:
            image.load()
    for record in _records(folder):
        data = (folder / record["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == record["sha256"], record["file"]


def _assert_all_done(job_path: Path) -> None:
    """Every frame of the job has a manifest record that a resume would accept."""
    job = load_job(job_path)
    store = FrameStore(job.output_folder)
    manifest = store.load_manifest()
    hashes = job.frame_hashes()
    assert all(store.is_done(manifest.get(f.frame), hashes[i]) for i, f in enumerate(job.frames))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, tiny_model) -> Path:
    folder = tmp_path_factory.mktemp("uninterrupted")
    Runner(load_job(write_job(folder, KILL_JOB)), EventStream(None), model=tiny_model).run()
    return folder


# --- SIGKILL in the middle of a write -----------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["kill-png", "kill-manifest"])
def test_a_kill_mid_write_leaves_whole_frames_and_resumes_to_the_same_pixels(
    tmp_path, tiny_model, uninterrupted, fault
):
    job = write_job(tmp_path, KILL_JOB)
    killed = _engine("render", str(job), fault=(fault, "3"))
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert [e["frame"] for e in _events(killed.stdout) if e["event"] == "frame"] == [1, 2]
    _assert_consistent(tmp_path)
    if fault == "kill-png":  # half of frame 3 sits in a temporary; no frame file has a part of it
        assert _frames(tmp_path) == ["frame_00001.png", "frame_00002.png"]
        assert [p.name.endswith("frame_00003.png") for p in tmp_path.glob(f"{TEMP_PREFIX}*")] == [True]
    else:  # frame 3 is in place, but its record was cut off mid-line
        assert "frame_00003.png" in _frames(tmp_path)
        assert not (tmp_path / MANIFEST_NAME).read_bytes().endswith(b"\n")
    assert [r["frame"] for r in _records(tmp_path)] == [1, 2]

    stream = io.StringIO()  # the next run, unpatched (in this process, which saves a model load)
    Runner(load_job(job), EventStream(stream), model=tiny_model).run()
    events = _events(stream.getvalue())
    assert events[0] == {"event": "start", "frames": 6, "todo": 4, "skipped": 2}
    assert [e["frame"] for e in events if e["event"] == "frame"] == [3, 4, 5, 6]
    assert not list(tmp_path.glob(f"{TEMP_PREFIX}*"))
    _assert_consistent(tmp_path)
    _assert_all_done(job)  # the resumed run's records were not swallowed by the torn line
    assert _frames(tmp_path) == _frames(uninterrupted)
    for name in _frames(tmp_path):
        assert (tmp_path / name).read_bytes() == (uninterrupted / name).read_bytes(), name


# --- SIGINT / SIGTERM: stop within one denoising step -------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_within_one_step_and_keeps_finished_frames(tmp_path, signum):
    job = write_job(tmp_path, job_document(3, [ROT], width=16, height=16, steps=4))
    # Each U-Net call sleeps, so the signal surely lands while a step is running, not between reads of the pipe
    command = [sys.executable, str(INJECT), "slow-unet", "0", "0.25", "--", "render", str(job)]
    process = subprocess.Popen(command, cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watchdog = threading.Timer(120, process.kill)
    watchdog.start()
    after: list[dict] = []  # the events that come once the signal is sent
    signalled = False
    try:
        for line in process.stdout:
            event = json.loads(line)
            if signalled:
                after.append(event)
            elif event["event"] == "step" and event["frames"] == [2] and event["step"] == 1:
                process.send_signal(signum)
                signalled = True
        code = process.wait(timeout=60)
    finally:
        watchdog.cancel()
        process.kill()
        process.stdout.close()
        process.stderr.close()
    assert code == 130
    steps_after = [e for e in after if e["event"] == "step"]
    assert len(steps_after) <= 1, steps_after  # the step in flight finishes; no other starts
    assert after[-1] == {"event": "cancelled"}
    assert _frames(tmp_path) == ["frame_00001.png"]
    assert [r["frame"] for r in _records(tmp_path)] == [1]
    _assert_consistent(tmp_path)
    assert not list(tmp_path.glob(f"{TEMP_PREFIX}*"))


# --- a full disk --------------------------------------------------------------------------------------------------


def test_a_full_disk_ends_the_render_with_one_line_naming_the_frame(tmp_path):
    job = write_job(tmp_path, KILL_JOB)
    result = _engine("render", str(job), fault=("enospc-from", "3"))  # from frame 3 on, the disk stays full
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith("error: frame 3: could not write") and "No space left on device" in lines[0]
    assert "free some disk space" in lines[0]
    assert _events(result.stdout)[-1] == {"event": "error", "message": lines[0].removeprefix("error: ")}
    assert _frames(tmp_path) == ["frame_00001.png", "frame_00002.png"]
    assert [r["frame"] for r in _records(tmp_path)] == [1, 2]
    _assert_consistent(tmp_path)
    assert not list(tmp_path.glob(f"{TEMP_PREFIX}*"))


def test_a_write_error_while_keeping_frames_does_not_hide_the_error_that_stopped_the_render(
    tmp_path, tiny_model, monkeypatch
):
    """The U-Net runs out of memory with frames 3-4 still queued for encoding, and the disk fills up from frame 3:
    the user must hear about the memory (what stopped the render), and frames 1-2 are kept."""
    encode = runner.encode_png
    monkeypatch.setattr(runner, "encode_png", lambda image: (time.sleep(0.2), encode(image))[1])
    write_file = frame_store._write_file

    def full_from_frame_3(path: Path, data: bytes) -> None:
        if int(path.name[-9:-4]) >= 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        write_file(path, data)

    monkeypatch.setattr(frame_store, "_write_file", full_from_frame_3)
    calls = []
    forward = UNet2DConditionModel.forward

    def failing(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 5:  # batch [5, 6], first step
            raise torch.OutOfMemoryError(CUDA_OOM)
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(UNet2DConditionModel, "forward", failing)
    with pytest.raises(EngineError, match=r"^frame 5, 6: out of memory"):
        Runner(parse_job(KILL_JOB, tmp_path), EventStream(None), model=tiny_model).run()
    assert _frames(tmp_path) == ["frame_00001.png", "frame_00002.png"]
    assert [r["frame"] for r in _records(tmp_path)] == [1, 2]
    assert not list(tmp_path.glob(f"{TEMP_PREFIX}*"))


# --- out of GPU memory ----------------------------------------------------------------------------------------------

CUDA_OOM = "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 7.79 GiB of which 1 GiB free."
MPS_OOM = "MPS backend out of memory (MPS allocated: 6 GB, other allocations: 1 GB). Tried to allocate 2 GB on a pool."


@pytest.mark.parametrize(
    "error",
    [torch.OutOfMemoryError(CUDA_OOM), torch.cuda.OutOfMemoryError(CUDA_OOM), RuntimeError(MPS_OOM)],
    ids=["torch", "cuda", "mps"],
)
def test_out_of_memory_names_the_fix_and_keeps_finished_frames(tmp_path, tiny_model, monkeypatch, error):
    calls = []
    forward = UNet2DConditionModel.forward

    def failing(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # batch [3, 4], first step
            raise error
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(UNet2DConditionModel, "forward", failing)
    job = parse_job(job_document(6, [ROT], width=16, height=16, steps=2, batch_size=2), tmp_path)
    with pytest.raises(EngineError) as caught:
        Runner(job, EventStream(None), model=tiny_model).run()
    message = str(caught.value)
    assert message.startswith("frame 3, 4: out of memory on cpu") and "tried to allocate 2" in message, message
    assert "batch_size is 2; try 1" in message and "smaller output size (now 16×16)" in message
    assert "Preferences > Memory: Low" in message and "\n" not in message
    assert _frames(tmp_path) == ["frame_00001.png", "frame_00002.png"]
    assert [r["frame"] for r in _records(tmp_path)] == [1, 2]


def test_out_of_memory_while_loading_names_low_memory(tmp_path, monkeypatch):
    def failing(*args, **kwargs):
        raise torch.OutOfMemoryError(CUDA_OOM)

    monkeypatch.setattr(runner, "load_model", failing)
    with pytest.raises(EngineError, match=r"out of memory loading the model .*Memory: Low"):
        Runner(parse_job(job_document(2), tmp_path), EventStream(None)).run()


def test_out_of_memory_through_the_command_line(tmp_path):
    job = write_job(tmp_path, KILL_JOB)
    result = _engine("render", str(job), fault=("oom", "3"))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith("error: frame 3, 4: out of memory") and "batch_size is 2; try 1" in lines[0]
    assert _frames(tmp_path) == ["frame_00001.png", "frame_00002.png"]
    _assert_consistent(tmp_path)


# --- a long render ------------------------------------------------------------------------------------------------

LONG_FRAMES = 2000


def _rss_mb() -> float:
    """Resident memory now (Linux), else the peak so far: either way, growth shows."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


class _MemoryProbe(EventStream):
    def __init__(self, at: set[int]) -> None:
        super().__init__(None)
        self.at = at
        self.rss: dict[int, float] = {}
        self.frames = 0

    def emit(self, event: str, **fields) -> None:
        if event == "frame":
            self.frames += 1
            if fields["frame"] in self.at:
                self.rss[fields["frame"]] = round(_rss_mb(), 2)


def test_a_2000_frame_render_keeps_memory_flat_and_the_manifest_whole(tmp_path, tiny_model):
    """The whole render in one process (~10-20 s here): memory after warm-up must not grow with the frame count.

    A leak of 50 KB per frame would add 75 MB between frames 500 and 2000; the bound is 10 MB.
    """
    doc = job_document(LONG_FRAMES, width=8, height=8, steps=1, guidance=0.0, batch_size=64)
    probe = _MemoryProbe({200, 500, 1000, 1500, 2000})
    started = time.perf_counter()
    summary = Runner(parse_job(doc, tmp_path), probe, model=tiny_model).run()
    seconds = time.perf_counter() - started
    print(f"\n2000-frame render: {seconds:.1f} s, RSS (MB) at frames {probe.rss}")
    assert len(summary.rendered) == LONG_FRAMES and probe.frames == LONG_FRAMES
    assert probe.rss[2000] - probe.rss[500] < 10.0, probe.rss
    lines = (tmp_path / MANIFEST_NAME).read_text().splitlines()
    assert len(lines) == LONG_FRAMES
    records = [json.loads(line) for line in lines]
    assert [r["frame"] for r in records] == list(range(1, LONG_FRAMES + 1))
    assert len(_frames(tmp_path)) == LONG_FRAMES
    _assert_all_done(write_job(tmp_path, doc))


# --- several workers, one folder ----------------------------------------------------------------------------------


def test_prepare_removes_only_temporaries_no_running_render_is_writing(tmp_path):
    store = FrameStore(tmp_path)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    try:
        names = {
            "live": temp_name("frame_00001.png", pid=sleeper.pid),
            "dead": temp_name("frame_00002.png", pid=finished.pid),
            "mine, left over": temp_name("frame_00003.png"),  # an earlier process had this pid
            "mine, being written": temp_name("frame_00004.png"),
            "other host, fresh": f"{TEMP_PREFIX}farm_node_7-4242-frame_00005.png",
            "other host, old": f"{TEMP_PREFIX}farm_node_7-4243-frame_00006.png",
            "unknown, fresh": f"{TEMP_PREFIX}frame_00007.png",
            "unknown, old": f"{TEMP_PREFIX}frame_00008.png",
        }
        for name in names.values():
            (tmp_path / name).write_bytes(b"\x89PNG half")
        hour_ago = time.time() - frame_store.STALE_TEMP_SECONDS - 60
        for key in ("other host, old", "unknown, old"):
            os.utime(tmp_path / names[key], (hour_ago, hour_ago))
        frame_store._writing.add(tmp_path / names["mine, being written"])
        try:
            store.prepare()
        finally:
            frame_store._writing.discard(tmp_path / names["mine, being written"])
        kept = {key for key, name in names.items() if (tmp_path / name).exists()}
        assert kept == {"live", "mine, being written", "other host, fresh", "unknown, fresh"}
        store.remove_temporaries(pid=sleeper.pid)  # the Blender side, once its render child has exited
        assert not (tmp_path / names["live"]).exists()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_two_workers_render_disjoint_ranges_into_one_folder(tmp_path):
    """A second worker starts (and prepares the folder) while the first is half-way through writing a frame."""
    job = write_job(tmp_path, job_document(6, width=8, height=8, steps=1, guidance=0.0))
    go = tmp_path.parent / f"{tmp_path.name}-go"

    def start(frames: str, *fault: str) -> subprocess.Popen:
        command = [sys.executable, str(INJECT), *fault, "--", "render", str(job), "--frames", frames]
        return subprocess.Popen(command, cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    first = start("1-3", "hold-write", "2", str(go))
    try:
        deadline = time.monotonic() + 120
        while not list(tmp_path.glob(f"{TEMP_PREFIX}*frame_00002.png")) and time.monotonic() < deadline:
            assert first.poll() is None, first.communicate()
            time.sleep(0.05)
        held = list(tmp_path.glob(f"{TEMP_PREFIX}*frame_00002.png"))
        second = start("4-6", "hold-write", "0", str(go))  # no hold: write 0 never comes
        out_second, err_second = second.communicate(timeout=120)
        assert second.returncode == 0, err_second
        assert [p.exists() for p in held] == [True]  # the second worker left the first one's temporary alone
    finally:
        go.touch()
    out_first, err_first = first.communicate(timeout=120)
    assert first.returncode == 0, err_first
    frames = [e["frame"] for e in _events(out_first) + _events(out_second) if e["event"] == "frame"]
    assert sorted(frames) == list(range(1, 7))
    assert _frames(tmp_path) == [f"frame_{i:05d}.png" for i in range(1, 7)]
    assert len(_records(tmp_path)) == 6
    _assert_consistent(tmp_path)
    _assert_all_done(job)
    assert not list(tmp_path.glob(f"{TEMP_PREFIX}*"))


def test_the_manifest_survives_a_torn_line_from_another_run(tmp_path, tiny_model):
    doc = job_document(2, [ROT], width=16, height=16, steps=2)
    (tmp_path / MANIFEST_NAME).write_text('{"frame": 1, "hash": "abc')  # a kill cut this record short
    Runner(parse_job(doc, tmp_path), EventStream(io.StringIO()), model=tiny_model).run()
    assert [r["frame"] for r in _records(tmp_path)] == [1, 2]
    _assert_all_done(write_job(tmp_path, doc))


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="zombie states are read from procfs")
def test_a_killed_render_not_yet_reaped_counts_as_dead(tmp_path):
    """A SIGKILLed engine whose parent has not reaped it still answers kill(pid, 0): its temporaries must go."""
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        deadline = time.monotonic() + 30
        while Path(f"/proc/{zombie.pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z":
            assert time.monotonic() < deadline, "the child never exited"
            time.sleep(0.05)
        temp = tmp_path / temp_name("frame_00001.png", pid=zombie.pid)
        temp.write_bytes(b"\x89PNG half")
        FrameStore(tmp_path).remove_temporaries()
        assert not temp.exists()
    finally:
        zombie.wait()


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="zombie states are read from procfs")
def test_a_killed_render_reaped_while_it_is_checked_counts_as_dead(tmp_path, monkeypatch):
    """kill(pid, 0) answers, then the parent reaps the process before its /proc entry is read: it is dead."""
    reaped = subprocess.Popen([sys.executable, "-c", "pass"])
    reaped.wait()
    real_kill = os.kill

    def answers_for_the_reaped(pid: int, signum: int) -> None:
        if pid != reaped.pid:
            real_kill(pid, signum)

    monkeypatch.setattr(os, "kill", answers_for_the_reaped)
    temp = tmp_path / temp_name("frame_00001.png", pid=reaped.pid)
    temp.write_bytes(b"\x89PNG half")
    FrameStore(tmp_path).remove_temporaries()
    assert not temp.exists()
