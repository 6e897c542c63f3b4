"""LoRAs with per-frame weights: both key layouts against diffusers' own loading, batching, hostile files, jobs, CLI.

The LoRAs are random, made here for ``tiny-random`` in the kohya/A1111 layout (``lora_unet_...lora_down.weight``
with ``.alpha``) and the diffusers/PEFT layout (``unet....lora_A.weight`` with alphas in the file's metadata).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from job_documents import job_document, write_job
from PIL import Image
from safetensors.torch import save_file

from engine.bends import ParamBatch
from engine.errors import JobError
from engine.job import parse_job
from engine.lora import LoraError, LoraSet, LoraSpec, load_lora
from engine.tiny_random import build_tiny_components

ROOT = Path(__file__).resolve().parents[1]
RANK = 4
WEIGHT = 0.7


def _adaptable(component: torch.nn.Module, prefixes: tuple[str, ...]) -> list[tuple[str, torch.nn.Module]]:
    return [
        (name, module)
        for name, module in component.named_modules()
        if isinstance(module, torch.nn.Linear | torch.nn.Conv2d) and name.startswith(prefixes)
    ]


# Every Linear and Conv2d of the blocks (attention, feed-forward, resnets' 3×3 and 1×1 convolutions, samplers), the
# time embedding and conv_in: what kohya's LoRA and LoCon networks adapt
UNET_PREFIXES = ("conv_in", "time_embedding", "down_blocks", "mid_block", "up_blocks")
TEXT_PREFIXES = ("text_model.encoder", "encoder")


def lora_tensors(
    components: dict, layout: str, *, seed: int = 0, text_encoder: bool = True, alpha: float = 2.0
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """A random LoRA for ``components`` in ``layout`` ("kohya" or "peft"): its tensors and safetensors metadata."""
    generator = torch.Generator().manual_seed(seed)
    parts = [("unet", components["unet"], UNET_PREFIXES)]
    if text_encoder:
        parts += [(c, components[c], TEXT_PREFIXES) for c in ("text_encoder", "text_encoder_2") if components.get(c)]
    two_encoders = len(parts) == 3  # SDXL: kohya names its encoders te1 and te2
    tensors: dict[str, torch.Tensor] = {}
    targets: dict[str, list[str]] = {}
    for component, model, prefixes in parts:
        for name, module in _adaptable(model, prefixes):
            if component != "unet" and not hasattr(model, "text_model"):
                name = "text_model." + name  # as LoRA files name CLIP's layers (transformers 5 dropped that level)
            if isinstance(module, torch.nn.Linear):
                down = torch.randn(RANK, module.in_features, generator=generator) / module.in_features**0.5
                up = torch.randn(module.out_features, RANK, generator=generator) * 0.3
            else:
                fan_in = module.in_channels * module.kernel_size[0] * module.kernel_size[1]
                down = torch.randn(RANK, module.in_channels, *module.kernel_size, generator=generator) / fan_in**0.5
                up = torch.randn(module.out_channels, RANK, 1, 1, generator=generator) * 0.3
            if layout in ("kohya", "kohya-ldm"):
                prefix = {"unet": "lora_unet_", "text_encoder": "lora_te1_" if two_encoders else "lora_te_"}.get(
                    component, "lora_te2_"
                )
                spelled = ldm_name(model, name) if layout == "kohya-ldm" and component == "unet" else name
                key = prefix + spelled.replace(".", "_")
                tensors |= {f"{key}.lora_down.weight": down, f"{key}.lora_up.weight": up}
                tensors[f"{key}.alpha"] = torch.tensor(alpha)
            else:
                tensors |= {f"{component}.{name}.lora_A.weight": down, f"{component}.{name}.lora_B.weight": up}
                targets.setdefault(component, []).append(name.removeprefix("text_model."))
    metadata = {"format": "pt"}
    if layout == "peft":
        packed = {}
        for component, names in targets.items():
            config = {"r": RANK, "lora_alpha": alpha, "target_modules": sorted(names), "init_lora_weights": False}
            if component == "unet":  # a layer-specific alpha, by PEFT's pattern rule
                config["alpha_pattern"] = {"attn2.to_k": 3 * alpha}
            packed |= {f"{component}.{k}": v for k, v in config.items()}
        metadata["lora_adapter_metadata"] = json.dumps(packed)
    return tensors, metadata


def ldm_name(unet: torch.nn.Module, name: str) -> str:
    """A U-Net layer's name in the original (LDM) block numbering, as kohya names SDXL LoRAs."""
    rows = unet.config.layers_per_block + 1
    fixed = {"conv_in": "input_blocks.0.0", "conv_out": "out.2"}
    fixed |= {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2"}
    if name in fixed:
        return fixed[name]
    inner = {"conv1": "in_layers.2", "time_emb_proj": "emb_layers.1", "conv2": "out_layers.3"}
    inner["conv_shortcut"] = "skip_connection"
    parts = name.split(".")
    if parts[0] == "mid_block":
        row = {"resnets.0": 0, "attentions.0": 1, "resnets.1": 2}[".".join(parts[1:3])]
        rest = parts[3:]
        head = f"middle_block.{row}"
    else:
        block, kind, index, rest = int(parts[1]), parts[2], int(parts[3]), parts[4:]
        has_attention = hasattr(unet.up_blocks[block], "attentions") if parts[0] == "up_blocks" else False
        if parts[0] == "down_blocks":
            if kind == "downsamplers":
                head, rest = f"input_blocks.{1 + block * rows + rows - 1}.0", ["op"]
            else:
                head = f"input_blocks.{1 + block * rows + index}.{0 if kind == 'resnets' else 1}"
        elif kind == "upsamplers":
            head = f"output_blocks.{block * rows + rows - 1}.{2 if has_attention else 1}"
        else:
            head = f"output_blocks.{block * rows + index}.{0 if kind == 'resnets' else 1}"
    if "resnets" in name or name.startswith("mid_block.resnets"):
        rest = [inner.get(".".join(rest), ".".join(rest))]
    return ".".join([head, *rest])


def write_lora(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> Path:
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata=metadata)
    return path


@pytest.fixture(scope="module")
def components():
    parts = build_tiny_components()
    for key in ("unet", "text_encoder"):
        parts[key].eval().requires_grad_(False)
    return parts


def _unet_inputs(batch: int = 2):
    generator = torch.Generator().manual_seed(5)
    x = torch.randn(batch, 4, 8, 8, generator=generator)
    states = torch.randn(batch, 77, 32, generator=generator)
    return x, torch.tensor(500), states


def _token_ids(tokenizer, prompts):
    return tokenizer(prompts, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids


def _engine_outputs(components, lora_set: LoraSet, weights: tuple[float, ...], prompts: list[str]):
    x, t, states = _unet_inputs(len(weights))
    ids = _token_ids(components["tokenizer"], prompts)
    with torch.inference_mode():
        with lora_set.hooks("unet", components["unet"], {"s": ParamBatch(weights)}):
            unet = components["unet"](x, t, encoder_hidden_states=states).sample
        text = []
        for weight, row in zip(weights, ids, strict=True):  # text encoders run under one weight at a time
            with lora_set.text_encoders({"text_encoder": components["text_encoder"]}, {"s": weight}):
                text.append(components["text_encoder"](row[None])[0])
    return unet, torch.cat(text)


def _base_outputs(components, prompts: list[str], batch: int):
    x, t, states = _unet_inputs(batch)
    with torch.inference_mode():
        unet = components["unet"](x, t, encoder_hidden_states=states).sample
        text = components["text_encoder"](_token_ids(components["tokenizer"], prompts))[0]
    return unet, text


def _fitted(components, path: Path) -> LoraSet:
    parts = {"unet": components["unet"], "text_encoder": components["text_encoder"]}
    return LoraSet([load_lora(LoraSpec("s", path), parts)])


@pytest.mark.parametrize("layout", ["kohya", "kohya-ldm", "peft"])
def test_weight_zero_is_exactly_the_model_without_the_lora(tmp_path, components, layout):
    path = write_lora(tmp_path / "s.safetensors", *lora_tensors(components, layout))
    lora_set = _fitted(components, path)
    prompts = ["a floating orb", "a gorgeous landscape"]
    base_unet, base_text = _base_outputs(components, prompts, 2)
    unet, text = _engine_outputs(components, lora_set, (0.0, 0.0), prompts)
    assert torch.equal(unet, base_unet) and torch.equal(text, base_text)
    # and in a batch with a frame at another weight, the frame at 0 is still exact
    unet, text = _engine_outputs(components, lora_set, (0.0, WEIGHT), prompts)
    assert torch.equal(unet[0], base_unet[0]) and torch.equal(text[0], base_text[0])
    assert not torch.allclose(unet[1], base_unet[1], atol=1e-3) and not torch.allclose(text[1], base_text[1], atol=1e-3)


@pytest.mark.parametrize("layout", ["kohya", "kohya-ldm", "peft"])
def test_weight_w_matches_diffusers_load_lora_weights_and_set_adapters(tmp_path, components, layout):
    from diffusers import StableDiffusionPipeline

    path = write_lora(tmp_path / "s.safetensors", *lora_tensors(components, layout, alpha=2.0))
    prompts = ["a floating orb", "a gorgeous landscape"]
    unet, text = _engine_outputs(components, _fitted(components, path), (WEIGHT, WEIGHT), prompts)

    pipe = StableDiffusionPipeline(
        **build_tiny_components(), safety_checker=None, feature_extractor=None, requires_safety_checker=False
    )
    # The LDM block numbering is remapped from the U-Net's config, as diffusers' SDXL pipeline always does
    remap = {"unet_config": pipe.unet.config} if layout == "kohya-ldm" else {}
    pipe.load_lora_weights(str(path), adapter_name="s", **remap)
    pipe.set_adapters(["s"], [WEIGHT])
    x, t, states = _unet_inputs(2)
    with torch.inference_mode():
        expected_unet = pipe.unet(x, t, encoder_hidden_states=states).sample
        expected_text = pipe.text_encoder(_token_ids(pipe.tokenizer, prompts))[0]
    base_unet, base_text = _base_outputs(components, prompts, 2)
    assert not torch.allclose(expected_unet, base_unet, atol=1e-2)  # diffusers did apply the LoRA
    assert not torch.allclose(expected_text, base_text, atol=1e-2)
    torch.testing.assert_close(unet, expected_unet, atol=2e-5, rtol=2e-5)
    torch.testing.assert_close(text, expected_text, atol=2e-5, rtol=2e-5)


def test_an_sdxl_kohya_lora_matches_diffusers_on_the_unet_and_both_text_encoders(tmp_path):
    """kohya's SDXL layout: LDM block numbering for the U-Net, te1 / te2 for the two encoders."""
    from diffusers import StableDiffusionXLPipeline

    from engine.tiny_random import build_tiny_family

    components = build_tiny_family("sdxl")
    parts = {c: components[c].eval().requires_grad_(False) for c in ("unet", "text_encoder", "text_encoder_2")}
    tensors, metadata = lora_tensors(components, "kohya-ldm", alpha=3.0)
    assert any(k.startswith("lora_te2_") for k in tensors) and any("input_blocks" in k for k in tensors)
    path = write_lora(tmp_path / "xl.safetensors", tensors, metadata)
    lora_set = LoraSet([load_lora(LoraSpec("s", path), parts)])

    generator = torch.Generator().manual_seed(5)
    x = torch.randn(2, 4, 16, 16, generator=generator)
    states = torch.randn(2, 77, 96, generator=generator)
    added = {"text_embeds": torch.randn(2, 32, generator=generator), "time_ids": torch.rand(2, 6, generator=generator)}
    ids = _token_ids(components["tokenizer"], ["a floating orb"])

    def run(unet, encoders):
        with torch.inference_mode():
            out = unet(x, torch.tensor(500), encoder_hidden_states=states, added_cond_kwargs=added).sample
            return [out, *(encoder(ids)[0] for encoder in encoders)]

    encoders = {k: parts[k] for k in ("text_encoder", "text_encoder_2")}
    with (
        lora_set.hooks("unet", parts["unet"], {"s": ParamBatch((WEIGHT,))}),
        lora_set.text_encoders(encoders, {"s": WEIGHT}),
    ):
        ours = run(parts["unet"], (parts["text_encoder"], parts["text_encoder_2"]))
    base = run(parts["unet"], (parts["text_encoder"], parts["text_encoder_2"]))

    pipe = StableDiffusionXLPipeline(**build_tiny_family("sdxl"))
    pipe.load_lora_weights(str(path), adapter_name="s")
    pipe.set_adapters(["s"], [WEIGHT])
    expected = run(pipe.unet, (pipe.text_encoder, pipe.text_encoder_2))
    for mine, theirs, plain in zip(ours, expected, base, strict=True):
        assert not torch.allclose(theirs, plain, atol=1e-2)  # diffusers did apply it
        torch.testing.assert_close(mine, theirs, atol=2e-5, rtol=2e-5)


def test_a_lora_on_toy_shapes_matches_diffusers(tmp_path):
    """The project's trained model (three blocks of other widths): LDM-named kohya keys, U-Net and text encoder."""
    from diffusers import StableDiffusionPipeline

    from engine.models import TOY_SHAPES_FOLDER, load_model

    model = load_model("toy-shapes", device="cpu")
    parts = {"unet": model.unet, "text_encoder": model.text_encoder}
    path = write_lora(tmp_path / "toy.safetensors", *lora_tensors(parts, "kohya-ldm", alpha=2.0))
    lora_set = LoraSet([load_lora(LoraSpec("s", path), parts)])
    generator = torch.Generator().manual_seed(5)
    x = torch.randn(2, 4, 16, 16, generator=generator)
    states = torch.randn(2, 77, model.unet.config.cross_attention_dim, generator=generator)
    limit = model.tokenizer.model_max_length
    ids = model.tokenizer(
        ["a red circle on the left", "a blue square"], padding="max_length", max_length=limit, return_tensors="pt"
    ).input_ids

    def run(unet, encoder):
        with torch.inference_mode():
            return unet(x, torch.tensor(300), encoder_hidden_states=states).sample, encoder(ids)[0]

    with (
        lora_set.hooks("unet", model.unet, {"s": ParamBatch((WEIGHT, WEIGHT))}),
        lora_set.text_encoders({"text_encoder": model.text_encoder}, {"s": WEIGHT}),
    ):
        ours = run(model.unet, model.text_encoder)
    pipe = StableDiffusionPipeline.from_pretrained(TOY_SHAPES_FOLDER, safety_checker=None, feature_extractor=None)
    pipe.load_lora_weights(str(path), adapter_name="s", unet_config=pipe.unet.config)
    pipe.set_adapters(["s"], [WEIGHT])
    expected = run(pipe.unet, pipe.text_encoder)
    base = run(model.unet, model.text_encoder)
    for mine, theirs, plain in zip(ours, expected, base, strict=True):
        assert not torch.allclose(theirs, plain, atol=1e-2)
        torch.testing.assert_close(mine, theirs, atol=2e-5, rtol=2e-5)


# --- jobs: parsing, hashes, the runner's batches, the CLI ---------------------------------------------------------


def lora_job(folder: Path, lora: Path, weights: list[float], **overrides) -> dict:
    doc = job_document(len(weights), [], width=64, height=64, steps=3, **overrides)
    doc["loras"] = [{"name": "Style", "path": str(lora)}]
    for frame, weight in zip(doc["frames"], weights, strict=True):
        frame["loras"] = {"Style": weight}
    return doc


@pytest.fixture
def style(tmp_path, components) -> Path:
    return write_lora(tmp_path / "style.safetensors", *lora_tensors(components, "kohya", alpha=4.0))


def test_the_job_reads_loras_and_their_weights_per_frame(tmp_path, style):
    job = parse_job(lora_job(tmp_path, style, [0.0, 0.5, -1.25]), tmp_path)
    assert job.loras == (LoraSpec("Style", style),)
    assert [f.loras for f in job.frames] == [{"Style": 0.0}, {"Style": 0.5}, {"Style": -1.25}]
    relative = lora_job(tmp_path, style, [1.0])
    relative["loras"][0]["path"] = style.name  # relative to the job's folder
    assert parse_job(relative, tmp_path).loras[0].path == tmp_path / style.name


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["frames"][1]["loras"].clear(), r"frames\[1\]\.loras\.Style: LoRA 'Style' at frame 2: required"),
        (lambda d: d["frames"][0]["loras"].update(Other=1.0), r"frames\[0\]\.loras\.Other: unknown field"),
        (
            lambda d: d["frames"][0]["loras"].update(Style=10.5),
            r"frames\[0\]\.loras\.Style: must be between -10 and 10",
        ),
        (lambda d: d["frames"][0]["loras"].update(Style="high"), r"frames\[0\]\.loras\.Style: expected a number"),
        (lambda d: d["loras"].append(dict(d["loras"][0])), r"loras\[1\]\.name: two LoRAs are named 'Style'"),
        (lambda d: d["loras"][0].update(path="/nowhere/x.safetensors"), r"loras\[0\]\.path: .*does not exist"),
        (lambda d: d["loras"][0].update(weight=1), r"loras\[0\]\.weight: unknown field"),
        (lambda d: d["loras"][0].pop("name"), r"loras\[0\]\.name: required"),
    ],
)
def test_a_bad_lora_field_is_named(tmp_path, style, change, message):
    doc = lora_job(tmp_path, style, [0.2, 0.4])
    change(doc)
    with pytest.raises(JobError, match=message):
        parse_job(doc, tmp_path)


