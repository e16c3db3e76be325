"""An HTML report of a run: one self-contained page that opens offline.

:func:`build_figures` makes every figure of :mod:`lang_neurons.plots` that the available data allows,
the headline first; :func:`write_report` writes ``<run_dir>/index.html`` (plotly.js inlined once, then
the run's summary tables, its settings and every figure) and each figure on its own as
``<run_dir>/figures/<name>.html`` (plotly.js inlined: it opens offline too), plus PNG and SVG copies
when `kaleido` works. Every file is written atomically. :func:`headline_table` opens a run's page.

    figures = build_figures({"lape": lape, "ap": ap}, stats, metrics)
    write_report(Path("runs/demo"), figures, settings, {"statistics": stats.summary()})
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import plotly.offline
import torch
from tqdm.auto import tqdm

from lang_neurons import _io, plots
from lang_neurons.errors import LangNeuronsError
from lang_neurons.neurons import NeuronSet
from lang_neurons.recording import ActivationStats
from lang_neurons.study import RESIDUAL, format_interval, format_rate

__all__ = [
    "Table",
    "build_figures",
    "headline_table",
    "loss_matrix_table",
    "representative_neurons",
    "steering_table",
    "write_report",
]

INDEX = "index.html"
FIGURES = "figures"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_FIGURE_HEIGHT = "520px"

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1200px; padding: 0 1rem; color: #222; }
h1 { margin-bottom: 0.2rem; } .written { color: #777; margin-top: 0; }
nav a { margin-right: 1rem; } section { margin: 2rem 0; }
table.settings td { padding: 0.1rem 1rem 0.1rem 0; vertical-align: top; font-family: monospace; }
table.settings table.settings { margin: 0; }
table.data { border-collapse: collapse; margin: 0.5rem 0; }
table.data th, table.data td { padding: 0.25rem 0.7rem; border-bottom: 1px solid #ddd; white-space: nowrap; }
table.data thead th { border-bottom: 2px solid #999; text-align: left; }
table.data td { text-align: right; font-variant-numeric: tabular-nums; }
table.data tbody th { text-align: left; font-weight: normal; }
p.table-note { color: #555; font-size: 0.9rem; margin-top: 0.2rem; }
pre { background: #f6f6f6; padding: 0.8rem; overflow-x: auto; }
.note { color: #a05a00; }
"""


