"""Steering hooks against the same change made by hand on the Hugging Face modules."""

from __future__ import annotations

import math

import pytest
import torch
from tiny_models import SENTENCES
from transformers import AutoModelForCausalLM

import lang_neurons as ln
from lang_neurons import steering as st
from lang_neurons.generation import generate, language_loss

_CACHE: dict[str, tuple] = {}


def _setup(path):
    """(bridge, hf model, neuron set, stats) for a tiny model folder, built once."""
    key = str(path)
    if key not in _CACHE:
        bridge = ln.load_model(path, device="cpu")
        hf = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
        texts = {lang: SENTENCES[lang][:6] for lang in ("en", "de", "ja")}
        stats = ln.record(bridge, texts, progress=False)
        g = torch.Generator().manual_seed(1)
        mask = torch.rand(3, stats.n_layers, stats.width, generator=g) < 0.1
        bottom = mask & (torch.rand(mask.shape, generator=g) < 0.3)
        neurons = ln.NeuronSet(["en", "de", "ja"], mask, "act", "test", bottom=bottom, model=stats.model)
        _CACHE[key] = (bridge, hf, neurons, stats)
    return _CACHE[key]


def _act_modules(hf):
    """The module whose output is each layer's neuron activation (act_fn(gate) or GELU output)."""
    out = []
    for layer in hf.model.layers if hasattr(hf, "model") else hf.transformer.h:
        mlp = layer.mlp
        out.append(getattr(mlp, "act_fn", None) or mlp.act)
    return out


def _by_hand(hf, neurons, langs, fn):
    """Forward hooks on the HF activation modules: x[idx] = fn(layer, idx, x[idx])."""
    names = [langs] if isinstance(langs, str) else langs
    mask = torch.zeros(neurons.n_layers, neurons.width, dtype=torch.bool)
    for lang in names:
        mask |= neurons.mask[neurons.lang_index(lang)]
    handles = []
    for layer, module in enumerate(_act_modules(hf)):
        idx = mask[layer].nonzero().flatten()
        if not len(idx):
            continue

        def hook(mod, inp, out, layer=layer, idx=idx):
            out = out.clone()
            out[..., idx] = fn(layer, idx, out[..., idx])
            return out

        handles.append(module.register_forward_hook(hook))
    return handles


def _cases(neurons, stats):
    med, mean = stats.pooled_median(), stats.mean()
    others = (mean[0] + mean[2]) / 2
    return {
        "override": (st.override(neurons, "de", med[1]), "de", lambda l, i, x: med[1][l, i].expand_as(x)),
        "deactivate": (st.deactivate(neurons, "en", -0.5), "en", lambda l, i, x: torch.full_like(x, -0.5)),
        "add": (st.add(neurons, "ja", 2.0, mean[2]), "ja", lambda l, i, x: x + 2.0 * mean[2][l, i]),
        "scale": (st.scale(neurons, "de", 3.0), "de", lambda l, i, x: x * 3.0),
        "replace": (
            st.replace(neurons, ["en", "de"], mean[1]),
            ["en", "de"],
            lambda l, i, x: mean[1][l, i].expand_as(x),
        ),
        "diffmean": (
            st.diffmean(neurons, "de", mean[1], others, 1.5),
            "de",
            lambda l, i, x: x + 1.5 * (mean[1] - others)[l, i],
        ),
    }


FACTORIES = ["override", "deactivate", "add", "scale", "replace", "diffmean"]


