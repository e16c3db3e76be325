"""Site ``linear``: every Linear output of every block, before anything acts on it.

Kojima et al. (NAACL 2024) treat each output column of each Linear layer of a block as one
neuron. Here the neuron axis of a layer is the concatenation of the block's Linear outputs in
the fixed order of :data:`UNIT_ORDER`, as far as the block has them:

| kind | Linear | bridge hook point (``blocks.<l>.``...) | where |
|---|---|---|---|
| ``attn.q``, ``attn.k``, ``attn.v`` | q/k/v projections | ``attn.q.hook_out`` ... | before reshape to heads, RoPE and any q/k norm |
| ``attn.o`` | output projection | ``attn.o.hook_out`` | before any post-attention norm and the residual add |
| ``mlp.gate`` | gate projection (gated MLPs) | ``mlp.gate.hook_out`` | before the activation |
| ``mlp.up`` / ``mlp.in`` | up projection (gated) / input Linear (non-gated) | ``mlp.in.hook_out`` | before the activation / product |
| ``mlp.down`` | down / output projection | ``mlp.out.hook_out`` | before any post-MLP norm and the residual add |

Where one Linear computes q, k and v together (GPT-2's ``c_attn``, BLOOM's ``query_key_value``),
the bridge's ``attn.qkv.hook_out`` never fires; it fires ``attn.q/k/v.hook_out`` on the split,
so those are the units there too: GPT-2's q, k, v are ``c_attn``'s columns in order, BLOOM's
the per-head interleaved ``[head, 3, d_head]`` columns of ``query_key_value`` regrouped.

Which kinds a model has, and how wide each is, is its *unit table* (:attr:`LinearSite.units`):
``(kind, width)`` pairs; neuron ``i`` of a layer is column ``i - offset`` of the unit whose
``[offset, offset + width)`` holds it (:meth:`LinearSite.unit_of`, :meth:`LinearSite.index_of`).
The table is measured on the model (one probe forward pass) and kept in the model fingerprint of
the statistics and neuron sets found at this site (key ``linear_units``), so steering rebuilds
the same site, with the same hook names, from a neuron set alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from jaxtyping import Float, Int
from torch import Tensor

from lang_neurons.errors import LangNeuronsError
from lang_neurons.models import HookedModel, HookFn, attached, model_fingerprint
from lang_neurons.sites.edits import affine_hook
from lang_neurons.sites.mlp import is_gated

UNIT_ORDER: tuple[str, ...] = (
    "attn.q",
    "attn.k",
    "attn.v",
    "attn.o",
    "mlp.gate",
    "mlp.up",
    "mlp.in",
    "mlp.down",
)
"""The order of the module kinds along a layer's neuron axis at site ``linear``."""

UNIT_MODULES: dict[str, str] = {
    "attn.q": "attn.q",
    "attn.k": "attn.k",
    "attn.v": "attn.v",
    "attn.o": "attn.o",
    "mlp.gate": "mlp.gate",
    "mlp.up": "mlp.in",
    "mlp.in": "mlp.in",
    "mlp.down": "mlp.out",
}
"""Each module kind's bridge submodule (under ``blocks.<l>``); its output is ``<module>.hook_out``."""

FINGERPRINT_KEY = "linear_units"
"""The model-fingerprint key that holds the unit table of site ``linear``."""


def _kinds(hook_dict: Any, gated: bool) -> list[str]:
    def has(kind: str) -> bool:
        return f"blocks.0.{UNIT_MODULES[kind]}.hook_out" in hook_dict

    # A joint qkv projection (GPT-2, BLOOM) has an `attn.qkv.hook_out` in the bridge that never
    # fires: the bridge fires q, k and v, split, instead. So q, k and v are the units everywhere.
    mlp = ["mlp.gate", "mlp.up", "mlp.down"] if gated else ["mlp.in", "mlp.down"]
    kinds = ["attn.q", "attn.k", "attn.v", "attn.o", *mlp]
    missing = [k for k in kinds if not has(k)]
    if missing:
        raise LangNeuronsError(
            f"this model has no hook point 'blocks.0.{UNIT_MODULES[missing[0]]}.hook_out' ({missing[0]}): "
            "site 'linear' needs the TransformerLens bridge's Linear hooks (TransformerLens 4); use site 'act'"
        )
    return kinds


def _flat(x: Tensor) -> Tensor:
    """A hook value as ``[batch, pos, width]`` (the bridge shows q/k/v split into heads)."""
    return x if x.dim() == 3 else x.reshape(*x.shape[:2], -1)


def _flat_hook(fn: HookFn) -> HookFn:
    """``fn``, an edit of a ``[batch, pos, width]`` value, on a value of any ``[batch, pos, ...]`` shape."""

    def hook(x: Tensor, hook: Any = None) -> Tensor | None:
        if x.dim() == 3:
            return fn(x, hook)
        out = fn(x.reshape(*x.shape[:2], -1), hook)
        return None if out is None else out.reshape(x.shape)

    hook.positions = fn.positions  # type: ignore[attr-defined]
    return hook