# -- figures -----------------------------------------------------------------------------------
def representative_neurons(neurons: NeuronSet, stats: ActivationStats) -> list[tuple[int, int]]:
    """One neuron per language: among the language's (non bottom-k) neurons, the one whose
    activation probability on it most exceeds its highest probability on another language."""
    prob = stats.probability()
    out: list[tuple[int, int]] = []
    assert neurons.bottom is not None  # NeuronSet.__post_init__ fills it
    for i in range(len(neurons.langs)):
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
        neurons_by_method: sets by name (``{"lape": lape, "ap": ap}``); per set the layer distribution,
            overlap counts, Jaccard, the module kinds (site ``linear``), and with ``stats`` the entropy
            scatter; the first two sets are compared with each other.
        stats: the statistics the sets were selected from: neuron profiles (one
            representative neuron per language of the first set) and entropy scatters.
        metrics: :func:`lang_neurons.study.evaluate`'s results (``metrics.json``): the headline
            (first), steering rates, the loss matrix, and a sweep when it holds ``sweep`` points.
    """
    figures: dict[str, go.Figure] = (
        {"headline": plots.headline_figure(metrics)} if metrics and metrics.get("targets") else {}
    )
    sets = dict(neurons_by_method)
    for name, neurons in sets.items():
        figures[f"layers_{name}"] = plots.layer_distribution(neurons)
        figures[f"overlap_{name}"] = plots.overlap_heatmap(neurons, "count")
        figures[f"jaccard_{name}"] = plots.overlap_heatmap(neurons, "jaccard")
        if len(neurons.unit_histogram()) > 1:  # e.g. site linear: the module kinds that hold them
            figures[f"modules_{name}"] = plots.module_distribution(neurons)
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


# -- tables ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Table:
    """A table of the report, written as an HTML ``<table>``.

    Attributes:
        columns: the column headings.
        rows: per row, one text per column; the first ``row_headers`` cells are row headings.
        note: a line under the table (what the intervals are, a summary).
        row_headers: how many leading cells of a row label it (left-aligned ``<th>``).
    """

    columns: list[str]
    rows: list[list[str]]
    note: str = ""
    row_headers: int = 1

    def to_html(self) -> str:
        """The ``<table>`` (and its note), every text escaped."""
        head = "".join(f'<th scope="col">{html.escape(c)}</th>' for c in self.columns)
        body = []
        for row in self.rows:
            cells = [
                f'<th scope="row">{html.escape(c)}</th>' if i < self.row_headers else f"<td>{html.escape(c)}</td>"
                for i, c in enumerate(row)
            ]
            body.append("<tr>" + "".join(cells) + "</tr>")
        note = f'<p class="table-note">{html.escape(self.note)}</p>' if self.note else ""
        return f'<table class="data"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>{note}'


def _rate_cell(value: float, interval: Mapping[str, Any] | None) -> str:
    return format_rate(interval) if interval else f"{value:.2f}"


def _score_cell(value: float | None, interval: Mapping[str, Any] | None, signed: bool = False, digits: int = 1) -> str:
    if interval:
        return format_interval(interval, digits, signed)
    return "n/a" if value is None else f"{value:{'+' if signed else ''}.{digits}f}"


def _split_cell(results: Mapping[str, Any], entry: Mapping[str, Any], name: str) -> str:
    """Where a headline row was measured: its split; for the residual baseline also its chosen
    layer and alpha (the baseline shares the split of the rows it is compared with)."""
    if name == "baseline":
        return next((r["split"] for r in entry["methods"].values() if r.get("split")), "n/a")
    rows = entry["methods"]
    split = rows[name].get("split")
    chosen = results.get("residual") or {}
    layer, alpha = rows[name].get("layer", chosen.get("layer")), rows[name].get("alpha", chosen.get("alpha"))
    if name == RESIDUAL and layer is not None:
        picked = f"layer {layer}{'' if alpha is None else f', alpha {alpha:g}'} chosen on {chosen.get('split', 'dev')}"
        return f"{split}; {picked}" if split else picked
    return split or "n/a"


def _headline_note(results: Mapping[str, Any], forcing: bool) -> str:
    """What the headline's samples, numbers and intervals are."""
    settings, prompts = results["settings"], results.get("prompts") or {}
    kind = prompts.get("kind", settings.get("prompts"))
    note = f"{settings['method'].upper()} neurons. " if settings.get("method") else ""
    if kind == "source":
        counts = (
            f" ({prompts['test']} test prompts; {prompts['dev']} dev)" if "test" in prompts and "dev" in prompts else ""
        )
        note += f"Samples continue held-out {prompts.get('source', settings.get('source', '?'))} texts{counts}. "
    elif kind == "bos":
        note += "Samples are unconditional (from BOS alone). "
    note += "Rate: share of the samples fastText labels as the target. "
    if forcing:
        note += (
            "Quality: exp(−max(0, L − L0)), L the mean token loss of the row's continuations under the unsteered model, "
            "L0 that of the unsteered continuations of the same prompts (1: as fluent); forcing score: harmonic mean "
            "of rate and quality. "
        )
    intervals = settings.get("intervals")
    if intervals:
        note += (
            f"{intervals['level'] * 100:g} % intervals: Wilson for rates"
            + (
                f", paired bootstrap over samples ({intervals['resamples']} resamples) for quality and score"
                if forcing
                else ""
            )
            + "; mean rate: Wilson on the successes pooled over targets"
            + ("; mean score: bootstrap of the mean over targets." if forcing else ".")
        )
    else:
        note += "No intervals (evaluated with intervals off)."
    return note


