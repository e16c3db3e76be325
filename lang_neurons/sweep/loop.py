"""The sweep itself: the cells on the dev split (resumable through ``sweep_cells.jsonl``), the
choice, the test re-measurement."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lang_neurons import hardware
from lang_neurons import intervals as iv
from lang_neurons import steering as st
from lang_neurons.choices import RESIDUAL
from lang_neurons.corpora import LanguageCorpus
from lang_neurons.errors import LangNeuronsError
from lang_neurons.evaluation import LanguageIdentifier
from lang_neurons.forcing import fluency, forcing_prompts, harmonic_mean, quality
from lang_neurons.generation import SCORE_BATCH, PassBar, generate, planned_passes
from lang_neurons.models import HookedModel, check_fingerprint, computing_in
from lang_neurons.neurons import NeuronSet, average_precision, lape
from lang_neurons.recording import ActivationStats
from lang_neurons.study import DEV_SEED, evaluate, steering_for
from lang_neurons.study.projection import Projection

from .grid import CELLS_FILE, SweepConfig, SweepResult, _key


class _CellFile:
    """``out/sweep_cells.jsonl``: the finished cells (and test measurements) of one digest."""

    def __init__(self, out: Path | None, digest: str, force: bool):
        self.path = out / CELLS_FILE if out is not None else None
        self.digest = digest
        self.lines: list[dict[str, Any]] = []
        if self.path is None:
            return
        if force:
            self.path.unlink(missing_ok=True)
        if not self.path.is_file():
            return
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue  # the line a killed sweep was writing
            if entry.get("digest") != digest:
                raise LangNeuronsError(
                    f"{self.path} holds a sweep with other settings (not the grid): use another --out, "
                    "or --force to start it again"
                )
            self.lines.append(entry)

    def cell(self, key: Mapping[str, Any]) -> dict[str, Any] | None:
        """The finished cell of ``key``, or ``None``."""
        return next((e["cell"] for e in self.lines if "cell" in e and _key(e["cell"]) == dict(key)), None)

    def test(self, method: str, key: Mapping[str, Any], digest: str) -> dict[str, Any] | None:
        """The test measurement of ``method`` at cell ``key`` with the test settings ``digest``, or ``None``."""
        return next(
            (
                e["result"]
                for e in self.lines
                if e.get("test") == method and e.get("key") == dict(key) and e.get("test_digest") == digest
            ),
            None,
        )

    def append(self, entry: dict[str, Any]) -> None:
        """Append ``entry`` (with the digest) as one line, flushed to disk."""
        entry = {"digest": self.digest, **entry}
        self.lines.append(entry)
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")
            f.flush()


def _project(seconds: float, cells: int, c: SweepConfig, targets: int) -> dict[str, Any]:
    """The projected cost from ``seconds`` per generated and scored sample: the remaining cells
    (targets x dev samples each), then the test (baseline, each method's row and control, the residual row)."""
    rows = 1 + (c.controls > 0)
    test = len(c.neuron_methods) * (c.samples + targets * c.samples * rows)
    if c.test_residual:
        swept = 1 if RESIDUAL in c.methods else 6  # evaluate's own residual grid: 3 layers x 2 alphas
        test += targets * (c.samples + swept * c.dev_samples)
    grid = cells * targets * c.dev_samples
    return {"seconds_per_sample": seconds, "cells": cells, "grid_s": grid * seconds, "total_s": (grid + test) * seconds}


def _select(stats: ActivationStats, c: SweepConfig, value: Any, cache: dict[str, Any]) -> NeuronSet:
    """The neuron set of one selection value (AP scores computed once, LAPE sets cached)."""
    if value not in cache:
        if c.ks is not None:
            scores = next((s.scores for s in cache.values()), None)
            cache[value] = average_precision(stats, value, value, progress=False, scores=scores)
        else:
            cache[value] = lape(stats, value, c.filter_rate, c.activation_bar_ratio)
    return cache[value]


def sweep(
    model: HookedModel,
    stats: ActivationStats,
    held_out: LanguageCorpus,
    config: SweepConfig | None = None,
    *,
    out: Path | None = None,
    lid: LanguageIdentifier | None = None,
    time_budget: float | None = None,
    force: bool = False,
    progress: bool = True,
) -> SweepResult:
    """Sweep ``config``'s grid on the dev split, choose per method, re-measure on the test split
    (see the module's docstring). ``out``: the folder of ``sweep_cells.jsonl`` (resumable);
    ``time_budget``: seconds the whole sweep may take (projected after the unsteered dev
    generation); ``force``: start ``sweep_cells.jsonl`` again when it holds other settings."""
    entered = time.perf_counter()
    c = config or SweepConfig()
    check_fingerprint(stats.model, model, "the statistics")
    lid = lid or LanguageIdentifier()
    targets = [t for t in (c.targets or stats.langs) if t != c.source]
    for t in targets:
        stats.lang_index(t)
    if not targets:
        raise LangNeuronsError(f"the sweep has no target: every language of the statistics is the source {c.source!r}")
    if RESIDUAL in c.methods:
        if stats.resid_sums is None:
            raise LangNeuronsError(
                f"{RESIDUAL} needs statistics with residual-stream sums: record them again, or drop it from methods"
            )
        bad = [x for x in c.residual_layers or () if not 0 <= x < stats.n_layers]
        if bad:
            raise LangNeuronsError(
                f"residual layer {bad[0]} is out of range: the model has layers 0..{stats.n_layers - 1}"
            )
    if c.residual and stats.resid_sums is None:
        raise LangNeuronsError(
            "these statistics have no residual-stream sums, which the test's residual baseline needs: "
            "record them again, or sweep without it (residual=False: leave out --residual)"
        )
    if c.ks is not None and max(c.ks) > stats.n_neurons // 2:
        raise LangNeuronsError(
            f"k {max(c.ks)} is too large: top-k plus bottom-k must fit the site's {stats.n_neurons} neurons"
        )
    drawn = {k: getattr(c, k) for k in ("source", "prompt_tokens", "dev_share", "seed")}
    split = forcing_prompts(held_out, c.prompts, tokenizer=model.tokenizer, **drawn)
    if not c.do_sample and c.prompts == "source" and c.dev_samples > len(split.dev):
        raise LangNeuronsError(
            f"greedy decoding gives one continuation per prompt, but dev_samples={c.dev_samples} is more than the "
            f"{len(split.dev)} dev prompts: lower dev_samples, raise dev_share, or sample"
        )
    dtype = hardware.for_model(model, c.generation_dtype)  # "auto" decided here: cells of another dtype are not reused
    store = _CellFile(out, _decided(c, dtype).digest(stats), force)
    grid = c.grid(stats.n_layers)
    todo = [k for k in grid if store.cell(k) is None]
    reused = len(grid) - len(todo)
    dev = split.take("dev", c.dev_samples)
    gen: dict[str, Any] = dict(
        max_new_tokens=c.max_new_tokens,
        do_sample=c.do_sample,
        temperature=c.temperature,
        repetition_penalty=c.repetition_penalty,
        seed=c.seed + DEV_SEED,
        batch_size=c.batch_size,
        progress=False,
    )
    projection = None
    with computing_in(model, dtype.dtype):  # as study.evaluate generates (the test below casts itself)
        if todo:
            start = time.perf_counter()
            base = fluency(model, generate(model, dev, n=c.dev_samples, **gen))
            projection = _project((time.perf_counter() - start) / c.dev_samples, len(todo), c, len(targets))
            if progress:  # the same line as evaluate's
                grid_s = projection["grid_s"]
                Projection({f"{len(todo)} dev cells": grid_s, "test split": projection["total_s"] - grid_s}).say()
            left = time_budget - (time.perf_counter() - entered) if time_budget is not None else None
            if left is not None and projection["total_s"] > left:
                raise LangNeuronsError(
                    f"the sweep would take about {projection['total_s'] / 60:.1f} min ({len(todo)} cells x {len(targets)} "
                    f"targets x {c.dev_samples} dev samples, then the test), over the budget of {max(left, 0) / 60:.1f} min left: "
                    "drop alphas, top rates/ks or methods, lower --dev-samples or --samples, or raise --time-budget"
                )
        sets: dict[Any, NeuronSet] = {}
        per_cell = len(targets) * planned_passes(c.dev_samples, c.batch_size, c.max_new_tokens, score_batch=0)
        per_cell += math.ceil(len(targets) * c.dev_samples / SCORE_BATCH)  # all targets' samples scored together
        with PassBar(model, len(todo) * per_cell, "sweep cells (dev)", progress) as bar:
            for key in todo:
                hooks = _cell_hooks(stats, c, key, targets, sets)
                with bar.step(" ".join(f"{k} {v}" for k, v in key.items()), per_cell):
                    texts = {t: generate(model, dev, n=c.dev_samples, hooks=hooks[t], **gen) for t in targets}
                    store.append({"cell": _measure(model, lid, key, texts, hooks, base, c)})
    cells = [store.cell(k) for k in grid]
    chosen = _choose(cells, c.methods)  # type: ignore[arg-type]
    settings = {**c.to_dict(), "targets": targets, "prompts_split": split.to_dict(), "digest": store.digest}
    settings.update(generation_dtype=dtype.dtype, generation_dtype_reason=dtype.reason)
    settings.update(methods=list(c.methods), out=str(out) if out is not None else None)
    result = SweepResult(cells, chosen, {}, settings, projection, reused)  # type: ignore[arg-type]
    test_digest = _decided(c, dtype).digest(stats, test=True)
    result.test = _test(model, stats, held_out, c, test_digest, chosen, targets, store, sets, lid, progress)
    return result


def _decided(c: SweepConfig, dtype: hardware.DtypeChoice) -> SweepConfig:
    """``c`` with the generation dtype that ``auto`` decided (what its cells were measured in)."""
    return dataclasses.replace(c, generation_dtype=dtype.dtype)


def _cell_hooks(
    stats: ActivationStats, c: SweepConfig, key: Mapping[str, Any], targets: list[str], sets: dict[Any, NeuronSet]
) -> dict[str, Any]:
    """Per target, the steering of one cell (its neuron set selected once, in ``sets``)."""
    if key["method"] == RESIDUAL:
        return {t: st.residual_diffmean(stats, t, key["layer"], key["alpha"]) for t in targets}
    neurons = _select(stats, c, key[c.parameter], sets)
    how: dict[str, Any] = dict(
        source=c.source if c.deactivate == "source" else None, deactivate_value=c.deactivate_value
    )
    return {t: steering_for(neurons, stats, t, key["method"], key["alpha"], **how) for t in targets}


def _measure(
    model: HookedModel,
    lid: LanguageIdentifier,
    key: Mapping[str, Any],
    texts: Mapping[str, list[str]],
    hooks: Mapping[str, Any],
    base: Any,
    c: SweepConfig,
) -> dict[str, Any]:
    """One cell's dev rate, quality and forcing score, pooled over targets, with intervals."""
    rates = {t: lid.rate(x, t) for t, x in texts.items()}
    hits = [h for r in rates.values() for h in r.hits]
    everything = [x for t in texts for x in texts[t]]
    fl = fluency(model, everything)
    rate, q = sum(hits) / len(hits), quality(fl, base)
    cell: dict[str, Any] = {**key, "rate": rate, "quality": q, "score": harmonic_mean(rate, q), "n": len(hits)}
    cell.update(split="dev", targets={t: r.rate for t, r in rates.items()})
    cell["neurons"] = round(sum(getattr(h, "n_neurons", 0) for h in hooks.values()) / len(hooks))
    if c.intervals:  # the unsteered continuations of the same prompts and seeds, once per target
        reps = len(texts)
        both = (hits, fl.sums, fl.counts, base.sums.repeat(reps), base.counts.repeat(reps))
        cell["rate_interval"] = iv.wilson_interval(sum(hits), len(hits)).to_dict()
        cell["forcing_interval"] = iv.forcing_interval(both, resamples=c.resamples, seed=c.seed).to_dict()
    cell["examples"] = [texts[t][0] for t in texts][:3]
    return cell


def _choose(cells: Sequence[dict[str, Any]], methods: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per method its cell of highest dev score (``max`` keeps the first of equals: the earlier cell), and overall."""
    chosen = {m: max((x for x in cells if x["method"] == m), key=lambda x: x["score"]) for m in methods}
    chosen["overall"] = max((chosen[m] for m in methods), key=lambda x: x["score"])
    return chosen


def _test(
    model: HookedModel,
    stats: ActivationStats,
    held_out: LanguageCorpus,
    c: SweepConfig,
    base: str,
    chosen: Mapping[str, dict[str, Any]],
    targets: list[str],
    store: _CellFile,
    sets: dict[Any, NeuronSet],
    lid: LanguageIdentifier,
    progress: bool,
) -> dict[str, dict[str, Any]]:
    """Each neuron method's chosen cell on the test split (the first with the residual baseline);
    ``base``: the digest of the test settings, in the generation dtype ``auto`` decided."""
    test: dict[str, dict[str, Any]] = {}
    res = chosen.get(RESIDUAL)
    for i, m in enumerate(c.neuron_methods):
        key = _key(chosen[m])
        residual = c.test_residual and i == 0
        more: dict[str, Any] = {"residual": residual, "targets": tuple(targets)}
        if residual and res is not None:
            more.update(residual_layers=(res["layer"],), residual_alphas=(res["alpha"],))
        # what this measurement depends on beyond the cell: the test settings and its residual baseline
        digest = hashlib.sha256(json.dumps([base, more], sort_keys=True, default=list).encode()).hexdigest()
        saved = store.test(m, key, digest)
        if saved is not None:
            test[m] = saved
            continue
        config = c.evaluate_config(m, key["alpha"], **more)
        neurons = _select(stats, c, key[c.parameter], sets)
        test[m] = evaluate(model, neurons, stats, held_out, config=config, lid=lid, progress=progress).to_dict()
        store.append({"test": m, "key": key, "test_digest": digest, "result": test[m]})
    return test
