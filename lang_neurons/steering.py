"""Stage 7: steer the output language by intervening on language-specific neurons.

Every factory returns a :class:`Steering`: a list of ``(hook_name, fn)`` pairs, usable as

    model.run_with_hooks(tokens, fwd_hooks=hooks)
    with model.hooks(fwd_hooks=hooks):          # or: with ln.steer(model, hooks):
        model.generate(...)

Each intervention is an affine map of the selected neurons, ``x -> a * x + b``: pinning to a
value (``a = 0``), adding (``a = 1``) and scaling (``b = 0``). Steerings compose with ``+``
(the right one is applied after the left one), so "deactivate the source and add the target"
is one set of hooks that edits each layer once.

Interventions act on the quantity the neurons were found on (the neuron set's site). For the
default site ``act`` of a gated MLP that is ``act_fn(gate)``; since ``hook_post = act_fn(gate) *
up``, the edit is written at ``hook_post`` as ``(a * act_fn(gate) + b) * up`` for the selected
neurons, reading ``gate`` at ``hook_pre`` and ``up`` at ``hook_pre_linear`` in the same pass.

The residual-stream baseline is not a neuron intervention: :func:`residual_diffmean` returns a
:class:`ResidualSteering`, the same kind of ``(hook_name, fn)`` list, that adds one vector per
layer at ``blocks.<l>.hook_resid_post`` (CLaS-Bench's DiffMean).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from jaxtyping import Float
from torch import Tensor

from lang_neurons.choices import STEERING_METHODS as METHODS
from lang_neurons.errors import LangNeuronsError
from lang_neurons.models import HookedModel, attached, check_fingerprint
from lang_neurons.neurons import NeuronSet
from lang_neurons.recording import ActivationStats

Positions = Literal["all", "prompt", "generated"]
POSITIONS = ("all", "prompt", "generated")


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
    """``(hook_name, fn)`` pairs plus the edits they make; ``+`` composes two steerings."""

    def __init__(self, layers: dict[int, _Layer], site: str, model: dict[str, Any], positions: str = "all"):
        self.layers, self.site, self.model, self.positions = layers, site, model, positions
        super().__init__(_build_hooks(layers, site, model, positions))

    def __add__(self, other: Any) -> Steering:  # type: ignore[override]
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


def _at(x: Tensor, edited: Tensor, part: slice) -> Tensor:
    """``edited`` on the positions ``part`` of ``x`` ([..., pos, d]), ``x`` elsewhere."""
    if part == slice(None):
        return edited
    out = x.clone()
    out[..., part, :] = edited[..., part, :]
    return out


def _edit_fn(edit: _Layer) -> Callable[[Tensor], Tensor]:
    cache: dict[tuple[Any, Any], tuple[Tensor, Tensor, Tensor]] = {}

    def params(x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        key = (x.device, x.dtype)
        if key not in cache:
            if int(edit.index.max()) >= x.shape[-1]:
                raise LangNeuronsError(
                    f"neuron index {int(edit.index.max())} is out of range for a hook point with {x.shape[-1]} "
                    "neurons: this steering was built for another model"
                )
            cache[key] = (edit.index.to(x.device), edit.a.to(x.device, x.dtype), edit.b.to(x.device, x.dtype))
        return cache[key]

    def apply(x: Tensor) -> Tensor:
        index, a, b = params(x)
        return x.index_copy(-1, index, x.index_select(-1, index) * a + b)

    apply.params = params  # type: ignore[attr-defined]
    return apply


def _build_hooks(layers: dict[int, _Layer], site: str, model: dict[str, Any], positions: str) -> list[tuple[str, Any]]:
    hooks: list[tuple[str, Any]] = []
    gated, d_mlp = bool(model.get("gated")), int(model.get("d_mlp", 0))
    for layer, edit in sorted(layers.items()):
        p = f"blocks.{layer}.mlp."
        if site == "act" and gated:
            hooks += _gated_act_hooks(p, edit, _act_fn(model), positions)
        elif site == "gate_up":
            gate, up = edit.index < d_mlp, edit.index >= d_mlp
            for name, sel, shift in (("hook_pre", gate, 0), ("hook_pre_linear", up, d_mlp)):
                if sel.any():
                    hooks.append((p + name, _direct_hook(_Layer(edit.index[sel] - shift, edit.a[sel], edit.b[sel]), positions)))
        else:
            name = "hook_pre" if site == "pre" else "hook_post"
            hooks.append((p + name, _direct_hook(edit, positions)))
    return hooks


def _direct_hook(edit: _Layer, positions: str) -> Callable[..., Tensor | None]:
    apply = _edit_fn(edit)
    tracker = PositionTracker(positions)

    def hook(x: Tensor, hook: Any = None) -> Tensor | None:
        part = tracker.select(x.shape[-2])
        return None if part is None else _at(x, apply(x), part)

    hook.positions = tracker  # type: ignore[attr-defined]
    return hook


def _gated_act_hooks(prefix: str, edit: _Layer, act_fn: Callable[[Tensor], Tensor], positions: str) -> list[tuple[str, Any]]:
    """Edit ``act_fn(gate)`` of a gated MLP at ``hook_post``: ``post = (a*act + b) * up`` there."""
    apply = _edit_fn(edit)
    seen: dict[str, Tensor] = {}

    def read_gate(x: Tensor, hook: Any = None) -> None:
        index = apply.params(x)[0]  # type: ignore[attr-defined]
        seen["act"] = act_fn(x.index_select(-1, index))

    def read_up(x: Tensor, hook: Any = None) -> None:
        seen["up"] = x.index_select(-1, apply.params(x)[0])  # type: ignore[attr-defined]

    tracker = PositionTracker(positions)

    def write_post(x: Tensor, hook: Any = None) -> Tensor | None:
        act, up = seen.pop("act", None), seen.pop("up", None)
        if act is None or up is None:
            raise LangNeuronsError("steering at site 'act' needs the hooks on hook_pre and hook_pre_linear too: pass the whole list")
        part = tracker.select(x.shape[-2])
        if part is None:
            return None
        index, a, b = apply.params(x)  # type: ignore[attr-defined]
        return _at(x, x.index_copy(-1, index, (act * a + b) * up), part)

    write_post.positions = tracker  # type: ignore[attr-defined]
    return [(prefix + "hook_pre", read_gate), (prefix + "hook_pre_linear", read_up), (prefix + "hook_post", write_post)]


def _act_fn(model: dict[str, Any]) -> Callable[[Tensor], Tensor]:
    from transformers.activations import ACT2FN

    name = model.get("act_fn")
    if name not in ACT2FN:
        raise LangNeuronsError(f"unknown MLP activation {name!r} in the neuron set's model fingerprint: use site 'post' or 'pre'")
    return ACT2FN[name]


# -- factories ---------------------------------------------------------------------------------


def _selection(neurons: NeuronSet, langs: str | Sequence[str], which: str) -> Tensor:
    names = [langs] if isinstance(langs, str) else list(langs)
    if not names:
        raise LangNeuronsError("no language given whose neurons to steer")
    if which not in ("all", "top", "bottom"):
        raise LangNeuronsError(f"which must be 'all', 'top' or 'bottom', not {which!r}")
    mask = torch.zeros(neurons.n_layers, neurons.width, dtype=torch.bool)
    for lang in names:
        i = neurons.lang_index(lang)
        m, bottom = neurons.mask[i], neurons.bottom[i]
        mask |= {"all": m, "top": m & ~bottom, "bottom": bottom}[which]
    return mask


def _finite(name: str, value: float) -> float:
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        raise LangNeuronsError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def _per_neuron(name: str, values: Tensor | float, neurons: NeuronSet) -> Tensor:
    """``values`` as a ``[layer, width]`` float tensor (a scalar is broadcast)."""
    if isinstance(values, (int, float)):
        return torch.full((neurons.n_layers, neurons.width), _finite(name, values))
    values = torch.as_tensor(values).float().cpu()
    if values.shape != (neurons.n_layers, neurons.width):
        raise LangNeuronsError(
            f"{name} has shape {tuple(values.shape)} but the neuron set is [{neurons.n_layers}, {neurons.width}]: "
            "pass per-neuron values of one language, e.g. stats.mean()[i]"
        )
    return values


def _steering(neurons: NeuronSet, mask: Tensor, a: Tensor, b: Tensor, positions: str) -> Steering:
    if positions not in POSITIONS:
        raise LangNeuronsError(f"positions must be one of {', '.join(POSITIONS)}, not {positions!r}")
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
    neurons: NeuronSet, lang: str | Sequence[str], values: Float[Tensor, "layer neuron"] | float,
    *, which: str = "all", positions: Positions = "all",
) -> Steering:
    """Pin ``lang``'s neurons to ``values`` (Kojima et al.: the target's median pooled activation,
    ``stats.pooled_median()[i]``; top-k and bottom-k together)."""
    mask = _selection(neurons, lang, which)
    return _steering(neurons, mask, torch.zeros(mask.shape), _per_neuron("values", values, neurons), positions)


def deactivate(
    neurons: NeuronSet, lang: str | Sequence[str], value: float = 0.0, *, which: str = "all", positions: Positions = "all"
) -> Steering:
    """Set ``lang``'s neurons to a constant (Tang et al.: 0; Gurgurov et al. also use negatives)."""
    return override(neurons, lang, _finite("value", value), which=which, positions=positions)


