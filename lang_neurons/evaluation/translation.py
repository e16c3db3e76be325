"""Translation quality: BLEU and chrF (sacrebleu) with a tokenizer that fits the target language,
and few-shot translation prompts built from a parallel corpus for a base LM to complete.

:func:`translation_scores` gives both scores as a :class:`TranslationScore`;
:func:`translation_task` gives the prompts (:class:`TranslationItem`), and
:func:`clean_completion` cuts a model's continuation down to its translation.
"""

from __future__ import annotations

import functools
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lang_neurons.choices import TRANSLATION_TEMPLATES
from lang_neurons.corpora import LanguageCorpus
from lang_neurons.errors import LangNeuronsError
from lang_neurons.languages import language_name, lookup, same_language, validate_lang

from ._inputs import string_list

__all__ = [
    "TRANSLATION_TEMPLATES",
    "TranslationItem",
    "TranslationScore",
    "bleu",
    "bleu_tokenizer",
    "chrf",
    "clean_completion",
    "translation_scores",
    "translation_task",
]

# Scripts written without spaces between words, scored on characters.
_CHAR_SCRIPTS = {"Thai", "Laoo", "Khmr", "Mymr", "Tibt"}


@functools.lru_cache(maxsize=1)
def _has_mecab() -> bool:
    """True if sacrebleu's ``ja-mecab`` tokenizer can run (mecab-python3 + ipadic)."""
    from sacrebleu.metrics import BLEU

    try:
        BLEU(tokenize="ja-mecab")
    except (ImportError, RuntimeError):
        return False
    return True


def bleu_tokenizer(lang: str) -> str:
    """The sacrebleu tokenizer for a target language.

    ``zh`` for Chinese (any script, and Cantonese), ``ja-mecab`` for Japanese when
    ``mecab-python3`` and ``ipadic`` are installed else ``char``, ``char`` for
    Thai, Lao, Khmer, Burmese and Tibetan scripts, ``13a`` (the WMT default) otherwise.
    """
    row = lookup(lang)
    script = row.flores.split("_")[1] if row.flores else ""
    if script in ("Hans", "Hant"):
        return "zh"
    if script == "Jpan":
        return "ja-mecab" if _has_mecab() else "char"
    if script in _CHAR_SCRIPTS:
        return "char"
    return "13a"


def _pairs(hypotheses: Sequence[str], references: Sequence[str]) -> tuple[list[str], list[str]]:
    hyps = string_list(hypotheses, "hypotheses")
    refs = string_list(references, "references")
    if len(hyps) != len(refs):
        raise LangNeuronsError(f"{len(hyps)} hypotheses but {len(refs)} references: pass one reference per hypothesis")
    if not hyps:
        raise LangNeuronsError("no hypotheses to score: pass at least one hypothesis and its reference")
    return hyps, refs


def bleu(hypotheses: Sequence[str], references: Sequence[str], lang: str) -> Any:
    """Corpus BLEU (a sacrebleu ``BLEUScore``) with the tokenizer of :func:`bleu_tokenizer`."""
    from sacrebleu.metrics import BLEU

    hyps, refs = _pairs(hypotheses, references)
    metric = BLEU(tokenize=bleu_tokenizer(lang))
    score = metric.corpus_score(hyps, [refs])
    score.signature = str(metric.get_signature())
    return score


def chrf(hypotheses: Sequence[str], references: Sequence[str], lang: str) -> Any:
    """Corpus chrF (a sacrebleu ``CHRFScore``); character n-grams need no tokenizer.

    ``lang`` is validated only, for symmetry with :func:`bleu`.
    """
    from sacrebleu.metrics import CHRF

    validate_lang(lang)
    hyps, refs = _pairs(hypotheses, references)
    metric = CHRF()
    score = metric.corpus_score(hyps, [refs])
    score.signature = str(metric.get_signature())
    return score


@dataclass
class TranslationScore:
    """BLEU and chrF of one system output against references.

    Attributes:
        bleu: corpus BLEU, 0-100.
        chrf: corpus chrF, 0-100.
        signature_bleu: sacrebleu signature (says the tokenizer: ``tok:zh``, ...).
        signature_chrf: sacrebleu signature of chrF.
        n: number of segments.
        tokenizer: the BLEU tokenizer used.
        lang: the target language.
    """

    bleu: float
    chrf: float
    signature_bleu: str
    signature_chrf: str
    n: int
    tokenizer: str = ""
    lang: str = ""

    def __str__(self) -> str:
        return f"BLEU {self.bleu:.1f}  chrF {self.chrf:.1f}  (n={self.n}, {self.lang}, tok:{self.tokenizer})"


