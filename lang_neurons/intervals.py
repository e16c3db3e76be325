"""Uncertainty of the evaluation's numbers: 95 % intervals for rates, BLEU/chrF and loss changes.

* **Rates** (k of n generations in the target language): the Wilson score interval
  (:func:`wilson_interval`, scipy's ``binomtest(...).proportion_ci(method="wilson")``). Unlike
  the normal-approximation interval it stays inside [0, 1] and is not degenerate at 0/n or n/n.
* **Any statistic over items**: the percentile bootstrap (:func:`bootstrap`): resample the
  items with replacement ``resamples`` times (numpy, seeded), recompute the statistic, take the
  2.5 % and 97.5 % quantiles.
* **Corpus BLEU and chrF, baseline against steered** (:func:`paired_translation_bootstrap`):
  sacrebleu's corpus metrics recomputed on the *same* resampled items for both systems (paired:
  both translated the same sentences), giving an interval for each and for steered - baseline.
  Like sacrebleu's own ``--paired-bs``, it resums sacrebleu's per-sentence sufficient statistics,
  so the point estimate is exactly ``corpus_score``.
* **Quality and forcing score** (:func:`forcing_interval`): a paired bootstrap over samples, the
  same resampled indices for a row's continuations and the unsteered ones of the same prompts;
  :func:`pooled_forcing_interval` for the mean over targets.
* **Loss-matrix cells** (:func:`loss_change_intervals`): per evaluated language, the texts are
  resampled once per bootstrap round and the same texts score the base model and every ablation,
  so each cell's change (ablated - base, token-weighted means) gets a paired interval over texts.

Fewer than :data:`MIN_SAMPLES` generations give no interval (:func:`check_samples`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from lang_neurons.choices import MIN_SAMPLES, RESAMPLES
from lang_neurons.errors import LangNeuronsError
from lang_neurons.forcing import harmonic_mean, quality_of_losses
from lang_neurons.generation import TextLosses

__all__ = [
    "ForcingInterval",
    "Interval",
    "LossChangeIntervals",
    "PairedInterval",
    "RateInterval",
    "TranslationIntervals",
    "bootstrap",
    "check_samples",
    "forcing_interval",
    "loss_change_intervals",
    "paired_translation_bootstrap",
    "pooled_forcing_interval",
    "resample_indices",
    "wilson_interval",
]

LEVEL = 0.95
"""Confidence level of every interval."""


def _check_level(level: float) -> None:
    if not 0 < level < 1:
        raise LangNeuronsError(f"the confidence level must be in (0, 1), got {level!r}")


def check_samples(samples: int) -> None:
    """Refuse intervals over fewer than :data:`MIN_SAMPLES` samples, in one line."""
    if samples < MIN_SAMPLES:
        raise LangNeuronsError(
            f"intervals need at least {MIN_SAMPLES} samples per cell, got {samples}: raise the sample count "
            "(100 give a rate half-width <= 0.10) or turn intervals off (intervals=False, --no-intervals)"
        )


@dataclass(frozen=True)
class Interval:
    """A point estimate with a confidence interval ``[low, high]``."""

    estimate: float
    low: float
    high: float
    level: float = LEVEL

    @property
    def half_width(self) -> float:
        """Half the interval's width."""
        return (self.high - self.low) / 2

    def to_dict(self) -> dict[str, float]:
        """``{"estimate", "low", "high", "level"}``, JSON-ready."""
        return asdict(self)

    def format(self, digits: int = 2) -> str:
        """``0.71 [0.53, 0.85]``."""
        return f"{self.estimate:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"

    def __str__(self) -> str:
        return self.format()


