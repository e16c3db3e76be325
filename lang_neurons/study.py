"""Steering evaluation, as the papers run it: target-language rate of generations, translation
BLEU/chrF under steering, and the loss-change matrix. Thin loops over the stages above."""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

import torch
from tqdm.auto import tqdm

from lang_neurons import intervals as iv
from lang_neurons import steering as st
from lang_neurons.choices import DEACTIVATE, DEFAULT_METHODS, EVAL_METHODS, PIN, RESIDUAL
from lang_neurons.controls import random_controls
from lang_neurons.corpora import LanguageCorpus
from lang_neurons.errors import LangNeuronsError
from lang_neurons.evaluation import (
    LanguageIdentifier,
    LanguageRate,
    LossMatrix,
    clean_completion,
    translation_scores,
    translation_task,
)
from lang_neurons.forcing import PROMPT_KINDS, ForcingPrompts, fluency, forcing_prompts, harmonic_mean, quality
from lang_neurons.generation import TextLosses, generate, text_losses
from lang_neurons.models import HookedModel, check_fingerprint
from lang_neurons.neurons import NeuronSet
from lang_neurons.recording import ActivationStats

CONTROL_SUFFIX = ":random"
"""A neuron method's random control row is named ``<method>:random`` (e.g. ``add:random``)."""

DEV_SEED = 100_003
"""Offset of the sampling seeds of the dev split (residual layer and alpha are chosen on it),
far from the test seeds ``seed + batch``, so the two never share a sample."""


def residual_candidates(n_layers: int) -> list[int]:
    """The residual layers tried on the dev split: a third, half and two thirds of the depth."""
    return sorted({max(0, min(n_layers - 1, round(n_layers * f))) for f in (1 / 3, 1 / 2, 2 / 3)})


