"""Stage 8: run the model under intervention: batched, seeded generation and per-language loss.

Generation is guarded: upstream releases can break KV-cache generation without raising anything
(transformers 5.24.0 with transformer-lens 4.3.0 made the bridge repeat one token while a forward
pass stayed right). :func:`check_kv_cache` decodes a few greedy tokens with the cache and scores
the result in one forward pass without it; :func:`guard_generation` runs that check once per
model (at :func:`~lang_neurons.load_model`, and on first use here for a model loaded elsewhere)
and, when it fails, warns once naming the versions and makes the model generate without the
cache from then on (correct, slower), unless asked to fail instead.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import itertools
import math
import os
import time
import warnings
import weakref
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Literal, cast

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from lang_neurons.choices import CACHE_CHECK_ENV, CACHE_CHECK_MODES
from lang_neurons.corpora import LanguageCorpus
from lang_neurons.errors import LangNeuronsError
from lang_neurons.models import HookedModel, attached
from lang_neurons.recording import batching
from lang_neurons.sampling import fast_sampling
from lang_neurons.steering import prompt_length

Hooks = Sequence[tuple[str, Any]]

CacheCheckMode = Literal["warn", "error", "off"]
CACHE_CHECK_PROMPTS: tuple[str, ...] = (
    "The capital of France is Paris. The capital of Germany is",
    "Die Hauptstadt von Frankreich ist",
)
"""Prompts of different lengths, so that the check covers left padding with a mask too."""


def _device(model: HookedModel) -> torch.device:
    return torch.device(getattr(model.cfg, "device", None) or "cpu")


def _pad_id(model: HookedModel) -> int:
    tok = model.tokenizer
    return tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id


def _generation_batches(model: HookedModel, seqs: Sequence[Sequence[int]], batch_size: int) -> list[list[int]]:
    """Indices of ``seqs`` per ``model.generate`` call, in prompt order within each call.

    A ``generate`` without an ``attention_mask`` argument (TransformerLens 3's
    ``HookedTransformer``: it rebuilds the mask from pad tokens, wrongly where pad is BOS) gets
    prompts of one token length per call, so it never sees padding.
    """
    order = list(range(len(seqs)))
    groups = [order]
    if "attention_mask" not in inspect.signature(model.generate).parameters:
        order.sort(key=lambda i: len(seqs[i]))  # stable: prompt order within a length
        groups = [list(g) for _, g in itertools.groupby(order, key=lambda i: len(seqs[i]))]
    return [g[i : i + batch_size] for g in groups for i in range(0, len(g), batch_size)]


def _keeps_last_logits(model: HookedModel) -> bool:
    """Whether ``model.generate`` can be told to unembed only the prompt's last position.

    The bridge's ``generate`` passes extra keyword arguments to the prompt's forward pass, and
    the Hugging Face model under it takes ``logits_to_keep``: with ``logits_to_keep=1`` the
    prompt step skips the 262k-token unembedding of every position but the last (on Gemma-3-270M,
    48 prompts of 17 tokens: most of the prompt step's 4.2 s). TransformerLens 3 takes neither.
    """
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in inspect.signature(model.generate).parameters.values()):
        return False
    forward = getattr(getattr(model, "original_model", None), "forward", None)
    return forward is not None and "logits_to_keep" in inspect.signature(forward).parameters


def _generate_batch(
    model: HookedModel, ids: Int[Tensor, "batch pos"], mask: Bool[Tensor, "batch pos"], **kwargs: Any
) -> Int[Tensor, "batch total"]:
    """``model.generate`` on a left-padded batch, as tokens (prompt + new)."""
    if not mask.all():
        kwargs["attention_mask"] = mask.long()
    if _keeps_last_logits(model):
        kwargs["logits_to_keep"] = 1
    return model.generate(ids, return_type="tokens", verbose=False, **kwargs)


SCORE_BATCH = 16
"""Texts per forward pass when continuations are scored (:func:`lang_neurons.forcing.fluency`)."""


def planned_passes(samples: int, batch_size: int, max_new_tokens: int, score_batch: int = SCORE_BATCH) -> int:
    """Forward passes of generating ``samples`` continuations (``max_new_tokens`` steps per batch
    of ``batch_size``) and scoring them in batches of ``score_batch`` (``0``: not scored)."""
    steps = math.ceil(samples / batch_size) * max_new_tokens
    return steps + (math.ceil(samples / score_batch) if score_batch else 0)


def text_passes(corpus: LanguageCorpus, batch_size: int) -> int:
    """Forward passes of :func:`text_losses` over ``corpus`` at least (more where lengths vary a lot)."""
    return sum(math.ceil(len(corpus[lang]) / batch_size) for lang in corpus.langs)


class PassBar:
    """A stage's progress bar counted in forward passes of the model: every generation step and
    every scoring batch moves it, so it moves every second or so whatever the stage's cells
    cost, and its ETA is the stage's. Each :meth:`step` (a row, a grid cell) names itself in the
    bar and ends at its planned count, so early stops and skipped texts do not skew the ETA.
    Use it as a context manager (the bar closes on any exit)."""

    def __init__(self, model: HookedModel, total: int, desc: str, progress: bool = True) -> None:
        # the embedding runs once per forward pass, however the model's generate calls it (TL3's
        # calls forward directly, past the model's own hooks)
        embed = getattr(model, "embed", None)
        self.counted: torch.nn.Module = embed if isinstance(embed, torch.nn.Module) else cast(torch.nn.Module, model)
        self.name = desc
        # smoothing=0: the ETA from the stage's average rate, as decoding steps and scoring batches differ in cost
        self.bar = tqdm(total=total, desc=desc, unit="pass", disable=not progress, smoothing=0)
        self.end = 0

    def __enter__(self) -> PassBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.close()

    def _tick(self, *_: Any) -> None:
        if self.bar.n < self.end - 1:  # never past the step's planned end
            self.bar.update(1)

    @contextlib.contextmanager
    def step(self, label: str, passes: int) -> Iterator[None]:
        """Count the model's forward passes while the block runs, as ``label``, planned at ``passes``."""
        if self.bar.disable:  # nothing to show: no hook on the forward pass (generate inside a stage's step)
            yield
            return
        self.end = self.bar.n + passes
        self.bar.set_postfix_str(label, refresh=False)
        handle = self.counted.register_forward_pre_hook(self._tick)
        try:
            yield
        finally:
            handle.remove()
        self.bar.update(self.end - self.bar.n)


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
    repetition_penalty: float = 1.0,
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
        do_sample: sample (default) or, with ``False``, decode greedily. Plain temperature
            sampling draws by inverse CDF (:mod:`lang_neurons.sampling`), the same distribution as
            TransformerLens' own draw at a third of its cost.
        temperature: sampling temperature.
        top_p: nucleus sampling threshold (``None``: off).
        top_k: sample among the ``k`` most likely tokens only (``None``: off).
        repetition_penalty: CTRL's penalty on every token already in the sequence (prompt
            included), greedy or sampled: 1.0 is off; Gurgurov et al. decode with 1.1.
        seed: sampling seed; batch ``i`` uses ``seed + i``, so results do not depend on what ran before.
        batch_size: sequences per ``model.generate`` call (prompts are left-padded with a mask).
        stop_at_newline: end each sequence at its first newline token (one-line answers such as
            translations; a batch stops as soon as every sequence has ended).
    """
    hooks = list(hooks)
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
        seqs, _ = batching.encode(model, prompts, max_length=int(getattr(model.cfg, "n_ctx", 2048)))
    if max_new_tokens < 1 or batch_size < 1:
        raise LangNeuronsError("max_new_tokens and batch_size must be >= 1")
    if not (math.isfinite(repetition_penalty) and repetition_penalty > 0):
        raise LangNeuronsError(f"repetition_penalty must be a positive number (1.0: off), got {repetition_penalty!r}")
    tok = model.tokenizer
    pad = _pad_id(model)
    stop = {t for t in (tok.eos_token_id, pad) if t is not None}
    eos = [tok.eos_token_id] if tok.eos_token_id is not None else []
    if stop_at_newline:
        newlines = {ids[0] for text in ("\n", "\n\n") if len(ids := tok.encode(text, add_special_tokens=False)) == 1}
        stop |= newlines
        eos += sorted(newlines)
    guard_generation(model)
    device = _device(model)
    out: list[str] = [""] * len(seqs)
    batches = _generation_batches(model, seqs, batch_size)
    bar = PassBar(model, len(batches) * max_new_tokens, "generating", progress)  # moves every decoding step
    # the bar closes on any exit; fast_sampling: TransformerLens' per-token draw is 31 % of the time (lang_neurons.sampling)
    with torch.inference_mode(), fast_sampling(), attached(model, list(hooks)), bar:
        for bi, batch in enumerate(batches):
            ids, mask = batching.pad([seqs[i] for i in batch], pad, "left", device)
            torch.manual_seed(seed + bi)
            kwargs: dict[str, Any] = dict(
                max_new_tokens=max_new_tokens, do_sample=do_sample, temperature=temperature, top_p=top_p, top_k=top_k
            )
            if len(eos) > 1:
                kwargs["eos_token_id"] = eos
            if repetition_penalty != 1.0:
                kwargs["repetition_penalty"] = repetition_penalty
            # a prompt/generated edit learns where the new tokens start
            with prompt_length(hooks, ids.shape[1]), bar.step(f"batch {bi + 1}/{len(batches)}", max_new_tokens):
                tokens = _generate_batch(model, ids, mask, **kwargs)
            for row, i in zip(tokens[:, ids.shape[1] :].tolist(), batch):
                cut = next((j for j, t in enumerate(row) if t in stop), len(row))
                out[i] = tok.decode(row[:cut], skip_special_tokens=True)
    return out


@dataclass(frozen=True)
class TextLosses:
    """Per-text next-token cross-entropy of a corpus: the summed loss and the number of scored
    tokens of every text, by language (what :func:`text_losses` measures).

    Attributes:
        langs: the languages, in corpus order.
        sums: per language, each text's summed loss over its real tokens (float64).
        counts: per language, each text's number of scored tokens (length - 1; float64).
    """

    langs: list[str]
    sums: list[Float[Tensor, " text"]]
    counts: list[Float[Tensor, " text"]]

    def mean(self) -> Float[Tensor, " lang"]:
        """The token-weighted mean loss per language: all of its texts' losses over all of their tokens."""
        return torch.stack([s.sum() / c.sum() for s, c in zip(self.sums, self.counts)]).float()


