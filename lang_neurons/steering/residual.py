"""The residual-stream baseline: CLaS-Bench's DiffMean, one vector per layer added to the
residual stream at ``blocks.<l>.hook_resid_post`` (hooks from
:class:`lang_neurons.sites.ResidualSite`). Not a neuron intervention, but the same kind of
``(hook_name, fn)`` list.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from lang_neurons.errors import LangNeuronsError
from lang_neurons.recording import ActivationStats
from lang_neurons.sites import Positions, ResidualSite, check_positions
from lang_neurons.steering.neurons import finite


class ResidualSteering(list):
    """``(hook_name, fn)`` pairs that add one vector per layer to the residual stream at
    ``blocks.<l>.hook_resid_post`` (every position, or as ``positions`` says); ``+`` with another
    ``ResidualSteering`` adds the vectors of shared layers (additions commute).

    Attributes:
        vectors: ``{layer: vector}``, each ``[d_model]`` float32 on the CPU (copied to the
            activation's device and dtype on first use).
        model: the fingerprint of the model the statistics were recorded on.
        positions: ``all``, ``prompt`` or ``generated`` (see :func:`lang_neurons.steering.add`).
    """

    def __init__(self, vectors: dict[int, Float[Tensor, " d_model"]], model: dict[str, Any], positions: str = "all"):
        self.vectors, self.model, self.positions = dict(sorted(vectors.items())), model, positions
        site = ResidualSite.from_fingerprint(model)
        super().__init__(hook for layer, v in self.vectors.items() for hook in site.add_hooks(layer, v, positions))

    def __add__(self, other: Any) -> ResidualSteering:
        if not isinstance(other, ResidualSteering):
            return list(self) + list(other)  # type: ignore[return-value]
        if other.positions != self.positions:
            raise LangNeuronsError(
                f"cannot compose residual steerings at different positions ({self.positions} vs {other.positions}): "
                "pass both lists to fwd_hooks instead"
            )
        if other.model.get("weights_sha256") != self.model.get("weights_sha256"):
            raise LangNeuronsError("cannot compose residual steerings built from statistics of different models")
        vectors = dict(self.vectors)
        for layer, v in other.vectors.items():
            vectors[layer] = vectors[layer] + v if layer in vectors else v
        return ResidualSteering(vectors, self.model, self.positions)

    @property
    def layers(self) -> list[int]:
        """The layers whose residual stream this steering changes, ascending."""
        return list(self.vectors)

    def __repr__(self) -> str:
        norms = ", ".join(f"{layer}: {float(v.norm()):.3g}" for layer, v in self.vectors.items())
        return f"ResidualSteering(layers {self.layers}, vector norms {{{norms}}}, positions={self.positions!r})"


def _residual_layers(layers: int | Sequence[int], n_layers: int) -> list[int]:
    chosen = list(layers) if isinstance(layers, Sequence) and not isinstance(layers, str) else [layers]
    if not chosen:
        raise LangNeuronsError("no residual layer given: pass a layer or a list/range of layers")
    for layer in chosen:
        if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < n_layers:
            raise LangNeuronsError(
                f"residual layer {layer!r} is out of range: this model has {n_layers} layers (0 to {n_layers - 1})"
            )
    if len(set(chosen)) != len(chosen):
        raise LangNeuronsError(f"residual layers {chosen} repeat a layer: give each layer once")
    return sorted(chosen)


def residual_direction(
    stats: ActivationStats, target: str, others: Sequence[str] | None = None
) -> Float[Tensor, "layer d_model"]:
    """Per layer, ``mean_target - mean_others`` of the residual stream (float64).

    ``mean_target`` is the target language's mean of ``blocks.<l>.hook_resid_post`` over its
    counted tokens (:meth:`ActivationStats.resid_mean`); ``mean_others`` is the *unweighted* mean
    of the per-language means of ``others`` (default: every other language of ``stats``), so a
    language with more tokens does not weigh more (CLaS-Bench's DiffMean).
    """
    ti = stats.lang_index(target)
    names = [x for x in stats.langs if x != target] if others is None else list(others)
    if target in names:
        raise LangNeuronsError(f"others must not contain the target {target!r}")
    if not names:
        raise LangNeuronsError(f"residual DiffMean needs at least one language besides {target!r} in the statistics")
    idx = [stats.lang_index(x) for x in names]
    means = stats.resid_mean()
    return means[ti] - means[idx].mean(0)


def residual_diffmean(
    stats: ActivationStats,
    target: str,
    layers: int | Sequence[int],
    alpha: float = 1.0,
    *,
    others: Sequence[str] | None = None,
    positions: Positions = "all",
) -> ResidualSteering:
    """Residual-stream DiffMean: add ``alpha * (mean_target - mean_others)`` at ``blocks.<l>.hook_resid_post``.

    Args:
        stats: statistics recorded with residual sums (:func:`lang_neurons.record`).
        target: the language to write in.
        layers: one layer, or a list/range of layers (each gets its own layer's vector).
        alpha: strength (CLaS-Bench tunes it with the layer on a dev split).
        others: the languages to steer away from; ``None`` = every other language of ``stats``.
            Their per-language means are averaged unweighted (see :func:`residual_direction`).
        positions: ``all`` (default: prompt and every generated token), ``prompt`` or ``generated``.
    """
    check_positions(positions)
    stats.lang_index(target)
    chosen = _residual_layers(layers, stats.n_layers)
    direction = residual_direction(stats, target, others)
    a = finite("alpha", alpha)
    vectors = {}
    for layer in chosen:
        v = (a * direction[layer]).float()
        if not torch.isfinite(v).all():
            raise LangNeuronsError(
                f"the residual mean at layer {layer} is not finite (NaN/inf in the recorded residual stream): pick another layer"
            )
        vectors[layer] = v
    return ResidualSteering(vectors, stats.model, positions)


def stack_rows(steerings: Sequence[ResidualSteering]) -> ResidualSteering:
    """One residual steering per row of a batch (same layers and positions): row ``i`` of the
    batch gets ``steerings[i]``'s vectors. For generating several targets' samples in one batch;
    the batch must have exactly ``len(steerings)`` rows."""
    if not steerings:
        raise LangNeuronsError("stack_rows needs at least one residual steering")
    first = steerings[0]
    for other in steerings[1:]:
        if (other.layers, other.positions, other.model.get("weights_sha256")) != (
            first.layers,
            first.positions,
            first.model.get("weights_sha256"),
        ):
            raise LangNeuronsError("stack_rows: every residual steering needs the same layers, positions and model")
    vectors = {layer: torch.stack([s.vectors[layer] for s in steerings]) for layer in first.layers}
    return ResidualSteering(vectors, first.model, first.positions)
