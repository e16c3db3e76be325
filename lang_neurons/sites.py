"""Stage 2: what a "neuron" is, at each hook site of a model.

A :class:`Site` names the hook points to read at each layer, says how to turn what they hold
into one ``[batch, pos, width]`` activation tensor, and how many neurons a layer has. Recording
and steering both go through it, so a neuron set found at a site is steered at that same site.

| site      | neurons per layer | what it is |
|-----------|-------------------|------------|
| `act`     | d_mlp   | the activation LAPE defines: `act_fn(gate)` for gated MLPs (read from `mlp.hook_pre`), `mlp.hook_post` for GELU MLPs |
| `post`    | d_mlp   | `mlp.hook_post`, the input of the down projection (`act_fn(gate) * up` for gated MLPs) |
| `pre`     | d_mlp   | `mlp.hook_pre`, the pre-activation (the gate projection output for gated MLPs) |
| `gate_up` | 2 d_mlp | gated MLPs only: gate outputs (index < d_mlp) then up outputs, the Linear outputs the AP paper reads |
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from lang_neurons.choices import SITES
from lang_neurons.errors import LangNeuronsError
from lang_neurons.models import HookedModel


def is_gated(model: HookedModel) -> bool:
    """Whether the model's MLPs are gated (Llama, Gemma, Qwen, Mistral, ...)."""
    return "blocks.0.mlp.hook_pre_linear" in model.hook_dict


def mlp_act_fn(model: HookedModel, layer: int = 0) -> Callable[[Tensor], Tensor]:
    """The MLP activation function of ``layer`` (the module's own, so it matches the forward)."""
    mlp = model.blocks[layer].mlp  # type: ignore[attr-defined]
    for owner in (mlp, getattr(mlp, "_original_component", None)):
        fn = getattr(owner, "act_fn", None) or getattr(owner, "act", None)
        if callable(fn):
            return fn
    from transformers.activations import ACT2FN

    name = getattr(model.cfg, "act_fn", None)
    if name in ACT2FN:
        return ACT2FN[name]
    raise LangNeuronsError(f"cannot find the MLP activation function of this model (cfg.act_fn={name!r})")


@dataclass(frozen=True)
class Site:
    """Where neurons are read and written. Build with :func:`resolve_site`."""

    name: str
    n_layers: int
    width: int
    d_mlp: int
    gated: bool
    act_fn: Callable[[Tensor], Tensor] | None = None

    @property
    def n_neurons(self) -> int:
        """Neurons over all layers."""
        return self.n_layers * self.width

    def read_hooks(self, layer: int) -> tuple[str, ...]:
        """Hook names whose values :meth:`activation` needs at ``layer``, in firing order."""
        p = f"blocks.{layer}.mlp."
        if self.name == "gate_up":
            return (p + "hook_pre", p + "hook_pre_linear")
        if self.name == "pre" or (self.name == "act" and self.gated):
            return (p + "hook_pre",)
        return (p + "hook_post",)

    def activation(self, values: list[Float[Tensor, "batch pos d_mlp"]]) -> Float[Tensor, "batch pos width"]:
        """The site's activation from the values of :meth:`read_hooks` (same order)."""
        if self.name == "gate_up":
            return torch.cat(values, dim=-1)
        if self.name == "act" and self.gated:
            assert self.act_fn is not None
            return self.act_fn(values[0])
        return values[0]

    def __repr__(self) -> str:
        return f"Site({self.name!r}: {self.n_layers} layers x {self.width} neurons, {'gated' if self.gated else 'non-gated'} MLP)"


def site_width(name: str, d_mlp: int) -> int:
    """Neurons per layer at site ``name`` of an MLP of width ``d_mlp`` (``gate_up``: 2 d_mlp)."""
    return 2 * d_mlp if name == "gate_up" else d_mlp


def resolve_site(model: HookedModel, name: str = "act") -> Site:
    """The :class:`Site` called ``name`` on ``model``; clear error for unknown or unusable names."""
    if name not in SITES:
        raise LangNeuronsError(f"unknown site {name!r}: choose one of {', '.join(SITES)}")
    gated = is_gated(model)
    if name == "gate_up" and not gated:
        raise LangNeuronsError("site 'gate_up' needs a gated MLP (Llama, Gemma, Qwen...): use 'act', 'pre' or 'post'")
    n_layers, d_mlp = int(model.cfg.n_layers), int(model.cfg.d_mlp)
    missing = [h for h in Site(name, n_layers, d_mlp, d_mlp, gated).read_hooks(0) if h not in model.hook_dict]
    if missing:
        raise LangNeuronsError(
            f"this model has no hook {missing[0]!r} (mixture-of-experts or unusual MLP?): "
            "lang_neurons needs per-neuron MLP hooks"
        )
    act_fn = mlp_act_fn(model) if gated and name == "act" else None
    return Site(name, n_layers, site_width(name, d_mlp), d_mlp, gated, act_fn)
