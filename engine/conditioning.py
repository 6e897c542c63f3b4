"""Text conditioning: each distinct prompt is encoded once, and frames mix the embeddings by weight.

The paper interpolates linearly between the CLIP encodings of two prompts. Here any number of prompts mix with
per-frame weights, normalised to sum to 1, so a crossfade is two keyframed weights.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch


class PromptBank:
    """CLIP embeddings of a fixed list of prompts, encoded once and mixed per frame."""

    def __init__(
        self,
        tokenizer,
        text_encoder: torch.nn.Module,
        prompts: Sequence[str],
        *,
        warn: Callable[[str], None] = lambda message: None,
    ) -> None:
        self._tokenizer = tokenizer
        self._text_encoder = text_encoder
        self._cache: dict[str, torch.Tensor] = {}
        self._warn = warn
        unique = list(dict.fromkeys(prompts))
        self.embeddings = self.encode(unique)
        self._index = {prompt: i for i, prompt in enumerate(unique)}
        self._rows = [self._index[prompt] for prompt in prompts]

    def encode(self, prompts: Sequence[str]) -> torch.Tensor:
        """Encode prompts in one batch, padded to the tokenizer's length; longer prompts are truncated."""
        missing = [p for p in dict.fromkeys(prompts) if p not in self._cache]
        if missing:
            limit = self._tokenizer.model_max_length
            for prompt in missing:
                n_tokens = len(self._tokenizer(prompt).input_ids)
                if n_tokens > limit:
                    self._warn(f"prompt {prompt[:40]!r}... has {n_tokens} tokens; only the first {limit} are used")
            ids = self._tokenizer(
                list(missing), padding="max_length", max_length=limit, truncation=True, return_tensors="pt"
            ).input_ids
            device = next(self._text_encoder.parameters()).device
            with torch.inference_mode():
                encoded = self._text_encoder(ids.to(device))[0]
            self._cache.update(zip(missing, encoded, strict=True))
        return torch.stack([self._cache[p] for p in prompts])

    def mix(self, weights: Sequence[Sequence[float]]) -> torch.Tensor:
        """One embedding per frame: the prompts' embeddings averaged by weight, shape (frames, tokens, dim).

        Weights are ≥ 0 with a positive sum (the job parser checks this); they are normalised to sum to 1.
        """
        w = torch.tensor([list(row) for row in weights], dtype=torch.float64)
        per_prompt = torch.zeros(w.shape[0], len(self._index), dtype=torch.float64)
        per_prompt.index_add_(1, torch.tensor(self._rows), w)
        normalised = per_prompt / per_prompt.sum(dim=1, keepdim=True)
        normalised = normalised.to(self.embeddings.device, self.embeddings.dtype)
        return torch.einsum("fp,ptd->ftd", normalised, self.embeddings)
