"""Site ``act`` of a gated MLP: the recording reads the model's own ``act_fn(gate)`` through a
forward hook on the MLP's activation module, and falls back to ``act_fn(hook_pre)`` for any
layer whose module does not apply it to that layer's gate."""

from __future__ import annotations

import pytest
import torch
from plain_stats import plain_layer_statistics
from tiny_models import SENTENCES

import lang_neurons as ln
from lang_neurons.recording.accumulator import Accumulator, StopForward, one_cpu_thread
from lang_neurons.sites import Site, resolve_site

TEXTS = {lang: SENTENCES[lang][:9] for lang in ("en", "de", "ja")}


@pytest.fixture(scope="module")
def llama(llama_dir):
    return ln.load_model(llama_dir, device="cpu")


def _record(model, monkeypatch, modules=None, **kwargs):
    """``record`` with the activation modules replaced by ``modules(model)`` when given; returns
    the statistics and how often the site applied ``act_fn`` itself."""
    calls = []
    activation = Site.activation
    with monkeypatch.context() as m:
        m.setattr(Site, "activation", lambda self, values: calls.append(1) or activation(self, values))
        if modules is not None:
            m.setattr(Site, "act_modules", lambda self, model: modules(model))
        stats = ln.record(model, TEXTS, batch_size=4, progress=False, **kwargs)
    return stats, len(calls)


def _assert_same(a, b):
    for field in ("tokens", "active", "nonfinite", "sums", "sq_sums", "pooled", "resid_sums"):
        assert torch.equal(getattr(a, field), getattr(b, field)), field


def test_act_modules_are_the_mlps_own(llama):
    modules = resolve_site(llama, "act").act_modules(llama)
    assert all(isinstance(m, torch.nn.Module) for m in modules) and len({id(m) for m in modules}) == len(modules)
    assert resolve_site(llama, "post").act_modules(llama) == [None] * llama.cfg.n_layers


@pytest.mark.parametrize("pooling", ["mean", "max", "last"])
def test_module_hook_gives_the_statistics_of_act_fn_of_hook_pre(llama, monkeypatch, pooling):
    fast, applied = _record(llama, monkeypatch, pooling=pooling)
    plain, applied_plain = _record(llama, monkeypatch, lambda model: [None] * model.cfg.n_layers, pooling=pooling)
    assert applied == 0 and applied_plain > 0  # every layer took the model's own act_fn(gate)
    _assert_same(fast, plain)


def test_module_that_sees_another_tensor_leaves_the_layer_to_act_fn(llama, monkeypatch):
    # Layer 0 alone on its own module: only it takes the model's act_fn(gate). Layers 0 and 1
    # hooked on each other's modules: neither module ever sees its hook's layer's gate, so both
    # layers are computed from hook_pre. The statistics are the same every time.
    n = llama.cfg.n_layers
    own = resolve_site(llama, "act").act_modules(llama)
    plain, applied_plain = _record(llama, monkeypatch, lambda model: [None] * n)
    mixed, applied_mixed = _record(llama, monkeypatch, lambda model: [own[0]] + [None] * (n - 1))
    swapped, applied_swapped = _record(llama, monkeypatch, lambda model: [own[1], own[0]] + [None] * (n - 2))
    assert applied_plain % n == 0 and applied_mixed == applied_plain // n * (n - 1)
    assert applied_swapped == applied_plain
    _assert_same(mixed, plain)
    _assert_same(swapped, plain)
    assert not any(m._forward_hooks for m in own)  # removed again


def test_module_hooks_are_removed_when_recording_fails(llama, monkeypatch):
    own = resolve_site(llama, "act").act_modules(llama)

    def fail(self):
        raise RuntimeError("stop here")

    monkeypatch.setattr(Accumulator, "flush", fail)
    with pytest.raises(RuntimeError, match="stop here"):
        ln.record(llama, TEXTS, batch_size=4, progress=False)
    assert not any(m._forward_hooks for m in own)


