"""Hostile input on every channel: structural attacks (depth, size, magnitude, non-UTF-8, NaN), special files
wherever the engine reads or writes, a filesystem that fails at any step, and signals while a call blocks.

Each class has a generator (hypothesis strategies, generated special files, injected faults), not only examples.
The counts of generated cases are printed at the end of the module (``pytest -s``) and recorded in
docs/reliability.md. Each protection was removed in turn (in a scratch copy) and its test failed.
"""

from __future__ import annotations

import errno
import io
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import zlib
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from job_documents import job_document, write_job

from engine import limits
from engine.audio_io import read_wav
from engine.errors import AudioError, EngineError, JobError, ModelError
from engine.events import EventStream
from engine.frame_store import MANIFEST_NAME, FrameStore, temp_name
from engine.job import load_job, parse_job
from engine.preview import OVERSIZED, PreviewServer, bounded_lines
from engine.runner import Runner
from engine.sweep import load_sweep, run_sweep

ROOT = Path(__file__).resolve().parents[1]
ROT = {"name": "rot", "op": "rotate_r1", "latent_layer": 0}
TINY = {"width": 16, "height": 16, "steps": 1}
CASES: Counter[str] = Counter()  # cases generated per class in this run, printed at the end of the module

pytestmark = pytest.mark.skipif(os.name == "nt", reason="FIFOs, sockets and signals as on POSIX")


@pytest.fixture(scope="module", autouse=True)
def _report_counts():
    yield
    print("\nhostile cases generated this run: " + ", ".join(f"{k} {v}" for k, v in sorted(CASES.items())))


@contextmanager
def _deadline(seconds: int):
    """Turn a hang (a blocking open of a FIFO, say) into a failure instead of a stuck test run."""

    def expire(signum, frame):
        raise TimeoutError(f"still blocked after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _one_line(message: str) -> None:
    assert "\n" not in message and 0 < len(message) < 2000, message


# --- documents: job files, sweep files and serve lines ---------------------------------------------------------


def _nest(depth: int) -> str:
    return "[" * depth + "]" * depth


HOSTILE_FRAGMENTS = st.one_of(
    st.integers(1, 200_000).map(_nest),  # 100,000 levels: RecursionError in json
    st.integers(1, 6000).map(lambda n: "9" * n),  # thousands of digits: Python's int-str limit
    st.integers(300, 400).map(lambda n: "1" + "0" * n),  # parses, but no float holds it
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "1e-400", "-0"]),
    st.sampled_from(['"\\ud800"', '"a\\udfff"', '"\\u0000"', '"\\n\\u2028"']),  # lone surrogates, NUL, breaks
    st.integers(2**62, 2**70).map(str),
    st.integers(-(2**70), -(2**62)).map(str),
    st.sampled_from(["[]", "{}", "null", "true", '""', '"' + "x" * 200_000 + '"']),
)
# Fields whose value a fragment replaces, at every level of a job document.
FIELDS = [
    ("width",),
    ("height",),
    ("steps",),
    ("batch_size",),
    ("seed",),
    ("guidance",),
    ("fps",),
    ("prompts", 0),
    ("negative_prompt",),
    ("model", "device"),
    ("model", "source"),
    ("noise", "seed"),
    ("bends", 0, "latent_layer"),
    ("bends", 0, "name"),
    ("bends", 0, "selection", "index"),
    ("bends", 0, "selection", "seed"),
    ("bends", 0, "selection", "fraction"),
    ("bends", 0, "options"),
    ("frames", 0, "frame"),
    ("frames", 0, "phase"),
    ("frames", 0, "strength"),
    ("frames", 0, "prompt_weights", 0),
    ("frames", 1, "bends", "rot"),
    ("output", "folder"),
]
MARK = "__HOSTILE__"


def _hostile_document(path: tuple, fragment: str) -> str:
    """A valid job with one value replaced by ``fragment`` (raw JSON text, so it can be what json.dumps won't make)."""
    doc = job_document(3, [dict(ROT, selection={"kind": "channel", "index": 1, "seed": 0})], **TINY)
    doc["noise"] = {"seed": 1}
    doc["output"] = {"folder": "."}
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = MARK
    return json.dumps(doc).replace(json.dumps(MARK), fragment)


