"""The steering evaluation loop, as the papers run it: per target and row, the target-language
rate of generations, their quality and forcing score, translation BLEU/chrF under steering, and
the loss-change matrix. Thin loops over the stages above."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any, cast

import torch

from lang_neurons import hardware
from lang_neurons import intervals as iv
from lang_neurons import steering as st
from lang_neurons.choices import DEFAULT_METHODS, RESIDUAL
from lang_neurons.config import EvaluateConfig
from lang_neurons.corpora import LanguageCorpus
from lang_neurons.errors import LangNeuronsError
from lang_neurons.evaluation import (
    LanguageIdentifier,
    LossMatrix,
    clean_completion,
    translation_scores,
    translation_task,
)
from lang_neurons.forcing import fluency, forcing_prompts, harmonic_mean, quality
from lang_neurons.generation import PassBar, TextLosses, generate, planned_passes, text_losses, text_passes
from lang_neurons.models import HookedModel, check_fingerprint, computing_in
from lang_neurons.neurons import NeuronSet
from lang_neurons.recording import ActivationStats

from .projection import Projection, dev_grid_passes, row_passes, translation_passes
from .residual import choose_residual, residual_candidates
from .result import EvaluationResult, MethodResult, TargetResult
from .rows import CONTROL_SUFFIX, ablation_losses, method_rows, pooled_samples, rate_interval

_SETTINGS = {f.name for f in dataclasses.fields(EvaluateConfig)}


def evaluate(
    model: HookedModel,
    neurons: NeuronSet,
    stats: ActivationStats,
    held_out: LanguageCorpus,
    *,
    targets: Sequence[str] | None = None,
    methods: Sequence[str] = DEFAULT_METHODS,
    alpha: float = 1.0,
    samples: int = 30,
    prompts: str = "source",
    prompt_tokens: int = 16,
    dev_share: float = 0.2,
    max_new_tokens: int = 32,
    do_sample: bool = True,
    temperature: float = 0.8,
    repetition_penalty: float = 1.0,
    deactivate: str = "others",
    deactivate_value: float = 0.0,
    translation_items: int = 20,
    translation_template: str = "few-shot",
    translation_tokens: int = 48,
    source: str = "en",
    loss_texts: int = 40,
    lid: LanguageIdentifier | None = None,
    seed: int = 0,
    intervals: bool = True,
    resamples: int = iv.RESAMPLES,
    controls: int = 3,
    residual: bool = True,
    residual_layers: Sequence[int] | None = None,
    residual_alphas: Sequence[float] = (1.0, 2.0),
    dev_samples: int = 20,
    batch_size: int = 16,
    generation_dtype: str | None = None,
    progress: bool = True,
    time_budget: float | None = None,
    config: EvaluateConfig | None = None,
) -> EvaluationResult:
    """Evaluate steering toward each target with each method; returns an :class:`EvaluationResult`
    (``to_dict()``: JSON-ready, as in ``metrics.json``; it also reads like that dict).

    **Samples.** With ``prompts="source"`` (the default) every cell's ``samples`` generations
    continue held-out ``source`` texts (cut to ``prompt_tokens`` tokens; the test part of a
    seeded dev/test split, ``dev_share`` of them on the dev side, cycled when there are fewer
    than ``samples``): prompted language forcing (:mod:`lang_neurons.forcing`). With
    ``prompts="bos"`` they are unconditional, from BOS alone (Kojima et al.). Decoding:
    ``do_sample``, ``temperature``, ``repetition_penalty``, ``max_new_tokens``.

    **Rows.** Each neuron method ``m`` (:data:`EVAL_METHODS`: language arithmetic switching off
    ``deactivate`` = the ``"others"`` or only the ``"source"`` language's neurons, to
    ``deactivate_value``; or ``pin``); with ``controls`` > 0 its random control ``m:random``:
    the same intervention on random neurons with the set's per-layer counts, drawn outside every
    language's set (:func:`lang_neurons.controls.random_controls`, seeds 0 .. ``controls`` - 1),
    the samples split over the seeds and pooled (translation under the seed-0 control); with
    ``residual``, the residual-stream DiffMean baseline ``residual_diffmean`` (needs statistics
    with residual sums), its layer and alpha chosen on the dev split (:func:`choose_residual`,
    ``dev_samples`` per target and candidate, dev prompts and other sampling seeds) and
    reported on the test samples; ``results["residual"]`` says which. ``batch_size`` is the
    generation batch size. ``generation_dtype`` (``"bfloat16"``, ...; ``None``: the model's
    own; ``"auto"``: bfloat16 where the model's device multiplies it natively,
    :func:`lang_neurons.hardware.generation_dtype`) is the dtype every generation and its fluency scoring run in
    (:func:`~lang_neurons.models.computing_in`); the loss matrix stays in the model's dtype.

    Per target and row: the fastText target-language rate, the quality of the continuations
    (their fluency under the unsteered model against the unsteered continuations of the same
    prompts) and the forcing score (harmonic mean of the two), the split (``"test"``), BLEU/chrF
    of translation from ``source`` (baseline and steered, greedy, at most ``translation_tokens``
    new tokens cut at the first newline; prompts of :func:`~lang_neurons.evaluation.translation_task`
    with ``translation_template``: one-shot ``"few-shot"`` or Kojima et al.'s zero-shot
    ``"kojima"``) when ``translation_items`` > 0 and the corpus is parallel, and the number/share
    of neurons touched. Also the loss-change matrix on up to ``loss_texts`` held-out texts per language.

    With ``intervals`` (the default; needs ``samples >= 10``) every number also gets its 95 %
    interval (:mod:`lang_neurons.intervals`), seeded from ``seed``: ``baseline_interval`` and
    each row's ``rate_interval`` (Wilson), ``baseline_forcing_interval`` and each row's
    ``forcing_interval`` (quality and score, paired bootstrap over samples),
    ``translation_baseline_interval`` and each row's ``translation_interval`` (paired bootstrap
    over items: baseline, steered, steered - baseline), the loss matrix's ``change_interval``
    (paired bootstrap over texts), ``summary_interval`` (Wilson on the successes pooled over
    targets) and ``summary_forcing_interval`` (bootstrap of the mean score over targets).

    **Cost.** The unsteered baseline and the loss matrix's unablated pass run first and are
    timed; from them, and the forward passes each stage will take, the projected time of the rest
    is printed (with ``progress``) before any steered generation, and a ``time_budget`` (seconds)
    it exceeds stops the evaluation there with a :class:`~lang_neurons.LangNeuronsError`. The
    progress bars (with ``progress``) move with every forward pass, naming the row or cell.

    ``config``: the settings as one :class:`~lang_neurons.config.EvaluateConfig`, in place of
    the keywords (``lid``, ``progress`` and ``time_budget`` stay keywords).
    """
    keywords = {name: value for name, value in locals().items() if name in _SETTINGS}  # the settings given
    entered = time.perf_counter()
    check_fingerprint(neurons.model, model, "the neuron set")
    check_fingerprint(stats.model, model, "the statistics")
    given = EvaluateConfig(**keywords)
    if config is None:
        config = given
    elif given != EvaluateConfig():
        raise LangNeuronsError("evaluate takes its settings either as config= or as keywords, not both")
    c = config
    lid = lid or LanguageIdentifier()
    target_langs = [t for t in (c.targets or neurons.langs) if t != c.source]
    for t in target_langs:
        neurons.lang_index(t)
    if c.deactivate == "source" and c.source not in neurons.langs:
        raise LangNeuronsError(
            f"deactivate='source' switches off the source language's neurons, but {c.source!r} has no neuron set"
        )
    if c.residual and stats.resid_sums is None:
        raise LangNeuronsError(
            "these statistics have no residual-stream sums (recorded before they existed): "
            "record them again, or evaluate without the residual baseline (residual=False, --no-residual)"
        )
    drawn = {k: getattr(c, k) for k in ("source", "prompt_tokens", "dev_share", "seed")}
    split = forcing_prompts(held_out, c.prompts, tokenizer=model.tokenizer, **drawn)
    if not c.do_sample and c.prompts == "source" and c.samples > len(split.test):
        raise LangNeuronsError(
            f"greedy decoding gives one continuation per prompt, but samples={c.samples} is more than the "
            f"{len(split.test)} test prompts: lower samples, lower dev_share, hold out more texts, or sample"
        )
    test_prompts = split.take("test", c.samples)
    decoding = c.pick(("do_sample", "temperature", "repetition_penalty"))
    gen = dict(max_new_tokens=c.max_new_tokens, seed=c.seed, batch_size=c.batch_size, progress=False, **decoding)
    boot = dict(resamples=c.resamples, seed=c.seed)
    loss_corpus = _loss_corpus(held_out, neurons, c.loss_texts, c.seed) if c.loss_texts else None
    loss_base, loss_s = _unablated(model, loss_corpus, progress) if loss_corpus else (None, 0.0)
    # every generation and its fluency scoring in generation_dtype; the loss matrix in the model's own
    dtype = hardware.for_model(model, c.generation_dtype)
    with computing_in(model, dtype.dtype):
        start, planned = time.perf_counter(), planned_passes(c.samples, c.batch_size, c.max_new_tokens)
        with PassBar(model, planned, "baseline", progress) as bar, bar.step("unsteered", planned):
            baseline_texts = generate(model, test_prompts, n=c.samples, **gen)
            base_fluency = fluency(model, baseline_texts)
        per_pass = (time.perf_counter() - start) / planned
        off = c.source if c.deactivate == "source" else None
        rows = method_rows(neurons, stats, c.methods, c.alpha, c.controls, off, c.deactivate_value)
        translate = [t for t in target_langs if _translates(c, held_out, t)]
        plan = _plan(c, rows, target_langs, translate, stats.n_layers)
        projection = Projection(
            {stage: passes * per_pass for stage, passes in plan.items()}
            | {"loss matrix": len(neurons.langs) * loss_s if loss_corpus else 0.0}
        )
        if progress:
            projection.say()
        projection.check(
            time_budget - (time.perf_counter() - entered) if time_budget is not None else None, "the evaluation"
        )
        chosen = None
        if c.residual:
            chosen = choose_residual(
                model,
                stats,
                target_langs,
                lid,
                layers=c.residual_layers,
                alphas=c.residual_alphas,
                samples=c.dev_samples,
                max_new_tokens=c.max_new_tokens,
                seed=c.seed,
                batch_size=c.batch_size,
                prompts=split if c.prompts == "source" else None,
                generation=decoding,
                progress=progress,
            )
            rows[RESIDUAL] = lambda target: [st.residual_diffmean(stats, target, chosen["layer"], chosen["alpha"])]
        settings = _settings(c, list(rows), neurons)
        settings.update(generation_dtype=dtype.dtype, generation_dtype_reason=dtype.reason)
        results = EvaluationResult({}, settings, split.to_dict(), residual=chosen)
        cells: dict[str, list[iv.ForcingCell]] = {name: [] for name in [*rows, "baseline"]}
        with PassBar(model, plan["steering"], "steering", progress) as bar:
            for target in target_langs:
                entry = _baseline_entry(lid, baseline_texts, base_fluency, target, c, boot, cells)
                translation = None
                if target in translate:
                    with bar.step(f"{target} translation", _translation_passes(c)):
                        translation = _translation_baseline(model, held_out, target, c, entry, boot)
                for method, make in rows.items():
                    hook_sets = make(target)
                    with bar.step(f"{target} {method}", _row_passes(c, len(hook_sets), target in translate)):
                        texts = pooled_samples(model, hook_sets, test_prompts, c.samples, gen)
                        row, cell = _row(model, neurons, lid, hook_sets[0], texts, target, base_fluency, c, boot)
                        if translation is not None:
                            _translate_row(model, row, hook_sets[0], target, c, boot, *translation)
                    cells[method].append(cell)
                    if method == RESIDUAL:
                        row.layer, row.alpha = chosen["layer"], chosen["alpha"]  # type: ignore[index]
                    entry.methods[method] = row
                results.targets[target] = entry
    if loss_corpus is not None and loss_base is not None:
        ablated = ablation_losses(model, neurons, loss_corpus, 0.0, LOSS_BATCH, progress)
        results.loss_matrix = LossMatrix(
            list(loss_corpus.langs), loss_base.mean(), torch.stack([r.mean() for r in ablated])
        ).to_dict()
        if c.intervals:
            results.loss_matrix["change_interval"] = iv.loss_change_intervals(loss_base, ablated, **boot).to_dict()
    _summaries(results, target_langs, rows, cells, c.intervals, boot)
    return results


LOSS_BATCH = 8
"""Texts per forward pass of the loss matrix."""


def _loss_corpus(held_out: LanguageCorpus, neurons: NeuronSet, texts: int, seed: int) -> LanguageCorpus:
    """Up to ``texts`` held-out texts of every language that has a neuron set (the loss matrix's texts)."""
    corpus = held_out.take(texts, seed=seed)
    return corpus.subset([x for x in neurons.langs if x in corpus.langs])


def _unablated(model: HookedModel, corpus: LanguageCorpus, progress: bool) -> tuple[TextLosses, float]:
    """The loss matrix's unablated pass, run first, and its seconds: they price the ablated ones."""
    start, batches = time.perf_counter(), text_passes(corpus, LOSS_BATCH)
    with PassBar(model, batches, "loss matrix", progress) as bar, bar.step("unablated", batches):
        losses = text_losses(model, corpus, batch_size=LOSS_BATCH, progress=False)
    return losses, time.perf_counter() - start


def _translates(c: EvaluateConfig, held_out: LanguageCorpus, target: str) -> bool:
    return c.translation_items > 0 and held_out.is_parallel and c.source in held_out.langs and target in held_out.langs


def _translation_passes(c: EvaluateConfig) -> int:
    return translation_passes(c.translation_items, c.batch_size, c.translation_tokens)


def _row_passes(c: EvaluateConfig, hook_sets: int, translated: bool) -> int:
    """One row of one target: its samples, their scoring and its translations."""
    return row_passes(hook_sets, c.samples, c.batch_size, c.max_new_tokens) + translated * _translation_passes(c)


def _plan(
    c: EvaluateConfig, rows: dict[str, Any], targets: list[str], translate: list[str], n_layers: int
) -> dict[str, int]:
    """Forward passes still to run after the baseline, by stage: the residual dev grid and the steering rows."""
    sets = {name: c.controls if name.endswith(CONTROL_SUFFIX) else 1 for name in rows}
    if c.residual:
        sets[RESIDUAL] = 1
    steering = sum(_row_passes(c, n, t in translate) for t in targets for n in sets.values())
    steering += len(translate) * _translation_passes(c)
    grid = 0
    if c.residual:
        layers = c.residual_layers if c.residual_layers is not None else residual_candidates(n_layers)
        cells = len(layers) * len(c.residual_alphas)
        grid = dev_grid_passes(cells, len(targets), c.dev_samples, c.batch_size, c.max_new_tokens)
    return {"residual dev grid": grid, "steering": steering}


def _baseline_entry(
    lid: LanguageIdentifier,
    texts: list[str],
    base_fluency: Any,
    target: str,
    c: EvaluateConfig,
    boot: dict[str, Any],
    cells: dict[str, list[iv.ForcingCell]],
) -> TargetResult:
    """The unsteered baseline of ``target``: its rate, fluency and score (and intervals), its cell in ``cells``."""
    base_rate = lid.rate(texts, target)
    base_cell = (base_rate.hits, base_fluency.sums, base_fluency.counts, base_fluency.sums, base_fluency.counts)
    cells["baseline"].append(base_cell)
    entry = TargetResult(base_rate.rate, base_fluency.mean_loss, harmonic_mean(base_rate.rate, 1.0))
    if c.intervals:
        entry.baseline_interval = rate_interval(base_rate)
        entry.baseline_forcing_interval = iv.forcing_interval(base_cell, **boot).to_dict()
    return entry


def _settings(config: EvaluateConfig, rows: list[str], neurons: NeuronSet) -> dict[str, Any]:
    """The ``settings`` of :func:`evaluate`'s results: the row names, the ``config`` fields that
    shape the numbers, the neuron set's site and method, the splits and the intervals' methods."""
    out: dict[str, Any] = {
        "methods": rows,
        "neuron_methods": list(config.methods),
        **config.pick(
            ("alpha", "samples", "prompts", "prompt_tokens", "dev_share", "max_new_tokens", "do_sample", "temperature")
            + ("repetition_penalty", "deactivate", "deactivate_value", "translation_items", "translation_template")
            + ("translation_tokens", "source", "seed")
        ),
        "site": neurons.site,
        "method": neurons.method,
        **config.pick(("controls", "residual", "batch_size", "generation_dtype")),
        "splits": {"test": "every reported number", "dev": "the residual layer and alpha"},
    }
    if config.intervals:
        out["intervals"] = {
            "level": iv.LEVEL,
            "resamples": config.resamples,
            "rate": "Wilson score",
            "forcing": "paired bootstrap over samples",
            "translation": "paired bootstrap over items",
            "loss_matrix": "paired bootstrap over texts",
        }
    return out


def _row(
    model: HookedModel,
    neurons: NeuronSet,
    lid: LanguageIdentifier,
    hooks: Any,
    texts: list[str],
    target: str,
    base_fluency: Any,
    c: EvaluateConfig,
    boot: dict[str, Any],
) -> tuple[MethodResult, iv.ForcingCell]:
    """One row's rate, quality, forcing score and intervals from its continuations ``texts``."""
    rate = lid.rate(texts, target)
    fl = fluency(model, texts)
    q = quality(fl, base_fluency)
    touched = getattr(hooks, "n_neurons", 0)
    row = MethodResult(
        rate.rate, q, harmonic_mean(rate.rate, q), fl.mean_loss, "test", touched, touched / neurons.n_neurons, texts[:3]
    )
    cell = (rate.hits, fl.sums, fl.counts, base_fluency.sums, base_fluency.counts)
    if c.intervals:
        row.rate_interval = rate_interval(rate)
        row.forcing_interval = iv.forcing_interval(cell, **boot).to_dict()
    return row, cell


def _translation_baseline(
    model: HookedModel, held_out: LanguageCorpus, target: str, c: EvaluateConfig, entry: TargetResult, boot: dict
) -> tuple[list[str], list[str], list[str]] | None:
    """Translate ``target``'s items unsteered into ``entry``; returns (prompts, references,
    baseline hypotheses) for the rows, or None without items."""
    shots = 0 if c.translation_template == "kojima" else 1
    items = translation_task(
        held_out,
        c.source,
        target,
        n=min(c.translation_items, len(held_out[target]) - shots),
        seed=c.seed,
        shots=shots,
        template=c.translation_template,
    )
    prompts, refs = [i.prompt for i in items], [i.reference for i in items]
    base_hyps = _translate(model, prompts, None, c)
    entry.translation_baseline = asdict(translation_scores(base_hyps, refs, target))
    if c.intervals:
        both = iv.paired_translation_bootstrap(base_hyps, base_hyps, refs, target, **boot).to_dict()
        entry.translation_baseline_interval = {
            "bleu": both["bleu"]["baseline"],
            "chrf": both["chrf"]["baseline"],
            "n": both["n"],
            "resamples": both["resamples"],
        }
    return (prompts, refs, base_hyps) if items else None


def _translate_row(
    model: HookedModel,
    row: MethodResult,
    hooks: Any,
    target: str,
    c: EvaluateConfig,
    boot: dict,
    prompts: list[str],
    refs: list[str],
    base_hyps: list[str],
) -> None:
    """BLEU/chrF of translation under ``hooks`` into ``row`` (and its paired intervals)."""
    hyps = _translate(model, prompts, hooks, c)
    row.translation = asdict(translation_scores(hyps, refs, target))
    if c.intervals:
        row.translation_interval = iv.paired_translation_bootstrap(base_hyps, hyps, refs, target, **boot).to_dict()


def _translate(model: HookedModel, prompts: list[str], hooks: Any, c: EvaluateConfig) -> list[str]:
    """Greedy translations of ``prompts`` (under ``hooks``), cut at the first newline."""
    extra = {"hooks": hooks} if hooks is not None else {}
    return [
        clean_completion(h)
        for h in generate(
            model,
            prompts,
            **extra,
            do_sample=False,
            max_new_tokens=c.translation_tokens,
            stop_at_newline=True,
            batch_size=c.batch_size,
            progress=False,
        )
    ]


def _summaries(
    results: EvaluationResult,
    targets: Sequence[str],
    rows: dict[str, Any],
    cells: dict[str, list[iv.ForcingCell]],
    intervals: bool,
    boot: dict[str, Any],
) -> None:
    """The means over targets of every row's rate and forcing score, with pooled intervals."""
    per_target = results.targets
    n = max(len(targets), 1)
    results.summary = {m: sum(per_target[t].methods[m].rate for t in targets) / n for m in rows}
    results.summary["baseline"] = sum(per_target[t].baseline_rate for t in targets) / n
    results.summary_forcing = {m: sum(per_target[t].methods[m].forcing_score for t in targets) / n for m in rows}
    results.summary_forcing["baseline"] = sum(per_target[t].baseline_forcing_score for t in targets) / n
    if intervals and targets:
        # with intervals every cell has its rate interval
        pooled = {m: [cast(dict[str, Any], per_target[t].methods[m].rate_interval) for t in targets] for m in rows}
        pooled["baseline"] = [cast(dict[str, Any], per_target[t].baseline_interval) for t in targets]
        results.summary_interval = {
            name: iv.wilson_interval(sum(c["k"] for c in cs), sum(c["n"] for c in cs)).to_dict()
            for name, cs in pooled.items()
        }
        results.summary_forcing_interval = {
            name: iv.pooled_forcing_interval(cs, **boot).to_dict() for name, cs in cells.items()
        }
