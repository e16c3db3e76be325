"""Intervals (Wilson, bootstrap, paired BLEU/chrF, loss cells) against known values, and their
place in study.evaluate's results, format_table and the report's tables."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sacrebleu.metrics import BLEU, CHRF
from tiny_models import SENTENCES

import lang_neurons as ln
from lang_neurons import intervals as iv
from lang_neurons import report, study
from lang_neurons.corpora import LanguageCorpus
from lang_neurons.evaluation import translation_scores
from lang_neurons.generation import TextLosses, language_loss, text_losses

Z = 1.959963984540054  # the 97.5 % normal quantile


def _wilson_reference(k: int, n: int) -> tuple[float, float]:
    """Wilson (1927) from its formula, as a reference independent of scipy."""
    p = k / n
    centre = (p + Z**2 / (2 * n)) / (1 + Z**2 / n)
    half = Z * math.sqrt(p * (1 - p) / n + Z**2 / (4 * n**2)) / (1 + Z**2 / n)
    return centre - half, centre + half


# Newcombe (1998), Statistics in Medicine 17:857-872, Table I, method 3 (Wilson score, no
# continuity correction), to 4 decimals; plus 7/10, 0/10, 10/10 and 50/100 from the formula.
PUBLISHED = [
    (81, 263, 0.2553, 0.3662),
    (15, 148, 0.0624, 0.1605),
    (0, 20, 0.0, 0.1611),
    (1, 29, 0.0061, 0.1718),
    (7, 10, 0.3968, 0.8922),
    (0, 10, 0.0, 0.2775),
    (10, 10, 0.7225, 1.0),
    (50, 100, 0.4038, 0.5962),
]


@pytest.mark.parametrize(("k", "n", "low", "high"), PUBLISHED)
def test_wilson_matches_published_values_and_the_formula(k, n, low, high):
    ci = iv.wilson_interval(k, n)
    assert (round(ci.low, 4), round(ci.high, 4)) == (low, high)
    ref = _wilson_reference(k, n)
    assert ci.low == pytest.approx(max(ref[0], 0.0), abs=1e-12) and ci.high == pytest.approx(
        min(ref[1], 1.0), abs=1e-12
    )
    assert ci.k == k and ci.n == n and ci.rate == k / n and ci.low <= ci.rate <= ci.high
    assert ci.to_dict() == {"rate": k / n, "low": ci.low, "high": ci.high, "k": k, "n": n, "level": 0.95}
    assert str(ci) == f"{k / n:.2f} [{ci.low:.2f}, {ci.high:.2f}] n={n}"


def test_hundred_samples_give_a_half_width_of_at_most_a_tenth():
    widths = [(lambda c: (c.high - c.low) / 2)(iv.wilson_interval(k, 100)) for k in range(101)]
    assert max(widths) <= 0.10 and max(widths) == pytest.approx(0.0962, abs=1e-4)  # widest at k = 50
    assert (
        max((lambda c: (c.high - c.low) / 2)(iv.wilson_interval(k, 30)) for k in range(31)) > 0.16
    )  # why 30 was too few


@pytest.mark.parametrize(
    ("k", "n", "message"),
    [(11, 10, "0 <= k <= n"), (-1, 10, "0 <= k <= n"), (0, 0, "n >= 1"), (1.5, 10, "whole counts")],
)
def test_wilson_bad_input(k, n, message):
    with pytest.raises(ln.LangNeuronsError, match=message):
        iv.wilson_interval(k, n)


def test_check_samples_wants_ten():
    iv.check_samples(10)
    with pytest.raises(ln.LangNeuronsError, match="at least 10 samples per cell, got 9"):
        iv.check_samples(9)


def test_bootstrap_is_reproducible_by_seed_and_recomputes_the_statistic():
    items = [1.0] * 30 + [0.0] * 70
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    a, b = iv.bootstrap(items, mean, seed=5), iv.bootstrap(items, mean, seed=5)
    assert a == b and a.estimate == 0.3
    assert iv.bootstrap(items, mean, seed=6) != a
    # by hand: the same resamples, the statistic on each, numpy's 2.5 % / 97.5 % quantiles
    values = [mean([items[i] for i in row]) for row in iv.resample_indices(len(items), 1000, 5)]
    assert (a.low, a.high) == tuple(np.quantile(values, [0.025, 0.975]))
    assert a.low == pytest.approx(0.21, abs=0.02) and a.high == pytest.approx(0.39, abs=0.02)  # ~ p +- 1.96 sqrt(pq/n)
    constant = iv.bootstrap([2.5] * 12, mean)
    assert (constant.estimate, constant.low, constant.high) == (2.5, 2.5, 2.5)
    assert str(a) == f"0.30 [{a.low:.2f}, {a.high:.2f}]"


def test_bootstrap_bad_input():
    with pytest.raises(ln.LangNeuronsError, match="at least one item"):
        iv.bootstrap([], sum)
    with pytest.raises(ln.LangNeuronsError, match="resamples >= 1"):
        iv.bootstrap([1, 2], sum, resamples=0)
    with pytest.raises(ln.LangNeuronsError, match="level"):
        iv.bootstrap([1, 2], sum, level=1.5)


REFS = SENTENCES["de"][:12]
NOISY = [" ".join(s.split()[: max(1, len(s.split()) // 2)]) for s in REFS]


def test_paired_translation_bootstrap_identical_systems_differ_by_exactly_zero():
    out = iv.paired_translation_bootstrap(NOISY, NOISY, REFS, "de", seed=3)
    score = translation_scores(NOISY, REFS, "de")
    for metric, value in (("bleu", score.bleu), ("chrf", score.chrf)):
        paired = getattr(out, metric)
        assert paired.baseline == paired.steered
        assert paired.baseline.estimate == value  # exactly sacrebleu's corpus score
        assert (paired.difference.estimate, paired.difference.low, paired.difference.high) == (0.0, 0.0, 0.0)
        assert paired.baseline.low < value < paired.baseline.high
    perfect = iv.paired_translation_bootstrap(NOISY, REFS, REFS, "de")
    assert (perfect.bleu.steered.low, perfect.bleu.steered.high) == pytest.approx((100.0, 100.0))
    assert perfect.bleu.difference.low > 0 and perfect.chrf.difference.low > 0
    assert out.n == 12 and out.resamples == 1000 and set(out.to_dict()) == {"bleu", "chrf", "n", "resamples"}


def test_paired_translation_bootstrap_resamples_are_sacrebleu_corpus_scores():
    """Each resample's score is sacrebleu's corpus_score of the resampled items (here recomputed
    for the quantiles by hand, with the same seeded indices)."""
    steered = [r if i % 3 else n for i, (r, n) in enumerate(zip(REFS, NOISY))]
    out = iv.paired_translation_bootstrap(NOISY, steered, REFS, "de", resamples=60, seed=11)
    idx = iv.resample_indices(len(REFS), 60, 11)
    for metric, paired in ((BLEU(tokenize="13a"), out.bleu), (CHRF(), out.chrf)):

        def score(hyps, rows, metric=metric):
            return np.array([metric.corpus_score([hyps[i] for i in r], [[REFS[i] for i in r]]).score for r in rows])

        base, steer = score(NOISY, idx), score(steered, idx)
        assert (paired.baseline.low, paired.baseline.high) == pytest.approx(
            tuple(np.quantile(base, [0.025, 0.975])), abs=1e-9
        )
        assert (paired.steered.low, paired.steered.high) == pytest.approx(
            tuple(np.quantile(steer, [0.025, 0.975])), abs=1e-9
        )
        diff = tuple(np.quantile(steer - base, [0.025, 0.975]))
        assert (paired.difference.low, paired.difference.high) == pytest.approx(diff, abs=1e-9)
    assert iv.paired_translation_bootstrap(NOISY, steered, REFS, "de", resamples=60, seed=11) == out
    zh = iv.paired_translation_bootstrap(SENTENCES["zh"][:10], SENTENCES["zh"][:10], SENTENCES["zh"][:10], "zh")
    assert zh.bleu.steered.estimate == pytest.approx(100.0) and zh.bleu.difference.high == 0.0


def test_paired_translation_bootstrap_bad_input():
    with pytest.raises(ln.LangNeuronsError, match="one reference per hypothesis"):
        iv.paired_translation_bootstrap(NOISY[:3], NOISY, REFS, "de")


def _losses(sums: list[list[float]], counts: list[list[float]]) -> TextLosses:
    return TextLosses(
        ["en", "de"],
        [torch.tensor(s, dtype=torch.float64) for s in sums],
        [torch.tensor(c, dtype=torch.float64) for c in counts],
    )


def test_loss_change_intervals_known_cases():
    counts = [[3.0, 5.0, 4.0, 0.0], [2.0, 6.0, 1.0]]
    base = _losses([[3.0, 10.0, 4.0, 0.0], [4.0, 6.0, 3.0]], counts)
    # ablating "en" adds 0.5 nats to every token of every text: the change is 0.5 in every resample
    shifted = _losses(
        [[s + 0.5 * c for s, c in zip(ss, cc)] for ss, cc in zip([[3.0, 10.0, 4.0, 0.0], [4.0, 6.0, 3.0]], counts)],
        counts,
    )
    noisy = _losses([[6.0, 10.0, 4.0, 0.0], [4.0, 12.0, 3.0]], counts)
    out = iv.loss_change_intervals(base, [shifted, noisy], resamples=500, seed=2)
    assert out.low[0].tolist() == pytest.approx([0.5, 0.5]) and out.high[0].tolist() == pytest.approx([0.5, 0.5])
    assert out.texts == [3, 3]  # the text with no scored token is left out
    # by hand for cell (noisy, en): the same resamples of the three scored texts
    c, b, s = np.array([3.0, 5.0, 4.0]), np.array([3.0, 10.0, 4.0]), np.array([6.0, 10.0, 4.0])
    idx = iv.resample_indices(3, 500, (2, 0))
    diffs = s[idx].sum(1) / c[idx].sum(1) - b[idx].sum(1) / c[idx].sum(1)
    assert (float(out.low[1, 0]), float(out.high[1, 0])) == pytest.approx(
        tuple(np.quantile(diffs, [0.025, 0.975])), rel=1e-6
    )
    change = ln.LossMatrix(["en", "de"], base.mean(), torch.stack([shifted.mean(), noisy.mean()])).change
    assert bool(((out.low <= change + 1e-6) & (change <= out.high + 1e-6)).all())
    assert set(out.to_dict()) == {"low", "high", "texts", "resamples", "level"}
    with pytest.raises(ln.LangNeuronsError, match="same texts"):
        iv.loss_change_intervals(base, [_losses([[1.0], [1.0]], [[1.0], [1.0]])])


def test_text_losses_are_per_text_and_give_language_loss(llama_dir):
    model = ln.load_model(llama_dir, device="cpu")
    texts = {lang: SENTENCES[lang][:5] for lang in ("en", "de")}
    per_text = text_losses(model, texts, batch_size=2, progress=False)
    assert torch.allclose(per_text.mean(), language_loss(model, texts, batch_size=3, progress=False), atol=1e-5)
    for li, lang in enumerate(texts):
        for ti, text in enumerate(texts[lang]):  # one text alone, no padding: the same sum and count
            ids = model.to_tokens(text)
            with torch.inference_mode():
                logits = model(ids)
            loss = torch.nn.functional.cross_entropy(logits[0, :-1].float(), ids[0, 1:], reduction="sum")
            assert per_text.counts[li][ti] == ids.shape[1] - 1
            assert float(per_text.sums[li][ti]) == pytest.approx(float(loss), rel=1e-4)


@pytest.fixture(scope="module")
def tiny_study(llama_dir):
    model = ln.load_model(llama_dir, device="cpu")
    langs = ("en", "de", "ja")
    stats = ln.record(model, {lang: SENTENCES[lang][:8] for lang in langs}, progress=False)
    neurons = ln.lape(stats, top_rate=0.1)
    held = LanguageCorpus({lang: SENTENCES[lang][8:22] for lang in langs}, name="held", aligned=True)
    return model, neurons, stats, held


def test_evaluate_gives_every_number_its_interval(tiny_study):
    model, neurons, stats, held = tiny_study
    res = study.evaluate(
        model,
        neurons,
        stats,
        held,
        methods=["add"],
        samples=10,
        max_new_tokens=4,
        translation_items=10,
        loss_texts=12,
        resamples=200,
        seed=1,
        progress=False,
    )
    assert res["settings"]["intervals"]["resamples"] == 200 and res["settings"]["intervals"]["level"] == 0.95
    ks = {}
    for target, entry in res["targets"].items():
        base = entry["baseline_interval"]
        assert (
            base["n"] == 10 and base["rate"] == entry["baseline_rate"] and base["low"] <= base["rate"] <= base["high"]
        )
        row = entry["methods"]["add"]
        ri = row["rate_interval"]
        assert (
            ri["rate"] == row["rate"] and ri["k"] == round(row["rate"] * 10) and ri["low"] <= ri["rate"] <= ri["high"]
        )
        assert (ri["low"], ri["high"]) == (iv.wilson_interval(ri["k"], 10).low, iv.wilson_interval(ri["k"], 10).high)
        ks[target] = (ri["k"], base["k"])
        ti = row["translation_interval"]
        assert ti["n"] == 10 and ti["resamples"] == 200
        for metric in ("bleu", "chrf"):
            assert ti[metric]["baseline"]["estimate"] == entry["translation_baseline"][metric]
            assert ti[metric]["steered"]["estimate"] == row["translation"][metric]
            assert ti[metric]["difference"]["estimate"] == pytest.approx(
                row["translation"][metric] - entry["translation_baseline"][metric]
            )
            assert entry["translation_baseline_interval"][metric] == ti[metric]["baseline"]  # same resamples
            for part in ("baseline", "steered", "difference"):
                assert ti[metric][part]["low"] <= ti[metric][part]["estimate"] + 1e-9 <= ti[metric][part]["high"] + 2e-9
    pooled = res["summary_interval"]
    assert pooled["add"]["k"] == sum(k for k, _ in ks.values()) and pooled["add"]["n"] == 10 * len(ks)
    assert pooled["add"]["rate"] == pytest.approx(res["summary"]["add"])
    assert pooled["baseline"]["rate"] == pytest.approx(res["summary"]["baseline"])
    lm = res["loss_matrix"]
    ci = lm["change_interval"]
    assert np.array(ci["low"]).shape == (3, 3) == np.array(ci["high"]).shape and ci["texts"] == [12, 12, 12]
    assert (np.array(ci["low"]) <= np.array(lm["change"]) + 1e-5).all() and (
        np.array(lm["change"]) <= np.array(ci["high"]) + 1e-5
    ).all()
    again = study.evaluate(
        model,
        neurons,
        stats,
        held,
        methods=["add"],
        samples=10,
        max_new_tokens=4,
        translation_items=10,
        loss_texts=12,
        resamples=200,
        seed=1,
        progress=False,
    )
    assert again == res  # seeded: the same intervals
    table = study.format_table(res)
    assert "95% intervals" in table and "n=10" in table and "mean rate: add " in table and "BLEU steered-base" in table
    assert "loss change (ablated - base)" in table
    html = report.steering_table(res).to_html() + report.loss_matrix_table(lm).to_html()
    assert (
        html.count("<table") == 2 and "n=10" in html and "mean rate" in html and "paired bootstrap over texts" in html
    )
    fig = ln.plots.steering_rates(res)
    bars = fig.data[1]
    assert list(bars.error_y.array) == pytest.approx(
        [
            res["targets"][t]["methods"]["add"]["rate_interval"]["high"] - res["targets"][t]["methods"]["add"]["rate"]
            for t in res["targets"]
        ]
    )


def test_evaluate_refuses_intervals_over_few_samples(tiny_study):
    model, neurons, stats, held = tiny_study
    with pytest.raises(ln.LangNeuronsError, match="at least 10 samples per cell, got 4"):
        study.evaluate(model, neurons, stats, held, methods=["add"], samples=4, progress=False)
    res = study.evaluate(
        model,
        neurons,
        stats,
        held,
        methods=["add"],
        targets=["de"],
        samples=4,
        max_new_tokens=3,
        translation_items=0,
        loss_texts=0,
        intervals=False,
        progress=False,
    )
    assert "summary_interval" not in res and "rate_interval" not in res["targets"]["de"]["methods"]["add"]
    assert "intervals" not in res["settings"] and "[" not in study.format_table(res)
    assert "No intervals" in report.steering_table(res).note
