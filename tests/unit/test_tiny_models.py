"""The tiny offline test models boot in TransformerLens 4 and expose the MLP hooks we need.

Also pins the TransformerBridge behaviour the library relies on: padding with an
attention mask, exceptions raised from hooks, hook removal, and generation with hooks.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from tiny_models import (
    BOS_ID,
    CORPUS,
    D_MLP,
    EOS_ID,
    GATED_ARCHS,
    MLP_ACT_FN,
    N_LAYERS,
    PAD_ID,
    TL_CFG_ACT_FN,
    TOKENIZER_ADDS_BOS,
    UNK_ID,
    VOCAB_SIZE,
    arch_of,
    build_tokenizer,
    load_tiny_bridge,
    make_tiny_model,
)
from transformers import AutoTokenizer
from transformers.activations import ACT2FN

SENTENCES = [
    "The cat is sleeping on the warm windowsill.",
    "猫",
    "Die Kinder spielen Fußball im Park, und es regnet den ganzen Tag.",
    "Le chat dort.",
]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir: Path) -> SimpleNamespace:
    """The booted bridge of one tiny arch, with its folder, tokenizer and boot time."""
    arch = arch_of(tiny_model_dir)
    t0 = time.perf_counter()
    bridge = load_tiny_bridge(tiny_model_dir)
    boot_s = time.perf_counter() - t0
    return SimpleNamespace(
        arch=arch,
        path=tiny_model_dir,
        bridge=bridge,
        boot_s=boot_s,
        tokenizer=AutoTokenizer.from_pretrained(tiny_model_dir),
        gated=arch in GATED_ARCHS,
    )


def _mlp_names(bridge, gated: bool) -> list[str]:
    hooks = ["hook_pre", "hook_post"] + (["hook_pre_linear"] if gated else [])
    return [f"blocks.{l}.mlp.{h}" for l in range(bridge.cfg.n_layers) for h in hooks]


def _ids(tokenizer, text: str) -> list[int]:
    """BOS + the text's tokens (BOS added by hand, whatever the tokenizer does)."""
    return [tokenizer.bos_token_id] + tokenizer(text, add_special_tokens=False)["input_ids"]


def _capture(bridge, names, tokens, attention_mask=None) -> dict[str, torch.Tensor]:
    store: dict[str, torch.Tensor] = {}

    def make(name):
        def hook(x, hook):
            store[name] = x.detach().clone()

        return hook

    kwargs = {} if attention_mask is None else {"attention_mask": attention_mask}
    with torch.inference_mode(), bridge.hooks(fwd_hooks=[(n, make(n)) for n in names]):
        bridge(tokens, **kwargs)
    return store


def _n_forward_hooks(bridge) -> int:
    return sum(len(hp._forward_hooks) for hp in bridge.hook_dict.values())


# --------------------------------------------------------------------------- tokenizer


def test_tokenizer_is_byte_level_and_has_special_tokens(tmp_path):
    tok = build_tokenizer(tmp_path / "tok")
    assert len(tok) == VOCAB_SIZE
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id, tok.unk_token_id) == (
        PAD_ID,
        BOS_ID,
        EOS_ID,
        UNK_ID,
    )
    assert (tmp_path / "tok" / "tokenizer.json").exists()
    for text in CORPUS[::37] + ["Ünïcödé 🙂 ελληνικά العربية हिन्दी", "\t\n  x  "]:
        ids = tok(text)["input_ids"]
        assert UNK_ID not in ids
        assert tok.decode(ids) == text
    # The corpus is covered by merges: far fewer tokens than UTF-8 bytes.
    text = " ".join(CORPUS[:50])
    assert len(tok(text)["input_ids"]) < 0.6 * len(text.encode())
    with_bos = build_tokenizer(tmp_path / "tok_bos", add_bos=True)
    assert with_bos("Hallo")["input_ids"] == [BOS_ID] + tok("Hallo")["input_ids"]


def test_tiny_model_is_deterministic(tmp_path):
    a = make_tiny_model("gpt2", tmp_path / "a", seed=0)
    b = make_tiny_model("gpt2", tmp_path / "b", seed=0)
    c = make_tiny_model("gpt2", tmp_path / "c", seed=1)
    blob = lambda p: (p / "model.safetensors").read_bytes()  # noqa: E731
    assert blob(a) == blob(b)
    assert blob(a) != blob(c)


# --------------------------------------------------------------------------- every arch


def test_saved_folder_has_matching_token_ids(tiny):
    config = json.loads((tiny.path / "config.json").read_text())
    assert (config["bos_token_id"], config["eos_token_id"], config["pad_token_id"]) == (
        BOS_ID,
        EOS_ID,
        PAD_ID,
    )
    tok = tiny.tokenizer
    assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (BOS_ID, EOS_ID, PAD_ID)
    starts_with_bos = tok("hello")["input_ids"][0] == BOS_ID
    assert starts_with_bos == TOKENIZER_ADDS_BOS[tiny.arch]


def test_bridge_boots_offline_with_tiny_dims(tiny):
    cfg = tiny.bridge.cfg
    assert cfg.n_layers == N_LAYERS
    assert cfg.d_mlp == D_MLP
    assert cfg.d_vocab == VOCAB_SIZE
    assert str(cfg.device) == "cpu"
    assert bool(cfg.gated_mlp) == tiny.gated
    assert cfg.act_fn == TL_CFG_ACT_FN[tiny.arch]
    print(f"{tiny.arch}: boot {tiny.boot_s:.2f}s act_fn={cfg.act_fn}")


