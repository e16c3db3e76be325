"""The recording hook never waits for the device: no host synchronisation inside it.

On a GPU, ``.item()``, ``.cpu()``, ``.tolist()``, ``bool(t)`` / ``if t:``, ``float(t)``,
``int(t)``, boolean-mask indexing (``t[mask]``, a hidden ``nonzero``) and copies to the CPU
make the host wait until the device has run every queued kernel: one such call per layer
serialises the forward pass. On the CPU they are free, so they are caught here by counting
them while (and only while) the body of a recording hook runs.
"""

from __future__ import annotations

import contextlib

import pytest
import torch
from plain_stats import plain_layer_statistics
from tiny_models import SENTENCES

import lang_neurons as ln
from lang_neurons.recording import batching
from lang_neurons.recording.accumulator import Accumulator
from lang_neurons.sites import resolve_site

TEXTS = {lang: SENTENCES[lang][:9] for lang in ("en", "de", "ja")}

_SCALARS = ("item", "tolist", "numpy", "nonzero", "__bool__", "__float__", "__int__", "__index__")


def _is_cpu(x) -> bool:
    return (isinstance(x, str) and x.startswith("cpu")) or (isinstance(x, torch.device) and x.type == "cpu")


def _bool_index(index) -> bool:
    items = index if isinstance(index, tuple) else (index,)
    return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in items)