@pytest.mark.parametrize("arch", ["llama", "gpt2", "gemma3", "qwen2"])
@pytest.mark.parametrize("factory", FACTORIES)
def test_factory_equals_hand_edit_run_with_hooks(arch, factory, request):
    from conftest import _tiny_dir

    bridge, hf, neurons, stats = _setup(_tiny_dir(arch, request.getfixturevalue("tmp_path_factory")))
    hooks, langs, fn = _cases(neurons, stats)[factory]
    tokens = bridge.to_tokens(SENTENCES["fr"][0])
    with torch.inference_mode():
        plain = bridge(tokens)
        steered = bridge.run_with_hooks(tokens, fwd_hooks=hooks)
        handles = _by_hand(hf, neurons, langs, fn)
        try:
            expected = hf(tokens).logits
        finally:
            for h in handles:
                h.remove()
    assert not torch.allclose(steered, plain, atol=1e-4), "the steering changed nothing"
    torch.testing.assert_close(steered, expected, rtol=1e-4, atol=1e-4)
    assert all(not hp.fwd_hooks for name, hp in bridge.hook_dict.items() if "mlp" in name)


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
@pytest.mark.parametrize("factory", FACTORIES)
def test_generate_with_kv_cache_equals_hand_edit(arch, factory, request):
    from conftest import _tiny_dir

    bridge, hf, neurons, stats = _setup(_tiny_dir(arch, request.getfixturevalue("tmp_path_factory")))
    hooks, langs, fn = _cases(neurons, stats)[factory]
    prompt = SENTENCES["en"][1]
    got = generate(bridge, [prompt], hooks=hooks, max_new_tokens=8, do_sample=False, progress=False)[0]
    tokens = bridge.to_tokens(prompt)
    handles = _by_hand(hf, neurons, langs, fn)
    try:
        with torch.inference_mode():
            out = hf.generate(
                tokens,
                attention_mask=torch.ones_like(tokens),
                max_new_tokens=8,
                do_sample=False,
                pad_token_id=hf.config.pad_token_id,
            )
    finally:
        for h in handles:
            h.remove()
    new = out[0, tokens.shape[1] :].tolist()
    stop = {bridge.tokenizer.eos_token_id, bridge.tokenizer.pad_token_id}
    new = new[: next((i for i, t in enumerate(new) if t in stop), len(new))]
    assert got == bridge.tokenizer.decode(new, skip_special_tokens=True)
    # And under TransformerLens's own context manager, with the KV cache.
    with bridge.hooks(fwd_hooks=hooks):
        tl = bridge.generate(tokens, max_new_tokens=8, do_sample=False, verbose=False, return_type="tokens")
    assert tl[0, tokens.shape[1] :].tolist()[: len(new)] == new


def test_composition_applies_in_order(llama_dir):
    bridge, hf, neurons, stats = _setup(llama_dir)
    mean = stats.mean()
    a = st.scale(neurons, ["en", "de"], 2.0)
    b = st.add(neurons, "de", 1.0, mean[1])
    combined = a + b
    assert isinstance(combined, st.Steering) and combined.n_neurons == int((neurons.mask[0] | neurons.mask[1]).sum())
    de, en = neurons.mask[1], neurons.mask[0]

    def fn(layer, idx, x):
        y = x * 2.0
        is_de = de[layer, idx]
        return torch.where(is_de, y + mean[1][layer, idx], y)

    tokens = bridge.to_tokens(SENTENCES["de"][2])
    with torch.inference_mode():
        got = bridge.run_with_hooks(tokens, fwd_hooks=combined)
        handles = _by_hand(hf, neurons, ["en", "de"], fn)
        try:
            expected = hf(tokens).logits
        finally:
            for h in handles:
                h.remove()
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    assert en.any()


