"""Figures of neuron sets and recorded statistics: neurons per layer, overlap between languages,
two methods compared, chosen neurons language by language, entropy against activation probability.

Where single neurons are drawn, the hover text names their layer and index.
"""

from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go
import torch

from lang_neurons.errors import LangNeuronsError
from lang_neurons.neurons import NeuronSet
from lang_neurons.recording import ActivationStats
from lang_neurons.scoring import lape_entropy

from ._style import BACKGROUND, TEMPLATE, language_colors

__all__ = [
    "MAX_POINTS",
    "entropy_scatter",
    "layer_distribution",
    "method_comparison",
    "module_distribution",
    "neuron_profile",
    "overlap_heatmap",
]

MAX_POINTS = 20_000
"""Most points :func:`entropy_scatter` draws (selected neurons always included)."""


def _label(layer: int, index: int) -> str:
    """How one neuron is named on an axis: ``layer:index``."""
    return f"{layer}:{index}"


def _check_same_neurons(neurons: NeuronSet, stats: ActivationStats) -> None:
    if list(neurons.langs) != list(stats.langs):
        raise LangNeuronsError(
            f"the neuron set's languages {neurons.langs} differ from the statistics' {stats.langs}: "
            "use the statistics it was selected from"
        )
    if (neurons.n_layers, neurons.width) != (stats.n_layers, stats.width):
        raise LangNeuronsError(
            f"the neuron set has {neurons.n_layers} layers x {neurons.width} neurons, the statistics "
            f"{stats.n_layers} x {stats.width}: use the statistics it was selected from"
        )


# -- neuron sets -------------------------------------------------------------------------------
def layer_distribution(neurons: NeuronSet, share: bool = False) -> go.Figure:
    """Neurons per layer, one group of bars per layer and one bar per language.

    Args:
        neurons: the neuron set.
        share: plot each language's share of its own neurons (sums to 1 per language) instead
            of counts.
    """
    hist = neurons.layer_histogram()
    colors = language_colors(neurons.langs)
    layers = list(range(neurons.n_layers))
    fig = go.Figure()
    for i, lang in enumerate(neurons.langs):
        counts = hist[i].tolist()
        total = sum(counts)
        y = [c / total if total else 0.0 for c in counts] if share else counts
        fig.add_trace(
            go.Bar(
                x=layers,
                y=y,
                name=lang,
                marker_color=colors[lang],
                customdata=counts,
                hovertemplate=f"{lang}, layer %{{x}}: %{{customdata}} neurons"
                + (" (%{y:.1%})" if share else "")
                + "<extra></extra>",
            )
        )
    fig.update_layout(
        template=TEMPLATE,
        barmode="group",
        legend_title_text="language",
        title=f"{neurons.method.upper()} neurons per layer (site {neurons.site})",
    )
    fig.update_xaxes(title_text="layer", tickmode="array", tickvals=layers)
    fig.update_yaxes(
        title_text="share of the language's neurons" if share else "neurons", tickformat=".0%" if share else None
    )
    return fig


def module_distribution(neurons: NeuronSet, langs: str | Sequence[str] | None = None) -> go.Figure:
    """Language neurons by module kind: per layer, stacked bars of how many of the neurons of
    ``langs`` (default: every language, counted once per language) sit in each module kind of
    the site (:meth:`~lang_neurons.neurons.NeuronSet.unit_histogram`; at site ``linear``
    ``attn.q`` ... ``mlp.down``)."""
    names = list(neurons.langs) if langs is None else [langs] if isinstance(langs, str) else list(langs)
    idx = [neurons.lang_index(lang) for lang in names]
    layers = list(range(neurons.n_layers))
    fig = go.Figure()
    for kind, hist in neurons.unit_histogram().items():
        fig.add_trace(
            go.Bar(
                x=layers,
                y=hist[idx].sum(0).tolist(),
                name=kind,
                hovertemplate=f"{kind}, layer %{{x}}: %{{y}} neurons<extra></extra>",
            )
        )
    fig.update_layout(
        template=TEMPLATE,
        barmode="stack",
        legend_title_text="module",
        title=f"{neurons.method.upper()} neurons per layer by module kind (site {neurons.site}; {', '.join(names)})",
    )
    fig.update_xaxes(title_text="layer", tickmode="array", tickvals=layers)
    fig.update_yaxes(title_text="neurons")
    return fig


