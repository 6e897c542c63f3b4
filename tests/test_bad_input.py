"""Bad input of every kind: command lines, bend parameters, non-finite latents, prompts, where a job may write, and
payloads that must stay data. Each answer is one line that names what to change, never a traceback."""

from __future__ import annotations

import copy
import io
import json
import math
import signal

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from job_documents import job_document, write_job
from PIL import Image

from engine.bends import Bend, ParamBatch
from engine.cli import main
from engine.errors import BendError, EngineError, JobError
from engine.events import EventStream
from engine.job import load_job, parse_job
from engine.runner import Runner
from engine.stack import BendStack, HookState, PlacedBend, Placement

ROT = {"name": "rot", "op": "rotate_r1", "latent_layer": 0}
SMALL = {"width": 16, "height": 16, "steps": 2}


def _render(folder, doc, model):
    stream = io.StringIO()
    summary = Runner(parse_job(doc, folder), EventStream(stream), model=model).run()
    return summary, [json.loads(line) for line in stream.getvalue().splitlines()]


# --- the command line, fuzzed in-process -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Paths a fuzzed command line may name: missing, a folder, a broken or unloadable job, WAV and non-WAV files."""
    from scipy.io import wavfile

    root = tmp_path_factory.mktemp("argv")
    wavfile.write(root / "a.wav", 8000, (np.sin(np.arange(1600) / 3) * 2000).astype(np.int16))
    (root / "broken.json").write_text("{ not json")
    (root / "empty.wav").write_bytes(b"")
    (root / "noise.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt " + bytes(range(40)))
    (root / "folder").mkdir()
    job = write_job(root / "job", job_document(3, [ROT], model={"source": "no/such-model"}))
    return {
        "missing": str(root / "missing.json"),
        "folder": str(root / "folder"),
        "job": str(job),
        "broken": str(root / "broken.json"),
        "wav": str(root / "a.wav"),
        "empty": str(root / "empty.wav"),
        "noise": str(root / "noise.wav"),
        "nul": "a\x00b.json",
        "newline": str(root / "line\nbreak.wav"),
    }


NUMBERS = ["nan", "inf", "-inf", "-1", "0", "0.0", "1e308", "1e-308", "20", "1e9", "24.5", "-0", "1e300", "3"]
RANGES = ["5-3", "a-b", "-1", "1-2-3", "2-3", "1", "9-12", "-", "", " 2-3", "1e3", "0-99999999999999999999"]
FLAGS = [
    "--frames",
    "--fps",
    "--format",
    "--window-ms",
    "--center",
    "--spectrum-window",
    "--normalize",
    "--attack",
    "--release",
    "--help",
    "-h",
    "--",
    "-",
    "--fps=nan",
    "--frames=5-3",
    "--bogus",
]
WORDS = ["render", "features", "json", "csv", "hann", "rect", "minmax", "percentile", "none", "paint"]


def _token(paths: dict[str, str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(WORDS + FLAGS),
        st.sampled_from(NUMBERS + RANGES),
        st.sampled_from(sorted(paths.values())),
        st.text(max_size=8),
        st.floats().map(repr),
        st.integers(-(10**30), 10**30).map(str),
    )


@pytest.fixture
def cli(capsys):
    """Call main() in-process, restoring the signal handlers that a render installs."""
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

    def call(argv: list[str]) -> tuple[int, str]:
        capsys.readouterr()
        code = main(argv)
        return code, capsys.readouterr().err

    yield call
    for signum, handler in handlers.items():
        signal.signal(signum, handler)


def _check_answer(argv: list[str], code: int, err: str) -> None:
    assert code in (0, 1, 2), (argv, code, err)
    assert "Traceback" not in err, (argv, err)
    if code:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "error" in lines[0], (argv, err)


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))


