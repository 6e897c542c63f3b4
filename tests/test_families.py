"""Model families (engine/families/): SD 1.x, SD 2.x (ε and v) and SDXL, each from a tiny random model built here.

Every way of naming a model (a diffusers folder, a single original-layout ``.safetensors`` file, a cached repo id)
loads for every family, renders through the CLI with a latent and a U-Net bend, batches exactly, keeps the layer
semantics, and (without bends) equals diffusers' own pipeline for the family. Detection is standard library only.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hf_cache import cache_repo
from job_documents import job_document, write_job
from PIL import Image

from engine.bends import Bend, ParamBatch
from engine.catalog import FAMILY_NAMES
from engine.conditioning import PromptBank
from engine.errors import BendError, ModelError
from engine.families import FAMILIES, detect_family, native_size, read_checkpoint_info
from engine.models import Model, load_components, load_model
from engine.noise import circular_walk, noise_fields
from engine.sampler import BentSampler
from engine.stack import BendStack, PlacedBend, Placement
from engine.tiny_random import build_tiny_family, write_tiny_model
from tests.ldm_export import clip_to_ldm, unet_to_ldm, vae_to_ldm

ROOT = Path(__file__).resolve().parents[1]
# The families with a tiny model of their own layout (the SDXL variants share the base's layout)
LAYOUTS = ("sd1", "sd2", "sd2-v", "sdxl")
STEPS = 3
SIZE = 64
PROMPTS = ["a floating orb", "a gorgeous landscape"]
# Single-file names as they are published: an SD 2.x file's name is what tells ε (512) from v (768) apart
FILE_NAMES = {"sd1": "tiny-v1-5", "sd2": "tiny-v2-1_512", "sd2-v": "tiny-v2-1_768", "sdxl": "tiny-sd_xl_base"}

# --- an original-layout (LDM / SGM) single file from a tiny model --------------------------------------------------


def openclip_to_ldm(state: dict[str, torch.Tensor], prefix: str, layers: int) -> dict[str, torch.Tensor]:
    """transformers CLIP keys -> OpenCLIP's (``token_embedding``, ``transformer.resblocks.N.attn.in_proj_*``, ...):
    the inverse of diffusers' ``convert_open_clip_checkpoint``, written from OpenCLIP's layout."""
    state = {k.removeprefix("text_model."): v for k, v in state.items()}
    out = {
        prefix + "token_embedding.weight": state["embeddings.token_embedding.weight"],
        prefix + "positional_embedding": state["embeddings.position_embedding.weight"],
        prefix + "ln_final.weight": state["final_layer_norm.weight"],
        prefix + "ln_final.bias": state["final_layer_norm.bias"],
    }
    if "text_projection.weight" in state:  # OpenCLIP multiplies by the projection: x @ P, so P is the transpose
        out[prefix + "text_projection"] = state["text_projection.weight"].T
    for i in range(layers):
        src, dst = f"encoder.layers.{i}.", f"{prefix}transformer.resblocks.{i}."
        for part in ("weight", "bias"):
            qkv = [state[f"{src}self_attn.{p}_proj.{part}"] for p in "qkv"]
            out[f"{dst}attn.in_proj_{part}"] = torch.cat(qkv)
            out[f"{dst}attn.out_proj.{part}"] = state[f"{src}self_attn.out_proj.{part}"]
            out[f"{dst}ln_1.{part}"] = state[f"{src}layer_norm1.{part}"]
            out[f"{dst}ln_2.{part}"] = state[f"{src}layer_norm2.{part}"]
            out[f"{dst}mlp.c_fc.{part}"] = state[f"{src}mlp.fc1.{part}"]
            out[f"{dst}mlp.c_proj.{part}"] = state[f"{src}mlp.fc2.{part}"]
    return out


def family_to_ldm(family: str, components: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The whole tiny model as one original-layout state dict: SD 1.x/2.x (LDM) or SDXL (SGM) key names."""
    unet = components["unet"]
    unet_state = dict(unet.state_dict())
    added = {k: unet_state.pop(k) for k in list(unet_state) if k.startswith("add_embedding.")}
    state = unet_to_ldm(unet_state, unet.config)
    for key, tensor in added.items():  # SDXL's "text_time" embedding MLP is the original's label_emb
        state[
            "model.diffusion_model."
            + key.replace("add_embedding.linear_1", "label_emb.0.0").replace("add_embedding.linear_2", "label_emb.0.2")
        ] = tensor
    state.update(vae_to_ldm(components["vae"].state_dict(), components["vae"].config))
    te = components["text_encoder"]
    layers = te.config.num_hidden_layers
    if family == "sd1":
        state.update(clip_to_ldm(te.state_dict(), te.config.max_position_embeddings))
    elif family.startswith("sd2"):
        state.update(openclip_to_ldm(te.state_dict(), "cond_stage_model.model.", layers))
    else:
        clip = clip_to_ldm(te.state_dict(), te.config.max_position_embeddings)
        prefix = "conditioner.embedders.0.transformer."
        state.update({prefix + k.removeprefix("cond_stage_model.transformer."): v for k, v in clip.items()})
        te2 = components["text_encoder_2"]
        state.update(openclip_to_ldm(te2.state_dict(), "conditioner.embedders.1.model.", te2.config.num_hidden_layers))
    return state