def test_pickled_loras_need_trust_and_folders_or_fifos_are_refused(tmp_path, style):
    pickled = tmp_path / "style.pt"
    torch.save({"k": torch.zeros(1)}, pickled)
    doc = lora_job(tmp_path, pickled, [1.0])
    with pytest.raises(JobError, match=r"loras\[0\]\.path: style\.pt is a pickle-based file.*model\.trust_pickle"):
        parse_job(doc, tmp_path)
    assert parse_job(dict(doc, model={"source": "tiny-random", "trust_pickle": True}), tmp_path).loras
    (tmp_path / "folder.safetensors").mkdir()
    os.mkfifo(tmp_path / "fifo.safetensors")
    for name in ("folder.safetensors", "fifo.safetensors"):
        with pytest.raises(JobError, match=r"loras\[0\]\.path: .*not a regular file"):
            parse_job(lora_job(tmp_path, tmp_path / name, [1.0]), tmp_path)


def test_frame_hashes_follow_the_weights_and_the_file_content_not_its_place(tmp_path, components, style):
    doc = lora_job(tmp_path, style, [0.2, 0.4])
    hashes = parse_job(doc, tmp_path).frame_hashes()
    without = job_document(2, [], width=64, height=64, steps=3)
    assert hashes[0] != parse_job(without, tmp_path).frame_hashes()[0]
    doc["frames"][1]["loras"]["Style"] = 0.5
    assert parse_job(doc, tmp_path).frame_hashes() == [hashes[0], parse_job(doc, tmp_path).frame_hashes()[1]]
    assert parse_job(doc, tmp_path).frame_hashes()[1] != hashes[1]
    doc["frames"][1]["loras"]["Style"] = 0.4
    copy = tmp_path / "elsewhere" / "style.safetensors"
    copy.parent.mkdir()
    copy.write_bytes(style.read_bytes())
    doc["loras"][0]["path"] = str(copy)
    assert parse_job(doc, tmp_path).frame_hashes() == hashes  # the same LoRA in another place
    write_lora(copy, *lora_tensors(components, "kohya", seed=1))  # retrained: every frame renders again
    assert set(parse_job(doc, tmp_path).frame_hashes()).isdisjoint(hashes)


