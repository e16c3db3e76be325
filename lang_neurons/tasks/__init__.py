"""Downstream tasks under steering: does the model still read, infer and answer with its language
neurons edited?

* **The interface** (:mod:`~lang_neurons.tasks.base`): a :class:`Task` of :class:`TaskItem` s of
  one of two kinds, ``multiple_choice`` (the option with the highest log-likelihood after the
  prompt, raw and length-normalised as lm-evaluation-harness does) and ``generation`` (a short
  greedy answer, SQuAD exact match and F1); a :class:`TaskResult` of per-item scores.
* **Scoring** (:mod:`~lang_neurons.tasks.scoring`): :func:`evaluate_task` under any hooks,
  :func:`option_loglikelihoods`, :func:`choose`, :func:`exact_match`, :func:`f1_score`.
* **Steered against baseline** (:mod:`~lang_neurons.tasks.compare`): :func:`compare_task`, each
  metric with its 95 % interval and a paired bootstrap over items of steered - baseline.
* **Datasets and prompts** (:mod:`~lang_neurons.tasks.loaders`, :mod:`~lang_neurons.tasks.prompts`):
  :func:`load_task` for Belebele, XNLI, SIB-200 and XQuAD from the hub or a local file in their
  schema, and files of your own of either kind.
"""

from __future__ import annotations

from .base import GENERATION_METRICS, MC_METRICS, TASK_KINDS, Task, TaskItem, TaskResult
from .compare import compare_task, format_comparison, metric_interval, paired_difference, steering_rows
from .loaders import TASKS, TaskSpec, load_task, read_task_file, task_from_rows, task_spec
from .prompts import SIB_CATEGORIES
from .scoring import (
    answer_tokens,
    choose,
    evaluate_task,
    exact_match,
    f1_score,
    normalize_answer,
    option_loglikelihoods,
)

__all__ = [
    "GENERATION_METRICS",
    "MC_METRICS",
    "SIB_CATEGORIES",
    "TASKS",
    "TASK_KINDS",
    "Task",
    "TaskItem",
    "TaskResult",
    "TaskSpec",
    "answer_tokens",
    "choose",
    "compare_task",
    "evaluate_task",
    "exact_match",
    "f1_score",
    "format_comparison",
    "load_task",
    "metric_interval",
    "normalize_answer",
    "option_loglikelihoods",
    "paired_difference",
    "read_task_file",
    "steering_rows",
    "task_from_rows",
    "task_spec",
]
