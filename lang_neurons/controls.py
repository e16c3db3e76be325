"""Random-neuron controls: the same intervention on neurons that belong to no language.

:func:`random_control` turns a method's :class:`~lang_neurons.neurons.NeuronSet` into a control
set of the same shape: every language gets, in every layer, exactly as many neurons as the
method gave it there (and as many of them bottom-k members, for AP), drawn uniformly without
replacement, seeded, from the neurons outside *every* language's set. The control is a
``NeuronSet`` with the method's site and model fingerprint, so every steering factory
(:func:`lang_neurons.steering.language_arithmetic`, ``override``, ``add``...) applies it exactly
as it applies the method's set. Each language is drawn on its own: two languages' control
neurons overlap only by chance, not as the method's do.

:func:`random_controls` draws one control per seed, for pooling several seeds' samples into
one cell.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from lang_neurons.errors import LangNeuronsError
from lang_neurons.neurons import NeuronSet

CONTROL_METHOD = "random"
"""The :attr:`NeuronSet.method` of a random control (``params["controls"]`` names the method)."""


def random_control(neurons: NeuronSet, seed: int = 0) -> NeuronSet:
    """A random control of ``neurons``: per language and layer, as many neurons as ``neurons``
    has there, drawn uniformly (``torch.Generator`` seeded with ``seed``) from the neurons of
    that layer that belong to no language of ``neurons``.

    For AP sets, the same number per layer are bottom-k members (which of the drawn neurons is
    random), so ``which="top"`` / ``"bottom"`` select matching counts too. ``params`` records
    the controlled method, its parameters and the seed; ``scores`` is None.
    """
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise LangNeuronsError(f"seed must be an integer, got {seed!r}")
    outside = ~neurons.union()
    counts = neurons.layer_histogram()
    assert neurons.bottom is not None  # NeuronSet.__post_init__ fills it
    bottoms = neurons.bottom.sum(2)
    mask = torch.zeros_like(neurons.mask)
    bottom = torch.zeros_like(neurons.bottom)
    gen = torch.Generator().manual_seed(seed)
    for layer in range(neurons.n_layers):
        pool = outside[layer].nonzero().flatten()
        worst = int(counts[:, layer].argmax())
        if int(counts[worst, layer]) > len(pool):
            raise LangNeuronsError(
                f"layer {layer} has {len(pool)} neurons outside every language's set but {neurons.langs[worst]!r} has "
                f"{int(counts[worst, layer])} there: too few to draw a random control (select fewer neurons)"
            )
        for i in range(len(neurons.langs)):
            n = int(counts[i, layer])
            if n == 0:
                continue
            drawn = pool[torch.randperm(len(pool), generator=gen)[:n]]
            mask[i, layer, drawn] = True
            bottom[i, layer, drawn[n - int(bottoms[i, layer]) :]] = True
    params = {
        "controls": neurons.method,
        "seed": seed,
        "matched": "neurons per language and layer (and bottom-k members)",
        "drawn_from": "neurons outside every language's set",
        "method_params": dict(neurons.params),
    }
    return NeuronSet(
        list(neurons.langs), mask, neurons.site, CONTROL_METHOD, bottom=bottom, params=params, model=dict(neurons.model)
    )


def random_controls(neurons: NeuronSet, seeds: Sequence[int] = (0, 1, 2)) -> list[NeuronSet]:
    """One :func:`random_control` of ``neurons`` per seed, in the order of ``seeds`` (distinct
    integers), so that several draws' samples can be pooled into one cell."""
    if isinstance(seeds, int) or not isinstance(seeds, Sequence) or not len(seeds):
        raise LangNeuronsError(f"seeds must be a non-empty sequence of integers (e.g. range(3)), got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise LangNeuronsError(f"seeds {list(seeds)} repeat a seed: the same draw would be counted twice")
    return [random_control(neurons, seed) for seed in seeds]
