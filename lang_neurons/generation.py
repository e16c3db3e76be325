"""Stage 8: run the model under intervention: batched, seeded generation and per-language loss."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from lang_neurons.corpora import LanguageCorpus
from lang_neurons.errors import LangNeuronsError
from lang_neurons.models import HookedModel, attached
from lang_neurons.record import _batches, _encode, _pad

Hooks = Sequence[tuple[str, Any]]


def _device(model: HookedModel) -> torch.device:
    return torch.device(getattr(model.cfg, "device", None) or "cpu")


def generate(
    model: HookedModel,
    prompts: Sequence[str] | None = None,
    *,
    n: int | None = None,
    hooks: Hooks = (),
    max_new_tokens: int = 32,
    do_sample: bool = True,
    temperature: float = 0.8,
    top_p: float | None = None,
    top_k: int | None = None,
    seed: int = 0,
    batch_size: int = 16,
    stop_at_newline: bool = False,
    progress: bool = True,
) -> list[str]:
    """Generate text, optionally under steering ``hooks``; returns only the new text.

    Args:
        prompts: the prompts; ``None`` generates ``n`` samples from BOS alone (unconditional
            generation, as Kojima et al. evaluate steering).
        n: number of unconditional samples (ignored with ``prompts``).
        hooks: ``(hook_name, fn)`` pairs (e.g. a :class:`~lang_neurons.steering.Steering`),
            attached for the whole call and removed afterwards.
        do_sample: sample (default) or, with ``False``, decode greedily.
        temperature: sampling temperature.
        top_p: nucleus sampling threshold (``None``: off).
        top_k: sample among the ``k`` most likely tokens only (``None``: off).
        seed: sampling seed; batch ``i`` uses ``seed + i``, so results do not depend on what ran before.
        batch_size: sequences per ``model.generate`` call (prompts are left-padded with a mask).
        stop_at_newline: end each sequence at its first newline token (one-line answers such as
            translations; a batch stops as soon as every sequence has ended).
    """
    if prompts is None:
        if not n or n < 1:
            raise LangNeuronsError("give prompts, or n >= 1 for unconditional generation")
        bos = getattr(model.tokenizer, "bos_token_id", None)
        if bos is None:
            raise LangNeuronsError("this tokenizer has no BOS token: unconditional generation needs prompts")
        seqs = [[int(bos)]] * n
    else:
        if isinstance(prompts, str):
            prompts = [prompts]
        seqs, _ = _encode(model, prompts, max_length=int(getattr(model.cfg, "n_ctx", 2048)))
    if max_new_tokens < 1 or batch_size < 1:
        raise LangNeuronsError("max_new_tokens and batch_size must be >= 1")
    tok = model.tokenizer
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    stop = {t for t in (tok.eos_token_id, pad) if t is not None}
    eos = [tok.eos_token_id] if tok.eos_token_id is not None else []
    if stop_at_newline:
        newlines = {ids[0] for text in ("\n", "\n\n") if len(ids := tok.encode(text, add_special_tokens=False)) == 1}
        stop |= newlines
        eos += sorted(newlines)
    device = _device(model)
    out: list[str] = [""] * len(seqs)
    order = list(range(len(seqs)))  # keep prompt order; left padding handles mixed lengths
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    bar = tqdm(total=len(seqs), desc="generating", unit="seq", disable=not progress)
    with torch.inference_mode(), attached(model, list(hooks)), bar:  # the bar closes on any exit
        for bi, batch in enumerate(batches):
            ids, mask = _pad([seqs[i] for i in batch], pad, "left", device)
            torch.manual_seed(seed + bi)
            kwargs: dict[str, Any] = dict(
                max_new_tokens=max_new_tokens, do_sample=do_sample, temperature=temperature,
                top_p=top_p, top_k=top_k, return_type="tokens", verbose=False,
            )
            if not mask.all():
                kwargs["attention_mask"] = mask.long()
            if len(eos) > 1:
                kwargs["eos_token_id"] = eos
            tokens = model.generate(ids, **kwargs)
            for row, i in zip(tokens[:, ids.shape[1] :].tolist(), batch):
                cut = next((j for j, t in enumerate(row) if t in stop), len(row))
                out[i] = tok.decode(row[:cut], skip_special_tokens=True)
            bar.update(len(batch))
    bar.close()
    return out


def language_loss(
    model: HookedModel,
    corpus: LanguageCorpus | Mapping[str, Sequence[str]],
    *,
    hooks: Hooks = (),
    batch_size: int = 8,
    max_length: int = 256,
    progress: bool = True,
) -> Float[Tensor, "lang"]:
    """Mean next-token cross-entropy per language over real tokens (pads never count)."""
    if not isinstance(corpus, LanguageCorpus):
        corpus = LanguageCorpus({k: list(v) for k, v in corpus.items()}, name="texts")
    device = _device(model)
    pad = model.tokenizer.pad_token_id or 0
    totals = torch.zeros(len(corpus.langs), dtype=torch.float64)
    counts = torch.zeros(len(corpus.langs), dtype=torch.float64)
    encoded = {lang: _encode(model, corpus[lang], max_length)[0] for lang in corpus.langs}
    plan = [(li, lang, b) for li, lang in enumerate(corpus.langs) for b in _batches([len(x) for x in encoded[lang]], batch_size)]
    bar = tqdm(total=len(corpus), desc="loss", unit="text", disable=not progress)
    with torch.inference_mode(), attached(model, list(hooks)), bar:  # the bar closes on any exit
        for li, lang, batch in plan:
            ids, mask = _pad([encoded[lang][i] for i in batch], pad, "right", device)
            logits = model(ids, attention_mask=mask.long())
            target_mask = mask[:, 1:]
            loss = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), ids[:, 1:].flatten(), reduction="none")
            totals[li] += float((loss * target_mask.flatten()).sum())
            counts[li] += float(target_mask.sum())
            bar.update(len(batch))
    bar.close()
    if (counts == 0).any():
        raise LangNeuronsError("every language needs texts of at least two tokens to measure loss")
    return (totals / counts).float()
