"""Sites are the one place that knows hook names: every hook a steering attaches is one the
site built (Site.write_hooks, ResidualSite.add_hooks), the site rebuilt from a neuron set's
fingerprint is the one resolved on the model, and a model whose MLP applies another activation
than its config names is refused with a clear error."""

from __future__ import annotations

import pytest
import torch
from tiny_models import SENTENCES

import lang_neurons as ln
from lang_neurons import sites
from lang_neurons import steering as st
from lang_neurons.sites import ResidualSite, Site

LANGS = ("en", "de", "ja")
_CACHE: dict[tuple[str, str], tuple] = {}


def _setup(path, site):
    """(model, stats, neuron set) at ``site``, built once."""
    key = (str(path), site)
    if key not in _CACHE:
        model = ln.load_model(path, device="cpu")
        stats = ln.record(model, {lang: SENTENCES[lang][:4] for lang in LANGS}, site=site, progress=False)
        g = torch.Generator().manual_seed(5)
        mask = torch.rand(len(LANGS), stats.n_layers, stats.width, generator=g) < 0.2
        neurons = ln.NeuronSet(list(LANGS), mask, site, "test", model=stats.model)
        _CACHE[key] = (model, stats, neurons)
    return _CACHE[key]


def _steerings(neurons, stats):
    """Every factory, as functions that build the steering (so that each build can be watched)."""
    mean, med = stats.mean(), stats.pooled_median()
    out = {
        "override": lambda: st.override(neurons, "de", med[1]),
        "deactivate": lambda: st.deactivate(neurons, "en", positions="prompt"),
        "add": lambda: st.add(neurons, "ja", 2.0, mean[2], positions="generated"),
        "scale": lambda: st.scale(neurons, ["en", "de"], 0.5),
        "replace": lambda: st.replace(neurons, "de", mean[1]),
        "diffmean": lambda: st.diffmean(neurons, "de", mean[1], mean[0], 1.5),
        "composed": lambda: st.deactivate(neurons, "en") + st.add(neurons, "de", 1.0, mean[1]),
    }
    for method in st.METHODS:
        out[f"language_arithmetic/{method}"] = lambda method=method: st.language_arithmetic(
            neurons, stats, target="de", method=method
        )
    return out


@pytest.mark.parametrize(
    ("arch", "site"),
    [("llama", "act"), ("llama", "post"), ("llama", "pre"), ("llama", "gate_up"), ("gpt2", "act"), ("gpt2", "pre")],
)
def test_every_steering_hook_comes_from_the_site(arch, site, request, monkeypatch):
    model, stats, neurons = _setup(request.getfixturevalue(f"{arch}_dir"), site)
    built: list[tuple[str, object]] = []
    write_hooks = Site.write_hooks

    def spy(self, *args, **kwargs):
        pairs = write_hooks(self, *args, **kwargs)
        built.extend(pairs)
        return pairs

    monkeypatch.setattr(Site, "write_hooks", spy)
    resolved = sites.resolve_site(model, site)
    for name, build in _steerings(neurons, stats).items():
        built.clear()
        steering = build()  # composed steerings build their parts too: the hooks are those built last
        hooks = list(steering)
        assert hooks, name
        mine = built[len(built) - len(hooks) :]
        assert [id(fn) for _, fn in hooks] == [id(fn) for _, fn in mine], f"{name}: a hook the site did not build"
        assert [h for h, _ in hooks] == [h for h, _ in mine]
        # the same names as the site resolved on the model gives, all of them hook points of the model
        expected = [
            h for layer, e in sorted(steering.layers.items()) for h, _ in resolved.write_hooks(layer, e.index, e.a, e.b)
        ]
        assert [h for h, _ in hooks] == expected
        assert all(h in model.hook_dict for h, _ in hooks)


def test_residual_steering_hooks_come_from_the_residual_site(llama_dir, monkeypatch):
    model, stats, _ = _setup(llama_dir, "act")
    built: list[tuple[str, object]] = []
    add_hooks = ResidualSite.add_hooks

    def spy(self, *args, **kwargs):
        pairs = add_hooks(self, *args, **kwargs)
        built.extend(pairs)
        return pairs

    monkeypatch.setattr(ResidualSite, "add_hooks", spy)
    resid = ResidualSite.from_model(model)
    for build in (
        lambda: st.residual_diffmean(stats, "de", [0, 1], 2.0),
        lambda: st.residual_diffmean(stats, "de", 1) + st.residual_diffmean(stats, "ja", [0, 1]),
        lambda: st.stack_rows([st.residual_diffmean(stats, "de", 0), st.residual_diffmean(stats, "ja", 0)]),
    ):
        built.clear()
        steering = build()
        assert [id(fn) for _, fn in steering] == [id(fn) for _, fn in built[len(built) - len(steering) :]]
        assert [h for h, _ in steering] == [resid.hook(layer) for layer in steering.layers]
    assert all(resid.hook(layer) in model.hook_dict for layer in range(resid.n_layers))
    assert resid.width == stats.resid_mean().shape[-1]


