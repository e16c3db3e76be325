"""Steering evaluation, as the papers run it: target-language rate of generations, translation
BLEU/chrF under steering, and the loss-change matrix. Thin loops over the stages above."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import torch
from tqdm.auto import tqdm

from lang_neurons import intervals as iv
from lang_neurons import steering as st
from lang_neurons.corpora import LanguageCorpus
from lang_neurons.errors import LangNeuronsError
from lang_neurons.evaluation import LanguageIdentifier, LanguageRate, LossMatrix, clean_completion, translation_scores, translation_task
from lang_neurons.generation import TextLosses, generate, text_losses
from lang_neurons.models import HookedModel, check_fingerprint
from lang_neurons.neurons import NeuronSet
from lang_neurons.record import ActivationStats

DEFAULT_METHODS = ("add", "diffmean", "override")


def steering_for(neurons: NeuronSet, stats: ActivationStats, target: str, method: str, alpha: float = 1.0) -> st.Steering:
    """The steering of one evaluated method toward ``target``: every method first switches off
    the other languages' neurons (language arithmetic), then acts on the target's."""
    return st.language_arithmetic(neurons, stats, target=target, method=method, alpha=alpha)


def _text_loss_matrix(
    model: HookedModel, neurons: NeuronSet, corpus: LanguageCorpus, value: float, batch_size: int, progress: bool
) -> tuple[TextLosses, list[TextLosses]]:
    """Per-text losses without intervention and with each language's neurons set to ``value``."""
    base = text_losses(model, corpus, batch_size=batch_size, progress=False)
    rows = []
    for lang in tqdm(neurons.langs, desc="loss matrix", disable=not progress):
        rows.append(text_losses(model, corpus, hooks=st.deactivate(neurons, lang, value), batch_size=batch_size, progress=False))
    return base, rows