@FUZZ
@given(data=st.data())
def test_fuzzed_command_lines_exit_with_a_code_and_one_line(cli, files, data):
    argv = data.draw(st.lists(_token(files), max_size=7), label="argv")
    code, err = cli(argv)
    _check_answer(argv, code, err)


@FUZZ
@given(data=st.data())
def test_fuzzed_render_and_features_arguments(cli, files, data):
    """Well-formed command lines with odd values, so the checks past argparse get exercised too."""
    if data.draw(st.booleans(), label="render"):
        argv = ["render", data.draw(st.sampled_from(sorted(files.values())))]
        if data.draw(st.booleans()):
            argv += ["--frames", data.draw(st.sampled_from(RANGES) | st.text(max_size=6))]
    else:
        number = st.sampled_from(NUMBERS) | st.floats().map(repr)
        audio = st.just(files["wav"]) | st.sampled_from(sorted(files.values()))  # mostly one that decodes
        fps = st.sampled_from(["20", "24", "29.97"]) | number  # often valid, so the other values get checked
        argv = ["features", data.draw(audio), "--fps", data.draw(fps)]
        for flag in data.draw(st.lists(st.sampled_from(["--window-ms", "--attack", "--release"]), max_size=3)):
            argv += [flag, data.draw(number)]
        argv += data.draw(
            st.lists(
                st.sampled_from(
                    [
                        "--center",
                        "--format=csv",
                        "--normalize=minmax",
                        "--normalize=percentile",
                        "--spectrum-window=rect",
                    ]
                ),
                max_size=3,
            )
        )
    code, err = cli(argv)
    _check_answer(argv, code, err)


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["features", "{wav}", "--fps", "nan"], "fps"),
        (["features", "{wav}", "--fps", "-5"], "fps"),
        (["features", "{wav}", "--fps", "1e9", "--window-ms", "50"], "fps"),
        (["features", "{wav}", "--fps", "1e-308"], "fps"),
        (["features", "{wav}", "--fps", "20", "--window-ms", "1e300"], "window"),
        (["features", "{folder}", "--fps", "20"], "folder"),
        (["features", "{job}", "--fps", "20"], "WAV"),
        (["features", "{newline}", "--fps", "20"], "line\\nbreak"),
        (["render", "{folder}"], "job file"),
        (["render", "{nul}"], "job file"),
        (["render", "{job}", "--frames", "5-3"], "--frames"),
        (["render", "{job}", "--frames", "a-b"], "--frames"),
        (["render", "{job}", "--frames", "-1"], "--frames"),
        (["render", "{broken}"], "not valid JSON"),
    ],
)
def test_odd_arguments_get_one_line_naming_the_problem(cli, files, argv, needle):
    argv = [a.format(**files) for a in argv]
    code, err = cli(argv)
    _check_answer(argv, code, err)
    assert code in (1, 2) and needle in err, err


# --- bend parameters: every error names the bend and the frame number ----------------------------------------------


def _numbered(doc: dict, numbers: list[int]) -> dict:
    """Frame numbers that differ from list indexes, so a message that names an index instead is caught."""
    for frame, number in zip(doc["frames"], numbers, strict=True):
        frame["frame"] = number
    return doc


@pytest.mark.parametrize(
    ("bend", "value", "needle"),
    [
        (ROT, math.nan, "finite"),
        (ROT, math.inf, "finite"),
        (ROT, -math.inf, "finite"),
        (ROT, 1e39, "too large"),
        ({"name": "inv", "op": "invert", "latent_layer": 0}, 0.0, "divides by zero"),
        ({"name": "melt", "op": "erode", "latent_layer": 2}, 0.2, "kernel size"),
        ({"name": "zoom", "op": "spatial_scale", "unet": {"target": "mid_block"}}, -1.0, "zoom"),
        ({"name": "gain", "op": "multiply", "latent_layer": 0}, "loud", "expected a number"),
    ],
)
def test_bad_bend_parameters_name_the_bend_and_the_frame_number(tmp_path, bend, value, needle):
    doc = _numbered(job_document(3, [bend]), [10, 20, 30])
    for frame in doc["frames"]:
        frame["bends"][bend["name"]] = 1.0
    doc["frames"][1]["bends"][bend["name"]] = value
    with pytest.raises(JobError) as caught:
        parse_job(json.loads(json.dumps(doc)), tmp_path)  # through JSON, which reads NaN and Infinity
    message = str(caught.value)
    assert repr(bend["name"]) in message and "frame 20" in message and needle in message, message


