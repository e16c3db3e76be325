"""LAPE and AP selection on hand-made numbers, and NeuronSet analysis and files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score

import lang_neurons as ln
from lang_neurons import scoring


def _reference_lape(over_zero, n, top_rate=0.01, filter_rate=0.95, activation_bar_ratio=0.95):
    """Direct transcription of Tang et al.'s identify.py (layer x inter x lang layout)."""
    activation_probs = over_zero / n
    normed = activation_probs / activation_probs.sum(dim=-1, keepdim=True)
    normed[torch.isnan(normed)] = 0
    log_probs = torch.where(normed > 0, normed.log(), 0)
    entropy = -torch.sum(normed * log_probs, dim=-1)
    flattened_probs = activation_probs.flatten()
    top_prob_value = flattened_probs.kthvalue(round(len(flattened_probs) * filter_rate)).values.item()
    top_position = (activation_probs > top_prob_value).sum(dim=-1)
    entropy[top_position == 0] = torch.inf
    flattened_entropy = entropy.flatten()
    top_entropy_value = round(len(flattened_entropy) * top_rate)
    _, index = flattened_entropy.topk(top_entropy_value, largest=False)
    row_index = index // entropy.size(1)
    col_index = index % entropy.size(1)
    selected_probs = activation_probs[row_index, col_index].transpose(0, 1)
    activation_bar = flattened_probs.kthvalue(round(len(flattened_probs) * activation_bar_ratio)).values.item()
    lang, indice = torch.where(selected_probs > activation_bar)
    out = []
    for li in range(over_zero.shape[-1]):
        pairs = sorted((int(row_index[i]), int(col_index[i])) for i in indice[lang == li])
        out.append(pairs)
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("rates", [(0.01, 0.95, 0.95), (0.05, 0.9, 0.8), (0.1, 0.5, 0.7)])
def test_lape_matches_reference_transcription(seed, rates):
    g = torch.Generator().manual_seed(seed)
    n_lang, n_layer, n_neuron = 4, 6, 200
    tokens = torch.randint(500, 2000, (n_lang,), generator=g)
    # Mostly shared neurons plus a few that fire mainly on one language; continuous counts avoid ties.
    base = torch.rand(n_layer, n_neuron, generator=g)[None].expand(n_lang, -1, -1).clone()
    for li in range(n_lang):
        idx = torch.randint(0, n_neuron, (30,), generator=g)
        base[li, li, idx] = 0.9 + 0.1 * torch.rand(30, generator=g)
    active = (base * tokens[:, None, None] * torch.rand(base.shape, generator=g).mul(0.2).add(0.8)).floor().long()
    mask, entropy = scoring.lape_select(scoring.activation_probability(active, tokens), *rates)
    over_zero = active.permute(1, 2, 0).double()  # layer x inter x lang
    ref = _reference_lape(over_zero, tokens.double(), *rates)
    for li in range(n_lang):
        got = sorted(map(tuple, mask[li].nonzero().tolist()))
        assert got == ref[li]
    assert entropy.shape == (n_layer, n_neuron)


def test_lape_hand_made_example():
    # 2 languages, 1 layer, 4 neurons, 100 tokens each.
    tokens = torch.tensor([100, 100])
    active = torch.tensor([[[90, 50, 0, 10]], [[0, 50, 0, 80]]])
    prob = scoring.activation_probability(active, tokens)
    ent = scoring.lape_entropy(prob)
    assert ent[0, 0] == pytest.approx(0.0)  # fires on en only
    assert ent[0, 1] == pytest.approx(np.log(2))  # fires equally on both
    assert ent[0, 2] == 0.0  # never fires (0 log 0 = 0)
    mask, _ = scoring.lape_select(prob, top_rate=0.5, filter_rate=0.5, activation_bar_ratio=0.5)
    # tau = 4th smallest of 8 probabilities = 0.1; neuron 2 never passes; lowest entropies: 0, 3.
    assert mask[0, 0].tolist() == [True, False, False, False]
    assert mask[1, 0].tolist() == [False, False, False, True]