def test_every_gated_family_reads_its_own_act_fn(tiny_model_dir, monkeypatch):
    # On each tiny family's bridge: a gated MLP's act_fn module sees the very tensor hook_pre
    # saw, in every layer (no layer falls back), with the statistics of act_fn(hook_pre).
    model = ln.load_model(tiny_model_dir, device="cpu")
    site = resolve_site(model, "act")
    modules = site.act_modules(model)
    if not site.gated:  # hook_post is act_fn(hook_pre): nothing computed twice, nothing to read
        assert modules == [None] * model.cfg.n_layers
        return
    assert all(m is not None for m in modules)
    fast, applied = _record(model, monkeypatch)
    plain, _ = _record(model, monkeypatch, lambda model: [None] * model.cfg.n_layers)
    assert applied == 0
    _assert_same(fast, plain)


@pytest.mark.filterwarnings("error")  # e.g. an `out=` buffer of the wrong shape, resized by torch
@pytest.mark.parametrize("via", ["hook_pre", "act_fn module"])
@pytest.mark.parametrize("pooling", ["mean", "max", "last"])
def test_reused_views_and_buffers_follow_each_batch(pooling, via):
    # The hooks keep the views of the totals and of their scratch buffers between calls. Batches
    # of another language, of another shape with the same number of positions, a smaller one
    # after a larger one, and a `take` in between (which zeroes the totals in place) must still
    # give the plain reductions' statistics, bit for bit. Via the act_fn module the activation is
    # the model's tensor, so the hook masks it into a scratch buffer instead of in place.
    n_layers, width, d_model = 2, 8, 4
    act_fn = torch.nn.GELU(approximate="tanh")
    site = Site("act", n_layers, width, width, True, act_fn)
    modules = [act_fn] * n_layers if via == "act_fn module" else None
    batches = [(0, 2, 6), (1, 3, 4), (0, 2, 6), (1, 1, 3), (0, 5, 7)]  # (lang, batch, pos)
    acc = Accumulator(site, 2, sum(b for _, b, _ in batches), pooling, torch.device("cpu"), d_model, modules)
    hooks = acc.hooks()
    g = torch.Generator().manual_seed(0)

    def zeros(*shape, dtype=torch.float64):
        return torch.zeros(2, n_layers, *shape, dtype=dtype)

    def check(active, sums, sq_sums, resid):
        got = acc.take()
        for name, a, b in zip(
            ("active", "sums", "sq_sums", "resid_sums"), got[:3] + got[4:], (active, sums, sq_sums, resid)
        ):
            assert torch.equal(a, b), name

    active, sums, sq_sums, resid = zeros(width, dtype=torch.int64), zeros(width), zeros(width), zeros(d_model)
    pooled, row = [], 0
    for i, (lang, b, pos) in enumerate(batches):
        mask = torch.rand(b, pos, generator=g) > 0.3
        mask[:, 0] = True
        acc.set_batch(lang, mask, list(range(row, row + b)))
        row += b
        for layer in range(n_layers):
            gate, r = torch.randn(b, pos, width, generator=g), torch.randn(b, pos, d_model, generator=g)
            (_, neuron_hook), (_, resid_hook) = hooks[2 * layer], hooks[2 * layer + 1]
            act = act_fn(gate)
            neuron_hook(gate)
            if modules is not None:
                acc._act_hook(layer)(act_fn, (gate,), act)
            try:
                resid_hook(r)
            except StopForward:
                assert layer == n_layers - 1
            assert torch.equal(act, act_fn(gate))  # the model's tensor is left as it was
            a, s, sq, res, p = plain_layer_statistics(act, r, mask[..., None], pooling)
            active[lang, layer] += a
            sums[lang, layer] += s
            sq_sums[lang, layer] += sq
            resid[lang, layer] += res
            pooled.append(p)
        acc.flush()
        if i == 1:  # the partial sums so far, then zeroed in place: the kept views must follow
            check(active, sums, sq_sums, resid)
            active, sums, sq_sums, resid = (t.zero_() for t in (active, sums, sq_sums, resid))
    check(active, sums, sq_sums, resid)
    want = torch.stack([torch.cat(pooled[layer::n_layers]) for layer in range(n_layers)], 1)
    assert torch.equal(acc.pooled, want)
    assert len(acc.views) == 2 * n_layers  # made once per (language, layer), not per call


def test_one_cpu_thread_restores_the_thread_count():
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        with one_cpu_thread(torch.device("cpu")):
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        with pytest.raises(RuntimeError, match="inside"), one_cpu_thread(torch.device("cpu")):
            raise RuntimeError("inside")
        assert torch.get_num_threads() == 2
        with one_cpu_thread(torch.device("meta")):  # not the CPU: left alone
            assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
