"""Recording on tiny random models of every architecture: exactness, invariances, merge, files."""

from __future__ import annotations

import math

import pytest
import torch
from tiny_models import SENTENCES, TINY_ARCHS

import lang_neurons as ln
from lang_neurons.sites import resolve_site

TEXTS = {lang: SENTENCES[lang][:10] for lang in ("en", "de", "ja")}
_MODELS: dict[str, object] = {}


def _load(path):
    key = str(path)
    if key not in _MODELS:
        _MODELS[key] = ln.load_model(path, device="cpu")
    return _MODELS[key]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return _load(tiny_model_dir)


@pytest.fixture(scope="module")
def llama(llama_dir):
    return _load(llama_dir)


@pytest.fixture(scope="module")
def gpt2(gpt2_dir):
    return _load(gpt2_dir)


def _reference(model, texts, site_name, pooling="mean"):
    """Statistics computed the slow, obvious way: one sentence at a time, run_with_cache."""
    site = resolve_site(model, site_name)
    n_l = len(texts)
    active = torch.zeros(n_l, site.n_layers, site.width, dtype=torch.long)
    sums = torch.zeros(n_l, site.n_layers, site.width, dtype=torch.float64)
    tokens = torch.zeros(n_l, dtype=torch.long)
    pooled = []
    names = {h for layer in range(site.n_layers) for h in site.read_hooks(layer)}
    for li, lang in enumerate(texts):
        for text in texts[lang]:
            toks = model.to_tokens(text)
            with torch.inference_mode():
                _, cache = model.run_with_cache(toks, names_filter=lambda n: n in names)
            real = toks[0] != model.tokenizer.bos_token_id  # BOS is left out of statistics
            tokens[li] += int(real.sum())
            rows = []
            for layer in range(site.n_layers):
                act = site.activation([cache[h] for h in site.read_hooks(layer)])[0].double()[real]
                active[li, layer] += (act > 0).sum(0)
                sums[li, layer] += act.sum(0)
                rows.append({"mean": act.mean(0), "max": act.amax(0), "last": act[-1]}[pooling])
            pooled.append(torch.stack(rows))
    return tokens, active, sums, torch.stack(pooled).float()


