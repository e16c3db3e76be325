"""Do two runs of the same measurement agree? Compare two metrics.json (for example a float32 and
a bfloat16 run of the defaults, or the same defaults on two CPUs).

    .venv/bin/python scripts/compare_runs.py runs/a/metrics.json runs/b/metrics.json

Per target and row (the baseline too) and pooled: the rate and the forcing score of both runs
with their 95 % intervals. The rule, stated once: two cells **agree** when each run's estimate
lies inside the other run's interval. Prints a markdown table and a last line with the count of
cells that agree; exits 1 if any does not. The generation dtype (and its reason) of each run is
printed first, from the runs' settings.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def _inside(x: float, c: dict[str, Any]) -> bool:
    return c["low"] - 1e-12 <= x <= c["high"] + 1e-12


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
    lines = ["| target | row | measure | run A | run B | agree |", "|---|---|---|---|---|---|"]
    agree = 0
    shared = [k for k in ca if k in cb]
    for key in shared:
        x, y = ca[key], cb[key]
        ok = _inside(x["estimate"], y) and _inside(y["estimate"], x)
        agree += ok
        lines.append(f"| {key[0]} | {key[1]} | {key[2]} | {_ci(x)} | {_ci(y)} | {'yes' if ok else '**no**'} |")
    return lines, len(shared), agree


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
    print(f"{agree} of {n} cells agree (each estimate inside the other run's 95 % interval)")
    return 0 if agree == n else 1


if __name__ == "__main__":
    sys.exit(main())
