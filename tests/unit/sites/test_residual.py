"""Residual-stream statistics (recorded in the same pass as the neurons) and residual DiffMean
steering, against hand computations on tiny models."""

from __future__ import annotations

import json
import math

import pytest
import torch
from tiny_models import SENTENCES

import lang_neurons as ln
from lang_neurons import _io
from lang_neurons import steering as st

TEXTS = {lang: SENTENCES[lang][:8] for lang in ("en", "de", "ja")}
_MODELS: dict[str, tuple] = {}


def _setup(path):
    """(bridge, stats) of a tiny model folder, built once."""
    key = str(path)
    if key not in _MODELS:
        bridge = ln.load_model(path, device="cpu")
        _MODELS[key] = (bridge, ln.record(bridge, TEXTS, batch_size=3, progress=False))
    return _MODELS[key]


def _reference_resid(model, texts):
    """Residual sums the slow way: one sentence at a time through run_with_cache, BOS left out."""
    n_layers, d = model.cfg.n_layers, model.cfg.d_model
    sums = torch.zeros(len(texts), n_layers, d, dtype=torch.float64)
    names = {f"blocks.{layer}.hook_resid_post" for layer in range(n_layers)}
    for li, lang in enumerate(texts):
        for text in texts[lang]:
            toks = model.to_tokens(text)
            with torch.inference_mode():
                _, cache = model.run_with_cache(toks, names_filter=lambda n: n in names)
            real = toks[0] != model.tokenizer.bos_token_id
            for layer in range(n_layers):
                sums[li, layer] += cache[f"blocks.{layer}.hook_resid_post"][0][real].double().sum(0)
    return sums


