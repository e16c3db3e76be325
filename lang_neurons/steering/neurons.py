"""Steering on neurons: the factories that turn a :class:`~lang_neurons.neurons.NeuronSet` into a
:class:`Steering`, an affine edit ``x -> a * x + b`` of the selected neurons at the set's site.

The hooks come from the site (:meth:`lang_neurons.sites.Site.write_hooks`), rebuilt from the
model fingerprint the neuron set carries, so the factories need no model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from lang_neurons.choices import STEERING_METHODS as METHODS
from lang_neurons.errors import LangNeuronsError
from lang_neurons.neurons import NeuronSet
from lang_neurons.recording import ActivationStats
from lang_neurons.sites import Positions, Site, check_positions


@dataclass
class _Layer:
    """An affine edit ``x[..., index] = a * x[..., index] + b`` of one layer's neurons."""

    index: Tensor
    a: Tensor
    b: Tensor

    def then(self, other: _Layer) -> _Layer:
        """This edit followed by ``other`` (on the union of their neurons)."""
        index = torch.unique(torch.cat([self.index, other.index]))
        a, b = torch.ones(len(index)), torch.zeros(len(index))
        for edit in (self, other):
            pos = torch.searchsorted(index, edit.index)
            a[pos], b[pos] = edit.a * a[pos], edit.a * b[pos] + edit.b
        return _Layer(index, a, b)


class Steering(list):
    """``(hook_name, fn)`` pairs plus the edits they make; ``+`` composes two steerings.

    The hooks are the site's (:meth:`lang_neurons.sites.Site.write_hooks`), the site rebuilt
    from ``model``, the fingerprint of the model the neuron set was found on.
    """

    def __init__(self, layers: dict[int, _Layer], site: str, model: dict[str, Any], positions: str = "all"):
        self.layers, self.site, self.model, self.positions = layers, site, model, positions
        hooks: list[tuple[str, Any]] = []
        if layers:
            where = Site.from_fingerprint(site, model)
            for layer, edit in sorted(layers.items()):
                hooks += where.write_hooks(layer, edit.index, edit.a, edit.b, positions)
        super().__init__(hooks)

    def __add__(self, other: Any) -> Steering:
        if not isinstance(other, Steering):
            return list(self) + list(other)  # type: ignore[return-value]
        if (other.site, other.positions) != (self.site, self.positions):
            raise LangNeuronsError(
                f"cannot compose steerings at different sites/positions ({self.site}/{self.positions} vs "
                f"{other.site}/{other.positions}): pass both lists to fwd_hooks instead"
            )
        if other.model.get("weights_sha256") != self.model.get("weights_sha256"):
            raise LangNeuronsError("cannot compose steerings built from neuron sets of different models")
        layers = dict(self.layers)
        for layer, edit in other.layers.items():
            layers[layer] = layers[layer].then(edit) if layer in layers else edit
        return Steering(layers, self.site, self.model, self.positions)

    @property
    def n_neurons(self) -> int:
        """Neurons this steering touches."""
        return sum(len(e.index) for e in self.layers.values())

    def __repr__(self) -> str:
        return f"Steering(site={self.site!r}, {self.n_neurons} neurons in {len(self.layers)} layers, {len(self)} hooks, positions={self.positions!r})"


# -- factories ---------------------------------------------------------------------------------


def _selection(neurons: NeuronSet, langs: str | Sequence[str], which: str) -> Tensor:
    names = [langs] if isinstance(langs, str) else list(langs)
    if not names:
        raise LangNeuronsError("no language given whose neurons to steer")
    if which not in ("all", "top", "bottom"):
        raise LangNeuronsError(f"which must be 'all', 'top' or 'bottom', not {which!r}")
    mask = torch.zeros(neurons.n_layers, neurons.width, dtype=torch.bool)
    assert neurons.bottom is not None  # NeuronSet.__post_init__ fills it
    for lang in names:
        i = neurons.lang_index(lang)
        m, bottom = neurons.mask[i], neurons.bottom[i]
        mask |= {"all": m, "top": m & ~bottom, "bottom": bottom}[which]
    return mask


