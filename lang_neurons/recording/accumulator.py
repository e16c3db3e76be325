"""The hooks of one recording and the state they fill: :class:`Accumulator`.

Per batch, the neuron hooks add counts, sums and sums of squares over the counted tokens (pads
and BOS out) and pool each kept sentence; the residual-stream hooks add ``hook_resid_post``
sums. At site ``act`` of a gated MLP the neuron values are the model's own ``act_fn(gate)``,
read by a forward hook on the MLP's activation module (:meth:`Site.act_modules`) where there is
one, instead of applying ``act_fn`` to ``hook_pre`` a second time. The hooks' temporaries live
in buffers reused from batch to batch. Nothing in a hook reads a device value on the host
(tests/unit/recording/test_record_sync.py guards this); :func:`lang_neurons.recording.record`
takes the partial sums chunk by chunk.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from ..sites import ResidualSite, Site


class StopForward(Exception):
    """Raised from the last recorded hook to skip the rest of the forward (final norm, unembedding)."""


def resid_hook_name(layer: int) -> str:
    """The residual-stream hook point recorded at ``layer`` (after its attention and MLP)."""
    return ResidualSite.hook(layer)


class one_cpu_thread:
    """Run the hooks' few small element-wise passes on one thread when on the CPU. With several,
    every pass ends at an OpenMP barrier that stalls whenever another process holds a core
    (measured on 2 shared cores: 30-60 ms instead of ~1 ms per layer). A no-op elsewhere.
    A class rather than a generator context manager: it is entered 10^5+ times per corpus."""

    __slots__ = ("threads",)

    def __init__(self, device: torch.device):
        self.threads = torch.get_num_threads() if device.type == "cpu" else 1

    def __enter__(self) -> None:
        if self.threads > 1:
            torch.set_num_threads(1)

    def __exit__(self, *exc: object) -> None:
        if self.threads > 1:
            torch.set_num_threads(self.threads)


class Accumulator:
    """Hook-side state of one recording: fixed-size sums plus the pooled rows.

    For ``n_langs`` languages at ``site``: ``active``, ``sums``, ``sq_sums`` (per language,
    layer and neuron, on ``device``), ``nonfinite`` (per language and layer), ``resid_sums``
    (per language, layer and ``d_model``) and ``pooled``, ``n_pooled`` rows on the CPU.
    """

    def __init__(
        self,
        site: Site,
        n_langs: int,
        n_pooled: int,
        pooling: str,
        device: torch.device,
        d_model: int,
        act_modules: Sequence[torch.nn.Module | None] | None = None,
    ):
        shape = (n_langs, site.n_layers, site.width)
        self.site, self.pooling = site, pooling
        # Per layer, the model's module that computes the site's activation (act_fn of a gated
        # MLP, `Site.act_modules`) or None: `hooks` then keeps the gate for `_act_hook`.
        self.act_modules = list(act_modules) if act_modules is not None else [None] * site.n_layers
        self.gates: dict[int, Tensor] = {}  # layer -> its hook_pre value, until act_fn's output is taken
        self.scratch: dict[int, Tensor] = {}  # reused buffers of the hooks' temporaries (`_scratch`)
        self.scratch_views: dict[int, Tensor] = {}  # their last view, reused while the shape stays
        # (lang, layer[, first and end column]) -> the views of the totals a hook adds to (`_totals`)
        self.views: dict[tuple[int, ...], tuple[Tensor, ...]] = {}
        self.active = torch.zeros(shape, dtype=torch.int64, device=device)
        self.sums = torch.zeros(shape, dtype=torch.float64, device=device)
        self.sq_sums = torch.zeros(shape, dtype=torch.float64, device=device)
        self.resid_sums = torch.zeros((n_langs, site.n_layers, d_model), dtype=torch.float64, device=device)
        self.pooled = torch.zeros((n_pooled, site.n_layers, site.width), dtype=torch.float32)
        self.pending: dict[int, list[Tensor]] = {}
        # Careful mode (set by `record` to redo a chunk whose sums came out non-finite): NaN/inf
        # values are counted per language and layer, then replaced by 0 before `_accumulate`.
        self.careful = False
        self.nonfinite = torch.zeros(shape[:2], dtype=torch.int64, device=device)
        # Set per batch by `set_batch`.
        self.lang = 0
        self.mask = self.maskf = self.lengths = self.divisor = self.last = torch.empty(0)
        self.small = True  # fewer than 2**24 positions a batch (pads included): count actives in float32
        self.rows: Tensor = torch.empty(0, dtype=torch.long)  # rows of `pooled` this batch fills (CPU)
        self.keep: Tensor | None = None  # batch items that fill them (device), None = all
        self.batch_pooled: Tensor | None = None  # their pooled values, [kept, layer, width] on the device

    def set_batch(self, lang: int, mask: Bool[Tensor, "batch pos"], rows: Sequence[int]) -> None:
        """Prepare for one batch of language ``lang``: ``rows[i]`` is the pooled row of batch
        item ``i`` (``-1``: none). Everything the hooks index with is built here, from host
        values, so that no hook needs a host value from the device."""
        self.lang, self.mask = lang, mask
        self.maskf = mask.to(torch.float32)[..., None]
        self.lengths = mask.sum(1)
        self.divisor = self.lengths.clamp(min=1)[:, None]  # of the sentence means
        self.small = mask.numel() < 2**24
        # Index of the last real token (works for either padding side).
        pos = torch.arange(mask.shape[1], device=mask.device)
        self.last = torch.where(mask, pos, -1).amax(1).clamp(min=0)
        kept = [i for i, r in enumerate(rows) if r >= 0]
        self.rows = torch.tensor([rows[i] for i in kept], dtype=torch.long)
        self.keep = None if len(kept) == len(rows) else torch.tensor(kept, dtype=torch.long, device=mask.device)
        shape = (len(kept), self.site.n_layers, self.site.width)
        self.batch_pooled = torch.empty(shape, dtype=torch.float32, device=mask.device) if kept else None

    def flush(self) -> None:
        """Copy the batch's pooled rows into :attr:`pooled` (CPU): once per batch, after the
        forward pass, instead of once per layer inside the hooks."""
        if self.batch_pooled is not None:
            self.pooled.index_copy_(0, self.rows, self.batch_pooled.cpu())

    def hooks(self) -> list[tuple[str, Any]]:
        """The (hook point, hook) pairs of a recording: every layer's site hooks and its
        ``hook_resid_post``; the last layer's ``hook_resid_post`` stops the forward."""
        # The forward stops at the last layer's hook_resid_post, which fires after its MLP: the
        # last layer's down projection runs (for the residual sums), the final norm and the
        # unembedding do not.
        # A site with `columns` (site linear) fills a layer's neurons one read hook at a time: each
        # hook's value is its own columns, accumulated as it fires (nothing is held across hooks).
        out = []
        split = hasattr(self.site, "columns")
        for layer in range(self.site.n_layers):
            names = self.site.read_hooks(layer)
            for slot, name in enumerate(names):
                out.append(
                    (name, self._part_hook(layer, slot) if split else self._hook(layer, slot, len(names), False))
                )
            out.append((resid_hook_name(layer), self._resid_hook(layer, stop=layer == self.site.n_layers - 1)))
        return out

    @contextlib.contextmanager
    def module_hooks(self) -> Iterator[None]:
        """Attach the forward hooks on the model's activation modules (:attr:`act_modules`) for
        the duration of a ``with`` block, then remove them."""
        handles = []
        try:
            for layer, module in enumerate(self.act_modules):
                if module is not None:
                    handles.append(module.register_forward_hook(self._act_hook(layer)))
            yield
        finally:
            for handle in handles:
                handle.remove()

    def _act_hook(self, layer: int):
        def hook(module: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
            # Only the call that applies act_fn to this layer's own gate (the very tensor
            # hook_pre saw) counts; if none does, the layer's residual hook applies act_fn itself.
            if inputs and self.gates.get(layer) is inputs[0]:
                del self.gates[layer]
                with one_cpu_thread(output.device):
                    self._neurons(layer, output, owned=False)  # the model's tensor: not ours to overwrite
            return None

        return hook

    def _resid_hook(self, layer: int, stop: bool):
        def hook(value: Tensor, hook: Any = None) -> None:
            with one_cpu_thread(value.device):
                gate = self.gates.pop(layer, None)
                if gate is not None:  # the activation module did not take it (see `_act_hook`)
                    act = self.site.activation([gate])
                    self._neurons(layer, act, owned=act is not gate)
                # Same mask as the neurons (pads and BOS out); float32 per batch, float64 totals.
                v = value.float()
                masked = torch.mul(v, self.maskf, out=self._scratch(2, v))
                self._totals(layer)[3].add_(masked.sum((0, 1)))  # float64 += float32, as `.double()` then +=
            if stop:
                raise StopForward
            return None

        return hook

    def _hook(self, layer: int, slot: int, n_slots: int, stop: bool):
        def hook(value: Tensor, hook: Any = None) -> None:
            if n_slots == 1:
                got = [value]
            else:
                got = self.pending.setdefault(layer, [None] * n_slots)  # type: ignore[list-item]
                got[slot] = value
                if any(v is None for v in got):
                    return None
                del self.pending[layer]
            if self.act_modules[layer] is not None:  # the model's act_fn(gate) follows: `_act_hook`
                self.gates[layer] = got[0]
                return None
            with one_cpu_thread(value.device):
                act = self.site.activation(got)
                # `act` is ours to overwrite when the site computed it (act_fn, cat).
                self._neurons(layer, act, owned=all(act is not v for v in got))
            if stop:
                raise StopForward
            return None

        return hook

    def _neurons(self, layer: int, act: Tensor, owned: bool, cols: slice | None = None) -> None:
        """Accumulate one layer's (or, with ``cols``, one module's) neuron values; in careful
        mode NaN/inf values are counted, then replaced by 0."""
        if self.careful:
            bad = ~torch.isfinite(act)
            self.nonfinite[self.lang, layer] += (bad & self.mask[..., None]).sum()
            act, owned = act.masked_fill(bad, 0), True
        self._accumulate(layer, act, owned=owned, cols=cols)

    def _part_hook(self, layer: int, slot: int):
        cols = self.site.columns(slot)  # type: ignore[attr-defined]

        def hook(value: Tensor, hook: Any = None) -> None:
            with one_cpu_thread(value.device):
                self._neurons(layer, self.site.part(value), owned=False, cols=cols)  # type: ignore[attr-defined]
            return None

        return hook

    def take(
        self,
    ) -> tuple[
        Int[Tensor, "lang layer neuron"],
        Float[Tensor, "lang layer neuron"],
        Float[Tensor, "lang layer neuron"],
        Int[Tensor, "lang layer"],
        Float[Tensor, "lang layer d_model"],
    ]:
        """The fixed-size sums added since the last call (active, sums, sq_sums, nonfinite,
        resid_sums), which are reset to zero. `record` folds these chunk partials in plan order;
        whatever `_accumulate` keeps internally must be complete in them when this returns."""
        parts = (self.active, self.sums, self.sq_sums, self.nonfinite, self.resid_sums)
        out = tuple(t.clone() for t in parts)
        for t in parts:
            t.zero_()
        return out  # type: ignore[return-value]

    def _accumulate(self, layer: int, act: Tensor, owned: bool = False, cols: slice | None = None) -> None:
        # Few passes over the [batch, pos, width] activations (this runs 10^5+ times per corpus):
        # mask once (in place when `act` is ours), count the active ones by summing a float 0/1
        # buffer (exact below 2**24 positions; a bool sum is ~4x slower), and square the masked
        # copy in place. Same reductions as the plain version, so the same bits.
        # No host synchronisation here (nothing that reads a device value on the host: `.item()`,
        # `.cpu()`, boolean-mask indexing, `if tensor`): pooled rows go to a device buffer that
        # `flush` copies to the CPU once per batch; test_record_sync.py guards this.
        active, sums, sq_sums, _ = self._totals(layer, cols)
        a = act.float()
        if self.batch_pooled is not None and self.pooling != "mean":  # these read the unmasked values
            if self.pooling == "max":
                pooled = a.masked_fill(~self.mask[..., None], -math.inf).amax(1)
            else:
                pooled = a[torch.arange(a.shape[0], device=a.device), self.last]
            self._pool(layer, pooled, cols)
        owned = owned or a is not act
        masked = a.mul_(self.maskf) if owned else torch.mul(a, self.maskf, out=self._scratch(0, a))
        # float64 totals += float32 partials: add_ promotes exactly as `.double()` then `+=` did.
        sums.add_(masked.sum((0, 1)))
        if self.small:
            active.add_(torch.gt(masked, 0, out=self._scratch(1, masked)).sum((0, 1)).long())
        else:
            active.add_((masked > 0).sum((0, 1)))
        if self.batch_pooled is not None and self.pooling == "mean":
            self._pool(layer, masked.sum(1) / self.divisor, cols)
        sq_sums.add_(masked.mul_(masked).sum((0, 1)))

    def _totals(self, layer: int, cols: slice | None = None) -> tuple[Tensor, ...]:
        """The views of ``active``, ``sums``, ``sq_sums`` and ``resid_sums`` at the batch's language
        and ``layer`` (and ``cols``) that the hooks add to, made once: indexing the totals anew
        at every call costs more than the adds themselves on a small batch. (The totals are only
        ever changed in place, so the views stay theirs.)"""
        key = (self.lang, layer) if cols is None else (self.lang, layer, cols.start, cols.stop)
        views = self.views.get(key)
        if views is None:
            at = (self.lang, layer) if cols is None else (self.lang, layer, cols)
            views = self.views[key] = (
                self.active[at],
                self.sums[at],
                self.sq_sums[at],
                self.resid_sums[self.lang, layer],
            )
        return views

    def _scratch(self, slot: int, like: Tensor) -> Tensor:
        """A buffer shaped like ``like`` for the hooks' temporaries, kept between calls and grown
        when a batch needs more: a fresh ``[batch, pos, width]`` tensor per layer costs more than
        the pass that fills it on the CPU (newly mapped pages are zeroed by the kernel). Elsewhere
        a fresh tensor: a GPU's caching allocator already reuses its memory, and kept buffers
        would hold their largest batch's size for the whole recording."""
        if like.device.type != "cpu":
            return torch.empty_like(like)
        view = self.scratch_views.get(slot)
        if view is not None and view.shape == like.shape and view.dtype == like.dtype:
            return view  # the same shape as the last call's (every layer of a batch)
        buf = self.scratch.get(slot)
        if buf is None or buf.numel() < like.numel() or buf.dtype != like.dtype:
            buf = self.scratch[slot] = torch.empty(like.numel(), dtype=like.dtype)
        view = self.scratch_views[slot] = buf[: like.numel()].view(like.shape)
        return view

    def _pool(self, layer: int, pooled: Tensor, cols: slice | None = None) -> None:
        assert self.batch_pooled is not None
        rows = pooled if self.keep is None else pooled.index_select(0, self.keep)
        if cols is None:
            self.batch_pooled.select(1, layer).copy_(rows)  # as `[:, layer] = rows`, without parsing an index
        else:
            self.batch_pooled[:, layer, cols] = rows