def save_family_checkpoint(family: str, components: dict[str, Any], path: Path) -> Path:
    """Write a tiny model as one original-layout ``.safetensors`` file (what an artist downloads)."""
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous().clone() for k, v in family_to_ldm(family, components).items()}
    save_file(state, str(path))
    return path


# --- fixtures ------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    """Each family's tiny model as a diffusers folder."""
    root = tmp_path_factory.mktemp("families")
    return {name: write_tiny_model(name, root / name) for name in LAYOUTS}


@pytest.fixture(scope="module")
def configs(folders, tmp_path_factory) -> dict[str, Path]:
    """Each tiny model's config files without weights: a single file's weights must come from the file."""
    root = tmp_path_factory.mktemp("family-configs")
    out = {}
    for name, folder in folders.items():
        out[name] = root / name
        shutil.copytree(folder, out[name], ignore=shutil.ignore_patterns("*.safetensors"))
    return out


@pytest.fixture(scope="module")
def models(folders) -> dict[str, Model]:
    return {name: load_model(str(folder), device="cpu", scheduler=_scheduler(name)) for name, folder in folders.items()}


def _scheduler(family: str) -> str:
    """Each family's own scheduler class (the tiny SDXL's is Euler, as SDXL's)."""
    return "EulerDiscreteScheduler" if family.startswith("sdxl") else "ddim"


def _weights(components: Any) -> dict[str, torch.Tensor]:
    get = components.get if isinstance(components, dict) else lambda k: getattr(components, k, None)
    out = {}
    for key in ("text_encoder", "text_encoder_2", "unet", "vae"):
        module = get(key)
        if module is not None:
            out.update({f"{key}.{k}": v for k, v in module.state_dict().items()})
    return out


