"""Which token positions an edit acts on: every one, the prompt's, or the generated ones.

Each write hook a site builds (:meth:`lang_neurons.sites.Site.write_hooks`) carries a
:class:`PositionTracker` as its ``positions`` attribute; :func:`prompt_length` tells the
trackers of a list of hooks how long the prompt is.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any, Literal

from lang_neurons.errors import LangNeuronsError

Positions = Literal["all", "prompt", "generated"]
POSITIONS = ("all", "prompt", "generated")


def check_positions(positions: str) -> None:
    """Raise a clear error unless ``positions`` is one of :data:`POSITIONS`."""
    if positions not in POSITIONS:
        raise LangNeuronsError(f"positions must be one of {', '.join(POSITIONS)}, not {positions!r}")


class PositionTracker:
    """Which token positions a ``positions="prompt"`` or ``"generated"`` edit acts on, per hook point.

    The prompt's length is explicit. Outside generation (``prompt_len`` unset) every position of
    a forward pass is a prompt position, so ``"generated"`` never fires. Inside
    :func:`prompt_length` (:func:`lang_neurons.generation.generate` enters it for every batch,
    left padding included) the first call runs the prompt, then each call is either the next
    token alone (KV cache) or the whole sequence again, one token longer (no cache).
    """

    def __init__(self, which: str):
        self.which = which
        self.reset()

    def reset(self, prompt_len: int | None = None) -> None:
        """Start a new sequence whose prompt has ``prompt_len`` tokens (``None``: plain forward passes)."""
        self.prompt_len, self.seen = prompt_len, 0

    def select(self, length: int) -> slice | None:
        """The positions of a call of ``length`` tokens to edit, as a slice (``None``: none)."""
        if self.which == "all":
            return slice(None)
        if self.prompt_len is None:
            return slice(0, length) if self.which == "prompt" else None
        if self.seen and length == 1:  # a cached step: the next position
            start = self.seen
        elif self.seen and length == self.seen + 1:  # uncached: the whole sequence, one token longer
            start = 0
        else:  # the prompt
            start = 0
        self.seen = start + length
        cut = min(max(self.prompt_len - start, 0), length)
        part = slice(0, cut) if self.which == "prompt" else slice(cut, length)
        return part if part.stop > part.start else None


def _trackers(hooks: Sequence[tuple[str, Any]]) -> list[PositionTracker]:
    return [t for _, fn in hooks if isinstance(t := getattr(fn, "positions", None), PositionTracker)]


@contextlib.contextmanager
def prompt_length(hooks: Sequence[tuple[str, Any]], prompt_len: int) -> Iterator[None]:
    """Within this block, the ``positions="prompt"/"generated"`` hooks among ``hooks`` treat the
    first ``prompt_len`` positions of a sequence as its prompt and the rest as generated, with or
    without the KV cache; on exit they go back to plain forward passes. Wrap each
    ``model.generate`` call of your own in it (``ln.generate`` does)::

        with ln.steer(model, steering), prompt_length(steering, tokens.shape[1]):
            model.generate(tokens, max_new_tokens=20)
    """
    trackers = _trackers(hooks)
    for t in trackers:
        t.reset(prompt_len)
    try:
        yield
    finally:
        for t in trackers:
            t.reset(None)
