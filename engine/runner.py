"""Running a job: decide which frames need work, render them in batches, and record each as it lands.

Frames already in the output folder with the same parameter hash are skipped, so re-running a job resumes it
and a changed frame re-renders alone. The model loads only when there is something to render.

Text-to-image frames are independent: they render ``batch_size`` at a time, each sample with its own noise
phase, prompt mix and bend parameters. Image-to-image frames each start from the previous frame's image, so
they render one by one, in order; a frame range must start where the previous frame is already rendered.
Finished frames are PNG-encoded on a thread pool while the next batch renders, then written and recorded in
order.
"""

from __future__ import annotations

import contextlib
import re
import sys
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .bends import ParamBatch
from .errors import BendError, EngineError, JobError
from .events import EventStream
from .files import read_regular
from .frame_store import FrameStore, encode_png
from .job import FrameSpec, Job, frame_record
from .limits import MAX_BATCH_PIXELS, MAX_IMAGE_BYTES
from .noise import NoiseWalk, noise_walk
from .stack import BendStack

# torch, numpy and the model's libraries load once a frame needs rendering (``load_model``, ``Runner._load``): the
# start event comes first, and a job with nothing left to render never loads them (a fast cold start)
if TYPE_CHECKING:
    import numpy as np
    import torch

    from .conditioning import PromptBank
    from .lora import LoraSet
    from .models import Model

# PNG encoding (zlib releases the GIL) runs beside the sampler so the GPU never waits on disk. Frames are still
# written and recorded in render order; a bounded queue keeps memory flat on long renders.
PNG_WORKERS = 4
MAX_PENDING_FRAMES = 32
# Prompt banks kept for text-encoder LoRA weights other than 0: a held weight (a keyframe's plateau) reuses its bank,
# and a weight driven to a new value every frame never piles up embeddings
LORA_BANKS = 16


@dataclass
class RunSummary:
    rendered: list[int]
    skipped: list[int]
    seconds: float