def _pixels(folder: Path, frame: int) -> np.ndarray:
    return np.asarray(Image.open(folder / f"frame_{frame:05d}.png")).astype(int)


def _render(folder: Path, doc: dict, model) -> None:
    from engine.events import EventStream
    from engine.runner import Runner

    folder.mkdir(parents=True, exist_ok=True)
    Runner(parse_job(doc, folder), EventStream(None), model=model).run()


def test_batched_frames_with_different_weights_equal_frames_rendered_alone(tmp_path, tiny_model, style):
    weights = [0.0, 1.5, -0.8, 0.6]
    doc = lora_job(tmp_path, style, weights)
    _render(tmp_path / "alone", doc, tiny_model)
    _render(tmp_path / "batched", dict(doc, batch_size=4), tiny_model)
    _render(tmp_path / "plain", job_document(4, [], width=64, height=64, steps=3), tiny_model)
    for frame in range(1, 5):
        assert np.abs(_pixels(tmp_path / "alone", frame) - _pixels(tmp_path / "batched", frame)).max() <= 1, frame
    assert np.array_equal(_pixels(tmp_path / "alone", 1), _pixels(tmp_path / "plain", 1))  # weight 0: no LoRA
    for frame in (2, 3, 4):
        assert np.abs(_pixels(tmp_path / "batched", frame) - _pixels(tmp_path / "plain", frame)).mean() > 2, frame


