"""The task interface: a :class:`Task` of :class:`TaskItem` s of one of two kinds, and a
:class:`TaskResult` of per-item scores.

* ``multiple_choice``: each item has a prompt, options and the index of the right one; the model
  picks the option whose continuation of the prompt it finds most likely.
* ``generation``: each item has a prompt and reference answers; the model writes a short answer
  (greedy, cut at the first newline), scored by exact match and F1 against the best reference.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from lang_neurons.errors import LangNeuronsError

TaskKind = Literal["multiple_choice", "generation"]

TASK_KINDS: tuple[str, ...] = ("multiple_choice", "generation")
"""The two kinds of task."""

MC_METRICS: tuple[str, ...] = ("acc", "acc_norm", "acc_bytes")
"""A multiple-choice item's scores: the option with the highest summed log-likelihood (``acc``),
per character of the option (``acc_norm``, lm-evaluation-harness's ``len(choice)``) or per UTF-8
byte (``acc_bytes``); each 1 when it is the right option, else 0."""

GENERATION_METRICS: tuple[str, ...] = ("exact_match", "f1")
"""A generation item's scores: SQuAD exact match (0 or 1) and token F1, each the best over the references."""

BINARY_METRICS: frozenset[str] = frozenset({"acc", "acc_norm", "acc_bytes", "exact_match"})
"""Metrics whose per-item scores are 0 or 1 (their intervals are Wilson's)."""


@dataclass(frozen=True)
class TaskItem:
    """One item of a task.

    Attributes:
        prompt: the text the model reads (for multiple choice: the context every option continues;
            may be empty, then the option is scored after BOS alone).
        options: multiple choice: the continuations scored after ``prompt``, each as written
            (a leading space included where the format wants one).
        answer: multiple choice: the index of the right option.
        answers: generation: the reference answers (an item is scored against the best one).
        id: the item's identifier in its dataset (for the per-item records).
    """

    prompt: str
    options: tuple[str, ...] = ()
    answer: int | None = None
    answers: tuple[str, ...] = ()
    id: str = ""


@dataclass(frozen=True)
class Task:
    """A list of items of one kind in one language, with what to report.

    Attributes:
        name: the task's name (``belebele``, ``xnli``, ``sib200``, ``xquad``, or a kind for a file of your own).
        kind: ``multiple_choice`` or ``generation``.
        lang: the items' language.
        items: the items.
        metric: the headline metric (``acc_norm`` for multiple choice, ``f1`` for generation).
        description: where the items come from and the prompt format.
        max_new_tokens: generation: new tokens per answer at most.
    """

    name: str
    kind: TaskKind
    lang: str
    items: tuple[TaskItem, ...]
    metric: str = ""
    description: str = ""
    max_new_tokens: int = 32

    def __post_init__(self) -> None:
        if self.kind not in TASK_KINDS:
            raise LangNeuronsError(f"unknown task kind {self.kind!r}: use one of {', '.join(TASK_KINDS)}")
        object.__setattr__(self, "items", tuple(self.items))
        metrics = MC_METRICS if self.kind == "multiple_choice" else GENERATION_METRICS
        if not self.metric:
            object.__setattr__(self, "metric", metrics[1] if self.kind == "multiple_choice" else "f1")
        if self.metric not in metrics:
            raise LangNeuronsError(f"a {self.kind} task reports one of {', '.join(metrics)}, not {self.metric!r}")
        if not self.items:
            raise LangNeuronsError(f"task {self.name!r} ({self.lang}) has no items")
        for i, item in enumerate(self.items):
            _check_item(self, i, item)

    def __len__(self) -> int:
        return len(self.items)

    def head(self, n: int | None) -> Task:
        """The first ``n`` items (all when ``n`` is None)."""
        if n is None:
            return self
        if n < 1:
            raise LangNeuronsError(f"a task needs at least one item, asked for {n}")
        return replace(self, items=self.items[:n])

    @property
    def metrics(self) -> tuple[str, ...]:
        """Every metric this kind of task reports."""
        return MC_METRICS if self.kind == "multiple_choice" else GENERATION_METRICS

    def __repr__(self) -> str:
        return f"Task({self.name!r}, {self.kind}, lang={self.lang!r}, items={len(self.items)}, metric={self.metric!r})"


def _check_item(task: Task, i: int, item: TaskItem) -> None:
    where = f"task {task.name!r} item {i}"
    if not isinstance(item.prompt, str):
        raise LangNeuronsError(f"{where}: the prompt must be a string, got {type(item.prompt).__name__}")
    if task.kind == "multiple_choice":
        if len(item.options) < 2 or not all(isinstance(o, str) and o for o in item.options):
            raise LangNeuronsError(f"{where}: a multiple-choice item needs at least two non-empty option strings")
        if (
            not isinstance(item.answer, int)
            or isinstance(item.answer, bool)
            or not 0 <= item.answer < len(item.options)
        ):
            raise LangNeuronsError(
                f"{where}: the answer must be an option index in 0..{len(item.options) - 1}, got {item.answer!r}"
            )
    elif not item.answers or not all(isinstance(a, str) for a in item.answers):
        raise LangNeuronsError(f"{where}: a generation item needs at least one reference answer string")


@dataclass(frozen=True)
class TaskResult:
    """Per-item scores of a model (with or without hooks) on a task.

    Attributes:
        task: the task's name.
        lang: its language.
        kind: its kind.
        metric: its headline metric.
        scores: per metric, one score per item (in item order).
        predictions: per item, the chosen option's index (multiple choice) or the generated answer.
        loglikelihoods: multiple choice: per item, each option's summed log-likelihood (nats).
        tokens: multiple choice: per item, each option's number of scored tokens.
    """

    task: str
    lang: str
    kind: str
    metric: str
    scores: dict[str, list[float]]
    predictions: list[Any]
    loglikelihoods: list[list[float]] = field(default_factory=list)
    tokens: list[list[int]] = field(default_factory=list)

    @property
    def n(self) -> int:
        """Number of items."""
        return len(self.predictions)

    def mean(self, metric: str | None = None) -> float:
        """The mean score of ``metric`` (default: the headline metric) over the items."""
        values = self.scores[metric or self.metric]
        return sum(values) / len(values)

    def summary(self) -> dict[str, float]:
        """Every metric's mean, JSON-ready."""
        return {m: self.mean(m) for m in self.scores}

    def to_dict(self) -> dict[str, Any]:
        """The result as plain JSON-ready values (means, per-item scores and predictions)."""
        out: dict[str, Any] = {
            "task": self.task,
            "lang": self.lang,
            "kind": self.kind,
            "metric": self.metric,
            "n": self.n,
            "means": self.summary(),
            "scores": {m: list(v) for m, v in self.scores.items()},
            "predictions": list(self.predictions),
        }
        if self.loglikelihoods:
            out["loglikelihoods"] = [list(x) for x in self.loglikelihoods]
        return out

    def __repr__(self) -> str:
        return f"TaskResult({self.task!r}, lang={self.lang!r}, n={self.n}, {self.metric}={self.mean():.3f})"


def as_items(values: Sequence[TaskItem]) -> tuple[TaskItem, ...]:
    """``values`` as a tuple of items, checked to be :class:`TaskItem` s."""
    for i, v in enumerate(values):
        if not isinstance(v, TaskItem):
            raise LangNeuronsError(f"item {i} is a {type(v).__name__}, not a TaskItem")
    return tuple(values)