@dataclass(frozen=True)
class RateInterval:
    """A rate ``k / n`` with its Wilson score interval."""

    k: int
    n: int
    low: float
    high: float
    level: float = LEVEL

    @property
    def rate(self) -> float:
        """``k / n``."""
        return self.k / self.n

    def to_dict(self) -> dict[str, float | int]:
        """``{"rate", "low", "high", "k", "n", "level"}``, JSON-ready."""
        return {"rate": self.rate, "low": self.low, "high": self.high, "k": self.k, "n": self.n, "level": self.level}

    def __str__(self) -> str:
        return f"{self.rate:.2f} [{self.low:.2f}, {self.high:.2f}] n={self.n}"


def wilson_interval(k: int, n: int, level: float = LEVEL) -> RateInterval:
    """The Wilson score interval of ``k`` successes in ``n`` trials (no continuity correction)."""
    from scipy.stats import binomtest

    _check_level(level)
    if isinstance(k, bool) or isinstance(n, bool) or int(k) != k or int(n) != n:
        raise LangNeuronsError(f"a rate needs whole counts, got k={k!r}, n={n!r}")
    if n < 1 or not 0 <= k <= n:
        raise LangNeuronsError(f"a rate needs n >= 1 and 0 <= k <= n, got k={k}, n={n}")
    ci = binomtest(int(k), int(n)).proportion_ci(confidence_level=level, method="wilson")
    return RateInterval(int(k), int(n), float(ci.low), float(ci.high), level)


def resample_indices(n: int, resamples: int = RESAMPLES, seed: int | Sequence[int] = 0) -> np.ndarray:
    """``(resamples, n)`` item indices drawn with replacement, reproducible from ``seed``."""
    if n < 1:
        raise LangNeuronsError("the bootstrap needs at least one item")
    if resamples < 1:
        raise LangNeuronsError(f"the bootstrap needs resamples >= 1, got {resamples}")
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def _percentiles(values: np.ndarray, estimate: float, level: float) -> Interval:
    low, high = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    return Interval(float(estimate), float(low), float(high), level)


def bootstrap(
    items: Sequence[Any],
    statistic: Callable[[list[Any]], float],
    *,
    resamples: int = RESAMPLES,
    seed: int | Sequence[int] = 0,
    level: float = LEVEL,
) -> Interval:
    """Percentile bootstrap interval of ``statistic(items)``, resampling the items with replacement."""
    _check_level(level)
    items = list(items)
    idx = resample_indices(len(items), resamples, seed)
    values = np.array([statistic([items[i] for i in row]) for row in idx], dtype=np.float64)
    return _percentiles(values, statistic(items), level)


@dataclass(frozen=True)
class PairedInterval:
    """Intervals of a baseline, a steered system and steered - baseline on the same resamples."""

    baseline: Interval
    steered: Interval
    difference: Interval

    def to_dict(self) -> dict[str, dict[str, float]]:
        """``{"baseline": {...}, "steered": {...}, "difference": {...}}`` of :meth:`Interval.to_dict`."""
        return {
            "baseline": self.baseline.to_dict(),
            "steered": self.steered.to_dict(),
            "difference": self.difference.to_dict(),
        }


@dataclass(frozen=True)
class TranslationIntervals:
    """Paired bootstrap intervals of corpus BLEU and chrF over ``n`` translation items."""

    bleu: PairedInterval
    chrf: PairedInterval
    n: int
    resamples: int

    def to_dict(self) -> dict[str, Any]:
        """``{"bleu": {...}, "chrf": {...}, "n", "resamples"}``, JSON-ready."""
        return {"bleu": self.bleu.to_dict(), "chrf": self.chrf.to_dict(), "n": self.n, "resamples": self.resamples}


def _sentence_stats(metric: Any, hyps: Sequence[str], refs: Sequence[str]) -> np.ndarray:
    """sacrebleu's per-sentence sufficient statistics (integer counts), one row per item."""
    return np.asarray(metric._extract_corpus_statistics(list(hyps), [list(refs)]), dtype=np.int64)


def _scores(metric: Any, stats: np.ndarray, idx: np.ndarray) -> np.ndarray:
    return np.array([metric._compute_score_from_stats(stats[row].sum(0).tolist()).score for row in idx])