def test_residual_means_match_run_with_cache_every_arch(tiny_model_dir):
    model, stats = _setup(tiny_model_dir)
    ref = _reference_resid(model, TEXTS)
    assert stats.resid_sums.dtype == torch.float64 and stats.resid_sums.shape == (3, stats.n_layers, model.cfg.d_model)
    torch.testing.assert_close(stats.resid_sums, ref, rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(stats.resid_mean(), ref / stats.tokens.double()[:, None, None], rtol=1e-4, atol=1e-5)


def test_residual_sums_do_not_depend_on_padding_or_batching(llama_dir):
    model, base = _setup(llama_dir)
    for bs, side in ((1, "right"), (8, "left")):
        other = ln.record(model, TEXTS, batch_size=bs, padding_side=side, progress=False)
        torch.testing.assert_close(other.resid_sums, base.resid_sums, rtol=1e-4, atol=1e-3)


def test_merge_and_files_keep_residual_sums(gpt2_dir, tmp_path):
    model, whole = _setup(gpt2_dir)
    a = ln.record(model, {k: v[:4] for k, v in TEXTS.items()}, batch_size=3, progress=False)
    b = ln.record(model, {k: v[4:] for k, v in TEXTS.items()}, batch_size=3, progress=False)
    torch.testing.assert_close((a + b).resid_sums, whole.resid_sums, rtol=1e-4, atol=1e-3)
    fr = ln.record(model, {"fr": SENTENCES["fr"][:3]}, progress=False)
    union = whole + fr
    assert torch.equal(union.resid_sums[:3], whole.resid_sums) and torch.equal(union.resid_sums[3], fr.resid_sums[0])
    whole.save(tmp_path / "stats")
    meta = json.loads((tmp_path / "stats.json").read_text())
    assert meta["stats_format"] == 2
    back = ln.ActivationStats.load(tmp_path / "stats")
    assert torch.equal(back.resid_sums, whole.resid_sums)


def _random_neurons(stats, seed=1):
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(len(stats.langs), stats.n_layers, stats.width, generator=g) < 0.1
    return ln.NeuronSet(list(stats.langs), mask, stats.site, "test", model=stats.model)


def _format1_copy(stats, path):
    """Save ``stats`` as a statistics file of format 1 (before residual sums existed)."""
    tensors = {k: getattr(stats, k) for k in ln.ActivationStats._TENSORS}
    meta = {
        "langs": stats.langs,
        "site": stats.site,
        "pooling": stats.pooling,
        "model": stats.model,
        "corpus": stats.corpus,
        "truncated": stats.truncated,
        "shape": [len(stats.langs), stats.n_layers, stats.width],
    }
    _io.save_artifact(path, "activation_stats", {**tensors, "nonfinite": stats.nonfinite}, meta)


def test_format1_files_load_and_only_residual_steering_refuses_them(gpt2_dir, tmp_path):
    model, stats = _setup(gpt2_dir)
    _format1_copy(stats, tmp_path / "old")
    old = ln.ActivationStats.load(tmp_path / "old")
    assert old.resid_sums is None
    for key in ln.ActivationStats._TENSORS:
        assert torch.equal(getattr(old, key), getattr(stats, key)), key
    neurons = _random_neurons(old)
    assert st.language_arithmetic(neurons, old, target="de").n_neurons > 0  # neuron steering is unaffected
    with pytest.raises(ln.LangNeuronsError, match="no residual-stream sums"):
        st.residual_diffmean(old, "de", 0)
    assert (old + stats).resid_sums is None  # a merge with old statistics has none either
    with pytest.raises(ln.LangNeuronsError, match="no residual-stream sums"):
        (stats + old).resid_mean()
    old.save(tmp_path / "resaved")  # saved again without them: still loads
    assert ln.ActivationStats.load(tmp_path / "resaved").resid_sums is None


def test_newer_statistics_format_is_refused(gpt2_dir, tmp_path):
    _, stats = _setup(gpt2_dir)
    path = stats.save(tmp_path / "stats")
    meta = json.loads((tmp_path / "stats.json").read_text())
    meta["stats_format"] = 3
    meta["meta_sha256"] = _io._meta_sha256(meta)
    (tmp_path / "stats.json").write_text(json.dumps(meta))
    with pytest.raises(ln.LangNeuronsError, match="statistics format 3"):
        ln.ActivationStats.load(path)


def test_direction_is_target_mean_minus_unweighted_mean_of_the_others(llama_dir):
    _, stats = _setup(llama_dir)
    means = stats.resid_sums / stats.tokens.double()[:, None, None]
    assert len(set(stats.tokens.tolist())) > 1  # token counts differ: weighting would show
    torch.testing.assert_close(st.residual_direction(stats, "de"), means[1] - (means[0] + means[2]) / 2)
    torch.testing.assert_close(st.residual_direction(stats, "de", others=["ja"]), means[1] - means[2])
    hooks = st.residual_diffmean(stats, "de", range(stats.n_layers), alpha=2.5)
    assert isinstance(hooks, st.ResidualSteering) and hooks.layers == list(range(stats.n_layers))
    assert [name for name, _ in hooks] == [f"blocks.{layer}.hook_resid_post" for layer in range(stats.n_layers)]
    for layer, v in hooks.vectors.items():
        torch.testing.assert_close(v, (2.5 * (means[1] - (means[0] + means[2]) / 2)[layer]).float())


def _captures(n_layers, seen):
    """Hooks that clone every upstream value and every hook_resid_post they see, per call."""
    names = [
        f"blocks.{layer}.{h}"
        for layer in range(n_layers)
        for h in ("hook_resid_mid", "mlp.hook_post", "hook_resid_post")
    ]
    return [(n, lambda x, hook, n=n: seen.setdefault(n, []).append(x.clone())) for n in names]


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_hook_adds_exactly_the_vector_and_nothing_upstream(arch, request):
    from conftest import _tiny_dir

    model, stats = _setup(_tiny_dir(arch, request.getfixturevalue("tmp_path_factory")))
    layer, n = 0, stats.n_layers
    hooks = st.residual_diffmean(stats, "ja", layer, alpha=3.0)
    vector = hooks.vectors[layer]
    assert vector.norm() > 0
    tokens = model.to_tokens(SENTENCES["en"][2])
    plain, steered = {}, {}
    with torch.inference_mode():
        model.run_with_hooks(tokens, fwd_hooks=_captures(n, plain))
        model.run_with_hooks(tokens, fwd_hooks=[*hooks, *_captures(n, steered)])  # captures run after the edit
    name = f"blocks.{layer}.hook_resid_post"
    torch.testing.assert_close(steered[name][0] - plain[name][0], vector.expand_as(plain[name][0]), rtol=0, atol=1e-5)
    for upstream in (f"blocks.{layer}.hook_resid_mid", f"blocks.{layer}.mlp.hook_post"):
        assert torch.equal(steered[upstream][0], plain[upstream][0]), upstream
    last = f"blocks.{n - 1}.hook_resid_post"
    assert not torch.allclose(steered[last][0], plain[last][0])  # and it reaches the layers above


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_hook_under_generate_with_kv_cache(arch, request):
    from conftest import _tiny_dir

    model, stats = _setup(_tiny_dir(arch, request.getfixturevalue("tmp_path_factory")))
    layer = stats.n_layers - 1
    hooks = st.residual_diffmean(stats, "de", [layer], alpha=2.0)
    name = f"blocks.{layer}.hook_resid_post"
    before, after = [], []
    watch = [(name, lambda x, hook: before.append(x.clone())), *hooks, (name, lambda x, hook: after.append(x.clone()))]
    tokens = model.to_tokens(SENTENCES["en"][1])
    with model.hooks(fwd_hooks=watch):
        cached = model.generate(tokens, max_new_tokens=6, do_sample=False, verbose=False, return_type="tokens")
    # The prompt once ([1, prompt, d]), then one [1, 1, d] step per new token: each moved by the vector.
    assert before[0].shape[1] == tokens.shape[1] and all(b.shape[1] == 1 for b in before[1:]) and len(before) >= 2
    for b, a in zip(before, after, strict=True):
        torch.testing.assert_close(a - b, hooks.vectors[layer].expand_as(b), rtol=0, atol=1e-5)
    with model.hooks(fwd_hooks=list(hooks)):
        uncached = model.generate(
            tokens, max_new_tokens=6, do_sample=False, verbose=False, return_type="tokens", use_past_kv_cache=False
        )
    assert torch.equal(cached, uncached)
    plain = model.generate(tokens, max_new_tokens=6, do_sample=False, verbose=False, return_type="tokens")
    with st.steer(model, st.residual_diffmean(stats, "de", [layer], alpha=50.0)):
        strong = model.generate(tokens, max_new_tokens=6, do_sample=False, verbose=False, return_type="tokens")
    assert not torch.equal(strong, plain)  # a strong push changes what is generated


def test_positions_and_composition(llama_dir):
    model, stats = _setup(llama_dir)
    tokens = model.to_tokens(SENTENCES["de"][0])
    one = st.residual_diffmean(stats, "en", 0, alpha=1.0)
    both = one + st.residual_diffmean(stats, "en", [0, 1], alpha=2.0)
    assert both.layers == [0, 1]
    torch.testing.assert_close(both.vectors[0], 3.0 * one.vectors[0])
    with torch.inference_mode():
        plain = model(tokens)
        gen_only = model.run_with_hooks(tokens, fwd_hooks=st.residual_diffmean(stats, "en", 0, positions="generated"))
        prompt_only = model.run_with_hooks(tokens, fwd_hooks=st.residual_diffmean(stats, "en", 0, positions="prompt"))
        steered = model.run_with_hooks(tokens, fwd_hooks=one)
    torch.testing.assert_close(gen_only, plain)
    torch.testing.assert_close(prompt_only, steered)
    neurons = _random_neurons(stats)
    mixed = st.language_arithmetic(neurons, stats, target="en") + one  # neurons and residual: one plain list
    assert len(mixed) == len(st.language_arithmetic(neurons, stats, target="en")) + 1


def test_bad_inputs(llama_dir, gpt2_dir):
    _, stats = _setup(llama_dir)
    n = stats.n_layers
    for layer in (n, -1, [0, n], 1.5, True):
        with pytest.raises(ln.LangNeuronsError, match="out of range"):
            st.residual_diffmean(stats, "de", layer)
    with pytest.raises(ln.LangNeuronsError, match="no residual layer"):
        st.residual_diffmean(stats, "de", [])
    with pytest.raises(ln.LangNeuronsError, match="repeat"):
        st.residual_diffmean(stats, "de", [0, 0])
    with pytest.raises(ln.LangNeuronsError, match="'xx' is not in these statistics"):
        st.residual_diffmean(stats, "xx", 0)
    with pytest.raises(ln.LangNeuronsError, match="'fr' is not in these statistics"):
        st.residual_diffmean(stats, "de", 0, others=["fr"])
    with pytest.raises(ln.LangNeuronsError, match="must not contain the target"):
        st.residual_diffmean(stats, "de", 0, others=["de", "en"])
    with pytest.raises(ln.LangNeuronsError, match="finite"):
        st.residual_diffmean(stats, "de", 0, alpha=math.nan)
    with pytest.raises(ln.LangNeuronsError, match="positions"):
        st.residual_diffmean(stats, "de", 0, positions="middle")
    with pytest.raises(ln.LangNeuronsError, match="besides"):
        st.residual_diffmean(ln.record(_setup(llama_dir)[0], {"de": TEXTS["de"][:2]}, progress=False), "de", 0)
    other, _ = _setup(gpt2_dir)
    with pytest.raises(ln.LangNeuronsError, match="another model"):
        with st.steer(other, st.residual_diffmean(stats, "de", 0)):
            pass


def test_stack_rows_gives_each_batch_row_its_own_vector(llama_dir):
    model, stats = _setup(llama_dir)
    to_de, to_ja = (
        st.residual_diffmean(stats, "de", [0, 1], alpha=3.0),
        st.residual_diffmean(stats, "ja", [0, 1], alpha=3.0),
    )
    tokens = model.to_tokens([SENTENCES["en"][0], SENTENCES["en"][0]])
    with torch.inference_mode():
        both = model.run_with_hooks(tokens, fwd_hooks=st.stack_rows([to_de, to_ja]))
        de = model.run_with_hooks(tokens[:1], fwd_hooks=to_de)
        ja = model.run_with_hooks(tokens[1:], fwd_hooks=to_ja)
        torch.testing.assert_close(both, torch.cat([de, ja]), rtol=1e-4, atol=1e-4)
        with pytest.raises(ln.LangNeuronsError, match="2-row batch, but the batch has 1 rows"):
            model.run_with_hooks(tokens[:1], fwd_hooks=st.stack_rows([to_de, to_ja]))
    with pytest.raises(ln.LangNeuronsError, match="same layers"):
        st.stack_rows([to_de, st.residual_diffmean(stats, "ja", 0)])
