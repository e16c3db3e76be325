"""Every figure of lang_neurons.plots on hand-made inputs: the traces' data, names, labels and
colours, and the errors bad input gets."""

from __future__ import annotations

import math

import plotly.colors
import pytest
import torch
from plot_inputs import LANGS, ROWS, _neurons, _results, _stats

import lang_neurons as ln
from lang_neurons import plots
from lang_neurons.intervals import wilson_interval
from lang_neurons.scoring import lape_entropy


def test_language_colors_follow_the_order_of_langs():
    colors = plots.language_colors(LANGS)
    assert list(colors) == LANGS
    assert list(colors.values()) == plots.PALETTE[:3]
    assert len(set(plots.language_colors([f"l{i}" for i in range(12)]).values())) == 12
    assert plots.language_colors(["de", "en"])["de"] == colors["en"]  # by position, not by name


def test_layer_distribution_counts_and_shares():
    fig = plots.layer_distribution(_neurons())
    assert [t.name for t in fig.data] == LANGS
    assert [t.type for t in fig.data] == ["bar"] * 3
    assert [list(t.x) for t in fig.data] == [[0, 1]] * 3
    assert [list(t.y) for t in fig.data] == [[2, 1], [1, 1], [0, 1]]
    assert fig.layout.barmode == "group"
    assert fig.layout.xaxis.title.text == "layer" and fig.layout.yaxis.title.text == "neurons"
    assert "LAPE" in fig.layout.title.text and "layer %{x}" in fig.data[0].hovertemplate

    share = plots.layer_distribution(_neurons(), share=True)
    assert list(share.data[0].y) == pytest.approx([2 / 3, 1 / 3])
    assert list(share.data[2].y) == [0.0, 1.0]
    assert list(share.data[0].customdata) == [2, 1]  # counts stay in the hover text
    assert share.layout.yaxis.title.text == "share of the language's neurons"
    empty = plots.layer_distribution(_neurons(members={"en": [(0, 0)], "de": []}), share=True)
    assert list(empty.data[1].y) == [0.0, 0.0]  # a language without neurons: zeros, not NaN


def test_overlap_heatmap_count_and_jaccard():
    fig = plots.overlap_heatmap(_neurons())
    (hm,) = fig.data
    assert hm.type == "heatmap" and list(hm.x) == LANGS and list(hm.y) == LANGS
    assert [list(r) for r in hm.z] == [[3, 1, 0], [1, 2, 0], [0, 0, 1]]
    assert [list(r) for r in hm.text] == [["3", "1", "0"], ["1", "2", "0"], ["0", "0", "1"]]
    assert hm.texttemplate == "%{text}"
    assert fig.layout.yaxis.autorange == "reversed"

    jac = plots.overlap_heatmap(_neurons(), metric="jaccard").data[0]
    assert jac.z[0][1] == pytest.approx(0.25) and jac.z[1][0] == pytest.approx(0.25)
    assert [list(r) for r in jac.text] == [["1.00", "0.25", "0.00"], ["0.25", "1.00", "0.00"], ["0.00", "0.00", "1.00"]]
    with pytest.raises(ln.LangNeuronsError, match="unknown overlap metric 'dice'"):
        plots.overlap_heatmap(_neurons(), metric="dice")


def test_neuron_profile_probability_bars():
    stats = _stats()
    fig = plots.neuron_profile(stats, [(0, 1), (1, 3)])
    prob = stats.probability()
    assert [t.name for t in fig.data] == LANGS
    for i, trace in enumerate(fig.data):
        assert list(trace.x) == ["0:1", "1:3"]
        assert list(trace.y) == pytest.approx([float(prob[i, 0, 1]), float(prob[i, 1, 3])])
        assert [list(c) for c in trace.customdata] == [[0, 1], [1, 3]]
        assert "layer %{customdata[0]}, neuron %{customdata[1]}" in trace.hovertemplate
    assert fig.layout.xaxis.title.text == "neuron (layer:index)"
    assert fig.layout.yaxis.title.text == "P(activation > 0)"
    assert list(fig.layout.xaxis.categoryarray) == ["0:1", "1:3"]