def choose_residual(
    model: HookedModel,
    stats: ActivationStats,
    targets: Sequence[str],
    lid: LanguageIdentifier,
    *,
    layers: Sequence[int] | None = None,
    alphas: Sequence[float] = (1.0, 2.0),
    samples: int = 8,
    max_new_tokens: int = 32,
    seed: int = 0,
    batch_size: int = 16,
    prompts: ForcingPrompts | None = None,
    generation: dict[str, Any] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Choose the residual DiffMean layer and alpha on the dev split: for each (layer, alpha),
    ``samples`` generations per target, continuing the dev prompts of ``prompts`` (unconditional
    without), with dev seeds (``seed + DEV_SEED``); the pair with the highest forcing score
    (harmonic mean of the target rate and the quality, :mod:`lang_neurons.forcing`, pooled over
    targets) wins, ties to the earlier layer and smaller alpha: a strength that forces the
    language by breaking the text does not. All targets' samples share batches (one residual
    vector per row, :func:`~lang_neurons.steering.stack_rows`). ``generation``: further
    :func:`~lang_neurons.generation.generate` settings (sampling, temperature, penalty).
    Returns ``{"layer", "alpha", "grid": [{"layer", "alpha", "rate", "quality", "score", "n"}, ...],
    "split": "dev"}``."""
    layers = list(layers) if layers is not None else residual_candidates(stats.n_layers)
    dev = prompts.take("dev", samples) if prompts is not None else None
    gen = dict(max_new_tokens=max_new_tokens, progress=False, **(generation or {}))
    # every target's dev samples in shared batches (one residual vector per row), unless this
    # generate regroups prompts by length (TransformerLens 3 without an attention mask)
    mixed = dev is None or "attention_mask" in inspect.signature(model.generate).parameters
    rows = [t for t in targets for _ in range(samples)]  # target-major: target i has rows i*samples ...
    all_prompts = dev * len(targets) if dev is not None else None

    def dev_texts(steer_to: dict[str, st.ResidualSteering]) -> list[str]:
        if not mixed:
            return [
                x
                for t in targets
                for x in generate(
                    model, dev, n=samples, hooks=steer_to[t], seed=seed + DEV_SEED, batch_size=batch_size, **gen
                )
            ]
        texts: list[str] = []
        for b, start in enumerate(range(0, len(rows), batch_size)):
            chunk = rows[start : start + batch_size]
            part = all_prompts[start : start + len(chunk)] if all_prompts is not None else None
            texts += generate(
                model,
                part,
                n=len(chunk),
                hooks=st.stack_rows([steer_to[t] for t in chunk]),
                seed=seed + DEV_SEED + b,
                batch_size=len(chunk),
                **gen,
            )
        return texts

    unsteered = fluency(model, generate(model, dev, n=samples, seed=seed + DEV_SEED, batch_size=batch_size, **gen))
    grid = []
    cells = [(layer, alpha) for layer in layers for alpha in alphas]
    for layer, alpha in tqdm(cells, desc="residual layer/alpha (dev)", disable=not progress):
        texts = dev_texts({t: st.residual_diffmean(stats, t, layer, alpha) for t in targets})
        hits = sum(sum(lid.rate(texts[i * samples : (i + 1) * samples], t).hits) for i, t in enumerate(targets))
        rate, q = hits / len(rows), quality(fluency(model, texts), unsteered)
        grid.append(
            {
                "layer": layer,
                "alpha": alpha,
                "rate": rate,
                "quality": q,
                "score": harmonic_mean(rate, q),
                "n": len(rows),
            }
        )
    best = max(grid, key=lambda g: g["score"])  # max keeps the first of equals: earlier layer, smaller alpha
    return {"layer": best["layer"], "alpha": best["alpha"], "grid": grid, "split": "dev", "criterion": "forcing score"}


def _pooled_samples(
    model: HookedModel, hook_sets: Sequence[Any], prompts: list[str] | None, samples: int, gen: dict[str, Any]
) -> list[str]:
    """``samples`` generations split as evenly as possible over ``hook_sets`` (one seed offset
    each, consecutive slices of ``prompts``), pooled in prompt order."""
    texts: list[str] = []
    for i, hooks in enumerate(hook_sets):
        n = samples // len(hook_sets) + (i < samples % len(hook_sets))
        if n:
            part = prompts[len(texts) : len(texts) + n] if prompts is not None else None
            texts += generate(model, part, n=n, hooks=hooks, **{**gen, "seed": gen["seed"] + 7919 * i})
    return texts


def steering_for(
    neurons: NeuronSet,
    stats: ActivationStats,
    target: str,
    method: str,
    alpha: float = 1.0,
    *,
    source: str | None = None,
    deactivate_value: float = 0.0,
) -> st.Steering:
    """The steering of one evaluated method toward ``target``. ``pin`` (Kojima et al.) sets only
    the target's neurons to its median pooled activation. Every other method is language
    arithmetic: it first switches off the ``source`` language's neurons (``None``: every other
    language's) to ``deactivate_value``, then acts on the target's."""
    if method == PIN:
        return st.override(neurons, target, stats.pooled_median()[stats.lang_index(target)])
    return st.language_arithmetic(
        neurons, stats, target=target, source=source, method=method, alpha=alpha, deactivate_value=deactivate_value
    )


def _text_loss_matrix(
    model: HookedModel, neurons: NeuronSet, corpus: LanguageCorpus, value: float, batch_size: int, progress: bool
) -> tuple[TextLosses, list[TextLosses]]:
    """Per-text losses without intervention and with each language's neurons set to ``value``."""
    base = text_losses(model, corpus, batch_size=batch_size, progress=False)
    rows = []
    for lang in tqdm(neurons.langs, desc="loss matrix", disable=not progress):
        rows.append(
            text_losses(model, corpus, hooks=st.deactivate(neurons, lang, value), batch_size=batch_size, progress=False)
        )
    return base, rows


