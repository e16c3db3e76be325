"""The residual-stream DiffMean baseline's layer and alpha, chosen on the dev split of the prompts."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

from lang_neurons import steering as st
from lang_neurons.evaluation import LanguageIdentifier
from lang_neurons.forcing import Fluency, ForcingPrompts, fluency, harmonic_mean, quality
from lang_neurons.generation import PassBar, generate, planned_passes
from lang_neurons.models import HookedModel
from lang_neurons.recording import ActivationStats

from .projection import dev_grid_passes

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

    def cell(layer: int, alpha: float, unsteered: Fluency) -> dict[str, Any]:
        texts = dev_texts({t: st.residual_diffmean(stats, t, layer, alpha) for t in targets})
        hits = sum(sum(lid.rate(texts[i * samples : (i + 1) * samples], t).hits) for i, t in enumerate(targets))
        rate, q = hits / len(rows), quality(fluency(model, texts), unsteered)
        return {
            "layer": layer,
            "alpha": alpha,
            "rate": rate,
            "quality": q,
            "score": harmonic_mean(rate, q),
            "n": len(rows),
        }

    cells = [(layer, alpha) for layer in layers for alpha in alphas]
    per_cell = planned_passes(len(rows), batch_size, max_new_tokens)
    total = dev_grid_passes(len(cells), len(targets), samples, batch_size, max_new_tokens)
    with PassBar(model, total, "residual dev grid", progress) as bar:
        with bar.step("unsteered", total - len(cells) * per_cell):
            unsteered = fluency(
                model, generate(model, dev, n=samples, seed=seed + DEV_SEED, batch_size=batch_size, **gen)
            )
        grid = []
        for layer, alpha in cells:
            with bar.step(f"layer {layer} alpha {alpha:g}", per_cell):
                grid.append(cell(layer, alpha, unsteered))
    best = max(grid, key=lambda g: g["score"])  # max keeps the first of equals: earlier layer, smaller alpha
    return {"layer": best["layer"], "alpha": best["alpha"], "grid": grid, "split": "dev", "criterion": "forcing score"}
