"""Run by test_tl3.py in a subprocess with TransformerLens 3.9 first on sys.path: the library must
accept a TL3 ``HookedTransformer`` through the same ``HookedModel`` protocol."""

import sys
import tempfile

import torch
import transformer_lens
from tiny_models import SENTENCES, build_tokenizer
from transformer_lens import HookedTransformer, HookedTransformerConfig

import lang_neurons as ln
from lang_neurons import steering as st
from lang_neurons.generation import guard_generation

assert transformer_lens.__file__.startswith(sys.argv[1]), transformer_lens.__file__
tok = build_tokenizer(tempfile.mkdtemp())
texts = {lang: SENTENCES[lang][:6] for lang in ("en", "de", "ja")}
for gated in (True, False):
    cfg = HookedTransformerConfig(
        n_layers=2,
        d_model=32,
        d_head=8,
        n_heads=4,
        d_mlp=64,
        d_vocab=len(tok),
        n_ctx=128,
        seed=0,
        act_fn="silu" if gated else "gelu_new",
        gated_mlp=gated,
        normalization_type="RMS" if gated else "LN",
        positional_embedding_type="rotary" if gated else "standard",
        default_prepend_bos=True,
    )
    model = HookedTransformer(cfg, tokenizer=tok).eval()
    assert isinstance(model, ln.HookedModel)
    one = ln.record(model, texts, batch_size=1, progress=False)
    many = ln.record(model, texts, batch_size=4, padding_side="left", progress=False)
    assert one.tokens.tolist() == many.tokens.tolist()
    torch.testing.assert_close(one.pooled, many.pooled, rtol=1e-4, atol=1e-5)
    neurons = ln.lape(one, top_rate=0.1)
    hooks = st.language_arithmetic(neurons, one, target="de")
    tokens = model.to_tokens(SENTENCES["fr"][0])
    with torch.inference_mode():
        assert not torch.allclose(model.run_with_hooks(tokens, fwd_hooks=hooks), model(tokens))
    with st.steer(model, hooks):
        out = ln.generate(model, n=2, max_new_tokens=5, progress=False)
    assert len(out) == 2 and not any(hp.fwd_hooks for hp in model.hook_dict.values())
    assert guard_generation(model).passed  # checked on first generate: the KV cache agrees on TL3 too
    # TL3's generate takes no attention mask: prompts of different lengths must not be padded together
    prompts = [SENTENCES["en"][0], SENTENCES["de"][1][:12], SENTENCES["ja"][0]]
    together = ln.generate(model, prompts, max_new_tokens=4, do_sample=False, progress=False)
    assert together == [ln.generate(model, [p], max_new_tokens=4, do_sample=False, progress=False)[0] for p in prompts]
    print("ok", "gated" if gated else "gelu")
