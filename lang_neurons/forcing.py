"""Prompted language forcing with a quality check (CLaS-Bench style).

The prompts are held-out texts in a source language (or BOS alone, Kojima et al.'s
unconditional generation). A steered continuation *forces* the target language when fastText's
top-1 language of the continuation is the target. Its *quality* is how fluent the steered
continuations are under the unsteered model, against the unsteered continuations of the same
prompts: with ``L`` the token-weighted mean next-token loss of a row's continuations, each
scored alone from BOS by the model without hooks,

    quality = exp(-max(0, L_row - L_unsteered))

so 1 means "as fluent as the model's own text" and a method that forces the language by
breaking the text scores low. The *forcing score* is the harmonic mean of the rate and the
quality. Intervals: :func:`lang_neurons.intervals.forcing_intervals` (paired bootstrap over
samples).

Scoring each continuation alone, not after its prompt, keeps a language switch itself from
counting as disfluent. Per-token loss still rewards repetition (a loop of one phrase is cheap to
predict), so read the quality beside the examples.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from lang_neurons.choices import PROMPT_KINDS
from lang_neurons.corpora import LanguageCorpus
from lang_neurons.errors import LangNeuronsError
from lang_neurons.generation import SCORE_BATCH, text_losses
from lang_neurons.models import HookedModel


@dataclass(frozen=True)
class ForcingPrompts:
    """The prompts of a steering evaluation, split into a dev part (settings are chosen on it)
    and a disjoint test part (every reported number); both empty for ``kind="bos"``."""

    kind: str
    source: str | None
    dev: list[str]
    test: list[str]

    def take(self, split: str, n: int) -> list[str] | None:
        """``n`` prompts of ``split`` ("dev" or "test"), cycling through them when ``n`` is larger
        (samples are drawn, so a repeated prompt gets another continuation); ``None`` for BOS."""
        if self.kind == "bos":
            return None
        pool = self.dev if split == "dev" else self.test
        return [pool[i % len(pool)] for i in range(n)]

    def to_dict(self) -> dict[str, Any]:
        """``{"kind", "source", "dev", "test"}`` with the prompt counts, JSON-ready."""
        return {"kind": self.kind, "source": self.source, "dev": len(self.dev), "test": len(self.test)}


def forcing_prompts(
    held_out: LanguageCorpus,
    kind: str = "source",
    *,
    source: str = "en",
    tokenizer: Any = None,
    prompt_tokens: int = 16,
    dev_share: float = 0.2,
    seed: int = 0,
) -> ForcingPrompts:
    """The held-out ``source`` texts as prompts, each cut to its first ``prompt_tokens`` tokens,
    shuffled with ``seed`` and split: a ``dev_share`` part for choosing settings, the rest for
    the test. ``kind="bos"`` gives unconditional generation (no prompts, dev by other seeds)."""
    if kind not in PROMPT_KINDS:
        raise LangNeuronsError(f"unknown prompts {kind!r}: choose from {', '.join(PROMPT_KINDS)}")
    if kind == "bos":
        return ForcingPrompts("bos", None, [], [])
    if source not in held_out.langs:
        raise LangNeuronsError(
            f"prompted forcing needs held-out texts in the source language {source!r}, "
            f"which the corpus lacks ({', '.join(held_out.langs)}): pick another --source, or prompts='bos'"
        )
    if not 0 < dev_share < 1:
        raise LangNeuronsError(f"dev_share must be in (0, 1), got {dev_share!r}")
    if prompt_tokens < 1:
        raise LangNeuronsError(f"prompt_tokens must be >= 1, got {prompt_tokens!r}")
    texts = [t for t in held_out[source] if t.strip()]
    if tokenizer is not None:
        texts = [tokenizer.decode(tokenizer.encode(t, add_special_tokens=False)[:prompt_tokens]) for t in texts]
    random.Random(seed).shuffle(texts)
    n_dev = max(1, round(len(texts) * dev_share))
    dev, test = texts[:n_dev], texts[n_dev:]
    if not dev or not test:
        side = "dev" if not dev else "test"
        raise LangNeuronsError(
            f"a dev/test split of {len(texts)} held-out {source!r} prompts at dev_share {dev_share} "
            f"leaves the {side} side empty: hold out more texts (--held-out) or change dev_share"
        )
    return ForcingPrompts("source", source, dev, test)


@dataclass(frozen=True)
class Fluency:
    """Each continuation's summed next-token loss and scored-token count under the unsteered model."""

    sums: Float[Tensor, " sample"]
    counts: Float[Tensor, " sample"]

    @property
    def mean_loss(self) -> float:
        """Token-weighted mean loss (``nan`` when no continuation has a token to score)."""
        total = float(self.counts.sum())
        return float(self.sums.sum()) / total if total else math.nan


def fluency(
    model: HookedModel, texts: Sequence[str], *, batch_size: int = SCORE_BATCH, max_length: int = 256
) -> Fluency:
    """Score each text alone (BOS + text) with the model as it is, no hooks: the fluency
    measurement of :func:`quality`. Empty and whitespace-only texts score zero tokens. (The corpus key "en" is only
    a label: ``text_losses`` wants a language code.)"""
    sums = torch.zeros(len(texts), dtype=torch.float64)
    counts = torch.zeros(len(texts), dtype=torch.float64)
    scored = [i for i, t in enumerate(texts) if t.strip() and model.tokenizer.encode(t, add_special_tokens=False)]
    if scored:
        losses = text_losses(
            model, {"en": [texts[i] for i in scored]}, batch_size=batch_size, max_length=max_length, progress=False
        )
        index = torch.tensor(scored)
        sums[index], counts[index] = losses.sums[0], losses.counts[0]
    return Fluency(sums, counts)


def quality_of_losses(loss: Any, unsteered: Any) -> np.ndarray:
    """The quality formula, elementwise on arrays: ``exp(-max(0, loss - unsteered))``; 0 where
    ``loss`` is ``nan`` (nothing scored), 1 where only ``unsteered`` is."""
    loss, unsteered = np.asarray(loss, dtype=np.float64), np.asarray(unsteered, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return np.where(
            np.isnan(loss), 0.0, np.where(np.isnan(unsteered), 1.0, np.exp(-np.maximum(0.0, loss - unsteered)))
        )


def quality(row: Fluency, unsteered: Fluency) -> float:
    """``exp(-max(0, L_row - L_unsteered))`` of the rows' token-weighted mean losses; 0 when the
    row has nothing to score."""
    return float(quality_of_losses(row.mean_loss, unsteered.mean_loss))


def harmonic_mean(rate: Any, quality: Any) -> Any:
    """The forcing score: ``2 r q / (r + q)``, 0 where both are 0; elementwise on arrays, a
    float for two numbers."""
    rate, quality = np.asarray(rate, dtype=np.float64), np.asarray(quality, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        score = np.where(rate + quality > 0, 2 * rate * quality / (rate + quality), 0.0)
    return float(score) if score.ndim == 0 else score
