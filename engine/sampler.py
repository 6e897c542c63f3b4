"""The bent sampling loop, on diffusers' public scheduler, U-Net and VAE APIs.

One loop serves both video modes and any batch size. Each sample in a batch carries its own bend parameters,
so several text-to-image frames share one U-Net call. The loop is diffusers' own text-to-image and
image-to-image sampling (same timesteps, guidance formula, VAE scaling and noise order), with two additions:
the bend stack is applied at each latent layer (see ``stack.py``), and a stop request is honoured between steps.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping

import numpy as np
import torch

from .bends import ParamBatch
from .conditioning import Conditioning
from .errors import RenderCancelled
from .families.base import guidance_embedding  # noqa: F401  (re-exported: its home before families)
from .models import Model
from .stack import BendStack, HookState

StepCallback = Callable[[int, int], None]
# Samples per VAE decode call: batched, but bounded, because the decoder's full-resolution activations dominate
# memory at large batch sizes.
DECODE_CHUNK = 8


class BentSampler:
    """Denoise batches of latents with a bend stack, for one model and one set of sampling settings."""

    def __init__(
        self,
        model: Model,
        stack: BendStack,
        *,
        steps: int,
        guidance: float,
        uncond: Conditioning | torch.Tensor,
        on_step: StepCallback | None = None,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> None:
        self.model = model
        self.stack = stack
        self.steps = steps
        self.guidance = guidance
        self.uncond = uncond  # as given: callers (and tests) read it back
        self.on_step = on_step
        self.should_stop = should_stop
        self._hook_state = HookState()
        step_parameters = inspect.signature(model.scheduler.step).parameters
        self._step_takes_generator = "generator" in step_parameters
        self._step_kwargs = {"eta": 0.0} if "eta" in step_parameters else {}
        self._guidance_dim = model.unet.config.get("time_cond_proj_dim")

    @property
    def uses_guidance(self) -> bool:
        """Classifier-free guidance, two branches per step; guidance-distilled models embed the scale instead."""
        return self.guidance > 1.0 and self._guidance_dim is None

    def txt2img(
        self, noise: torch.Tensor, cond: Conditioning | torch.Tensor, params: Mapping[str, ParamBatch], seed: int
    ) -> torch.Tensor:
        """Denoise a batch of initial noise ``(B, C, h, w)`` under per-sample conditions; returns final latents."""
        scheduler = self.model.scheduler
        scheduler.set_timesteps(self.steps, device=self.model.device)
        x = noise.to(self.model.device, self.model.dtype) * scheduler.init_noise_sigma
        return self._denoise(x, scheduler.timesteps, cond, params, seed)

    def img2img(
        self,
        image_latents: torch.Tensor,
        cond: Conditioning | torch.Tensor,
        params: Mapping[str, ParamBatch],
        strength: float,
        seed: int,
    ) -> torch.Tensor:
        """Noise clean latents to ``strength`` and denoise them, running ``int(steps·strength)`` steps."""
        scheduler = self.model.scheduler
        scheduler.set_timesteps(self.steps, device=self.model.device)
        steps_run = min(int(self.steps * strength), self.steps)
        start = (self.steps - steps_run) * scheduler.order
        timesteps = scheduler.timesteps[start:]
        if hasattr(scheduler, "set_begin_index"):
            scheduler.set_begin_index(start)
        x = image_latents.to(self.model.device, self.model.dtype)  # a VAE kept in fp32 gives fp32 latents
        if steps_run > 0:
            generator = torch.Generator(device="cpu").manual_seed(seed)
            noise = torch.randn(x.shape, generator=generator, dtype=torch.float32).to(x.device, x.dtype)
            x = scheduler.add_noise(x, noise, timesteps[:1].repeat(x.shape[0]))
        return self._denoise(x, timesteps, cond, params, seed)

    def _denoise(
        self,
        x: torch.Tensor,
        timesteps: torch.Tensor,
        cond: Conditioning | torch.Tensor,
        params: Mapping[str, ParamBatch],
        seed: int,
    ) -> torch.Tensor:
        model, scheduler, stack = self.model, self.model.scheduler, self.stack
        steps_run = len(timesteps)
        cond = Conditioning.of(cond).to(model.device, model.dtype)
        if self.uses_guidance:
            uncond = Conditioning.of(self.uncond).to(model.device, model.dtype)
            embeddings = Conditioning.cat([uncond.expand(x.shape[0]), cond])
        else:
            embeddings = cond
        step_kwargs = dict(self._step_kwargs)
        if self._step_takes_generator:
            step_kwargs["generator"] = torch.Generator(device="cpu").manual_seed(seed)
        # The family's per-step U-Net arguments (cross-attention states; SDXL's pooled embeddings and time ids;
        # an LCM U-Net's guidance embedding), the same at every step
        factor = model.vae_scale_factor
        unet_kwargs = model.family.unet_kwargs(
            model,
            embeddings,
            len(embeddings),
            height=x.shape[-2] * factor,
            width=x.shape[-1] * factor,
            guidance=self.guidance,
        )
        self._hook_state.params = params
        with torch.inference_mode(), stack.unet_hooks(model.unet, self._hook_state):
            for step, t in enumerate(timesteps):
                if self.should_stop():
                    raise RenderCancelled("render stopped")
                x = stack.apply_latent(step, steps_run, x, params)
                x_in = torch.cat([x, x]) if self.uses_guidance else x
                x_in = scheduler.scale_model_input(x_in, t)
                self._hook_state.step = step
                eps = model.unet(x_in, t, **unet_kwargs).sample
                if self.uses_guidance:
                    eps_uncond, eps_cond = eps.chunk(2)
                    eps = eps_uncond + self.guidance * (eps_cond - eps_uncond)
                x = scheduler.step(eps, t, x, **step_kwargs).prev_sample
                if self.on_step is not None:
                    self.on_step(step + 1, steps_run)
            x = stack.apply_latent(steps_run, steps_run, x, params)
        return x

    def decode(self, latents: torch.Tensor) -> np.ndarray:
        """Latents to ``uint8`` RGB images ``(B, H, W, 3)``, rounded as diffusers rounds them."""
        vae = self.model.vae
        scaled = latents.to(vae.dtype) / vae.config.scaling_factor
        with torch.inference_mode():
            images = torch.cat([vae.decode(chunk).sample for chunk in scaled.split(DECODE_CHUNK)])
            images = (images / 2 + 0.5).clamp(0, 1)
        return (images.permute(0, 2, 3, 1).float().cpu().numpy() * 255).round().astype(np.uint8)

    def encode(self, images: np.ndarray, seed: int) -> torch.Tensor:
        """``uint8`` RGB images ``(B, H, W, 3)`` to latents, sampling the VAE posterior from ``seed``."""
        vae = self.model.vae
        pixels = torch.from_numpy(np.array(images)).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        generator = torch.Generator(device="cpu").manual_seed(seed)
        with torch.inference_mode():
            posterior = vae.encode(pixels.to(self.model.device, vae.dtype)).latent_dist
            sample = torch.randn(posterior.mean.shape, generator=generator, dtype=torch.float32)
            latents = posterior.mean + posterior.std * sample.to(posterior.mean.device, posterior.mean.dtype)
        return latents * vae.config.scaling_factor