def _render(model: Model, weights: list[list[float]], placed=(), params=None, phases=None) -> np.ndarray:
    bank = PromptBank.for_model(model, PROMPTS)
    sampler = BentSampler(
        model,
        BendStack(list(placed)),
        steps=STEPS,
        guidance=7.5,
        uncond=model.family.negative(model, bank.conditioning, ""),
    )
    a, b = noise_fields(46, (4, SIZE // model.vae_scale_factor, SIZE // model.vae_scale_factor))
    noise = circular_walk(a, b, phases or [0.3 * i for i in range(len(weights))])
    return sampler.decode(sampler.txt2img(noise, bank.mixed(weights), params or {}, seed=46))


# --- the registry and the shipped configs --------------------------------------------------------------------------


def test_registry_names_match_the_catalog_and_each_family_has_its_targets():
    assert tuple(FAMILIES) == FAMILY_NAMES
    assert FAMILIES["sd1"].unet_targets == FAMILIES["sd2-v"].unet_targets
    assert FAMILIES["sdxl"].unet_targets == (
        "conv_in", "down_blocks.0", "down_blocks.1", "down_blocks.2", "mid_block",
        "up_blocks.0", "up_blocks.1", "up_blocks.2", "conv_out",
    )  # fmt: skip
    assert [native_size(n) for n in FAMILY_NAMES] == [512, 512, 768, 512, 1024, 1024]


@pytest.mark.parametrize(
    ("folder", "counts"),
    [
        ("sd-v2", {"unet": 865_910_724, "vae": 83_653_863, "text_encoder": 340_387_840}),
        ("sd-v2-v", {"unet": 865_910_724, "vae": 83_653_863, "text_encoder": 340_387_840}),
        (
            "sdxl-base",
            {"unet": 2_567_463_684, "vae": 83_653_863, "text_encoder": 123_060_480, "text_encoder_2": 694_659_840},
        ),
    ],
)
def test_shipped_configs_build_the_real_architectures(folder, counts):
    """Built on the meta device (nothing allocated): the published parameter counts of each family's parts."""
    from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
    from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = ROOT / "engine" / "model_configs" / folder
    with torch.device("meta"):
        built = {
            "unet": UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(config / "unet")),
            "vae": AutoencoderKL.from_config(AutoencoderKL.load_config(config / "vae")),
            "text_encoder": CLIPTextModel(CLIPTextConfig.from_pretrained(config / "text_encoder")),
        }
        if "text_encoder_2" in counts:
            built["text_encoder_2"] = CLIPTextModelWithProjection(
                CLIPTextConfig.from_pretrained(config / "text_encoder_2")
            )
    assert {k: sum(p.numel() for p in m.parameters()) for k, m in built.items()} == counts
    scheduler = json.loads((config / "scheduler" / "scheduler_config.json").read_text())
    assert scheduler["prediction_type"] == ("v_prediction" if folder == "sd-v2-v" else "epsilon")


def test_openclip_tokenizers_pad_with_an_exclamation_mark():
    """SD 2.x's and SDXL's second tokenizer are CLIP's BPE padded with "!" (id 0); SD 1.x's pads with <|endoftext|>."""
    from engine.families.base import clip_tokenizer

    config = ROOT / "engine" / "model_configs" / "sdxl-base"
    tokenizers = FAMILIES["sdxl"].single_file_tokenizers(config)
    assert set(tokenizers) == {"tokenizer", "tokenizer_2"}
    ids = tokenizers["tokenizer_2"]("a photo of a cat", padding="max_length", max_length=77).input_ids
    assert ids[:7] == [49406, 320, 1125, 539, 320, 2368, 49407] and ids[7:] == [0] * 70
    assert tokenizers["tokenizer"]("a cat", padding="max_length", max_length=77).input_ids[4:] == [49407] * 73
    assert clip_tokenizer()("a cat").input_ids == [49406, 320, 2368, 49407]


# --- detection -----------------------------------------------------------------------------------------------------


def test_detect_family_needs_no_torch(folders, tmp_path):
    """The Blender side calls it before torch is installed: it must not import torch (or numpy) at all."""
    sdxl = save_family_checkpoint("sdxl", build_tiny_family("sdxl"), tmp_path / "my-sdxl-turbo.safetensors")
    code = (
        "import sys; from engine.families import detect_family, native_size; "
        f"print(detect_family({str(folders['sd2-v'])!r}), detect_family({str(sdxl)!r}), native_size('sdxl-turbo')); "
        "print(sorted(m for m in ('torch', 'numpy', 'diffusers', 'transformers') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )  # fmt: skip
    assert result.stdout.split("\n")[:2] == ["sd2-v sdxl-turbo 512", "[]"]


def test_detect_folders_and_named_variants(folders, tmp_path):
    assert {name: detect_family(str(folder)) for name, folder in folders.items()} == {n: n for n in LAYOUTS}
    turbo = tmp_path / "sdxl-turbo"
    shutil.copytree(folders["sdxl"], turbo)
    assert detect_family(str(turbo)) == "sdxl-turbo"
    assert detect_family(str(folders["sdxl"]), family="sdxl-lightning") == "sdxl-lightning"
    assert detect_family("tiny-random") == "sd1"


@pytest.mark.parametrize(
    ("layout", "file_name", "expected"),
    [
        ("sd1", "v1-5-pruned.safetensors", "sd1"),
        ("sd2", "v2-1_512-ema-pruned.safetensors", "sd2"),
        ("sd2", "v2-1_768-ema-pruned.safetensors", "sd2-v"),
        ("sdxl", "sd_xl_base_1.0.safetensors", "sdxl"),
        ("sdxl", "sd_xl_turbo_1.0_fp16.safetensors", "sdxl-turbo"),
        ("sdxl", "sdxl_lightning_4step.safetensors", "sdxl-lightning"),
    ],
)
def test_detect_single_files_from_their_keys_and_names(tmp_path, layout, file_name, expected):
    path = save_family_checkpoint(layout, build_tiny_family(layout), tmp_path / file_name)
    assert detect_family(str(path)) == expected


def test_modelspec_metadata_names_the_prediction(tmp_path):
    from safetensors.torch import save_file

    state = {k: v.contiguous() for k, v in family_to_ldm("sd2", build_tiny_family("sd2")).items()}
    path = tmp_path / "v2-768.safetensors"  # the name says 768, the metadata says ε: the metadata wins
    save_file(state, str(path), metadata={"modelspec.prediction_type": "epsilon"})
    assert detect_family(str(path)) == "sd2"


@pytest.mark.parametrize(
    ("keys", "match"),
    [
        ({"first_stage_model.x": (1,)}, r"not a Stable Diffusion checkpoint \(no model\.diffusion_model\.\* weights; "
         r"found first_stage_model\.x\.\* \(1\)\)"),
        ({"model.diffusion_model.x": (1,), "conditioner.embedders.0.model.text_projection": (4, 4)},
         "Stable Diffusion XL refiner"),
        ({"model.diffusion_model.x": (1,), "text_encoders.clip_g.x": (1,)},
         r"unknown layout \(found model\.diffusion_model\.\* \(1\), text_encoders\.clip_g\.\* \(1\)\)"),
        ({"model.diffusion_model.input_blocks.0.0.weight": (320, 9, 3, 3), "cond_stage_model.transformer.x": (1,)},
         "9-channel U-Net"),
    ],
    ids=["no-unet", "refiner", "unknown", "inpainting"],
)  # fmt: skip
def test_unknown_layouts_give_one_line_errors_naming_what_was_found(tmp_path, keys, match):
    header = json.dumps({k: {"dtype": "F32", "shape": list(s), "data_offsets": [0, 0]} for k, s in keys.items()})
    path = tmp_path / "odd.safetensors"
    path.write_bytes(len(header).to_bytes(8, "little") + header.encode())
    with pytest.raises(ModelError, match=match) as info:
        detect_family(str(path))
    assert "\n" not in str(info.value) and str(info.value).startswith("model.source: odd.safetensors ")
    assert read_checkpoint_info(path).shapes.keys() == keys.keys()


def test_unknown_folder_and_family_names(tmp_path):
    folder = tmp_path / "flux"
    folder.mkdir()
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "FluxPipeline"}))
    with pytest.raises(ModelError, match=r"is a FluxPipeline, which no family renders; use a StableDiffusionPipeline"):
        detect_family(str(folder))
    with pytest.raises(ModelError, match=r"^model\.family: unknown family 'sd3'; use auto or one of sd1, sd2"):
        detect_family(str(folder), family="sd3")