def text_losses(
    model: HookedModel,
    corpus: LanguageCorpus | Mapping[str, Sequence[str]],
    *,
    hooks: Hooks = (),
    batch_size: int = 8,
    max_length: int = 256,
    progress: bool = True,
) -> TextLosses:
    """Summed next-token cross-entropy and scored-token count of every text (pads never count).

    The per-language mean of :func:`language_loss` and the bootstrap intervals over texts of
    :func:`lang_neurons.intervals.loss_change_intervals` both come from this one measurement.
    """
    if not isinstance(corpus, LanguageCorpus):
        corpus = LanguageCorpus({k: list(v) for k, v in corpus.items()}, name="texts")
    device = _device(model)
    pad = model.tokenizer.pad_token_id or 0
    encoded = {lang: batching.encode(model, corpus[lang], max_length)[0] for lang in corpus.langs}
    sums = [torch.zeros(len(encoded[lang]), dtype=torch.float64) for lang in corpus.langs]
    counts = [torch.zeros(len(encoded[lang]), dtype=torch.float64) for lang in corpus.langs]
    plan = [
        (li, lang, b)
        for li, lang in enumerate(corpus.langs)
        for b in batching.batches([len(x) for x in encoded[lang]], batch_size)
    ]
    bar = tqdm(total=len(corpus), desc="loss", unit="text", disable=not progress)
    with torch.inference_mode(), attached(model, list(hooks)), bar:  # the bar closes on any exit
        for li, lang, batch in plan:
            ids, mask = batching.pad([encoded[lang][i] for i in batch], pad, "right", device)
            logits = model(ids, attention_mask=mask.long())
            target_mask = mask[:, 1:]
            loss = _token_losses(logits, ids)
            per_text = (loss * target_mask).sum(dim=1)
            index = torch.tensor(batch)
            sums[li][index] = per_text.double().cpu()
            counts[li][index] = target_mask.sum(dim=1).double().cpu()
            bar.update(len(batch))
    bar.close()
    if any(c.sum() == 0 for c in counts):
        raise LangNeuronsError("every language needs texts of at least two tokens to measure loss")
    return TextLosses(list(corpus.langs), sums, counts)