def _check_within_limits(job) -> None:
    """What a job that parsed may ask for: never beyond the documented limits."""
    assert 8 <= job.width <= limits.MAX_SIDE and 8 <= job.height <= limits.MAX_SIDE
    assert job.width * job.height * max(job.batch_size, 1) <= limits.MAX_BATCH_PIXELS
    assert len(job.frames) * job.steps <= limits.MAX_FRAME_STEPS
    assert all(0 <= f.frame <= limits.MAX_FRAME_NUMBER for f in job.frames)
    assert all(-(2**63) <= p.bend.selection.index < 2**63 and p.bend.selection.seed < 2**63 for p in job.bends)


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(path=st.sampled_from(FIELDS), fragment=HOSTILE_FRAGMENTS)
def test_fuzzed_job_documents_are_a_job_within_the_limits_or_one_line_naming_the_field(tmp_path, path, fragment):
    CASES["job documents"] += 1
    file = tmp_path / "job.json"
    file.write_text(_hostile_document(path, fragment), encoding="utf-8")
    try:
        job = load_job(file)
    except JobError as exc:
        _one_line(str(exc))
        return
    _check_within_limits(job)


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(
    field=st.sampled_from(["width", "height", "batch_size", "steps", "frames"]),
    value=st.integers(0, 10**12) | st.sampled_from([8 * 2**20, 2**31, 2**63 - 1, 8192, 8200, 4096]),
    others=st.fixed_dictionaries(
        {
            "width": st.sampled_from([8, 512, 4096, 8192]),
            "height": st.sampled_from([8, 512, 8192]),
            "batch_size": st.integers(0, 256),
            "steps": st.integers(1, 1000),
        }
    ),
)
def test_fuzzed_sizes_and_their_products_are_refused_up_front(tmp_path, field, value, others):
    """Magnitudes and products (width × height × batch, frames × steps): within the limits, or a JobError."""
    CASES["sizes and products"] += 1
    doc = job_document(1, **others)
    if field == "frames":
        doc["frames"][0]["frame"] = value
    else:
        doc[field] = value
    try:
        job = parse_job(doc, tmp_path)
    except JobError as exc:
        _one_line(str(exc))
        assert any(name in str(exc) for name in ("width", "height", "batch_size", "steps", "frame")), str(exc)
        return
    _check_within_limits(job)


def test_a_job_of_more_frames_than_the_limit_is_refused_before_its_frames_are_parsed(tmp_path):
    doc = job_document(1, **TINY)
    doc["frames"] = [{"frame": 0}] * (limits.MAX_FRAMES + 1)  # one shared dict: cheap to build
    with pytest.raises(JobError, match=r"^frames: 1,000,001 frames; a job holds at most 1,000,000"):
        parse_job(doc, tmp_path)
    doc = job_document(1, **dict(TINY, steps=1000))
    doc["frames"] = [{"frame": 0}] * 100_001  # refused before the frames are parsed
    with pytest.raises(JobError, match=r"^steps: 100,001 frames × 1000 steps"):
        parse_job(doc, tmp_path)


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        (b'{"version": 1, "prompts": ["\xff\xfe"]}', "not UTF-8 text (byte 0xff at offset 28)"),
        (b"\xef\xbb\xbf{}", "not valid JSON"),  # a UTF-8 byte order mark
        (_nest(100_000).encode(), "nests deeper than 64 levels"),
        (b'{"a": ' + _nest(70).encode() + b"}", "a" + "[0]" * 63 + " nests deeper"),
        (b'{"version": ' + b"1" * 5000 + b"}", "an integer of 5,000 digits"),
    ],
)
def test_structural_attacks_on_a_job_file_name_the_file_and_what_is_wrong(tmp_path, raw, needle):
    file = tmp_path / "job.json"
    file.write_bytes(raw)
    with pytest.raises(JobError) as caught:
        load_job(file)
    _one_line(str(caught.value))
    assert str(caught.value).startswith(str(file)) and needle in str(caught.value), str(caught.value)


def test_a_lone_surrogate_in_a_prompt_is_refused_naming_the_prompt(tmp_path):
    """JSON can spell half a UTF-16 pair (\\ud800); the tokenizer raised a TypeError traceback on it mid-render."""
    doc = job_document(1, **TINY)
    doc["prompts"] = ["\ud800 orb", "landscape"]
    file = tmp_path / "job.json"
    file.write_text(json.dumps(doc), encoding="utf-8")  # json.dumps escapes it as \ud800, as a hostile file would
    with pytest.raises(JobError, match=r"prompts\[0\] holds '\\ud800', half of a UTF-16 surrogate pair"):
        load_job(file)