def translation_scores(hypotheses: Sequence[str], references: Sequence[str], lang: str) -> TranslationScore:
    """BLEU and chrF of ``hypotheses`` against ``references`` in target language ``lang``.

    Raises:
        LangNeuronsError: for empty or mismatched lists, non-strings or an unknown code.
    """
    code = validate_lang(lang)
    b = bleu(hypotheses, references, code)
    c = chrf(hypotheses, references, code)
    return TranslationScore(
        float(b.score), float(c.score), b.signature, c.signature, len(hypotheses), bleu_tokenizer(code), code
    )


@dataclass(frozen=True)
class TranslationItem:
    """One translation test item: the source sentence, its reference and the prompt to complete."""

    source_text: str
    reference: str
    prompt: str


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _prompt_name(lang: str) -> str:
    """English name without the script note: ``zh`` -> ``Chinese``, ``de`` -> ``German``."""
    return language_name(lang).split(" (")[0]


def translation_task(
    corpus: LanguageCorpus,
    source: str,
    target: str,
    n: int = 50,
    seed: int = 0,
    shots: int | None = None,
    template: str = "few-shot",
) -> list[TranslationItem]:
    """Translation prompts from a parallel corpus, for a base LM to complete.

    ``n`` test items are drawn deterministically from ``seed``; ``shots``
    demonstrations, drawn from the other items (never a test item), prefix every
    prompt in the same order; languages are named in English (``Chinese`` for
    ``zh``)::

        English: <demo source>
        German: <demo reference>

        English: <test source>
        German:

    ``template="kojima"`` gives Kojima et al.'s zero-shot prompt (format 2 of their
    ``generate_seq_lang.py``), which names the source language but not the target::

        Translate an English sentence into a target language.
        English: <test source>
        Target Language:

    ``shots`` defaults to 1 for ``"few-shot"`` and must be 0 for ``"kojima"``.

    Texts are put on one line (runs of whitespace become one space).  Cut a model's
    continuation with :func:`clean_completion` before scoring it.

    Raises:
        LangNeuronsError: if the corpus is not parallel, lacks a language, ``source``
            and ``target`` are the same language, it has fewer than ``n + shots`` items,
            or the template is unknown.
    """
    if not isinstance(corpus, LanguageCorpus):
        raise LangNeuronsError(f"translation_task needs a LanguageCorpus, got {type(corpus).__name__}")
    if not corpus.is_parallel:
        raise LangNeuronsError(
            f"corpus {corpus.name!r} is not parallel, so it has no references: use a parallel corpus "
            "such as load_corpus('default') or 'flores'"
        )
    if template not in TRANSLATION_TEMPLATES:
        raise LangNeuronsError(
            f"unknown translation template {template!r}: choose from {', '.join(TRANSLATION_TEMPLATES)}"
        )
    if shots is None:
        shots = 0 if template == "kojima" else 1
    if template == "kojima" and shots != 0:
        raise LangNeuronsError(f"the kojima translation template is zero-shot: shots must be 0, got {shots!r}")
    src, tgt = validate_lang(source), validate_lang(target)
    if same_language(src, tgt):
        raise LangNeuronsError(f"source {source!r} and target {target!r} are the same language: pick two languages")
    for name, value, low in (("n", n, 1), ("shots", shots, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise LangNeuronsError(f"translation_task: {name} must be an integer >= {low}, got {value!r}")
    src_texts, tgt_texts = corpus[src], corpus[tgt]  # MissingLanguageError names what the corpus holds
    size = len(src_texts)
    if n + shots > size:
        raise LangNeuronsError(
            f"corpus {corpus.name!r} has {size} items, fewer than n={n} test items plus {shots} shot(s): lower n or shots"
        )
    rng = random.Random(seed)
    test = rng.sample(range(size), n)
    rest = sorted(set(range(size)) - set(test))
    demos = rng.sample(rest, shots)
    src_name, tgt_name = _prompt_name(src), _prompt_name(tgt)
    prefix = "".join(f"{src_name}: {_one_line(src_texts[i])}\n{tgt_name}: {_one_line(tgt_texts[i])}\n\n" for i in demos)
    if template == "kojima":
        article = "an" if src_name[:1] in "AEIOU" else "a"
        prefix, tgt_name = f"Translate {article} {src_name} sentence into a target language.\n", "Target Language"
    return [
        TranslationItem(
            source_text=_one_line(src_texts[i]),
            reference=_one_line(tgt_texts[i]),
            prompt=f"{prefix}{src_name}: {_one_line(src_texts[i])}\n{tgt_name}:",
        )
        for i in test
    ]


def clean_completion(text: str) -> str:
    """A base model's continuation cut at its first newline and stripped (the translation)."""
    if not isinstance(text, str):
        raise LangNeuronsError(f"clean_completion needs a string, got {type(text).__name__}")
    return re.split(r"[\r\n]", text.lstrip(" \t"), maxsplit=1)[0].strip()
