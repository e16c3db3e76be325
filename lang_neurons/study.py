"""Steering evaluation, as the papers run it: target-language rate of generations, translation
BLEU/chrF under steering, and the loss-change matrix. Thin loops over the stages above."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import torch
from tqdm.auto import tqdm

from lang_neurons import steering as st
from lang_neurons.corpora import LanguageCorpus
from lang_neurons.errors import LangNeuronsError
from lang_neurons.evaluation import LanguageIdentifier, LossMatrix, clean_completion, translation_scores, translation_task
from lang_neurons.generation import generate, language_loss
from lang_neurons.models import HookedModel, check_fingerprint
from lang_neurons.neurons import NeuronSet
from lang_neurons.record import ActivationStats

DEFAULT_METHODS = ("add", "diffmean", "override")


def steering_for(neurons: NeuronSet, stats: ActivationStats, target: str, method: str, alpha: float = 1.0) -> st.Steering:
    """The steering of one evaluated method toward ``target``: every method first switches off
    the other languages' neurons (language arithmetic), then acts on the target's."""
    return st.language_arithmetic(neurons, stats, target=target, method=method, alpha=alpha)


def loss_matrix(
    model: HookedModel, neurons: NeuronSet, corpus: LanguageCorpus, *, value: float = 0.0, batch_size: int = 8, progress: bool = True
) -> LossMatrix:
    """Tang et al.: mean token loss of every language's text with each language's neurons set to ``value``."""
    corpus = corpus.subset([x for x in neurons.langs if x in corpus.langs])
    base = language_loss(model, corpus, batch_size=batch_size, progress=False)
    rows = []
    for lang in tqdm(neurons.langs, desc="loss matrix", disable=not progress):
        rows.append(language_loss(model, corpus, hooks=st.deactivate(neurons, lang, value), batch_size=batch_size, progress=False))
    return LossMatrix(list(corpus.langs), base, torch.stack(rows))


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
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate steering toward each target with each method; returns a JSON-ready dict.

    Per target and method: the fastText target-language rate of ``samples`` unconditional
    generations (baseline and steered), BLEU/chrF of few-shot translation from ``source``
    (baseline and steered, greedy), and the number/share of neurons touched. Also the loss-change
    matrix on up to ``loss_texts`` held-out texts per language.
    """
    check_fingerprint(neurons.model, model, "the neuron set")
    check_fingerprint(stats.model, model, "the statistics")
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
    results: dict[str, Any] = {"targets": {}, "settings": {
        "methods": list(methods), "alpha": alpha, "samples": samples, "max_new_tokens": max_new_tokens,
        "translation_items": translation_items, "source": source, "seed": seed, "site": neurons.site, "method": neurons.method,
    }}
    bar = tqdm(total=len(targets) * len(methods), desc="steering", disable=not progress)
    for target in targets:
        entry: dict[str, Any] = {"baseline_rate": lid.rate(baseline_texts, target).rate, "methods": {}}
        items = []
        if translation_items > 0 and can_translate and target in held_out.langs:
            items = translation_task(held_out, source, target, n=min(translation_items, len(held_out[target]) - 1), seed=seed)
            prompts, refs = [i.prompt for i in items], [i.reference for i in items]
            hyps = [clean_completion(h) for h in generate(model, prompts, do_sample=False, max_new_tokens=48, stop_at_newline=True, progress=False)]
            entry["translation_baseline"] = asdict(translation_scores(hyps, refs, target))
        for method in methods:
            hooks = steering_for(neurons, stats, target, method, alpha)
            texts = generate(model, n=samples, hooks=hooks, **gen)
            rate = lid.rate(texts, target)
            row: dict[str, Any] = {"rate": rate.rate, "neurons": hooks.n_neurons, "share": hooks.n_neurons / neurons.n_neurons,
                                   "examples": texts[:3]}
            if items:
                hyps = [clean_completion(h) for h in generate(model, prompts, hooks=hooks, do_sample=False, max_new_tokens=48, stop_at_newline=True, progress=False)]
                row["translation"] = asdict(translation_scores(hyps, refs, target))
            entry["methods"][method] = row
            bar.update(1)
        results["targets"][target] = entry
    bar.close()
    if loss_texts:
        matrix = loss_matrix(model, neurons, held_out.take(loss_texts, seed=seed), progress=progress)
        results["loss_matrix"] = matrix.to_dict()
    results["summary"] = {
        m: sum(results["targets"][t]["methods"][m]["rate"] for t in targets) / max(len(targets), 1) for m in methods
    }
    results["summary"]["baseline"] = sum(results["targets"][t]["baseline_rate"] for t in targets) / max(len(targets), 1)
    return results


def format_table(results: dict[str, Any]) -> str:
    """A readable table of :func:`evaluate`'s results."""
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