def test_the_text_encoder_lora_changes_the_prompt_embeddings_per_frame(tmp_path, tiny_model, components):
    """A LoRA on the text encoder alone: frames differ by their weight only through the prompt cache's key."""
    tensors, _ = lora_tensors(components, "kohya", alpha=4.0)
    text_only = write_lora(tmp_path / "te.safetensors", {k: v for k, v in tensors.items() if "lora_te_" in k})
    doc = lora_job(tmp_path, text_only, [0.0, 1.0, 0.0, 1.0])
    for frame in doc["frames"]:
        frame["prompt_weights"], frame["phase"] = [1.0, 0.0], 0.0  # the same noise: only the weight differs
    _render(tmp_path / "batched", dict(doc, batch_size=4), tiny_model)
    _render(tmp_path / "alone", doc, tiny_model)
    first, second = _pixels(tmp_path / "batched", 1), _pixels(tmp_path / "batched", 2)
    assert np.array_equal(first, _pixels(tmp_path / "batched", 3)) and np.abs(first - second).mean() > 2
    assert np.array_equal(second, _pixels(tmp_path / "batched", 4))
    for frame in range(1, 5):
        assert np.abs(_pixels(tmp_path / "alone", frame) - _pixels(tmp_path / "batched", frame)).max() <= 1, frame


