"""Scoring a task: option log-likelihoods (batched forward passes under hooks), the
length-normalised choice, SQuAD exact match and F1, and :func:`evaluate_task`.

**Option log-likelihood** (as lm-evaluation-harness computes it): the prompt and ``prompt +
option`` are tokenised as the model sees them (BOS included); the option's tokens are those of the
whole string after the prompt's, and its log-likelihood is the sum of their next-token
log-probabilities. Trailing whitespace of the prompt moves onto the option first, so ``"Answer:"``
+ ``" A"`` and ``"Answer: "`` + ``"A"`` tokenise alike. Every (prompt, option) pair is one
sequence; sequences of similar length share a right-padded batch and one forward pass with the
hooks attached; pads are never scored. A prompt that tokenises to nothing (no BOS) gets the
tokenizer's BOS or EOS as context. A sequence longer than ``max_length`` loses the left of its prompt.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from lang_neurons.errors import LangNeuronsError
from lang_neurons.generation import generate
from lang_neurons.models import HookedModel, attached
from lang_neurons.recording import batching

from .base import Task, TaskResult

Hooks = Sequence[tuple[str, Any]]


def _device(model: HookedModel) -> torch.device:
    return torch.device(getattr(model.cfg, "device", None) or "cpu")


def _ids(model: HookedModel, text: str) -> list[int]:
    return model.to_tokens(text, truncate=False)[0].tolist() if text else _prefix(model)


def _prefix(model: HookedModel) -> list[int]:
    """What an empty prompt is: BOS when the model prepends one, else the tokenizer's BOS or EOS."""
    tok = model.tokenizer
    seq = model.to_tokens("x", truncate=False)[0].tolist()
    one = tok.encode("x", add_special_tokens=False)
    if len(seq) > len(one):
        return seq[: len(seq) - len(one)]
    start = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
    if start is None:
        raise LangNeuronsError("an empty prompt needs a BOS or EOS token to score its options after")
    return [int(start)]


def encode_option(model: HookedModel, prompt: str, option: str, max_length: int) -> tuple[list[int], int]:
    """Token ids of ``prompt + option`` and how many of them are the prompt's (see the module docstring)."""
    stripped = prompt.rstrip()
    option = prompt[len(stripped) :] + option
    context = _ids(model, stripped)
    whole = (
        model.to_tokens(stripped + option, truncate=False)[0].tolist() if stripped else context + _bare(model, option)
    )
    n_context = len(context)
    if len(whole) <= n_context:
        raise LangNeuronsError(f"the option {option!r} adds no token to its prompt: options must not be empty")
    if len(whole) > max_length:
        cut = len(whole) - max_length
        if cut >= n_context:
            raise LangNeuronsError(f"the option {option[:40]!r}... alone is longer than max_length={max_length} tokens")
        whole, n_context = whole[cut:], n_context - cut
    return whole, n_context


def _bare(model: HookedModel, text: str) -> list[int]:
    return model.tokenizer.encode(text, add_special_tokens=False)


def token_logprobs(
    logits: Float[Tensor, "batch pos vocab"], ids: Int[Tensor, "batch pos"], scored: Bool[Tensor, "batch pos"]
) -> tuple[Float[Tensor, " batch"], Int[Tensor, " batch"]]:
    """Per row, the summed log-probability of the tokens at the ``scored`` positions given
    everything before them, and how many there are (position 0 is never scored)."""
    target = scored[:, 1:]
    logp = F.log_softmax(logits[:, :-1].float(), dim=-1).gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    return (logp * target).sum(dim=1), target.sum(dim=1)


def option_loglikelihoods(
    model: HookedModel,
    prompts: Sequence[str],
    options: Sequence[Sequence[str]],
    *,
    hooks: Hooks = (),
    batch_size: int = 8,
    max_length: int | None = None,
    progress: bool = True,
) -> tuple[list[list[float]], list[list[int]]]:
    """Per prompt, the summed log-likelihood (nats) of each of its options as a continuation,
    and each option's number of tokens; one forward pass per batch of (prompt, option) pairs,
    with ``hooks`` attached."""
    if len(prompts) != len(options):
        raise LangNeuronsError(f"{len(prompts)} prompts but {len(options)} option lists")
    if batch_size < 1:
        raise LangNeuronsError(f"batch_size must be >= 1, got {batch_size}")
    max_length = max_length or int(getattr(model.cfg, "n_ctx", 2048))
    pairs = [(i, j) for i, opts in enumerate(options) for j in range(len(opts))]
    encoded = [encode_option(model, prompts[i], options[i][j], max_length) for i, j in pairs]
    sums = [[0.0] * len(opts) for opts in options]
    counts = [[0] * len(opts) for opts in options]
    pad = model.tokenizer.pad_token_id or 0
    device = _device(model)
    bar = tqdm(total=len(pairs), desc="options", unit="option", disable=not progress)
    with torch.inference_mode(), attached(model, list(hooks)), bar:
        for batch in batching.batches([len(ids) for ids, _ in encoded], batch_size):
            ids, mask = batching.pad([encoded[k][0] for k in batch], pad, "right", device)
            scored = mask.clone()
            for row, k in enumerate(batch):
                scored[row, : encoded[k][1]] = False
            logits = model(ids, attention_mask=mask.long())
            total, n = token_logprobs(logits, ids, scored)
            for row, k in enumerate(batch):
                i, j = pairs[k]
                sums[i][j], counts[i][j] = float(total[row]), int(n[row])
            bar.update(len(batch))
    return sums, counts