@settings(max_examples=80, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(fragment=HOSTILE_FRAGMENTS, where=st.sampled_from(["id", "frame", "steps", "scale", "job", "folder", "top"]))
def test_fuzzed_serve_lines_get_an_error_event_and_the_server_keeps_serving(tmp_path, fragment, where):
    CASES["serve lines"] += 1
    # Frame 99 is not in the job, so a request the fragment leaves valid ends in an error too, before rendering.
    request = {"request": "preview", "id": 7, "job": job_document(1, **TINY), "frame": 99, "folder": str(tmp_path)}
    if where == "top":
        line = fragment
    else:
        request[where] = MARK
        line = json.dumps(request).replace(json.dumps(MARK), fragment)
    out = io.StringIO()
    server = PreviewServer(EventStream(out))
    server.handle(line)
    events = [json.loads(e) for e in out.getvalue().splitlines()]
    errors = [e for e in events if e["event"] == "error"]
    assert errors, events  # none of these lines is a valid request
    assert all("internal error" not in e["message"] for e in errors), errors
    _one_line(errors[-1]["message"])


def test_serve_lines_are_read_with_a_bound_and_an_oversized_one_is_skipped_whole():
    stream = io.BytesIO(b'{"a": 1}\n' + b"x" * 5000 + b"\n" + b'{"b": "\xff"}\n')
    lines = list(bounded_lines(stream, limit=1000))
    assert lines[0] == '{"a": 1}\n' and lines[1] is OVERSIZED and len(lines) == 3
    out = io.StringIO()
    server = PreviewServer(EventStream(out))
    for line in lines[1:]:
        server.handle(line)
    messages = [json.loads(e)["message"] for e in out.getvalue().splitlines()]
    assert "longer than" in messages[0] and "not UTF-8" in messages[1], messages


def test_sweep_sizes_are_bounded_and_rows_need_no_allocation_to_be_refused(tmp_path):
    doc = job_document(1, [ROT], width=8192, height=8192, steps=1)
    doc["sweep"] = {"bend": "rot", "values": list(range(8)), "layers": [0]}
    with pytest.raises(JobError, match=r"^sweep: 8 tiles of 8192×8192 is 536,870,912 pixels"):
        load_sweep(write_job(tmp_path, doc, name="big.json"))


# --- WAV headers ----------------------------------------------------------------------------------------------


def _wav(channels: int, rate: int, bits: int, tag: int, data: bytes, align: int | None = None) -> bytes:
    align = channels * bits // 8 if align is None else align
    fmt = struct.pack("<HHIIHH", tag, channels, rate, (rate * align) & 0xFFFFFFFF, align & 0xFFFF, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(
    channels=st.sampled_from([0, 1, 2, 6, 64, 65, 65535]) | st.integers(0, 65535),
    rate=st.sampled_from([0, 1, 8000, 44100, 768_000, 768_001, 2**32 - 1]) | st.integers(0, 2**32 - 1),
    bits=st.sampled_from([0, 8, 16, 24, 32, 64, 7, 65535]),
    tag=st.sampled_from([1, 3, 0xFFFE, 0, 2, 6, 7]),
    align=st.none() | st.integers(0, 65535),
    data=st.binary(max_size=64),
)
def test_fuzzed_wav_headers_read_within_the_limits_or_fail_with_one_line(
    tmp_path, channels, rate, bits, tag, align, data
):
    CASES["WAV headers"] += 1
    file = tmp_path / "a.wav"
    file.write_bytes(_wav(channels, rate, bits, tag, data, align))
    try:
        samples, sample_rate = read_wav(file)
    except AudioError as exc:
        _one_line(str(exc))
        assert str(file) in str(exc)
        return
    assert 1 <= samples.shape[1] <= limits.MAX_CHANNELS and 1 <= sample_rate <= limits.MAX_SAMPLE_RATE
    assert samples.dtype == np.float32


def test_sample_rate_times_window_and_frames_times_window_are_refused_before_the_features(tmp_path, capsys):
    from engine.cli import main

    file = tmp_path / "a.wav"
    file.write_bytes(_wav(1, 768_000, 16, 1, bytes(2 * 768_000)))  # one second at 768 kHz
    assert main(["features", str(file), "--fps", "1", "--window-ms", "10000"]) == 1
    assert "a window of 7,680,000 samples at 768,000 Hz" in capsys.readouterr().err
    assert main(["features", str(file), "--fps", "1000", "--window-ms", "2000"]) == 1
    assert "1,001 frames × 1,536,000 samples per window" in capsys.readouterr().err


# --- special files wherever the engine reads or writes -----------------------------------------------------------


def _plant(kind: str, at: Path, outside: Path) -> None:
    """Put a special file at ``at``: a link to (or a hard link of) ``outside``, a FIFO, a socket or a device link."""
    if kind == "symlink":
        at.symlink_to(outside)
    elif kind == "hardlink":
        os.link(outside, at)
    elif kind == "fifo":
        os.mkfifo(at)
    elif kind == "socket":
        here = os.getcwd()
        os.chdir(at.parent)  # bind by the short name: socket paths are limited to about 100 bytes
        try:
            with socket.socket(socket.AF_UNIX) as server:
                server.bind(at.name)
        finally:
            os.chdir(here)
    elif kind == "device":
        at.symlink_to("/dev/zero")
    elif kind == "dangling":
        at.symlink_to(outside.parent / "nothing-here")


SPECIAL_KINDS = ["symlink", "hardlink", "fifo", "socket", "device", "dangling"]
OUTPUT_NAMES = [MANIFEST_NAME, "frame_00001.png", "temp", "probe"]


@pytest.mark.parametrize("kind", SPECIAL_KINDS)
@pytest.mark.parametrize("name", OUTPUT_NAMES)
def test_special_files_in_the_output_folder_never_block_or_lead_a_write_out(tmp_path, tiny_model, kind, name):
    CASES["special files (output folder)"] += 1
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"precious\n")
    before = outside.stat()
    folder = tmp_path / "out"
    folder.mkdir()
    target = {"temp": temp_name("frame_00001.png"), "probe": temp_name("probe")}.get(name, name)
    _plant(kind, folder / target, outside)
    job = parse_job(job_document(2, **TINY), folder)
    try:
        with _deadline(20):
            Runner(job, EventStream(None), model=tiny_model).run()
    except EngineError as exc:  # refused: one line naming the file and the fix
        _one_line(str(exc))
        assert name == MANIFEST_NAME and MANIFEST_NAME in str(exc) and "remove it" in str(exc), str(exc)
    else:
        store = FrameStore(folder)
        manifest = store.load_manifest()
        assert all(store.is_done(manifest.get(f.frame), h) for f, h in zip(job.frames, job.frame_hashes(), strict=True))
    assert outside.read_bytes() == b"precious\n" and outside.stat().st_mtime_ns == before.st_mtime_ns
    assert not (tmp_path / "nothing-here").exists()


@pytest.mark.parametrize("kind", ["fifo", "device", "socket", "symlink-out"])
def test_special_files_as_inputs_are_refused_without_blocking(tmp_path, kind):
    """Job file, sweep file, WAV file, init image and model weights: a FIFO would block, /dev/zero never ends."""
    CASES["special files (inputs)"] += 5

    def plant(at: Path) -> Path:
        if kind == "symlink-out":  # reading through a link is fine if it ends at a regular file: here a FIFO
            os.mkfifo(tmp_path / f"{at.parent.name}-{at.name}.fifo")
            at.symlink_to(tmp_path / f"{at.parent.name}-{at.name}.fifo")
        else:
            _plant(kind, at, tmp_path)
        return at

    with _deadline(20):
        with pytest.raises(JobError, match=r"job file .* is (a FIFO|a character device)"):
            load_job(plant(tmp_path / "job.json"))
        with pytest.raises(JobError, match="job file"):
            load_sweep(plant(tmp_path / "sweep.json"))
        with pytest.raises(AudioError, match=r"audio file .* not a regular file"):
            read_wav(plant(tmp_path / "a.wav"))
        plant(tmp_path / "init.png")
        with pytest.raises(JobError, match=r"^img2img.init_image: "):
            parse_job(job_document(1, **TINY, mode="img2img", img2img={"init_image": "init.png"}), tmp_path)
        model = tmp_path / "model"
        (model / "unet").mkdir(parents=True)
        (model / "model_index.json").write_text("{}")
        for key in ("unet", "vae", "text_encoder"):
            (model / key).mkdir(exist_ok=True)
            plant(model / key / "diffusion_pytorch_model.safetensors")
        from engine.models import load_components

        with pytest.raises(ModelError, match=r"model.source: .*/diffusion_pytorch_model.safetensors is"):
            load_components(str(model), dtype=None, allow_download=False, trust_pickle=False)


def test_an_output_folder_that_is_a_link_out_is_refused(tmp_path, tiny_model):
    """Rows and previews are folders beneath the job's: a link planted there must not carry the frames out."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    folder = tmp_path / "job"
    folder.mkdir()
    (folder / "row_00-sweep").symlink_to(elsewhere)
    doc = job_document(1, [ROT], **TINY)
    doc["sweep"] = {"bend": "rot", "values": [0.5], "layers": [0]}
    job, spec = load_sweep(write_job(folder, doc, name="sweep.json"))
    with pytest.raises(EngineError, match="is a symbolic link or not a folder"):
        run_sweep(job, spec, folder / "sheet.png", EventStream(None), model=tiny_model)
    assert not any(elsewhere.iterdir())


def test_a_link_planted_as_the_sheets_temporary_is_replaced_not_written_through(tmp_path, tiny_model):
    outside = tmp_path / "outside.png"
    outside.write_bytes(b"precious")
    folder = tmp_path / "job"
    doc = job_document(1, [ROT], **TINY)
    doc["sweep"] = {"bend": "rot", "values": [0.5], "layers": [0]}
    job, spec = load_sweep(write_job(folder, doc, name="sweep.json"))
    (folder / ".sweep.png.partial").symlink_to(outside)
    run_sweep(job, spec, folder / "sweep.png", EventStream(None), model=tiny_model)
    assert outside.read_bytes() == b"precious" and (folder / "sweep.png").stat().st_size > 100


# --- a filesystem that fails, or turns read-only, at any step ------------------------------------------------------

FAULTY = ("open", "write", "fsync", "replace", "unlink", "mkdir", "read", "fstat", "lseek")


class _FailingOS:
    """``os`` as the engine's file code sees it, failing from call number ``n`` of the chosen functions on
    (a disk that turns read-only stays read-only), or at that one call only."""

    def __init__(self, real, n: int, errno_: int, functions: tuple[str, ...], sticky: bool) -> None:
        self._real, self._n, self._errno, self._functions, self._sticky = real, n, errno_, functions, sticky
        self.calls = 0
        self.injected = 0

    def hit(self, name: str) -> None:
        """Count a call of ``name``; raise the fault when it is due."""
        if name in self._functions:
            self.calls += 1
            if self.calls == self._n or (self._sticky and self.calls > self._n):
                self.injected += 1
                raise OSError(self._errno, os.strerror(self._errno))

    def __getattr__(self, name):
        attr = getattr(self._real, name)
        if name not in self._functions or not callable(attr):
            return attr

        def failing(*args, **kwargs):
            self.hit(name)
            return attr(*args, **kwargs)

        return failing


def _counted(failing: _FailingOS, name: str, original):
    def faulty(self, *args, **kwargs):
        failing.hit(name)
        return original(self, *args, **kwargs)

    return faulty


@pytest.fixture(scope="module")
def rendered(tmp_path_factory, tiny_model):
    """A folder with frames 1-2 of a 4-frame job finished: the frames a fault must never lose."""
    folder = tmp_path_factory.mktemp("rendered")
    doc = job_document(4, [ROT], **TINY, batch_size=1)
    job = parse_job(doc, folder)
    Runner(job, EventStream(None), model=tiny_model).run((1, 2))
    return folder, doc


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(
    n=st.integers(1, 40),
    errno_=st.sampled_from([errno.EROFS, errno.EIO, errno.ENOSPC, errno.EACCES]),
    functions=st.sets(st.sampled_from(FAULTY), min_size=1).map(tuple),
    sticky=st.booleans(),
    fresh=st.booleans(),
)
def test_a_filesystem_failing_at_any_step_ends_with_one_line_and_loses_no_finished_frame(
    tmp_path_factory, tiny_model, rendered, monkeypatch, n, errno_, functions, sticky, fresh
):
    import shutil

    from engine import files, frame_store

    source, doc = rendered
    folder = tmp_path_factory.mktemp("faulty") / "out"
    if not fresh:  # frames 1-2 finished before: they must survive
        shutil.copytree(source, folder)
        (folder / temp_name("frame_00009.png", pid=2**22 + 1)).write_bytes(b"stale")  # a dead process's
    job = parse_job(doc, folder)
    failing = _FailingOS(os, n, errno_, functions, sticky)
    with monkeypatch.context() as patch:
        patch.setattr(frame_store, "os", failing)
        patch.setattr(files, "os", failing)
        for method in ("mkdir", "unlink"):  # pathlib calls its own reference to os
            patch.setattr(Path, method, _counted(failing, method, getattr(Path, method)))
        out = io.StringIO()
        try:
            Runner(job, EventStream(out), model=tiny_model).run()
        except EngineError as exc:
            _one_line(str(exc))
    CASES["faults injected"] += failing.injected
    CASES["filesystem fault runs"] += 1
    reported = {json.loads(e)["frame"] for e in out.getvalue().splitlines() if json.loads(e)["event"] == "frame"}
    store = FrameStore(folder)
    manifest = store.load_manifest()
    hashes = dict(zip((f.frame for f in job.frames), job.frame_hashes(), strict=True))
    kept = set() if fresh else {1, 2}
    lost = [f for f in kept | reported if not store.is_done(manifest.get(f), hashes[f])]
    CASES["frames lost"] += len(lost)
    assert not lost, (lost, failing.injected, out.getvalue())


def test_a_disk_that_turns_read_only_mid_render_ends_with_one_line_and_exit_1(tmp_path):
    """Through the command line: the write of frame 2 fails, and so does the cleanup's own unlink (EROFS)."""
    CASES["faults injected"] += 2
    job = write_job(tmp_path, job_document(3, **TINY, batch_size=1))
    process = _engine("render", str(job), fault=("readonly-from", "2"))
    _out, err = process.communicate(timeout=300)
    lines = err.strip().splitlines()
    assert process.returncode == 1 and len(lines) == 1, (process.returncode, err)
    assert "frame 2: could not write" in lines[0] and "make it writable" in lines[0], lines
    store, document = FrameStore(tmp_path), parse_job(json.loads(job.read_text()), tmp_path)
    first = document.frames[0]
    assert store.is_done(store.load_manifest().get(first.frame), document.frame_hashes()[0])  # frame 1 kept


def test_hostile_values_of_the_environment_variables_the_engine_sets_are_replaced(monkeypatch):
    from engine.cli import LIBRARY_ENVIRONMENT, _quiet_libraries

    for variable, _, _ in LIBRARY_ENVIRONMENT:
        monkeypatch.setenv(variable, "x\ny \udcff" if variable.startswith("T") else "")
    _quiet_libraries()
    assert all(os.environ[v] in accepted for v, _, accepted in LIBRARY_ENVIRONMENT)
    monkeypatch.setenv("DIFFUSERS_VERBOSITY", "info")  # a valid choice of the user's is kept
    _quiet_libraries()
    assert os.environ["DIFFUSERS_VERBOSITY"] == "info"


# --- the model's device ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("device", "needle"),
    [("mps", "MPS (Apple silicon) was asked for but is not available"), ("cuda:7", "CUDA")],
)
def test_a_device_this_machine_lacks_is_one_line_before_any_work(tmp_path, capsys, monkeypatch, device, needle):
    import torch

    from engine.cli import main

    if torch.cuda.is_available() and device.startswith("cuda") and torch.cuda.device_count() > 7:
        pytest.skip("this machine has that device")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    job = write_job(tmp_path / "out", job_document(1, **TINY, model={"source": "tiny-random", "device": device}))
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        assert main(["render", str(job)]) == 1
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model.device" in err[0] and needle in err[0], err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["job.json"]  # no work started