def add(
    neurons: NeuronSet, lang: str | Sequence[str], alpha: float, means: Float[Tensor, "layer neuron"],
    *, which: str = "all", positions: Positions = "all",
) -> Steering:
    """Additive language arithmetic: ``x += alpha * means`` on ``lang``'s neurons."""
    mask = _selection(neurons, lang, which)
    b = _finite("alpha", alpha) * _per_neuron("means", means, neurons)
    return _steering(neurons, mask, torch.ones(mask.shape), b, positions)


def scale(neurons: NeuronSet, lang: str | Sequence[str], beta: float, *, which: str = "all", positions: Positions = "all") -> Steering:
    """Multiplicative steering: ``x *= beta`` on ``lang``'s neurons."""
    mask = _selection(neurons, lang, which)
    return _steering(neurons, mask, torch.full(mask.shape, _finite("beta", beta)), torch.zeros(mask.shape), positions)


def replace(
    neurons: NeuronSet, lang: str | Sequence[str], means: Float[Tensor, "layer neuron"],
    *, which: str = "all", positions: Positions = "all",
) -> Steering:
    """Replace ``lang``'s neurons by ``means`` (e.g. the target language's mean activation)."""
    return override(neurons, lang, means, which=which, positions=positions)


def diffmean(
    neurons: NeuronSet, lang: str | Sequence[str], means_target: Float[Tensor, "layer neuron"],
    means_others: Float[Tensor, "layer neuron"], alpha: float = 1.0, *, which: str = "all", positions: Positions = "all",
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
        raise LangNeuronsError(f"statistics are at site {stats.site!r} but the neurons at {neurons.site!r}: record at the neurons' site")
    if (stats.n_layers, stats.width) != (neurons.n_layers, neurons.width):
        raise LangNeuronsError("statistics and neuron set come from models of different sizes")
    t = neurons.lang_index(target)
    ti = stats.lang_index(target)
    sources = [x for x in neurons.langs if x != target] if source is None else ([source] if isinstance(source, str) else list(source))
    for s in sources:
        neurons.lang_index(s)
    off_mask = _selection(neurons, sources, "all") & ~neurons.mask[t] if sources else torch.zeros_like(neurons.mask[t])
    steering = _steering(neurons, off_mask, torch.zeros(off_mask.shape), torch.full(off_mask.shape, _finite("deactivate_value", deactivate_value)), positions)
    means = stats.mean()
    if method == "deactivate":
        return steering
    if method == "add":
        on = add(neurons, target, alpha, means[ti], positions=positions)
    elif method == "scale":
        on = scale(neurons, target, alpha, positions=positions)
    elif method == "replace":
        on = replace(neurons, target, means[ti], positions=positions)
    elif method == "diffmean":
        others = torch.cat([means[:ti], means[ti + 1 :]]).mean(0)
        on = diffmean(neurons, target, means[ti], others, alpha, positions=positions)
    else:
        on = override(neurons, target, stats.pooled_median()[ti], positions=positions)
    return steering + on if steering.layers else on


# -- the residual stream ----------------------------------------------------------------------


class ResidualSteering(list):
    """``(hook_name, fn)`` pairs that add one vector per layer to the residual stream at
    ``blocks.<l>.hook_resid_post`` (every position, or as ``positions`` says); ``+`` with another
    ``ResidualSteering`` adds the vectors of shared layers (additions commute).

    Attributes:
        vectors: ``{layer: vector}``, each ``[d_model]`` float32 on the CPU (copied to the
            activation's device and dtype on first use).
        model: the fingerprint of the model the statistics were recorded on.
        positions: ``all``, ``prompt`` or ``generated`` (see :func:`add`).
    """

    def __init__(self, vectors: dict[int, Float[Tensor, "d_model"]], model: dict[str, Any], positions: str = "all"):
        self.vectors, self.model, self.positions = dict(sorted(vectors.items())), model, positions
        super().__init__(_residual_hook(layer, v, positions) for layer, v in self.vectors.items())

    def __add__(self, other: Any) -> ResidualSteering:  # type: ignore[override]
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


def _residual_hook(layer: int, vector: Tensor, positions: str) -> tuple[str, Callable[..., Tensor | None]]:
    cache: dict[tuple[Any, Any], Tensor] = {}
    tracker = PositionTracker(positions)

    def hook(x: Tensor, hook: Any = None) -> Tensor | None:
        part = tracker.select(x.shape[-2])
        if part is None:
            return None
        key = (x.device, x.dtype)
        if key not in cache:
            if x.shape[-1] != vector.shape[-1]:
                raise LangNeuronsError(
                    f"residual vector of width {vector.shape[-1]} for a residual stream of width {x.shape[-1]}: "
                    "this steering was built for another model"
                )
            cache[key] = vector.to(x.device, x.dtype)
        v = cache[key]
        if v.dim() == 2:  # one vector per batch row (stack_rows)
            if x.shape[0] != v.shape[0]:
                raise LangNeuronsError(f"this residual steering has one vector per row of a {v.shape[0]}-row batch, "
                                       f"but the batch has {x.shape[0]} rows: generate exactly those rows in one batch")
            v = v[:, None, :]
        return _at(x, x + v, part)

    hook.positions = tracker  # type: ignore[attr-defined]
    return f"blocks.{layer}.hook_resid_post", hook


def _residual_layers(layers: int | Sequence[int], n_layers: int) -> list[int]:
    chosen = list(layers) if isinstance(layers, Sequence) and not isinstance(layers, str) else [layers]
    if not chosen:
        raise LangNeuronsError("no residual layer given: pass a layer or a list/range of layers")
    for layer in chosen:
        if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < n_layers:
            raise LangNeuronsError(f"residual layer {layer!r} is out of range: this model has {n_layers} layers (0 to {n_layers - 1})")
    if len(set(chosen)) != len(chosen):
        raise LangNeuronsError(f"residual layers {chosen} repeat a layer: give each layer once")
    return sorted(chosen)


def residual_direction(stats: ActivationStats, target: str, others: Sequence[str] | None = None) -> Float[Tensor, "layer d_model"]:
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
    if positions not in POSITIONS:
        raise LangNeuronsError(f"positions must be one of {', '.join(POSITIONS)}, not {positions!r}")
    stats.lang_index(target)
    chosen = _residual_layers(layers, stats.n_layers)
    direction = residual_direction(stats, target, others)
    a = _finite("alpha", alpha)
    vectors = {}
    for layer in chosen:
        v = (a * direction[layer]).float()
        if not torch.isfinite(v).all():
            raise LangNeuronsError(f"the residual mean at layer {layer} is not finite (NaN/inf in the recorded residual stream): pick another layer")
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
        if (other.layers, other.positions, other.model.get("weights_sha256")) != (first.layers, first.positions, first.model.get("weights_sha256")):
            raise LangNeuronsError("stack_rows: every residual steering needs the same layers, positions and model")
    vectors = {layer: torch.stack([s.vectors[layer] for s in steerings]) for layer in first.layers}
    return ResidualSteering(vectors, first.model, first.positions)


@contextlib.contextmanager
def steer(model: HookedModel, *steerings: Sequence[tuple[str, Any]]) -> Iterator[HookedModel]:
    """Apply steering hooks inside a ``with`` block and always remove them afterwards.

    Checks that each :class:`Steering` and :class:`ResidualSteering` was built for this model.
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