class _SyncGuard:
    """Patches ``torch.Tensor`` so that calls which would synchronise a GPU are recorded while
    :attr:`armed` (the hook body); outside the hook everything passes through unchanged."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        self.armed = False
        self.calls: list[str] = []
        for name in _SCALARS:
            self._wrap(monkeypatch, name, lambda *a, **k: True)
        self._wrap(monkeypatch, "cpu", lambda *a, **k: True)
        self._wrap(monkeypatch, "to", lambda self_, *a, **k: any(map(_is_cpu, (*a, *k.values()))))
        self._wrap(monkeypatch, "__getitem__", lambda self_, index: _bool_index(index))
        self._wrap(monkeypatch, "__setitem__", lambda self_, index, value: _bool_index(index))

    def _wrap(self, monkeypatch: pytest.MonkeyPatch, name: str, syncs) -> None:
        original = getattr(torch.Tensor, name)

        def patched(*args, **kwargs):
            if self.armed and syncs(*args, **kwargs):
                self.calls.append(name)
            return original(*args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, patched)

    @contextlib.contextmanager
    def arm(self):
        self.armed = True
        try:
            yield
        finally:
            self.armed = False


@pytest.fixture
def guard(monkeypatch):
    """Arms a :class:`_SyncGuard` around the body of every hook `record` attaches."""
    g = _SyncGuard(monkeypatch)
    # the neuron hooks, the residual-stream hooks and the hooks on the activation modules
    for name in ("_hook", "_resid_hook", "_act_hook"):
        make_hook = getattr(Accumulator, name)

        def guarded_hook(acc, *args, _make=make_hook, **kwargs):
            inner = _make(acc, *args, **kwargs)

            def run(*hook_args, **hook_kwargs):
                with g.arm():
                    return inner(*hook_args, **hook_kwargs)

            return run

        monkeypatch.setattr(Accumulator, name, guarded_hook)
    return g


@pytest.fixture(scope="module")
def llama(llama_dir):
    return ln.load_model(llama_dir, device="cpu")


@pytest.mark.parametrize("site", ["act", "gate_up"])
@pytest.mark.parametrize("pooling", ["mean", "max", "last"])
def test_hook_does_not_synchronise(llama, guard, site, pooling):
    stats = ln.record(llama, TEXTS, site=site, pooling=pooling, batch_size=4, ap_sentences=5, progress=False)
    assert int(stats.tokens.sum()) > 0 and len(stats.pooled_lang) == 15  # the hooks ran and pooled
    assert guard.calls == []


def test_careful_hook_does_not_synchronise(llama, guard, monkeypatch):
    # careful mode (the re-run of a chunk with non-finite sums) counts NaN/inf on the device too
    init = Accumulator.__init__

    def careful_init(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self.careful = True

    monkeypatch.setattr(Accumulator, "__init__", careful_init)
    stats = ln.record(llama, TEXTS, pooling="max", batch_size=4, progress=False)
    assert int(stats.tokens.sum()) > 0 and int(stats.nonfinite.sum()) == 0
    assert guard.calls == []


@pytest.mark.parametrize(
    ("sync", "name"),
    [
        (lambda a: a.sum().item(), "item"),
        (lambda a: a[0, 0].tolist(), "tolist"),
        (lambda a: a.cpu(), "cpu"),
        (lambda a: a.to("cpu"), "to"),
        (lambda a: bool((a > 0).any()), "__bool__"),
        (lambda a: float(a.max()), "__float__"),
        (lambda a: a[a > 0], "__getitem__"),
    ],
)
def test_guard_catches_a_sync_in_the_hook(llama, guard, monkeypatch, sync, name):
    # the guard itself: one deliberate sync inside `_accumulate` is caught, once per layer and batch
    accumulate = Accumulator._accumulate

    def syncing(self, layer, act, owned=False, cols=None):
        sync(act)
        return accumulate(self, layer, act, owned, cols)

    monkeypatch.setattr(Accumulator, "_accumulate", syncing)
    ln.record(llama, TEXTS, batch_size=4, progress=False)
    assert guard.calls.count(name) >= llama.cfg.n_layers * len(TEXTS)


@pytest.mark.parametrize("pooling", ["mean", "max", "last"])
def test_statistics_equal_a_plain_forward_on_the_same_batches(llama, pooling):
    # The device-side hook gives the statistics of plain reductions over a captured forward pass,
    # batch by batch in record's own plan and order: bit for bit.
    site = resolve_site(llama, "act")
    stats = ln.record(llama, TEXTS, pooling=pooling, batch_size=4, progress=False, reduce_every=1000)
    shape = (len(TEXTS), site.n_layers, site.width)
    active = torch.zeros(shape, dtype=torch.int64)
    sums, sq_sums = torch.zeros(shape, dtype=torch.float64), torch.zeros(shape, dtype=torch.float64)
    resid_sums = torch.zeros(len(TEXTS), site.n_layers, llama.cfg.d_model, dtype=torch.float64)
    pooled = torch.zeros_like(stats.pooled)
    bos, row = llama.tokenizer.bos_token_id, 0
    for li, lang in enumerate(TEXTS):
        encoded, _ = batching.encode(llama, TEXTS[lang], 512)
        for batch in batching.batches([len(x) for x in encoded], 4):
            ids, mask = batching.pad(
                [encoded[i] for i in batch], llama.tokenizer.pad_token_id, "right", torch.device("cpu")
            )
            seen: dict[str, torch.Tensor] = {}
            names = [
                h
                for layer in range(site.n_layers)
                for h in (*site.read_hooks(layer), f"blocks.{layer}.hook_resid_post")
            ]
            with (
                torch.inference_mode(),
                llama.hooks(
                    fwd_hooks=[(n, lambda v, hook, n=n, seen=seen: seen.__setitem__(n, v.clone())) for n in names]
                ),
            ):
                llama(ids, attention_mask=mask.long())
            counted = (mask & (ids != bos))[..., None]
            for layer in range(site.n_layers):
                act = site.activation([seen[h] for h in site.read_hooks(layer)]).float()
                resid = seen[f"blocks.{layer}.hook_resid_post"].float()
                a, s, sq, r, p = plain_layer_statistics(act, resid, counted, pooling)
                active[li, layer] += a
                sums[li, layer] += s
                sq_sums[li, layer] += sq
                resid_sums[li, layer] += r
                pooled[[row + i for i in batch], layer] = p
        row += len(encoded)
    assert torch.equal(stats.active, active)
    assert torch.equal(stats.sums, sums) and torch.equal(stats.sq_sums, sq_sums)
    assert torch.equal(stats.pooled, pooled)
    assert torch.equal(stats.resid_sums, resid_sums)
