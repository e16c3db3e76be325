"""Hand-made inputs for the figure and report tests: statistics, neuron sets and study results
with known numbers (tests/unit/plots/test_plots.py, tests/unit/test_report.py and
tests/integration/test_results_tables.py share them)."""

from __future__ import annotations

import math
from typing import Any

import torch

import lang_neurons as ln
from lang_neurons.intervals import wilson_interval

LANGS = ["en", "de", "fr"]


def _stats(n_layers: int = 2, width: int = 4, seed: int = 0) -> ln.ActivationStats:
    """Three languages, 10 tokens each, known activation counts; 3 pooled sentences per language."""
    g = torch.Generator().manual_seed(seed)
    active = torch.randint(0, 11, (3, n_layers, width), generator=g)
    pooled = torch.randn(9, n_layers, width, generator=g)
    return ln.ActivationStats(
        langs=list(LANGS),
        site="act",
        pooling="mean",
        tokens=torch.tensor([10, 10, 10]),
        active=active,
        sums=active.double(),
        sq_sums=active.double(),
        sentences=torch.tensor([3, 3, 3]),
        pooled=pooled,
        pooled_lang=torch.arange(3).repeat_interleave(3),
        model={"n_layers": n_layers},
        corpus="synthetic",
    )


def _neurons(
    method: str = "lape", members: dict[str, list[tuple[int, int]]] | None = None, shape=(2, 4), site="act"
) -> ln.NeuronSet:
    """en: (0,0) (0,1) (1,2); de: (0,1) (1,3); fr: (1,0) unless ``members`` says otherwise."""
    members = members or {"en": [(0, 0), (0, 1), (1, 2)], "de": [(0, 1), (1, 3)], "fr": [(1, 0)]}
    mask = torch.zeros(len(members), *shape, dtype=torch.bool)
    for i, pairs in enumerate(members.values()):
        for layer, index in pairs:
            mask[i, layer, index] = True
    return ln.NeuronSet(list(members), mask, site, method)


ROWS = ["add", "add:random", "residual_diffmean"]
HITS = {
    "de": {"baseline": 1, "add": 16, "add:random": 3, "residual_diffmean": 12},
    "fr": {"baseline": 0, "add": 10, "add:random": 2, "residual_diffmean": 14},
}
QUALITY = {"baseline": 1.0, "add": 0.8, "add:random": 0.95, "residual_diffmean": 0.5}


def _boot(estimate: float) -> dict[str, float]:
    """A bootstrap interval dict around ``estimate`` (0.1 below, 0.05 above, inside [0, 1])."""
    return {"estimate": estimate, "low": max(estimate - 0.1, 0.0), "high": min(estimate + 0.05, 1.0), "level": 0.95}


def _results(forcing: bool = True, intervals: bool = True, samples: int = 20) -> dict[str, Any]:
    """Results shaped like lang_neurons.study.evaluate's: targets de and fr, rows add, add:random and
    residual_diffmean (layer 2, alpha 2 chosen on dev); with ``forcing`` the quality / forcing-score
    keys of the prompted evaluation (an older metrics.json lacks them), with ``intervals`` every interval."""
    settings: dict[str, Any] = {
        "methods": list(ROWS),
        "neuron_methods": ["add"],
        "alpha": 1.0,
        "samples": samples,
        "method": "lape",
        "source": "en",
        "controls": 3,
        "residual": True,
    }
    if intervals:
        settings["intervals"] = {"level": 0.95, "resamples": 200, "rate": "Wilson score"}
    results: dict[str, Any] = {
        "settings": settings,
        "targets": {},
        "residual": {"layer": 2, "alpha": 2.0, "grid": [], "split": "dev"},
    }
    if forcing:
        settings["prompts"] = "source"
        results["prompts"] = {"kind": "source", "source": "en", "dev": 5, "test": samples}
    for target, hits in HITS.items():
        entry: dict[str, Any] = {"baseline_rate": hits["baseline"] / samples, "methods": {}}
        for name in ["baseline", *ROWS]:
            rate, q = hits[name] / samples, QUALITY[name]
            score = 2 * rate * q / (rate + q) if rate + q else 0.0
            cells: dict[str, Any] = {
                "rate": rate,
                "neurons": 0 if name == "residual_diffmean" else 30,
                "share": 0.0,
                "examples": [],
            }
            if name == "residual_diffmean":
                cells["layer"], cells["alpha"] = 2, 2.0
            if intervals:
                cells["rate_interval"] = wilson_interval(hits[name], samples).to_dict()
            if forcing:
                cells.update(quality=q, forcing_score=score, fluency_loss=3.0 - math.log(q), split="test")
                if intervals:
                    quality = (
                        {"estimate": 1.0, "low": 1.0, "high": 1.0, "level": 0.95} if name == "baseline" else _boot(q)
                    )
                    cells["forcing_interval"] = {
                        "quality": quality,
                        "score": _boot(score),
                        "n": samples,
                        "resamples": 200,
                    }
            if name != "baseline":
                entry["methods"][name] = cells
                continue
            if intervals:
                entry["baseline_interval"] = cells["rate_interval"]
            if forcing:
                entry["baseline_forcing_score"], entry["baseline_fluency_loss"] = score, cells["fluency_loss"]
                if intervals:
                    entry["baseline_forcing_interval"] = cells["forcing_interval"]
        results["targets"][target] = entry
    names = [*ROWS, "baseline"]
    rate_of = {
        n: [e["baseline_rate"] if n == "baseline" else e["methods"][n]["rate"] for e in results["targets"].values()]
        for n in names
    }
    results["summary"] = {n: sum(r) / len(r) for n, r in rate_of.items()}
    if intervals:
        results["summary_interval"] = {
            n: wilson_interval(sum(HITS[t][n] for t in HITS), samples * len(HITS)).to_dict() for n in names
        }
    if forcing:
        score_of = {
            n: [
                e["baseline_forcing_score"] if n == "baseline" else e["methods"][n]["forcing_score"]
                for e in results["targets"].values()
            ]
            for n in names
        }
        results["summary_forcing"] = {n: sum(s) / len(s) for n, s in score_of.items()}
        if intervals:
            results["summary_forcing_interval"] = {n: _boot(v) for n, v in results["summary_forcing"].items()}
    return results