def test_lape_per_language_gives_each_language_its_own_lowest_entropy_neurons():
    # 3 languages, 1 layer, 6 neurons. Language 0 owns neurons 0 (very specific) and 1 (less
    # specific, shared with language 1); language 1 owns 2; language 2 owns 3 and 4; 5 never fires.
    p = torch.tensor(
        [
            [[0.9, 0.6, 0.0, 0.1, 0.0, 0.0]],
            [[0.0, 0.4, 0.8, 0.1, 0.0, 0.0]],
            [[0.0, 0.0, 0.1, 0.7, 0.5, 0.0]],
        ]
    )
    mask, _ = scoring.lape_select(p, filter_rate=0.5, per_language=1)
    assert mask[:, 0].nonzero().tolist() == [[0, 0], [1, 2], [2, 4]]  # 4 (entropy 0) beats 3
    mask, _ = scoring.lape_select(p, filter_rate=0.5, per_language=2)
    assert mask[:, 0].nonzero().tolist() == [[0, 0], [0, 1], [1, 2], [2, 3], [2, 4]]
    assert mask.sum(0).max() == 1  # exclusive: each neuron has one owner
    # The global budget (Tang) at the same size can starve a language; per_language cannot.
    assert (mask.flatten(1).sum(1) >= 1).all()
    with pytest.raises(ln.LangNeuronsError, match="per_language"):
        scoring.lape_select(p, per_language=0)


def test_lape_bad_parameters():
    prob = torch.rand(3, 2, 10)
    with pytest.raises(ln.LangNeuronsError, match="top_rate"):
        scoring.lape_select(prob, top_rate=0)
    with pytest.raises(ln.LangNeuronsError, match="lang>=2"):
        scoring.lape_select(prob[:1])
    with pytest.raises(ln.LangNeuronsError, match="token"):
        scoring.activation_probability(torch.zeros(2, 1, 3, dtype=torch.long), torch.tensor([5, 0]))


def test_ap_scores_match_sklearn_and_top_bottom():
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(3).repeat_interleave(20)
    pooled = torch.randn(60, 2, 16, generator=g)
    pooled[labels == 1, 0, 3] += 3  # neuron (0, 3) is high on language 1
    pooled[labels == 2, 1, 5] -= 3  # neuron (1, 5) is low on language 2
    pooled[:, 1, 7] = pooled[:, 1, 7].round()  # ties
    ap = scoring.ap_scores(pooled, labels, 3)
    flat = pooled.reshape(60, -1).numpy()
    for c in range(3):
        ref = [average_precision_score((labels == c).numpy(), flat[:, j]) for j in range(32)]
        np.testing.assert_allclose(ap[c].flatten().numpy(), ref, atol=1e-6)
    top, bottom = scoring.top_bottom_k(ap, 1, 1)
    assert top[1, 0, 3] and bottom[2, 1, 5]
    assert top.sum() == 3 and bottom.sum() == 3
    with pytest.raises(ln.LangNeuronsError, match="33"):
        scoring.top_bottom_k(ap, 33, 0)
    with pytest.raises(ln.LangNeuronsError, match="every language"):
        scoring.ap_scores(pooled, torch.zeros(60, dtype=torch.long), 3)


def _stats(n_lang=3, n_layers=3, width=20, per_lang=15, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n_lang).repeat_interleave(per_lang)
    pooled = torch.randn(len(labels), n_layers, width, generator=g)
    for li in range(n_lang):
        pooled[labels == li, li % n_layers, li] += 4
    tokens = torch.full((n_lang,), 1000)
    active = torch.randint(100, 900, (n_lang, n_layers, width), generator=g)
    for li in range(n_lang):
        active[li, li % n_layers, li] = 999
        active[[x for x in range(n_lang) if x != li], li % n_layers, li] = 1
    return ln.ActivationStats(
        langs=["en", "de", "fr"][:n_lang],
        site="act",
        pooling="mean",
        tokens=tokens,
        active=active,
        sums=active.double(),
        sq_sums=active.double(),
        sentences=torch.full((n_lang,), per_lang),
        pooled=pooled,
        pooled_lang=labels,
        model={"architecture": "synthetic", "n_layers": n_layers, "d_mlp": width, "weights_sha256": "0" * 16},
        corpus="synthetic",
    )


