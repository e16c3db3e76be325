"""Random-neuron controls: same per-layer counts as the method's set, drawn outside every
language's set, seeded, and steered exactly like the method's set."""

from __future__ import annotations

import pytest
import torch
from tiny_models import SENTENCES

import lang_neurons as ln
from lang_neurons import steering as st
from lang_neurons.controls import random_control, random_controls

MODEL = {
    "architecture": "test",
    "n_layers": 4,
    "d_mlp": 64,
    "d_model": 16,
    "gated": False,
    "act_fn": "gelu",
    "weights_sha256": "0" * 16,
}


def _neurons(seed: int = 0, rate: float = 0.08) -> ln.NeuronSet:
    """An AP-like set: 3 languages, 4 layers x 64 neurons, overlapping, with bottom-k members."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(3, 4, 64, generator=g) < rate
    mask[:, 2] = False  # a layer without neurons
    mask[0, 3, :10] = True
    bottom = mask & (torch.rand(mask.shape, generator=g) < 0.4)
    params = {"top_k": 5, "bottom_k": 5}
    return ln.NeuronSet(["en", "de", "ja"], mask, "act", "ap", bottom=bottom, params=params, model=MODEL)


def test_counts_per_layer_match_and_never_touch_any_language_set():
    neurons = _neurons()
    assert (neurons.mask[0] & neurons.mask[1]).any()  # the method's languages overlap
    for seed in range(5):
        control = random_control(neurons, seed)
        assert torch.equal(control.layer_histogram(), neurons.layer_histogram())
        assert torch.equal(control.bottom.sum(2), neurons.bottom.sum(2))
        assert not (control.mask & neurons.union()).any()
        assert (control.method, control.site, control.model, control.langs) == ("random", "act", MODEL, neurons.langs)
        assert control.params["controls"] == "ap" and control.params["seed"] == seed
        assert control.params["method_params"] == {"top_k": 5, "bottom_k": 5} and control.scores is None


def test_draws_are_seeded_and_cover_the_outside_neurons():
    neurons = _neurons()
    assert torch.equal(random_control(neurons, 7).mask, random_control(neurons, 7).mask)
    assert torch.equal(random_control(neurons, 7).bottom, random_control(neurons, 7).bottom)
    assert not torch.equal(random_control(neurons, 7).mask, random_control(neurons, 8).mask)
    # Uniform over the outside neurons: over many seeds every one of them is drawn, in each layer
    # where the language has neurons (about 1 in 8 to 1 in 4 per draw here), and no other neuron.
    hits = sum(random_control(neurons, s).mask[0].long() for s in range(200))
    outside = ~neurons.union()
    layers = neurons.layer_histogram()[0].nonzero().flatten()
    assert len(layers) == 3 and (hits[layers][outside[layers]] > 0).all()
    assert (hits[~outside] == 0).all() and (hits[2] == 0).all()


def test_several_seeds():
    neurons = _neurons()
    controls = random_controls(neurons, range(3))
    assert [c.params["seed"] for c in controls] == [0, 1, 2]
    assert torch.equal(controls[1].mask, random_control(neurons, 1).mask)
    assert len(random_controls(neurons)) == 3
    for bad in (3, [], [1, 1]):
        with pytest.raises(ln.LangNeuronsError, match="seed"):
            random_controls(neurons, bad)
    with pytest.raises(ln.LangNeuronsError, match="seed must be an integer"):
        random_control(neurons, 1.5)


def test_too_few_neurons_outside_the_sets_is_a_clear_error():
    neurons = _neurons()
    mask = neurons.mask.clone()
    mask[1, 1, :40] = True  # layer 1: 'de' has >= 40 of 64 neurons, fewer than 40 are outside every set
    crowded = ln.NeuronSet(neurons.langs, mask, "act", "lape", model=MODEL)
    with pytest.raises(
        ln.LangNeuronsError, match=r"^layer 1 has \d+ neurons outside every language's set but 'de' has \d+ there"
    ):
        random_control(crowded)


def test_control_saves_and_loads(tmp_path):
    control = random_control(_neurons(), 3)
    control.save(tmp_path / "control")
    back = ln.NeuronSet.load(tmp_path / "control")
    assert torch.equal(back.mask, control.mask) and torch.equal(back.bottom, control.bottom)
    assert back.method == "random" and back.params == control.params


def test_control_steers_like_the_method_on_a_real_model(llama_dir):
    model = ln.load_model(llama_dir, device="cpu")
    stats = ln.record(model, {lang: SENTENCES[lang][:6] for lang in ("en", "de", "ja")}, progress=False)
    g = torch.Generator().manual_seed(0)
    mask = torch.rand(3, stats.n_layers, stats.width, generator=g) < 0.1
    neurons = ln.NeuronSet(["en", "de", "ja"], mask, stats.site, "lape", model=stats.model)
    control = random_control(neurons, 0)
    hooks = st.language_arithmetic(control, stats, target="de", alpha=2.0)
    method = st.language_arithmetic(neurons, stats, target="de", alpha=2.0)
    assert [name for name, _ in hooks] == [
        name for name, _ in method
    ]  # the same hook points (both sets span every layer)
    mean = stats.mean()[1]
    t = control.mask[1]
    for layer, edit in hooks.layers.items():
        assert not neurons.union()[layer, edit.index].any()  # never a language neuron
        on = t[layer, edit.index]  # the target's control neurons get a += 2 * mean, the others are set to 0
        torch.testing.assert_close(edit.b[on], 2.0 * mean[layer, edit.index[on]])
        assert edit.a[on].eq(1).all() and edit.a[~on].eq(0).all() and edit.b[~on].eq(0).all()
    touched = (control.mask[0] | control.mask[2]) & ~t | t
    assert hooks.n_neurons == int(touched.sum())
    tokens = model.to_tokens(SENTENCES["en"][0])
    with torch.inference_mode(), st.steer(model, hooks):
        steered = model(tokens)
    with torch.inference_mode():
        assert not torch.allclose(steered, model(tokens), atol=1e-4)
