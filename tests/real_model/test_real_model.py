"""The science, checked on the packaged Gemma-3-270M and the offline default corpus.

Slow (minutes): select with ``-m real_model``, skip with ``-m "not real_model"``. CI runs them.
The converted model is cached under ``$LANG_NEURONS_CACHE`` (default ``~/.cache/lang_neurons``)
between runs on one machine; on a fresh machine the first test converts it (about a minute).
"""

from __future__ import annotations

import json

import pytest
import torch

import lang_neurons as ln
from lang_neurons import cli, scoring
from lang_neurons.neurons import ap_k

pytestmark = [pytest.mark.real_model, pytest.mark.slow]


@pytest.fixture(scope="session")
def gemma():
    return ln.load_model(device="cpu")


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory):
    """`lang-neurons identify` with defaults, LAPE then AP, into one folder (as a new user would)."""
    out = tmp_path_factory.mktemp("identify")
    assert cli.main(["identify", "--method", "lape", "--out", str(out), "--no-progress"]) == 0
    assert cli.main(["identify", "--method", "ap", "--out", str(out), "--no-progress"]) == 0
    return out


@pytest.fixture(scope="session")
def held_out_stats(gemma, run_dir):
    settings = json.loads((run_dir / "run.json").read_text())
    corpus = ln.load_corpus(settings["corpus"], langs=settings["langs"])
    _, held_out = corpus.split(held_out=settings["held_out"], seed=settings["seed"])
    return ln.record(gemma, held_out, progress=False)


def test_packaged_model_loads_as_gemma3(gemma):
    assert gemma.cfg.n_layers == 18 and gemma.cfg.d_mlp == 2048
    assert "blocks.17.mlp.hook_pre_linear" in gemma.hook_dict  # gated MLP
    tokens = gemma.to_tokens("The capital of France is")
    with torch.inference_mode():
        logits = gemma(tokens)
    assert " Paris" in gemma.tokenizer.decode(logits[0, -1].topk(10).indices)


def test_cached_and_uncached_greedy_generation_agree(gemma):
    """The KV cache must not change greedy generation (transformers 5.24.0 broke it, silently)."""
    from lang_neurons.generation import check_kv_cache, guard_generation

    assert guard_generation(gemma).passed  # checked at load: generation keeps its cache
    result = check_kv_cache(gemma, steps=12)
    assert result.passed, str(result)
    tokens = gemma.to_tokens("The capital of France is Paris. The capital of Germany is")
    kwargs = dict(max_new_tokens=16, do_sample=False, return_type="tokens", verbose=False)
    with torch.inference_mode():
        cached = gemma.generate(tokens, use_past_kv_cache=True, **kwargs)
        uncached = gemma.generate(tokens, use_past_kv_cache=False, **kwargs)
    assert torch.equal(cached, uncached)
    text = gemma.tokenizer.decode(cached[0, tokens.shape[1] :])
    assert text.startswith(" Berlin.") and "Berlin Berlin" not in text, text


def test_identify_writes_artifacts(run_dir, gemma):
    names = sorted(p.name for p in run_dir.iterdir())
    assert names == [
        "neurons_ap.json",
        "neurons_ap.safetensors",
        "neurons_lape.json",
        "neurons_lape.safetensors",
        "run.json",
        "stats.json",
        "stats.safetensors",
    ]
    stats = ln.ActivationStats.load(run_dir / "stats")
    assert stats.langs == list(ln.DEFAULT_LANGS) and stats.model == ln.model_fingerprint(gemma)
    lape = ln.NeuronSet.load(run_dir / "neurons_lape")
    assert lape.method == "lape" and 0 < lape.fraction() <= 0.0101
    ap = ln.NeuronSet.load(run_dir / "neurons_ap")
    k = ap_k(stats.n_neurons)  # the default top-k and bottom-k: Kojima's share of the site (166 of 36,864)
    assert k == 166 and ap.counts().tolist() == [2 * k] * 6


def test_lape_neurons_fire_most_on_their_language(run_dir, held_out_stats):
    """Tang et al.: a language's LAPE neurons are more often active on held-out text of that
    language than on held-out text of every other language."""
    lape = ln.NeuronSet.load(run_dir / "neurons_lape")
    assert held_out_stats.langs == lape.langs
    prob = held_out_stats.probability()
    for i, lang in enumerate(lape.langs):
        m = lape.mask[i]
        assert m.sum() >= 10, f"{lang}: only {int(m.sum())} LAPE neurons"
        means = torch.stack([prob[j][m].mean() for j in range(len(lape.langs))])
        others = torch.cat([means[:i], means[i + 1 :]])
        assert (means[i] > others).all(), f"{lang}: {means.tolist()}"