def finite(name: str, value: float) -> float:
    """``value`` as a float; clear error unless it is a finite number (``name`` says which argument)."""
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        raise LangNeuronsError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def _per_neuron(name: str, values: Tensor | float, neurons: NeuronSet) -> Tensor:
    """``values`` as a ``[layer, width]`` float tensor (a scalar is broadcast)."""
    if isinstance(values, (int, float)):
        return torch.full((neurons.n_layers, neurons.width), finite(name, values))
    values = torch.as_tensor(values).float().cpu()
    if values.shape != (neurons.n_layers, neurons.width):
        raise LangNeuronsError(
            f"{name} has shape {tuple(values.shape)} but the neuron set is [{neurons.n_layers}, {neurons.width}]: "
            "pass per-neuron values of one language, e.g. stats.mean()[i]"
        )
    return values


def _steering(neurons: NeuronSet, mask: Tensor, a: Tensor, b: Tensor, positions: str) -> Steering:
    check_positions(positions)
    missing = [k for k in ("n_layers", "d_mlp", "gated", "act_fn", "weights_sha256") if k not in neurons.model]
    if missing:  # without them the edit could land on the wrong quantity or model, silently
        raise LangNeuronsError(
            f"this neuron set carries no model fingerprint (missing {', '.join(missing)}): build it with "
            "model=stats.model or ln.model_fingerprint(model), or NeuronSet.from_lape_masks(..., model=model)"
        )
    layers = {}
    for layer in range(neurons.n_layers):
        index = mask[layer].nonzero().flatten()
        if len(index):
            sel_a, sel_b = a[layer, index], b[layer, index]
            if not (torch.isfinite(sel_a).all() and torch.isfinite(sel_b).all()):
                raise LangNeuronsError(f"non-finite steering values at layer {layer}: check the statistics used")
            layers[layer] = _Layer(index, sel_a.clone(), sel_b.clone())
    return Steering(layers, neurons.site, neurons.model, positions)


def override(
    neurons: NeuronSet,
    lang: str | Sequence[str],
    values: Float[Tensor, "layer neuron"] | float,
    *,
    which: str = "all",
    positions: Positions = "all",
) -> Steering:
    """Pin ``lang``'s neurons to ``values`` (Kojima et al.: the target's median pooled activation,
    ``stats.pooled_median()[i]``; top-k and bottom-k together)."""
    mask = _selection(neurons, lang, which)
    return _steering(neurons, mask, torch.zeros(mask.shape), _per_neuron("values", values, neurons), positions)


def deactivate(
    neurons: NeuronSet,
    lang: str | Sequence[str],
    value: float = 0.0,
    *,
    which: str = "all",
    positions: Positions = "all",
) -> Steering:
    """Set ``lang``'s neurons to a constant (Tang et al.: 0; Gurgurov et al. also use negatives)."""
    return override(neurons, lang, finite("value", value), which=which, positions=positions)


def add(
    neurons: NeuronSet,
    lang: str | Sequence[str],
    alpha: float,
    means: Float[Tensor, "layer neuron"],
    *,
    which: str = "all",
    positions: Positions = "all",
) -> Steering:
    """Additive language arithmetic: ``x += alpha * means`` on ``lang``'s neurons."""
    mask = _selection(neurons, lang, which)
    b = finite("alpha", alpha) * _per_neuron("means", means, neurons)
    return _steering(neurons, mask, torch.ones(mask.shape), b, positions)


def scale(
    neurons: NeuronSet, lang: str | Sequence[str], beta: float, *, which: str = "all", positions: Positions = "all"
) -> Steering:
    """Multiplicative steering: ``x *= beta`` on ``lang``'s neurons."""
    mask = _selection(neurons, lang, which)
    return _steering(neurons, mask, torch.full(mask.shape, finite("beta", beta)), torch.zeros(mask.shape), positions)


