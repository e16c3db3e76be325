"""Steered against baseline on a task: each metric with its 95 % interval, and a paired
bootstrap over items of steered - baseline.

* A metric whose item scores are 0 or 1 (``acc``, ``acc_norm``, ``acc_bytes``, ``exact_match``)
  gets the Wilson score interval (:func:`lang_neurons.intervals.wilson_interval`); F1 a percentile
  bootstrap over items.
* The difference of a steered row from the baseline is a **paired** bootstrap: every round draws
  item indices once (:func:`lang_neurons.intervals.resample_indices`) and takes the mean of both
  rows on those items, so the interval covers which items were asked, not the pairing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from lang_neurons import intervals as iv
from lang_neurons.errors import LangNeuronsError
from lang_neurons.models import HookedModel

from .base import BINARY_METRICS, Task, TaskResult
from .scoring import Hooks, evaluate_task


def _percentile(values: np.ndarray, estimate: float, level: float) -> iv.Interval:
    low, high = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    return iv.Interval(float(estimate), float(low), float(high), level)


def metric_interval(
    result: TaskResult, metric: str, *, resamples: int = iv.RESAMPLES, seed: int = 0, level: float = iv.LEVEL
) -> dict[str, Any]:
    """``metric``'s mean over the items with its interval, JSON-ready: Wilson for 0/1 scores
    (``{"rate", "low", "high", "k", "n", "level"}``), else a bootstrap (``{"estimate", "low", "high", "level"}``)."""
    values = np.asarray(result.scores[metric], dtype=np.float64)
    if metric in BINARY_METRICS:
        return iv.wilson_interval(int(values.sum()), len(values), level).to_dict()
    idx = iv.resample_indices(len(values), resamples, seed)
    return _percentile(values[idx].mean(1), float(values.mean()), level).to_dict()


def paired_difference(
    baseline: TaskResult,
    steered: TaskResult,
    metric: str,
    *,
    resamples: int = iv.RESAMPLES,
    seed: int = 0,
    level: float = iv.LEVEL,
) -> iv.PairedInterval:
    """Paired bootstrap over items of ``metric``: baseline, steered and steered - baseline."""
    if baseline.n != steered.n or baseline.task != steered.task or baseline.lang != steered.lang:
        raise LangNeuronsError("a paired comparison needs two results of the same task, language and items")
    b = np.asarray(baseline.scores[metric], dtype=np.float64)
    s = np.asarray(steered.scores[metric], dtype=np.float64)
    idx = iv.resample_indices(len(b), resamples, seed)
    vb, vs = b[idx].mean(1), s[idx].mean(1)
    return iv.PairedInterval(
        _percentile(vb, float(b.mean()), level),
        _percentile(vs, float(s.mean()), level),
        _percentile(vs - vb, float(s.mean() - b.mean()), level),
    )


def _row(result: TaskResult, intervals: bool, resamples: int, seed: int) -> dict[str, Any]:
    row: dict[str, Any] = {"n": result.n, **result.summary()}
    if intervals:
        row["intervals"] = {m: metric_interval(result, m, resamples=resamples, seed=seed) for m in result.scores}
    return row


def compare_task(
    model: HookedModel,
    task: Task,
    rows: Mapping[str, Hooks | Callable[[], Hooks]],
    *,
    intervals: bool = True,
    resamples: int = iv.RESAMPLES,
    seed: int = 0,
    batch_size: int = 8,
    repetition_penalty: float = 1.0,
    progress: bool = True,
) -> dict[str, Any]:
    """The task under no hooks (``baseline``) and under each row's hooks; returns a JSON-ready dict.

    ``rows`` maps a row name (e.g. ``"add->de"``) to its hooks, or to a function that builds them
    (called once, when the row is evaluated). Per row: every metric's mean, with ``intervals``
    (the default; needs at least :data:`lang_neurons.choices.MIN_SAMPLES` items) its interval
    (:func:`metric_interval`) and ``difference``: per metric, the paired bootstrap of
    steered - baseline (:func:`paired_difference`; all seeded from ``seed``). Also per row, its
    per-item ``predictions``; the baseline's under ``"baseline"``.
    """
    if intervals:
        iv.check_samples(len(task))
    kwargs: dict[str, Any] = dict(batch_size=batch_size, repetition_penalty=repetition_penalty, progress=progress)
    base = evaluate_task(model, task, **kwargs)
    out: dict[str, Any] = {
        "task": task.name,
        "task_kind": task.kind,  # "kind" is the artifact's kind once saved (tasks.json)
        "lang": task.lang,
        "metric": task.metric,
        "description": task.description,
        "items": len(task),
        "ids": [item.id for item in task.items],
        "baseline": {**_row(base, intervals, resamples, seed), "predictions": base.predictions},
        "rows": {},
    }
    for name, hooks in rows.items():
        steered = evaluate_task(model, task, hooks=hooks() if callable(hooks) else hooks, **kwargs)
        row = _row(steered, intervals, resamples, seed)
        if intervals:
            row["difference"] = {
                m: paired_difference(base, steered, m, resamples=resamples, seed=seed).difference.to_dict()
                for m in steered.scores
            }
        row["predictions"] = steered.predictions
        out["rows"][name] = row
    return out


def format_comparison(results: dict[str, Any], digits: int = 3) -> list[str]:
    """One line per row of :func:`compare_task`'s results: the headline metric, its interval and,
    for steered rows, the difference from the baseline with its paired interval."""
    metric = results["metric"]
    head = f"task {results['task']} ({results['lang']}, n={results['items']}) {metric}"

    def cell(row: dict[str, Any]) -> str:
        text = f"{row[metric]:.{digits}f}"
        if "intervals" in row:
            i = row["intervals"][metric]
            text += f" [{i['low']:.{digits}f}, {i['high']:.{digits}f}]"
        if "difference" in row:
            d = row["difference"][metric]
            text += f"; vs baseline {d['estimate']:+.{digits}f} [{d['low']:+.{digits}f}, {d['high']:+.{digits}f}]"
        return text

    lines = [f"{head} baseline: {cell(results['baseline'])}"]
    lines += [f"{head} {name}: {cell(row)}" for name, row in results["rows"].items()]
    return lines


def steering_rows(
    make: Callable[[str, str], Hooks], methods: Sequence[str], targets: Sequence[str]
) -> dict[str, Callable[[], Hooks]]:
    """Row name ``"<method>-><target>"`` → a function building ``make(target, method)``."""

    def bind(target: str, method: str) -> Callable[[], Hooks]:
        return lambda: make(target, method)

    return {f"{m}->{t}": bind(t, m) for m in methods for t in targets}