@dataclass(frozen=True)
class LinearSite:
    """Every Linear output of every block (see the module docstring). Build with
    :meth:`from_model` or :meth:`from_fingerprint`."""

    n_layers: int
    units: tuple[tuple[str, int], ...]
    name: ClassVar[str] = "linear"

    @classmethod
    def from_model(cls, model: HookedModel) -> LinearSite:
        """The site on ``model``: which Linear modules its blocks have (from ``model.hook_dict``)
        and their output widths, measured by one probe forward pass of two tokens; clear error
        when a hook point is missing or a width differs between layers."""
        n_layers = int(model.cfg.n_layers)
        kinds = _kinds(model.hook_dict, is_gated(model))
        widths: dict[tuple[int, str], int] = {}

        def probe(layer: int, kind: str) -> HookFn:
            def hook(x: Tensor, hook: Any = None) -> None:
                widths[(layer, kind)] = int(_flat(x).shape[-1])

            return hook

        hooks = [
            (f"blocks.{layer}.{UNIT_MODULES[kind]}.hook_out", probe(layer, kind))
            for layer in range(n_layers)
            for kind in kinds
        ]
        device = torch.device(getattr(model.cfg, "device", None) or "cpu")
        ids = torch.ones((1, 2), dtype=torch.long, device=device)
        with torch.inference_mode(), attached(model, hooks):
            model(ids, attention_mask=torch.ones_like(ids))
        units = []
        for kind in kinds:
            seen = {widths.get((layer, kind)) for layer in range(n_layers)}
            if None in seen or len(seen) != 1:
                raise LangNeuronsError(
                    f"the {kind} outputs of this model's layers have widths {sorted(seen, key=str)}: "
                    "site 'linear' needs every layer's Linear modules to fire once, with one width"
                )
            units.append((kind, int(seen.pop())))  # type: ignore[arg-type]
        return cls(n_layers, tuple(units))

    @classmethod
    def from_fingerprint(cls, fingerprint: dict[str, Any]) -> LinearSite:
        """The site kept in a model fingerprint (key :data:`FINGERPRINT_KEY`, written by
        :meth:`fingerprint_keys` with the statistics recorded at this site)."""
        table = fingerprint.get(FINGERPRINT_KEY)
        if not table:
            raise LangNeuronsError(
                "this model fingerprint has no unit table of site 'linear' (key 'linear_units'): "
                "record the statistics at site 'linear' (ln.record(model, corpus, site='linear'))"
            )
        units = tuple((str(kind), int(width)) for kind, width in table)
        unknown = [kind for kind, _ in units if kind not in UNIT_MODULES]
        if unknown:
            raise LangNeuronsError(f"unknown module kind {unknown[0]!r} in the unit table of site 'linear'")
        return cls(int(fingerprint.get("n_layers", 0)), units)

    def fingerprint_keys(self) -> dict[str, Any]:
        """What the model fingerprint of statistics recorded at this site adds: the unit table."""
        return {FINGERPRINT_KEY: [[kind, width] for kind, width in self.units]}

    # -- the unit index ----------------------------------------------------------------------
    @property
    def width(self) -> int:
        """Neurons per layer: the sum of the Linear output widths."""
        return sum(w for _, w in self.units)

    @property
    def n_neurons(self) -> int:
        """Neurons over all layers."""
        return self.n_layers * self.width

    @property
    def kinds(self) -> tuple[str, ...]:
        """The module kinds of a layer, in neuron order."""
        return tuple(kind for kind, _ in self.units)

    @property
    def offsets(self) -> tuple[int, ...]:
        """Where each unit's columns start on a layer's neuron axis."""
        out, start = [], 0
        for _, w in self.units:
            out.append(start)
            start += w
        return tuple(out)

    def unit_of(self, index: int) -> tuple[str, int]:
        """``(kind, column)`` of neuron ``index`` of a layer."""
        if not 0 <= index < self.width:
            raise LangNeuronsError(f"neuron index {index} is out of range for a layer of {self.width} neurons")
        for (kind, w), start in zip(self.units, self.offsets):
            if index < start + w:
                return kind, index - start
        raise AssertionError("unreachable")

    def index_of(self, kind: str, column: int) -> int:
        """The neuron index of column ``column`` of module ``kind`` in a layer (inverse of :meth:`unit_of`)."""
        if kind not in self.kinds:
            raise LangNeuronsError(f"this site has no module {kind!r}: it has {', '.join(self.kinds)}")
        i = self.kinds.index(kind)
        if not 0 <= column < self.units[i][1]:
            raise LangNeuronsError(f"column {column} is out of range for {kind} ({self.units[i][1]} outputs)")
        return self.offsets[i] + column

    def unit_ids(self) -> Int[Tensor, " neuron"]:
        """For each neuron of a layer, the position of its unit in :attr:`units`."""
        return torch.repeat_interleave(torch.arange(len(self.units)), torch.tensor([w for _, w in self.units]))

    # -- hooks -------------------------------------------------------------------------------
    def hook(self, layer: int, kind: str) -> str:
        """The hook point that carries the output of module ``kind`` of block ``layer``."""
        return f"blocks.{layer}.{UNIT_MODULES[kind]}.hook_out"

    def read_hooks(self, layer: int) -> tuple[str, ...]:
        """Hook names whose values :meth:`activation` needs at ``layer``, in :attr:`units` order."""
        return tuple(self.hook(layer, kind) for kind in self.kinds)

    def columns(self, slot: int) -> slice:
        """The neurons of a layer that the value of read hook ``slot`` fills."""
        return slice(self.offsets[slot], self.offsets[slot] + self.units[slot][1])

    def part(self, value: Float[Tensor, "batch pos *d"]) -> Float[Tensor, "batch pos w"]:
        """One read hook's value as ``[batch, pos, width]`` (q/k/v come split into heads)."""
        return _flat(value)

    def activation(self, values: list[Float[Tensor, "batch pos *d"]]) -> Float[Tensor, "batch pos width"]:
        """A layer's neurons from the values of :meth:`read_hooks` (same order), side by side."""
        return torch.cat([_flat(v) for v in values], dim=-1)

    def write_hooks(
        self,
        layer: int,
        index: Int[Tensor, " k"],
        a: Float[Tensor, " k"],
        b: Float[Tensor, " k"],
        positions: str = "all",
    ) -> list[tuple[str, HookFn]]:
        """The ``(hook_name, fn)`` pairs that edit ``x[..., index] = a * x[..., index] + b`` of
        layer ``layer``'s neurons (``index`` ascending), at ``positions``: one hook per module
        with selected neurons, on that module's output, at its columns ``index - offset``."""
        if len(index) and (int(index.min()) < 0 or int(index.max()) >= self.width):
            raise LangNeuronsError(
                f"neuron index {int(index.max())} is out of range for site 'linear' with {self.width} neurons "
                "per layer: this steering was built for another model"
            )
        hooks = []
        for (kind, w), start in zip(self.units, self.offsets):
            sel = (index >= start) & (index < start + w)
            if sel.any():
                fn = affine_hook(index[sel] - start, a[sel], b[sel], positions)
                hooks.append((self.hook(layer, kind), _flat_hook(fn)))
        return hooks

    def __repr__(self) -> str:
        units = ", ".join(f"{k} {w}" for k, w in self.units)
        return f"LinearSite({self.n_layers} layers x {self.width} neurons: {units})"


