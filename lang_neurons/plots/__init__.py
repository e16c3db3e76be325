"""Plotly figures of neuron sets, statistics and evaluation results. No I/O.

Every function takes library objects (:class:`~lang_neurons.neurons.NeuronSet`,
:class:`~lang_neurons.recording.ActivationStats`, :class:`~lang_neurons.evaluation.LossMatrix`,
plain result dicts) and returns a :class:`plotly.graph_objects.Figure`; the caller shows it
(``fig.show()``) or saves it (``fig.write_html(...)``, :func:`lang_neurons.report.write_report`).
The figures of neuron sets and statistics are in :mod:`~lang_neurons.plots.neurons`, those of
evaluation results in :mod:`~lang_neurons.plots.results`, those of sweeps in
:mod:`~lang_neurons.plots.sweep`; every name is importable from
``lang_neurons.plots`` itself.

Languages keep one order and one colour everywhere: :func:`language_colors` assigns colours
by position in ``langs``, so figures of the same neuron set or statistics agree. Where single
neurons are drawn, the hover text names their layer and index.

    fig = ln.plots.layer_distribution(lape)
    fig = ln.plots.overlap_heatmap(lape, metric="jaccard")
    fig = ln.plots.entropy_scatter(stats, lape)
"""

from __future__ import annotations

from ._style import BACKGROUND, PALETTE, language_colors
from .neurons import (
    MAX_POINTS,
    entropy_scatter,
    layer_distribution,
    method_comparison,
    module_distribution,
    neuron_profile,
    overlap_heatmap,
)
from .results import (
    HeadlineCell,
    headline_cell,
    headline_figure,
    headline_rows,
    loss_matrix_heatmap,
    steering_rates,
    steering_sweep,
)
from .sweep import sweep_heatmap, sweep_lines, sweep_parameter

__all__ = [
    "BACKGROUND",
    "MAX_POINTS",
    "PALETTE",
    "HeadlineCell",
    "entropy_scatter",
    "headline_cell",
    "headline_figure",
    "headline_rows",
    "language_colors",
    "layer_distribution",
    "loss_matrix_heatmap",
    "method_comparison",
    "module_distribution",
    "neuron_profile",
    "overlap_heatmap",
    "steering_rates",
    "steering_sweep",
    "sweep_heatmap",
    "sweep_lines",
    "sweep_parameter",
]
