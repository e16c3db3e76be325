"""An HTML report of a run: one self-contained page that opens offline.

:func:`build_figures` makes every figure of :mod:`lang_neurons.plots` that the available data
allows; :func:`write_report` writes ``<run_dir>/index.html`` (plotly.js inlined once, then the
run's settings, its summary tables and every figure) and each figure on its own as
``<run_dir>/figures/<name>.html`` (each with plotly.js inlined, so it opens offline too), plus
PNG and SVG copies when `kaleido` is installed and works. Every file is written atomically.

    figures = build_figures({"lape": lape, "ap": ap}, stats, metrics)
    write_report(Path("runs/demo"), figures, settings, {"statistics": stats.summary()})
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import plotly.offline
import torch
from tqdm.auto import tqdm

from lang_neurons import _io, plots
from lang_neurons.errors import LangNeuronsError
from lang_neurons.neurons import NeuronSet
from lang_neurons.record import ActivationStats

__all__ = ["build_figures", "representative_neurons", "write_report"]

INDEX = "index.html"
FIGURES = "figures"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_FIGURE_HEIGHT = "520px"

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1200px; padding: 0 1rem; color: #222; }
h1 { margin-bottom: 0.2rem; } .written { color: #777; margin-top: 0; }
nav a { margin-right: 1rem; } section { margin: 2rem 0; }
table.settings td { padding: 0.1rem 1rem 0.1rem 0; vertical-align: top; font-family: monospace; }
pre { background: #f6f6f6; padding: 0.8rem; overflow-x: auto; }
.note { color: #a05a00; }
"""


# -- figures -----------------------------------------------------------------------------------
def representative_neurons(neurons: NeuronSet, stats: ActivationStats) -> list[tuple[int, int]]:
    """One neuron per language: among the language's (non bottom-k) neurons, the one whose
    activation probability on it most exceeds its highest probability on another language."""
    prob = stats.probability()
    out: list[tuple[int, int]] = []
    for i, lang in enumerate(neurons.langs):
        own = neurons.mask[i] & ~neurons.bottom[i]
        if not own.any():
            continue
        others = torch.cat([prob[:i], prob[i + 1 :]]).amax(0) if len(neurons.langs) > 1 else torch.zeros_like(prob[i])
        margin = (prob[i] - others).masked_fill(~own, -torch.inf)
        pair = divmod(int(margin.flatten().argmax()), neurons.width)
        if pair not in out:
            out.append(pair)
    return out


def build_figures(
    neurons_by_method: Mapping[str, NeuronSet],
    stats: ActivationStats | None = None,
    metrics: Mapping[str, Any] | None = None,
) -> dict[str, go.Figure]:
    """Every figure the data allows, by name (the names are used as file names).

    Args:
        neurons_by_method: neuron sets by name, e.g. ``{"lape": lape, "ap": ap}``; per set the
            layer distribution, overlap counts and Jaccard; with ``stats`` also the entropy
            scatter; the first two sets are compared with each other.
        stats: the statistics the sets were selected from: neuron profiles (one
            representative neuron per language of the first set) and entropy scatters.
        metrics: :func:`lang_neurons.study.evaluate`'s results (``metrics.json``): steering
            rates, the loss matrix, and a sweep when it holds ``sweep`` points.
    """
    figures: dict[str, go.Figure] = {}
    sets = dict(neurons_by_method)
    for name, neurons in sets.items():
        figures[f"layers_{name}"] = plots.layer_distribution(neurons)
        figures[f"overlap_{name}"] = plots.overlap_heatmap(neurons, "count")
        figures[f"jaccard_{name}"] = plots.overlap_heatmap(neurons, "jaccard")
    if len(sets) >= 2:
        (na, a), (nb, b) = list(sets.items())[:2]
        if list(a.langs) == list(b.langs) and a.mask.shape == b.mask.shape and a.site == b.site:
            figures[f"{na}_vs_{nb}"] = plots.method_comparison(a, b)
    if stats is not None:
        for name, neurons in sets.items():
            figures[f"entropy_{name}"] = plots.entropy_scatter(stats, neurons)
        if sets:
            chosen = representative_neurons(next(iter(sets.values())), stats)
            if chosen:
                figures["profile_probability"] = plots.neuron_profile(stats, chosen, "probability")
                if len(stats.pooled_lang):
                    figures["profile_pooled"] = plots.neuron_profile(stats, chosen, "pooled")
    if metrics:
        langs = list(next(iter(sets.values())).langs) if sets else None
        if metrics.get("targets"):
            figures["steering_rates"] = plots.steering_rates(metrics)
        if metrics.get("sweep"):
            figures["steering_sweep"] = plots.steering_sweep(metrics["sweep"], "alpha", langs)
        if metrics.get("loss_matrix"):
            figures["loss_matrix"] = plots.loss_matrix_heatmap(metrics["loss_matrix"])
    return figures