def is_out_of_memory(exc: BaseException) -> bool:
    """CUDA's OutOfMemoryError, host memory running out, or the plain RuntimeError that MPS raises for the same."""
    if isinstance(exc, MemoryError):
        return True
    torch = sys.modules.get("torch")  # not loaded yet: nothing can have raised its error (and no import here)
    # torch 2.x: torch.OutOfMemoryError, with torch.cuda.OutOfMemoryError an alias of it.
    if torch is not None and isinstance(exc, getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def _memory_detail(exc: BaseException) -> str:
    """The useful start of an allocator's message (CUDA's runs on into a paragraph of tuning advice)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    first = text.split(". ")[0].rstrip(".")
    allocation = re.search(r"Tried to allocate [0-9.]+ [KMGT]?i?B", text)
    if allocation is None or allocation.group(0) in first:
        return first
    return f"{first}; t{allocation.group(0)[1:]}"


def parse_frame_range(text: str) -> tuple[int, int]:
    """``"A-B"`` (inclusive) or ``"A"``, as given to ``--frames``."""
    first, sep, last = text.partition("-")
    try:
        start = int(first)
        end = int(last) if sep else start
    except ValueError:
        raise JobError(f"--frames: expected A-B or A with frame numbers, got {text!r}") from None
    if end < start:
        raise JobError(f"--frames: the range {text!r} ends before it starts")
    return start, end


def load_model(*args: Any, **kwargs: Any) -> Model:
    """``models.load_model``, imported with the first model a runner loads (it brings torch and diffusers)."""
    from .models import load_model as load

    return load(*args, **kwargs)


def _batches(items: Sequence[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


class Runner:
    """Renders one job into its output folder, streaming events."""

    def __init__(
        self,
        job: Job,
        events: EventStream,
        *,
        should_stop: Callable[[], bool] = lambda: False,
        model: Model | None = None,
    ) -> None:
        self.job = job
        self.events = events
        self.should_stop = should_stop
        self.store = FrameStore(job.output_folder)
        self._model = model
        self._stack = BendStack(job.bends, job.nonfinite)
        self._pending: deque[tuple[int, Future, str, float]] = deque()
        self._rendered: list[int] = []

    @property
    def model(self) -> Model | None:
        """The model this runner rendered with (None while nothing needed rendering), for reuse by the next job."""
        return self._model

    def run(self, frame_range: tuple[int, int] | None = None) -> RunSummary:
        started = time.perf_counter()
        job = self.job
        selected = [
            i for i, f in enumerate(job.frames) if frame_range is None or frame_range[0] <= f.frame <= frame_range[1]
        ]
        if not selected:
            raise JobError(f"--frames: no frame of the job lies in {frame_range[0]}-{frame_range[1]}")
        if self._model is None and job.model.device not in ("auto", "cpu"):  # these two need no torch to check
            from .models import pick_device

            pick_device(job.model.device)  # a device this machine lacks is refused before any work
        created = not job.output_folder.exists()
        try:
            self._run(selected, started)
        except BaseException:
            if created:  # a render that failed before its first frame leaves no empty folder behind
                with contextlib.suppress(OSError):
                    job.output_folder.rmdir()  # only succeeds while empty
            raise
        return self._summary

    def _run(self, selected: list[int], started: float) -> None:
        job = self.job
        self.store.prepare()
        hashes = job.frame_hashes()
        manifest = self.store.load_manifest()
        self._done = {i for i, f in enumerate(job.frames) if self.store.is_done(manifest.get(f.frame), hashes[i])}
        todo = [i for i in selected if i not in self._done]
        skipped = [job.frames[i].frame for i in selected if i in self._done]
        self.events.emit("start", frames=len(selected), todo=len(todo), skipped=len(skipped))
        self._rendered = []
        if todo:
            if job.mode == "img2img":
                self._check_chain(todo)
            self._prepare_model()
            render = self._render_txt2img if job.mode == "txt2img" else self._render_img2img
            with ThreadPoolExecutor(max_workers=PNG_WORKERS, thread_name_prefix="png") as self._encoder:
                try:
                    render(todo, hashes)
                    self._commit(wait=True)
                except BaseException:
                    self._commit_what_remains()  # stopped or failing: every frame rendered so far is kept
                    raise
        seconds = time.perf_counter() - started
        self.events.emit("done", rendered=len(self._rendered), skipped=len(skipped), seconds=round(seconds, 3))
        self._summary = RunSummary(rendered=self._rendered, skipped=skipped, seconds=seconds)

    def _prepare_model(self) -> None:
        try:
            self._load()
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
            raise EngineError(
                f'out of memory loading the model ({_memory_detail(exc)}): use "memory": "low" in the job\'s '
                "model (in Blender: Preferences > Memory: Low), or a smaller model"
            ) from exc

    def _load(self) -> None:
        import torch

        from .models import VAE_TILING_PIXELS, auto_batch_size, use_threads
        from .sampler import BentSampler

        job = self.job
        started = time.perf_counter()
        use_threads(job.model.threads)  # every time: a warm engine's next job may ask for another count
        if self._model is None:
            spec = job.model
            self._model = load_model(
                spec.source,
                device=spec.device,
                precision=spec.precision,
                scheduler=spec.scheduler,
                allow_download=spec.allow_download,
                trust_pickle=spec.trust_pickle,
                memory=spec.memory,
                compile_unet=spec.compile,
                family=spec.family,
                config=spec.config,
            )
        model = self._model
        if job.width * job.height > VAE_TILING_PIXELS:
            model.vae.enable_tiling()
        self.batch_size = job.batch_size or max(
            1, min(auto_batch_size(model, job.width, job.height), MAX_BATCH_PIXELS // (job.width * job.height))
        )
        self.bank = self._prompt_bank()
        for message in model.family.advice(job.width, job.height, job.guidance):
            self.events.emit("warning", message=message)
        self.sampler = BentSampler(
            model,
            self._stack,
            steps=job.steps,
            guidance=job.guidance,
            uncond=self._negative(self.bank),
            should_stop=self.should_stop,
        )
        self._load_loras(model)
        factor = model.vae_scale_factor
        self.latent_shape = (model.latent_channels, job.height // factor, job.width // factor)
        self.events.emit(
            "loaded",
            model=model.source,
            device=str(model.device),
            dtype=str(model.dtype).replace("torch.", ""),
            batch_size=self.batch_size,
            threads=torch.get_num_threads(),
            seconds=round(time.perf_counter() - started, 3),
        )

    def _prompt_bank(self, warn: bool = True) -> PromptBank:
        """The job's prompts, encoded as the model's family encodes them (``_conditioning`` makes more, under LoRAs)."""
        from .conditioning import PromptBank

        report = (lambda m: self.events.emit("warning", message=m)) if warn else (lambda m: None)
        return PromptBank.for_model(self._model, self.job.prompts, warn=report)

    def _negative(self, bank: PromptBank) -> Any:
        """The unconditional branch's conditioning: the negative prompt, as the family encodes it."""
        return self._model.family.negative(self._model, bank.conditioning, self.job.negative_prompt)

    def _load_loras(self, model: Model) -> None:
        """Read the job's LoRAs and fit them to the model: every render reads the files, which may have changed."""
        self._loras: LoraSet | None = None
        self._banks: OrderedDict[tuple, tuple[PromptBank, Any]] = OrderedDict()
        self._uncond = self.sampler.uncond
        if not self.job.loras:
            return
        from .lora import LoraSet, load_lora

        self._text_encoders = {name: getattr(model, name, None) for name in ("text_encoder", "text_encoder_2")}
        components = {"unet": model.unet, **self._text_encoders}
        trust, device, dtype = self.job.model.trust_pickle, model.device, model.dtype
        self._loras = LoraSet(
            [load_lora(s, components, trust_pickle=trust, device=device, dtype=dtype) for s in self.job.loras]
        )

    def _lora_hooks(self, frames: Sequence[FrameSpec]) -> contextlib.AbstractContextManager:
        """The U-Net with each frame's LoRA weights, one per sample, for the duration of a batch."""
        if self._loras is None:
            return contextlib.nullcontext()
        weights = {s.name: ParamBatch(tuple(f.loras[s.name] for f in frames)) for s in self.job.loras}
        return self._loras.hooks("unet", self._model.unet, weights)

    def _conditioning(self, frames: Sequence[FrameSpec], prompt: str | None = None) -> Any:
        """Each frame's conditioning: its prompt mix (or ``prompt``), encoded under its text-encoder LoRA weights.

        Embeddings depend on those weights, so they key the prompt cache: frames at other weights get banks of their
        own (a few kept), and the sampler gets each frame's negative conditioning too. Without text-encoder LoRAs (or
        at weight 0) this is the job's one bank, as before.
        """
        from .conditioning import Conditioning
        from .lora import text_encoder_key

        keys = [text_encoder_key(self._loras, f.loras) for f in frames]
        if not any(keys):
            self.sampler.uncond = self._uncond
            bank = self.bank
            return bank.mixed([f.prompt_weights for f in frames]) if prompt is None else bank.conditioning([prompt])
        parts, negatives = [], []
        for frame, key in zip(frames, keys, strict=True):
            with self._loras.text_encoders(self._text_encoders, dict(key)):
                bank, negative = self._keyed_bank(key)
                parts.append(bank.mixed([frame.prompt_weights]) if prompt is None else bank.conditioning([prompt]))
            negatives.append(Conditioning.of(negative))
        self.sampler.uncond = Conditioning.cat(negatives)  # one row per frame, in the batch's order
        return Conditioning.cat([Conditioning.of(p) for p in parts])

    def _keyed_bank(self, key: tuple) -> tuple[PromptBank, Any]:
        """The prompt bank and negative conditioning for text-encoder LoRA weights ``key``; called with the text
        encoders under those weights. At most ``LORA_BANKS`` are kept: a driven weight changes every frame."""
        if not key:
            return self.bank, self._uncond
        hit = self._banks.get(key)
        if hit is None:
            bank = self._prompt_bank(warn=False)  # the job's one bank has warned about long prompts already
            hit = self._banks[key] = (bank, self._negative(bank))
            while len(self._banks) > LORA_BANKS:
                self._banks.popitem(last=False)
        self._banks.move_to_end(key)
        return hit

    def _params(self, frames: Sequence[FrameSpec]) -> dict[str, ParamBatch]:
        # Frame numbers travel with the values: seeded operators (gaussian_noise) draw per frame, not per batch slot
        numbers = tuple(f.frame for f in frames)
        return {
            p.bend.name: ParamBatch(tuple(f.params.get(p.bend.name, 0.0) for f in frames), numbers)
            for p in self.job.bends
        }

    def _follow_steps(self, frames: Sequence[int]) -> None:
        numbers = list(frames)

        def on_step(step: int, steps: int) -> None:
            # Frames whose PNG finished encoding are written at every step, not only when the next frame is done:
            # a crash or a kill mid-batch then loses none of them.
            self._commit(wait=False)
            self.events.emit("step", frames=numbers, step=step, steps=steps)

        self.sampler.on_step = on_step

    def _record(self, index: int, image: np.ndarray, frame_hash: str, seconds: float) -> None:
        """Queue a finished frame: PNG encoding runs on the pool while the next batch renders."""
        self._pending.append((index, self._encoder.submit(encode_png, image), frame_hash, seconds))
        self._commit(wait=len(self._pending) > MAX_PENDING_FRAMES)

    def _commit_what_remains(self) -> None:
        """Write every frame still queued, when a render stops or fails; a write error here (the disk filled up
        after the real error) must not hide the error that ended the render, so it only loses that one frame."""
        while self._pending:
            try:
                self._commit(wait=True)
            except EngineError:
                continue

    def _commit(self, wait: bool) -> None:
        """Write encoded frames in order (files, manifest lines, events); ``wait`` also drains the queue."""
        while self._pending and (wait or self._pending[0][1].done()):
            index, encoded, frame_hash, seconds = self._pending.popleft()
            frame = self.job.frames[index]
            record = {
                "hash": frame_hash,
                "seed": self.job.frame_seed(index),
                "seconds": round(seconds, 4),
                "params": frame_record(frame),
            }
            path = self.store.write(frame.frame, encoded.result(), record)
            self._rendered.append(frame.frame)
            self.events.emit("frame", frame=frame.frame, file=str(path), seconds=round(seconds, 4))

    def _render_txt2img(self, todo: Sequence[int], hashes: Sequence[str]) -> None:
        job = self.job
        walk = noise_walk(job.noise_seed, self.latent_shape, job.noise_mode)
        for batch in _batches(todo, self.batch_size):
            started = time.perf_counter()
            frames = [job.frames[i] for i in batch]
            self._follow_steps(f.frame for f in frames)
            images = self._bent(frames, self._txt2img_latents, frames, walk)
            seconds = (time.perf_counter() - started) / len(batch)
            for index, image in zip(batch, images, strict=True):
                self._record(index, image, hashes[index], seconds)

    def _txt2img_latents(self, frames: Sequence[FrameSpec], walk: NoiseWalk) -> torch.Tensor:
        noise = walk.at([f.phase for f in frames])
        cond = self._conditioning(frames)
        return self.sampler.txt2img(noise, cond, self._params(frames), seed=self.job.noise_seed)

    def _bent(self, frames: Sequence[FrameSpec], make_latents: Callable[..., torch.Tensor], *args) -> np.ndarray:
        """Run the sampler, naming the frames in any bend error or out-of-memory error raised mid-render."""
        numbers = ", ".join(str(f.frame) for f in frames)
        try:
            with self._lora_hooks(frames):
                latents = make_latents(*args)
            return self.sampler.decode(latents)
        except BendError as exc:
            raise BendError(f"frame {numbers}: {exc}") from exc
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
            raise EngineError(f"frame {numbers}: {self._memory_advice(exc, len(frames))}") from exc

    def _memory_advice(self, exc: BaseException, batch: int) -> str:
        """What to change after running out of memory: the batch first (it costs no quality), then size, then mode."""
        job = self.job
        fixes = []
        if batch > 1:
            half = f"{batch // 2}, or 1" if batch >= 4 else "1"
            fixes.append(f"a smaller batch size (batch_size is {batch}; try {half})")
        fixes.append(f"a smaller output size (now {job.width}×{job.height})")
        if job.model.memory != "low":
            fixes.append('"memory": "low" in the job\'s model (in Blender: Preferences > Memory: Low)')
        return (
            f"out of memory on {self._model.device if self._model else 'the device'} ({_memory_detail(exc)}); "
            f"render with {', or '.join(fixes)}. Finished frames are kept: render again to resume"
        )

    def _check_chain(self, todo: Sequence[int]) -> None:
        first = todo[0]
        if first > 0 and first - 1 not in self._done:
            frame, previous = self.job.frames[first].frame, self.job.frames[first - 1].frame
            raise JobError(
                f"--frames: image-to-image frame {frame} starts from frame {previous}, which is not rendered yet; "
                "render from the first frame"
            )

    def _render_img2img(self, todo: Sequence[int], hashes: Sequence[str]) -> None:
        job = self.job
        previous: tuple[int, np.ndarray] | None = None  # the frame just rendered, kept in memory
        for index in todo:
            started = time.perf_counter()
            frame = job.frames[index]
            self._follow_steps([frame.frame])
            if index == 0 and job.init_image is None:
                walk = noise_walk(job.noise_seed, self.latent_shape, job.noise_mode)
                image = self._bent([frame], self._txt2img_latents, [frame], walk)[0]
            else:
                kept = previous is not None and previous[0] == index - 1
                source = previous[1] if kept else self._source_image(index)
                image = self._bent([frame], self._img2img_latents, index, source)[0]
            self._record(index, image, hashes[index], time.perf_counter() - started)
            # Kept in the memory layout of a PNG read back (row-major): decode's array is a channel-first view, and
            # the VAE encoder would then take another kernel and round differently (seen with one CPU thread), so a
            # chain rendered in one go and one resumed, or previewed, from the PNG files would not agree
            import numpy as np

            previous = (index, np.ascontiguousarray(image))

    def _source_image(self, index: int) -> np.ndarray:
        """The image frame ``index`` starts from: the init image for the first frame, else the previous frame."""
        if index > 0:
            return self.store.read(self.job.frames[index - 1].frame)
        import io

        import numpy as np
        from PIL import Image

        data = read_regular(self.job.init_image, "img2img.init_image", MAX_IMAGE_BYTES)
        with Image.open(io.BytesIO(data)) as image:
            image = image.convert("RGB")
            if image.size != (self.job.width, self.job.height):
                image = image.resize((self.job.width, self.job.height), Image.Resampling.LANCZOS)
            return np.asarray(image)

    def _img2img_latents(self, index: int, source: np.ndarray) -> torch.Tensor:
        job, frame = self.job, self.job.frames[index]
        seed = job.frame_seed(index)
        cond = self._conditioning([frame], job.img2img_prompt)
        latents = self.sampler.encode(source[None], seed)
        return self.sampler.img2img(latents, cond, self._params([frame]), frame.strength, seed)