def loss_matrix(
    model: HookedModel,
    neurons: NeuronSet,
    corpus: LanguageCorpus,
    *,
    value: float = 0.0,
    batch_size: int = 8,
    progress: bool = True,
) -> LossMatrix:
    """Tang et al.: mean token loss of every language's text with each language's neurons set to ``value``."""
    corpus = corpus.subset([x for x in neurons.langs if x in corpus.langs])
    base, rows = _text_loss_matrix(model, neurons, corpus, value, batch_size, progress)
    return LossMatrix(list(corpus.langs), base.mean(), torch.stack([r.mean() for r in rows]))


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
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate steering toward each target with each method; returns a JSON-ready dict.

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
    generation batch size.

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
    """
    check_fingerprint(neurons.model, model, "the neuron set")
    check_fingerprint(stats.model, model, "the statistics")
    if intervals:
        iv.check_samples(samples)
    lid = lid or LanguageIdentifier()
    targets = [t for t in (targets or neurons.langs) if t != source]
    for t in targets:
        neurons.lang_index(t)
    for m in methods:
        if m not in EVAL_METHODS:
            raise LangNeuronsError(f"unknown method {m!r}: choose from {', '.join(EVAL_METHODS)}")
    if deactivate not in DEACTIVATE:
        raise LangNeuronsError(
            f"deactivate is whose neurons go off, one of {', '.join(DEACTIVATE)}; got {deactivate!r}"
        )
    if deactivate == "source" and source not in neurons.langs:
        raise LangNeuronsError(
            f"deactivate='source' switches off the source language's neurons, but {source!r} has no neuron set"
        )
    if prompts not in PROMPT_KINDS:
        raise LangNeuronsError(f"unknown prompts {prompts!r}: choose from {', '.join(PROMPT_KINDS)}")
    if isinstance(controls, bool) or not isinstance(controls, int) or controls < 0:
        raise LangNeuronsError(f"controls is the number of random-control seeds (0: none), got {controls!r}")
    if residual and stats.resid_sums is None:
        raise LangNeuronsError(
            "these statistics have no residual-stream sums (recorded before they existed): "
            "record them again, or evaluate without the residual baseline (residual=False, --no-residual)"
        )
    split = forcing_prompts(
        held_out,
        prompts,
        source=source,
        tokenizer=model.tokenizer,
        prompt_tokens=prompt_tokens,
        dev_share=dev_share,
        seed=seed,
    )
    if not do_sample and prompts == "source" and samples > len(split.test):
        raise LangNeuronsError(
            f"greedy decoding gives one continuation per prompt, but samples={samples} is more than the "
            f"{len(split.test)} test prompts: lower samples, lower dev_share, hold out more texts, or sample"
        )
    if not do_sample and prompts == "bos":
        raise LangNeuronsError(
            "greedy decoding from BOS gives one and the same sample every time: sample (do_sample=True) or use prompts='source'"
        )
    test_prompts = split.take("test", samples)
    decoding: dict[str, Any] = dict(do_sample=do_sample, temperature=temperature, repetition_penalty=repetition_penalty)
    gen: dict[str, Any] = dict(
        max_new_tokens=max_new_tokens, seed=seed, batch_size=batch_size, progress=False, **decoding
    )
    baseline_texts = generate(model, test_prompts, n=samples, **gen)
    base_fluency = fluency(model, baseline_texts)
    can_translate = held_out.is_parallel and source in held_out.langs
    off = source if deactivate == "source" else None
    rows = _rows(neurons, stats, methods, alpha, controls, off, deactivate_value)
    chosen = None
    if residual:
        chosen = choose_residual(
            model,
            stats,
            targets,
            lid,
            layers=residual_layers,
            alphas=residual_alphas,
            samples=dev_samples,
            max_new_tokens=max_new_tokens,
            seed=seed,
            batch_size=batch_size,
            prompts=split if prompts == "source" else None,
            generation=decoding,
            progress=progress,
        )
        rows[RESIDUAL] = lambda target: [st.residual_diffmean(stats, target, chosen["layer"], chosen["alpha"])]
    settings: dict[str, Any] = {
        "methods": list(rows),
        "neuron_methods": list(methods),
        "alpha": alpha,
        "samples": samples,
        "prompts": prompts,
        "prompt_tokens": prompt_tokens,
        "dev_share": dev_share,
        "max_new_tokens": max_new_tokens,
        **decoding,
        "deactivate": deactivate,
        "deactivate_value": deactivate_value,
        "translation_items": translation_items,
        "translation_template": translation_template,
        "translation_tokens": translation_tokens,
        "source": source,
        "seed": seed,
        "site": neurons.site,
        "method": neurons.method,
        "controls": controls,
        "residual": residual,
        "batch_size": batch_size,
        "splits": {"test": "every reported number", "dev": "the residual layer and alpha"},
    }
    if intervals:
        settings["intervals"] = {
            "level": iv.LEVEL,
            "resamples": resamples,
            "rate": "Wilson score",
            "forcing": "paired bootstrap over samples",
            "translation": "paired bootstrap over items",
            "loss_matrix": "paired bootstrap over texts",
        }
    results: dict[str, Any] = {"targets": {}, "settings": settings, "prompts": split.to_dict()}
    if chosen is not None:
        results["residual"] = chosen
    boot = dict(resamples=resamples, seed=seed)
    cells: dict[str, list[iv.ForcingCell]] = {name: [] for name in [*rows, "baseline"]}
    bar = tqdm(total=len(targets) * len(rows), desc="steering", disable=not progress)
    for target in targets:
        base_rate = lid.rate(baseline_texts, target)
        base_cell = (base_rate.hits, base_fluency.sums, base_fluency.counts, base_fluency.sums, base_fluency.counts)
        cells["baseline"].append(base_cell)
        entry: dict[str, Any] = {
            "baseline_rate": base_rate.rate,
            "baseline_fluency_loss": base_fluency.mean_loss,
            "baseline_forcing_score": harmonic_mean(base_rate.rate, 1.0),
            "methods": {},
        }
        if intervals:
            entry["baseline_interval"] = _rate_interval(base_rate)
            entry["baseline_forcing_interval"] = iv.forcing_interval(base_cell, **boot).to_dict()
        items = []
        if translation_items > 0 and can_translate and target in held_out.langs:
            shots = 0 if translation_template == "kojima" else 1
            items = translation_task(
                held_out,
                source,
                target,
                n=min(translation_items, len(held_out[target]) - shots),
                seed=seed,
                shots=shots,
                template=translation_template,
            )
            prompts_tr, refs = [i.prompt for i in items], [i.reference for i in items]
            base_hyps = [
                clean_completion(h)
                for h in generate(
                    model,
                    prompts_tr,
                    do_sample=False,
                    max_new_tokens=translation_tokens,
                    stop_at_newline=True,
                    batch_size=batch_size,
                    progress=False,
                )
            ]
            entry["translation_baseline"] = asdict(translation_scores(base_hyps, refs, target))
            if intervals:
                both = iv.paired_translation_bootstrap(base_hyps, base_hyps, refs, target, **boot).to_dict()
                entry["translation_baseline_interval"] = {
                    "bleu": both["bleu"]["baseline"],
                    "chrf": both["chrf"]["baseline"],
                    "n": both["n"],
                    "resamples": both["resamples"],
                }
        for method, make in rows.items():
            hook_sets = make(target)
            hooks = hook_sets[0]
            texts = _pooled_samples(model, hook_sets, test_prompts, samples, gen)
            rate = lid.rate(texts, target)
            fl = fluency(model, texts)
            q = quality(fl, base_fluency)
            touched = getattr(hooks, "n_neurons", 0)
            row: dict[str, Any] = {
                "rate": rate.rate,
                "quality": q,
                "forcing_score": harmonic_mean(rate.rate, q),
                "fluency_loss": fl.mean_loss,
                "split": "test",
                "neurons": touched,
                "share": touched / neurons.n_neurons,
                "examples": texts[:3],
            }
            cell = (rate.hits, fl.sums, fl.counts, base_fluency.sums, base_fluency.counts)
            cells[method].append(cell)
            if method == RESIDUAL:
                row["layer"], row["alpha"] = chosen["layer"], chosen["alpha"]  # type: ignore[index]
            if intervals:
                row["rate_interval"] = _rate_interval(rate)
                row["forcing_interval"] = iv.forcing_interval(cell, **boot).to_dict()
            if items:
                hyps = [
                    clean_completion(h)
                    for h in generate(
                        model,
                        prompts_tr,
                        hooks=hooks,
                        do_sample=False,
                        max_new_tokens=translation_tokens,
                        stop_at_newline=True,
                        batch_size=batch_size,
                        progress=False,
                    )
                ]
                row["translation"] = asdict(translation_scores(hyps, refs, target))
                if intervals:
                    row["translation_interval"] = iv.paired_translation_bootstrap(
                        base_hyps, hyps, refs, target, **boot
                    ).to_dict()
            entry["methods"][method] = row
            bar.update(1)
        results["targets"][target] = entry
    bar.close()
    if loss_texts:
        corpus = held_out.take(loss_texts, seed=seed)
        corpus = corpus.subset([x for x in neurons.langs if x in corpus.langs])
        base, ablated = _text_loss_matrix(model, neurons, corpus, 0.0, 8, progress)
        results["loss_matrix"] = LossMatrix(
            list(corpus.langs), base.mean(), torch.stack([r.mean() for r in ablated])
        ).to_dict()
        if intervals:
            results["loss_matrix"]["change_interval"] = iv.loss_change_intervals(base, ablated, **boot).to_dict()
    _summaries(results, targets, rows, cells, intervals, boot)
    return results


def _summaries(
    results: dict[str, Any],
    targets: Sequence[str],
    rows: dict[str, Any],
    cells: dict[str, list[iv.ForcingCell]],
    intervals: bool,
    boot: dict[str, Any],
) -> None:
    """The means over targets of every row's rate and forcing score, with pooled intervals."""
    per_target = results["targets"]
    n = max(len(targets), 1)
    results["summary"] = {m: sum(per_target[t]["methods"][m]["rate"] for t in targets) / n for m in rows}
    results["summary"]["baseline"] = sum(per_target[t]["baseline_rate"] for t in targets) / n
    results["summary_forcing"] = {
        m: sum(per_target[t]["methods"][m]["forcing_score"] for t in targets) / n for m in rows
    }
    results["summary_forcing"]["baseline"] = sum(per_target[t]["baseline_forcing_score"] for t in targets) / n
    if intervals and targets:
        pooled = {m: [per_target[t]["methods"][m]["rate_interval"] for t in targets] for m in rows}
        pooled["baseline"] = [per_target[t]["baseline_interval"] for t in targets]
        results["summary_interval"] = {
            name: iv.wilson_interval(sum(c["k"] for c in cs), sum(c["n"] for c in cs)).to_dict()
            for name, cs in pooled.items()
        }
        results["summary_forcing_interval"] = {
            name: iv.pooled_forcing_interval(cs, **boot).to_dict() for name, cs in cells.items()
        }