def test_top_ap_neurons_separate_held_out_languages(run_dir, held_out_stats):
    """Kojima et al.: the top-100 AP neurons of a language keep a high AP on held-out sentences
    (chance = 1/6)."""
    ap = ln.NeuronSet.load(run_dir / "neurons_ap")
    held = scoring.ap_scores(held_out_stats.pooled, held_out_stats.pooled_lang, len(ap.langs))
    per_lang = []
    for i in range(len(ap.langs)):
        top100 = ap.scores[i].flatten().topk(100).indices
        per_lang.append(float(held[i].flatten()[top100].mean()))
    print("held-out AP of top-100 neurons:", dict(zip(ap.langs, per_lang)))
    assert min(per_lang) >= 0.6, per_lang
    assert sum(per_lang) / len(per_lang) >= 0.75, per_lang


def test_neurons_sit_mostly_in_outer_layers(run_dir):
    """Both papers: language-specific neurons concentrate in the first and last layers."""
    for method in ("lape", "ap"):
        neurons = ln.NeuronSet.load(run_dir / f"neurons_{method}")
        hist = neurons.layer_histogram().sum(0).float()
        n = neurons.n_layers
        first, middle, last = hist[: n // 3].sum(), hist[n // 3 : n - n // 3].sum(), hist[n - n // 3 :].sum()
        assert first + last > 2 * middle, (method, hist.tolist())
        assert last > middle, (method, hist.tolist())


@pytest.fixture(scope="session")
def lape_run(run_dir):
    return ln.NeuronSet.load(run_dir / "neurons_lape"), ln.ActivationStats.load(run_dir / "stats")


def test_language_arithmetic_flips_the_output_language(gemma, lape_run):
    """Gurgurov et al.: switching off the other languages' LAPE neurons and adding the target's
    mean activation makes unconditional samples come out in the target language."""
    neurons, stats = lape_run
    lid = ln.LanguageIdentifier()
    baseline = ln.generate(gemma, n=30, max_new_tokens=32, progress=False)
    rates, base_rates = {}, {}
    for target in ("de", "fr", "es", "zh", "ja"):
        hooks = ln.language_arithmetic(neurons, stats, target=target, method="add", alpha=1.0)
        assert hooks.n_neurons / neurons.n_neurons < 0.02
        rates[target] = lid.rate(ln.generate(gemma, n=30, hooks=hooks, max_new_tokens=32, progress=False), target).rate
        base_rates[target] = lid.rate(baseline, target).rate
    print("baseline:", base_rates, "steered (add, alpha=1):", rates)
    mean_rate, mean_base = sum(rates.values()) / 5, sum(base_rates.values()) / 5
    assert mean_rate >= mean_base + 0.4, (rates, base_rates)
    assert mean_rate >= 0.6, rates
    assert not any(hp.fwd_hooks for hp in gemma.hook_dict.values())


def test_deactivating_a_language_hurts_it_most(gemma, lape_run, run_dir):
    """Tang et al.: zeroing a language's LAPE neurons raises that language's loss more than the
    mean rise on the other languages, for every language.

    Under Tang's single global budget (1 % of all neurons) English, whose low-entropy neurons are
    shared with de/fr/es, gets only 16 neurons here and zeroing them moves no loss by more than
    0.03 (docs/results.md). With the balanced variant (200 lowest-entropy neurons per language,
    0.54 % of the neurons each) the diagonal dominates for all six languages, English included.
    """
    _, stats = lape_run
    neurons = ln.lape(stats, per_language=200)
    assert neurons.counts().tolist() == [200] * 6
    settings = json.loads((run_dir / "run.json").read_text())
    corpus = ln.load_corpus(settings["corpus"], langs=settings["langs"])
    held_out = corpus.split(held_out=settings["held_out"], seed=settings["seed"])[1].take(30)
    matrix = ln.loss_matrix(gemma, neurons, held_out, progress=False)
    print(matrix)
    assert all(matrix.diagonal_dominance().values()), str(matrix)
    assert (matrix.change.diagonal() > 0.1).all(), str(matrix)
