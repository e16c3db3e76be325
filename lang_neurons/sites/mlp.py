"""The MLP neuron sites: :class:`Site`, built from a model (:func:`resolve_site`) or from a
model fingerprint (:meth:`Site.from_fingerprint`), and the one test of gatedness and the one
activation function both use."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from lang_neurons.choices import SITES
from lang_neurons.errors import LangNeuronsError
from lang_neurons.models import HookedModel, HookFn
from lang_neurons.sites.edits import affine_hook, gated_act_hooks

_PROBE = torch.linspace(-12.0, 12.0, 4097)  # where a module's own activation must equal the config's


def is_gated(model: HookedModel) -> bool:
    """Whether the model's MLPs are gated (Llama, Gemma, Qwen, Mistral, ...): ``hook_post = act_fn(gate) * up``."""
    return "blocks.0.mlp.hook_pre_linear" in model.hook_dict


def act_fn_name(model: HookedModel) -> str:
    """The name of the model's MLP activation, ``cfg.act_fn``, as the model fingerprint keeps it."""
    return str(getattr(model.cfg, "act_fn", ""))


def activation_function(name: Any, where: str = "the model's config") -> Callable[[Tensor], Tensor]:
    """The MLP activation called ``name`` (``cfg.act_fn``, as the model fingerprint keeps it),
    through ``transformers.activations.ACT2FN``; clear error for a name it does not know."""
    from transformers.activations import ACT2FN

    if name not in ACT2FN:
        raise LangNeuronsError(f"unknown MLP activation {name!r} in {where}: use site 'post' or 'pre'")
    return ACT2FN[name]


def _own_act_fn(model: HookedModel, layer: int) -> Callable[[Tensor], Tensor] | None:
    mlp = model.blocks[layer].mlp  # type: ignore[attr-defined]
    for owner in (mlp, getattr(mlp, "_original_component", None)):
        fn = getattr(owner, "act_fn", None) or getattr(owner, "act", None)
        if callable(fn):
            return fn
    return None


def mlp_act_fn(model: HookedModel) -> Callable[[Tensor], Tensor]:
    """The MLP activation function of ``model``: ``cfg.act_fn`` through :func:`activation_function`,
    checked on a probe tensor against the function every layer's MLP module applies itself.

    So recording (which applies it to ``hook_pre``) and steering (which gets it from the model
    fingerprint's ``act_fn``, the same name) use one function, and it is the forward pass's own.
    Raises a clear error when a module's own activation disagrees with the config's.
    """
    name = act_fn_name(model)
    fn = activation_function(name)
    expected = fn(_PROBE)
    for layer in range(int(model.cfg.n_layers)):
        own = _own_act_fn(model, layer)
        if own is not None and not torch.equal(own(_PROBE), expected):
            raise LangNeuronsError(
                f"the MLP of layer {layer} applies an activation that differs from cfg.act_fn={name!r} "
                "(the config names another function): lang_neurons cannot steer act_fn(gate) faithfully "
                "on this model; use site 'post' or 'pre'"
            )
    return fn


