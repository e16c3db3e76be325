"""What an evaluation will cost on this machine, said before it is paid: each stage's forward
passes planned from the settings, priced by the passes just timed (the unsteered baseline's
generation and scoring; the loss matrix's unablated pass), and a time budget checked against it."""

from __future__ import annotations

import datetime
import math
import sys
from dataclasses import dataclass

from lang_neurons.errors import LangNeuronsError
from lang_neurons.generation import SCORE_BATCH, planned_passes

from .rows import split_samples


@dataclass(frozen=True)
class Projection:
    """Projected seconds of each stage still to run."""

    stages: dict[str, float]

    @property
    def total_s(self) -> float:
        """The projected seconds of every stage together."""
        return sum(self.stages.values())

    def __str__(self) -> str:
        parts = ", ".join(f"{name} {_minutes(s)}" for name, s in self.stages.items() if s > 0)
        done = datetime.datetime.now() + datetime.timedelta(seconds=self.total_s)
        return f"projected on this machine: {parts or 'nothing left'}; about {_minutes(self.total_s)} more (done near {done:%H:%M})"

    def check(self, budget_s: float | None, what: str) -> None:
        """Refuse, in one line, when a ``budget_s`` is given and the projection exceeds it."""
        if budget_s is not None and self.total_s > budget_s:
            raise LangNeuronsError(
                f"{what} would take about {_minutes(self.total_s)} more on this machine ({self}), over the "
                f"time budget's {_minutes(max(budget_s, 0))} left: lower --samples, --dev-samples, --controls or "
                "--loss-texts, give fewer --residual-layers, or raise --time-budget"
            )

    def say(self) -> None:
        """Print the projection as one line on stderr."""
        print(str(self), file=sys.stderr, flush=True)


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


def dev_grid_passes(cells: int, targets: int, dev_samples: int, batch_size: int, max_new_tokens: int) -> int:
    """The residual dev grid: the unsteered dev samples, then per cell every target's samples in shared batches."""
    unsteered = planned_passes(dev_samples, batch_size, max_new_tokens)
    return unsteered + cells * planned_passes(targets * dev_samples, batch_size, max_new_tokens)


def row_passes(hook_sets: int, samples: int, batch_size: int, max_new_tokens: int, scored: bool = True) -> int:
    """One steering row of one target: its samples split over ``hook_sets`` (the pooled controls,
    :func:`~lang_neurons.study.pooled_samples`), then (``scored``) scored together."""
    sizes = split_samples(samples, hook_sets)
    steps = sum(planned_passes(n, batch_size, max_new_tokens, score_batch=0) for n in sizes if n)
    return steps + (math.ceil(samples / SCORE_BATCH) if scored else 0)


def translation_passes(items: int, batch_size: int, tokens: int) -> int:
    """Greedy translation of ``items`` (at most ``tokens`` steps per batch; cut at a newline)."""
    return planned_passes(items, batch_size, tokens, score_batch=0) if items else 0
