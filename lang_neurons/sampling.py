"""Part of stage 8 (generate): drawing each new token, faster than TransformerLens does on CPU.

TransformerLens' ``generate`` draws every token with ``torch.distributions.Categorical``, whose
``torch.multinomial`` took 0.22 s per step for 48 rows over Gemma-3's 262,144 tokens on the
2-core machine: 31 % of a prompted generation, more than the whole model body. Inverse-CDF
sampling draws from exactly the same distribution with one uniform number per row (float64
cumulative sums and two binary searches: 0.05 s for the same rows). :func:`fast_sampling` puts it in
place of TransformerLens' ``sample_logits`` for plain temperature sampling (with or without a
repetition penalty) while :func:`lang_neurons.generate` runs, and undoes that on exit; greedy
decoding, top-k, top-p and frequency penalties keep TransformerLens' own code. Draws stay seeded
by ``torch.manual_seed``, but they are not the draws ``Categorical`` makes from the same seed.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

_TL_UTILITIES = ("transformer_lens.utilities", "transformer_lens.utils")  # TransformerLens 4, 3


def sample_inverse_cdf(logits: Float[Tensor, "batch vocab"], *, block: int = 512) -> Int[Tensor, " batch"]:
    """One token per row drawn from ``softmax(logits)`` by inverse CDF: the first token whose
    cumulative probability exceeds a uniform draw. Two levels, in float64: the draw picks a block
    of ``block`` tokens from the blocks' cumulative sums, then a token inside it, which needs
    neither a vocabulary-long float64 tensor nor more than one random number per row. Tokens of
    probability 0 (logit ``-inf``) are never drawn."""
    probs = torch.softmax(logits.float(), dim=-1)
    rows, vocab = probs.shape
    blocks = F.pad(probs, (0, -vocab % block)).view(rows, -1, block)
    cdf = blocks.sum(dim=-1, dtype=torch.float64).cumsum(dim=-1)  # [rows, blocks]
    u = torch.rand(rows, 1, dtype=torch.float64, device=probs.device) * cdf[:, -1:]
    k = torch.searchsorted(cdf, u, right=True).clamp_(max=cdf.shape[1] - 1)  # the block: its mass is > 0
    inner = blocks.gather(1, k.unsqueeze(-1).expand(rows, 1, block)).squeeze(1).cumsum(dim=-1, dtype=torch.float64)
    before = torch.where(k > 0, cdf.gather(1, (k - 1).clamp(min=0)), 0.0)
    last = (inner < inner[:, -1:]).sum(dim=-1, keepdim=True)  # the block's last token of probability > 0
    j = torch.minimum(torch.searchsorted(inner, u - before, right=True), last)  # rounding can overshoot by an ulp
    return (k * block + j).squeeze(1)


def penalize_repetition(
    logits: Float[Tensor, "batch vocab"], tokens: Int[Tensor, "batch pos"], penalty: float
) -> Float[Tensor, "batch vocab"]:
    """CTRL's (and Hugging Face's) repetition penalty: every token already in a row's ``tokens``
    has its logit divided by ``penalty`` where positive and multiplied by it where negative."""
    seen = logits.gather(1, tokens)
    return logits.scatter(1, tokens, torch.where(seen > 0, seen / penalty, seen * penalty))


def _fast(original: Callable[..., Tensor]) -> Callable[..., Tensor]:
    def sample_logits(
        final_logits: Tensor,
        top_k: int | None = None,
        top_p: float | None = None,
        temperature: float = 1.0,
        freq_penalty: float = 0.0,
        repetition_penalty: float = 1.0,
        tokens: Tensor | None = None,
        **rest: Any,
    ) -> Tensor:
        if temperature == 0.0 or top_k is not None or top_p is not None or freq_penalty or rest:
            kwargs = dict(top_k=top_k, top_p=top_p, temperature=temperature, freq_penalty=freq_penalty, tokens=tokens)
            if repetition_penalty != 1.0:
                kwargs["repetition_penalty"] = repetition_penalty
            return original(final_logits, **kwargs, **rest)
        if repetition_penalty != 1.0 and tokens is not None:
            final_logits = penalize_repetition(final_logits, tokens, repetition_penalty)
        return sample_inverse_cdf(final_logits.float() / temperature)  # bfloat16 logits: divide in float32

    return sample_logits


@contextlib.contextmanager
def fast_sampling() -> Iterator[None]:
    """Within the block, TransformerLens' ``generate`` samples through :func:`sample_inverse_cdf`
    (plain temperature sampling, optionally with a repetition penalty; everything else is left to
    TransformerLens). Restored on exit, also on an exception; nests."""
    module: Any = None  # a module's attributes are only known at run time
    for name in _TL_UTILITIES:
        try:
            module = importlib.import_module(name)
        except ImportError:  # TransformerLens 4 refuses ``utils``; 3 has no ``utilities``
            continue
        if callable(getattr(module, "sample_logits", None)):
            break
        module = None
    if module is None:
        yield
        return
    original = module.sample_logits
    module.sample_logits = _fast(original)
    try:
        yield
    finally:
        module.sample_logits = original