def _paired(
    metric: Any, base: Sequence[str], steered: Sequence[str], refs: Sequence[str], idx: np.ndarray, level: float
) -> PairedInterval:
    sb, ss = _sentence_stats(metric, base, refs), _sentence_stats(metric, steered, refs)
    everything = np.arange(len(refs))[None]
    eb, es = float(_scores(metric, sb, everything)[0]), float(_scores(metric, ss, everything)[0])
    vb, vs = _scores(metric, sb, idx), _scores(metric, ss, idx)
    return PairedInterval(
        _percentiles(vb, eb, level), _percentiles(vs, es, level), _percentiles(vs - vb, es - eb, level)
    )


def paired_translation_bootstrap(
    baseline: Sequence[str],
    steered: Sequence[str],
    references: Sequence[str],
    lang: str,
    *,
    resamples: int = RESAMPLES,
    seed: int | Sequence[int] = 0,
    level: float = LEVEL,
) -> TranslationIntervals:
    """Paired bootstrap over items of corpus BLEU and chrF: baseline, steered and their difference.

    Every resample draws item indices once and scores both systems on them, with the metrics of
    :func:`lang_neurons.evaluation.translation_scores` (BLEU with the target's tokenizer, chrF).
    The same ``seed`` gives the same resamples, so a baseline scored beside several steered
    systems gets the same interval each time.
    """
    from sacrebleu.metrics import BLEU, CHRF

    from lang_neurons.evaluation import bleu_tokenizer, translation_scores

    _check_level(level)
    translation_scores(baseline, references, lang)  # checks lists, lengths and the language
    translation_scores(steered, references, lang)
    idx = resample_indices(len(references), resamples, seed)
    return TranslationIntervals(
        bleu=_paired(BLEU(tokenize=bleu_tokenizer(lang)), baseline, steered, references, idx, level),
        chrf=_paired(CHRF(), baseline, steered, references, idx, level),
        n=len(references),
        resamples=resamples,
    )


@dataclass(frozen=True)
class LossChangeIntervals:
    """Per loss-matrix cell ``[ablated, evaluated]``, a bootstrap interval over the evaluated
    language's texts of ``ablated - base`` (token-weighted mean losses)."""

    low: Float[Tensor, "ablated_lang eval_lang"]
    high: Float[Tensor, "ablated_lang eval_lang"]
    texts: list[int]
    resamples: int
    level: float = LEVEL

    def to_dict(self) -> dict[str, Any]:
        """``{"low": [[...]], "high": [[...]], "texts": [...], "resamples", "level"}``, JSON-ready."""
        return {
            "low": self.low.tolist(),
            "high": self.high.tolist(),
            "texts": list(self.texts),
            "resamples": self.resamples,
            "level": self.level,
        }


def loss_change_intervals(
    base: TextLosses,
    ablated: Sequence[TextLosses],
    *,
    resamples: int = RESAMPLES,
    seed: int = 0,
    level: float = LEVEL,
) -> LossChangeIntervals:
    """Paired bootstrap over texts of every loss-change cell ``ablated[a] - base``.

    Args:
        base: per-text losses without intervention (:func:`lang_neurons.generation.text_losses`).
        ablated: per ablated language, the per-text losses of the same texts with its neurons ablated.
        resamples: bootstrap resamples per evaluated language.
        seed: the evaluated language ``j`` resamples with seed ``(seed, j)``.
        level: confidence level.

    Texts without a scored token are left out (they weigh nothing in the mean).
    """
    _check_level(level)
    for row in ablated:
        if row.langs != base.langs or any(len(x) != len(y) for x, y in zip(row.sums, base.sums)):
            raise LangNeuronsError("loss_change_intervals: every ablation must score the same texts as the base")
    low = torch.zeros(len(ablated), len(base.langs), dtype=torch.float64)
    high = torch.zeros_like(low)
    texts = []
    for j in range(len(base.langs)):
        keep = base.counts[j] > 0
        c, b = base.counts[j][keep].double().numpy(), base.sums[j][keep].double().numpy()
        texts.append(int(keep.sum()))
        idx = resample_indices(len(c), resamples, (seed, j))
        tokens = c[idx].sum(1)
        base_mean = b[idx].sum(1) / tokens
        for a, row in enumerate(ablated):
            s = row.sums[j][keep].double().numpy()
            cell = _percentiles(s[idx].sum(1) / tokens - base_mean, s.sum() / c.sum() - b.sum() / c.sum(), level)
            low[a, j], high[a, j] = cell.low, cell.high
    return LossChangeIntervals(low.float(), high.float(), texts, resamples, level)


