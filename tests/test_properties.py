"""Property-based tests (hypothesis) of the scoring functions: random shapes, ties, all-zero
neurons, languages with one sentence, NaN/inf inputs. AP is compared with scikit-learn's
``average_precision_score``. Examples are few so the suite stays fast."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs
from sklearn.metrics import average_precision_score

import lang_neurons as ln
from lang_neurons import scoring

FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@hs.composite
def pooled_inputs(draw, values=hs.integers(-2, 2)):
    """(pooled [sentence, layer, neuron], labels, n_langs): small integer-valued floats, so ties
    are common; some languages have a single sentence."""
    n_langs = draw(hs.integers(2, 4))
    per_lang = draw(hs.lists(hs.integers(1, 5), min_size=n_langs, max_size=n_langs))
    n_layers, width = draw(hs.integers(1, 3)), draw(hs.integers(1, 4))
    labels = torch.tensor([lang for lang, n in enumerate(per_lang) for _ in range(n)])
    labels = labels[torch.tensor(draw(hs.permutations(range(len(labels)))))]
    flat = draw(hs.lists(values, min_size=len(labels) * n_layers * width, max_size=len(labels) * n_layers * width))
    pooled = torch.tensor(flat, dtype=torch.float32).reshape(len(labels), n_layers, width)
    return pooled, labels, n_langs


@FAST
@given(pooled_inputs())
def test_ap_equals_sklearn(inputs):
    pooled, labels, n_langs = inputs
    ap = scoring.ap_scores(pooled, labels, n_langs)
    assert ap.shape == (n_langs, *pooled.shape[1:])
    for lang in range(n_langs):
        for layer in range(pooled.shape[1]):
            for k in range(pooled.shape[2]):
                want = average_precision_score((labels == lang).numpy(), pooled[:, layer, k].numpy())
                assert abs(float(ap[lang, layer, k]) - want) <= 1e-6


@FAST
@given(pooled_inputs(values=hs.floats(-3, 3, width=32)), hs.data())
def test_ap_ranges_and_top_bottom_k(inputs, data):
    pooled, labels, n_langs = inputs
    ap = scoring.ap_scores(pooled, labels, n_langs)
    assert torch.isfinite(ap).all() and (ap >= 0).all() and (ap <= 1 + 1e-6).all()
    n = ap[0].numel()
    top_k = data.draw(hs.integers(0, n))
    bottom_k = data.draw(hs.integers(0, n - top_k))
    top, bottom = scoring.top_bottom_k(ap, top_k, bottom_k)
    assert top.sum((1, 2)).tolist() == [top_k] * n_langs and bottom.sum((1, 2)).tolist() == [bottom_k] * n_langs
    for lang in range(n_langs):
        s, t, b = ap[lang].flatten(), top[lang].flatten(), bottom[lang].flatten()
        if top_k and top_k < n:
            assert s[t].min() >= s[~t].max()
        if bottom_k and bottom_k < n:
            assert s[b].max() <= s[~b].min()


@hs.composite
def counts(draw):
    """(active [lang, layer, neuron], tokens [lang]) with all-zero neurons and ties likely."""
    n_langs, n_layers, width = draw(hs.integers(2, 4)), draw(hs.integers(1, 3)), draw(hs.integers(1, 8))
    tokens = torch.tensor(draw(hs.lists(hs.integers(1, 30), min_size=n_langs, max_size=n_langs)))
    active = torch.zeros(n_langs, n_layers, width, dtype=torch.long)
    for lang in range(n_langs):
        values = draw(hs.lists(hs.sampled_from([0, 0, 1, int(tokens[lang]) // 2, int(tokens[lang])]),
                               min_size=n_layers * width, max_size=n_layers * width))
        active[lang] = torch.tensor(values).reshape(n_layers, width)
    return active, tokens


@FAST
@given(counts(), hs.sampled_from([0.01, 0.1, 0.3, 1.0]), hs.sampled_from([0.5, 0.9, 0.95]))
def test_lape_properties(c, top_rate, bar_ratio):
    active, tokens = c
    prob = scoring.activation_probability(active, tokens)
    assert ((prob >= 0) & (prob <= 1)).all()
    mask, entropy = scoring.lape_select(prob, top_rate=top_rate, activation_bar_ratio=bar_ratio)
    n_langs = prob.shape[0]
    assert mask.shape == prob.shape and entropy.shape == prob.shape[1:]
    assert (entropy >= -1e-6).all() and (entropy <= math.log(n_langs) + 1e-5).all()
    never = (active == 0).all(0)
    assert not mask[:, never].any()  # a neuron that never fires belongs to no language
    assert (entropy[never] == 0).all()  # documented: the reference code's entropy 0
    kept = mask.any(0)
    assert int(kept.sum()) <= round(prob[0].numel() * top_rate)
    bar = scoring._kth_quantile(prob, bar_ratio)
    assert (prob[mask] > bar).all()  # every member language is above the activation bar
    again, _ = scoring.lape_select(prob, top_rate=top_rate, activation_bar_ratio=bar_ratio)
    assert torch.equal(mask, again)  # deterministic
    perm = torch.randperm(n_langs, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(scoring.lape_entropy(prob[perm]), entropy, rtol=1e-5, atol=1e-6)


@FAST
@given(counts(), hs.sampled_from([math.nan, math.inf, -math.inf, -0.5, 1.5]), hs.data())
def test_lape_rejects_bad_probabilities(c, bad, data):
    active, tokens = c
    prob = scoring.activation_probability(active, tokens)
    layer = data.draw(hs.integers(0, prob.shape[1] - 1))
    prob[0, layer, 0] = bad
    with pytest.raises(ln.LangNeuronsError, match=f"layer {layer}: 1" if not -1 < bad < 2 or math.isnan(bad) else "in \\[0, 1\\]"):
        scoring.lape_select(prob)


@FAST
@given(pooled_inputs(values=hs.floats(-3, 3, width=32)), hs.sampled_from([math.nan, math.inf, -math.inf]), hs.data())
def test_ap_reports_non_finite_by_layer(inputs, bad, data):
    pooled, labels, n_langs = inputs
    layers = sorted(set(data.draw(hs.lists(hs.integers(0, pooled.shape[1] - 1), min_size=1, max_size=3))))
    for layer in layers:
        pooled[data.draw(hs.integers(0, len(labels) - 1)), layer, 0] = bad
    with pytest.raises(ln.LangNeuronsError, match="non-finite") as err:
        scoring.ap_scores(pooled, labels, n_langs)
    reported = {int(part.split()[1].rstrip(":")) for part in str(err.value).split(" in ", 1)[1].split(", ") if part.startswith("layer")}
    assert reported == set(layers)


def test_scoring_rejects_bad_shapes_and_labels():
    pooled, labels = torch.zeros(4, 2, 3), torch.tensor([0, 0, 1, 1])
    cases = [
        (lambda: scoring.ap_scores(pooled[0], labels, 2), "must be \\[sentence, layer, neuron\\]"),
        (lambda: scoring.ap_scores(pooled, labels.float(), 2), "1-D integer tensor"),
        (lambda: scoring.ap_scores(pooled, labels[:3], 2), "4 pooled rows but 3 labels"),
        (lambda: scoring.ap_scores(pooled, labels, 1), "at least two languages"),
        (lambda: scoring.ap_scores(pooled, torch.tensor([0, 0, 1, 5]), 2), "must be in \\[0, 2\\)"),
        (lambda: scoring.ap_scores(pooled, torch.tensor([0, 0, -1, 1]), 2), "must be in \\[0, 2\\)"),
        (lambda: scoring.ap_scores(pooled, torch.tensor([0, 0, 0, 0]), 2), "every language"),
        (lambda: scoring.ap_scores(torch.zeros(0, 2, 3), torch.zeros(0, dtype=torch.long), 2), "every language"),
        (lambda: scoring.activation_probability(torch.ones(2, 2, 2, dtype=torch.long), torch.tensor([1, 0])), "at least one token"),
        (lambda: scoring.activation_probability(torch.full((2, 2, 2), 5), torch.tensor([4, 9])), "between 0 and"),
        (lambda: scoring.activation_probability(torch.ones(2, 2, 2), torch.tensor([4])), "need active"),
        (lambda: scoring.activation_probability(torch.full((2, 1, 1), math.nan), torch.tensor([4, 4])), "NaN/inf"),
        (lambda: scoring.lape_select(torch.rand(1, 2, 3)), "lang>=2"),
        (lambda: scoring.lape_select(torch.rand(2, 0, 3)), "lang>=2"),
        (lambda: scoring.lape_select(torch.rand(2, 2, 3), top_rate=math.nan), "top_rate"),
        (lambda: scoring.lape_select(torch.rand(2, 2, 3), filter_rate=0), "filter_rate"),
        (lambda: scoring.top_bottom_k(torch.rand(2, 2, 3), 2.5, 0), "whole number"),
        (lambda: scoring.top_bottom_k(torch.rand(2, 2, 3), 4, 3), "exceeds the 6 neurons"),
        (lambda: scoring.top_bottom_k(torch.full((2, 2, 3), math.nan), 1, 1), "non-finite"),
    ]
    for call, message in cases:
        with pytest.raises(ln.LangNeuronsError, match=message):
            call()
