"""Model loading: local folders offline, clear errors, the cache location, fingerprints."""

from __future__ import annotations

import pytest

import lang_neurons as ln
from lang_neurons.models import ModelLoadError, cache_dir, check_fingerprint, model_fingerprint


def test_local_folder_loads_offline_with_classic_hook_names(llama_dir):
    model = ln.load_model(llama_dir, device="cpu")
    assert isinstance(model, ln.HookedModel)
    assert "blocks.1.mlp.hook_post" in model.hook_dict and "blocks.1.mlp.hook_pre_linear" in model.hook_dict
    fp = model_fingerprint(model)
    assert fp["gated"] and fp["act_fn"] == "silu" and fp["n_layers"] == model.cfg.n_layers
    assert fp == model_fingerprint(ln.load_model(str(llama_dir), device="cpu"))  # deterministic


def test_hub_name_offline_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="cannot load model 'nobody/no-such-model'.*save_pretrained"):
        ln.load_model("nobody/no-such-model", device="cpu")


def test_missing_folder_and_bad_dtype():
    with pytest.raises(ModelLoadError, match="does not exist"):
        ln.load_model("./no/such/folder")
    with pytest.raises(ModelLoadError, match="dtype"):
        ln.load_model("gemma-3-270m", dtype="float7")


def test_cache_dir_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("LANG_NEURONS_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    monkeypatch.delenv("LANG_NEURONS_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert cache_dir() == tmp_path / "x" / "lang_neurons"


def test_fingerprint_mismatch_names_the_difference(llama_dir, gpt2_dir):
    llama = ln.load_model(llama_dir, device="cpu")
    gpt2 = ln.load_model(gpt2_dir, device="cpu")
    with pytest.raises(ln.LangNeuronsError, match="was made on another model"):
        check_fingerprint(model_fingerprint(gpt2), llama, "x")