# --- loading: folders, single files, cached repo ids ---------------------------------------------------------------


@pytest.mark.parametrize("family", LAYOUTS)
def test_folder_loads_the_family_with_its_saved_weights(models, family):
    model = models[family]
    assert model.family.name == family
    built = _weights(build_tiny_family(family))
    loaded = _weights(model)
    assert loaded.keys() == built.keys()
    for key, tensor in built.items():
        torch.testing.assert_close(loaded[key], tensor, rtol=0, atol=0, msg=key)
    assert model.scheduler.config.prediction_type == FAMILIES[family].prediction_type


@pytest.mark.parametrize("family", LAYOUTS)
def test_single_file_round_trip_renders_the_same_images(tmp_path, models, configs, family):
    """An original-layout file of each family loads to the same weights, and renders the same images."""
    path = save_family_checkpoint(family, build_tiny_family(family), tmp_path / f"{FILE_NAMES[family]}.safetensors")
    components = load_components(str(path), torch.float32, False, False, single_file_config=configs[family])
    assert components["family"].name == family
    for key, tensor in _weights(models[family]).items():
        torch.testing.assert_close(_weights(components)[key], tensor, rtol=0, atol=0, msg=key)
    reference = models[family]
    from engine.models import make_scheduler

    components["scheduler"] = make_scheduler(_scheduler(family), components["scheduler"].config)
    model = Model(source=str(path), device=torch.device("cpu"), dtype=torch.float32, **components)
    np.testing.assert_array_equal(_render(model, [[1.0, 0.0]]), _render(reference, [[1.0, 0.0]]))


