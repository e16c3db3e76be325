"""Helpers the corpus loaders share: clean-up of texts and parallel rows, paragraph
splitting, and checks of their arguments."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence

from ..errors import LangNeuronsError
from ..languages import lookup, parse_langs, same_language


def dedupe(texts: Iterable[str]) -> list[str]:
    """Strip texts, drop blank ones and exact duplicates (first occurrence kept)."""
    seen: set[str] = set()
    out = []
    for text in texts:
        text = text.strip()
        if text and text not in seen:
            seen.add(text)
            out.append(text)
    return out


def dedupe_rows(rows: Iterable[Sequence[str]]) -> list[list[str]]:
    """Parallel rows without blanks or repeats: a row is dropped if any of its texts
    is blank or already occurred in that language, so languages stay aligned."""
    seen: list[set[str]] | None = None
    out = []
    for row in rows:
        row = [t.strip() for t in row]
        if seen is None:
            seen = [set() for _ in row]
        if any(not t for t in row) or any(t in s for t, s in zip(row, seen)):
            continue
        for t, s in zip(row, seen):
            s.add(t)
        out.append(row)
    return out


def columns(rows: list[list[str]], langs: Sequence[str]) -> dict[str, list[str]]:
    """Parallel rows (one text per language) -> language -> its column of texts."""
    return {lang: [row[j] for row in rows] for j, lang in enumerate(langs)}


def resolve_langs(langs: str | Sequence[str] | None, default: Sequence[str]) -> list[str]:
    """The requested languages (a list or ``"en,de"``), or ``default`` when ``langs`` is None."""
    return parse_langs(list(default) if langs is None else langs)


_UNSEGMENTED = {
    "zho_Hans",
    "zho_Hant",
    "yue_Hant",
    "jpn_Jpan",
    "tha_Thai",
    "lao_Laoo",
    "khm_Khmr",
    "mya_Mymr",
    "bod_Tibt",
    "dzo_Tibt",
    "shn_Mymr",
}


@functools.lru_cache(maxsize=1024)
def is_unsegmented(lang: str) -> bool:
    """True for languages written without spaces between words (zh, ja, th, ...)."""
    row = lookup(lang)
    return any(row.flores and same_language(row.flores, code) for code in _UNSEGMENTED)


def split_paragraphs(text: str, min_chars: int = 40, max_chars: int = 1000) -> list[str]:
    """Split a document into paragraph-sized texts.

    Lines shorter than ``min_chars`` (headings, list items) are dropped; paragraphs
    longer than ``max_chars`` are cut into runs of whole sentences of at most
    ``max_chars`` characters (a single longer sentence is cut at a space).
    """
    out = []
    for para in re.split(r"\n\s*", text):
        para = re.sub(r"\s+", " ", para).strip()
        if len(para) < min_chars:
            continue
        if len(para) <= max_chars:
            out.append(para)
            continue
        chunk = ""
        for sentence in re.split(r"(?<=[.!?。！？])\s+|(?<=[。！？])", para):
            while len(sentence) > max_chars:
                cut = sentence.rfind(" ", 0, max_chars)
                cut = cut if cut > 0 else max_chars
                if chunk:
                    out.append(chunk)
                    chunk = ""
                out.append(sentence[:cut].strip())
                sentence = sentence[cut:].strip()
            joined = f"{chunk} {sentence}".strip() if chunk and not _cjk_end(chunk) else chunk + sentence
            if len(joined) > max_chars:
                out.append(chunk)
                chunk = sentence
            else:
                chunk = joined
        if len(chunk) >= min_chars:
            out.append(chunk)
    return [t for t in out if t]


def _cjk_end(text: str) -> bool:
    return text.endswith(("。", "！", "？"))


def positive(n: int, what: str) -> int:
    """``n``, checked: a positive integer (else a :class:`LangNeuronsError` naming ``what``)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise LangNeuronsError(f"{what} must be a positive integer or None, got {n!r}")
    return n