def choose(loglikelihoods: Sequence[float], options: Sequence[str], norm: str = "acc_norm") -> int:
    """The chosen option: highest log-likelihood (``acc``), per character (``acc_norm``) or per UTF-8 byte (``acc_bytes``).

    Ties go to the first option (numpy's ``argmax``, as lm-evaluation-harness)."""
    if norm == "acc":
        lengths = [1.0] * len(options)
    elif norm == "acc_norm":
        lengths = [float(len(o)) for o in options]
    elif norm == "acc_bytes":
        lengths = [float(len(o.encode("utf-8"))) for o in options]
    else:
        raise LangNeuronsError(f"unknown normalisation {norm!r}: use acc, acc_norm or acc_bytes")
    values = [ll / n for ll, n in zip(loglikelihoods, lengths)]
    return max(range(len(values)), key=lambda k: (values[k], -k))


# -- SQuAD v1.1 exact match and F1 --------------------------------------------------------------
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation)


def _unsegmented(ch: str) -> bool:
    """Characters written without spaces between words (CJK, kana, Thai): one token each in F1."""
    name = unicodedata.name(ch, "")
    return name.startswith(("CJK", "HIRAGANA", "KATAKANA", "THAI", "HANGUL")) or "IDEOGRAPH" in name


def normalize_answer(text: str) -> str:
    """SQuAD v1.1's normalisation: lower case, no punctuation, no English articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def answer_tokens(text: str) -> list[str]:
    """The normalised answer's tokens: whitespace-separated words, with every CJK, kana, Hangul or
    Thai character a token of its own (MLQA's mixed segmentation idea; SQuAD's for other scripts)."""
    out: list[str] = []
    for word in normalize_answer(text).split():
        run = ""
        for ch in word:
            if _unsegmented(ch):
                out += [run] if run else []
                out.append(ch)
                run = ""
            else:
                run += ch
        out += [run] if run else []
    return out


def exact_match(prediction: str, references: Sequence[str]) -> float:
    """1.0 when the normalised prediction equals a normalised reference, else 0.0."""
    return float(any(normalize_answer(prediction) == normalize_answer(r) for r in references))


def f1_score(prediction: str, references: Sequence[str]) -> float:
    """The best token F1 (multiset overlap, as SQuAD v1.1) of ``prediction`` against the references."""
    best = 0.0
    pred = answer_tokens(prediction)
    for ref in references:
        gold = answer_tokens(ref)
        if not pred or not gold:
            best = max(best, float(pred == gold))
            continue
        common = sum((Counter(pred) & Counter(gold)).values())
        if common:
            p, r = common / len(pred), common / len(gold)
            best = max(best, 2 * p * r / (p + r))
    return best


def evaluate_task(
    model: HookedModel,
    task: Task,
    *,
    hooks: Hooks = (),
    batch_size: int = 8,
    max_length: int | None = None,
    repetition_penalty: float = 1.0,
    progress: bool = True,
) -> TaskResult:
    """Score ``model`` on ``task`` with ``hooks`` attached (none: the baseline).

    Multiple choice: every option's log-likelihood after its prompt (:func:`option_loglikelihoods`),
    then ``acc``, ``acc_norm`` and ``acc_bytes`` per item (:func:`choose`). Generation: greedy
    answers (:func:`lang_neurons.generate`, at most ``task.max_new_tokens`` new tokens, cut at the
    first newline, ``repetition_penalty``; Gurgurov et al. decode with 1.1), stripped, then exact
    match and F1 against the best reference. ``batch_size`` is sequences per forward pass or
    generation batch.
    """
    if not isinstance(task, Task):
        raise LangNeuronsError(f"evaluate_task takes a Task (lang_neurons.tasks.load_task), got {type(task).__name__}")
    hooks = list(hooks)
    prompts = [item.prompt for item in task.items]
    if task.kind == "multiple_choice":
        options = [item.options for item in task.items]
        lls, counts = option_loglikelihoods(
            model, prompts, options, hooks=hooks, batch_size=batch_size, max_length=max_length, progress=progress
        )
        scores = {
            m: [float(choose(ll, item.options, m) == item.answer) for ll, item in zip(lls, task.items)]
            for m in task.metrics
        }
        predictions: list[Any] = [choose(ll, item.options, task.metric) for ll, item in zip(lls, task.items)]
        return TaskResult(task.name, task.lang, task.kind, task.metric, scores, predictions, lls, counts)
    answers = generate(
        model,
        prompts,
        hooks=hooks,
        max_new_tokens=task.max_new_tokens,
        do_sample=False,
        repetition_penalty=repetition_penalty,
        batch_size=batch_size,
        stop_at_newline=True,
        progress=progress,
    )
    answers = [a.strip() for a in answers]
    scores = {
        "exact_match": [exact_match(a, item.answers) for a, item in zip(answers, task.items)],
        "f1": [f1_score(a, item.answers) for a, item in zip(answers, task.items)],
    }
    return TaskResult(task.name, task.lang, task.kind, task.metric, scores, answers)
