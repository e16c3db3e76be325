"""Figures of evaluation results: the loss change matrix, steering sweeps, and the headline
(forcing score or target-language rate per target, with intervals) of
:func:`lang_neurons.study.evaluate`'s results, and the cells the report's headline table shows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, cast

import plotly.colors
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from lang_neurons.errors import LangNeuronsError
from lang_neurons.evaluation import LossMatrix
from lang_neurons.study import CONTROL_SUFFIX, RESIDUAL, format_interval, format_rate

from ._style import TEMPLATE, language_colors

__all__ = [
    "HeadlineCell",
    "headline_cell",
    "headline_figure",
    "headline_rows",
    "loss_matrix_heatmap",
    "steering_rates",
    "steering_sweep",
]


# -- evaluation ----------------------------------------------------------------------------------
def loss_matrix_heatmap(matrix: LossMatrix | Mapping[str, Any]) -> go.Figure:
    """Loss change (ablated - base) on each evaluated language when each language's neurons are
    switched off; a :class:`LossMatrix` or its ``to_dict()`` (as in ``metrics.json``). A dict
    with ``change_interval`` (:func:`lang_neurons.study.evaluate`) shows each cell's interval on hover."""
    ci = None if isinstance(matrix, LossMatrix) else matrix.get("change_interval")
    if not isinstance(matrix, LossMatrix):
        missing = [k for k in ("langs", "base", "ablated") if k not in matrix]
        if missing:
            raise LangNeuronsError(
                f"a loss matrix dict needs the keys langs, base and ablated (missing {', '.join(missing)})"
            )
        matrix = LossMatrix(list(matrix["langs"]), torch.tensor(matrix["base"]), torch.tensor(matrix["ablated"]))
    langs = list(matrix.langs)
    z = matrix.change.tolist()
    cells = (
        [[f" [{lo:+.3f}, {hi:+.3f}]" for lo, hi in zip(*rows)] for rows in zip(ci["low"], ci["high"])] if ci else None
    )
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=langs,
            y=langs,
            text=[[f"{v:+.3f}" for v in row] for row in z],
            texttemplate="%{text}",
            colorscale="RdBu_r",
            zmid=0,
            colorbar_title_text="loss change",
            customdata=cells,
            hovertemplate=f"%{{y}} neurons off, loss on %{{x}}: %{{text}}{'%{customdata}' if ci else ''}<extra></extra>",
        )
    )
    fig.update_layout(template=TEMPLATE, title="Loss change when one language's neurons are switched off")
    fig.update_xaxes(title_text="evaluated language", type="category")
    fig.update_yaxes(
        title_text="language whose neurons are off", type="category", autorange="reversed", scaleanchor="x"
    )
    return fig


def _point_intervals(points: Sequence[Mapping[str, Any]], key: str) -> list[dict[str, float] | None]:
    """Per sweep point, ``{"low", "high"}`` from its ``<key>_low`` and ``<key>_high`` (``None`` where absent)."""
    return [
        {"low": p[f"{key}_low"], "high": p[f"{key}_high"]}
        if p.get(f"{key}_low") is not None and p.get(f"{key}_high") is not None
        else None
        for p in points
    ]


_SWEEP_PANELS = (  # point key, interval key prefix, axis title, number format
    ("rate", "rate", "target-language rate", ".2f"),
    ("quality", "quality", "quality", ".2f"),
    ("forcing_score", "score", "forcing score", ".2f"),
    ("bleu", "bleu", "BLEU", ".1f"),
)


