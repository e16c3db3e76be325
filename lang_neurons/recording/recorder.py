"""The recording pass: :func:`record` streams a corpus through the model once.

The texts of each language are tokenised and cut into batches of similar length
(:mod:`.batching`); the plan of batches is cut into chunks of ``reduce_every`` batches, each
recorded by the hooks of an :class:`~lang_neurons.recording.accumulator.Accumulator` and folded
into the totals in plan order (:mod:`.distributed`), with a checkpoint every so often
(:mod:`.checkpoint`). The result is an :class:`~lang_neurons.recording.stats.ActivationStats`.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..config import REDUCE_EVERY, RecordConfig
from ..corpora import LanguageCorpus
from ..errors import LangNeuronsError
from ..models import HookedModel, attached, model_fingerprint
from ..sites import Site, resolve_site
from .accumulator import Accumulator, StopForward, resid_hook_name
from .batching import batches, encode, pad
from .checkpoint import checkpoint_path, load_checkpoint, recording_key, save_checkpoint
from .distributed import Totals, rank_and_world
from .stats import ActivationStats, Pooling


def record(
    model: HookedModel,
    corpus: LanguageCorpus | Mapping[str, Sequence[str]],
    *,
    site: str = "act",
    pooling: Pooling = "mean",
    batch_size: int = 16,
    max_length: int | None = None,
    ap_sentences: int | None = None,
    padding_side: Literal["right", "left"] = "right",
    skip_bos: bool = True,
    progress: bool = True,
    checkpoint: str | Path | None = None,
    checkpoint_every: int = 100,
    resume: bool = False,
    distributed: bool | None = None,
    reduce_every: int = REDUCE_EVERY,
    config: RecordConfig | None = None,
) -> ActivationStats:
    """Stream ``corpus`` through ``model`` once and return its :class:`ActivationStats`.

    Args:
        model: a hooked model (:func:`lang_neurons.load_model`, or a TL3 ``HookedTransformer``).
        corpus: a :class:`LanguageCorpus`, or a mapping language → texts.
        site: which neurons (see :mod:`lang_neurons.sites`): ``act`` (default), ``post``, ``pre``,
            ``gate_up``.
        pooling: how a sentence's tokens become one value per neuron for AP: ``mean`` over real
            tokens (default, as Kojima et al.), ``max``, or the ``last`` real token.
        batch_size: sentences per forward pass.
        max_length: tokens kept per text (longer texts are truncated, with one warning that
            counts them); default ``min(n_ctx, 512)``.
        ap_sentences: at most this many pooled sentences per language are kept for AP (the
            first ones in corpus order); all tokens still count for LAPE. ``None`` keeps all.
        padding_side: where batches are padded; results are the same either way.
        skip_bos: leave the BOS token out of every statistic (default). Its activations are
            language-independent outliers (an attention sink) that would dominate means.
        progress: show a progress bar.
        checkpoint: a file (``.safetensors``) where the recording state is saved every
            ``checkpoint_every`` batches (written atomically: temporary file, then rename) and
            removed once the recording is complete. An existing checkpoint is an error unless
            ``resume``.
        checkpoint_every: batches between checkpoints (rounded up to whole chunks of
            ``reduce_every`` batches per rank).
        resume: continue from ``checkpoint`` if it exists (start afresh if it does not). The
            result is identical to an uninterrupted recording. A checkpoint of another model,
            corpus or settings is refused.
        distributed: shard the batches over the ranks of the initialised default
            ``torch.distributed`` process group; every rank gets the same, complete statistics,
            equal to a single-process recording. ``None`` (default): when a group of more than
            one rank is initialised.
        reduce_every: batches per partial sum. The plan's batches are cut into chunks of this
            many; each chunk's float64 sums start from zero and are added to the totals in plan
            order, so the totals do not depend on how chunks are spread over ranks or runs.
        config: the settings as one :class:`~lang_neurons.config.RecordConfig` (``site``,
            ``pooling``, ``batch_size``, ``max_length``, ``ap_sentences``, ``padding_side``,
            ``skip_bos``, ``reduce_every``), in place of those keywords.

    Non-finite activations (NaN/inf) never enter the statistics: a chunk whose sums come out
    non-finite is recorded again with such values counted per language and layer
    (:attr:`ActivationStats.nonfinite`) and replaced by 0, so they add nothing to sums, active
    counts or pooled values (tokens still count); a warning names the layers and counts.

    The same pass sums the residual stream ``blocks.<l>.hook_resid_post`` of every layer over
    the same counted tokens (:attr:`ActivationStats.resid_sums`, float64 on the model's device
    during the pass, folded in plan order like the neuron sums). The forward therefore stops
    after the last layer's ``hook_resid_post`` instead of right after its MLP activation: the
    last layer's down projection is the only extra work. A non-finite residual stream is not
    cleaned: its sums stay NaN/inf, with a warning naming the layers.
    """
    if not isinstance(corpus, LanguageCorpus):
        corpus = LanguageCorpus({k: list(v) for k, v in corpus.items()}, name="texts")
    given = RecordConfig(site, pooling, batch_size, max_length, ap_sentences, padding_side, skip_bos, reduce_every)
    if config is None:
        config = given
    elif given != RecordConfig():
        raise LangNeuronsError("record takes its settings either as config= or as keywords, not both")
    if checkpoint_every < 1:
        raise LangNeuronsError("checkpoint_every and reduce_every must be positive integers")
    site, batch_size, ap_sentences = config.site, config.batch_size, config.ap_sentences
    pooling = config.pooling  # type: ignore[assignment]  # RecordConfig checked it is one of POOLINGS
    padding_side = config.padding_side  # type: ignore[assignment]  # RecordConfig checked it
    reduce_every = config.reduce_every
    rank, world = rank_and_world(distributed)
    spec = resolve_site(model, site)
    n_ctx = int(getattr(model.cfg, "n_ctx", 0) or 2048)
    max_length = min(n_ctx, config.max_length or 512)
    device = torch.device(getattr(model.cfg, "device", None) or "cpu")
    pad_id = getattr(model.tokenizer, "pad_token_id", None)
    pad_id = 0 if pad_id is None else int(pad_id)
    bos_id = getattr(model.tokenizer, "bos_token_id", None)
    skip_bos = config.skip_bos and bos_id is not None

    encoded, truncated = {}, 0
    for lang in corpus.langs:
        encoded[lang], n = encode(model, corpus[lang], max_length)
        truncated += n
    if truncated and rank == 0:
        warnings.warn(
            f"{truncated} of {len(corpus)} texts were longer than {max_length} tokens and were truncated", stacklevel=2
        )

    keep = {lang: len(ids) if ap_sentences is None else min(ap_sentences, len(ids)) for lang, ids in encoded.items()}
    offsets = dict(zip(corpus.langs, [0, *torch.tensor(list(keep.values())).cumsum(0).tolist()]))
    d_model = int(model.cfg.d_model)
    hook_dict = model.hook_dict  # built anew at every access on a TransformerBridge
    missing = [resid_hook_name(layer) for layer in range(spec.n_layers) if resid_hook_name(layer) not in hook_dict]
    if missing:
        raise LangNeuronsError(
            f"this model has no hook point {missing[0]!r}: lang_neurons records the residual stream there"
        )
    act_modules = spec.act_modules(model) if isinstance(spec, Site) else None
    acc = Accumulator(spec, len(corpus.langs), sum(keep.values()), pooling, device, d_model, act_modules)
    plan = [
        (li, lang, b)
        for li, lang in enumerate(corpus.langs)
        for b in batches([len(x) for x in encoded[lang]], batch_size)
    ]
    chunks = [plan[i : i + reduce_every] for i in range(0, len(plan), reduce_every)]

    def rows_of(lang: str, batch: list[int]) -> list[int]:
        return [offsets[lang] + i if i < keep[lang] else -1 for i in batch]

    total = Totals(len(corpus.langs), spec, device, d_model)
    # what a checkpoint must match: the settings as they act here (max_length and skip_bos resolved)
    fingerprint = model_fingerprint(model)  # once: it hashes weights (~17 ms on Gemma-3-270M)
    settings = dataclasses.replace(config, max_length=max_length, skip_bos=skip_bos).to_dict()
    key = recording_key(model, corpus, settings, fingerprint)
    ckpt = checkpoint_path(checkpoint) if checkpoint is not None else None
    done = 0  # chunks folded into `total`
    if ckpt is not None and ckpt.exists():
        if not resume:
            raise LangNeuronsError(
                f"{ckpt} holds the checkpoint of an unfinished recording: resume it (resume=True, CLI --resume) "
                "or delete it to start over"
            )
        done = load_checkpoint(ckpt, key, total, acc, len(chunks))

    def run_chunk(chunk: list[tuple[int, str, list[int]]], bar: Any) -> Tensor:
        """Record one chunk into `acc`; returns its token counts per language."""
        tokens = torch.zeros(len(corpus.langs), dtype=torch.int64, device=device)
        for li, lang, batch in chunk:
            ids, mask = pad([encoded[lang][i] for i in batch], pad_id, padding_side, device)
            counted = mask & (ids != bos_id) if skip_bos else mask
            acc.set_batch(li, counted, rows_of(lang, batch))
            tokens[li] += counted.sum()
            try:
                model(ids, attention_mask=mask.long())
            except StopForward:
                pass
            finally:
                acc.pending.clear()
                acc.gates.clear()
            acc.flush()
            if bar is not None:
                bar.update(len(batch))
        return tokens

    n_texts = [sum(len(b) for *_, b in chunk) for chunk in chunks]
    bar = tqdm(
        total=sum(n_texts),
        initial=sum(n_texts[:done]),
        desc="recording",
        unit="text",
        disable=not progress or rank != 0,
    )
    since_checkpoint = 0
    with torch.inference_mode(), attached(model, acc.hooks()), acc.module_hooks():
        while done < len(chunks):
            round_ids = list(range(done, min(done + world, len(chunks))))
            tokens = torch.zeros(len(corpus.langs), dtype=torch.int64, device=device)
            if rank < len(round_ids):
                chunk = chunks[round_ids[rank]]
                tokens = run_chunk(chunk, bar)
                if not (torch.isfinite(acc.sums).all() and torch.isfinite(acc.sq_sums).all()):
                    acc.take()  # drop the poisoned partial sums and record the chunk again, carefully
                    acc.careful = True
                    try:
                        tokens = run_chunk(chunk, None)
                    finally:
                        acc.careful = False
            rows = [[r for li, lang, b in chunks[c] for r in rows_of(lang, b) if r >= 0] for c in round_ids]
            total.fold(acc, tokens, rows, rank, world)
            bar.update(sum(n_texts[c] for i, c in enumerate(round_ids) if i != rank))
            done += len(round_ids)
            since_checkpoint += sum(len(chunks[c]) for c in round_ids)
            if ckpt is not None and since_checkpoint >= checkpoint_every and done < len(chunks):
                if rank == 0:
                    save_checkpoint(ckpt, key, total, acc, done, len(chunks))
                since_checkpoint = 0
    bar.close()
    stats = ActivationStats(
        langs=list(corpus.langs),
        site=site,
        pooling=pooling,
        tokens=total.tokens.cpu(),
        active=total.active.cpu(),
        sums=total.sums.cpu(),
        sq_sums=total.sq_sums.cpu(),
        sentences=torch.tensor([len(encoded[lang]) for lang in corpus.langs]),
        pooled=acc.pooled,
        pooled_lang=torch.repeat_interleave(torch.arange(len(corpus.langs)), torch.tensor(list(keep.values()))),
        model={**fingerprint, **spec.fingerprint_keys()},
        corpus=getattr(corpus, "name", ""),
        truncated=truncated,
        nonfinite=total.nonfinite.cpu(),
        resid_sums=total.resid_sums.cpu(),
    )
    assert stats.resid_sums is not None and stats.nonfinite is not None  # both given just above
    bad_resid = (~torch.isfinite(stats.resid_sums)).any(2).any(0).nonzero().flatten().tolist()
    if bad_resid and rank == 0:
        warnings.warn(
            f"the residual stream is non-finite (NaN/inf) at layers {bad_resid}: its sums there are not finite and "
            "cannot be steered with; check the model's weights and dtype",
            stacklevel=2,
        )
    if int(stats.nonfinite.sum()) and rank == 0:
        per_layer = stats.nonfinite.sum(0)
        where = ", ".join(f"layer {int(i)}: {int(per_layer[i])}" for i in per_layer.nonzero().flatten())
        warnings.warn(
            f"{int(per_layer.sum())} non-finite activation values (NaN/inf) were left out of the statistics ({where}; "
            "per language in stats.nonfinite): check the model's weights and dtype",
            stacklevel=2,
        )
    if ckpt is not None and rank == 0:
        ckpt.unlink(missing_ok=True)
        for stale in ckpt.parent.glob(f".{ckpt.name}.*.tmp"):  # left by a kill during a save
            stale.unlink(missing_ok=True)
    return stats
