"""Every model source loads offline, from small random pipelines built here: a diffusers folder, a single-file
checkpoint in the original SD layout, a Hugging Face repo id from the local cache; pickles load only when trusted,
and every failure is a one-line ModelError naming the field to change."""

from __future__ import annotations

import hashlib
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from hf_cache import cache_repo

from engine.errors import ModelError
from engine.models import (
    CLIP_BPE_FILE,
    PICKLE_SUFFIXES,
    SINGLE_FILE_CONFIG,
    clip_tokenizer,
    load_components,
    load_model,
)
from engine.tiny_random import build_tiny_components, save_tiny_pipeline
from tests.ldm_export import save_ldm_checkpoint

WEIGHTED = ("unet", "vae", "text_encoder")


@pytest.fixture(scope="module")
def tiny() -> dict:
    return build_tiny_components()


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tiny") / "pipeline"
    save_tiny_pipeline(str(folder))
    return folder


@pytest.fixture(scope="module")
def tiny_config(tiny_folder, tmp_path_factory) -> Path:
    """The tiny pipeline's config files without its weights: a single file's weights must come from the file."""
    config = tmp_path_factory.mktemp("tiny-config") / "config"
    shutil.copytree(tiny_folder, config, ignore=shutil.ignore_patterns("*.safetensors"))
    return config


def assert_same_weights(loaded: dict, expected: dict) -> None:
    for key in WEIGHTED:
        got, want = loaded[key].state_dict(), expected[key].state_dict()
        assert got.keys() == want.keys(), key
        for name, tensor in want.items():
            torch.testing.assert_close(got[name], tensor, rtol=0, atol=0, msg=f"{key}.{name}")


def components_of(model) -> dict:
    return {key: getattr(model, key) for key in WEIGHTED}


def model_error(match: str, source: str, **kwargs) -> ModelError:
    """``load_model(source)`` must fail with a one-line ModelError that names the field to change."""
    with pytest.raises(ModelError, match=match) as info:
        load_model(source, device="cpu", **kwargs)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("model.source: ")
    return info.value


# --- diffusers folders ---------------------------------------------------------------------------------------------


def test_diffusers_folder_loads_the_saved_weights(tiny_folder, tiny):
    model = load_model(str(tiny_folder), device="cpu")
    assert_same_weights(components_of(model), tiny)
    assert model.tokenizer("a cat").input_ids == tiny["tokenizer"]("a cat").input_ids
    assert type(model.scheduler).__name__ == "DDIMScheduler"


# --- single-file checkpoints (original SD layout) ------------------------------------------------------------------


def test_single_file_safetensors_loads_through_the_single_file_path(tmp_path, tiny, tiny_config):
    checkpoint = save_ldm_checkpoint(tiny, tmp_path / "tiny.safetensors")
    components = load_components(str(checkpoint), torch.float32, False, False, single_file_config=tiny_config)
    assert_same_weights(components, tiny)
    assert components["tokenizer"]("a cat").input_ids == tiny["tokenizer"]("a cat").input_ids


def test_trusted_pickle_checkpoint_loads(tmp_path, tiny, tiny_config):
    checkpoint = save_ldm_checkpoint(tiny, tmp_path / "tiny.ckpt")
    with pytest.raises(ModelError, match=r"model\.trust_pickle"):
        load_components(str(checkpoint), torch.float32, False, False, single_file_config=tiny_config)
    components = load_components(str(checkpoint), torch.float32, False, True, single_file_config=tiny_config)
    assert_same_weights(components, tiny)


def test_shipped_config_refuses_another_architecture_in_one_line(tmp_path, tiny):
    """The shipped SD 1.x config is read offline up to the weights; the tiny model's shapes do not fit it."""
    checkpoint = save_ldm_checkpoint(tiny, tmp_path / "tiny.safetensors")
    model_error(r"could not load tiny\.safetensors as a Stable Diffusion 1\.x checkpoint", str(checkpoint))


