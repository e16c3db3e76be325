"""Figures of a sweep (:func:`lang_neurons.sweep.sweep`): the dev forcing score of every cell as a
heatmap (selection parameter x alpha, one panel per method), and rate, quality and score against
alpha with their intervals, one line per top rate, k or residual layer."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from lang_neurons.errors import LangNeuronsError

from ._style import TEMPLATE
from .results import steering_sweep

__all__ = ["sweep_heatmap", "sweep_lines", "sweep_parameter"]


def _cells(result: Any) -> list[Mapping[str, Any]]:
    """The cells of a :class:`~lang_neurons.sweep.SweepResult` or its ``to_dict()`` (``sweep.json``)."""
    data = result.to_dict() if hasattr(result, "to_dict") else result
    cells = list(data.get("cells") or [])
    if not cells:
        raise LangNeuronsError("a sweep figure needs the sweep's cells (a SweepResult or its sweep.json)")
    return cells


def sweep_parameter(cell: Mapping[str, Any]) -> str:
    """The name of a cell's selection parameter: ``"top_rate"``, ``"k"`` or (residual DiffMean) ``"layer"``."""
    return next(name for name in ("top_rate", "k", "layer") if name in cell)


def sweep_heatmap(result: Any) -> go.Figure:
    """The dev forcing score of every cell: rows the selection parameter (top rate, k or
    residual layer), columns alpha, one panel per method, on one colour scale from 0 to 1; the
    chosen cell of each method is marked with a star."""
    cells = _cells(result)
    chosen = (result.to_dict() if hasattr(result, "to_dict") else result).get("chosen", {})
    methods = list(dict.fromkeys(c["method"] for c in cells))
    fig = make_subplots(rows=1, cols=len(methods), subplot_titles=methods, horizontal_spacing=0.08)
    for col, method in enumerate(methods, 1):
        mine = [c for c in cells if c["method"] == method]
        name = sweep_parameter(mine[0])
        ys = list(dict.fromkeys(c[name] for c in mine))
        xs = list(dict.fromkeys(c["alpha"] for c in mine))
        by = {(c[name], c["alpha"]): c for c in mine}
        best = chosen.get(method)
        z = [[by[(y, x)]["score"] if (y, x) in by else None for x in xs] for y in ys]
        text = [
            [
                f"{by[(y, x)]['score']:.2f}" + (" ★" if best and (best[name], best["alpha"]) == (y, x) else "")
                if (y, x) in by
                else ""
                for x in xs
            ]
            for y in ys
        ]
        fig.add_trace(
            go.Heatmap(
                z=z,
                x=[f"{x:g}" for x in xs],
                y=[f"{name} {y:g}" for y in ys],
                text=text,
                texttemplate="%{text}",
                coloraxis="coloraxis",
                name=method,
                hovertemplate=f"{method}, %{{y}}, alpha %{{x}}: dev forcing score %{{z:.3f}}<extra></extra>",
            ),
            row=1,
            col=col,
        )
        fig.update_xaxes(title_text="alpha", type="category", row=1, col=col)
        fig.update_yaxes(type="category", row=1, col=col)
    fig.update_layout(
        template=TEMPLATE,
        title="Dev forcing score of every sweep cell (★: chosen)",
        coloraxis=dict(colorscale="Viridis", cmin=0, cmax=1, colorbar_title_text="dev score"),
    )
    return fig


def sweep_lines(result: Any) -> go.Figure:
    """Dev rate, quality and forcing score against alpha, with their interval bands, one line
    per method and top rate (k, or residual layer): :func:`~lang_neurons.plots.steering_sweep`
    with the cells as its points."""
    points = []
    for c in _cells(result):
        name = sweep_parameter(c)
        point = {
            "target": f"{name} {c[name]:g}",
            "method": c["method"],
            "alpha": c["alpha"],
            "rate": c["rate"],
            "quality": c["quality"],
            "forcing_score": c["score"],
            "n_neurons": c.get("neurons"),
        }
        if c.get("rate_interval"):
            point["rate_low"], point["rate_high"] = c["rate_interval"]["low"], c["rate_interval"]["high"]
        for key, interval in (c.get("forcing_interval") or {}).items():
            if key in ("quality", "score"):
                point[f"{key}_low"], point[f"{key}_high"] = interval["low"], interval["high"]
        points.append(point)
    fig = steering_sweep(points, "alpha")
    fig.update_layout(title="Dev rate, quality and forcing score by alpha", legend_title_text="set, method")
    return fig