def overlap_heatmap(neurons: NeuronSet, metric: str = "count") -> go.Figure:
    """Pairwise overlap of the languages' neurons, numbers written on the cells.

    Args:
        neurons: the neuron set.
        metric: ``count`` (shared neurons; diagonal: each language's count) or ``jaccard``
            (intersection over union).
    """
    if metric == "count":
        z = neurons.overlap().tolist()
        text = [[str(v) for v in row] for row in z]
        what = "shared neurons"
    elif metric == "jaccard":
        z = neurons.jaccard().tolist()
        text = [[f"{v:.2f}" for v in row] for row in z]
        what = "Jaccard"
    else:
        raise LangNeuronsError(f"unknown overlap metric {metric!r}: choose 'count' or 'jaccard'")
    langs = list(neurons.langs)
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=langs,
            y=langs,
            text=text,
            texttemplate="%{text}",
            colorscale="Blues",
            colorbar_title_text=what,
            zmin=0,
            hovertemplate=f"%{{y}} and %{{x}}: %{{text}} ({what})<extra></extra>",
        )
    )
    fig.update_layout(template=TEMPLATE, title=f"{neurons.method.upper()} neurons shared by two languages ({what})")
    fig.update_xaxes(title_text="language", type="category")
    fig.update_yaxes(title_text="language", type="category", autorange="reversed", scaleanchor="x")
    return fig


def method_comparison(a: NeuronSet, b: NeuronSet, names: tuple[str, str] | None = None) -> go.Figure:
    """Per language, the neurons both sets select and those only one does (stacked bars).

    The hover text gives each language's Jaccard index of the two sets. Both sets must cover the
    same languages, in the same order, at the same site of the same model (e.g. LAPE and AP).

    Args:
        a: the first neuron set.
        b: the second neuron set.
        names: how to call them; default their methods (``LAPE``, ``AP``).
    """
    if list(a.langs) != list(b.langs):
        raise LangNeuronsError(f"cannot compare neuron sets of different languages: {a.langs} vs {b.langs}")
    if a.mask.shape != b.mask.shape:
        raise LangNeuronsError(
            f"cannot compare neuron sets of different shapes: {tuple(a.mask.shape)} vs {tuple(b.mask.shape)}"
        )
    if a.site != b.site:
        raise LangNeuronsError(f"cannot compare neuron sets of different sites: {a.site!r} vs {b.site!r}")
    if names is None:
        names = (a.method.upper(), b.method.upper())
        if names[0] == names[1]:
            names = (f"A ({names[0]})", f"B ({names[1]})")
    both = (a.mask & b.mask).sum((1, 2)).tolist()
    a_only = (a.mask & ~b.mask).sum((1, 2)).tolist()
    b_only = (~a.mask & b.mask).sum((1, 2)).tolist()
    jaccard = [n / (n + x + y) if n + x + y else 0.0 for n, x, y in zip(both, a_only, b_only)]
    langs = list(a.langs)
    fig = go.Figure()
    for name, counts, color in (
        (f"{names[0]} and {names[1]}", both, "#4c78a8"),
        (f"{names[0]} only", a_only, "#f58518"),
        (f"{names[1]} only", b_only, "#9ecae9"),
    ):
        fig.add_trace(
            go.Bar(
                x=langs,
                y=counts,
                name=name,
                marker_color=color,
                text=counts,
                textposition="inside",
                customdata=jaccard,
                hovertemplate=f"%{{x}}: %{{y}} neurons {name}<br>Jaccard %{{customdata:.3f}}<extra></extra>",
            )
        )
    fig.update_layout(template=TEMPLATE, barmode="stack", title=f"{names[0]} versus {names[1]} neurons per language")
    fig.update_xaxes(title_text="language", type="category", categoryorder="array", categoryarray=langs)
    fig.update_yaxes(title_text="neurons")
    return fig