@pytest.mark.parametrize(("arch", "site"), [("llama", "act"), ("llama", "gate_up"), ("gpt2", "act"), ("gpt2", "post")])
def test_site_from_fingerprint_is_the_resolved_site(arch, site, request):
    model, stats, _ = _setup(request.getfixturevalue(f"{arch}_dir"), site)
    resolved, rebuilt = sites.resolve_site(model, site), Site.from_fingerprint(site, stats.model)
    fields = ("name", "n_layers", "width", "d_mlp", "gated")
    assert [getattr(rebuilt, f) for f in fields] == [getattr(resolved, f) for f in fields]
    assert type(rebuilt.act_fn) is type(resolved.act_fn)  # one activation function: ACT2FN[cfg.act_fn]
    assert rebuilt.read_hooks(1) == resolved.read_hooks(1)
    assert ResidualSite.from_fingerprint(stats.model) == ResidualSite.from_model(model)
    with pytest.raises(ln.LangNeuronsError, match="unknown site"):
        Site.from_fingerprint("middle", stats.model)


def test_residual_site_write_hooks_make_the_affine_edit(llama_dir):
    model, stats, _ = _setup(llama_dir, "act")
    resid = ResidualSite.from_model(model)
    v = stats.resid_mean()[1, 0].float()
    index = torch.arange(resid.width)
    tokens = model.to_tokens(SENTENCES["fr"][0])
    with torch.inference_mode():
        added = model.run_with_hooks(tokens, fwd_hooks=resid.add_hooks(0, v))
        affine = model.run_with_hooks(tokens, fwd_hooks=resid.write_hooks(0, index, torch.ones(resid.width), v))
    torch.testing.assert_close(affine, added)


def test_module_activation_that_disagrees_with_the_config_is_a_clear_error(llama_dir, monkeypatch):
    model = ln.load_model(llama_dir, device="cpu")
    assert sites.act_fn_name(model) == "silu"
    monkeypatch.setattr(model.cfg, "act_fn", "gelu")  # the config names GELU, the MLP applies SiLU
    with pytest.raises(ln.LangNeuronsError, match=r"layer 0 applies an activation that differs from cfg.act_fn='gelu'"):
        sites.resolve_site(model, "act")
    with pytest.raises(ln.LangNeuronsError, match="differs from cfg.act_fn"):
        ln.record(model, {"en": SENTENCES["en"][:2]}, progress=False)
    for site in ("post", "pre", "gate_up"):  # these read what the hook points hold: no activation needed
        assert sites.resolve_site(model, site).act_fn is None
    monkeypatch.setattr(model.cfg, "act_fn", "no_such_activation")
    with pytest.raises(ln.LangNeuronsError, match="unknown MLP activation 'no_such_activation' in the model's config"):
        sites.resolve_site(model, "act")


def test_unknown_activation_in_a_fingerprint_is_a_clear_error(llama_dir):
    _, stats, neurons = _setup(llama_dir, "act")
    bad = ln.NeuronSet(
        neurons.langs, neurons.mask, "act", "test", model={**stats.model, "act_fn": "no_such_activation"}
    )
    with pytest.raises(
        ln.LangNeuronsError, match="unknown MLP activation 'no_such_activation' in the neuron set's model fingerprint"
    ):
        st.deactivate(bad, "de")
    assert st.deactivate(
        ln.NeuronSet(neurons.langs, neurons.mask, "post", "test", model=bad.model), "de"
    )  # post needs none


def test_one_gatedness_test(llama_dir, gpt2_dir):
    for path, gated in ((llama_dir, True), (gpt2_dir, False)):
        model = ln.load_model(path, device="cpu")
        assert sites.is_gated(model) is gated
        assert ln.model_fingerprint(model)["gated"] is gated
        assert ln.model_fingerprint(model)["act_fn"] == sites.act_fn_name(model)
