"""Do two runs of the same measurement agree? Compare two metrics.json (for example a float32 and
a bfloat16 run of the defaults, or the same defaults on two CPUs).

    .venv/bin/python scripts/compare_runs.py runs/a/metrics.json runs/b/metrics.json

Per target and row (the baseline too) and pooled: the rate and the forcing score of both runs
with their 95 % intervals. The rule, stated once and the same as docs/results.md's verdicts: two
cells **agree** when their intervals overlap (no difference shown). The residual DiffMean row is
compared only when both runs chose the same layer and alpha on their dev split; otherwise its
cells are listed as another setting and left out of the count. Prints a markdown table and a last
line with the count of cells that agree; exits 1 if any does not. The generation dtype (and its
reason) of each run is printed first, from the runs' settings.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def _overlap(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return bool(a["low"] <= b["high"] and b["low"] <= a["high"])


def _residual(results: dict[str, Any]) -> tuple[Any, Any] | None:
    chosen = results.get("residual")
    return (chosen["layer"], chosen["alpha"]) if chosen else None


def _ci(c: dict[str, Any]) -> str:
    return f"{c['estimate']:.2f} [{c['low']:.2f}, {c['high']:.2f}]"


def _cells(results: dict[str, Any]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """(target, row, "rate"|"score") -> interval with "estimate", for every target, row and the pooled line."""
    out = {}
    for t, e in results["targets"].items():
        out[(t, "baseline", "rate")] = {**e["baseline_interval"], "estimate": e["baseline_interval"]["rate"]}
        out[(t, "baseline", "score")] = e["baseline_forcing_interval"]["score"]
        for m, row in e["methods"].items():
            out[(t, m, "rate")] = {**row["rate_interval"], "estimate": row["rate_interval"]["rate"]}
            out[(t, m, "score")] = row["forcing_interval"]["score"]
    for m, c in results.get("summary_interval", {}).items():
        out[("pooled", m, "rate")] = {**c, "estimate": c["rate"]}
    for m, c in results.get("summary_forcing_interval", {}).items():
        out[("pooled", m, "score")] = c
    return out


def compare(a: dict[str, Any], b: dict[str, Any]) -> tuple[list[str], int, int]:
    """The table's lines, the number of shared cells and how many agree."""
    ca, cb = _cells(a), _cells(b)
    same_residual = _residual(a) == _residual(b)
    lines = ["| target | row | measure | run A | run B | agree |", "|---|---|---|---|---|---|"]
    agree = compared = 0
    for key in (k for k in ca if k in cb):
        x, y = ca[key], cb[key]
        if key[1] == "residual_diffmean" and not same_residual:
            verdict = f"another setting (layer, alpha {_residual(a)} against {_residual(b)})"
        else:
            ok = _overlap(x, y)
            agree, compared = agree + ok, compared + 1
            verdict = "yes" if ok else "**no**"
        lines.append(f"| {key[0]} | {key[1]} | {key[2]} | {_ci(x)} | {_ci(y)} | {verdict} |")
    return lines, compared, agree


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    if len(args) != 2:
        print("usage: compare_runs.py A/metrics.json B/metrics.json", file=sys.stderr)
        return 2
    runs = [json.loads(Path(p).read_text()) for p in args]
    for name, r in zip("AB", runs):
        s = r["settings"]
        print(
            f"run {name}: generation in {s.get('generation_dtype')} ({s.get('generation_dtype_reason', 'not recorded')})"
        )
    lines, n, agree = compare(*runs)
    print("\n".join(lines))
    print(f"{agree} of {n} cells agree (their 95 % intervals overlap)")
    return 0 if agree == n else 1


if __name__ == "__main__":
    sys.exit(main())