def test_neuron_profile_pooled_boxes():
    stats = _stats()
    fig = plots.neuron_profile(stats, [(0, 1), (1, 3)], kind="pooled")
    assert [t.type for t in fig.data] == ["box"] * 3 and [t.name for t in fig.data] == LANGS
    de = fig.data[1]
    rows = stats.pooled[3:6]  # de's three sentences
    assert list(de.x) == ["0:1"] * 3 + ["1:3"] * 3
    assert list(de.y) == pytest.approx(rows[:, 0, 1].tolist() + rows[:, 1, 3].tolist())
    assert [list(c) for c in de.customdata] == [[0, 1]] * 3 + [[1, 3]] * 3
    assert fig.layout.boxmode == "group" and "mean-pooled" in fig.layout.yaxis.title.text


@pytest.mark.parametrize(
    ("neurons", "kind", "message"),
    [
        ([], "probability", "non-empty list of \\(layer, index\\) pairs"),
        ([3], "probability", "non-empty list"),
        ([(0, 1, 2)], "probability", "non-empty list"),
        ([(2, 0)], "probability", "neuron \\(2, 0\\) is outside the 2 layers x 4 neurons"),
        ([(0, -1)], "probability", "outside"),
        ([(0, 1)], "histogram", "unknown profile kind 'histogram'"),
    ],
)
def test_neuron_profile_bad_input(neurons, kind, message):
    with pytest.raises(ln.LangNeuronsError, match=message):
        plots.neuron_profile(_stats(), neurons, kind=kind)


def test_neuron_profile_pooled_needs_pooled_rows():
    stats = _stats()
    stats.pooled, stats.pooled_lang = stats.pooled[:0], stats.pooled_lang[:0]
    with pytest.raises(ln.LangNeuronsError, match="no pooled sentences"):
        plots.neuron_profile(stats, [(0, 0)], kind="pooled")


def test_entropy_scatter_draws_every_neuron_and_highlights_the_selected():
    stats, neurons = _stats(), _neurons()
    fig = plots.entropy_scatter(stats, neurons)
    assert [t.name for t in fig.data] == ["other neurons", *LANGS]
    entropy = lape_entropy(stats.probability())
    top = stats.probability().amax(0)
    background = fig.data[0]
    assert sorted(tuple(c) for c in background.customdata) == [(0, 2), (0, 3), (1, 1)]  # the 3 unselected of 8
    for trace in fig.data:
        for (layer, index), x, y in zip(trace.customdata, trace.x, trace.y):
            assert x == pytest.approx(float(entropy[layer, index])) and y == pytest.approx(float(top[layer, index]))
    assert [[tuple(c) for c in t.customdata] for t in fig.data[1:]] == [
        [(0, 0), (0, 1), (1, 2)],
        [(0, 1), (1, 3)],
        [(1, 0)],
    ]
    assert fig.data[0].marker.color == plots.BACKGROUND
    assert "layer %{customdata[0]}, neuron %{customdata[1]}" in fig.data[1].hovertemplate
    assert "entropy" in fig.layout.xaxis.title.text and "max activation probability" in fig.layout.yaxis.title.text


def test_entropy_scatter_subsamples_deterministically_but_keeps_the_selected():
    stats = _stats(n_layers=2, width=3000, seed=1)
    members = {"en": [(0, i) for i in range(40)], "de": [(1, i) for i in range(30)], "fr": [(1, 2999)]}
    neurons = _neurons(members=members, shape=(2, 3000))
    fig = plots.entropy_scatter(stats, neurons, max_points=500)
    assert sum(len(t.x) for t in fig.data) == 500  # 71 selected + 429 of the 5929 others
    assert len(fig.data[0].x) == 500 - 71
    assert [len(t.x) for t in fig.data[1:]] == [40, 30, 1]
    again = plots.entropy_scatter(stats, neurons, max_points=500)
    assert list(again.data[0].customdata) == list(fig.data[0].customdata)
    selected = {tuple(c) for t in fig.data[1:] for c in t.customdata}
    assert not selected & {tuple(c) for c in fig.data[0].customdata}
    full = plots.entropy_scatter(stats, neurons)  # default 20 000 > 6 000 neurons: everything
    assert len(full.data[0].x) == 6000 - 71


def test_entropy_scatter_needs_matching_statistics():
    with pytest.raises(ln.LangNeuronsError, match="languages"):
        plots.entropy_scatter(_stats(), _neurons(members={"en": [(0, 0)], "de": [(0, 1)]}))
    with pytest.raises(ln.LangNeuronsError, match="2 layers x 5 neurons"):
        plots.entropy_scatter(_stats(), _neurons(shape=(2, 5)))
    with pytest.raises(ln.LangNeuronsError, match="max_points"):
        plots.entropy_scatter(_stats(), _neurons(), max_points=0)