@pytest.mark.parametrize(
    "bend",
    [
        {"name": "flip", "op": "reflect", "latent_layer": 0, "options": {"channel": 7}},
        {"name": "chan", "op": "add", "latent_layer": 1, "selection": {"kind": "channel", "index": 7}},
        {"name": "row", "op": "add", "latent_layer": 0, "selection": {"kind": "row", "index": 8}},
        {
            "name": "col",
            "op": "multiply",
            "unet": {"target": "mid_block"},
            "selection": {"kind": "column", "index": 99},
        },
        {"name": "plane", "op": "rotate_plane", "latent_layer": 2, "options": {"plane": [0, 4]}},
    ],
)
def test_out_of_range_indexes_name_the_bend_and_the_frame_number(tmp_path, tiny_model, bend):
    """Only the model knows the tensor's channels and rows (16 px: an 8×8 latent), so these fail at render time."""
    doc = _numbered(job_document(2, [bend], **SMALL), [10, 20])
    with pytest.raises(BendError) as caught:
        _render(tmp_path, doc, tiny_model)
    message = str(caught.value)
    assert repr(bend["name"]) in message and "frame 10" in message and "out of range" in message, message
    assert not list(tmp_path.glob("frame_*.png"))


# --- non-finite values after a bend ------------------------------------------------------------------------------

# 3e38 is a valid float32 parameter, but adding it twice overflows every element to +inf
OVERFLOW = [{"name": "big", "op": "add", "latent_layer": 1}, {"name": "bigger", "op": "add", "latent_layer": 1}]
OVERFLOW_UNET = [
    {"name": "big", "op": "add", "unet": {"target": "mid_block", "steps": [1, 2]}},
    {"name": "bigger", "op": "add", "unet": {"target": "mid_block", "steps": [1, 2]}},
]


def _overflowing(bends: list[dict], **overrides) -> dict:
    doc = _numbered(job_document(2, copy.deepcopy(bends), **SMALL, **overrides), [10, 20])
    for frame in doc["frames"]:
        frame["bends"] = {"big": 3e38, "bigger": 3e38}
    return doc


@pytest.mark.parametrize(("bends", "where"), [(OVERFLOW, "the latent"), (OVERFLOW_UNET, "the output of mid_block")])
def test_a_bend_that_overflows_is_an_error_naming_it_and_the_frame(tmp_path, tiny_model, bends, where):
    with pytest.raises(BendError) as caught:
        _render(tmp_path, _overflowing(bends), tiny_model)
    message = str(caught.value)
    assert message.startswith("frame 10: bend 'bigger' (add) made " + where + " non-finite"), message
    assert '"nonfinite": "clamp"' in message


def test_clamp_renders_through_an_overflow(tmp_path, tiny_model):
    summary, _ = _render(tmp_path, _overflowing(OVERFLOW, nonfinite="clamp"), tiny_model)
    assert summary.rendered == [10, 20]