def site_units(site: str, fingerprint: dict[str, Any]) -> tuple[tuple[str, int], ...]:
    """The ``(kind, width)`` units of a layer's neurons at ``site`` on the model that
    ``fingerprint`` describes: the Linear modules at ``linear``, gate then up at ``gate_up``,
    and one unit named ``mlp.<site>`` at the other MLP sites."""
    if site == "linear":
        return LinearSite.from_fingerprint(fingerprint).units
    d_mlp = int(fingerprint.get("d_mlp", 0))
    if site == "gate_up":
        return (("mlp.gate", d_mlp), ("mlp.up", d_mlp))
    return ((f"mlp.{site}", d_mlp),)


def width_at(site: str, fingerprint: dict[str, Any]) -> int | None:
    """Neurons per layer at ``site`` on the model that ``fingerprint`` describes; ``None`` when the
    fingerprint does not say (no ``d_mlp``; for ``linear``, no unit table)."""
    if site == "linear":
        table = fingerprint.get(FINGERPRINT_KEY)
        return sum(int(w) for _, w in table) if table else None
    if fingerprint.get("d_mlp") is None:
        return None
    return sum(w for _, w in site_units(site, fingerprint))


def layer_width(site: str, fingerprint: dict[str, Any]) -> int:
    """Neurons per layer at ``site`` on the model that ``fingerprint`` describes; clear error when
    it cannot say (``linear`` without a unit table)."""
    if site == "linear":
        return LinearSite.from_fingerprint(fingerprint).width
    return sum(w for _, w in site_units(site, fingerprint))


def site_fingerprint(model: HookedModel, site: str) -> dict[str, Any]:
    """:func:`~lang_neurons.models.model_fingerprint` of ``model``, plus what site ``site`` keeps in
    it (the unit table for ``linear``; nothing for the MLP sites)."""
    extra = LinearSite.from_model(model).fingerprint_keys() if site == "linear" else {}
    return {**model_fingerprint(model), **extra}