def steering_sweep(
    points: Sequence[Mapping[str, Any]], x: str = "alpha", langs: Sequence[str] | None = None
) -> go.Figure:
    """Target-language rate against ``x``, and below it, in one panel each when any point has
    them, quality, forcing score and BLEU.

    Args:
        points: dicts with ``target``, ``rate``, the ``x`` key and optionally ``quality``,
            ``forcing_score``, ``bleu`` and ``method`` (one line per target and method), e.g.
            ``{"target": "de", "alpha": 1.0, "rate": 0.9, "bleu": 12.3, "n_neurons": 300}``;
            ``rate_low``/``rate_high`` (``quality_``, ``score_``, ``bleu_``) draw a shaded band
            around a line whose every point has them.
        x: ``alpha`` or ``n_neurons``.
        langs: language order for the colours (default: order of first appearance); pass the
            neuron set's ``langs`` to match its other figures.
    """
    if x not in ("alpha", "n_neurons"):
        raise LangNeuronsError(f"unknown x {x!r}: choose 'alpha' or 'n_neurons'")
    if not points:
        raise LangNeuronsError("steering_sweep needs at least one point")
    for p in points:
        missing = [k for k in ("target", "rate", x) if p.get(k) is None]
        if missing:
            raise LangNeuronsError(
                f"every sweep point needs target, rate and {x}; {dict(p)} lacks {', '.join(missing)}"
            )
    targets = list(dict.fromkeys(p["target"] for p in points))
    order = list(langs) if langs is not None else targets
    unknown = [t for t in targets if t not in order]
    if unknown:
        raise LangNeuronsError(f"sweep targets {unknown} are not in langs {list(order)}")
    colors = language_colors(order)
    methods = list(dict.fromkeys(p.get("method") for p in points))
    panels = [m for m in _SWEEP_PANELS if m[0] == "rate" or any(p.get(m[0]) is not None for p in points)]
    fig = make_subplots(
        rows=len(panels), cols=1, shared_xaxes=True, vertical_spacing=0.08 if len(panels) <= 2 else 0.05
    )
    dashes = ["solid", "dash", "dot", "dashdot", "longdash"]
    for target in sorted(targets, key=order.index):
        for mi, method in enumerate(methods):
            group = sorted(
                (p for p in points if p["target"] == target and p.get("method") == method), key=lambda p: p[x]
            )
            if not group:
                continue
            name = target if method is None else f"{target} {method}"
            xs = [p[x] for p in group]
            for row, (key, prefix, label, fmt) in enumerate(panels, 1):
                ys, ivs = [p.get(key) for p in group], _point_intervals(group, prefix)
                bands = [i for i in ivs if i]
                if all(y is not None for y in ys) and len(bands) == len(ivs):  # the band first, under the line
                    fig.add_trace(
                        go.Scatter(
                            x=xs + xs[::-1],
                            y=[i["high"] for i in bands] + [i["low"] for i in bands][::-1],
                            fill="toself",
                            mode="lines",
                            fillcolor="rgba({}, {}, {}, 0.18)".format(*plotly.colors.hex_to_rgb(colors[target])),
                            line=dict(color=colors[target], width=0),
                            name=f"{name} {label} interval",
                            legendgroup=name,
                            showlegend=False,
                            hoverinfo="skip",
                        ),
                        row=row,
                        col=1,
                    )
                fig.add_trace(
                    go.Scatter(
                        x=xs,
                        y=ys,
                        name=name,
                        mode="lines+markers",
                        line=dict(color=colors[target], dash=dashes[mi % len(dashes)]),
                        legendgroup=name,
                        showlegend=row == 1,
                        customdata=[f" [{i['low']:{fmt}}, {i['high']:{fmt}}]" if i else "" for i in ivs],
                        hovertemplate=f"{name}, {x} %{{x}}: {label} %{{y:{fmt}}}%{{customdata}}<extra></extra>",
                    ),
                    row=row,
                    col=1,
                )
    fig.update_layout(
        template=TEMPLATE, legend_title_text="target", title=f"Steering toward each target language, by {x}"
    )
    if len(panels) > 2:
        fig.update_layout(height=240 * len(panels))
    for row, (key, _, label, _) in enumerate(panels, 1):
        fig.update_yaxes(
            title_text=label, row=row, col=1, **({"rangemode": "tozero"} if key == "bleu" else {"range": [0, 1.02]})
        )
    fig.update_xaxes(
        title_text="alpha (steering strength)" if x == "alpha" else "steered neurons", row=len(panels), col=1
    )
    return fig