def _drop(state: dict, prefix: str) -> dict:
    return {key: tensor for key, tensor in state.items() if not key.startswith(prefix)}


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda state: _drop(state, "model.diffusion_model."), "not a Stable Diffusion checkpoint"),
        (lambda state: _drop(state, "model.diffusion_model.out."), "some of its weights are missing"),
        (
            lambda state: _drop(state, "cond_stage_model.transformer.text_model.final_"),
            "lacks 2 text_encoder weights",
        ),
        (lambda state: _drop(state, "first_stage_model."), "could not load"),
        (lambda state: {**state, "conditioner.embedders.0.x": torch.zeros(1)}, "Stable Diffusion XL"),
        (lambda state: {**state, "cond_stage_model.model.x": torch.zeros(1)}, r"Stable Diffusion 2\.x"),
    ],
    ids=["no-unet", "missing-unet-keys", "missing-clip-keys", "no-vae", "sdxl", "sd2"],
)
def test_broken_single_files_give_one_line_errors(tmp_path, tiny, tiny_config, edit, match):
    from safetensors.torch import save_file

    from tests.ldm_export import pipeline_to_ldm

    state = {key: tensor.contiguous().clone() for key, tensor in pipeline_to_ldm(tiny).items()}
    path = tmp_path / "broken.safetensors"
    save_file(edit(state), str(path))
    with pytest.raises(ModelError, match=match) as info:
        load_components(str(path), torch.float32, False, False, single_file_config=tiny_config)
    assert "\n" not in str(info.value) and str(info.value).startswith("model.source: ")


def test_not_a_safetensors_file(tmp_path):
    path = tmp_path / "garbage.safetensors"
    path.write_bytes(b"\x00" * 64)
    model_error("not a readable .safetensors file", str(path))


# --- the shipped SD 1.x config and tokenizer -----------------------------------------------------------------------


def test_shipped_configs_build_sd1_architecture():
    """The full-size models are 1 G parameters; build them on the meta device, which allocates nothing."""
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(SINGLE_FILE_CONFIG / "unet"))
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(SINGLE_FILE_CONFIG / "vae"))
        text_encoder = CLIPTextModel(CLIPTextConfig.from_pretrained(SINGLE_FILE_CONFIG / "text_encoder"))

    def count(module: torch.nn.Module) -> int:
        return sum(p.numel() for p in module.parameters())

    assert count(unet) == 859_520_964
    assert count(vae) == 83_653_863
    assert count(text_encoder) == 123_060_480
    assert unet.config.cross_attention_dim == 768 and unet.config.sample_size == 64
    assert vae.config.scaling_factor == 0.18215 and vae.config.sample_size == 512
    assert text_encoder.config.hidden_act == "quick_gelu" and text_encoder.config.vocab_size == 49408
    assert (text_encoder.config.bos_token_id, text_encoder.config.eos_token_id) == (49406, 49407)

    scheduler = PNDMScheduler.from_pretrained(SINGLE_FILE_CONFIG, subfolder="scheduler")
    expected = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "steps_offset": 1}
    expected |= {"set_alpha_to_one": False, "skip_prk_steps": True, "num_train_timesteps": 1000}
    assert {key: scheduler.config[key] for key in expected} == expected
    index = StableDiffusionPipeline.load_config(SINGLE_FILE_CONFIG)
    assert index["unet"] == ["diffusers", "UNet2DConditionModel"]
    assert index["text_encoder"] == ["transformers", "CLIPTextModel"]
    assert index["safety_checker"] == [None, None]