def _token_losses(
    logits: Float[Tensor, "batch pos vocab"], ids: Int[Tensor, "batch pos"]
) -> Float[Tensor, "batch pos-1"]:
    """Each position's next-token cross-entropy, one text at a time: a text's ``[pos - 1, vocab]``
    logits are a contiguous slice, so no copy of the batch's logits is made (on Gemma's 262k
    vocabulary a 16 x 33 batch's is 553 MB, and flattening it cost more than the loss); the values
    are bit for bit those of one ``cross_entropy`` over the flattened batch."""
    return torch.stack(
        [F.cross_entropy(logits[row, :-1].float(), ids[row, 1:], reduction="none") for row in range(ids.shape[0])]
    )


def language_loss(
    model: HookedModel,
    corpus: LanguageCorpus | Mapping[str, Sequence[str]],
    *,
    hooks: Hooks = (),
    batch_size: int = 8,
    max_length: int = 256,
    progress: bool = True,
) -> Float[Tensor, " lang"]:
    """Mean next-token cross-entropy per language over real tokens (pads never count): the
    token-weighted mean of :func:`text_losses`."""
    return text_losses(
        model, corpus, hooks=hooks, batch_size=batch_size, max_length=max_length, progress=progress
    ).mean()


# -- the KV-cache guard ------------------------------------------------------------------------
class KVCacheWarning(UserWarning):
    """Generation with the KV cache disagrees with a forward pass without it."""