def loss_matrix(
    model: HookedModel, neurons: NeuronSet, corpus: LanguageCorpus, *, value: float = 0.0, batch_size: int = 8, progress: bool = True
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
    max_new_tokens: int = 32,
    translation_items: int = 20,
    source: str = "en",
    loss_texts: int = 40,
    lid: LanguageIdentifier | None = None,
    seed: int = 0,
    intervals: bool = True,
    resamples: int = iv.RESAMPLES,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate steering toward each target with each method; returns a JSON-ready dict.

    Per target and method: the fastText target-language rate of ``samples`` unconditional
    generations (baseline and steered), BLEU/chrF of few-shot translation from ``source``
    (baseline and steered, greedy), and the number/share of neurons touched. Also the loss-change
    matrix on up to ``loss_texts`` held-out texts per language.

    With ``intervals`` (the default; needs ``samples >= 10``) every number also gets its 95 %
    interval (:mod:`lang_neurons.intervals`), seeded from ``seed``: ``baseline_interval`` and
    each method's ``rate_interval`` (Wilson), ``translation_baseline_interval`` and each method's
    ``translation_interval`` (paired bootstrap over items: baseline, steered, steered - baseline),
    the loss matrix's ``change_interval`` (paired bootstrap over texts) and ``summary_interval``
    (Wilson on the successes pooled over targets).
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
        if m not in st.METHODS:
            raise LangNeuronsError(f"unknown method {m!r}: choose from {', '.join(st.METHODS)}")
    gen = dict(max_new_tokens=max_new_tokens, seed=seed, progress=False)
    baseline_texts = generate(model, n=samples, **gen)
    can_translate = held_out.is_parallel and source in held_out.langs
    settings: dict[str, Any] = {
        "methods": list(methods), "alpha": alpha, "samples": samples, "max_new_tokens": max_new_tokens,
        "translation_items": translation_items, "source": source, "seed": seed, "site": neurons.site, "method": neurons.method,
    }
    if intervals:
        settings["intervals"] = {"level": iv.LEVEL, "resamples": resamples, "rate": "Wilson score",
                                 "translation": "paired bootstrap over items", "loss_matrix": "paired bootstrap over texts"}
    results: dict[str, Any] = {"targets": {}, "settings": settings}
    boot = dict(resamples=resamples, seed=seed)
    bar = tqdm(total=len(targets) * len(methods), desc="steering", disable=not progress)
    for target in targets:
        base_rate = lid.rate(baseline_texts, target)
        entry: dict[str, Any] = {"baseline_rate": base_rate.rate, "methods": {}}
        if intervals:
            entry["baseline_interval"] = _rate_interval(base_rate)
        items = []
        if translation_items > 0 and can_translate and target in held_out.langs:
            items = translation_task(held_out, source, target, n=min(translation_items, len(held_out[target]) - 1), seed=seed)
            prompts, refs = [i.prompt for i in items], [i.reference for i in items]
            base_hyps = [clean_completion(h) for h in generate(model, prompts, do_sample=False, max_new_tokens=48, stop_at_newline=True, progress=False)]
            entry["translation_baseline"] = asdict(translation_scores(base_hyps, refs, target))
            if intervals:
                both = iv.paired_translation_bootstrap(base_hyps, base_hyps, refs, target, **boot).to_dict()
                entry["translation_baseline_interval"] = {
                    "bleu": both["bleu"]["baseline"], "chrf": both["chrf"]["baseline"], "n": both["n"], "resamples": both["resamples"]}
        for method in methods:
            hooks = steering_for(neurons, stats, target, method, alpha)
            texts = generate(model, n=samples, hooks=hooks, **gen)
            rate = lid.rate(texts, target)
            row: dict[str, Any] = {"rate": rate.rate, "neurons": hooks.n_neurons, "share": hooks.n_neurons / neurons.n_neurons,
                                   "examples": texts[:3]}
            if intervals:
                row["rate_interval"] = _rate_interval(rate)
            if items:
                hyps = [clean_completion(h) for h in generate(model, prompts, hooks=hooks, do_sample=False, max_new_tokens=48, stop_at_newline=True, progress=False)]
                row["translation"] = asdict(translation_scores(hyps, refs, target))
                if intervals:
                    row["translation_interval"] = iv.paired_translation_bootstrap(base_hyps, hyps, refs, target, **boot).to_dict()
            entry["methods"][method] = row
            bar.update(1)
        results["targets"][target] = entry
    bar.close()
    if loss_texts:
        corpus = held_out.take(loss_texts, seed=seed)
        corpus = corpus.subset([x for x in neurons.langs if x in corpus.langs])
        base, rows = _text_loss_matrix(model, neurons, corpus, 0.0, 8, progress)
        results["loss_matrix"] = LossMatrix(list(corpus.langs), base.mean(), torch.stack([r.mean() for r in rows])).to_dict()
        if intervals:
            results["loss_matrix"]["change_interval"] = iv.loss_change_intervals(base, rows, **boot).to_dict()
    results["summary"] = {
        m: sum(results["targets"][t]["methods"][m]["rate"] for t in targets) / max(len(targets), 1) for m in methods
    }
    results["summary"]["baseline"] = sum(results["targets"][t]["baseline_rate"] for t in targets) / max(len(targets), 1)
    if intervals and targets:
        pooled = {m: [results["targets"][t]["methods"][m]["rate_interval"] for t in targets] for m in methods}
        pooled["baseline"] = [results["targets"][t]["baseline_interval"] for t in targets]
        results["summary_interval"] = {
            name: iv.wilson_interval(sum(r["k"] for r in rows), sum(r["n"] for r in rows)).to_dict() for name, rows in pooled.items()
        }
    return results


def _rate_interval(rate: LanguageRate) -> dict[str, Any]:
    """The Wilson interval of a :class:`LanguageRate`, JSON-ready."""
    return iv.wilson_interval(sum(rate.hits), rate.n).to_dict()


def format_table(results: dict[str, Any]) -> str:
    """A readable table of :func:`evaluate`'s results; with intervals, every number shows its
    95 % interval (``0.71 [0.53, 0.85] n=30``) and the loss-change cells follow."""
    if "summary_interval" in results:
        return _format_with_intervals(results)
    methods = results["settings"]["methods"]
    lines = [f"{'target':<8}{'method':<10}{'base rate':>10}{'rate':>7}{'BLEU base':>11}{'BLEU':>7}{'chrF base':>11}{'chrF':>7}{'neurons':>9}{'share':>8}"]
    for target, entry in results["targets"].items():
        tb = entry.get("translation_baseline", {})
        for m in methods:
            row = entry["methods"][m]
            tr = row.get("translation", {})
            lines.append(
                f"{target:<8}{m:<10}{entry['baseline_rate']:>10.2f}{row['rate']:>7.2f}"
                f"{tb.get('bleu', float('nan')):>11.1f}{tr.get('bleu', float('nan')):>7.1f}"
                f"{tb.get('chrf', float('nan')):>11.1f}{tr.get('chrf', float('nan')):>7.1f}{row['neurons']:>9}{row['share']:>8.2%}"
            )
    summary = results["summary"]
    lines.append("mean rate: " + ", ".join(f"{k} {v:.2f}" for k, v in summary.items()))
    if "loss_matrix" in results:
        lm = results["loss_matrix"]
        lines.append(f"loss matrix: diagonal dominant for {sum(lm['diagonal_dominance'].values())}/{len(lm['diagonal_dominance'])} languages")
    return "\n".join(lines)


def format_rate(interval: dict[str, Any]) -> str:
    """A rate interval of :func:`evaluate`'s results as ``0.71 [0.53, 0.85] n=30``."""
    return f"{interval['rate']:.2f} [{interval['low']:.2f}, {interval['high']:.2f}] n={interval['n']}"


def format_interval(interval: dict[str, Any], digits: int = 1, signed: bool = False) -> str:
    """A bootstrap interval of :func:`evaluate`'s results as ``12.3 [8.1, 16.0]`` (``+`` signs with ``signed``)."""
    f = f"{'+' if signed else ''}.{digits}f"
    return f"{interval['estimate']:{f}} [{interval['low']:{f}}, {interval['high']:{f}}]"


def _format_with_intervals(results: dict[str, Any]) -> str:
    methods = results["settings"]["methods"]
    level = results["settings"]["intervals"]["level"]
    lines = [f"{level:.0%} intervals: Wilson for rates, paired bootstrap over items for BLEU/chrF "
             f"({results['settings']['intervals']['resamples']} resamples)",
             f"{'target':<8}{'method':<10}{'base rate':<24}{'rate':<24}{'neurons':>9}{'share':>8}"]
    for target, entry in results["targets"].items():
        for m in methods:
            row = entry["methods"][m]
            lines.append(f"{target:<8}{m:<10}{format_rate(entry['baseline_interval']):<24}{format_rate(row['rate_interval']):<24}"
                         f"{row['neurons']:>9}{row['share']:>8.2%}")
    translated = [(t, m) for t, e in results["targets"].items() for m in methods if "translation_interval" in e["methods"][m]]
    if translated:
        lines.append(f"{'target':<8}{'method':<10}" + "".join(f"{h:<22}" for h in ("BLEU base", "BLEU", "BLEU steered-base",
                                                                                 "chrF base", "chrF", "chrF steered-base")))
        for t, m in translated:
            ti = results["targets"][t]["methods"][m]["translation_interval"]
            cells = [format_interval(ti[k][part], signed=part == "difference") for k in ("bleu", "chrf")
                     for part in ("baseline", "steered", "difference")]
            lines.append(f"{t:<8}{m:<10}" + "".join(f"{c:<22}" for c in cells) + f"n={ti['n']}")
    lines.append("mean rate: " + ", ".join(f"{k} {format_rate(v)}" for k, v in results["summary_interval"].items()))
    if "loss_matrix" in results:
        lm = results["loss_matrix"]
        if "diagonal_dominance" in lm:
            lines.append(f"loss matrix: diagonal dominant for {sum(lm['diagonal_dominance'].values())}/{len(lm['diagonal_dominance'])} languages")
        if "change_interval" in lm:
            ci = lm["change_interval"]
            lines.append(f"loss change (ablated - base), {level:.0%} bootstrap over texts; rows: ablated, columns: evaluated")
            lines.append(f"{'':<8}" + "".join(f"{lang:<26}" for lang in lm["langs"]))
            for a, lang in enumerate(lm["langs"]):
                cells = [format_interval({"estimate": lm["change"][a][e], "low": ci["low"][a][e], "high": ci["high"][a][e]}, 3, True)
                         for e in range(len(lm["langs"]))]
                lines.append(f"{lang:<8}" + "".join(f"{c:<26}" for c in cells))
    return "\n".join(line.rstrip() for line in lines)