def test_loss_matrix_heatmap_from_object_and_dict():
    matrix = ln.LossMatrix(["en", "de"], torch.tensor([2.0, 3.0]), torch.tensor([[2.5, 3.0], [2.0, 4.25]]))
    fig = plots.loss_matrix_heatmap(matrix)
    (hm,) = fig.data
    assert list(hm.x) == ["en", "de"] and list(hm.y) == ["en", "de"]
    assert [list(r) for r in hm.z] == [[0.5, 0.0], [0.0, 1.25]]
    assert [list(r) for r in hm.text] == [["+0.500", "+0.000"], ["+0.000", "+1.250"]]
    assert hm.zmid == 0
    assert fig.layout.xaxis.title.text == "evaluated language"
    assert fig.layout.yaxis.title.text == "language whose neurons are off"
    from_dict = plots.loss_matrix_heatmap(matrix.to_dict())
    assert [list(r) for r in from_dict.data[0].z] == [list(r) for r in hm.z]
    assert from_dict.data[0].customdata is None and "customdata" not in from_dict.data[0].hovertemplate
    with_ci = plots.loss_matrix_heatmap(
        {**matrix.to_dict(), "change_interval": {"low": [[0.25, -0.5], [-0.1, 1.0]], "high": [[0.75, 0.5], [0.1, 1.5]]}}
    )
    assert with_ci.data[0].customdata[0][0] == " [+0.250, +0.750]" and "%{customdata}" in with_ci.data[0].hovertemplate
    with pytest.raises(ln.LangNeuronsError, match="missing ablated"):
        plots.loss_matrix_heatmap({"langs": ["en"], "base": [1.0]})
    with pytest.raises(ln.LangNeuronsError, match="shape"):
        plots.loss_matrix_heatmap({"langs": ["en", "de"], "base": [1.0, 2.0], "ablated": [[1.0, 2.0]]})


POINTS = [
    {"target": "fr", "alpha": 2.0, "rate": 0.8, "bleu": 5.0, "n_neurons": 30},
    {"target": "de", "alpha": 2.0, "rate": 0.9, "bleu": 10.0, "n_neurons": 40},
    {"target": "de", "alpha": 0.5, "rate": 0.2, "bleu": 12.0, "n_neurons": 40},
    {"target": "fr", "alpha": 0.5, "rate": 0.1, "n_neurons": 30},
]


def test_steering_sweep_rates_and_bleu_by_alpha():
    fig = plots.steering_sweep(POINTS, langs=LANGS)
    rates = [t for t in fig.data if t.xaxis == "x"]
    bleu = [t for t in fig.data if t.xaxis == "x2"]
    assert [t.name for t in rates] == ["de", "fr"]  # in the order of langs
    assert [list(t.x) for t in rates] == [[0.5, 2.0], [0.5, 2.0]]  # sorted by alpha
    assert [list(t.y) for t in rates] == [[0.2, 0.9], [0.1, 0.8]]
    assert [list(t.y) for t in bleu] == [[12.0, 10.0], [None, 5.0]]  # a point without BLEU is a gap
    assert [t.showlegend for t in bleu] == [False, False]
    colors = plots.language_colors(LANGS)
    assert [t.line.color for t in rates] == [colors["de"], colors["fr"]]
    assert [t.line.color for t in bleu] == [colors["de"], colors["fr"]]
    assert fig.layout.yaxis.title.text == "target-language rate" and fig.layout.yaxis2.title.text == "BLEU"
    assert fig.layout.xaxis2.title.text == "alpha (steering strength)"


def test_steering_sweep_by_neurons_without_bleu_and_methods():
    points = [
        {"target": "de", "method": m, "n_neurons": n, "rate": r}
        for m, n, r in [("add", 100, 0.5), ("add", 10, 0.1), ("scale", 10, 0.3)]
    ]
    fig = plots.steering_sweep(points, x="n_neurons")
    assert len(fig.data) == 2 and {t.xaxis for t in fig.data} == {"x"}  # one panel: no BLEU anywhere
    assert [t.name for t in fig.data] == ["de add", "de scale"]
    assert list(fig.data[0].x) == [10, 100] and list(fig.data[0].y) == [0.1, 0.5]
    assert fig.data[0].line.dash != fig.data[1].line.dash
    assert fig.layout.xaxis.title.text == "steered neurons"