def test_shipped_tokenizer_gives_clip_ids():
    bpe = (SINGLE_FILE_CONFIG / CLIP_BPE_FILE).read_bytes()  # CLIP's file, unmodified (model_configs/README.md)
    assert hashlib.sha256(bpe).hexdigest() == "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"
    tokenizer = clip_tokenizer()
    assert len(tokenizer) == 49408
    assert tokenizer("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    padded = tokenizer("A  Photo of a CAT", padding="max_length", max_length=tokenizer.model_max_length).input_ids
    assert len(padded) == 77 and padded[:7] == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert padded[7:] == [49407] * 70  # SD 1.x pads with <|endoftext|>


# --- Hugging Face repo ids, from the local cache -------------------------------------------------------------------


def test_repo_id_loads_from_the_local_cache(hf_cache, tiny_folder, tiny):
    cache_repo(hf_cache, "owner/name", tiny_folder)
    model = load_model("owner/name", device="cpu")
    assert_same_weights(components_of(model), tiny)


def test_repo_not_in_the_cache_says_how_to_get_it(hf_cache):
    model_error(r"hf download owner/missing.*model\.allow_download", "owner/missing")


def test_failed_download_is_one_line(hf_cache):
    """With downloads allowed but the Hub out of reach (offline here), the failure is still one line."""
    model_error(r"could not download 'owner/missing'", "owner/missing", allow_download=True)


def test_repo_with_only_configs_cached_counts_as_missing(hf_cache, tiny_folder):
    cache_repo(hf_cache, "owner/configs", tiny_folder, pattern="*.json")
    model_error(r"hf download owner/configs", "owner/configs")


# --- pickles: refused unless trusted, and never run when refused ---------------------------------------------------


class CreatesFile:
    """A pickle that creates ``marker`` when it is loaded: the stand-in for code run by a malicious checkpoint."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def malicious_pickle(marker: Path) -> bytes:
    payload = pickle.dumps(CreatesFile(marker))
    probe = marker.with_name("probe")  # the payload is live: unpickling it does create its file
    pickle.loads(pickle.dumps(CreatesFile(probe))).close()
    assert probe.exists()
    probe.unlink()
    return payload


@pytest.mark.parametrize("suffix", PICKLE_SUFFIXES)
def test_malicious_single_file_pickle_never_runs(tmp_path, suffix):
    marker = tmp_path / "pwned"
    checkpoint = tmp_path / f"model{suffix}"
    checkpoint.write_bytes(malicious_pickle(marker))
    model_error(r"pickle-based checkpoint.*model\.trust_pickle", str(checkpoint))
    assert not marker.exists()


@pytest.fixture(scope="module")
def pickle_folder(tmp_path_factory) -> Path:
    """The tiny pipeline saved with pickled ``.bin`` weights where the libraries still write them (U-Net, VAE)."""
    from diffusers import StableDiffusionPipeline

    folder = tmp_path_factory.mktemp("pickled") / "pipeline"
    pipe = StableDiffusionPipeline(
        **build_tiny_components(), safety_checker=None, feature_extractor=None, requires_safety_checker=False
    )
    pipe.save_pretrained(str(folder), safe_serialization=False)
    assert (folder / "unet" / "diffusion_pytorch_model.bin").is_file()
    assert not list((folder / "unet").glob("*.safetensors"))
    return folder


def test_malicious_pickle_folder_never_runs(tmp_path, pickle_folder):
    folder = tmp_path / "pipeline"
    shutil.copytree(pickle_folder, folder)
    marker = tmp_path / "pwned"
    payload = malicious_pickle(marker)
    bins = list(folder.rglob("*.bin"))
    assert bins
    for file in bins:
        file.write_bytes(payload)
    model_error(r"only pickle-based unet weights.*model\.trust_pickle", str(folder))
    assert not marker.exists()


def test_trusted_pickle_folder_loads(pickle_folder, tiny):
    model_error(r"model\.trust_pickle", str(pickle_folder))
    model = load_model(str(pickle_folder), device="cpu", trust_pickle=True)
    assert_same_weights(components_of(model), tiny)


# --- sources that are not models -----------------------------------------------------------------------------------


def test_bad_sources_give_one_line_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    model_error("no model_index.json", str(tmp_path / "empty"))
    (tmp_path / "notes.txt").write_text("not a model")
    model_error(r"notes\.txt is not a \.safetensors checkpoint", str(tmp_path / "notes.txt"))
    model_error("no model given", "")
    model_error("no model given", "   ")
    model_error("does not exist", str(tmp_path / "missing" / "model.safetensors"))
    model_error("does not exist", "models/missing.safetensors")  # looks like owner/name, but it is a file name


def test_incomplete_folder_is_refused(tmp_path, tiny_folder):
    folder = tmp_path / "pipeline"
    shutil.copytree(tiny_folder, folder, ignore=shutil.ignore_patterns("diffusion_pytorch_model.safetensors"))
    model_error("has no unet weights", str(folder))
