"""Model loading: local folders offline, clear errors, the cache location, fingerprints, computing_in."""

from __future__ import annotations

import pytest
import torch

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


def test_a_tokenizer_larger_than_the_embedding_is_one_line(llama_dir, tmp_path, capsys):
    import shutil

    from transformers import AutoModelForCausalLM

    from lang_neurons import cli

    small = AutoModelForCausalLM.from_pretrained(llama_dir)
    small.resize_token_embeddings(64)  # a 64-token Llama, saved beside the tiny Llama's larger tokenizer
    small.save_pretrained(tmp_path / "small")
    for f in llama_dir.iterdir():
        if "token" in f.name:
            shutil.copy(f, tmp_path / "small" / f.name)
    with pytest.raises(ModelLoadError, match=r"tokenizer has \d+ tokens but the model's embedding has only 64 rows"):
        ln.load_model(tmp_path / "small", device="cpu")
    code = cli.main(["identify", "--model", str(tmp_path / "small"), "--out", str(tmp_path / "out"), "--device", "cpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "only 64 rows" in err[-1] and "Traceback" not in "\n".join(err)
    assert not (tmp_path / "out").exists()


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


def test_computing_in_casts_for_the_block_and_restores_bit_for_bit(tiny_model_dir):
    model = ln.load_model(tiny_model_dir, cache_check="off")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    tokens = model.to_tokens(["a small test sentence"])
    with torch.inference_mode():
        reference = model(tokens)
        with ln.computing_in(model, "bfloat16") as same:
            assert same is model and model.cfg.dtype == torch.bfloat16
            assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
            # the same floats as loading the model in bfloat16; rotary frequencies keep float32, as they do then
            assert all(b.dtype == torch.float32 for n, b in model.named_buffers() if n.endswith("inv_freq"))
            low = model(tokens)
        loaded = ln.load_model(tiny_model_dir, dtype="bfloat16", cache_check="off")
        assert torch.equal(low, loaded(tokens))
        assert low.dtype == torch.bfloat16 and (low.float() - reference).abs().max() < 0.1
        assert torch.equal(model(tokens), reference)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) and before[k].dtype == after[k].dtype for k in before)
    assert model.cfg.dtype == torch.float32


def test_computing_in_restores_on_error_and_none_is_a_no_op(llama_dir):
    model = ln.load_model(llama_dir, cache_check="off")
    weight = next(model.parameters())
    storage = weight.data_ptr()
    with pytest.raises(KeyError), ln.computing_in(model, torch.float16):
        assert weight.dtype == torch.float16
        raise KeyError("boom")
    assert weight.data_ptr() == storage and weight.dtype == torch.float32 and model.cfg.dtype == torch.float32
    with ln.computing_in(model, None):
        assert weight.data_ptr() == storage
    with pytest.raises(ln.LangNeuronsError, match="unknown dtype"), ln.computing_in(model, "int8"):
        pass