def test_a_device_name_that_is_no_device_is_refused_at_validation(tmp_path):
    with pytest.raises(JobError, match=r"^model.device: must be auto, cpu, cuda, cuda:N or mps"):
        parse_job(job_document(1, model={"source": "tiny-random", "device": "gpu0"}), tmp_path)


# --- work folders never collide ---------------------------------------------------------------------------------


def test_two_sweeps_in_one_folder_keep_their_rows_apart_and_a_failed_one_leaves_nothing(tmp_path, tiny_model):
    def sweep_file(name: str, values: list[float]) -> Path:
        doc = job_document(1, [ROT], **TINY)
        doc["sweep"] = {"bend": "rot", "values": values, "layers": [0, 1]}
        return write_job(tmp_path, doc, name=name)

    def rendered_tiles(path: Path) -> int:
        out = io.StringIO()
        job, spec = load_sweep(path)
        run_sweep(job, spec, path.with_suffix(".png"), EventStream(out), model=tiny_model)
        return sum(json.loads(e)["event"] == "frame" for e in out.getvalue().splitlines())

    a, b = sweep_file("a.json", [0.5, 1.0]), sweep_file("b.json", [2.0, 3.0])
    assert rendered_tiles(a) == 4 and rendered_tiles(b) == 4
    assert rendered_tiles(a) == 0  # b did not overwrite a's tiles, so nothing re-renders
    assert sorted(p.name for p in tmp_path.glob("row_*")) == ["row_00-a", "row_00-b", "row_01-a", "row_01-b"]

    doc = json.loads(a.read_text())
    doc["model"] = {"source": "no-such/model"}
    failed = write_job(tmp_path, doc, name="c.json")
    job, spec = load_sweep(failed)
    with pytest.raises(ModelError):
        run_sweep(job, spec, tmp_path / "c.png", EventStream(None))
    assert not list(tmp_path.glob("row_*-c")), list(tmp_path.iterdir())


