"""Language codes: validation and conversion between ISO 639-1 and FLORES-200.

Two kinds of code are accepted everywhere in ``lang_neurons``:

* ISO 639-1 two-letter codes such as ``"de"``, ``"zh"`` or ``"ja"``;
* FLORES-200 codes (ISO 639-3 language + ISO 15924 script) such as
  ``"deu_Latn"``, ``"zho_Hans"`` or ``"jpn_Jpan"``.  The FLORES+ spellings
  ``cmn_Hans``/``cmn_Hant`` (Mandarin) and ``ekk_Latn`` (Estonian) are
  accepted too.

The table (package data, ``lang_neurons/data/languages.tsv``) covers all 202 FLORES-200
languages plus a few ISO-only languages (Breton, Frisian, Latin, ...).
"""

from __future__ import annotations

import csv
import difflib
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources

from .errors import LangNeuronsError

__all__ = [
    "FLORES_CODES",
    "ISO_CODES",
    "Language",
    "UnknownLanguageError",
    "is_flores_code",
    "language_name",
    "lookup",
    "parse_langs",
    "same_language",
    "to_flores",
    "to_iso",
    "validate_lang",
]


class UnknownLanguageError(LangNeuronsError):
    """Raised for a string that is not a known ISO 639-1 or FLORES-200 code."""


@dataclass(frozen=True)
class Language:
    """One row of the language table."""

    iso: str | None
    """ISO 639-1 code, or None where the language has none."""
    flores: str | None
    """FLORES-200 code, or None for a language outside FLORES-200."""
    name: str
    """English name."""


# lang_neurons/data/languages.tsv: one row per language, tab-separated with a header line: ISO
# 639-1 code (empty if none), FLORES code (empty if none), English name. The first row with a
# given ISO code gives that code's FLORES code (zh -> zho_Hans).
_TABLE = "data/languages.tsv"

# FLORES+ respellings that share an ISO 639-1 code with a FLORES-200 row.
_FLORES_ISO_ALIASES = {"ekk_Latn": "et", "cmn_Hans": "zh", "cmn_Hant": "zh"}
# FLORES+ respellings -> the FLORES-200 code of the same language.
_FLORES_SAME = {"ekk_Latn": "est_Latn", "cmn_Hans": "zho_Hans", "cmn_Hant": "zho_Hant"}


def _read_table() -> list[Language]:
    """The rows of the language table shipped as package data, in file order."""
    text = resources.files("lang_neurons").joinpath(_TABLE).read_text(encoding="utf-8")
    rows = csv.DictReader(io.StringIO(text), delimiter="\t", quoting=csv.QUOTE_NONE)
    return [Language(row["iso"] or None, row["flores"] or None, row["name"]) for row in rows]


_ROWS: list[Language] = _read_table()

_BY_FLORES: dict[str, Language] = {}
_BY_ISO: dict[str, Language] = {}
for _row in _ROWS:
    if _row.flores:
        _BY_FLORES.setdefault(_row.flores, _row)
    if _row.iso:
        _BY_ISO.setdefault(_row.iso, _row)

FLORES_CODES: tuple[str, ...] = tuple(_BY_FLORES)
"""Every FLORES code this module knows, in table order."""
ISO_CODES: tuple[str, ...] = tuple(_BY_ISO)
"""Every ISO 639-1 code this module knows, in table order."""

_FLORES_RE = re.compile(r"^([A-Za-z]{3})_([A-Za-z]{4})$")
_HINT = "use an ISO 639-1 code such as 'de' or a FLORES-200 code such as 'deu_Latn'"


def is_flores_code(code: str) -> bool:
    """Return True if ``code`` has the FLORES ``xxx_Yyyy`` shape (known or not)."""
    return bool(_FLORES_RE.match(code.strip()))


def _normalise(code: str) -> str:
    code = code.strip()
    match = _FLORES_RE.match(code)
    if match:
        return f"{match.group(1).lower()}_{match.group(2).title()}"
    return code.lower()


# Frequent non-codes: country codes, ISO 639-2/B codes, deprecated codes.
_COMMON_MISTAKES = {
    "jp": "ja",
    "cn": "zh",
    "gr": "el",
    "dk": "da",
    "se": "sv",
    "ua": "uk",
    "cz": "cs",
    "iw": "he",
    "in": "id",
    "ji": "yi",
    "kz": "kk",
    "vn": "vi",
    "ir": "fa",
    "al": "sq",
    "ger": "de",
    "fre": "fr",
    "chi": "zh",
    "dut": "nl",
    "gre": "el",
    "per": "fa",
    "cze": "cs",
    "ice": "is",
    "arm": "hy",
    "geo": "ka",
    "alb": "sq",
    "baq": "eu",
    "bur": "my",
    "mac": "mk",
    "mao": "mi",
    "may": "ms",
    "rum": "ro",
    "slo": "sk",
    "tib": "bo",
    "wel": "cy",
    "deutsch": "de",
    "francais": "fr",
    "français": "fr",
    "espanol": "es",
    "español": "es",
    "nihongo": "ja",
    "zhongwen": "zh",
}


