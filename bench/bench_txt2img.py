"""Text-to-image throughput: the engine's render path against a plain diffusers loop, same model and settings.

The engine side is what ``python -m engine render`` (and so Blender's Render Bent Frames) runs: the model loaded
by ``engine.models.load_model`` (on CUDA: channels-last U-Net and VAE), then an ``engine.runner.Runner`` on a job
with no bends, ``batch_size`` frames per U-Net call, each frame PNG-encoded on the engine's thread pool and
written with its manifest line. The diffusers side is one pipeline ``__call__`` per frame (the model family's
pipeline: ``StableDiffusionPipeline``, ``StableDiffusionXLPipeline``) on the same weights loaded diffusers' own
way (same size, steps, guidance, precision and prompt, DDIM), with each frame's initial latents passed in (the
engine's own circular-walk noise, so both render the same images) and its ``output_type="pil"`` image saved as a
PNG at the engine's compression level, so both pay the same encode. The engine also runs at batch size 1, which
separates the gain from batching from the engine's per-frame overhead. Runs are interleaved, rotating which goes
first, and each figure is the median of its runs; model loads happen once, outside the timing.

Models: ``tiny-random`` (the engine's built-in toy), ``sd15-random`` (the full SD 1.5 architecture) and
``sdxl-random`` (the full SDXL 1.0 base architecture, 2.6 B U-Net parameters) with random weights, drawn from a
fixed seed on the benchmark's device and written to a temporary diffusers folder that both sides load;
``sdxl-tiny`` (``engine.tiny_random.build_tiny_family("sdxl")``, written the same way) to check the SDXL path on
a CPU; or any model source the engine loads.

Defaults: on the CPU, tiny-random at 64x64, 20 DDIM steps, CFG 7.5, 8 frames, batch 4. With CUDA (``--gpu``, or
automatically when available): sd15-random, fp16, 512x512, 50 DDIM steps, 16 frames, the engine's auto batch.
sdxl-random: 1024x1024 (SDXL's native size), 30 DDIM steps (SDXL's recommended count), 8 frames.

    python bench/bench_txt2img.py [--gpu | --cpu] [--model tiny-random|sd15-random|sdxl-random|sdxl-tiny|PATH]
                                  [--size N] [--steps N] [--frames N] [--batch N|auto] [--compile] [--repeats N]
                                  [--threads N] [--profile] [--no-cli]
"""

from __future__ import annotations

import argparse
import atexit
import cProfile
import inspect
import io
import json
import os
import platform
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # loading bars; diffusers' and transformers' below

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from engine.events import EventStream  # noqa: E402
from engine.families import FAMILIES  # noqa: E402
from engine.job import parse_job  # noqa: E402
from engine.limits import MAX_BATCH_PIXELS  # noqa: E402
from engine.models import SINGLE_FILE_CONFIG, Model, auto_batch_size, clip_tokenizer, load_model  # noqa: E402
from engine.noise import circular_walk, noise_fields, paper_phases  # noqa: E402
from engine.runner import Runner  # noqa: E402
from engine.tiny_random import build_tiny_components, write_tiny_model  # noqa: E402

PROMPT = "a floating orb"
SEED = 46
PNG_LEVEL = 4  # engine.frame_store.encode_png's compress_level; the diffusers side saves at the same level
SD15_RANDOM = "sd15-random"
SDXL_RANDOM = "sdxl-random"
SDXL_TINY = "sdxl-tiny"
CPU_REFUSED = (
    "--model sdxl-random: the full SDXL architecture (2.6 B U-Net parameters, 10 GB in fp32) takes minutes per "
    "frame on a CPU; run it with CUDA, or use --model sdxl-tiny to check the SDXL path on the CPU"
)
SDXL_CONFIG = FAMILIES["sdxl"].config_path  # engine/model_configs/sdxl-base: SDXL 1.0 base's diffusers configs
# The models this benchmark writes to a folder itself, and how they are described in its output
GENERATED = {
    SD15_RANDOM: "SD 1.5 architecture (random weights)",
    SDXL_RANDOM: "SDXL 1.0 base architecture (random weights)",
    SDXL_TINY: "tiny SDXL (build_tiny_family('sdxl'), random weights)",
}
WARM_UP_STEPS = 2  # the warm-up run of each side: every shape once (kernels, allocator), not the whole job