def test_cli_renders_an_animated_lora_weight(tmp_path, style):
    doc = lora_job(tmp_path, style, [0.0, 0.5, 1.0], batch_size=3)
    job = write_job(tmp_path / "out", doc)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    command = [sys.executable, "-m", "engine", "render", str(job)]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.splitlines()[-1])["rendered"] == 3
    frames = [_pixels(tmp_path / "out", f) for f in (1, 2, 3)]
    assert np.abs(frames[0] - frames[1]).mean() > 1 and np.abs(frames[1] - frames[2]).mean() > 1
    records = [json.loads(line) for line in (tmp_path / "out" / "manifest.jsonl").read_text().splitlines()]
    assert [r["params"]["loras"] for r in records] == [{"Style": 0.0}, {"Style": 0.5}, {"Style": 1.0}]
    # a weight changed on one frame: only that frame renders again
    doc["frames"][2]["loras"]["Style"] = 0.9
    write_job(tmp_path / "out", doc)
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.splitlines()[-1])["rendered"] == 1


# --- hostile and foreign files: one line naming the LoRA and what was found ----------------------------------------


def _load_error(components, path: Path) -> str:
    parts = {"unet": components["unet"], "text_encoder": components["text_encoder"]}
    with pytest.raises(LoraError) as caught:
        load_lora(LoraSpec("Style", path), parts)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"LoRA 'Style' ({path.name})"), message
    return message