@pytest.mark.parametrize(
    ("points", "kwargs", "message"),
    [
        ([], {}, "at least one point"),
        (POINTS, {"x": "beta"}, "unknown x 'beta'"),
        ([{"target": "de", "rate": 0.5}], {}, "lacks alpha"),
        ([{"alpha": 1.0, "rate": 0.5}], {}, "lacks target"),
        (POINTS, {"langs": ["en", "de"]}, "\\['fr'\\] are not in langs"),
    ],
)
def test_steering_sweep_bad_input(points, kwargs, message):
    with pytest.raises(ln.LangNeuronsError, match=message):
        plots.steering_sweep(points, **kwargs)


def test_method_comparison_counts_and_jaccard():
    a = _neurons("lape")
    b = _neurons("ap", members={"en": [(0, 0), (1, 1)], "de": [(0, 1), (1, 3)], "fr": [(0, 3)]})
    fig = plots.method_comparison(a, b)
    assert [t.name for t in fig.data] == ["LAPE and AP", "LAPE only", "AP only"]
    assert [list(t.x) for t in fig.data] == [LANGS] * 3
    assert [list(t.y) for t in fig.data] == [[1, 2, 0], [2, 0, 1], [1, 0, 1]]
    assert list(fig.data[0].text) == ["1", "2", "0"]
    assert list(fig.data[0].customdata) == pytest.approx([0.25, 1.0, 0.0])
    assert "Jaccard %{customdata:.3f}" in fig.data[0].hovertemplate
    assert fig.layout.barmode == "stack"
    assert [t.name for t in plots.method_comparison(a, a).data] == [
        "A (LAPE) and B (LAPE)",
        "A (LAPE) only",
        "B (LAPE) only",
    ]
    assert plots.method_comparison(a, b, names=("x", "y")).data[1].name == "x only"


def test_method_comparison_refuses_different_sets():
    a = _neurons()
    with pytest.raises(ln.LangNeuronsError, match="different languages"):
        plots.method_comparison(a, a.subset(["de", "en", "fr"]))
    with pytest.raises(ln.LangNeuronsError, match="different shapes: \\(3, 2, 4\\) vs \\(3, 3, 4\\)"):
        plots.method_comparison(a, _neurons(shape=(3, 4)))
    with pytest.raises(ln.LangNeuronsError, match="different sites: 'act' vs 'post'"):
        plots.method_comparison(a, _neurons(site="post"))


def test_steering_rates_from_evaluation_results():
    results = {
        "settings": {"methods": ["add", "override"], "alpha": 1.0},
        "targets": {
            "de": {
                "baseline_rate": 0.1,
                "translation_baseline": {"bleu": 3.0},
                "methods": {"add": {"rate": 0.6, "translation": {"bleu": 4.5}}, "override": {"rate": 0.4}},
            },
            "fr": {"baseline_rate": 0.0, "methods": {"add": {"rate": 0.3}, "override": {"rate": 0.2}}},
        },
    }
    fig = plots.steering_rates(results)
    assert [t.name for t in fig.data] == ["unsteered", "add", "override"]
    assert [list(t.x) for t in fig.data] == [["de", "fr"]] * 3
    assert [list(t.y) for t in fig.data] == [[0.1, 0.0], [0.6, 0.3], [0.4, 0.2]]
    assert list(fig.data[1].customdata) == ["4.5", "n/a"] and list(fig.data[0].customdata) == ["3.0", "n/a"]
    assert list(fig.data[1].text) == ["0.60", "0.30"]
    with pytest.raises(ln.LangNeuronsError, match="no steering targets"):
        plots.steering_rates({"targets": {}})
    assert all(t.error_y.array is None for t in fig.data) and "Wilson" not in fig.layout.title.text


def test_steering_rates_draw_intervals_as_error_bars():
    def ci(k):
        return {
            "rate": k / 10,
            "low": wilson_interval(k, 10).low,
            "high": wilson_interval(k, 10).high,
            "k": k,
            "n": 10,
        }

    results = {
        "settings": {"methods": ["add"], "alpha": 1.0},
        "targets": {
            t: {
                "baseline_rate": b / 10,
                "baseline_interval": ci(b),
                "methods": {"add": {"rate": k / 10, "rate_interval": ci(k)}},
            }
            for t, b, k in (("de", 0, 7), ("fr", 1, 10))
        },
    }
    fig = plots.steering_rates(results)
    add = fig.data[1]
    assert list(add.error_y.array) == pytest.approx([ci(7)["high"] - 0.7, 0.0])
    assert list(add.error_y.arrayminus) == pytest.approx([0.7 - ci(7)["low"], 1.0 - ci(10)["low"]])
    assert add.error_y.symmetric is False and list(fig.data[0].error_y.arrayminus) == pytest.approx(
        [0.0, 0.1 - ci(1)["low"]]
    )
    assert add.hovertext[0] == f" [{ci(7)['low']:.2f}, {ci(7)['high']:.2f}] n=10" and "Wilson" in fig.layout.title.text


