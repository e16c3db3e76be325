"""The rows of a steering evaluation: each method's steering, its random controls pooled over
seeds, and the loss-change matrix."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from lang_neurons import intervals as iv
from lang_neurons import steering as st
from lang_neurons.choices import PIN
from lang_neurons.controls import random_controls
from lang_neurons.corpora import LanguageCorpus
from lang_neurons.evaluation import LanguageRate, LossMatrix
from lang_neurons.generation import PassBar, TextLosses, generate, text_losses, text_passes
from lang_neurons.models import HookedModel
from lang_neurons.neurons import NeuronSet
from lang_neurons.recording import ActivationStats

CONTROL_SUFFIX = ":random"
"""A neuron method's random control row is named ``<method>:random`` (e.g. ``add:random``)."""


def split_samples(samples: int, parts: int) -> list[int]:
    """``samples`` split as evenly as possible over ``parts``, the first ones one larger."""
    return [samples // parts + (i < samples % parts) for i in range(parts)]


def pooled_samples(
    model: HookedModel, hook_sets: Sequence[Any], prompts: list[str] | None, samples: int, gen: dict[str, Any]
) -> list[str]:
    """``samples`` generations split as evenly as possible over ``hook_sets`` (one seed offset
    each, consecutive slices of ``prompts``), pooled in prompt order."""
    texts: list[str] = []
    for i, (hooks, n) in enumerate(zip(hook_sets, split_samples(samples, len(hook_sets)))):
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


def text_loss_matrix(
    model: HookedModel, neurons: NeuronSet, corpus: LanguageCorpus, value: float, batch_size: int, progress: bool
) -> tuple[TextLosses, list[TextLosses]]:
    """Per-text losses without intervention and with each language's neurons set to ``value``."""
    base = text_losses(model, corpus, batch_size=batch_size, progress=False)
    return base, ablation_losses(model, neurons, corpus, value, batch_size, progress)


def ablation_losses(
    model: HookedModel, neurons: NeuronSet, corpus: LanguageCorpus, value: float, batch_size: int, progress: bool
) -> list[TextLosses]:
    """Per-text losses with each language's neurons set to ``value``, in ``neurons.langs`` order."""
    per_lang = text_passes(corpus, batch_size)
    rows = []
    with PassBar(model, len(neurons.langs) * per_lang, "loss matrix", progress) as bar:
        for lang in neurons.langs:
            with bar.step(f"{lang} neurons off", per_lang):
                hooks = st.deactivate(neurons, lang, value)
                rows.append(text_losses(model, corpus, hooks=hooks, batch_size=batch_size, progress=False))
    return rows


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
    base, rows = text_loss_matrix(model, neurons, corpus, value, batch_size, progress)
    return LossMatrix(list(corpus.langs), base.mean(), torch.stack([r.mean() for r in rows]))


def method_rows(
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


def rate_interval(rate: LanguageRate) -> dict[str, Any]:
    """The Wilson interval of a :class:`LanguageRate`, JSON-ready."""
    return iv.wilson_interval(sum(rate.hits), rate.n).to_dict()