def headline_table(results: Mapping[str, Any]) -> Table:
    """The headline of :func:`lang_neurons.study.evaluate`'s results: per target the neuron
    method(s), each followed by its random control, ``residual_diffmean`` and the unsteered
    baseline, with rate, quality and forcing score (95 % intervals where the results hold them)
    and the split each was measured on; then the means over targets. Results without forcing
    scores (older ``metrics.json``) get the rate and split columns only."""
    targets = results["targets"]
    names = [*plots.headline_rows(results), "baseline"]
    forcing = any(plots.headline_cell(e, n, "score").value is not None for e in targets.values() for n in names)
    metrics = ["rate", "quality", "score"] if forcing else ["rate"]
    intervals = results["settings"].get("intervals")
    ci = f" [{intervals['level'] * 100:g} % interval]" if intervals else ""
    columns = [
        "target",
        "row",
        f"rate{ci}{' n' if ci else ''}",
        *([f"quality{ci}", f"forcing score{ci}"] if forcing else []),
        "split",
    ]
    rows = [
        [target, name, *(plots.headline_cell(entry, name, m).text for m in metrics), _split_cell(results, entry, name)]
        for target, entry in targets.items()
        for name in names
    ]
    summary, pooled = results.get("summary", {}), results.get("summary_interval", {})
    forcing_mean, forcing_pooled = results.get("summary_forcing", {}), results.get("summary_forcing_interval", {})
    for name in (n for n in names if n in summary):
        cells = [_rate_cell(summary[name], pooled.get(name))]
        if forcing:
            cells += ["", _score_cell(forcing_mean.get(name), forcing_pooled.get(name), digits=2)]
        rows.append(["mean", name, *cells, ""])
    return Table(columns, rows, _headline_note(results, forcing), row_headers=2)


def steering_table(results: Mapping[str, Any]) -> Table:
    """:func:`lang_neurons.study.evaluate`'s results as a table: per target and method the rates,
    BLEU and chrF (with their 95 % intervals where the results hold them) and the neurons touched;
    a last row per method gives the mean rate over targets."""
    methods = list(results["settings"]["methods"])
    targets = results["targets"]
    translated = any("translation" in e["methods"][m] for e in targets.values() for m in methods)
    columns = ["target", "method", "base rate", "rate"]
    if translated:
        columns += ["BLEU base", "BLEU", "BLEU steered − base", "chrF base", "chrF", "chrF steered − base"]
    columns += ["neurons", "share"]
    rows = []
    for target, entry in targets.items():
        for m in methods:
            row = entry["methods"][m]
            cells = [
                target,
                m,
                _rate_cell(entry["baseline_rate"], entry.get("baseline_interval")),
                _rate_cell(row["rate"], row.get("rate_interval")),
            ]
            if translated:
                tb, tr, ti = (
                    entry.get("translation_baseline", {}),
                    row.get("translation", {}),
                    row.get("translation_interval"),
                )
                for metric in ("bleu", "chrf"):
                    base, steered = tb.get(metric), tr.get(metric)
                    diff = None if base is None or steered is None else steered - base
                    cells += [
                        _score_cell(base, ti and ti[metric]["baseline"]),
                        _score_cell(steered, ti and ti[metric]["steered"]),
                        _score_cell(diff, ti and ti[metric]["difference"], signed=True),
                    ]
            rows.append(cells + [str(row["neurons"]), f"{row['share']:.2%}"])
    pooled = results.get("summary_interval", {})
    for m in [*methods, "baseline"]:
        if m in results.get("summary", {}):
            cell = _rate_cell(results["summary"][m], pooled.get(m))
            rows.append(
                ["mean rate", m, cell if m == "baseline" else "", "" if m == "baseline" else cell]
                + [""] * (len(columns) - 4)
            )
    intervals = results["settings"].get("intervals")
    note = (
        f"{intervals['level']:.0%} intervals: Wilson score for rates (mean rate: successes pooled over targets); "
        f"paired bootstrap over items ({intervals['resamples']} resamples) for BLEU and chrF."
        if intervals
        else "No intervals (evaluated with intervals off)."
    )
    return Table(columns, rows, note, row_headers=2)