def test_steering_sweep_draws_intervals_as_shaded_bands():
    points = [{**p, "rate_low": p["rate"] - 0.1, "rate_high": p["rate"] + 0.05} for p in POINTS]
    sweep = plots.steering_sweep(points, langs=LANGS)
    bands = [t for t in sweep.data if t.fill == "toself"]
    lines = [t for t in sweep.data if t.fill is None]
    assert [t.name for t in bands] == ["de target-language rate interval", "fr target-language rate interval"]
    assert {t.xaxis for t in bands} == {"x"}  # no BLEU intervals given: no band below
    de = bands[0]
    assert list(de.x) == [0.5, 2.0, 2.0, 0.5]  # along the upper edge, back along the lower one
    assert list(de.y) == pytest.approx([0.25, 0.95, 0.8, 0.1])
    assert de.line.width == 0 and de.showlegend is False and de.hoverinfo == "skip" and de.legendgroup == "de"
    assert de.fillcolor == "rgba({}, {}, {}, 0.18)".format(
        *plotly.colors.hex_to_rgb(plots.language_colors(LANGS)["de"])
    )
    assert sweep.data.index(de) < sweep.data.index(lines[0])  # the band lies under its line
    assert all(t.error_y.array is None for t in lines)  # bands instead of error bars
    assert lines[0].customdata[0] == " [0.10, 0.25]"  # the interval in the hover text
    partial = [dict(points[0], rate_low=None), *points[1:]]  # a line with a point lacking its interval gets no band
    assert [t.name for t in plots.steering_sweep(partial, langs=LANGS).data if t.fill] == [
        "de target-language rate interval"
    ]


def test_steering_sweep_quality_and_forcing_score_panels():
    points = [
        {
            "target": t,
            "alpha": a,
            "rate": r,
            "quality": q,
            "forcing_score": 2 * r * q / (r + q),
            "rate_low": r - 0.1,
            "rate_high": r + 0.05,
            "quality_low": q - 0.1,
            "quality_high": q,
            "score_low": 0.1,
            "score_high": 0.9,
        }
        for t, a, r, q in [("de", 0.5, 0.2, 0.9), ("de", 2.0, 0.9, 0.6), ("fr", 0.5, 0.1, 1.0), ("fr", 2.0, 0.8, 0.7)]
    ]
    fig = plots.steering_sweep(points, langs=LANGS)
    titles = [fig.layout[f"yaxis{i if i > 1 else ''}"].title.text for i in (1, 2, 3)]
    assert (
        titles == ["target-language rate", "quality", "forcing score"] and "yaxis4" not in fig.layout
    )  # no BLEU: 3 panels
    by_axis = {axis: [t for t in fig.data if t.yaxis == axis] for axis in ("y", "y2", "y3")}
    assert [[t.fill for t in traces] for traces in by_axis.values()] == [["toself", None] * 2] * 3
    assert list(by_axis["y2"][1].y) == [0.9, 0.6] and list(by_axis["y3"][1].y) == pytest.approx(
        [2 * 0.18 / 1.1, 2 * 0.54 / 1.5]
    )
    assert list(by_axis["y2"][0].y) == pytest.approx([0.9, 0.6, 0.5, 0.8])
    assert [t.showlegend for t in fig.data if t.fill is None] == [True, False, False] * 2  # one legend entry per line
    assert fig.layout.height == 720 and fig.layout.xaxis3.title.text == "alpha (steering strength)"


