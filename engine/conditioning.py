"""Text conditioning: each distinct prompt is encoded once, and frames mix the embeddings by weight.

The paper interpolates linearly between the CLIP encodings of two prompts. Here any number of prompts mix with
per-frame weights, normalised to sum to 1, so a crossfade is two keyframed weights.

What a prompt encodes to depends on the model family (see ``families/``): SD 1.x and 2.x give one encoder's hidden
states; SDXL gives two encoders' hidden states side by side plus a pooled embedding. A ``Conditioning`` holds
whichever a family gives, and every part of it mixes with the same weights.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

PromptEncoder = Callable[[Sequence[str]], "Conditioning"]


@dataclass(frozen=True)
class Conditioning:
    """One row per sample: ``hidden`` (rows, tokens, dim) for cross-attention, ``pooled`` (rows, dim) or None."""

    hidden: torch.Tensor
    pooled: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.hidden.shape[0]

    @staticmethod
    def of(value: Conditioning | torch.Tensor) -> Conditioning:
        """A conditioning from a bare hidden-state tensor (what SD 1.x's embeddings were before families)."""
        return value if isinstance(value, Conditioning) else Conditioning(value)

    def _map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> Conditioning:
        return Conditioning(fn(self.hidden), None if self.pooled is None else fn(self.pooled))

    def to(self, device: torch.device, dtype: torch.dtype) -> Conditioning:
        return self._map(lambda t: t.to(device, dtype))

    def rows(self, indices: Sequence[int]) -> Conditioning:
        index = torch.tensor(list(indices), dtype=torch.long, device=self.hidden.device)
        return self._map(lambda t: t.index_select(0, index))

    def expand(self, batch: int) -> Conditioning:
        """A one-row conditioning repeated for ``batch`` samples."""
        return self._map(lambda t: t.expand(batch, *t.shape[1:]))

    def zeros_like(self) -> Conditioning:
        return self._map(torch.zeros_like)

    def mix(self, weights: torch.Tensor) -> Conditioning:
        """Rows mixed by ``weights`` (frames, rows), each part the same way."""
        weights = weights.to(self.hidden.device, self.hidden.dtype)
        pooled = None if self.pooled is None else weights @ self.pooled
        return Conditioning(torch.einsum("fp,ptd->ftd", weights, self.hidden), pooled)

    @staticmethod
    def cat(parts: Sequence[Conditioning]) -> Conditioning:
        """Rows of several conditionings, in order (the unconditional branch, then the conditional one)."""
        pooled = [p.pooled for p in parts]
        return Conditioning(
            torch.cat([p.hidden for p in parts]),
            None if any(p is None for p in pooled) else torch.cat(pooled),  # type: ignore[arg-type]
        )


class PromptBank:
    """Embeddings of a fixed list of prompts, encoded once and mixed per frame.

    ``encoder`` turns prompts into a ``Conditioning`` (``PromptBank.for_model`` uses the model's family). Without
    one, prompts are encoded as SD 1.x encodes them: ``text_encoder``'s last hidden states.

    ``conditioning`` and ``mixed`` give whole ``Conditioning`` objects (what the sampler takes for every family);
    ``encode`` and ``mix`` give the hidden states alone, as tensors, for single-encoder families only.
    """

    def __init__(
        self,
        tokenizer,
        text_encoder: torch.nn.Module,
        prompts: Sequence[str],
        *,
        warn: Callable[[str], None] = lambda message: None,
        encoder: PromptEncoder | None = None,
    ) -> None:
        self._tokenizer = tokenizer
        self._text_encoder = text_encoder
        self._encoder = encoder or self._last_hidden_states
        self._cache: dict[str, Conditioning] = {}
        self._warn = warn
        unique = list(dict.fromkeys(prompts))
        self.embeddings = self.conditioning(unique)
        self._index = {prompt: i for i, prompt in enumerate(unique)}
        self._rows = [self._index[prompt] for prompt in prompts]

    @classmethod
    def for_model(cls, model, prompts: Sequence[str], *, warn: Callable[[str], None] = lambda m: None) -> PromptBank:
        """A bank that encodes prompts as ``model``'s family does."""
        return cls(
            model.tokenizer,
            model.text_encoder,
            prompts,
            warn=warn,
            encoder=lambda batch: model.family.encode(model, batch),
        )

    def _last_hidden_states(self, prompts: Sequence[str]) -> Conditioning:
        ids = self._tokenizer(
            list(prompts),
            padding="max_length",
            max_length=self._tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids
        device = next(self._text_encoder.parameters()).device
        with torch.inference_mode():
            return Conditioning(self._text_encoder(ids.to(device))[0])

    def conditioning(self, prompts: Sequence[str]) -> Conditioning:
        """Encode prompts in one batch, padded to the tokenizer's length; longer prompts are truncated."""
        missing = [p for p in dict.fromkeys(prompts) if p not in self._cache]
        if missing:
            limit = self._tokenizer.model_max_length
            for prompt in missing:
                n_tokens = len(self._tokenizer(prompt).input_ids)
                if n_tokens > limit:
                    self._warn(f"prompt {prompt[:40]!r}... has {n_tokens} tokens; only the first {limit} are used")
            encoded = self._encoder(missing)
            for i, prompt in enumerate(missing):
                self._cache[prompt] = encoded.rows([i])
        return Conditioning.cat([self._cache[p] for p in prompts])

    def mixed(self, weights: Sequence[Sequence[float]]) -> Conditioning:
        """One conditioning per frame: every part of the prompts' embeddings averaged by weight (``hidden``: frames,
        tokens, dim; SDXL's ``pooled``: frames, dim).

        Weights are ≥ 0 with a positive sum (the job parser checks this); they are normalised to sum to 1.
        """
        w = torch.tensor([list(row) for row in weights], dtype=torch.float64)
        per_prompt = torch.zeros(w.shape[0], len(self._index), dtype=torch.float64)
        per_prompt.index_add_(1, torch.tensor(self._rows), w)
        normalised = per_prompt / per_prompt.sum(dim=1, keepdim=True)
        return self.embeddings.mix(normalised)

    def _hidden_only(self, conditioning: Conditioning) -> torch.Tensor:
        if conditioning.pooled is not None:  # a caller that would drop SDXL's pooled embedding must say so loudly
            raise TypeError("this model's conditioning has pooled embeddings; use conditioning() and mixed()")
        return conditioning.hidden

    def encode(self, prompts: Sequence[str]) -> torch.Tensor:
        """The prompts' hidden states (prompts, tokens, dim), for a single-encoder family (SD 1.x, SD 2.x)."""
        return self._hidden_only(self.conditioning(prompts))

    def mix(self, weights: Sequence[Sequence[float]]) -> torch.Tensor:
        """The mixed hidden states (frames, tokens, dim), for a single-encoder family (SD 1.x, SD 2.x)."""
        return self._hidden_only(self.mixed(weights))
