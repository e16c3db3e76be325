"""Site ``act`` of a gated MLP: the recording reads the model's own ``act_fn(gate)`` through a
forward hook on the MLP's activation module, and falls back to ``act_fn(hook_pre)`` for any
layer whose module does not apply it to that layer's gate."""

from __future__ import annotations

import pytest
import torch
from tiny_models import SENTENCES

import lang_neurons as ln
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
    # hooks on the wrong layers' modules never see their own layer's gate: every layer but the
    # middle one (whose module is its own) is computed from hook_pre, with the same statistics
    n = llama.cfg.n_layers
    own = resolve_site(llama, "act").act_modules(llama)
    swapped, applied = _record(llama, monkeypatch, lambda model: own[::-1])
    plain, applied_plain = _record(llama, monkeypatch, lambda model: [None] * n)
    assert applied == applied_plain * (n - n % 2) // n
    _assert_same(swapped, plain)