def replace(
    neurons: NeuronSet,
    lang: str | Sequence[str],
    means: Float[Tensor, "layer neuron"],
    *,
    which: str = "all",
    positions: Positions = "all",
) -> Steering:
    """Replace ``lang``'s neurons by ``means`` (e.g. the target language's mean activation): the
    same edit as :func:`override`, under the name Gurgurov et al. give it (method ``replace``)."""
    return override(neurons, lang, means, which=which, positions=positions)


def diffmean(
    neurons: NeuronSet,
    lang: str | Sequence[str],
    means_target: Float[Tensor, "layer neuron"],
    means_others: Float[Tensor, "layer neuron"],
    alpha: float = 1.0,
    *,
    which: str = "all",
    positions: Positions = "all",
) -> Steering:
    """Add ``alpha * (means_target - means_others)`` to ``lang``'s neurons (difference of means)."""
    diff = _per_neuron("means_target", means_target, neurons) - _per_neuron("means_others", means_others, neurons)
    return add(neurons, lang, alpha, diff, which=which, positions=positions)


def language_arithmetic(
    neurons: NeuronSet,
    stats: ActivationStats,
    *,
    target: str,
    source: str | Sequence[str] | None = None,
    method: str = "add",
    alpha: float = 1.0,
    deactivate_value: float = 0.0,
    positions: Positions = "all",
) -> Steering:
    """Gurgurov et al.: deactivate the source language's neurons, then activate the target's.

    Args:
        neurons: the neuron set (LAPE or AP) to steer with.
        stats: statistics on the same model and site (for the target's mean/median activations).
        target: the language to write in.
        source: language(s) to switch off; ``None`` = every other language of the neuron set.
            Neurons the source shares with the target are left on.
        method: how the target's neurons are activated: ``add`` (``x += alpha * mean``),
            ``scale`` (``x *= alpha``), ``replace`` (``x = mean``), ``diffmean``
            (``x += alpha * (mean - mean of the other languages)``), ``override`` (``x =`` the
            median pooled activation, as Kojima et al.), or ``deactivate`` (source only).
        alpha: strength for ``add``, ``scale`` and ``diffmean``.
        deactivate_value: the value the source's neurons are set to.
    """
    if method not in METHODS:
        raise LangNeuronsError(f"unknown method {method!r}: choose one of {', '.join(METHODS)}")
    if stats.site != neurons.site:
        raise LangNeuronsError(
            f"statistics are at site {stats.site!r} but the neurons at {neurons.site!r}: record at the neurons' site"
        )
    if (stats.n_layers, stats.width) != (neurons.n_layers, neurons.width):
        raise LangNeuronsError("statistics and neuron set come from models of different sizes")
    t = neurons.lang_index(target)
    ti = stats.lang_index(target)
    sources = (
        [x for x in neurons.langs if x != target]
        if source is None
        else ([source] if isinstance(source, str) else list(source))
    )
    for s in sources:
        neurons.lang_index(s)
    off_mask = _selection(neurons, sources, "all") & ~neurons.mask[t] if sources else torch.zeros_like(neurons.mask[t])
    steering = _steering(
        neurons,
        off_mask,
        torch.zeros(off_mask.shape),
        torch.full(off_mask.shape, finite("deactivate_value", deactivate_value)),
        positions,
    )
    means = stats.mean()
    if method == "deactivate":
        return steering
    if method == "add":
        on = add(neurons, target, alpha, means[ti], positions=positions)
    elif method == "scale":
        on = scale(neurons, target, alpha, positions=positions)
    elif method == "diffmean":
        others = torch.cat([means[:ti], means[ti + 1 :]]).mean(0)
        on = diffmean(neurons, target, means[ti], others, alpha, positions=positions)
    else:  # override and replace pin the target's neurons: to its median pooled activation, or to its mean
        on = override(
            neurons, target, means[ti] if method == "replace" else stats.pooled_median()[ti], positions=positions
        )
    return steering + on if steering.layers else on
