"""Sweeps of the steering settings: the neuron set's size (LAPE ``top_rate`` or AP per-language
``k``) x the strength ``alpha`` x the method (and the residual DiffMean layer), each cell scored
on the dev split of the prompts, the chosen setting re-measured on the test split.

    config = SweepConfig(top_rates=(0.01, 0.02), alphas=(0.5, 1, 2), methods=("add",))
    result = sweep(model, stats, held_out, config, out=Path("runs/sweep"))
    result.chosen["overall"], result.test["add"]["summary_forcing"]

**A cell** is (top_rate or k, method, alpha), or (residual layer, alpha) for
``residual_diffmean``: its neurons are selected from the statistics (:func:`~lang_neurons.lape`
at that top rate, :func:`~lang_neurons.average_precision` with top-k = bottom-k = k), each
target is steered on ``dev_samples`` dev prompts with the dev seeds (``seed + DEV_SEED``), as
:func:`~lang_neurons.study.choose_residual` scores the residual baseline: the pooled
target-language rate (Wilson interval), the quality of the continuations against the unsteered
ones of the same prompts and seeds, and the forcing score (harmonic mean; paired bootstrap
intervals over the samples of every target together), ``n`` samples, split ``"dev"``.

**The choice**: per method, the cell with the highest dev forcing score; ties go to the earlier
cell in grid order (methods in the order given, then the selection values, then the alphas, each
in the order given: list smaller strengths first to prefer them). ``"overall"``: the best cell of
every method, ties to the earlier method.

**The test**: each neuron method's chosen cell is measured again on the test split by
:func:`lang_neurons.study.evaluate` (``samples`` per target, its random control, and with the
first neuron method the residual DiffMean baseline: at its chosen layer and alpha when swept,
else chosen by ``evaluate`` on the dev split), so every reported number has its interval.

**Resumption**: with ``out``, each finished cell is appended to ``out/sweep_cells.jsonl`` as it
finishes, with a digest of the settings that are not the grid; a re-run skips the cells already
there (a killed sweep loses at most the cell in progress) and reuses a test measurement of the
same setting. Another digest in the file is an error (``force=True`` starts the file again).

**Time budget**: with ``time_budget`` (seconds) the unsteered dev generation is timed (the
cells need it for their quality anyway) and the remaining grid's cost projected from it; over
the budget, the sweep stops before the first steered cell with one line.
"""

from __future__ import annotations

from .grid import CELLS_FILE, DEFAULT_TOP_RATES, GRID, SweepConfig, SweepResult, format_sweep
from .loop import sweep

__all__ = ["CELLS_FILE", "DEFAULT_TOP_RATES", "GRID", "SweepConfig", "SweepResult", "format_sweep", "sweep"]