@dataclass(frozen=True)
class ForcingInterval:
    """A row's quality and forcing score (:mod:`lang_neurons.forcing`), each with a paired
    bootstrap interval over its samples."""

    quality: Interval
    score: Interval
    n: int
    resamples: int

    def to_dict(self) -> dict[str, Any]:
        """``{"quality": {...}, "score": {...}, "n", "resamples"}``, JSON-ready."""
        return {
            "quality": self.quality.to_dict(),
            "score": self.score.to_dict(),
            "n": self.n,
            "resamples": self.resamples,
        }


ForcingCell = tuple[Sequence[bool], Tensor, Tensor, Tensor, Tensor]
"""One row's samples: target-language hits, fluency loss sums and token counts, and the same
for the unsteered continuations of the same prompts (sample ``i`` of both shares prompt and seed)."""


def _forcing_stats(cell: ForcingCell, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Quality and forcing score of ``cell`` for each row of sample indices ``idx``."""
    hits, sums, counts, base_sums, base_counts = (np.asarray(x, dtype=np.float64) for x in cell)
    if not len(hits) == len(sums) == len(counts) == len(base_sums) == len(base_counts):
        raise LangNeuronsError("forcing intervals: a row and its unsteered continuations need one entry per sample")
    with np.errstate(invalid="ignore", divide="ignore"):
        loss = sums[idx].sum(1) / counts[idx].sum(1)
        base = base_sums[idx].sum(1) / base_counts[idx].sum(1)
    quality = quality_of_losses(loss, base)
    return quality, harmonic_mean(hits[idx].mean(1), quality)


def forcing_interval(
    cell: ForcingCell, *, resamples: int = RESAMPLES, seed: int | Sequence[int] = 0, level: float = LEVEL
) -> ForcingInterval:
    """Paired percentile bootstrap over samples of a row's quality and forcing score: each round
    resamples the sample indices once, for the row and its unsteered continuations alike."""
    _check_level(level)
    n = len(cell[0])
    point_q, point_s = _forcing_stats(cell, np.arange(n)[None])
    q, s = _forcing_stats(cell, resample_indices(n, resamples, seed))
    return ForcingInterval(_percentiles(q, point_q[0], level), _percentiles(s, point_s[0], level), n, resamples)


def pooled_forcing_interval(
    cells: Sequence[ForcingCell], *, resamples: int = RESAMPLES, seed: int = 0, level: float = LEVEL
) -> Interval:
    """Bootstrap interval of the mean forcing score over ``cells`` (e.g. one per target), each
    cell resampled on its own (seed ``(seed, j)`` for cell ``j``) in every round."""
    _check_level(level)
    if not cells:
        raise LangNeuronsError("pooled_forcing_interval needs at least one cell")
    point = np.mean([_forcing_stats(c, np.arange(len(c[0]))[None])[1][0] for c in cells])
    rounds = np.mean(
        [_forcing_stats(c, resample_indices(len(c[0]), resamples, (seed, j)))[1] for j, c in enumerate(cells)], axis=0
    )
    return _percentiles(rounds, float(point), level)