def _rows(
    neurons: NeuronSet,
    stats: ActivationStats,
    methods: Sequence[str],
    alpha: float,
    controls: int,
    source: str | None = None,
    deactivate_value: float = 0.0,
) -> dict[str, Any]:
    """Row name → (target → the hook sets whose samples are pooled), methods then their controls."""
    rows: dict[str, Any] = {}
    sets = random_controls(neurons, range(controls)) if controls else []
    how: dict[str, Any] = dict(alpha=alpha, source=source, deactivate_value=deactivate_value)
    for m in methods:
        rows[m] = lambda target, m=m: [steering_for(neurons, stats, target, m, **how)]
    for m in methods if sets else ():
        rows[m + CONTROL_SUFFIX] = lambda target, m=m: [steering_for(c, stats, target, m, **how) for c in sets]
    return rows


def _rate_interval(rate: LanguageRate) -> dict[str, Any]:
    """The Wilson interval of a :class:`LanguageRate`, JSON-ready."""
    return iv.wilson_interval(sum(rate.hits), rate.n).to_dict()


def format_table(results: Mapping[str, Any]) -> str:
    """A readable table of :func:`evaluate`'s results; with intervals, every number shows its
    95 % interval (``0.71 [0.53, 0.85] n=30``) and the loss-change cells follow."""
    if "summary_interval" in results:
        return _format_with_intervals(results)
    methods = results["settings"]["methods"]
    lines = [
        f"{'target':<8}{'method':<19}{'base rate':>10}{'rate':>7}{'quality':>9}{'score':>7}{'BLEU base':>11}{'BLEU':>7}"
        f"{'chrF base':>11}{'chrF':>7}{'neurons':>9}{'share':>8}"
    ]
    for target, entry in results["targets"].items():
        tb = entry.get("translation_baseline", {})
        for m in methods:
            row = entry["methods"][m]
            tr = row.get("translation", {})
            lines.append(
                f"{target:<8}{m:<19}{entry['baseline_rate']:>10.2f}{row['rate']:>7.2f}"
                f"{row.get('quality', float('nan')):>9.2f}{row.get('forcing_score', float('nan')):>7.2f}"
                f"{tb.get('bleu', float('nan')):>11.1f}{tr.get('bleu', float('nan')):>7.1f}"
                f"{tb.get('chrf', float('nan')):>11.1f}{tr.get('chrf', float('nan')):>7.1f}{row['neurons']:>9}{row['share']:>8.2%}"
            )
    summary = results["summary"]
    lines.append("mean rate: " + ", ".join(f"{k} {v:.2f}" for k, v in summary.items()))
    if "summary_forcing" in results:
        lines.append("mean forcing score: " + ", ".join(f"{k} {v:.2f}" for k, v in results["summary_forcing"].items()))
    if "loss_matrix" in results:
        lm = results["loss_matrix"]
        lines.append(
            f"loss matrix: diagonal dominant for {sum(lm['diagonal_dominance'].values())}/{len(lm['diagonal_dominance'])} languages"
        )
    return "\n".join(lines)