def test_clamp_replaces_nan_and_inf_per_sample():
    stack = BendStack([PlacedBend(Bend("gain", "multiply"), Placement(latent_layer=0))], nonfinite="clamp")
    x = torch.tensor([[1.0, -2.0, 3e38, -3e38], [0.5, -0.25, 0.0, 0.0]]).view(2, 1, 2, 2)
    out = stack.apply_latent(0, 1, x, {"gain": ParamBatch((10.0, 1.0))})  # sample 0: [10, -20, inf, -inf]
    assert out[0].flatten().tolist() == [10.0, -20.0, 10.0, -20.0]  # ±inf → that sample's finite max / min
    assert torch.equal(out[1], x[1])  # a finite sample is left alone, whatever shares its batch
    nan = torch.tensor([[math.nan, 2.0, math.inf, -1.0]]).view(1, 1, 2, 2)
    unchanged = BendStack([PlacedBend(Bend("same", "multiply"), Placement(latent_layer=0))], nonfinite="clamp")
    assert unchanged.apply_latent(0, 1, nan, {"same": ParamBatch((1.0,))}).flatten().tolist() == [0.0, 2.0, 2.0, -1.0]
    everything = torch.full((1, 1, 2, 2), math.inf)
    assert unchanged.apply_latent(0, 1, everything, {"same": ParamBatch((1.0,))}).abs().sum() == 0  # none finite: 0


def test_clamp_applies_to_unet_hooks_too():
    placed = PlacedBend(Bend("gain", "multiply"), Placement(unet_target="conv"))
    net = torch.nn.Sequential()
    net.add_module("conv", torch.nn.Identity())
    state = HookState(step=0, params={"gain": ParamBatch((3e38,))})
    x = torch.tensor([[1.0, 2.0, -3.0, 0.0]]).view(1, 1, 2, 2)
    with BendStack([placed], nonfinite="clamp").unet_hooks(net, state):
        out = net(x)
    assert torch.isfinite(out).all() and out.flatten()[0] == 3e38 and out.flatten()[1] == out.flatten()[0]
    with BendStack([placed]).unet_hooks(net, state), pytest.raises(BendError, match=r"'gain'.*output of conv"):
        net(x)


def test_nonfinite_is_a_checked_job_option_in_the_hash_only_when_it_can_change_pixels(tmp_path):
    doc = job_document(2, [ROT])
    default = parse_job(doc, tmp_path)
    assert default.nonfinite == "error"
    assert parse_job(dict(doc, nonfinite="error"), tmp_path).frame_hashes() == default.frame_hashes()
    clamp = parse_job(dict(doc, nonfinite="clamp"), tmp_path)
    assert clamp.nonfinite == "clamp" and clamp.frame_hashes() != default.frame_hashes()
    with pytest.raises(JobError, match=r"^nonfinite: must be one of error, clamp"):
        parse_job(dict(doc, nonfinite="ignore"), tmp_path)


# --- prompts -----------------------------------------------------------------------------------------------------


def _one_frame(prompts: list[str], **overrides) -> dict:
    doc = job_document(1, **SMALL, prompts=prompts, **overrides)
    doc["frames"] = [{"frame": 1, "prompt_weights": [1.0] * len(prompts)}]
    return doc


def test_a_long_prompt_warns_and_renders_as_its_first_77_tokens(tmp_path, tiny_model):
    words = [chr(ord("a") + i % 26) for i in range(100)]  # one token each in the byte-level tokenizer
    _, long_events = _render(tmp_path / "long", _one_frame([" ".join(words)]), tiny_model)
    _, short_events = _render(tmp_path / "short", _one_frame([" ".join(words[:75])]), tiny_model)  # + start, end
    warnings = [e["message"] for e in long_events if e["event"] == "warning"]
    assert len(warnings) == 1 and "102 tokens" in warnings[0] and "first 77" in warnings[0], warnings
    assert not [e for e in short_events if e["event"] == "warning"]
    frame = "frame_00001.png"
    assert (tmp_path / "long" / frame).read_bytes() == (tmp_path / "short" / frame).read_bytes()