def test_shipped_config_refuses_a_tiny_sdxl_file_in_one_line(tmp_path):
    """Without a config of its own, the file is read with the shipped SDXL config, which its shapes do not fit."""
    path = save_family_checkpoint("sdxl", build_tiny_family("sdxl"), tmp_path / "tiny.safetensors")
    with pytest.raises(ModelError, match=r"^model\.source: could not load tiny\.safetensors as a Stable Diffusion XL "):
        load_components(str(path), torch.float32, False, False)


@pytest.mark.parametrize("family", LAYOUTS)
def test_cached_repo_id_loads_each_family(hf_cache, folders, models, family):
    cache_repo(hf_cache, f"owner/tiny-{family}", folders[family])
    assert detect_family(f"owner/tiny-{family}") == family
    model = load_model(f"owner/tiny-{family}", device="cpu")
    assert model.family.name == family
    for key, tensor in _weights(models[family]).items():
        torch.testing.assert_close(_weights(model)[key], tensor, rtol=0, atol=0, msg=key)


def test_a_cached_repo_named_turbo_is_the_turbo_variant(hf_cache, folders):
    cache_repo(hf_cache, "stabilityai/sdxl-turbo", folders["sdxl"])
    model = load_model("stabilityai/sdxl-turbo", device="cpu", scheduler="euler_a")
    assert model.family.name == "sdxl-turbo"
    assert model.scheduler.config.timestep_spacing == "trailing"  # the variant's few-step spacing


def test_a_missing_repo_says_how_to_download_it(hf_cache):
    for call in (lambda: load_model("owner/missing", device="cpu"), lambda: detect_family("owner/missing")):
        with pytest.raises(ModelError, match=r"hf download owner/missing") as info:
            call()
        assert "\n" not in str(info.value) and "huggingface-cli" not in str(info.value)


# --- conditioning --------------------------------------------------------------------------------------------------