def _error_bars(values: Sequence[float | None], intervals: Sequence[Mapping[str, Any] | None]) -> dict[str, Any] | None:
    """Asymmetric plotly error bars from ``{"low", "high"}`` intervals (``None`` when any is missing)."""
    present = [i for i in intervals if i is not None]
    if not intervals or len(present) < len(intervals):
        return None
    numbers = cast(Sequence[float], values)  # a value with an interval is a number
    return dict(
        type="data",
        symmetric=False,
        array=[i["high"] - v for v, i in zip(numbers, present)],
        arrayminus=[v - i["low"] for v, i in zip(numbers, present)],
        thickness=1.2,
        width=4,
    )


# -- the headline ---------------------------------------------------------------------------------
class HeadlineCell(NamedTuple):
    """One number of the headline: its value, its interval (a results dict, or ``None``) and its text."""

    value: float | None
    interval: Mapping[str, Any] | None
    text: str


def headline_rows(results: Mapping[str, Any]) -> list[str]:
    """The rows of :func:`lang_neurons.study.evaluate`'s results in headline order: each neuron
    method followed by its random control, then ``residual_diffmean`` (``baseline`` not included)."""
    names = list(results.get("settings", {}).get("methods") or next(iter(results["targets"].values()))["methods"])
    order: list[str] = []
    for m in names:
        if m != RESIDUAL and not m.endswith(CONTROL_SUFFIX):
            order += [m, *[m + CONTROL_SUFFIX] * (m + CONTROL_SUFFIX in names)]
    return order + [m for m in names if m not in order and m != RESIDUAL] + [RESIDUAL] * (RESIDUAL in names)


def headline_cell(entry: Mapping[str, Any], row: str, metric: str) -> HeadlineCell:
    """``metric`` (``rate``, ``quality`` or ``score``, the forcing score) of ``row`` (or
    ``baseline``) in one target's entry of the results; value ``None`` where they lack it."""
    if metric not in ("rate", "quality", "score"):
        raise LangNeuronsError(f"unknown headline metric {metric!r}: choose 'rate', 'quality' or 'score'")
    if row == "baseline":
        score = entry.get("baseline_forcing_score")
        value = {"rate": entry.get("baseline_rate"), "quality": None if score is None else 1.0, "score": score}[metric]
        interval = (
            entry.get("baseline_interval")
            if metric == "rate"
            else (entry.get("baseline_forcing_interval") or {}).get(metric)
        )
    else:
        cells = entry["methods"][row]
        value = cells.get({"rate": "rate", "quality": "quality", "score": "forcing_score"}[metric])
        interval = cells.get("rate_interval") if metric == "rate" else (cells.get("forcing_interval") or {}).get(metric)
    if interval:
        return HeadlineCell(
            value, interval, format_rate(interval) if metric == "rate" else format_interval(interval, 2)
        )
    return HeadlineCell(value, None, "n/a" if value is None else f"{value:.2f}")