# ---------------------------------------------------------------------------------------------------------------
# What runs where: device, model, machine description (shared with the other model benchmarks)


def add_device_arguments(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--gpu", action="store_true", help="require CUDA (the default when it is available)")
    where.add_argument("--cpu", action="store_true", help="run on the CPU even when CUDA is available")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads for both sides (default 1; 0: torch's own default). On a shared "
        "machine, two threads run ~10x slower whenever another process wants the CPU",
    )


def pick_device(args: argparse.Namespace) -> torch.device:
    if args.gpu and not torch.cuda.is_available():
        sys.exit("--gpu: CUDA is not available on this machine")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # for the engine processes a benchmark starts
    return torch.device("cpu" if args.cpu or not torch.cuda.is_available() else "cuda")


def quiet_progress_bars() -> None:
    """No loading or sampling bars from diffusers and transformers: they would interleave with the figures."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()


def prepare_run(args: argparse.Namespace, name: str) -> tuple[torch.device, Path]:
    """Resolve the CPU/GPU defaults (model, size, steps), quiet the warnings random weights raise, and make a
    work folder removed at exit. Shared by the model benchmarks so both compare the same setups."""
    device = pick_device(args)
    gpu = device.type == "cuda"
    args.model = args.model or (SD15_RANDOM if gpu else "tiny-random")
    if args.model == SDXL_RANDOM and not gpu:
        sys.exit(CPU_REFUSED)
    if args.model == SDXL_RANDOM:  # SDXL renders broken images below its native size; 30 steps is its usual count
        args.size, args.steps = args.size or 1024, args.steps or 30
    args.size = args.size or (512 if gpu else 64)
    args.steps = args.steps or (50 if gpu else 20)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message="invalid value encountered in cast")  # random fp16 weights: NaNs
    quiet_progress_bars()
    work = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
    atexit.register(shutil.rmtree, work, ignore_errors=True)
    return device, work


def save_sd15_random(folder: Path, device: torch.device, dtype: torch.dtype, seed: int = 0) -> Path:
    """Write the full SD 1.5 architecture (engine/model_configs/sd-v1) with random weights as a diffusers folder.

    No download, real sizes: random weights cost exactly what trained ones do. CLIP's tokenizer is built from the
    shipped BPE merges, as the engine does for single-file checkpoints. The weights are drawn on ``device`` (fast
    on a GPU) and saved as safetensors, so that both sides then load the folder their own way.
    """
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    config = SINGLE_FILE_CONFIG
    torch.manual_seed(seed)
    with torch.device(device):
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(config / "unet"))
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(config / "vae"))
        text_encoder = CLIPTextModel(CLIPTextConfig.from_pretrained(config / "text_encoder"))
    pipe = StableDiffusionPipeline(
        vae=vae.to(dtype),
        text_encoder=text_encoder.to(dtype),
        tokenizer=clip_tokenizer(),
        unet=unet.to(dtype),
        scheduler=PNDMScheduler.from_config(PNDMScheduler.load_config(config / "scheduler")),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(folder)
    del pipe, unet, vae, text_encoder
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return folder


def save_sdxl_random(
    folder: Path, device: torch.device, dtype: torch.dtype, seed: int = 0, config: Path = SDXL_CONFIG
) -> Path:
    """Write the full SDXL 1.0 base architecture (``config``: engine/model_configs/sdxl-base) with random weights
    as a diffusers folder, as ``save_sd15_random`` does for SD 1.5.

    Each module is built from its config with diffusers' and transformers' ``from_config`` on ``device`` and cast
    to ``dtype`` at once, so the fp32 copy of only one module is ever held (the U-Net's is 10 GB). Both tokenizers
    are CLIP's, built from the shipped BPE merges; the second pads with "!" as OpenCLIP's does, as the engine
    builds them for single-file SDXL checkpoints. No watermarker: the engine applies none.
    """
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    with torch.device(device):
        text_encoder = CLIPTextModel(CLIPTextConfig.from_pretrained(config / "text_encoder")).to(dtype)
        text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig.from_pretrained(config / "text_encoder_2"))
        text_encoder_2 = text_encoder_2.to(dtype)
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(config / "unet")).to(dtype)
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(config / "vae")).to(dtype)
    pipe = StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=clip_tokenizer(),
        tokenizer_2=clip_tokenizer(pad_token="!"),
        unet=unet,
        scheduler=EulerDiscreteScheduler.from_config(EulerDiscreteScheduler.load_config(config / "scheduler")),
        add_watermarker=False,
    )
    pipe.save_pretrained(folder)
    del pipe, unet, vae, text_encoder, text_encoder_2
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return folder


def model_path(source: str, device: torch.device, work: Path) -> str:
    """The model source to load: the generated models (``GENERATED``) are written to a folder under ``work`` first,
    in fp16 on CUDA and fp32 elsewhere (the precision the engine loads them in)."""
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    if source == SD15_RANDOM:
        return str(save_sd15_random(work / SD15_RANDOM, device, dtype))
    if source == SDXL_RANDOM:
        return str(save_sdxl_random(work / SDXL_RANDOM, device, dtype))
    if source == SDXL_TINY:
        return str(write_tiny_model("sdxl", work / SDXL_TINY))  # fp32; loaders cast to the engine's precision
    return source


def load_engine_model(source: str, path: str, device: torch.device, compile_unet: bool = False) -> tuple[Model, float]:
    """The engine's model, loaded as ``python -m engine render`` loads it (``load_model``: on CUDA, channels-last
    U-Net and VAE; fp16 on CUDA, fp32 on the CPU); and the seconds it took."""
    started = time.perf_counter()
    model = load_model(path, device=device.type, compile_unet=compile_unet)
    sync(device)
    model.source = source
    return model, time.perf_counter() - started


def describe_model(model: Model) -> str:
    name = GENERATED.get(model.source, model.source)
    return f"{name}, {dtype_name(model.dtype)}"


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def machine(device: torch.device) -> str:
    """The processor that does the work, in words."""
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return f"GPU {props.name} ({props.total_memory / 2**30:.0f} GiB), torch {torch.__version__}"
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"CPU {cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, torch {torch.__version__}"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# Each family's text-to-image pipeline class and its image-to-image counterpart
IMG2IMG_PIPELINES = {
    "StableDiffusionPipeline": "StableDiffusionImg2ImgPipeline",
    "StableDiffusionXLPipeline": "StableDiffusionXLImg2ImgPipeline",
}


def diffusers_pipeline(source: str, path: str, model: Model, img2img: bool = False) -> tuple[Any, str]:
    """A plain diffusers pipeline of the model's family on the same weights, loaded diffusers' own way, with a DDIM
    scheduler.

    tiny-random is built again from its fixed seed, a folder is read with ``from_pretrained``; both are moved to
    the engine's device and precision with no other setting (no channels-last, no compile), as a diffusers user
    would. Any other source shares the engine's modules. SDXL's pipeline gets no watermarker (the engine applies
    none) and, in fp16, upcasts its VAE to fp32 for each decode and back (``force_upcast``), as diffusers does; the
    engine keeps that VAE in fp32. Returns the pipeline and how it was loaded, in words.
    """
    import diffusers
    from diffusers import DDIMScheduler

    quiet_progress_bars()
    family = model.family
    cls = getattr(diffusers, IMG2IMG_PIPELINES[family.pipeline_class]) if img2img else family.pipeline_type()
    plain = family.pipeline_kwargs()
    if "add_watermarker" in inspect.signature(cls.__init__).parameters:
        plain["add_watermarker"] = False
    if source == "tiny-random":
        pipe = cls(**build_tiny_components(), **plain).to(model.device, model.dtype)
        how = "built from tiny-random's seed"
    elif Path(path).is_dir():
        pipe = cls.from_pretrained(path, dtype=model.dtype, local_files_only=True, **plain).to(model.device)
        how = f"from_pretrained(dtype={dtype_name(model.dtype)})"
    else:
        pipe = cls(**{k: getattr(model, k) for k in family.components}, **plain)
        how = "on the engine's own modules"
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    upcast = pipe.vae.dtype == torch.float16 and pipe.vae.config.get("force_upcast", False)
    return pipe, f"{cls.__name__} {how}, .to({model.device.type}), DDIM{', VAE upcast per decode' if upcast else ''}"


def save_png(image: Image.Image, path: Path) -> None:
    image.save(path, format="PNG", compress_level=PNG_LEVEL)


def max_pixel_difference(folder_a: Path, folder_b: Path, names: list[str]) -> int:
    worst = 0
    for name in names:
        a = np.asarray(Image.open(folder_a / name).convert("RGB"), dtype=np.int16)
        b = np.asarray(Image.open(folder_b / name).convert("RGB"), dtype=np.int16)
        worst = max(worst, int(np.abs(a - b).max()))
    return worst


def interleaved(runs: dict[str, Callable[[int], float]], repeats: int) -> dict[str, list[float]]:
    """A warm-up of each (round -1, which a run may make short), then ``repeats`` rounds of every run.

    The order rotates each round, so that a slow spell on this shared machine does not always hit the same run.
    """
    names = list(runs)
    for name in names:
        runs[name](-1)
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(repeats):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            times[name].append(runs[name](round_))
    return times


def profile_breakdown(label: str, fn: Callable[[], object], keys: dict[str, tuple[str, str]]) -> None:
    """Run ``fn`` under cProfile and print the cumulative time of the functions that matter, and the rest."""
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.runcall(fn)
    total = time.perf_counter() - started
    stats = pstats.Stats(profiler)
    print(f"  cProfile of one {label} run: {total:.3f} s in all (profiler overhead included)")
    for what, (file_part, function) in keys.items():
        seconds = max(  # the outermost of same-named functions in one file (CLIP's nested forwards)
            (
                row[3]  # cumulative time
                for (filename, _, name), row in stats.stats.items()  # type: ignore[attr-defined]
                if name == function and file_part in filename.replace("\\", "/")
            ),
            default=0.0,
        )
        print(f"    {what:<60} {seconds:7.3f} s  {100 * seconds / total:5.1f}%")


# The functions the profile reports, as (a part of their file's path, their name). Nested ones overlap: the
# U-Net forward is inside the pipeline call. cProfile sees the calling thread only: the engine's PNG encoding,
# on its thread pool, does not appear.
PROFILE_KEYS = {
    "U-Net forward": ("diffusers/models/unets/unet_2d_condition.py", "forward"),
    "VAE decode": ("diffusers/models/autoencoders/autoencoder_kl.py", "decode"),
    "VAE encode": ("diffusers/models/autoencoders/autoencoder_kl.py", "encode"),
    "CLIP text encoder forward": ("transformers/models/clip/modeling_clip.py", "forward"),
    "scheduler step (DDIM)": ("diffusers/schedulers/scheduling_ddim.py", "step"),
    "PNG encode (PIL save; the engine's runs on its pool, unseen)": ("PIL/Image.py", "save"),
    "os.fsync (engine: frame + folder + manifest)": ("~", "<built-in method posix.fsync>"),
    "engine FrameStore.write (file, fsyncs, manifest)": ("engine/frame_store.py", "write"),
    "engine Job.frame_hashes": ("engine/job.py", "frame_hashes"),
    "diffusers encode_prompt (every call)": ("/pipeline_stable_diffusion", "encode_prompt"),  # SD and SDXL pipelines
}


# ---------------------------------------------------------------------------------------------------------------
# Text-to-image


def job_document(args: argparse.Namespace, batch: int, model: Model, frames: int, steps: int) -> dict:
    return {
        "format": "diffusion-bender-job",
        "version": 1,
        "model": {
            "source": model.source,
            "device": model.device.type,
            "precision": "auto",
            "scheduler": "ddim",
            "threads": args.threads,  # the engine sets its own threads from the job (0: automatic)
        },
        "mode": "txt2img",
        "width": args.size,
        "height": args.size,
        "steps": steps,
        "guidance": args.guidance,
        "seed": SEED,
        "batch_size": batch,
        "prompts": [PROMPT],
        "frames": [{"frame": i + 1} for i in range(frames)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_device_arguments(parser)
    parser.add_argument(
        "--model",
        help="tiny-random (CPU default), sd15-random (CUDA default), sdxl-random, sdxl-tiny, or a model source",
    )
    parser.add_argument("--size", type=int, help="width and height (64 on the CPU, 512 on CUDA, 1024 for sdxl-random)")
    parser.add_argument("--steps", type=int, help="DDIM steps (20 on the CPU, 50 on CUDA, 30 for sdxl-random)")
    parser.add_argument("--guidance", type=float, default=7.5)
    parser.add_argument("--frames", type=int, help="frames per run (8 on the CPU, 16 on CUDA, 8 for sdxl-random)")
    parser.add_argument(
        "--batch",
        default="auto",
        help="engine batch size; auto: 4 on the CPU, the engine's own auto (free memory) on CUDA",
    )
    parser.add_argument("--compile", action="store_true", help="torch.compile the engine's U-Net (model.compile)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved timed runs of each")
    parser.add_argument("--profile", action="store_true", help="also print a cProfile breakdown of one run of each")
    parser.add_argument("--no-cli", action="store_true", help="skip timing the whole python -m engine process")
    args = parser.parse_args()
    device, work = prepare_run(args, "txt2img")
    gpu = device.type == "cuda"
    args.frames = args.frames or (16 if gpu and args.model != SDXL_RANDOM else 8)

    path = model_path(args.model, device, work)
    model, load_s = load_engine_model(args.model, path, device, compile_unet=args.compile)
    pipe, pipe_how = diffusers_pipeline(args.model, path, model)
    if args.batch != "auto":
        batch, batch_how = int(args.batch), ""
    elif gpu:  # as the runner picks it for a job with batch_size 0
        batch = max(1, min(auto_batch_size(model, args.size, args.size), MAX_BATCH_PIXELS // (args.size * args.size)))
        batch_how = " (the engine's auto, from free GPU memory)"
    else:
        batch, batch_how = 4, " (the CPU default here; the engine's auto is 1 off the GPU)"
    batch = min(batch, args.frames)  # a larger batch would run the same calls under a wrong label
    factor = model.vae_scale_factor
    a, b = noise_fields(SEED, (model.latent_channels, args.size // factor, args.size // factor))
    phases = paper_phases(args.frames)
    names = [f"frame_{i + 1:05d}.png" for i in range(args.frames)]

    def engine_run(batch_size: int) -> Callable[[int], float]:
        def run(round_: int) -> float:
            folder = work / f"engine-b{batch_size}-{round_}"
            frames, steps = (args.frames, args.steps) if round_ >= 0 else (batch_size, WARM_UP_STEPS)
            job = parse_job(job_document(args, batch_size, model, frames, steps), folder)
            started = time.perf_counter()
            Runner(job, EventStream(io.StringIO()), model=model).run()
            sync(device)
            return time.perf_counter() - started

        return run

    def diffusers_run(round_: int) -> float:
        folder = work / f"diffusers-{round_}"
        folder.mkdir()
        frames, steps = (args.frames, args.steps) if round_ >= 0 else (1, WARM_UP_STEPS)
        started = time.perf_counter()
        for i, name in enumerate(names[:frames]):
            latents = circular_walk(a, b, [phases[i]]).to(device, model.dtype)
            image = pipe(
                PROMPT,
                height=args.size,
                width=args.size,
                num_inference_steps=steps,
                guidance_scale=args.guidance,
                latents=latents,
                output_type="pil",
            ).images[0]
            save_png(image, folder / name)
        sync(device)
        return time.perf_counter() - started

    engine_label = f"engine Runner, batch {batch}"
    runs = {engine_label: engine_run(batch)}
    if batch != 1:
        runs["engine Runner, batch 1"] = engine_run(1)
    runs["diffusers pipeline, 1 call per frame"] = diffusers_run
    times = interleaved(runs, args.repeats)
    last = args.repeats - 1
    difference = max_pixel_difference(work / f"engine-b{batch}-{last}", work / f"diffusers-{last}", names)

    print(
        f"txt2img throughput: {describe_model(model)}, {args.size}x{args.size}, {args.steps} DDIM steps, "
        f"CFG {args.guidance:g}, prompt {PROMPT!r}, {args.frames} frames per run, median of {args.repeats} "
        f"interleaved runs"
    )
    print(f"  on {machine(device)}")
    print(
        f"  engine: load_model() then Runner.run() on a job with no bends, batch {batch}{batch_how}"
        f"{', compiled U-Net' if args.compile else ''} (what python -m engine render does), PNG-encoded on the "
        "engine's thread pool, written with a manifest line, fsynced"
    )
    print(
        f"  diffusers: {pipe_how}; pipe(prompt, latents=that frame's engine noise, output_type='pil') per frame, "
        f"saved as PNG (compress_level {PNG_LEVEL}) on the same thread"
    )
    base = statistics.median(times["diffusers pipeline, 1 call per frame"])
    for name, values in times.items():
        median = statistics.median(values)
        fps = args.frames / median
        print(
            f"  {name:<40} {fps:8.2f} frames/s  {1000 * median / args.frames:8.1f} ms/frame   "
            f"speed vs diffusers {base / median:5.2f}x"
        )
    goal = "goal >= 3x on GPU" if gpu else "GPU goal >= 3x; this is the CPU figure"
    print(
        f"  ratio engine (batch {batch}) / diffusers frames per second: "
        f"{base / statistics.median(times[engine_label]):.2f}x ({goal})"
    )
    print(
        f"  same images: max pixel difference engine vs diffusers {difference} of 255 "
        f"(engine model load, once, untimed: {load_s:.2f} s)"
    )

    if not args.no_cli and args.model == "tiny-random" and not gpu:
        time_cli(args, batch, model, work)
    if args.profile:
        profile_breakdown(f"engine (batch {batch})", lambda: engine_run(batch)(1000), PROFILE_KEYS)
        profile_breakdown("engine (batch 1)", lambda: engine_run(1)(1001), PROFILE_KEYS)
        profile_breakdown("diffusers loop", lambda: diffusers_run(1002), PROFILE_KEYS)


def time_cli(args: argparse.Namespace, batch: int, model: Model, work: Path) -> None:
    """The whole ``python -m engine render`` process on the same job, as Blender launches it: start-up included."""
    folder = work / "cli"
    folder.mkdir()
    document = job_document(args, batch, model, args.frames, args.steps)
    (folder / "job.json").write_text(json.dumps(document), encoding="utf-8")
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "engine", "render", str(folder / "job.json")],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - started
    events = {e["event"]: e for e in map(json.loads, result.stdout.splitlines())}
    loaded, done = events["loaded"]["seconds"], events["done"]["seconds"]
    print(
        f"  whole python -m engine render process, same job, one run: {wall:.2f} s = start-up and imports "
        f"{wall - done:.2f} s + model load {loaded:.2f} s + rendering {done - loaded:.2f} s "
        f"({args.frames / wall:.2f} frames/s end to end)"
    )


if __name__ == "__main__":
    main()