@pytest.mark.parametrize("site", ["act", "post"])
def test_record_matches_reference_every_arch(tiny, site):
    stats = ln.record(tiny, TEXTS, site=site, batch_size=4, progress=False)
    tokens, active, sums, pooled = _reference(tiny, TEXTS, site)
    assert stats.tokens.tolist() == tokens.tolist()
    # Counting > 0 can flip for values within float noise of zero; allow a handful.
    assert (stats.active - active).abs().sum() <= 3
    torch.testing.assert_close(stats.sums, sums, rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(stats.pooled, pooled, rtol=1e-4, atol=1e-5)
    assert stats.pooled_lang.tolist() == [0] * 10 + [1] * 10 + [2] * 10
    assert stats.sentences.tolist() == [10, 10, 10]


@pytest.mark.parametrize("pooling", ["max", "last"])
def test_record_pooling_modes(llama, pooling):
    stats = ln.record(llama, TEXTS, pooling=pooling, batch_size=3, progress=False)
    *_, pooled = _reference(llama, TEXTS, "act", pooling)
    torch.testing.assert_close(stats.pooled, pooled, rtol=1e-4, atol=1e-5)


def test_gated_act_site_is_act_fn_of_gate(llama):
    """LAPE counts act_fn(gate) > 0, not hook_post > 0: the two differ on gated MLPs."""
    act = ln.record(llama, TEXTS, site="act", progress=False)
    pre = ln.record(llama, TEXTS, site="pre", progress=False)
    post = ln.record(llama, TEXTS, site="post", progress=False)
    # SiLU(x) > 0 exactly when x > 0.
    assert (act.active - pre.active).abs().sum() <= 3
    assert (act.active != post.active).any()
    gate_up = ln.record(llama, TEXTS, site="gate_up", progress=False)
    assert gate_up.width == 2 * act.width
    torch.testing.assert_close(gate_up.sums[..., : act.width], pre.sums)


@pytest.mark.parametrize("arch", ["gpt2", "llama", "bloom", "gemma3"])
def test_batch_size_and_padding_side_invariance(arch, request):
    model = _load(_dir(request, arch))
    base = ln.record(model, TEXTS, batch_size=1, progress=False)
    for bs, side in ((16, "right"), (16, "left"), (5, "left")):
        other = ln.record(model, TEXTS, batch_size=bs, padding_side=side, progress=False)
        assert other.tokens.tolist() == base.tokens.tolist()
        assert (other.active - base.active).abs().sum() <= 3
        torch.testing.assert_close(other.sums, base.sums, rtol=1e-4, atol=1e-3)
        torch.testing.assert_close(other.pooled, base.pooled, rtol=1e-4, atol=1e-5)


def _dir(request, arch):
    from conftest import _tiny_dir

    return _tiny_dir(arch, request.getfixturevalue("tmp_path_factory"))


def test_shard_merge_equals_whole(gpt2):
    whole = ln.record(gpt2, TEXTS, batch_size=4, progress=False)
    a = ln.record(gpt2, {k: v[:4] for k, v in TEXTS.items()}, batch_size=4, progress=False)
    b = ln.record(gpt2, {k: v[4:] for k, v in TEXTS.items()}, batch_size=4, progress=False)
    merged = a.merge(b)
    assert merged.langs == whole.langs
    assert merged.tokens.tolist() == whole.tokens.tolist()
    assert merged.sentences.tolist() == whole.sentences.tolist()
    assert torch.equal(merged.active, whole.active)
    # Shards batch differently, so float32 forward noise (~1e-6 relative) is all that may differ.
    torch.testing.assert_close(merged.sums, whole.sums, rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(merged.sq_sums, whole.sq_sums, rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(merged.pooled, whole.pooled, rtol=1e-4, atol=1e-5)
    assert torch.equal(merged.pooled_lang, whole.pooled_lang)
    # Languages may differ between shards.
    c = ln.record(gpt2, {"fr": SENTENCES["fr"][:3]}, progress=False)
    union = whole + c
    assert union.langs == ["en", "de", "ja", "fr"]
    assert union.tokens[:3].tolist() == whole.tokens.tolist()
    assert union.pooled_lang.tolist()[-3:] == [3, 3, 3]


def test_merge_rejects_mismatch(gpt2, llama):
    a = ln.record(gpt2, TEXTS, progress=False)
    with pytest.raises(ln.LangNeuronsError, match="pooling"):
        a.merge(ln.record(gpt2, TEXTS, pooling="max", progress=False))
    with pytest.raises(ln.LangNeuronsError, match="different models"):
        a.merge(ln.record(llama, TEXTS, progress=False))


def test_ap_sentences_cap_keeps_token_statistics(gpt2):
    full = ln.record(gpt2, TEXTS, progress=False)
    capped = ln.record(gpt2, TEXTS, ap_sentences=3, progress=False)
    assert torch.equal(full.active, capped.active)
    assert capped.pooled_lang.tolist() == [0] * 3 + [1] * 3 + [2] * 3
    torch.testing.assert_close(capped.pooled[:3], full.pooled[:3])


def test_save_load_round_trip(gpt2, tmp_path):
    stats = ln.record(gpt2, TEXTS, progress=False)
    stats.save(tmp_path / "stats")
    back = ln.ActivationStats.load(tmp_path / "stats.safetensors")
    for key in ln.ActivationStats._TENSORS:
        assert torch.equal(getattr(back, key), getattr(stats, key)), key
    assert back.langs == stats.langs and back.model == stats.model and back.site == stats.site
    assert not list(tmp_path.glob(".*tmp"))  # no temporary files left


def test_damaged_files_give_clear_errors(gpt2, tmp_path):
    stats = ln.record(gpt2, TEXTS, progress=False)
    path = stats.save(tmp_path / "stats")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ln.LangNeuronsError, match="truncated"):
        ln.ActivationStats.load(tmp_path / "stats")
    with pytest.raises(ln.LangNeuronsError, match="no activation_stats"):
        ln.ActivationStats.load(tmp_path / "missing")
    (tmp_path / "stats.json").write_text("{not json")
    with pytest.raises(ln.LangNeuronsError, match="not valid JSON"):
        ln.ActivationStats.load(tmp_path / "stats")


def test_truncation_warns_with_count(gpt2):
    long = {"en": ["word " * 300, "short text"], "de": ["Wort " * 300, "kurzer Text"]}
    with pytest.warns(UserWarning, match="2 of 4 texts were longer than 32 tokens"):
        stats = ln.record(gpt2, long, max_length=32, progress=False)
    assert stats.truncated == 2
    assert stats.tokens.max() <= 64


def test_bad_inputs(gpt2):
    with pytest.raises(ln.LangNeuronsError, match="unknown site"):
        ln.record(gpt2, TEXTS, site="attn", progress=False)
    with pytest.raises(ln.LangNeuronsError, match="gated"):
        ln.record(gpt2, TEXTS, site="gate_up", progress=False)
    with pytest.raises(ln.LangNeuronsError, match="pooling"):
        ln.record(gpt2, TEXTS, pooling="median", progress=False)
    with pytest.raises(ValueError, match="xx"):
        ln.record(gpt2, {"xx": ["text"]}, progress=False)
    with pytest.raises(ValueError, match="de"):
        ln.record(gpt2, {"en": ["text"], "de": []}, progress=False)


def test_hooks_removed_and_user_hooks_kept(gpt2):
    name = "blocks.0.mlp.hook_post"
    seen = []
    gpt2.hook_dict[name].add_hook(lambda act, hook: seen.append(1))
    try:
        before = len(gpt2.hook_dict[name].fwd_hooks)
        ln.record(gpt2, TEXTS, progress=False)
        assert len(gpt2.hook_dict[name].fwd_hooks) == before
        assert seen  # the user's hook ran during recording and is still there
    finally:
        gpt2.reset_hooks()
    counts = {n: len(hp.fwd_hooks) for n, hp in gpt2.hook_dict.items()}
    ln.record(gpt2, TEXTS, progress=False)
    assert counts == {n: len(hp.fwd_hooks) for n, hp in gpt2.hook_dict.items()}


def test_all_archs_are_listed():
    assert set(TINY_ARCHS) >= {"gpt2", "bloom", "xglm", "llama", "mistral", "qwen2", "gemma3"}


def _poisoned_llama(llama_dir, layer: int, rows: dict[int, float]):
    """A fresh tiny Llama whose gate projection rows ``rows`` at ``layer`` are set to NaN/inf."""
    model = ln.load_model(llama_dir, device="cpu")
    gate = dict(model.named_parameters())[
        f"model.layers.{layer}._original_component.mlp._original_component.gate_proj._original_component.weight"
    ]
    with torch.no_grad():
        for row, value in rows.items():
            gate[row] = value
    return model


def test_nonfinite_activations_are_counted_and_left_out(llama, llama_dir, tmp_path):
    clean = ln.record(llama, TEXTS, batch_size=4, progress=False)
    assert clean.nonfinite.tolist() == [[0, 0]] * 3
    model = _poisoned_llama(llama_dir, 1, {5: math.nan, 9: math.inf})
    with pytest.warns(UserWarning, match=r"residual stream is non-finite .* at layers \[1\]"):
        with pytest.warns(UserWarning, match=r"non-finite activation values .*\(layer 1: \d+;"):
            stats = ln.record(model, TEXTS, batch_size=4, progress=False)
    # The residual stream is not cleaned: NaN from layer 1's MLP stays in its sums, layer 0 is clean.
    assert (
        torch.equal(stats.resid_sums[:, 0], clean.resid_sums[:, 0]) and not torch.isfinite(stats.resid_sums[:, 1]).any()
    )
    assert stats.nonfinite[:, 0].tolist() == [0, 0, 0]
    assert stats.nonfinite[:, 1].tolist() == (2 * clean.tokens).tolist()  # two neurons, every counted token
    for t in (stats.sums, stats.sq_sums, stats.pooled):
        assert torch.isfinite(t).all()
    bad = torch.tensor([5, 9])
    assert (
        stats.active[:, 1, bad].eq(0).all()
        and stats.sums[:, 1, bad].eq(0).all()
        and stats.pooled[:, 1, bad].eq(0).all()
    )
    # Every other neuron is exactly what the clean model gives: the poison stays out.
    good = torch.ones(stats.width, dtype=torch.bool)
    good[bad] = False
    assert torch.equal(stats.tokens, clean.tokens) and torch.equal(stats.active[:, :, good], clean.active[:, :, good])
    assert torch.equal(stats.sums[:, :, good], clean.sums[:, :, good])
    assert torch.equal(stats.pooled[:, :, good], clean.pooled[:, :, good])
    stats.save(tmp_path / "stats")  # saved with the statistics
    assert torch.equal(ln.ActivationStats.load(tmp_path / "stats").nonfinite, stats.nonfinite)


def test_nonfinite_spreading_through_layers_is_reported_per_layer(llama_dir, tmp_path):
    model = _poisoned_llama(llama_dir, 0, {3: math.nan})  # NaN reaches the residual stream: layer 1 is all NaN
    with pytest.warns(UserWarning, match=r"residual stream is non-finite .* at layers \[0, 1\]"):
        with pytest.warns(UserWarning, match=r"layer 0: \d+, layer 1: \d+"):
            stats = ln.record(model, TEXTS, progress=False)
    assert stats.nonfinite[:, 0].tolist() == stats.tokens.tolist()
    assert stats.nonfinite[:, 1].tolist() == (stats.width * stats.tokens).tolist()
    assert stats.sums[:, 1].eq(0).all() and torch.isfinite(stats.sums).all()


def test_bfloat16_model_records_in_full_precision(llama, llama_dir):
    ref = ln.record(llama, TEXTS, progress=False)
    bf16 = ln.load_model(llama_dir, device="cpu", dtype="bfloat16")
    assert next(iter(bf16.parameters())).dtype == torch.bfloat16
    stats = ln.record(bf16, TEXTS, progress=False)
    assert (stats.tokens.dtype, stats.active.dtype, stats.sentences.dtype) == (torch.int64,) * 3
    assert (stats.sums.dtype, stats.sq_sums.dtype, stats.pooled.dtype) == (torch.float64, torch.float64, torch.float32)
    assert torch.equal(stats.tokens, ref.tokens)
    # bfloat16 keeps 8 bits of mantissa: values agree to about 1 %.
    torch.testing.assert_close(stats.mean(), ref.mean(), rtol=0.05, atol=0.02)
    torch.testing.assert_close(stats.pooled, ref.pooled, rtol=0.05, atol=0.02)
    assert (stats.probability() - ref.probability()).abs().mean() < 0.02


@pytest.mark.parametrize("bad", ["float8", "int64", "bfloat", torch.int32])
def test_bad_dtype_is_a_clear_error(llama_dir, bad):
    with pytest.raises(ln.LangNeuronsError, match="dtype"):
        ln.load_model(llama_dir, device="cpu", dtype=bad)


def test_device_and_device_map_together_is_a_clear_error(llama_dir):
    with pytest.raises(ln.LangNeuronsError, match="either device or n_devices/device_map"):
        ln.load_model(llama_dir, device="cpu", device_map="auto")
