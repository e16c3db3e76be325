"""Steering evaluation, as the papers run it: target-language rate of generations, their quality
and forcing score, translation BLEU/chrF under steering, and the loss-change matrix, beside
random-neuron controls and the residual DiffMean baseline.

Modules: ``loop`` (:func:`evaluate`), ``rows`` (each row's steering, the pooled random controls,
the loss matrix), ``residual`` (the residual baseline's layer and alpha, chosen on the dev
split), ``result`` (:class:`EvaluationResult`, what :func:`evaluate` returns) and ``tables``
(:func:`format_table`).
"""

from __future__ import annotations

from lang_neurons.choices import EVAL_METHODS, PIN, RESIDUAL

from .loop import evaluate
from .residual import DEV_SEED, choose_residual, residual_candidates
from .result import EvaluationResult, MethodResult, TargetResult
from .rows import (
    CONTROL_SUFFIX,
    loss_matrix,
    method_rows,
    pooled_samples,
    rate_interval,
    steering_for,
    text_loss_matrix,
)
from .tables import format_interval, format_rate, format_table

__all__ = [
    "CONTROL_SUFFIX",
    "DEV_SEED",
    "EVAL_METHODS",
    "PIN",
    "RESIDUAL",
    "EvaluationResult",
    "MethodResult",
    "TargetResult",
    "choose_residual",
    "evaluate",
    "format_interval",
    "format_rate",
    "format_table",
    "loss_matrix",
    "method_rows",
    "pooled_samples",
    "rate_interval",
    "residual_candidates",
    "steering_for",
    "text_loss_matrix",
]