def format_rate(interval: Mapping[str, Any]) -> str:
    """A rate interval of :func:`evaluate`'s results as ``0.71 [0.53, 0.85] n=30``."""
    return f"{interval['rate']:.2f} [{interval['low']:.2f}, {interval['high']:.2f}] n={interval['n']}"


def format_interval(interval: Mapping[str, Any], digits: int = 1, signed: bool = False) -> str:
    """A bootstrap interval of :func:`evaluate`'s results as ``12.3 [8.1, 16.0]`` (``+`` signs with ``signed``)."""
    f = f"{'+' if signed else ''}.{digits}f"
    return f"{interval['estimate']:{f}} [{interval['low']:{f}}, {interval['high']:{f}}]"


def _format_with_intervals(results: Mapping[str, Any]) -> str:
    methods = results["settings"]["methods"]
    level = results["settings"]["intervals"]["level"]
    lines = [
        f"{level:.0%} intervals: Wilson for rates, paired bootstrap over items for BLEU/chrF "
        f"({results['settings']['intervals']['resamples']} resamples)",
        f"{'target':<8}{'method':<19}{'base rate':<24}{'rate':<24}{'quality':<20}{'forcing score':<20}{'neurons':>9}{'share':>8}",
    ]
    for target, entry in results["targets"].items():
        for m in methods:
            row = entry["methods"][m]
            fi = row.get("forcing_interval")
            forcing = [format_interval(fi[k], 2) if fi else "" for k in ("quality", "score")]
            lines.append(
                f"{target:<8}{m:<19}{format_rate(entry['baseline_interval']):<24}{format_rate(row['rate_interval']):<24}"
                f"{forcing[0]:<20}{forcing[1]:<20}{row['neurons']:>9}{row['share']:>8.2%}"
            )
    translated = [
        (t, m) for t, e in results["targets"].items() for m in methods if "translation_interval" in e["methods"][m]
    ]
    if translated:
        lines.append(
            f"{'target':<8}{'method':<19}"
            + "".join(
                f"{h:<22}" for h in ("BLEU base", "BLEU", "BLEU steered-base", "chrF base", "chrF", "chrF steered-base")
            )
        )
        for t, m in translated:
            ti = results["targets"][t]["methods"][m]["translation_interval"]
            cells = [
                format_interval(ti[k][part], signed=part == "difference")
                for k in ("bleu", "chrf")
                for part in ("baseline", "steered", "difference")
            ]
            lines.append(f"{t:<8}{m:<19}" + "".join(f"{c:<22}" for c in cells) + f"n={ti['n']}")
    lines.append("mean rate: " + ", ".join(f"{k} {format_rate(v)}" for k, v in results["summary_interval"].items()))
    if "summary_forcing_interval" in results:
        lines.append(
            "mean forcing score: "
            + ", ".join(f"{k} {format_interval(v, 2)}" for k, v in results["summary_forcing_interval"].items())
        )
    if "loss_matrix" in results:
        lm = results["loss_matrix"]
        if "diagonal_dominance" in lm:
            lines.append(
                f"loss matrix: diagonal dominant for {sum(lm['diagonal_dominance'].values())}/{len(lm['diagonal_dominance'])} languages"
            )
        if "change_interval" in lm:
            ci = lm["change_interval"]
            lines.append(
                f"loss change (ablated - base), {level:.0%} bootstrap over texts; rows: ablated, columns: evaluated"
            )
            lines.append(f"{'':<8}" + "".join(f"{lang:<26}" for lang in lm["langs"]))
            for a, lang in enumerate(lm["langs"]):
                cells = [
                    format_interval(
                        {"estimate": lm["change"][a][e], "low": ci["low"][a][e], "high": ci["high"][a][e]}, 3, True
                    )
                    for e in range(len(lm["langs"]))
                ]
                lines.append(f"{lang:<8}" + "".join(f"{c:<26}" for c in cells))
    return "\n".join(line.rstrip() for line in lines)