def test_languages_keep_order_and_colour_across_figures():
    stats, neurons = _stats(), _neurons()
    colors = plots.language_colors(LANGS)
    figs = [
        plots.layer_distribution(neurons),
        plots.neuron_profile(stats, [(0, 0)]),
        plots.neuron_profile(stats, [(0, 0)], kind="pooled"),
        plots.entropy_scatter(stats, neurons),
    ]
    for fig in figs:
        traces = [t for t in fig.data if t.name in LANGS]
        assert [t.name for t in traces] == LANGS
        assert [t.marker.color for t in traces] == [colors[x] for x in LANGS]
    sweep = plots.steering_sweep(POINTS, langs=LANGS)
    assert {t.name: t.line.color for t in sweep.data} == {"de": colors["de"], "fr": colors["fr"]}
    for fig in (
        plots.overlap_heatmap(neurons),
        plots.loss_matrix_heatmap({"langs": LANGS, "base": [1.0] * 3, "ablated": [[1.0] * 3] * 3}),
    ):
        assert list(fig.data[0].x) == LANGS and list(fig.data[0].y) == LANGS
    assert not any(math.isnan(v) for t in figs[0].data for v in t.y)


def test_headline_rows_pair_each_method_with_its_control():
    results = {
        "settings": {"methods": ["add", "diffmean", "add:random", "diffmean:random", "residual_diffmean"]},
        "targets": {},
    }
    assert plots.headline_rows(results) == ["add", "add:random", "diffmean", "diffmean:random", "residual_diffmean"]
    no_settings = {"targets": {"de": {"methods": {"residual_diffmean": {}, "add:random": {}, "add": {}, "pin": {}}}}}
    assert plots.headline_rows(no_settings) == ["add", "add:random", "pin", "residual_diffmean"]
    with pytest.raises(ln.LangNeuronsError, match="unknown headline metric 'bleu'"):
        plots.headline_cell(_results()["targets"]["de"], "add", "bleu")


def test_headline_figure_bars_of_forcing_scores_with_their_intervals():
    results = _results()
    fig = plots.headline_figure(results)
    assert [t.name for t in fig.data] == [*ROWS, "baseline"]  # one trace per row
    assert all(t.type == "bar" and list(t.x) == ["de", "fr"] for t in fig.data) and fig.layout.barmode == "group"
    for trace in fig.data:
        entries = [results["targets"][t] for t in ("de", "fr")]
        cells = [
            e["baseline_forcing_interval"] if trace.name == "baseline" else e["methods"][trace.name]["forcing_interval"]
            for e in entries
        ]
        scores = [c["score"]["estimate"] for c in cells]
        assert list(trace.y) == pytest.approx(scores)
        assert trace.error_y.symmetric is False
        assert list(trace.error_y.array) == pytest.approx([c["score"]["high"] - s for c, s in zip(cells, scores)])
        assert list(trace.error_y.arrayminus) == pytest.approx([s - c["score"]["low"] for c, s in zip(cells, scores)])
    add, control, residual, baseline = fig.data
    assert (
        control.marker.color == add.marker.color
        and control.marker.pattern.shape == "/"
        and add.marker.pattern.shape == ""
    )
    assert len({add.marker.color, residual.marker.color, baseline.marker.color}) == 3
    rate = results["targets"]["de"]["methods"]["add"]["rate_interval"]
    assert add.hovertext[0] == (
        f"rate {rate['rate']:.2f} [{rate['low']:.2f}, {rate['high']:.2f}] n=20<br>quality 0.80 [0.70, 0.85]"
        f"<br>forcing score {add.y[0]:.2f} [{add.y[0] - 0.1:.2f}, {add.y[0] + 0.05:.2f}]"
    )
    assert fig.layout.title.text.startswith("Forcing score") and "95 % intervals" in fig.layout.title.text
    assert fig.layout.yaxis.title.text == "forcing score"


def test_headline_figure_of_old_results_shows_rates():
    old = _results(forcing=False)  # a metrics.json from before the forcing score
    fig = plots.headline_figure(old)
    assert [t.name for t in fig.data] == [*ROWS, "baseline"]
    add, baseline = fig.data[0], fig.data[3]
    assert list(add.y) == [0.8, 0.5] and list(baseline.y) == [0.05, 0.0]
    de = old["targets"]["de"]["methods"]["add"]["rate_interval"]
    assert add.error_y.array[0] == pytest.approx(de["high"] - 0.8) and add.error_y.arrayminus[0] == pytest.approx(
        0.8 - de["low"]
    )
    assert add.hovertext[0].endswith("quality n/a<br>forcing score n/a")
    assert fig.layout.yaxis.title.text == "target-language rate" and fig.layout.title.text.startswith(
        "Target-language rate"
    )
    bare = plots.headline_figure(_results(forcing=False, intervals=False))
    assert all(t.error_y.array is None for t in bare.data) and "intervals" not in bare.layout.title.text
    with pytest.raises(ln.LangNeuronsError, match="no steering targets"):
        plots.headline_figure({"targets": {}})
