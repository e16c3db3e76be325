"""Attach steering hooks for a ``with`` block: :func:`steer`."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

from lang_neurons.models import HookedModel, attached, check_fingerprint
from lang_neurons.steering.neurons import Steering
from lang_neurons.steering.residual import ResidualSteering


@contextlib.contextmanager
def steer(model: HookedModel, *steerings: Sequence[tuple[str, Any]]) -> Iterator[HookedModel]:
    """Apply steering hooks inside a ``with`` block and always remove them afterwards.

    Checks that each :class:`~lang_neurons.steering.Steering` and
    :class:`~lang_neurons.steering.ResidualSteering` was built for this model.
    Hooks the user added before stay in place.
    """
    hooks: list[tuple[str, Any]] = []
    for s in steerings:
        if isinstance(s, Steering):
            check_fingerprint(s.model, model, "the neuron set behind this steering")
        elif isinstance(s, ResidualSteering):
            check_fingerprint(s.model, model, "the statistics behind this residual steering")
        hooks += list(s)
    with attached(model, hooks):
        yield model