def test_language_arithmetic_and_positions(llama_dir):
    bridge, hf, neurons, stats = _setup(llama_dir)
    hooks = st.language_arithmetic(neurons, stats, target="de", alpha=1.0)
    target, others = neurons.mask[1], (neurons.mask[0] | neurons.mask[2]) & ~neurons.mask[1]
    assert hooks.n_neurons == int((target | others).sum())
    tokens = bridge.to_tokens(SENTENCES["en"][3])
    with torch.inference_mode():
        plain = bridge(tokens)
        steered = bridge.run_with_hooks(tokens, fwd_hooks=hooks)
        only_gen = bridge.run_with_hooks(
            tokens, fwd_hooks=st.language_arithmetic(neurons, stats, target="de", positions="generated")
        )
        only_prompt = bridge.run_with_hooks(
            tokens, fwd_hooks=st.language_arithmetic(neurons, stats, target="de", positions="prompt")
        )
    torch.testing.assert_close(only_gen, plain)
    torch.testing.assert_close(only_prompt, steered)
    for method in st.METHODS:
        assert st.language_arithmetic(neurons, stats, target="ja", source="en", method=method).n_neurons > 0


def test_steer_context_manager_always_cleans_up(llama_dir):
    bridge, hf, neurons, stats = _setup(llama_dir)
    hooks = st.deactivate(neurons, "en")
    tokens = bridge.to_tokens(SENTENCES["en"][0])
    with torch.inference_mode():
        plain = bridge(tokens)
        user = []
        bridge.hook_dict["blocks.0.mlp.hook_post"].add_hook(lambda x, hook: user.append(1))
        try:
            with pytest.raises(RuntimeError, match="boom"):
                with st.steer(bridge, hooks):
                    assert not torch.allclose(bridge(tokens), plain)
                    raise RuntimeError("boom")
            assert len(bridge.hook_dict["blocks.0.mlp.hook_post"].fwd_hooks) == 1  # the user's hook stays
            torch.testing.assert_close(bridge(tokens), plain)
        finally:
            bridge.reset_hooks()


def test_language_loss_rises_when_neurons_are_deactivated(llama_dir):
    bridge, hf, neurons, stats = _setup(llama_dir)
    texts = {lang: SENTENCES[lang][6:9] for lang in ("en", "de", "ja")}
    base = language_loss(bridge, texts, progress=False)
    assert base.shape == (3,) and torch.isfinite(base).all()
    # Reference for one language: HF's own loss over the unpadded texts, token-weighted.
    total = count = 0
    for text in texts["de"]:
        ids = bridge.to_tokens(text)
        with torch.inference_mode():
            loss = hf(ids, labels=ids).loss
        total, count = total + float(loss) * (ids.shape[1] - 1), count + ids.shape[1] - 1
    assert float(base[1]) == pytest.approx(total / count, rel=1e-4)
    hit = language_loss(bridge, texts, hooks=st.scale(neurons, "de", 50.0), progress=False)
    assert not torch.allclose(hit, base)


def test_bad_inputs(llama_dir, gpt2_dir):
    bridge, hf, neurons, stats = _setup(llama_dir)
    with pytest.raises(ln.LangNeuronsError, match="finite"):
        st.add(neurons, "de", math.nan, stats.mean()[1])
    with pytest.raises(ln.LangNeuronsError, match="finite"):
        st.scale(neurons, "de", math.inf)
    with pytest.raises(ln.LangNeuronsError, match="'fr' is not in"):
        st.deactivate(neurons, "fr")
    with pytest.raises(ln.LangNeuronsError, match="unknown method"):
        st.language_arithmetic(neurons, stats, target="de", method="teleport")
    with pytest.raises(ln.LangNeuronsError, match="shape"):
        st.override(neurons, "de", torch.zeros(3, 3))
    with pytest.raises(ln.LangNeuronsError, match="positions"):
        st.deactivate(neurons, "de", positions="middle")
    other, *_ = _setup(gpt2_dir)
    with pytest.raises(ln.LangNeuronsError, match="another model"):
        with st.steer(other, st.deactivate(neurons, "de")):
            pass
    wide = ln.NeuronSet(
        ["de"], torch.ones(1, neurons.n_layers, 1000, dtype=torch.bool), "post", "test", model=neurons.model
    )
    with pytest.raises(ln.LangNeuronsError, match="out of range"):
        bridge.run_with_hooks(bridge.to_tokens("hello"), fwd_hooks=st.deactivate(wide, "de"))