def test_mlp_hook_names_exist(tiny):
    hook_dict = tiny.bridge.hook_dict
    for layer in range(tiny.bridge.cfg.n_layers):
        assert f"blocks.{layer}.mlp.hook_pre" in hook_dict
        assert f"blocks.{layer}.mlp.hook_post" in hook_dict
        assert (f"blocks.{layer}.mlp.hook_pre_linear" in hook_dict) == tiny.gated


def test_hook_post_is_act_of_hook_pre(tiny):
    bridge = tiny.bridge
    tokens = torch.tensor([_ids(tiny.tokenizer, " ".join(SENTENCES))])
    with torch.inference_mode():
        _, cache = bridge.run_with_cache(
            tokens, names_filter=lambda n: n.endswith(("mlp.hook_pre", "mlp.hook_post", "mlp.hook_pre_linear"))
        )
    act = ACT2FN[MLP_ACT_FN[tiny.arch]]
    for layer in range(bridge.cfg.n_layers):
        pre = cache[f"blocks.{layer}.mlp.hook_pre"]
        post = cache[f"blocks.{layer}.mlp.hook_post"]
        assert pre.shape == post.shape == (1, tokens.shape[1], D_MLP)
        expected = act(pre)
        if tiny.gated:
            expected = expected * cache[f"blocks.{layer}.mlp.hook_pre_linear"]
        torch.testing.assert_close(post, expected, atol=1e-5, rtol=1e-4)
        # Random weights give varied activations, not all ~0 and not one-signed.
        assert 0.25 < (pre > 0).float().mean().item() < 0.75
        assert pre.std().item() > 0.2
        assert post.abs().mean().item() > 0.05


@pytest.mark.parametrize("side", ["left", "right"])
def test_padded_batch_with_mask_matches_single_runs(tiny, side):
    bridge, tok = tiny.bridge, tiny.tokenizer
    names = _mlp_names(bridge, tiny.gated)
    ids = [_ids(tok, s) for s in SENTENCES]
    width = max(map(len, ids))
    tokens = torch.full((len(ids), width), PAD_ID)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    spans = []
    for i, x in enumerate(ids):
        span = slice(width - len(x), width) if side == "left" else slice(0, len(x))
        tokens[i, span] = torch.tensor(x)
        mask[i, span] = 1
        spans.append(span)
    batched = _capture(bridge, names, tokens, attention_mask=mask)
    for i, x in enumerate(ids):
        alone = _capture(bridge, names, torch.tensor([x]))
        for name in names:
            torch.testing.assert_close(batched[name][i, spans[i]], alone[name][0], atol=1e-4, rtol=1e-4)


class _Stop(Exception):
    pass


def test_exception_from_hook_propagates_and_hooks_are_removed(tiny):
    bridge = tiny.bridge
    last = f"blocks.{bridge.cfg.n_layers - 1}.mlp.hook_post"
    tokens = torch.tensor([_ids(tiny.tokenizer, SENTENCES[0])])
    hooks_before = _n_forward_hooks(bridge)  # XGLM carries a few internal hooks

    def stop(x, hook):
        raise _Stop

    with torch.inference_mode():
        reference = bridge(tokens)
        with pytest.raises(_Stop):
            with bridge.hooks(fwd_hooks=[(last, stop)]):
                bridge(tokens)
        assert _n_forward_hooks(bridge) == hooks_before
        assert len(bridge.hook_dict[last]._forward_hooks) == 0
        torch.testing.assert_close(bridge(tokens), reference, atol=0, rtol=0)


def test_generate_with_hook_on_hook_post(tiny):
    bridge = tiny.bridge
    prompt = torch.tensor([_ids(tiny.tokenizer, SENTENCES[0])])
    n_new = 4
    shapes: list[tuple[int, ...]] = []

    def zero(x, hook):
        shapes.append(tuple(x.shape))
        return torch.zeros_like(x)

    kwargs = dict(max_new_tokens=n_new, do_sample=False, stop_at_eos=False, verbose=False)
    with torch.inference_mode():
        base = bridge.generate(prompt, **kwargs)
        with bridge.hooks(fwd_hooks=[(f"blocks.{l}.mlp.hook_post", zero) for l in range(N_LAYERS)]):
            hooked = bridge.generate(prompt, **kwargs)
            generate_shapes = list(shapes)
            zeroed_logits = bridge(prompt)
        again = bridge.generate(prompt, **kwargs)
        logits = bridge(prompt)
    assert base.shape == hooked.shape == (1, prompt.shape[1] + n_new)
    assert torch.equal(base[:, : prompt.shape[1]], prompt)
    assert torch.equal(base, again)
    # Prompt pass, then one [1, 1, d_mlp] step per new token (KV cache); per layer.
    assert generate_shapes[:N_LAYERS] == [(1, prompt.shape[1], D_MLP)] * N_LAYERS
    assert generate_shapes[N_LAYERS:] == [(1, 1, D_MLP)] * (N_LAYERS * (n_new - 1))
    assert not torch.allclose(zeroed_logits, logits)