# -- files -------------------------------------------------------------------------------------
def _export_images(figures: Mapping[str, go.Figure], folder: Path) -> str | None:
    """PNG and SVG copies of every figure when kaleido works; otherwise a note saying why not."""
    try:
        import kaleido  # noqa: F401
    except ImportError:
        return "PNG/SVG copies were not written: kaleido is not installed (pip install kaleido to get them)."
    try:
        for name, fig in figures.items():
            for fmt in ("png", "svg"):
                data = fig.to_image(format=fmt)
                _io._atomic_write(folder / f"{name}.{fmt}", lambda tmp, data=data: Path(tmp).write_bytes(data))
    except Exception as e:  # kaleido needs a browser and may fail in many ways; images are optional
        return f"PNG/SVG copies were not written: kaleido failed ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})."
    return None


def _settings_html(settings: Mapping[str, Any]) -> str:
    rows = []
    for key, value in settings.items():
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
        rows.append(f"<tr><td>{html.escape(str(key))}</td><td>{html.escape(text)}</td></tr>")
    return '<table class="settings">' + "".join(rows) + "</table>"


def write_report(
    run_dir: Path,
    figures: Mapping[str, go.Figure],
    settings: Mapping[str, Any],
    tables: Mapping[str, str],
    *,
    title: str = "lang_neurons report",
    images: bool = True,
    progress: bool = False,
) -> Path:
    """Write ``run_dir/index.html`` and ``run_dir/figures/<name>.html``; returns the page's path.

    Args:
        run_dir: the run's folder (created if missing).
        figures: figures by name (letters, digits, ``_`` and ``-``), in page order.
        settings: what the run was made with, shown as a key/value table.
        tables: summary tables by heading, pre-formatted text.
        title: the page's title.
        images: also write ``figures/<name>.png`` and ``.svg`` if kaleido works (never required).
        progress: show a progress bar over the figures.
    """
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise LangNeuronsError(f"{run_dir} is a file: give a folder for the report")
    bad = [n for n in figures if not _NAME.match(n)]
    if bad:
        raise LangNeuronsError(f"figure name {bad[0]!r} cannot be a file name: use letters, digits, '_' and '-'")
    folder = run_dir / FIGURES
    sections = []
    plotly_js = plotly.offline.get_plotlyjs()
    if figures:  # one shared copy beside the separate figure pages, which load it offline
        _io.atomic_write_text(folder / "plotly.min.js", plotly_js)
    for name, fig in tqdm(figures.items(), desc="report", unit="figure", disable=not progress):
        _io.atomic_write_text(folder / f"{name}.html", fig.to_html(full_html=True, include_plotlyjs="directory"))
        div = fig.to_html(full_html=False, include_plotlyjs=False, div_id=f"figure-{name}", default_height=_FIGURE_HEIGHT)
        heading = html.escape(fig.layout.title.text or name)
        sections.append(f'<section id="{name}"><h2>{heading}</h2>\n{div}\n'
                        f'<p><a href="{FIGURES}/{name}.html">{FIGURES}/{name}.html</a></p></section>')
    note = _export_images(figures, folder) if images and figures else None
    written = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    nav = " ".join(f'<a href="#{name}">{html.escape(name)}</a>' for name in figures)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_CSS}</style>",
        f'<script type="text/javascript">{plotly_js}</script>',
        "</head><body>",
        f'<h1>{html.escape(title)}</h1><p class="written">written {written}</p>',
        f"<nav>{nav}</nav>",
        f"<section><h2>Settings</h2>{_settings_html(settings)}</section>",
        *(f"<section><h2>{html.escape(k)}</h2><pre>{html.escape(v)}</pre></section>" for k, v in tables.items()),
        *sections,
        f'<p class="note">{html.escape(note)}</p>' if note else "",
        "</body></html>",
    ]
    path = run_dir / INDEX
    _io.atomic_write_text(path, "\n".join(parts) + "\n")
    return path