def test_generate_stops_at_newline(llama_dir):
    bridge, *_ = _setup(llama_dir)
    prompts = [SENTENCES["en"][0], SENTENCES["de"][0]]
    full = generate(bridge, prompts, max_new_tokens=30, do_sample=False, progress=False)
    short = generate(bridge, prompts, max_new_tokens=30, do_sample=False, stop_at_newline=True, progress=False)
    for a, b in zip(full, short):
        assert "\n" not in b and a.startswith(b) and a[len(b) : len(b) + 1] in ("", "\n")
    again = generate(bridge, n=3, max_new_tokens=5, seed=7, progress=False)
    assert again == generate(bridge, n=3, max_new_tokens=5, seed=7, progress=False)  # seeded


def test_position_tracker_knows_the_prompt_with_and_without_cache():
    def run(which, prompt_len, lengths):
        t = st.PositionTracker(which)
        t.reset(prompt_len)
        return [(p.start, p.stop) if p else None for p in map(t.select, lengths)]

    assert run("generated", 3, [3, 1, 1]) == [None, (0, 1), (0, 1)]  # KV cache: the prompt, then one token per step
    assert run("generated", 3, [3, 4, 5]) == [None, (3, 4), (3, 5)]  # no cache: the whole sequence each step
    assert run("prompt", 3, [3, 4, 5]) == [(0, 3), (0, 3), (0, 3)]
    assert run("generated", 1, [1, 1, 1]) == [None, (0, 1), (0, 1)]  # a one-token prompt (BOS) is still the prompt
    assert run("generated", 1, [1, 2, 3]) == [None, (1, 2), (1, 3)]
    assert run("prompt", 1, [1, 1]) == [(0, 1), None]
    assert run("generated", None, [5, 1]) == [None, None]  # plain forward passes: every position is a prompt position
    assert run("prompt", None, [5, 6]) == [(0, 5), (0, 6)]
    assert run("all", None, [5])[0] == (None, None)


@pytest.mark.parametrize("cache", [True, False])
def test_generated_positions_from_bos_with_and_without_cache(llama_dir, cache):
    """Unconditional generation from BOS with positions="generated": the BOS step is the prompt,
    so the first new token is the unsteered one; later tokens are steered; the KV cache does not
    change which positions are edited (the old length test edited the BOS step with the cache
    and nothing after it without)."""
    bridge, hf, neurons, stats = _setup(llama_dir)
    bos = torch.tensor([[bridge.tokenizer.bos_token_id]])
    strong = st.add(
        neurons, ["en", "de", "ja"], 40.0, torch.ones(neurons.n_layers, neurons.width), positions="generated"
    )
    everywhere = st.add(neurons, ["en", "de", "ja"], 40.0, torch.ones(neurons.n_layers, neurons.width))
    kw = dict(max_new_tokens=6, do_sample=False, use_past_kv_cache=cache, verbose=False, return_type="tokens")
    with torch.inference_mode():
        base = bridge.generate(bos, **kw)[0, 1:].tolist()
        with st.steer(bridge, strong), st.prompt_length(strong, 1):
            gen_only = bridge.generate(bos, **kw)[0, 1:].tolist()
        with st.steer(bridge, everywhere):
            steered = bridge.generate(bos, **kw)[0, 1:].tolist()
        with st.steer(bridge, strong), st.prompt_length(strong, 1):
            other_cache = bridge.generate(bos, **{**kw, "use_past_kv_cache": not cache})[0, 1:].tolist()
    assert steered != base  # the edit is strong enough to show
    assert gen_only[0] == base[0] and gen_only != base
    assert gen_only == other_cache
    # ln.generate gives the prompt length itself
    assert generate(bridge, n=1, hooks=strong, do_sample=False, max_new_tokens=6, progress=False) == [
        bridge.tokenizer.decode(gen_only, skip_special_tokens=True)
    ]
