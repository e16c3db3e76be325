"""Prompted language forcing: the prompts' dev/test split, the quality and forcing score, their
paired bootstrap intervals against hand computations, and evaluate's rows on a tiny model."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import lang_neurons as ln
from lang_neurons import forcing, study
from lang_neurons import intervals as iv
from lang_neurons.corpora import LanguageCorpus


@pytest.fixture(scope="module")
def tiny(tiny_study):
    return tiny_study.model, tiny_study.lape, tiny_study.stats, tiny_study.held


def _held(n: int) -> LanguageCorpus:
    return LanguageCorpus(
        {"en": [f"text number {i}" for i in range(n)], "de": [f"Text {i}" for i in range(n)]}, name="h"
    )


def test_prompt_split_is_disjoint_seeded_and_cycles():
    split = forcing.forcing_prompts(_held(20), source="en", dev_share=0.25, seed=3)
    assert (len(split.dev), len(split.test)) == (5, 15)
    assert not set(split.dev) & set(split.test) and set(split.dev) | set(split.test) == set(_held(20)["en"])
    assert split == forcing.forcing_prompts(_held(20), source="en", dev_share=0.25, seed=3)
    assert split.test != forcing.forcing_prompts(_held(20), source="en", dev_share=0.25, seed=4).test
    taken = split.take("test", 40)
    assert len(taken) == 40 and taken[:15] == split.test and taken[15:30] == split.test
    assert split.take("dev", 3) == split.dev[:3]
    assert split.to_dict() == {"kind": "source", "source": "en", "dev": 5, "test": 15}
    bos = forcing.forcing_prompts(_held(20), "bos")
    assert bos.take("test", 5) is None and bos.to_dict()["kind"] == "bos"


def test_prompt_split_errors_are_one_line():
    for kwargs, match in [
        (dict(kind="nope"), "unknown prompts 'nope'"),
        (dict(source="fr"), "lacks"),
        (dict(dev_share=1.0), "dev_share must be in"),
        (dict(prompt_tokens=0), "prompt_tokens"),
    ]:
        with pytest.raises(ln.LangNeuronsError, match=match) as e:
            forcing.forcing_prompts(_held(20), **{"source": "en", **kwargs})
        assert "\n" not in str(e.value)
    with pytest.raises(ln.LangNeuronsError, match="leaves the test side empty"):
        forcing.forcing_prompts(_held(1), source="en")


def test_prompts_are_cut_to_prompt_tokens(tiny):
    model, *_ = tiny
    split = forcing.forcing_prompts(tiny[3], source="en", tokenizer=model.tokenizer, prompt_tokens=3)
    for p in split.dev + split.test:
        assert len(model.tokenizer.encode(p, add_special_tokens=False)) <= 3


def test_quality_and_harmonic_mean_by_hand():
    base = forcing.Fluency(torch.tensor([2.0, 4.0], dtype=torch.float64), torch.tensor([1.0, 2.0], dtype=torch.float64))
    worse = forcing.Fluency(
        torch.tensor([6.0, 3.0], dtype=torch.float64), torch.tensor([2.0, 1.0], dtype=torch.float64)
    )
    assert base.mean_loss == pytest.approx(2.0) and worse.mean_loss == pytest.approx(3.0)
    assert forcing.quality(worse, base) == pytest.approx(math.exp(-1.0))
    assert forcing.quality(base, worse) == 1.0  # more fluent than the unsteered text is capped at 1
    empty = forcing.Fluency(torch.zeros(2, dtype=torch.float64), torch.zeros(2, dtype=torch.float64))
    assert math.isnan(empty.mean_loss) and forcing.quality(empty, base) == 0.0
    assert forcing.harmonic_mean(0.5, 1.0) == pytest.approx(2 / 3) and forcing.harmonic_mean(0.0, 0.0) == 0.0


def test_fluency_scores_each_text_alone_without_hooks(tiny):
    model, neurons, stats, _ = tiny
    texts = ["hello world again", "", "guten Tag", "\n \n  \n"]
    fl = forcing.fluency(model, texts)
    assert fl.counts[1] == fl.sums[1] == fl.counts[3] == fl.sums[3] == 0  # nothing to score in empty or blank output
    alone = ln.generation.text_losses(model, {"en": ["hello world again"]}, progress=False)
    assert fl.sums[0] == pytest.approx(float(alone.sums[0][0])) and fl.counts[0] == alone.counts[0][0]
    with ln.steer(model, ln.language_arithmetic(neurons, stats, target="de")):
        pass  # hooks are gone again; fluency never attaches any
    assert torch.equal(forcing.fluency(model, texts).sums, fl.sums)


def test_forcing_interval_matches_a_hand_bootstrap():
    rng = np.random.default_rng(0)
    n = 30
    hits = list(rng.random(n) < 0.6)
    counts = torch.tensor(rng.integers(1, 6, n), dtype=torch.float64)
    sums = counts * torch.tensor(rng.uniform(1.5, 3.5, n))
    base_counts = torch.tensor(rng.integers(1, 6, n), dtype=torch.float64)
    base_sums = base_counts * torch.tensor(rng.uniform(1.0, 3.0, n))
    cell = (hits, sums, counts, base_sums, base_counts)
    res = iv.forcing_interval(cell, resamples=200, seed=5)

    def stats(idx):
        r = np.mean([hits[i] for i in idx])
        lr = float(sums[idx].sum() / counts[idx].sum())
        lb = float(base_sums[idx].sum() / base_counts[idx].sum())
        q = math.exp(-max(0.0, lr - lb))
        return q, (2 * r * q / (r + q) if r + q else 0.0)

    q0, s0 = stats(np.arange(n))
    assert res.quality.estimate == pytest.approx(q0) and res.score.estimate == pytest.approx(s0)
    rounds = np.array([stats(row) for row in iv.resample_indices(n, 200, 5)])
    assert res.score.low == pytest.approx(np.quantile(rounds[:, 1], 0.025))
    assert res.quality.high == pytest.approx(np.quantile(rounds[:, 0], 0.975))
    assert res.to_dict()["n"] == n and res.to_dict()["resamples"] == 200
    pooled = iv.pooled_forcing_interval([cell, cell], resamples=200, seed=5)
    assert pooled.estimate == pytest.approx(s0) and pooled.low <= s0 <= pooled.high


def test_the_unsteered_row_has_quality_one():
    hits = [True, False] * 10
    fl = (torch.full((20,), 3.0, dtype=torch.float64), torch.full((20,), 2.0, dtype=torch.float64))
    res = iv.forcing_interval((hits, *fl, *fl), resamples=50)
    assert res.quality.estimate == res.quality.low == res.quality.high == 1.0
    assert res.score.estimate == pytest.approx(2 * 0.5 / 1.5)


def test_evaluate_rows_carry_quality_score_and_split(tiny):
    model, neurons, stats, held = tiny
    res = study.evaluate(
        model,
        neurons,
        stats,
        held,
        methods=["add"],
        samples=10,
        max_new_tokens=4,
        translation_items=0,
        loss_texts=0,
        resamples=50,
        dev_samples=2,
        controls=2,
        progress=False,
    )
    assert res["settings"]["prompts"] == "source" and res["prompts"]["kind"] == "source"
    assert res["prompts"]["dev"] + res["prompts"]["test"] == len(held["en"])
    for entry in res["targets"].values():
        assert entry["baseline_forcing_interval"]["quality"]["estimate"] == 1.0
        for row in entry["methods"].values():
            assert row["split"] == "test" and 0 <= row["quality"] <= 1
            assert row["forcing_score"] == pytest.approx(forcing.harmonic_mean(row["rate"], row["quality"]))
            fi = row["forcing_interval"]
            assert fi["score"]["low"] <= row["forcing_score"] <= fi["score"]["high"] and fi["n"] == 10
    assert set(res["summary_forcing_interval"]) == {"add", "add:random", "residual_diffmean", "baseline"}
    assert "forcing score" in study.format_table(res)


def test_unconditional_samples_and_greedy_limits(tiny):
    model, neurons, stats, held = tiny
    res = study.evaluate(
        model,
        neurons,
        stats,
        held,
        methods=["pin"],
        prompts="bos",
        samples=10,
        max_new_tokens=3,
        translation_items=0,
        loss_texts=0,
        resamples=20,
        controls=0,
        residual=False,
        progress=False,
    )
    assert res["prompts"] == {"kind": "bos", "source": None, "dev": 0, "test": 0}
    assert res["targets"]["de"]["methods"]["pin"]["neurons"] == int(neurons.mask[neurons.lang_index("de")].sum())
    with pytest.raises(ln.LangNeuronsError, match="greedy decoding gives one continuation per prompt"):
        study.evaluate(model, neurons, stats, held, methods=["add"], samples=50, do_sample=False, progress=False)
    with pytest.raises(ln.LangNeuronsError, match="greedy decoding from BOS"):
        study.evaluate(
            model, neurons, stats, held, methods=["add"], prompts="bos", samples=10, do_sample=False, progress=False
        )
    with pytest.raises(ln.LangNeuronsError, match="deactivate is whose neurons"):
        study.evaluate(model, neurons, stats, held, methods=["add"], samples=10, deactivate="all", progress=False)