@dataclass(frozen=True)
class Site:
    """Where neurons are read and written. Build with :func:`resolve_site` (from a model) or
    :meth:`from_fingerprint` (from the fingerprint a neuron set carries)."""

    name: str
    n_layers: int
    width: int
    d_mlp: int
    gated: bool
    act_fn: Callable[[Tensor], Tensor] | None = None

    @classmethod
    def from_fingerprint(cls, name: str, fingerprint: dict[str, Any]) -> Site:
        """The site called ``name`` on the model that ``fingerprint`` (:func:`lang_neurons.models.model_fingerprint`)
        describes: its ``gated``, ``d_mlp``, ``n_layers`` and, for ``act`` of a gated MLP, ``act_fn``.
        ``linear`` gives a :class:`~lang_neurons.sites.linear.LinearSite` (from the unit table the
        fingerprint of statistics recorded there keeps)."""
        if name == "linear":
            from lang_neurons.sites.linear import LinearSite

            return LinearSite.from_fingerprint(fingerprint)  # type: ignore[return-value]
        if name not in SITES:
            raise LangNeuronsError(f"unknown site {name!r}: choose one of {', '.join(SITES)}")
        gated, d_mlp = bool(fingerprint.get("gated")), int(fingerprint.get("d_mlp", 0))
        act_fn = (
            activation_function(fingerprint.get("act_fn"), "the neuron set's model fingerprint")
            if name == "act" and gated
            else None
        )
        return cls(name, int(fingerprint.get("n_layers", 0)), site_width(name, d_mlp), d_mlp, gated, act_fn)

    @property
    def n_neurons(self) -> int:
        """Neurons over all layers."""
        return self.n_layers * self.width

    def fingerprint_keys(self) -> dict[str, Any]:
        """What the model fingerprint of statistics recorded at this site adds: nothing (the
        MLP sites follow from ``d_mlp`` and ``gated``)."""
        return {}

    def _hook(self, layer: int, point: str) -> str:
        return f"blocks.{layer}.mlp.{point}"

    def read_hooks(self, layer: int) -> tuple[str, ...]:
        """Hook names whose values :meth:`activation` needs at ``layer``, in firing order."""
        if self.name == "gate_up":
            return (self._hook(layer, "hook_pre"), self._hook(layer, "hook_pre_linear"))
        if self.name == "pre" or (self.name == "act" and self.gated):
            return (self._hook(layer, "hook_pre"),)
        return (self._hook(layer, "hook_post"),)

    def activation(self, values: list[Float[Tensor, "batch pos d_mlp"]]) -> Float[Tensor, "batch pos width"]:
        """The site's activation from the values of :meth:`read_hooks` (same order)."""
        if self.name == "gate_up":
            return torch.cat(values, dim=-1)
        if self.name == "act" and self.gated:
            assert self.act_fn is not None
            return self.act_fn(values[0])
        return values[0]

    def act_modules(self, model: HookedModel) -> list[torch.nn.Module | None]:
        """Per layer, the module of ``model``'s MLP whose output is this site's activation:
        ``act_fn`` of a gated MLP at site ``act``, so that recording reads the forward pass's own
        ``act_fn(gate)`` instead of applying :attr:`act_fn` to ``hook_pre`` a second time.
        ``None`` where there is no such module (other sites, an activation that is a plain
        function, as on TL3's ``HookedTransformer``)."""
        if not (self.name == "act" and self.gated):
            return [None] * self.n_layers
        own = [_own_act_fn(model, layer) for layer in range(self.n_layers)]
        # Only a module of the same kind as :attr:`act_fn` (which the site's writes and the
        # fallback apply): another module there would give other values than the site's.
        modules = [fn if isinstance(fn, torch.nn.Module) else None for fn in own]
        return [m if type(m) is type(self.act_fn) else None for m in modules]

    def write_hooks(
        self,
        layer: int,
        index: Int[Tensor, " k"],
        a: Float[Tensor, " k"],
        b: Float[Tensor, " k"],
        positions: str = "all",
    ) -> list[tuple[str, HookFn]]:
        """The ``(hook_name, fn)`` pairs that edit ``x[..., index] = a * x[..., index] + b`` of this
        site's activation at ``layer`` (``index`` ascending), at ``positions`` (``all``, ``prompt``
        or ``generated``).

        ``act`` of a gated MLP reads ``gate`` at ``hook_pre`` and ``up`` at ``hook_pre_linear``
        and writes ``(a * act_fn(gate) + b) * up`` at ``hook_post``; ``gate_up`` edits the gate
        neurons (``index < d_mlp``) at ``hook_pre`` and the up neurons at ``hook_pre_linear``.
        """
        if self.name == "act" and self.gated:
            assert self.act_fn is not None
            names = (
                self._hook(layer, "hook_pre"),
                self._hook(layer, "hook_pre_linear"),
                self._hook(layer, "hook_post"),
            )
            return gated_act_hooks(names, index, a, b, self.act_fn, positions)
        if self.name == "gate_up":
            hooks = []
            gate, up = index < self.d_mlp, index >= self.d_mlp
            for point, sel, shift in (("hook_pre", gate, 0), ("hook_pre_linear", up, self.d_mlp)):
                if sel.any():
                    hooks.append((self._hook(layer, point), affine_hook(index[sel] - shift, a[sel], b[sel], positions)))
            return hooks
        return [
            (self._hook(layer, "hook_pre" if self.name == "pre" else "hook_post"), affine_hook(index, a, b, positions))
        ]

    def __repr__(self) -> str:
        return f"Site({self.name!r}: {self.n_layers} layers x {self.width} neurons, {'gated' if self.gated else 'non-gated'} MLP)"


def site_width(name: str, d_mlp: int) -> int:
    """Neurons per layer at site ``name`` of an MLP of width ``d_mlp`` (``gate_up``: 2 d_mlp).

    Site ``linear`` depends on the attention too: its width comes from the unit table of a
    model fingerprint (:func:`lang_neurons.sites.linear.width_at`)."""
    if name == "linear":
        raise LangNeuronsError(
            "the width of site 'linear' does not follow from d_mlp: take it from the model fingerprint of "
            "statistics recorded at site 'linear' (lang_neurons.sites.width_at)"
        )
    return 2 * d_mlp if name == "gate_up" else d_mlp


def resolve_site(model: HookedModel, name: str = "act") -> Site:
    """The :class:`Site` called ``name`` on ``model``; clear error for unknown or unusable names.

    ``linear`` gives a :class:`~lang_neurons.sites.linear.LinearSite` (every Linear output of
    every block)."""
    if name == "linear":
        from lang_neurons.sites.linear import LinearSite

        return LinearSite.from_model(model)  # type: ignore[return-value]
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