def _suggest(code: str) -> str | None:
    """Best guess at what the user meant by an unknown ``code``, or None."""
    raw = code.strip()
    text = raw.lower().replace("-", " ").replace("_", " ")
    if not text:
        return None
    if text in _COMMON_MISTAKES:
        return _COMMON_MISTAKES[text]
    # Locale tags: "pt_BR" -> "pt", "zh-TW" -> "zho_Hant", "zh_Hant" -> "zho_Hant".
    tag = re.match(r"^([A-Za-z]{2,3})[-_]([A-Za-z]{2,4})$", raw)
    if tag and tag.group(1).lower() in _BY_ISO:
        base, sub = tag.group(1).lower(), tag.group(2).lower()
        if base == "zh" and sub in ("hant", "tw", "hk", "mo"):
            return "zho_Hant"
        flores = _BY_ISO[base].flores
        if flores and len(sub) == 4 and f"{flores[:3]}_{sub.title()}" in _BY_FLORES:
            return f"{flores[:3]}_{sub.title()}"
        return base
    # By English name ("german" -> "de", "chinese" -> "zh").
    for row in _ROWS:
        base = row.name.lower().split(" (")[0]
        if text in (row.name.lower(), base):
            return row.iso or row.flores
    for row in _ROWS:
        if len(text) >= 4 and row.name.lower().startswith(text):
            return row.iso or row.flores
    # By ISO 639-3 language part ("deu" -> "deu_Latn").
    head = text.split()[0]
    for flores in _BY_FLORES:
        if flores.split("_")[0] == head:
            return flores
    # By spelling.
    pool = list(_BY_ISO) + list(_BY_FLORES)
    close = difflib.get_close_matches(_normalise(code), pool, n=1, cutoff=0.6)
    if close:
        return close[0]
    names = {row.name.lower(): (row.iso or row.flores) for row in _ROWS}
    close = difflib.get_close_matches(text, list(names), n=1, cutoff=0.75)
    return names[close[0]] if close else None


def validate_lang(code: str) -> str:
    """Return ``code`` normalised (ISO lower-cased, FLORES as ``xxx_Yyyy``).

    Raises:
        UnknownLanguageError: if ``code`` is not a known ISO 639-1 or FLORES code.
    """
    if not isinstance(code, str):
        raise UnknownLanguageError(f"language code must be a string, got {type(code).__name__} {code!r}: {_HINT}")
    norm = _normalise(code)
    if norm in _BY_ISO or norm in _BY_FLORES:
        return norm
    hint = _suggest(code)
    suffix = f" (did you mean {hint!r}?)" if hint and hint != norm else ""
    raise UnknownLanguageError(f"unknown language code {code!r}: {_HINT}{suffix}")


def lookup(code: str) -> Language:
    """Return the table row (:class:`Language`) for a validated code."""
    norm = validate_lang(code)
    return _BY_FLORES[norm] if norm in _BY_FLORES else _BY_ISO[norm]


def to_iso(code: str) -> str:
    """Return the ISO 639-1 code for ``code`` (``zho_Hant`` -> ``zh``).

    Raises:
        UnknownLanguageError: for an unknown code, or a FLORES language that has
            no ISO 639-1 code (e.g. ``ast_Latn``).
    """
    norm = validate_lang(code)
    iso = _FLORES_ISO_ALIASES.get(norm) or lookup(norm).iso
    if iso is None:
        raise UnknownLanguageError(
            f"{norm!r} ({language_name(norm)}) has no ISO 639-1 code: use the FLORES code {norm!r} instead"
        )
    return iso


def to_flores(code: str) -> str:
    """Return the FLORES-200 code for ``code`` (``zh`` -> ``zho_Hans``, ``ja`` -> ``jpn_Jpan``).

    Raises:
        UnknownLanguageError: for an unknown code or a language outside FLORES-200.
    """
    norm = validate_lang(code)
    flores = lookup(norm).flores
    if flores is None:
        raise UnknownLanguageError(
            f"{norm!r} ({language_name(norm)}) is not a FLORES-200 language: use a corpus that has it"
        )
    return flores


def language_name(code: str) -> str:
    """Return the English name of ``code`` (``de`` -> ``German``)."""
    return lookup(code).name


def parse_langs(s: str | Sequence[str]) -> list[str]:
    """Parse ``"en,de,fr"`` (or a list of codes) into a list of validated codes.

    Commas and/or whitespace separate codes.  Raises ``UnknownLanguageError``
    for an unknown code and ``LangNeuronsError`` (a ``ValueError``) for an empty list or a duplicate
    (``de`` and ``deu_Latn`` count as the same language).
    """
    if isinstance(s, str):
        parts = [p for p in re.split(r"[,\s]+", s) if p]
    elif isinstance(s, Sequence):
        parts = [p.strip() if isinstance(p, str) else p for p in s]
        parts = [p for p in parts if p != ""]
    else:
        raise LangNeuronsError(f"languages must be a string like 'en,de,fr' or a list of codes, got {type(s).__name__}")
    if not parts:
        raise LangNeuronsError("no languages given: pass codes separated by commas, e.g. 'en,de,fr'")
    out: list[str] = []
    seen: dict[str, str] = {}
    for part in parts:
        code = validate_lang(part)
        key = _identity(code)
        if key in seen:
            dup = f"{seen[key]!r} twice" if seen[key] == code else f"{seen[key]!r} and {code!r} (the same language)"
            raise LangNeuronsError(f"duplicate language in {_show(s)}: {dup}; list each language once")
        seen[key] = code
        out.append(code)
    return out


def same_language(a: str, b: str) -> bool:
    """Return True if two codes name the same language and script (``de`` and ``deu_Latn``)."""
    return _identity(a) == _identity(b)


def _identity(code: str) -> str:
    """Key under which two codes count as the same language (``de`` == ``deu_Latn``)."""
    row = lookup(code)
    return _FLORES_SAME.get(row.flores, row.flores) if row.flores else f"iso:{row.iso}"


def _show(s: str | Sequence[str]) -> str:
    return repr(s) if isinstance(s, str) else repr(",".join(map(str, s)))