# --- signals end the engine in every state, blocking calls included ------------------------------------------------


def _engine(*args: str, fault: tuple[str, ...] = ()) -> subprocess.Popen:
    command = (
        [sys.executable, str(ROOT / "tests" / "fault_injection.py"), *fault, "--"]
        if fault
        else [sys.executable, "-m", "engine"]
    )
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen(
        [*command, *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def _wait_for_event(process: subprocess.Popen, event: str) -> list[dict]:
    seen = []
    for line in process.stdout:
        seen.append(json.loads(line))
        if seen[-1]["event"] == event:
            return seen
    raise AssertionError(f"no {event} event: {seen} {process.stderr.read()}")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_ends_the_engine_while_a_call_blocks(tmp_path, signum):
    """The U-Net call opens a FIFO and reads it (a stand-in for any call that waits): the signal ends it at once."""
    CASES["signals while blocked"] += 1
    job = write_job(tmp_path, job_document(3, **TINY, batch_size=1))
    fifo = tmp_path / "wait.fifo"
    os.mkfifo(fifo)
    process = _engine("render", str(job), fault=("fifo-unet", "0", str(fifo)))
    writer = None
    try:
        _wait_for_event(process, "loaded")
        while writer is None and process.poll() is None:  # a writer can open only once the engine is reading
            try:
                writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as exc:
                assert exc.errno == errno.ENXIO
                time.sleep(0.01)
        process.send_signal(signum)  # the engine now waits in read() for data that never comes
        code = process.wait(timeout=60)  # without the protection: until killed
    finally:
        process.kill()
        if writer is not None:
            os.close(writer)
    rest = [json.loads(line) for line in process.stdout.read().splitlines()]
    assert code == 130 and rest[-1]["event"] == "cancelled", (code, rest, process.stderr.read())


def test_a_fifo_as_the_job_file_is_an_error_not_a_hang(tmp_path):
    CASES["signals while blocked"] += 1
    os.mkfifo(tmp_path / "job.json")
    process = _engine("render", str(tmp_path / "job.json"))
    try:
        code = process.wait(timeout=60)  # without the protection it blocks in open() until killed
    finally:
        process.kill()
    err = process.stderr.read().strip().splitlines()
    assert code == 1 and len(err) == 1 and "is a FIFO" in err[0], (code, err)


# --- a little bit of everything through one PNG: a header that claims a huge image ----------------------------------


def _png_header(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (_png_header(9000, 9000), "is 9000×9000 pixels; the limit is 67,108,864"),
        (_png_header(100_000, 100_000), "pixels; the limit is"),
        (b"GIF89a not really", "is not an image PIL can read"),
        (b"", "is not an image PIL can read"),
    ],
)
def test_an_init_image_is_checked_from_its_header_at_validation(tmp_path, content, needle):
    (tmp_path / "init.png").write_bytes(content)
    doc = job_document(1, **TINY, mode="img2img", img2img={"init_image": "init.png"})
    with pytest.raises(JobError, match=r"^img2img.init_image: ") as caught:
        parse_job(doc, tmp_path)
    assert needle in str(caught.value), str(caught.value)


def test_limits_are_documented():
    """Every named limit appears in docs/reliability.md with its value, so the documentation cannot drift."""
    text = (ROOT / "docs" / "reliability.md").read_text(encoding="utf-8")
    names = [n for n in vars(limits) if n.startswith("MAX_")]
    assert names and [n for n in names if f"`{n}`" not in text] == []
