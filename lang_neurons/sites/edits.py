"""The hook functions a site's write hooks are made of.

A write hook edits the value of one hook point, at the positions its
:class:`~lang_neurons.sites.positions.PositionTracker` selects (its ``positions`` attribute):
an affine edit ``x[..., index] = a * x[..., index] + b`` of some of its neurons, or the addition
of a vector (the residual stream). Which hook points, and how their values combine, is the
site's to say (:meth:`lang_neurons.sites.Site.write_hooks`); these functions only build the
``fn`` of each ``(hook_name, fn)`` pair.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jaxtyping import Float, Int
from torch import Tensor

from lang_neurons.errors import LangNeuronsError
from lang_neurons.models import HookFn
from lang_neurons.sites.positions import PositionTracker


def at(
    x: Float[Tensor, "*batch pos d"], edited: Float[Tensor, "*batch pos d"], part: slice
) -> Float[Tensor, "*batch pos d"]:
    """``edited`` on the positions ``part`` of ``x``, ``x`` elsewhere (``x`` itself is not changed)."""
    if part == slice(None):
        return edited
    out = x.clone()
    out[..., part, :] = edited[..., part, :]
    return out


def affine(index: Int[Tensor, " k"], a: Float[Tensor, " k"], b: Float[Tensor, " k"]) -> Callable[[Tensor], Tensor]:
    """``x -> x`` with ``x[..., index] = a * x[..., index] + b``.

    The returned function copies ``index``, ``a`` and ``b`` to each activation's device and
    dtype once; its ``params(x)`` gives them so, and raises a clear error when ``index`` does not
    fit the hook point (a steering built for another model).
    """
    cache: dict[tuple[Any, Any], tuple[Tensor, Tensor, Tensor]] = {}

    def params(x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        key = (x.device, x.dtype)
        if key not in cache:
            if int(index.max()) >= x.shape[-1]:
                raise LangNeuronsError(
                    f"neuron index {int(index.max())} is out of range for a hook point with {x.shape[-1]} "
                    "neurons: this steering was built for another model"
                )
            cache[key] = (index.to(x.device), a.to(x.device, x.dtype), b.to(x.device, x.dtype))
        return cache[key]

    def apply(x: Tensor) -> Tensor:
        i, a_, b_ = params(x)
        return x.index_copy(-1, i, x.index_select(-1, i) * a_ + b_)

    apply.params = params  # type: ignore[attr-defined]
    return apply


def affine_hook(index: Int[Tensor, " k"], a: Float[Tensor, " k"], b: Float[Tensor, " k"], positions: str) -> HookFn:
    """A hook that makes the edit of :func:`affine` on its hook point's value at ``positions``."""
    apply = affine(index, a, b)
    tracker = PositionTracker(positions)

    def hook(x: Tensor, hook: Any = None) -> Tensor | None:
        part = tracker.select(x.shape[-2])
        return None if part is None else at(x, apply(x), part)

    hook.positions = tracker  # type: ignore[attr-defined]
    return hook


def gated_act_hooks(
    names: tuple[str, str, str],
    index: Int[Tensor, " k"],
    a: Float[Tensor, " k"],
    b: Float[Tensor, " k"],
    act_fn: Callable[[Tensor], Tensor],
    positions: str,
) -> list[tuple[str, HookFn]]:
    """Edit ``act_fn(gate)`` of a gated MLP, where ``post = act_fn(gate) * up``.

    ``names`` are the hook points of ``gate``, ``up`` and ``post``, in firing order. The first
    two read the selected neurons, the third writes ``post = (a * act_fn(gate) + b) * up`` there.
    """
    apply = affine(index, a, b)
    seen: dict[str, Tensor] = {}

    def read_gate(x: Tensor, hook: Any = None) -> None:
        i = apply.params(x)[0]  # type: ignore[attr-defined]
        seen["act"] = act_fn(x.index_select(-1, i))

    def read_up(x: Tensor, hook: Any = None) -> None:
        seen["up"] = x.index_select(-1, apply.params(x)[0])  # type: ignore[attr-defined]

    tracker = PositionTracker(positions)

    def write_post(x: Tensor, hook: Any = None) -> Tensor | None:
        act, up = seen.pop("act", None), seen.pop("up", None)
        if act is None or up is None:
            raise LangNeuronsError(
                "steering at site 'act' needs the hooks on hook_pre and hook_pre_linear too: pass the whole list"
            )
        part = tracker.select(x.shape[-2])
        if part is None:
            return None
        i, a_, b_ = apply.params(x)  # type: ignore[attr-defined]
        return at(x, x.index_copy(-1, i, (act * a_ + b_) * up), part)

    write_post.positions = tracker  # type: ignore[attr-defined]
    gate, up, post = names
    return [(gate, read_gate), (up, read_up), (post, write_post)]


def vector_hook(vector: Float[Tensor, "*rows d"], positions: str) -> HookFn:
    """A hook that adds ``vector`` to its hook point's value at ``positions``.

    ``vector`` is ``[d]`` (every batch row) or ``[rows, d]`` (one per batch row; the batch must
    have exactly ``rows`` rows). It is copied to the activation's device and dtype once.
    """
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
                raise LangNeuronsError(
                    f"this residual steering has one vector per row of a {v.shape[0]}-row batch, "
                    f"but the batch has {x.shape[0]} rows: generate exactly those rows in one batch"
                )
            v = v[:, None, :]
        return at(x, x + v, part)

    hook.positions = tracker  # type: ignore[attr-defined]
    return hook
