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


def test_compare_runs_agrees_with_itself_and_finds_a_moved_cell(tmp_path, capsys):
    import copy
    import json

    spec = importlib.util.spec_from_file_location("compare_runs", SCRIPT.parent / "compare_runs.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    a = _results(forcing=True, intervals=True)
    lines, n, agree = mod.compare(a, a)
    assert n == agree and n == 2 * len(a["targets"]) * (1 + len(a["settings"]["methods"])) + 2 * len(
        a["summary_interval"]
    )
    b = copy.deepcopy(a)
    cell = b["targets"]["de"]["methods"]["add"]["rate_interval"]
    cell.update(rate=1.0, low=0.99, high=1.0)  # no overlap with a's interval
    paths = [tmp_path / "a.json", tmp_path / "b.json"]
    for p, r in zip(paths, (a, b)):
        p.write_text(json.dumps(r))
    assert mod.main([str(p) for p in paths]) == 1
    out = capsys.readouterr().out
    assert "| de | add | rate |" in out and "**no**" in out and f"{n - 1} of {n} cells agree" in out
    b["residual"] = {**a["residual"], "layer": a["residual"]["layer"] + 1}  # another dev choice: not compared
    lines, m, _ = mod.compare(a, b)
    assert m == n - 2 * (len(a["targets"]) + 1) and sum("another setting" in x for x in lines) == 2 * (
        len(a["targets"]) + 1
    )
