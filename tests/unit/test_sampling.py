"""Inverse-CDF token sampling (lang_neurons.sampling) and its place in TransformerLens' generate."""

from __future__ import annotations

import importlib

import pytest
import torch

import lang_neurons as ln
from lang_neurons import sampling
from lang_neurons.generation import _pad_id, generate
from lang_neurons.recording import encode, pad
from lang_neurons.sampling import fast_sampling, penalize_repetition, sample_inverse_cdf

TL = importlib.import_module("transformer_lens.utilities")


def _one_level(logits: torch.Tensor) -> torch.Tensor:
    """The textbook inverse CDF, by hand: one float64 cumulative sum over the whole vocabulary."""
    cdf = torch.softmax(logits.float(), dim=-1).double().cumsum(-1)
    u = torch.rand(logits.shape[0], 1, dtype=torch.float64) * cdf[:, -1:]
    return torch.tensor([int((row <= x).sum()) for row, x in zip(cdf, u[:, 0])])


@pytest.mark.parametrize("vocab,block", [(10, 3), (12, 4), (7, 512), (1000, 16)])
def test_inverse_cdf_draws_what_a_one_level_cdf_draws(vocab, block):
    torch.manual_seed(0)
    logits = torch.randn(64, vocab) * 3
    logits[:, 1] = -torch.inf
    for seed in range(5):
        torch.manual_seed(seed)
        got = sample_inverse_cdf(logits, block=block)
        torch.manual_seed(seed)
        assert torch.equal(got, _one_level(logits))
        assert not (got == 1).any() and got.max() < vocab


def test_inverse_cdf_frequencies_follow_softmax():
    logits = torch.tensor([[2.0, 0.0, -torch.inf, 1.0, -1.0, 0.5, 3.0]])
    p = torch.softmax(logits, -1)[0]
    n = 40_000
    torch.manual_seed(1)
    draws = sample_inverse_cdf(logits.expand(n, -1), block=3)  # 7 tokens: padded to three blocks
    freq = torch.bincount(draws, minlength=7).double() / n
    sigma = (p * (1 - p) / n).sqrt()
    assert freq[2] == 0
    assert ((freq - p).abs() <= 5 * sigma + 1e-12).all(), (freq, p)


def test_repetition_penalty_is_ctrl_s():
    torch.manual_seed(0)
    logits = torch.randn(3, 20)
    tokens = torch.tensor([[1, 1, 4], [0, 19, 7], [5, 5, 5]])  # repeats count once
    want = logits.clone()
    for row, seen in zip(want, tokens):
        for t in seen.unique():
            row[t] = row[t] / 1.3 if row[t] > 0 else row[t] * 1.3
    assert torch.equal(penalize_repetition(logits, tokens, 1.3), want)


def test_fast_sampling_swaps_and_always_restores():
    original = TL.sample_logits
    with fast_sampling():
        assert TL.sample_logits is not original
        with fast_sampling():  # nests
            pass
        assert TL.sample_logits is not original
    assert TL.sample_logits is original
    with pytest.raises(RuntimeError), fast_sampling():
        raise RuntimeError("boom")
    assert TL.sample_logits is original


def test_fast_sampling_leaves_greedy_and_filters_to_transformerlens():
    torch.manual_seed(0)
    logits = torch.randn(4, 50)
    with fast_sampling():
        assert torch.equal(TL.sample_logits(logits, temperature=0.0), logits.argmax(-1))
        torch.manual_seed(3)
        top = TL.sample_logits(logits, top_k=2, temperature=0.8)
    assert (top.unsqueeze(1) == logits.topk(2).indices).any(1).all()


def test_generate_samples_through_the_inverse_cdf(llama_dir, monkeypatch):
    bridge = ln.load_model(llama_dir, device="cpu")
    calls = []
    real = sampling.sample_inverse_cdf
    monkeypatch.setattr(sampling, "sample_inverse_cdf", lambda logits: calls.append(logits.shape) or real(logits))
    a = generate(bridge, n=6, max_new_tokens=5, seed=4, batch_size=3, repetition_penalty=1.1, progress=False)
    assert len(calls) == 2 * 5 and calls[0][0] == 3
    assert a == generate(bridge, n=6, max_new_tokens=5, seed=4, batch_size=3, repetition_penalty=1.1, progress=False)
    assert TL.sample_logits.__module__ == "transformer_lens.utilities.logits_utils"


def test_generated_first_tokens_follow_the_model(llama_dir):
    """The first token after BOS, drawn through TransformerLens' generate under fast_sampling,
    has the frequencies of the model's own next-token distribution (its 5 likeliest tokens and
    the rest, within 5 sigma)."""
    bridge = ln.load_model(llama_dir, device="cpu")
    bos = torch.full((4000, 1), int(bridge.tokenizer.bos_token_id))
    with torch.inference_mode():
        p = torch.softmax(bridge(bos[:1])[0, -1].float() / 0.8, -1)
        torch.manual_seed(0)
        with fast_sampling():
            first = bridge.generate(
                bos,
                max_new_tokens=1,
                do_sample=True,
                temperature=0.8,
                verbose=False,
                return_type="tokens",
                stop_at_eos=False,
            )[:, 1]
    top = p.topk(5).indices
    want = torch.cat([p[top], (1 - p[top].sum()).view(1)])
    got = torch.cat(
        [(first.unsqueeze(1) == top).double().mean(0), (~(first.unsqueeze(1) == top).any(1)).double().mean().view(1)]
    )
    sigma = (want * (1 - want) / len(first)).sqrt()
    assert ((got - want.double()).abs() <= 5 * sigma).all(), (got, want)


def test_prompt_step_unembeds_only_its_last_position(tiny_model_dir):
    """ln.generate asks for the prompt's last logits only (``logits_to_keep=1``): the unembedding
    sees one position per row at every step, and greedy tokens equal TransformerLens' own
    generate, which unembeds the whole prompt."""
    bridge = ln.load_model(tiny_model_dir, device="cpu")
    prompts = ["the cat sat on the mat", "a dog"]
    widths = []
    handle = bridge.original_model.get_output_embeddings().register_forward_hook(
        lambda mod, args, out: widths.append(args[0].shape[1])
    )
    try:
        got = generate(bridge, prompts, max_new_tokens=4, do_sample=False, progress=False)
    finally:
        handle.remove()
    assert widths and set(widths) == {1}
    seqs, _ = encode(bridge, prompts, max_length=64)
    ids, mask = pad(seqs, _pad_id(bridge), "left", torch.device("cpu"))
    with torch.inference_mode():
        ref = bridge.generate(
            ids, attention_mask=mask.long(), max_new_tokens=4, do_sample=False, verbose=False, return_type="tokens"
        )
    stop = {bridge.tokenizer.eos_token_id, _pad_id(bridge)}
    for row, text in zip(ref[:, ids.shape[1] :].tolist(), got):
        cut = next((j for j, t in enumerate(row) if t in stop), len(row))
        assert text == bridge.tokenizer.decode(row[:cut], skip_special_tokens=True)
