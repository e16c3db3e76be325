"""The KV-cache guard: a cached generation that disagrees with an uncached forward is caught at
load, warned about once, and generation falls back to the (correct) uncached path.

The broken cache is simulated the way transformers 5.24.0 broke TransformerLens 4.3.0's bridge:
the cache from the previous step never reaches the next one, so each cached step sees only its
newest token. Uncached generation passes no cache and is unaffected, as it was there.
"""

from __future__ import annotations

import warnings

import pytest
import torch

import lang_neurons as ln
from lang_neurons.generation import KVCacheWarning, check_kv_cache, guard_generation

PROMPTS = ["The weather today is", "Das Wetter ist heute sehr"]
GREEDY = dict(max_new_tokens=8, do_sample=False, progress=False)


def _load(folder, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error", KVCacheWarning)  # a healthy load must not warn
        return ln.load_model(folder, device="cpu", **kwargs)


def test_check_passes_on_healthy_tiny_models(tiny_model_dir):
    model = _load(tiny_model_dir, cache_check="off")
    result = check_kv_cache(model, steps=4)
    assert result.passed and result.worst_gap <= result.tolerance == 0.01
    assert result.steps == 4 and len(result.cached) == 2 and all(result.cached)
    assert str(result).startswith("KV-cache generation and an uncached forward agree over 4 greedy steps")


def test_broken_cache_warns_once_falls_back_and_equals_uncached(llama_dir, monkeypatch, request):
    healthy = _load(llama_dir)
    reference = ln.generate(healthy, PROMPTS, **GREEDY)
    with torch.inference_mode():
        tokens = healthy.to_tokens(PROMPTS[0])
        uncached = healthy.generate(
            tokens, max_new_tokens=8, do_sample=False, use_past_kv_cache=False, return_type="tokens", verbose=False
        )
    request.getfixturevalue("broken_cache")

    unguarded = ln.load_model(llama_dir, device="cpu", cache_check="off")
    assert ln.generate(unguarded, PROMPTS, **GREEDY) != reference  # the simulated bug is real

    with pytest.warns(KVCacheWarning) as caught:
        model = ln.load_model(llama_dir, device="cpu")
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "transformers " in message and "transformer-lens " in message and "without the KV cache" in message
    with warnings.catch_warnings():
        warnings.simplefilter("error", KVCacheWarning)  # once per model: no second warning
        assert ln.generate(model, PROMPTS, **GREEDY) == reference
        assert ln.generate(model, PROMPTS, **GREEDY) == reference
        with torch.inference_mode():  # the user's own model.generate falls back too
            direct = model.generate(tokens, max_new_tokens=8, do_sample=False, return_type="tokens", verbose=False)
    assert torch.equal(direct, uncached)
    assert not guard_generation(model).passed  # remembered, not re-run


def test_error_mode_refuses_a_broken_cache(llama_dir, broken_cache, monkeypatch):
    with pytest.raises(ln.LangNeuronsError, match="KV-cache generation is wrong with transformers"):
        ln.load_model(llama_dir, device="cpu", cache_check="error")
    monkeypatch.setenv("LANG_NEURONS_CACHE_CHECK", "error")
    with pytest.raises(ln.LangNeuronsError, match="lang-neurons doctor"):
        ln.load_model(llama_dir, device="cpu")


def test_a_model_loaded_elsewhere_is_checked_on_first_generate(gpt2_dir, broken_cache):
    from transformer_lens.model_bridge import TransformerBridge

    bridge = TransformerBridge.boot_transformers(str(gpt2_dir), device="cpu")
    bridge.enable_compatibility_mode(disable_warnings=True, no_processing=True)
    with pytest.warns(KVCacheWarning):
        ln.generate(bridge, PROMPTS, **GREEDY)


def test_cache_check_modes_are_validated(gpt2_dir, monkeypatch):
    with pytest.raises(ln.LangNeuronsError, match="unknown cache check 'maybe'.*warn, error, off"):
        ln.load_model(gpt2_dir, device="cpu", cache_check="maybe")
    monkeypatch.setenv("LANG_NEURONS_CACHE_CHECK", "sometimes")
    with pytest.raises(ln.LangNeuronsError, match=r"\$LANG_NEURONS_CACHE_CHECK"):
        ln.load_model(gpt2_dir, device="cpu")
    model = _load(gpt2_dir, cache_check="off")
    with pytest.raises(ln.LangNeuronsError, match="steps must be >= 2"):
        check_kv_cache(model, steps=1)