def test_sdxl_conditioning_is_both_encoders_and_the_pooled_embedding_mixed_alike(models):
    model = models["sdxl"]
    bank = PromptBank.for_model(model, PROMPTS)
    one = bank.conditioning(PROMPTS)
    assert one.hidden.shape == (2, 77, 96) and one.pooled.shape == (2, 32)
    mixed = bank.mixed([[0.25, 0.75]])
    torch.testing.assert_close(mixed.hidden[0], 0.25 * one.hidden[0] + 0.75 * one.hidden[1])
    torch.testing.assert_close(mixed.pooled[0], 0.25 * one.pooled[0] + 0.75 * one.pooled[1])
    with pytest.raises(TypeError, match="pooled"):  # the tensor-only view would drop the pooled embedding
        bank.mix([[1.0, 0.0]])
    empty = model.family.negative(model, bank.conditioning, "")
    assert not empty.hidden.any() and not empty.pooled.any()  # SDXL's force_zeros_for_empty_prompt
    assert model.family.negative(model, bank.conditioning, "blurry").pooled.any()


def test_sdxl_warns_below_its_native_size_and_turbo_about_guidance():
    assert FAMILIES["sd1"].advice(64, 64, 7.5) == []
    (small,) = FAMILIES["sdxl"].advice(512, 512, 7.0)
    assert "1024×1024" in small and "width, height" in small
    assert FAMILIES["sdxl"].advice(1024, 1024, 7.0) == []
    (guidance,) = FAMILIES["sdxl-turbo"].advice(512, 512, 7.5)
    assert "set guidance to 0" in guidance


# --- rendering: diffusers equality, batching, layers, U-Net targets ------------------------------------------------