def loss_matrix_table(loss_matrix: Mapping[str, Any]) -> Table:
    """The loss-change matrix (ablated − base; rows: ablated language, columns: evaluated
    language) of :func:`~lang_neurons.study.evaluate`'s results, with each cell's bootstrap
    interval over texts where present, and the base loss as the last row."""
    langs = list(loss_matrix["langs"])
    ci = loss_matrix.get("change_interval")
    rows = []
    for a, lang in enumerate(langs):
        cells = []
        for e in range(len(langs)):
            value = loss_matrix["change"][a][e]
            cells.append(
                format_interval({"estimate": value, "low": ci["low"][a][e], "high": ci["high"][a][e]}, 3, True)
                if ci
                else f"{value:+.3f}"
            )
        rows.append([f"{lang} ablated", *cells])
    rows.append(["base loss", *(f"{v:.3f}" for v in loss_matrix["base"])])
    note = "Mean token loss change when each row's language neurons are set to 0."
    if ci:
        note += (
            f" {ci['level']:.0%} paired bootstrap over texts ({ci['resamples']} resamples; texts per language: "
            f"{', '.join(f'{lang} {n}' for lang, n in zip(langs, ci['texts']))})."
        )
    if "diagonal_dominance" in loss_matrix:
        dominant = [lang for lang, ok in loss_matrix["diagonal_dominance"].items() if ok]
        note += f" Diagonal dominant: {len(dominant)}/{len(langs)} ({', '.join(dominant) or 'none'})."
    return Table(["ablated \\ evaluated", *langs], rows, note)


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
                _io.atomic_write(folder / f"{name}.{fmt}", lambda tmp, data=data: Path(tmp).write_bytes(data))
    except Exception as e:  # kaleido needs a browser and may fail in many ways; images are optional
        return f"PNG/SVG copies were not written: kaleido failed ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})."
    return None


def _setting_html(value: Any) -> str:
    """One setting's value: nested settings as a nested table, lists of plain values joined."""
    if isinstance(value, Mapping):
        return _settings_html(value) if value else "(none)"
    if (
        isinstance(value, Sequence)
        and not isinstance(value, str)
        and all(isinstance(v, (str, int, float)) for v in value)
    ):
        return html.escape(", ".join(str(v) for v in value)) if value else "(none)"
    return html.escape(value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str))


def _settings_html(settings: Mapping[str, Any]) -> str:
    rows = [
        f"<tr><td>{html.escape(str(key))}</td><td>{_setting_html(value)}</td></tr>" for key, value in settings.items()
    ]
    return '<table class="settings">' + "".join(rows) + "</table>"


def _table_html(table: str | Table) -> str:
    return table.to_html() if isinstance(table, Table) else f"<pre>{html.escape(table)}</pre>"


def write_report(
    run_dir: Path,
    figures: Mapping[str, go.Figure],
    settings: Mapping[str, Any],
    tables: Mapping[str, str | Table],
    *,
    title: str = "lang_neurons report",
    images: bool = True,
    progress: bool = False,
) -> Path:
    """Write ``run_dir/index.html`` and ``run_dir/figures/<name>.html``; returns the page's path.

    Args:
        run_dir: the run's folder (created if missing).
        figures: figures by name (letters, digits, ``_`` and ``-``), in page order.
        settings: what the run was made with, shown as a key/value table (nested mappings as
            nested tables, lists of plain values joined with commas).
        tables: summary tables by heading, in page order (before the settings): a :class:`Table`
            (an HTML table) or pre-formatted text.
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
        div = fig.to_html(
            full_html=False, include_plotlyjs=False, div_id=f"figure-{name}", default_height=_FIGURE_HEIGHT
        )
        heading = html.escape(fig.layout.title.text or name)
        sections.append(
            f'<section id="{name}"><h2>{heading}</h2>\n{div}\n'
            f'<p><a href="{FIGURES}/{name}.html">{FIGURES}/{name}.html</a></p></section>'
        )
    note = _export_images(figures, folder) if images and figures else None
    written = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    nav = " ".join(f'<a href="#{name}">{html.escape(name)}</a>' for name in figures)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_CSS}</style>",
        f'<script type="text/javascript">{plotly_js}</script>',
        "</head><body>",
        f'<h1>{html.escape(title)}</h1><p class="written">written {written}</p>',
        f"<nav>{nav}</nav>",
        *(f"<section><h2>{html.escape(k)}</h2>{_table_html(v)}</section>" for k, v in tables.items()),
        f"<section><h2>Settings</h2>{_settings_html(settings)}</section>",
        *sections,
        f'<p class="note">{html.escape(note)}</p>' if note else "",
        "</body></html>",
    ]
    path = run_dir / INDEX
    _io.atomic_write_text(path, "\n".join(parts) + "\n")
    return path