@dataclass(frozen=True)
class CacheCheck:
    """Result of :func:`check_kv_cache`.

    ``worst_gap`` is the largest, over the checked steps, of how many nats the cached step's
    token lies below the uncached forward's best token (0 when they agree).
    """

    passed: bool
    steps: int
    worst_gap: float
    tolerance: float
    seconds: float
    cached: list[str]
    """Per prompt, the greedy continuation decoded with the cache."""
    worst_step: str
    """Where the two disagree most: the prompt, the step, and each path's token."""

    def __str__(self) -> str:
        head = "agree" if self.passed else "DISAGREE"
        text = (
            f"KV-cache generation and an uncached forward {head} over {self.steps} greedy steps "
            f"(worst gap {self.worst_gap:.3g} nats, tolerance {self.tolerance:g}; {self.seconds:.2f} s)"
        )
        return text if self.passed else f"{text}: {self.worst_step}"


def _tolerance(model: HookedModel) -> float:
    dtype = getattr(model.cfg, "dtype", torch.float32)
    return 0.01 if dtype in (torch.float32, torch.float64) else 0.5


def check_kv_cache(model: HookedModel, *, steps: int = 3, prompts: Sequence[str] = CACHE_CHECK_PROMPTS) -> CacheCheck:
    """Greedy-decode ``steps`` tokens per prompt with the KV cache, the way :func:`generate`
    calls ``model.generate`` (one left-padded batch with an attention mask), then run one forward
    pass over the result without a cache: each decoded token must be the uncached argmax at its
    step, within float noise (0.01 nats in float32, 0.5 in 16-bit dtypes).

    Hooks already on the model stay attached (both paths see them). Costs ``steps`` + 1 forward
    passes of a short batch: about a second on the embedded Gemma-3-270M on 2 CPU cores
    (``benchmarks/bench_cache_check.py``). The first step reads no cache; each later one does.
    """
    if steps < 2:
        raise LangNeuronsError(f"steps must be >= 2 (the first step reads no cache), got {steps}")
    start = time.perf_counter()
    prompts = list(prompts)
    seqs, _ = batching.encode(model, prompts, max_length=int(getattr(model.cfg, "n_ctx", 2048)))
    cached: list[str] = [""] * len(seqs)
    worst, where = -1.0, ""
    for batch in _generation_batches(model, seqs, len(seqs)):
        ids, mask = batching.pad([seqs[i] for i in batch], _pad_id(model), "left", _device(model))
        with torch.inference_mode():
            tokens = _generate_batch(model, ids, mask, max_new_tokens=steps, do_sample=False, stop_at_eos=False)
            full_mask = torch.cat([mask, torch.ones_like(tokens[:, ids.shape[1] :], dtype=torch.bool)], dim=1)
            logits = model(tokens, attention_mask=full_mask.long())
        new = tokens[:, ids.shape[1] :]
        logp = F.log_softmax(
            logits[:, ids.shape[1] - 1 : -1].float(), dim=-1
        )  # the uncached step that predicts each new token
        gaps = logp.max(dim=-1).values - logp.gather(-1, new.unsqueeze(-1)).squeeze(-1)
        decode = model.tokenizer.decode
        for row, i in enumerate(batch):
            cached[i] = decode(new[row].tolist())
        if float(gaps.max()) > worst:
            row, step = divmod(int(gaps.argmax()), steps)
            worst = float(gaps.max())
            where = (
                f"after {prompts[batch[row]]!r} + {decode(new[row, :step].tolist())!r}, the cached step gave "
                f"{decode([int(new[row, step])])!r} where the uncached forward gives {decode([int(logp[row, step].argmax())])!r} "
                f"(cached continuation {cached[batch[row]]!r})"
            )
    tolerance = _tolerance(model)
    return CacheCheck(
        passed=worst <= tolerance,
        steps=steps,
        worst_gap=worst,
        tolerance=tolerance,
        seconds=time.perf_counter() - start,
        cached=cached,
        worst_step=where,
    )