def _diffusers_images(model: Model, family: str, weights: list[float], layer: int | None = None, bend=None):
    """Diffusers' own pipeline for the family, on the same components, noise and (mixed) conditioning."""
    pipe_type = FAMILIES[family].pipeline_type()
    parts = {k: getattr(model, k) for k in FAMILIES[family].components}
    pipe = pipe_type(**parts, **FAMILIES[family].pipeline_kwargs())
    pipe.set_progress_bar_config(disable=True)
    bank = PromptBank.for_model(model, PROMPTS)
    cond = bank.mixed([weights])
    a, b = noise_fields(46, (4, SIZE // model.vae_scale_factor, SIZE // model.vae_scale_factor))
    noise = circular_walk(a, b, [0.0])
    bend = bend or (lambda x: x)

    def callback(pipe, i, t, tensors):
        if layer is not None and i + 1 == layer:
            tensors["latents"] = bend(tensors["latents"])
        return tensors

    # Layer 0 is the latent going into step 0: the noise after the scheduler's initial scaling (Euler's σ_max;
    # DDIM's 1), which the pipeline applies to the latents it is given
    model.scheduler.set_timesteps(STEPS)
    sigma = model.scheduler.init_noise_sigma
    initial = bend(noise * sigma) / sigma if layer == 0 else noise
    kwargs: dict[str, Any] = {"prompt_embeds": cond.hidden}
    if cond.pooled is not None:  # negative_prompt None: SDXL's zeros, as the engine's empty negative prompt
        kwargs["pooled_prompt_embeds"] = cond.pooled
    else:
        kwargs["negative_prompt_embeds"] = bank.conditioning([""]).hidden
    return pipe(
        **kwargs,
        latents=initial,
        height=SIZE,
        width=SIZE,
        num_inference_steps=STEPS,
        guidance_scale=7.5,
        output_type="np",
        callback_on_step_end=callback,
    ).images


def _engine_image(model: Model, weights: list[float], placed=(), params=None) -> np.ndarray:
    return _render(model, [weights], placed, params, phases=[0.0])


@pytest.mark.parametrize("family", ["sd2-v", "sdxl"])
def test_unbent_render_equals_diffusers_pipeline(models, family):
    """SDXL (pooled embeddings, time ids, zeroed negative) and SD 2.x v-prediction, as diffusers renders them."""
    model = models[family]
    ours = _engine_image(model, [0.4, 0.6])
    theirs = _diffusers_images(model, family, [0.4, 0.6])
    np.testing.assert_allclose(ours / 255.0, theirs, atol=1.5 / 255, rtol=0)
    assert ours.std() > 5  # an image, not a constant


@pytest.mark.parametrize("family", ["sd2-v", "sdxl"])
@pytest.mark.parametrize("layer", [0, 2, STEPS])
def test_latent_layer_k_bends_the_input_of_step_k(models, family, layer):
    model = models[family]
    bend = PlacedBend(Bend("shift", "add"), Placement(latent_layer=layer))
    ours = _engine_image(model, [1.0, 0.0], [bend], {"shift": ParamBatch((0.3,))})
    theirs = _diffusers_images(model, family, [1.0, 0.0], layer=layer, bend=lambda x: x + 0.3)
    np.testing.assert_allclose(ours / 255.0, theirs, atol=1.5 / 255, rtol=0)
    assert np.abs(ours.astype(int) - _engine_image(model, [1.0, 0.0]).astype(int)).max() > 2  # it did bend


@pytest.mark.parametrize("family", LAYOUTS)
def test_batched_frames_equal_frames_rendered_alone(models, family):
    """Per-sample bend parameters, prompt mixes (SDXL: pooled too) and noise phases: a batch of 3 equals 3 alone."""
    model = models[family]
    placed = [
        PlacedBend(Bend("rot", "rotate_r1"), Placement(latent_layer=1)),
        PlacedBend(Bend("gain", "multiply"), Placement(unet_target="mid_block")),
    ]
    weights = [[1.0, 0.0], [0.5, 0.5], [0.1, 0.9]]
    angles, gains = (0.0, 0.7, 1.9), (1.0, 1.3, 0.6)
    batched = _render(model, weights, placed, {"rot": ParamBatch(angles), "gain": ParamBatch(gains)}, [0.0, 0.5, 1.0])
    for i in range(3):
        alone = _render(
            model, [weights[i]], placed, {"rot": ParamBatch((angles[i],)), "gain": ParamBatch((gains[i],))}, [0.5 * i]
        )
        np.testing.assert_allclose(batched[i].astype(int), alone[0].astype(int), atol=1, rtol=0)
    assert len({img.tobytes() for img in batched}) == 3


def test_every_sdxl_target_bends_and_a_fourth_block_is_refused(models):
    from engine.selection import Selection

    model = models["sdxl"]
    plain = _engine_image(model, [1.0, 0.0])
    sparse = Selection(kind="random", fraction=0.5, seed=1)  # a uniform change could vanish in a GroupNorm
    for target in FAMILIES["sdxl"].unet_targets:
        placed = [PlacedBend(Bend("g", "add", selection=sparse), Placement(unet_target=target))]
        bent = _engine_image(model, [1.0, 0.0], placed, {"g": ParamBatch((3.0,))})
        assert np.abs(bent.astype(int) - plain.astype(int)).max() > 0, target
    placed = [PlacedBend(Bend("g", "add"), Placement(unet_target="down_blocks.3"))]
    with pytest.raises(BendError, match=r"no 'down_blocks\.3'; targets are conv_in, mid_block, conv_out, "):
        _engine_image(model, [1.0, 0.0], placed, {"g": ParamBatch((1.5,))})


# --- the CLI, per family -------------------------------------------------------------------------------------------


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, "-m", "engine", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def single_files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("single-files")
    return {f: save_family_checkpoint(f, build_tiny_family(f), root / f"{FILE_NAMES[f]}.safetensors") for f in LAYOUTS}


@pytest.mark.parametrize("family", LAYOUTS)
def test_cli_renders_each_family_with_a_latent_and_a_unet_bend(tmp_path, folders, family):
    bends = [
        {"name": "rot", "op": "rotate_r1", "latent_layer": 1},
        {"name": "gain", "op": "multiply", "unet": {"target": "up_blocks.1", "steps": [0, 2]}},
    ]
    doc = job_document(2, bends, width=SIZE, height=SIZE, steps=STEPS, batch_size=2)
    doc["model"] = {"source": str(folders[family]), "device": "cpu", "threads": 1}
    doc["frames"][1]["bends"] = {"rot": 1.2, "gain": 1.8}
    result = _cli("render", str(write_job(tmp_path / "job", doc)))
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert lines[-1]["event"] == "done" and lines[-1]["rendered"] == 2
    frames = [np.asarray(Image.open(tmp_path / "job" / f"frame_{i:05d}.png")) for i in (1, 2)]
    assert frames[0].shape == (SIZE, SIZE, 3) and frames[0].tobytes() != frames[1].tobytes()
    warnings = [e["message"] for e in lines if e["event"] == "warning"]
    assert any("1024×1024" in w for w in warnings) == (family == "sdxl")  # SDXL far below its native size


@pytest.mark.parametrize("family", LAYOUTS)
def test_cli_renders_single_files_of_every_family(tmp_path, single_files, configs, family):
    """The tiny files are not the shipped architectures, so the job names their config folder (``model.config``),
    as an artist's does for a fine-tune of another shape; the family still comes from the file's keys and name."""
    bends = [
        {"name": "rot", "op": "rotate_r1", "latent_layer": 1},
        {"name": "gain", "op": "multiply", "unet": {"target": "down_blocks.1", "steps": [0, 2]}},
    ]
    doc = job_document(2, bends, width=SIZE, height=SIZE, steps=STEPS)
    doc["model"] = {"source": str(single_files[family]), "config": str(configs[family]), "device": "cpu"}
    result = _cli("render", str(write_job(tmp_path / "job", doc)))
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.splitlines()[-1])["rendered"] == 2
    bad = {**doc, "model": {**doc["model"], "config": str(tmp_path)}}
    result = _cli("render", str(write_job(tmp_path / "bad", bad)))
    assert result.returncode != 0 and "model.config: " in result.stderr and "no model_index.json" in result.stderr


def test_cli_renders_a_cached_repo_id(tmp_path, folders):
    cache = tmp_path / "hf" / "hub"
    cache.mkdir(parents=True)
    cache_repo(cache, "owner/tiny-sdxl", folders["sdxl"])
    doc = job_document(1, [{"name": "gain", "op": "multiply", "unet": {"target": "down_blocks.2", "steps": [0, 2]}}],
                       width=SIZE, height=SIZE, steps=STEPS)  # fmt: skip
    doc["model"] = {"source": "owner/tiny-sdxl", "device": "cpu", "threads": 1, "scheduler": "euler"}
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", HF_HOME=str(tmp_path / "hf"),
               HF_HUB_CACHE=str(cache), HF_HUB_OFFLINE="1")  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "engine", "render", str(write_job(tmp_path / "job", doc))],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.splitlines()[-1])["rendered"] == 1


def test_a_job_may_name_its_family_and_only_a_named_one_changes_the_hashes(tmp_path):
    from engine.errors import JobError
    from engine.job import parse_job

    doc = job_document(1)
    auto = parse_job(doc, tmp_path)
    assert auto.model.family == "auto"
    named = parse_job({**doc, "model": {**doc["model"], "family": "sdxl-turbo"}}, tmp_path)
    assert named.model.family == "sdxl-turbo"
    assert "family" not in auto.recipe() and named.recipe()["family"] == "sdxl-turbo"
    assert auto.frame_hashes() == parse_job(doc, tmp_path).frame_hashes() != named.frame_hashes()
    with pytest.raises(JobError, match=r"model\.family.*must be one of auto, sd1, sd2, sd2-v, sdxl-turbo"):
        parse_job({**doc, "model": {**doc["model"], "family": "sd3"}}, tmp_path)
