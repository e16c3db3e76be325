"""scripts/results_tables.py turns a metrics.json into docs/results.md's tables."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from plot_inputs import _results

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "results_tables.py"


def test_results_tables_from_a_metrics_dict():
    spec = importlib.util.spec_from_file_location("results_tables", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    results = _results(forcing=True, intervals=True)
    text = mod.tables(results)
    targets = list(results["targets"])
    assert "### Target-language rate" in text and "### Quality and forcing score" in text
    for t in targets:
        assert sum(line.startswith(f"| {t} |") for line in text.splitlines()) == 3  # rate, score and verdict rows
    for line in text.splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            header = next(h for h in text.split("\n\n") if line in h).splitlines()
            width = header[[i for i, x in enumerate(header) if x.startswith("|")][0]].count("|")
            assert line.count("|") == width, line