_checked: weakref.WeakKeyDictionary[Any, CacheCheck | None] = weakref.WeakKeyDictionary()


def cache_check_mode(mode: str | None = None) -> CacheCheckMode:
    """``mode``, else ``$LANG_NEURONS_CACHE_CHECK``, else ``"warn"``; checked."""
    mode = mode or os.environ.get(CACHE_CHECK_ENV) or "warn"
    if mode not in CACHE_CHECK_MODES:
        raise LangNeuronsError(
            f"unknown cache check {mode!r} (from the argument or ${CACHE_CHECK_ENV}): use one of {', '.join(CACHE_CHECK_MODES)}"
        )
    return mode  # type: ignore[return-value]


def guard_generation(model: HookedModel, mode: str | None = None) -> CacheCheck | None:
    """Run :func:`check_kv_cache` once per model and act on it; returns the check (``None`` when off).

    On a failed check, ``mode="warn"`` (the default) warns once with the versions and makes
    ``model.generate`` default to ``use_past_kv_cache=False`` from then on (an explicit
    ``use_past_kv_cache=True`` is still obeyed); ``mode="error"`` raises a
    :class:`~lang_neurons.LangNeuronsError` instead. ``mode="off"`` skips the check.
    """
    mode = cache_check_mode(mode)
    if model in _checked:
        return _checked[model]
    if mode == "off":
        _checked[model] = None  # remembered: a model loaded with the check off is not checked later
        return None
    result = check_kv_cache(model)
    if result.passed:
        _checked[model] = result
        return result
    stack = ", ".join(f"{name} {_version(name)}" for name in ("transformers", "transformer-lens", "torch"))
    what = (
        f"this model's KV-cache generation is wrong with {stack}: {result}. Install the tested "
        "versions (bash scripts/setup.sh installs requirements/lock.txt) or run `lang-neurons doctor`."
    )
    if mode == "error":
        raise LangNeuronsError(what)
    warnings.warn(
        f"{what} Generating without the KV cache from now on (correct, slower).", KVCacheWarning, stacklevel=2
    )
    _generate_without_cache(model)
    _checked[model] = result
    return result


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _generate_without_cache(model: HookedModel) -> None:
    """Make ``model.generate`` default to ``use_past_kv_cache=False`` (this instance only)."""
    original = model.generate

    @functools.wraps(original)
    def generate(*args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("use_past_kv_cache", False)
        return original(*args, **kwargs)

    model.generate = generate  # type: ignore[method-assign]
