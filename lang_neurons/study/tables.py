"""Readable tables of :func:`~lang_neurons.study.evaluate`'s results (``metrics.txt``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def format_table(results: Mapping[str, Any]) -> str:
    """A readable table of :func:`evaluate`'s results; with intervals, every number shows its
    95 % interval (``0.71 [0.53, 0.85] n=30``) and the loss-change cells follow."""
    if "summary_interval" in results:
        return _format_with_intervals(results)
    methods = results["settings"]["methods"]
    lines = [
        f"{'target':<8}{'method':<19}{'base rate':>10}{'rate':>7}{'quality':>9}{'score':>7}{'BLEU base':>11}{'BLEU':>7}"
        f"{'chrF base':>11}{'chrF':>7}{'neurons':>9}{'share':>8}"
    ]
    for target, entry in results["targets"].items():
        tb = entry.get("translation_baseline", {})
        for m in methods:
            row = entry["methods"][m]
            tr = row.get("translation", {})
            lines.append(
                f"{target:<8}{m:<19}{entry['baseline_rate']:>10.2f}{row['rate']:>7.2f}"
                f"{row.get('quality', float('nan')):>9.2f}{row.get('forcing_score', float('nan')):>7.2f}"
                f"{tb.get('bleu', float('nan')):>11.1f}{tr.get('bleu', float('nan')):>7.1f}"
                f"{tb.get('chrf', float('nan')):>11.1f}{tr.get('chrf', float('nan')):>7.1f}{row['neurons']:>9}{row['share']:>8.2%}"
            )
    summary = results["summary"]
    lines.append("mean rate: " + ", ".join(f"{k} {v:.2f}" for k, v in summary.items()))
    if "summary_forcing" in results:
        lines.append("mean forcing score: " + ", ".join(f"{k} {v:.2f}" for k, v in results["summary_forcing"].items()))
    if "loss_matrix" in results:
        lm = results["loss_matrix"]
        lines.append(
            f"loss matrix: diagonal dominant for {sum(lm['diagonal_dominance'].values())}/{len(lm['diagonal_dominance'])} languages"
        )
    return "\n".join(lines)


def format_rate(interval: Mapping[str, Any]) -> str:
    """A rate interval of :func:`evaluate`'s results as ``0.71 [0.53, 0.85] n=30``."""
    return f"{interval['rate']:.2f} [{interval['low']:.2f}, {interval['high']:.2f}] n={interval['n']}"


def format_interval(interval: Mapping[str, Any], digits: int = 1, signed: bool = False) -> str:
    """A bootstrap interval of :func:`evaluate`'s results as ``12.3 [8.1, 16.0]`` (``+`` signs with ``signed``)."""
    f = f"{'+' if signed else ''}.{digits}f"
    return f"{interval['estimate']:{f}} [{interval['low']:{f}}, {interval['high']:{f}}]"


def _format_with_intervals(results: Mapping[str, Any]) -> str:
    methods = results["settings"]["methods"]
    level = results["settings"]["intervals"]["level"]
    lines = [
        f"{level:.0%} intervals: Wilson for rates, paired bootstrap over items for BLEU/chrF "
        f"({results['settings']['intervals']['resamples']} resamples)",
        f"{'target':<8}{'method':<19}{'base rate':<24}{'rate':<24}{'quality':<20}{'forcing score':<20}{'neurons':>9}{'share':>8}",
    ]
    for target, entry in results["targets"].items():
        for m in methods:
            row = entry["methods"][m]
            fi = row.get("forcing_interval")
            forcing = [format_interval(fi[k], 2) if fi else "" for k in ("quality", "score")]
            lines.append(
                f"{target:<8}{m:<19}{format_rate(entry['baseline_interval']):<24}{format_rate(row['rate_interval']):<24}"
                f"{forcing[0]:<20}{forcing[1]:<20}{row['neurons']:>9}{row['share']:>8.2%}"
            )
    translated = [
        (t, m) for t, e in results["targets"].items() for m in methods if "translation_interval" in e["methods"][m]
    ]
    if translated:
        lines.append(
            f"{'target':<8}{'method':<19}"
            + "".join(
                f"{h:<22}" for h in ("BLEU base", "BLEU", "BLEU steered-base", "chrF base", "chrF", "chrF steered-base")
            )
        )
        for t, m in translated:
            ti = results["targets"][t]["methods"][m]["translation_interval"]
            cells = [
                format_interval(ti[k][part], signed=part == "difference")
                for k in ("bleu", "chrf")
                for part in ("baseline", "steered", "difference")
            ]
            lines.append(f"{t:<8}{m:<19}" + "".join(f"{c:<22}" for c in cells) + f"n={ti['n']}")
    lines.append("mean rate: " + ", ".join(f"{k} {format_rate(v)}" for k, v in results["summary_interval"].items()))
    if "summary_forcing_interval" in results:
        lines.append(
            "mean forcing score: "
            + ", ".join(f"{k} {format_interval(v, 2)}" for k, v in results["summary_forcing_interval"].items())
        )
    if "loss_matrix" in results:
        lm = results["loss_matrix"]
        if "diagonal_dominance" in lm:
            lines.append(
                f"loss matrix: diagonal dominant for {sum(lm['diagonal_dominance'].values())}/{len(lm['diagonal_dominance'])} languages"
            )
        if "change_interval" in lm:
            ci = lm["change_interval"]
            lines.append(
                f"loss change (ablated - base), {level:.0%} bootstrap over texts; rows: ablated, columns: evaluated"
            )
            lines.append(f"{'':<8}" + "".join(f"{lang:<26}" for lang in lm["langs"]))
            for a, lang in enumerate(lm["langs"]):
                cells = [
                    format_interval(
                        {"estimate": lm["change"][a][e], "low": ci["low"][a][e], "high": ci["high"][a][e]}, 3, True
                    )
                    for e in range(len(lm["langs"]))
                ]
                lines.append(f"{lang:<8}" + "".join(f"{c:<26}" for c in cells))
    return "\n".join(line.rstrip() for line in lines)