def test_neuron_sets_from_stats_and_analysis(tmp_path):
    stats = _stats()
    lape = ln.lape(stats, top_rate=0.05)
    for li in range(3):
        assert lape.mask[li, li % 3, li]
    ap = ln.average_precision(stats, top_k=2, bottom_k=2, progress=False)
    assert ap.counts().tolist() == [4, 4, 4]
    assert ap.mask[0, 0, 0] and not ap.bottom[0, 0, 0]
    assert (ap.bottom & ~ap.mask).sum() == 0
    hist = ap.layer_histogram()
    assert hist.shape == (3, 3) and hist.sum(1).tolist() == [4, 4, 4]
    ov = ap.overlap()
    assert ov.diag().tolist() == [4, 4, 4]
    assert torch.equal(ov, ov.T)
    jac = ap.jaccard()
    assert jac.diag().tolist() == [1.0, 1.0, 1.0]
    i, j = 0, 1
    inter = int((ap.mask[i] & ap.mask[j]).sum())
    assert int(ov[i, j]) == inter
    assert float(jac[i, j]) == pytest.approx(inter / int((ap.mask[i] | ap.mask[j]).sum()))
    assert ap.fraction() == pytest.approx(int(ap.union().sum()) / 60)
    assert ap.layer_bands().sum(1).tolist() == pytest.approx([1, 1, 1])
    assert [len(x) for x in ap.indices("en")] == hist[0].tolist()
    assert "en" in ap.summary() and "union" in ap.summary() and "NeuronSet" in repr(ap)
    sub = ap.subset(["fr", "en"])
    assert torch.equal(sub.mask[1], ap.mask[0])
    ap.save(tmp_path / "ap")
    back = ln.NeuronSet.load(tmp_path / "ap.json")
    assert torch.equal(back.mask, ap.mask) and torch.equal(back.bottom, ap.bottom)
    assert torch.equal(back.scores, ap.scores) and back.params == ap.params and back.langs == ap.langs
    with pytest.raises(ln.LangNeuronsError, match="de"):
        ap.indices("ja")
    with pytest.raises(ln.LangNeuronsError, match="61"):
        ln.average_precision(stats, top_k=61, bottom_k=0)


def test_ap_default_k_is_a_share_of_the_site():
    from lang_neurons.neurons import ap_k

    assert ap_k(221_184) == 995 and ap_k(36_864) == 166 and ap_k(60) == 1  # XGLM-564M, the embedded model, tiny
    stats = _stats()  # 60 neurons
    by_share = ln.average_precision(stats, progress=False, share=0.05)
    assert by_share.counts().tolist() == [6, 6, 6]  # 3 top + 3 bottom per language
    assert by_share.params["share"] == 0.05 and by_share.params["requested"] == [None, None]
    assert (by_share.params["top_k"], by_share.params["bottom_k"]) == (3, 3)
    mixed = ln.average_precision(stats, top_k=2, progress=False, share=0.05)
    assert (mixed.params["top_k"], mixed.params["bottom_k"]) == (2, 3)
    explicit = ln.average_precision(stats, top_k=2, bottom_k=2, progress=False)
    assert "share" not in explicit.params  # the paper's numbers given: params as before
    with pytest.raises(ln.LangNeuronsError, match="share"):
        ln.average_precision(stats, share=0.7)


def test_pooled_median():
    stats = _stats()
    med = stats.pooled_median()
    for li in range(3):
        rows = stats.pooled[stats.pooled_lang == li].numpy()
        np.testing.assert_allclose(med[li].numpy(), np.median(rows, axis=0), rtol=1e-6)