def test_a_truncated_file_is_one_line(tmp_path, components, style):
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(style.read_bytes()[: style.stat().st_size // 2])
    assert "not a readable .safetensors file" in _load_error(components, cut)
    (tmp_path / "junk.safetensors").write_bytes(b"\xff" * 64)
    assert "not a readable .safetensors file" in _load_error(components, tmp_path / "junk.safetensors")


def test_non_finite_values_are_refused(tmp_path, components):
    tensors, _ = lora_tensors(components, "kohya")
    key = next(k for k in tensors if k.endswith("lora_up.weight"))
    tensors[key][0, 0] = float("nan")
    path = write_lora(tmp_path / "nan.safetensors", tensors)
    assert "up weight holds NaN or infinite values" in _load_error(components, path)


def test_wrong_shapes_and_foreign_models_are_named(tmp_path, components):
    tensors, _ = lora_tensors(components, "kohya")
    key = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight"
    tensors[key] = torch.randn(RANK, 768)  # an SD 1.x LoRA's cross-attention width
    message = _load_error(components, write_lora(tmp_path / "sd1.safetensors", tensors))
    assert "(4, 768)" in message and "another model" in message and "SD 1.x" in message
    tensors, _ = lora_tensors(components, "kohya")
    tensors["lora_te2_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight"] = torch.randn(RANK, 32)
    tensors["lora_te2_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight"] = torch.randn(32, RANK)
    message = _load_error(components, write_lora(tmp_path / "xl.safetensors", tensors))
    assert "second text encoder, which this model lacks" in message and "SDXL" in message
    tensors, _ = lora_tensors(components, "kohya")
    tensors["lora_unet_down_blocks_5_attentions_0_proj_in.lora_down.weight"] = torch.randn(RANK, 32)
    tensors["lora_unet_down_blocks_5_attentions_0_proj_in.lora_up.weight"] = torch.randn(32, RANK)
    message = _load_error(components, write_lora(tmp_path / "deep.safetensors", tensors))
    assert "1 of its" in message and "lora_unet_down_blocks_5_attentions_0_proj_in" in message


@pytest.mark.parametrize(
    ("key", "found"),
    [
        ("lora_unet_conv_in.hada_w1_a", "LyCORIS LoHa"),
        ("lora_unet_conv_in.dora_scale", "DoRA"),
        ("lora_unet_conv_in.something", "unknown key"),
        ("model.diffusion_model.input_blocks.0.0.weight", "unknown key"),
    ],
)
def test_other_kinds_of_file_are_named(tmp_path, components, key, found):
    tensors, _ = lora_tensors(components, "kohya")
    tensors[key] = torch.zeros(4)
    assert found in _load_error(components, write_lora(tmp_path / "other.safetensors", tensors))


def test_a_layer_without_its_up_weight_is_an_incomplete_file(tmp_path, components):
    tensors, _ = lora_tensors(components, "peft")
    del tensors[next(k for k in tensors if k.endswith("lora_B.weight"))]
    assert "has no up" in _load_error(components, write_lora(tmp_path / "half.safetensors", tensors))


def _layers(lora_set: LoraSet) -> dict[str, tuple[torch.Tensor, torch.Tensor, float]]:
    return {
        f"{component}.{layer.path}": (layer.down, layer.up, layer.scale)
        for lora in lora_set.loras
        for component, layers in lora.layers.items()
        for layer in layers
    }


def test_older_diffusers_names_and_trusted_pickles_map_to_the_same_layers(tmp_path, components):
    """The attention-processor names diffusers wrote before PEFT (``attn1.processor.to_q_lora.down.weight``,
    ``lora_linear_layer``), ``.lora.down`` names, and a trusted pickle: the same layers as the PEFT-named file."""
    tensors, _ = lora_tensors(components, "peft")
    attention = {k: v for k, v in tensors.items() if ".attn1.to_" in k or ".self_attn." in k}
    old = {}
    for key, value in attention.items():
        part = "down" if ".lora_A." in key else "up"
        module = key.removesuffix(".lora_A.weight").removesuffix(".lora_B.weight")
        parent, _, leaf = module.rpartition(".")
        if leaf == "0":  # to_out.0
            parent, _, leaf = parent.rpartition(".")
        if module.startswith("unet."):
            old[f"{parent}.processor.{leaf}_lora.{part}.weight"] = value
        elif leaf == "q_proj":
            old[f"{parent}.to_q_lora.{part}.weight"] = value
        else:
            old[f"{module}.lora_linear_layer.{part}.weight"] = value
    expected = _layers(_fitted(components, write_lora(tmp_path / "peft.safetensors", attention)))
    assert _layers(_fitted(components, write_lora(tmp_path / "old.safetensors", old))).keys() == expected.keys()
    dotted = {k.replace(".lora_A.", ".lora.down.").replace(".lora_B.", ".lora.up."): v for k, v in attention.items()}
    found = _layers(_fitted(components, write_lora(tmp_path / "dotted.safetensors", dotted)))
    assert found.keys() == expected.keys()
    pickled = tmp_path / "style.pt"
    torch.save(attention, pickled)
    parts = {"unet": components["unet"], "text_encoder": components["text_encoder"]}
    with pytest.raises(LoraError, match="pickle-based file"):
        load_lora(LoraSpec("s", pickled), parts)
    found = _layers(LoraSet([load_lora(LoraSpec("s", pickled), parts, trust_pickle=True)]))
    assert found.keys() == expected.keys()
    assert all(torch.equal(found[k][0], expected[k][0]) and found[k][2] == expected[k][2] for k in expected)


def test_a_warm_engine_fits_a_lora_once_until_its_file_or_its_model_changes(tmp_path):
    import gc

    from engine import lora as lora_module

    def parts(built):
        return {"unet": built["unet"], "text_encoder": built["text_encoder"]}

    built = build_tiny_components()
    spec = LoraSpec("s", write_lora(tmp_path / "s.safetensors", *lora_tensors(built, "kohya")))
    first = load_lora(spec, parts(built))
    assert load_lora(spec, parts(built)) is first  # a preview after a render: no second read
    write_lora(spec.path, *lora_tensors(built, "kohya", seed=3))  # retrained in place
    second = load_lora(spec, parts(built))
    assert second is not first
    assert not torch.equal(second.layers["unet"][0].down, first.layers["unet"][0].down)
    other = build_tiny_components()
    assert load_lora(spec, parts(other)) is not second  # fitted to another model's modules
    del built, other, first, second
    gc.collect()
    assert all(ref() is not None for refs, _ in lora_module._FITTED.values() for ref in refs.values())