def headline_figure(results: Mapping[str, Any]) -> go.Figure:
    """The headline of :func:`lang_neurons.study.evaluate`'s results: per target, one bar per row
    (:func:`headline_rows`, then the unsteered baseline) of the forcing score where every row has
    one (else of the target-language rate), its 95 % interval as an error bar, rate, quality and
    score in the hover text. A random control has its method's colour, hatched."""
    targets = results.get("targets")
    if not targets:
        raise LangNeuronsError("these results hold no steering targets: pass what lang_neurons.study.evaluate returned")
    names, rows = list(targets), [*headline_rows(results), "baseline"]
    metric = (
        "score" if all(headline_cell(targets[t], r, "score").value is not None for t in names for r in rows) else "rate"
    )
    methods = [r for r in rows if r not in ("baseline", RESIDUAL) and not r.endswith(CONTROL_SUFFIX)]
    palette, fig, with_ci = plotly.colors.qualitative.Set2, go.Figure(), False
    for name in rows:
        cells = [headline_cell(targets[t], name, metric) for t in names]
        errors = _error_bars([c.value for c in cells], [c.interval for c in cells])
        with_ci |= errors is not None
        method = name.removesuffix(CONTROL_SUFFIX)
        color = {"baseline": "#9e9e9e", RESIDUAL: "#4c78a8"}.get(name) or palette[
            (methods.index(method) if method in methods else len(methods)) % len(palette)
        ]
        hover = [
            "<br>".join(
                f"{label} {headline_cell(targets[t], name, m).text}"
                for m, label in (("rate", "rate"), ("quality", "quality"), ("score", "forcing score"))
            )
            for t in names
        ]
        fig.add_trace(
            go.Bar(
                x=names,
                y=[c.value for c in cells],
                name=name,
                error_y=errors,
                text=[f"{c.value:.2f}" for c in cells],
                marker=dict(color=color, pattern_shape="/" if name.endswith(CONTROL_SUFFIX) else ""),
                hovertext=hover,
                hovertemplate=f"%{{x}}, {name}<br>%{{hovertext}}<extra></extra>",
            )
        )
    what = "Forcing score (harmonic mean of rate and quality)" if metric == "score" else "Target-language rate"
    fig.update_layout(
        template=TEMPLATE,
        barmode="group",
        legend_title_text="row",
        title=f"{what} per target{' with 95 % intervals' if with_ci else ''}",
    )
    fig.update_xaxes(title_text="target language", type="category")
    fig.update_yaxes(title_text="forcing score" if metric == "score" else "target-language rate", range=[0, 1.05])
    return fig


def steering_rates(results: Mapping[str, Any]) -> go.Figure:
    """Target-language rate per target, unsteered and with each method, from
    :func:`lang_neurons.study.evaluate`'s results (``metrics.json``); BLEU in the hover text.
    Where the results hold rate intervals (``baseline_interval``, ``rate_interval``), each bar
    gets its 95 % Wilson interval as an error bar."""
    targets = results.get("targets")
    if not targets:
        raise LangNeuronsError("these results hold no steering targets: pass what lang_neurons.study.evaluate returned")
    names = list(targets)
    methods = list(results.get("settings", {}).get("methods") or next(iter(targets.values()))["methods"])
    fig, colors, with_ci = go.Figure(), ["#9e9e9e", *plotly.colors.qualitative.Set2], ""
    for i, (name, row) in enumerate([("unsteered", "baseline"), *((m, m) for m in methods)]):
        cells = [headline_cell(targets[t], row, "rate") for t in names]
        rates = [c.value for c in cells]
        bleu = [
            (e.get("translation_baseline", {}) if row == "baseline" else e["methods"][row].get("translation", {})).get(
                "bleu"
            )
            for e in map(targets.get, names)
        ]
        errors = _error_bars(rates, [c.interval for c in cells])
        with_ci = with_ci or (" with 95 % Wilson intervals" if errors else "")
        fig.add_trace(
            go.Bar(
                x=names,
                y=rates,
                name=name,
                marker_color=colors[i % len(colors)],
                text=[f"{r:.2f}" for r in rates],
                error_y=errors,
                customdata=["n/a" if b is None else f"{b:.1f}" for b in bleu],
                hovertext=[
                    f" [{c.interval['low']:.2f}, {c.interval['high']:.2f}] n={c.interval['n']}"
                    if errors and c.interval is not None  # errors: every cell has an interval
                    else ""
                    for c in cells
                ],
                hovertemplate=f"%{{x}}, {name}: rate %{{y:.2f}}%{{hovertext}}, BLEU %{{customdata}}<extra></extra>",
            )
        )
    fig.update_layout(
        template=TEMPLATE,
        barmode="group",
        legend_title_text="steering",
        title=f"Target-language rate of generations{with_ci} (alpha {results.get('settings', {}).get('alpha', '?')})",
    )
    fig.update_xaxes(title_text="target language", type="category")
    fig.update_yaxes(title_text="target-language rate", range=[0, 1.05])
    return fig