def test_empty_and_non_latin_prompts_render(tmp_path, tiny_model):
    prompts = ["", "你好，世界，一只猫", "مرحبا بالعالم", "🎸🔥✨ 👩🏽‍🎤", "e\u0301 n\u0303 a\u0308\u0332 \u200d"]
    doc = job_document(2, **SMALL, prompts=prompts, negative_prompt="ничего")
    doc["frames"] = [{"frame": 1, "prompt_weights": [1, 1, 0, 0, 0]}, {"frame": 2, "prompt_weights": [0, 0, 1, 1, 1]}]
    summary, events = _render(tmp_path, doc, tiny_model)
    assert summary.rendered == [1, 2] and not [e for e in events if e["event"] == "warning"]
    pixels = [np.asarray(Image.open(tmp_path / f"frame_0000{i}.png")) for i in (1, 2)]
    assert pixels[0].tobytes() != pixels[1].tobytes()


# --- where a job may write ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "folder", ["../x", "..", "/abs", "/", "a/../../x", "frames/../../..", "C:\\frames", "C:frames", "\\\\server\\share"]
)
def test_a_job_cannot_write_outside_its_folder(tmp_path, folder):
    with pytest.raises(JobError, match=r"^output\.folder: ") as caught:
        parse_job(job_document(1, output={"folder": folder}), tmp_path / "job")
    assert "\n" not in str(caught.value)


def test_a_symlink_cannot_lead_a_job_out_of_its_folder(tmp_path):
    (tmp_path / "job").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "job" / "out").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    for folder in ("out", "out/frames"):
        with pytest.raises(JobError, match=r"^output\.folder: .*leads outside"):
            parse_job(job_document(1, output={"folder": folder}), tmp_path / "job")
    (tmp_path / "job" / "inside").symlink_to(tmp_path / "job" / "real", target_is_directory=True)
    assert (
        parse_job(job_document(1, output={"folder": "inside"}), tmp_path / "job").output_folder
        == (tmp_path / "job" / "real").resolve()
    )


@pytest.mark.parametrize(
    ("folder", "expected"),
    [(".", ""), ("", ""), ("frames", "frames"), ("a/../b", "b"), ("frames/./take 2", "frames/take 2")],
)
def test_a_job_may_write_into_its_folder_or_beneath_it(tmp_path, folder, expected):
    path = write_job(tmp_path / "job", job_document(1, output={"folder": folder}))
    assert load_job(path).output_folder == (tmp_path / "job" / expected).resolve()


PAYLOADS = [
    "__import__('os').system('touch PWNED')",
    "{0.__class__.__mro__[1].__subclasses__()}",
    "%(x)s %s %n",
    "$(touch PWNED) `touch PWNED` ${HOME}",
    "'; import os; os.system('touch PWNED') #",
    "{{7*7}} <script>alert(1)</script>",
]


def test_nothing_in_a_job_is_evaluated(tmp_path, tiny_model, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bends = [{"name": payload, "op": "add", "latent_layer": i} for i, payload in enumerate(PAYLOADS)]
    doc = job_document(
        2,
        bends,
        **SMALL,
        prompts=PAYLOADS[:2],
        negative_prompt=PAYLOADS[2],
        img2img={"prompt": PAYLOADS[3]},
        output={"folder": PAYLOADS[1]},
    )
    summary, _ = _render(tmp_path, doc, tiny_model)
    assert summary.rendered == [1, 2]
    out = tmp_path / PAYLOADS[1]  # the folder name is taken literally
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert sorted(records[0]["params"]["bends"]) == sorted(PAYLOADS)  # names kept as data
    bad = dict(bends[0], options={PAYLOADS[1]: PAYLOADS[0]})
    with pytest.raises(JobError, match="unknown option") as caught:
        parse_job(job_document(1, [bad]), tmp_path)
    assert PAYLOADS[1] in str(caught.value)
    with pytest.raises(EngineError):
        Runner(parse_job(job_document(1, model={"source": PAYLOADS[0]}), tmp_path), EventStream(None)).run()
    assert not list(tmp_path.rglob("PWNED")) and not any(p.name == "PWNED" for p in tmp_path.parent.iterdir())
