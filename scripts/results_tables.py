"""Print the markdown tables of docs/results.md from a run's metrics.json.

    .venv/bin/python scripts/results_tables.py runs/default/metrics.json

Per target: each row's rate (Wilson 95 % interval) and forcing score (bootstrap 95 %
interval), then per target whether the neuron method beats its random control and residual
DiffMean (intervals not overlapping), the residual layer/alpha chosen on the dev split, and the
loss matrix with its intervals.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def _ci(c: dict[str, Any], key: str = "estimate", digits: int = 2) -> str:
    return f"{c[key]:.{digits}f} [{c['low']:.{digits}f}, {c['high']:.{digits}f}]"


def _verdict(a: dict[str, Any], b: dict[str, Any]) -> str:
    if a["low"] > b["high"]:
        return "higher"
    if a["high"] < b["low"]:
        return "lower"
    return "overlap"


def tables(results: dict[str, Any]) -> str:
    rows = results["settings"]["methods"]
    method = results["settings"]["neuron_methods"][0]
    out = []
    head = "| target | baseline | " + " | ".join(rows) + " |"
    sep = "|---" * (len(rows) + 2) + "|"
    n = next(iter(results["targets"].values()))["baseline_interval"]["n"]
    out += [f"### Target-language rate (n = {n} per cell)", "", head, sep]
    for t, e in results["targets"].items():
        out.append(
            f"| {t} | {_ci(e['baseline_interval'], 'rate')} | "
            + " | ".join(_ci(e["methods"][m]["rate_interval"], "rate") for m in rows)
            + " |"
        )
    si = results["summary_interval"]
    out.append(
        "| pooled | " + _ci(si["baseline"], "rate") + " | " + " | ".join(_ci(si[m], "rate") for m in rows) + " |"
    )
    out += [
        "",
        "### Quality and forcing score (harmonic mean of rate and quality)",
        "",
        "| target | " + " | ".join(f"{m} quality | {m} score" for m in rows) + " |",
        "|---" * (2 * len(rows) + 1) + "|",
    ]
    for t, e in results["targets"].items():
        cells = [
            f"{_ci(e['methods'][m]['forcing_interval']['quality'])} | {_ci(e['methods'][m]['forcing_interval']['score'])}"
            for m in rows
        ]
        out.append(f"| {t} | " + " | ".join(cells) + " |")
    fi = results["summary_forcing_interval"]
    out.append("| pooled (score) | " + " | ".join(f"- | {_ci(fi[m])}" for m in rows) + " |")
    out += [
        "",
        f"### {method} against its random control and residual DiffMean (intervals not overlapping)",
        "",
        "| target | rate vs random | rate vs DiffMean | score vs random | score vs DiffMean |",
        "|---|---|---|---|---|",
    ]
    for t, e in results["targets"].items():
        r = {m: e["methods"][m] for m in rows}
        ctrl, res = f"{method}:random", "residual_diffmean"
        cells = []
        for kind in ("rate", "score"):
            get = (
                (lambda m, r=r: r[m]["rate_interval"])
                if kind == "rate"
                else (lambda m, r=r: r[m]["forcing_interval"]["score"])
            )
            cells += [_verdict(get(method), get(other)) if other in r else "-" for other in (ctrl, res)]
        out.append(f"| {t} | " + " | ".join(cells) + " |")
    if "residual" in results:
        ch = results["residual"]
        out += [
            "",
            f"Residual DiffMean chosen on the dev split by {ch.get('criterion', 'rate')}: layer {ch['layer']}, alpha {ch['alpha']}.",
            "",
            "| layer | alpha | dev rate | dev quality | dev score | n |",
            "|---|---|---|---|---|---|",
        ]
        for g in ch["grid"]:
            out.append(
                f"| {g['layer']} | {g['alpha']} | {g['rate']:.2f} | {g.get('quality', float('nan')):.2f} | "
                f"{g.get('score', float('nan')):.2f} | {g['n']} |"
            )
    if "loss_matrix" in results and "change_interval" in results["loss_matrix"]:
        lm, ci = results["loss_matrix"], results["loss_matrix"]["change_interval"]
        out += [
            "",
            "### Loss change when a language's neurons are set to 0",
            "",
            "| ablated \\ eval | " + " | ".join(lm["langs"]) + " |",
            "|---" * (len(lm["langs"]) + 1) + "|",
        ]
        for a, lang in enumerate(lm["langs"]):
            cells = [
                f"{lm['change'][a][j]:+.3f} [{ci['low'][a][j]:+.3f}, {ci['high'][a][j]:+.3f}]"
                for j in range(len(lm["langs"]))
            ]
            cells[a] = f"**{cells[a]}**"
            out.append(f"| {lang} | " + " | ".join(cells) + " |")
    return "\n".join(out)


if __name__ == "__main__":
    print(tables(json.loads(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/default/metrics.json").read_text())))