# -- statistics ----------------------------------------------------------------------------------
def neuron_profile(stats: ActivationStats, neurons: Sequence[tuple[int, int]], kind: str = "probability") -> go.Figure:
    """Chosen neurons language by language.

    Args:
        stats: recorded statistics.
        neurons: ``(layer, index)`` pairs.
        kind: ``probability`` (bars of P(activation > 0) per language) or ``pooled`` (box plots
            of the pooled per-sentence activations per language).
    """
    if kind not in ("probability", "pooled"):
        raise LangNeuronsError(f"unknown profile kind {kind!r}: choose 'probability' or 'pooled'")
    try:
        pairs = [[int(v) for v in n] for n in neurons]
    except (TypeError, ValueError):
        pairs = []
    if not pairs or any(len(p) != 2 for p in pairs):
        raise LangNeuronsError("give neurons as a non-empty list of (layer, index) pairs")
    for layer, index in pairs:
        if not (0 <= layer < stats.n_layers and 0 <= index < stats.width):
            raise LangNeuronsError(
                f"neuron ({layer}, {index}) is outside the {stats.n_layers} layers x {stats.width} neurons of these statistics"
            )
    colors = language_colors(stats.langs)
    labels = [_label(layer, index) for layer, index in pairs]
    layers = torch.tensor([p[0] for p in pairs])
    idx = torch.tensor([p[1] for p in pairs])
    fig = go.Figure()
    if kind == "probability":
        prob = stats.probability()[:, layers, idx]
        for i, lang in enumerate(stats.langs):
            fig.add_trace(
                go.Bar(
                    x=labels,
                    y=prob[i].tolist(),
                    name=lang,
                    marker_color=colors[lang],
                    customdata=pairs,
                    hovertemplate=f"{lang}, layer %{{customdata[0]}}, neuron %{{customdata[1]}}: P(act > 0) = %{{y:.3f}}<extra></extra>",
                )
            )
        fig.update_layout(barmode="group", title="Activation probability of chosen neurons")
        fig.update_yaxes(title_text="P(activation > 0)", range=[0, 1])
    else:
        if len(stats.pooled_lang) == 0:
            raise LangNeuronsError(
                "these statistics hold no pooled sentences: record with ap_sentences > 0 for kind='pooled'"
            )
        values = stats.pooled[:, layers, idx]
        for i, lang in enumerate(stats.langs):
            rows = values[stats.pooled_lang == i]
            n = len(rows)
            fig.add_trace(
                go.Box(
                    x=[lab for lab in labels for _ in range(n)],
                    y=rows.T.flatten().tolist(),
                    name=lang,
                    marker_color=colors[lang],
                    boxpoints="outliers",
                    customdata=[p for p in pairs for _ in range(n)],
                    hovertemplate=f"{lang}, layer %{{customdata[0]}}, neuron %{{customdata[1]}}: %{{y:.3f}}<extra></extra>",
                )
            )
        fig.update_layout(boxmode="group", title=f"Pooled ({stats.pooling}) sentence activations of chosen neurons")
        fig.update_yaxes(title_text=f"{stats.pooling}-pooled activation per sentence")
    fig.update_layout(template=TEMPLATE, legend_title_text="language")
    fig.update_xaxes(title_text="neuron (layer:index)", type="category", categoryorder="array", categoryarray=labels)
    return fig


def entropy_scatter(stats: ActivationStats, neurons: NeuronSet, max_points: int = MAX_POINTS) -> go.Figure:
    """LAPE entropy against the largest activation probability over languages, every neuron.

    The neuron set's neurons are drawn in their language's colour (a neuron of two languages in
    both); the others in grey, a deterministic random subsample of them when there are more than
    ``max_points`` neurons in all (the selected ones are always drawn).
    """
    _check_same_neurons(neurons, stats)
    if max_points < 1:
        raise LangNeuronsError(f"max_points must be a positive integer, got {max_points}")
    prob = stats.probability()
    entropy = lape_entropy(prob).flatten()
    top = prob.amax(0).flatten()
    selected = neurons.union().flatten()
    rest = (~selected).nonzero().flatten()
    room = max(max_points - int(selected.sum()), 0)
    if len(rest) > room:
        pick = torch.randperm(len(rest), generator=torch.Generator().manual_seed(0))[:room]
        rest = rest[pick].sort().values
    fig = go.Figure()

    def add(flat: torch.Tensor, name: str, color: str, size: int) -> None:
        pairs = [list(divmod(int(f), neurons.width)) for f in flat]
        fig.add_trace(
            go.Scatter(
                x=entropy[flat].tolist(),
                y=top[flat].tolist(),
                mode="markers",
                name=name,
                customdata=pairs,
                marker=dict(color=color, size=size, line=dict(width=0)),
                hovertemplate=f"{name}: layer %{{customdata[0]}}, neuron %{{customdata[1]}}<br>"
                "entropy %{x:.3f}, max P(act > 0) %{y:.3f}<extra></extra>",
            )
        )

    add(rest, "other neurons", BACKGROUND, 4)
    colors = language_colors(neurons.langs)
    for i, lang in enumerate(neurons.langs):
        add(neurons.mask[i].flatten().nonzero().flatten(), lang, colors[lang], 7)
    fig.update_layout(
        template=TEMPLATE,
        legend_title_text="neurons",
        title=f"LAPE entropy and activation probability ({neurons.method.upper()} neurons coloured)",
    )
    fig.update_xaxes(title_text="LAPE entropy over languages (nats; low = language-specific)")
    fig.update_yaxes(title_text="max activation probability over languages")
    return fig
