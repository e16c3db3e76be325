"""Multilingual text corpora: the :class:`LanguageCorpus` container and its loaders.

``load_corpus(name, langs, max_per_lang)`` is the single entry point:

* ``"default"``: an offline *parallel* corpus built from the translated gettext
  catalogues that ship inside Django (and, when installed, django-allauth and
  Django REST framework).  English is the message id, the other languages are
  the human translations.  Needs no network.
* ``"flores"``: FLORES+ (``openlanguagedata/flores_plus``, gated: pass ``token=``).
* ``"paws-x"``: PAWS-X (``google-research-datasets/paws-x``), ``sentence1``.
* ``"wikipedia"``: ``wikimedia/wikipedia`` (streamed, split into paragraphs).
* ``"culturax"``: ``uonlp/CulturaX`` (streamed, gated, split into paragraphs).
* a directory holding one ``<code>.txt`` file per language, one text per line.

Every hub loader accepts ``dataset_path=`` to point ``datasets.load_dataset`` at
a local copy (a folder laid out like the hub repository) instead of the hub.
"""

from __future__ import annotations

import functools
import html
import importlib.metadata
import importlib.util
import inspect
import os
import random
import re
import socket
import struct
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

from .errors import LangNeuronsError
from .languages import (
    FLORES_CODES,
    UnknownLanguageError,
    language_name,
    lookup,
    parse_langs,
    same_language,
    to_flores,
    validate_lang,
)

__all__ = [
    "DEFAULT_LANGS",
    "CorpusError",
    "LanguageCorpus",
    "MissingLanguageError",
    "default_corpus_languages",
    "load_corpus",
    "load_culturax",
    "load_default_corpus",
    "load_flores",
    "load_paws_x",
    "load_text_files",
    "load_wikipedia",
    "split_paragraphs",
]

DEFAULT_LANGS: tuple[str, ...] = ("en", "de", "fr", "es", "zh", "ja")
"""Languages loaded when ``langs=None`` (except for text-file folders and PAWS-X)."""

STREAMING_DEFAULT_MAX = 1000
"""Texts per language taken from a streamed source when ``max_per_lang`` is None."""

T = TypeVar("T")


class CorpusError(LangNeuronsError, RuntimeError):
    """A corpus could not be loaded (offline, gated, missing files, bad data)."""


class MissingLanguageError(KeyError, LangNeuronsError):
    """A valid language code that a corpus or source does not hold."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


# --------------------------------------------------------------------------- container


def _show_langs(langs: Iterable[str], limit: int = 12) -> str:
    langs = list(langs)
    shown = ", ".join(langs[:limit])
    return shown + (f", ... ({len(langs)} in all)" if len(langs) > limit else "")


@dataclass(repr=False)
class LanguageCorpus:
    """Texts grouped by language.

    Attributes:
        texts: language code -> list of texts; insertion order is language order.
        name: short name of the corpus (``"default"``, ``"flores"``, ...).
        description: where the texts come from, licence, etc.
        aligned: True if the source is parallel (item ``i`` of every language is a
            translation of the same sentence).  See :attr:`is_parallel`.
    """

    texts: dict[str, list[str]]
    name: str
    description: str = ""
    aligned: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise LangNeuronsError(f"corpus name must be a string, got {type(self.name).__name__}")
        if not isinstance(self.description, str):
            raise LangNeuronsError(f"corpus {self.name!r}: description must be a string, got {type(self.description).__name__}")
        if not isinstance(self.texts, Mapping):
            raise LangNeuronsError(
                f"corpus {self.name!r}: texts must be a dict of language code -> list of texts, "
                f"got {type(self.texts).__name__}"
            )
        if not self.texts:
            raise LangNeuronsError(f"corpus {self.name!r} has no languages: give at least one language with texts")
        clean: dict[str, list[str]] = {}
        for code, texts in self.texts.items():
            lang = validate_lang(code)
            for other in clean:
                if same_language(other, lang):
                    raise LangNeuronsError(
                        f"corpus {self.name!r} holds the same language twice ({other!r} and {code!r}): merge them under one code"
                    )
            if isinstance(texts, str) or not isinstance(texts, Sequence):
                raise LangNeuronsError(
                    f"corpus {self.name!r}: texts for {lang!r} must be a list of strings, "
                    f"got {type(texts).__name__} (wrap a single text in a list)"
                )
            if len(texts) == 0:
                raise LangNeuronsError(
                    f"corpus {self.name!r}: language {lang!r} has no texts: give it at least one text or leave {lang!r} out"
                )
            for i, text in enumerate(texts):
                if not isinstance(text, str):
                    raise LangNeuronsError(
                        f"corpus {self.name!r}: text {i} of {lang!r} is a {type(text).__name__}, not a string: pass plain strings"
                    )
                if not text.strip():
                    raise LangNeuronsError(f"corpus {self.name!r}: text {i} of {lang!r} is blank: remove blank texts")
            clean[lang] = list(texts)
        self.texts = clean
        self.aligned = bool(self.aligned)

    # -- access ------------------------------------------------------------------

    @property
    def langs(self) -> list[str]:
        """Language codes, in corpus order."""
        return list(self.texts)

    @property
    def is_parallel(self) -> bool:
        """True if built from an aligned source and every language has the same number of texts."""
        return self.aligned and len({len(t) for t in self.texts.values()}) == 1

    def __len__(self) -> int:
        """Total number of texts over all languages."""
        return sum(len(t) for t in self.texts.values())

    def __iter__(self) -> Iterator[str]:
        """Iterate over the language codes."""
        return iter(self.texts)

    def __contains__(self, lang: object) -> bool:
        """True if ``lang`` (any spelling: ``de`` or ``deu_Latn``) is in the corpus."""
        try:
            self._resolve(lang)  # type: ignore[arg-type]
        except (UnknownLanguageError, MissingLanguageError):
            return False
        return True

    def __getitem__(self, lang: str) -> list[str]:
        """The texts of ``lang`` (``de`` also finds a corpus keyed ``deu_Latn`` and vice versa)."""
        return self.texts[self._resolve(lang)]

    def _resolve(self, lang: str) -> str:
        code = validate_lang(lang)
        if code in self.texts:
            return code
        matches = [key for key in self.texts if same_language(key, code)]
        if len(matches) == 1:
            return matches[0]
        raise MissingLanguageError(
            f"corpus {self.name!r} has no language {lang!r}: it holds {_show_langs(self.texts)}"
        )

    def __repr__(self) -> str:
        counts = [f"{lang}: {len(t)}" for lang, t in self.texts.items()]
        if len(counts) > 8:
            counts = counts[:8] + [f"... +{len(counts) - 8} more"]
        return (
            f"LanguageCorpus(name={self.name!r}, {len(self.texts)} languages, "
            f"texts={{{', '.join(counts)}}}, parallel={self.is_parallel})"
        )

    def summary(self) -> str:
        """A small table: language, name, number of texts, mean characters per text."""
        kind = "parallel" if self.is_parallel else "not parallel"
        lines = [f"corpus {self.name!r}: {len(self.texts)} languages, {len(self)} texts, {kind}"]
        lines.append(f"{'lang':<10} {'name':<24} {'texts':>7} {'mean chars':>11}")
        for lang, texts in self.texts.items():
            mean = sum(len(t) for t in texts) / len(texts)
            lines.append(f"{lang:<10} {language_name(lang)[:24]:<24} {len(texts):>7} {mean:>11.1f}")
        return "\n".join(lines)

    # -- derived corpora -----------------------------------------------------------

    def _derive(self, texts: dict[str, list[str]], name: str | None = None) -> LanguageCorpus:
        return LanguageCorpus(texts, name or self.name, self.description, self.aligned)

    def subset(self, langs: str | Sequence[str]) -> LanguageCorpus:
        """A corpus with only ``langs`` (a list or ``"en,de"``), in that order."""
        keys = [self._resolve(code) for code in parse_langs(langs)]
        return self._derive({key: list(self.texts[key]) for key in keys})

    def take(self, n: int, seed: int = 0) -> LanguageCorpus:
        """At most ``n`` texts per language, drawn deterministically from ``seed``.

        Kept texts stay in corpus order.  A parallel corpus keeps the same items in
        every language, so it stays parallel.
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise LangNeuronsError(f"take(n): n must be a positive integer, got {n!r}")
        shared = self._shared_indices(lambda m, rng: rng.sample(range(m), min(n, m)), seed)
        out = {}
        for lang, texts in self.texts.items():
            keep = shared if shared is not None else _pick(len(texts), lambda m, rng: rng.sample(range(m), min(n, m)), seed, lang)
            out[lang] = [texts[i] for i in keep]
        return self._derive(out)

    def split(self, held_out: float = 0.2, seed: int = 0) -> tuple[LanguageCorpus, LanguageCorpus]:
        """Split every language into (train, held-out), deterministically from ``seed``.

        ``held_out`` is the fraction of texts per language that go to the held-out
        side (rounded, at least one, and at least one text stays in train).  For a
        parallel corpus the same item indices are held out in every language, so
        both sides stay parallel.

        Raises:
            LangNeuronsError (a ValueError): if ``held_out`` is not in (0, 1) or a language has fewer than 2 texts.
        """
        if isinstance(held_out, bool) or not isinstance(held_out, (int, float)) or not 0 < held_out < 1:
            raise LangNeuronsError(f"split(held_out=...): held_out must be a fraction between 0 and 1, got {held_out!r}")
        for lang, texts in self.texts.items():
            if len(texts) < 2:
                raise LangNeuronsError(
                    f"cannot split corpus {self.name!r}: {lang!r} has {len(texts)} text, need at least 2 per language"
                )

        def choose(m: int, rng: random.Random) -> list[int]:
            k = min(max(round(held_out * m), 1), m - 1)
            return rng.sample(range(m), k)

        shared = self._shared_indices(choose, seed)
        train: dict[str, list[str]] = {}
        test: dict[str, list[str]] = {}
        for lang, texts in self.texts.items():
            held = set(shared if shared is not None else _pick(len(texts), choose, seed, lang))
            train[lang] = [t for i, t in enumerate(texts) if i not in held]
            test[lang] = [t for i, t in enumerate(texts) if i in held]
        return self._derive(train, f"{self.name}/train"), self._derive(test, f"{self.name}/held_out")

    def _shared_indices(self, choose: Callable[[int, random.Random], list[int]], seed: int) -> list[int] | None:
        """Indices to use in every language when the corpus is parallel, else None."""
        if not self.is_parallel:
            return None
        m = len(next(iter(self.texts.values())))
        return sorted(choose(m, random.Random(seed)))

    # -- serialisation ---------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (see :meth:`from_dict`)."""
        return {
            "name": self.name,
            "description": self.description,
            "aligned": self.aligned,
            "texts": {lang: list(texts) for lang, texts in self.texts.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LanguageCorpus:
        """Rebuild a corpus from :meth:`to_dict` output (e.g. after ``json.load``)."""
        if not isinstance(data, Mapping):
            raise LangNeuronsError(f"LanguageCorpus.from_dict needs a dict, got {type(data).__name__}")
        missing = [key for key in ("texts", "name") if key not in data]
        if missing:
            raise LangNeuronsError(
                f"LanguageCorpus.from_dict: missing key(s) {', '.join(map(repr, missing))}: pass the output of to_dict()"
            )
        return cls(
            texts=dict(data["texts"]),
            name=data["name"],
            description=data.get("description", ""),
            aligned=bool(data.get("aligned", False)),
        )


def _pick(m: int, choose: Callable[[int, random.Random], list[int]], seed: int, lang: str) -> list[int]:
    """Sorted indices chosen for one language, seeded by (seed, language)."""
    return sorted(choose(m, random.Random(f"{seed}:{lang}")))


# --------------------------------------------------------------------------- helpers


def _dedupe(texts: Iterable[str]) -> list[str]:
    """Strip texts, drop blank ones and exact duplicates (first occurrence kept)."""
    seen: set[str] = set()
    out = []
    for text in texts:
        text = text.strip()
        if text and text not in seen:
            seen.add(text)
            out.append(text)
    return out


def _dedupe_rows(rows: Iterable[Sequence[str]]) -> list[list[str]]:
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


def _columns(rows: list[list[str]], langs: Sequence[str]) -> dict[str, list[str]]:
    return {lang: [row[j] for row in rows] for j, lang in enumerate(langs)}


def _resolve_langs(langs: str | Sequence[str] | None, default: Sequence[str]) -> list[str]:
    return parse_langs(list(default) if langs is None else langs)


_UNSEGMENTED = {
    "zho_Hans", "zho_Hant", "yue_Hant", "jpn_Jpan", "tha_Thai", "lao_Laoo",
    "khm_Khmr", "mya_Mymr", "bod_Tibt", "dzo_Tibt", "shn_Mymr",
}


@functools.lru_cache(maxsize=1024)
def _is_unsegmented(lang: str) -> bool:
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


# --------------------------------------------------------------------------- text files


def load_text_files(
    directory: str | os.PathLike[str],
    langs: str | Sequence[str] | None = None,
    *,
    parallel: bool = False,
) -> LanguageCorpus:
    """Load a folder with one ``<code>.txt`` file per language (one text per line).

    Blank lines are skipped and repeated lines dropped.  ``langs=None`` loads every
    file, in file-name order.  With ``parallel=True`` line ``i`` of every file must
    be a translation of the same text: all files need the same number of lines, and
    a line blank (or repeated) in any language is dropped in all of them.
    """
    root = Path(directory).expanduser()
    if not root.is_dir():
        raise CorpusError(f"corpus directory {str(directory)!r} does not exist: create it with one <code>.txt file per language")
    files: dict[str, Path] = {}
    for path in sorted(root.glob("*.txt")):
        try:
            code = validate_lang(path.stem)
        except UnknownLanguageError as err:
            raise UnknownLanguageError(
                f"{path.name!r} in {str(root)!r} is not named after a language: rename it to <code>.txt ({err})"
            ) from None
        files[code] = path
    if not files:
        raise CorpusError(f"no <code>.txt files in {str(root)!r}: add one file per language, e.g. en.txt and de.txt")
    if langs is None:
        chosen = list(files)
    else:
        chosen = []
        for code in parse_langs(langs):
            match = [key for key in files if same_language(key, code)]
            if not match:
                raise MissingLanguageError(
                    f"no file for {code!r} in {str(root)!r}: it has {_show_langs(files)}; add {code}.txt or leave {code!r} out"
                )
            chosen.append(match[0])
    lines = {code: files[code].read_text(encoding="utf-8-sig").splitlines() for code in chosen}
    if parallel:
        counts = {code: len(v) for code, v in lines.items()}
        if len(set(counts.values())) > 1:
            raise CorpusError(
                f"parallel text files must have the same number of lines, got {counts}: align the files or pass parallel=False"
            )
        rows = _dedupe_rows(zip(*(lines[code] for code in chosen)))
        texts = _columns(rows, chosen)
    else:
        texts = {code: _dedupe(v) for code, v in lines.items()}
    empty = [code for code, v in texts.items() if not v]
    if empty:
        raise CorpusError(f"{files[empty[0]].name} in {str(root)!r} has no non-blank lines: add texts or remove the file")
    return LanguageCorpus(
        texts,
        name=root.name or str(root),
        description=f"text files from {root} ({'parallel' if parallel else 'not aligned'})",
        aligned=parallel,
    )


# --------------------------------------------------------------------------- default corpus


@dataclass(frozen=True)
class _CatalogSource:
    """A Python package that ships gettext catalogues (``.mo``)."""

    key: str
    package: str
    distribution: str
    licence: str
    locale_roots: tuple[str, ...]  # globs, relative to the package folder

    def package_dir(self) -> Path | None:
        spec = importlib.util.find_spec(self.package)  # does not import the package
        if spec is None or not spec.submodule_search_locations:
            return None
        return Path(next(iter(spec.submodule_search_locations)))

    def roots(self) -> list[Path]:
        base = self.package_dir()
        if base is None:
            return []
        return sorted(p for pattern in self.locale_roots for p in base.glob(pattern) if p.is_dir())

    def version(self) -> str:
        try:
            return importlib.metadata.version(self.distribution)
        except importlib.metadata.PackageNotFoundError:
            return "unknown version"


_CATALOG_SOURCES: tuple[_CatalogSource, ...] = (
    _CatalogSource("django", "django", "Django", "BSD-3-Clause", ("conf/locale", "contrib/*/locale")),
    _CatalogSource("allauth", "allauth", "django-allauth", "MIT", ("locale",)),
    _CatalogSource("rest_framework", "rest_framework", "djangorestframework", "BSD-3-Clause", ("locale",)),
)
_SOURCE_KEYS = tuple(s.key for s in _CATALOG_SOURCES)


def _read_mo(path: Path) -> dict[tuple[str | None, str], str]:
    """Read a compiled gettext catalogue: ``(msgctxt, msgid) -> msgstr``.

    Plural entries map ``msgid`` (singular) to ``msgstr[0]``.  ``msgfmt`` leaves
    fuzzy and untranslated entries out of ``.mo`` files, so every entry here is a
    real translation.  The header entry (empty msgid) is skipped.
    """
    data = path.read_bytes()
    magic = struct.unpack("<I", data[:4])[0]
    order = "<" if magic == 0x950412DE else ">" if magic == 0xDE120495 else None
    if order is None:
        raise CorpusError(f"{path} is not a gettext .mo file: reinstall the package that ships it")
    _, count, orig_at, trans_at = struct.unpack(order + "4I", data[4:20])
    raw = []
    for i in range(count):
        olen, ooff = struct.unpack(order + "2I", data[orig_at + 8 * i : orig_at + 8 * i + 8])
        tlen, toff = struct.unpack(order + "2I", data[trans_at + 8 * i : trans_at + 8 * i + 8])
        raw.append((data[ooff : ooff + olen], data[toff : toff + tlen]))
    charset = "utf-8"
    for orig, trans in raw:
        if orig == b"":
            found = re.search(rb"charset=([-\w]+)", trans)
            charset = found.group(1).decode("ascii") if found else charset
    out: dict[tuple[str | None, str], str] = {}
    for orig, trans in raw:
        if not orig:
            continue
        msg = orig.decode(charset)
        context, _, msgid = msg.rpartition("\x04")
        msgid = msgid.split("\x00")[0]
        msgstr = trans.decode(charset).split("\x00")[0]
        if msgid and msgstr:
            out[(context or None, msgid)] = msgstr
    return out


@functools.cache
def _locales(source: _CatalogSource) -> dict[str, tuple[Path, ...]]:
    """Locale folder name -> its ``.mo`` catalogues, for one source."""
    found: dict[str, list[Path]] = {}
    for root in source.roots():
        for loc_dir in sorted(root.iterdir()):
            mos = sorted((loc_dir / "LC_MESSAGES").glob("*.mo"))
            if mos:
                found.setdefault(loc_dir.name, []).extend(mos)
    return {loc: tuple(paths) for loc, paths in sorted(found.items())}


def _locale_for(lang: str, available: Iterable[str]) -> str | None:
    """The locale folder that holds ``lang`` (``zh`` -> ``zh_Hans``, ``he`` -> ``he_IL``), or None."""
    available = set(available)
    row = lookup(lang)
    if same_language(lang, "zho_Hans") or same_language(lang, "cmn_Hans"):
        candidates = ["zh_Hans", "zh_CN", "zh"]
    elif same_language(lang, "zho_Hant") or same_language(lang, "cmn_Hant"):
        candidates = ["zh_Hant", "zh_TW"]
    else:
        base = row.iso or (row.flores or "")[:3]
        candidates = [base] + {"no": ["nb"], "nb": ["no"], "pt": ["pt_PT", "pt_BR"]}.get(base, [])
        candidates += sorted(loc for loc in available if re.fullmatch(rf"{base}_[A-Z]{{2}}", loc))
    return next((loc for loc in candidates if loc in available), None)


def _lang_for_locale(loc: str) -> str | None:
    """The language code for a locale folder name, or None for regional variants."""
    special = {"zh_Hans": "zh", "zh_Hant": "zho_Hant"}
    if loc in special:
        return special[loc]
    if "_" in loc:
        return None
    try:
        return validate_lang(loc)
    except UnknownLanguageError:
        pass
    matches = [code for code in FLORES_CODES if code.startswith(loc + "_")]
    return matches[0] if len(matches) == 1 else None


def default_corpus_languages() -> list[str]:
    """Every language the offline default corpus can provide (Django's locales)."""
    langs = []
    for loc in _locales(_CATALOG_SOURCES[0]):
        code = _lang_for_locale(loc)
        if code and code != "en" and not any(same_language(code, c) for c in langs):
            langs.append(code)
    return ["en"] + langs


_PLACEHOLDER = re.compile(
    r"%\([^)]*\)[-#0 +]*\d*(?:\.\d+)?[a-zA-Z]"  # %(name)s, %(count)d
    r"|%[-#0 +]*\d*(?:\.\d+)?[sdifrxXeEgGcu]"  # %s, %d, %.2f
    r"|\{[^{}]*\}"  # {0}, {name}
)
_HTML_TAG = re.compile(r"<[^>]+>")
_EMPTY_PAIR = re.compile(r"“\s*”|\"\s*\"|«\s*»|„\s*“|「\s*」|『\s*』|‘\s*’|'\s*'|\(\s*\)|（\s*）|\[\s*\]|‚\s*‘")


def _clean_message(text: str) -> str:
    """Strip placeholders, HTML tags and entities, quotes left empty; collapse spaces."""
    text = _HTML_TAG.sub(" ", text)
    text = _PLACEHOLDER.sub(" ", text).replace("%%", "%")
    text = html.unescape(text)
    text = _EMPTY_PAIR.sub(" ", text)
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(r" ([,.;!?])", r"\1", text)
    return text.lstrip(":;,.-–—、，：；。 ").strip()  # punctuation orphaned by a leading placeholder


def _long_enough(text: str, lang: str, min_words: int) -> bool:
    """At least ``min_words`` words (for zh/ja/th...: ``min_words + 1`` letters)."""
    if _is_unsegmented(lang):
        return len(re.sub(r"[\W\d_]", "", text)) >= min_words + 1
    return len(text.split()) >= min_words


def _mostly_text(text: str) -> bool:
    """At least two letters, and letters make up half of the non-space characters."""
    chars = text.replace(" ", "")
    letters = sum(c.isalpha() for c in chars)
    return letters >= 2 and letters >= 0.5 * len(chars)


@functools.lru_cache(maxsize=64)
def _catalogue_rows(
    langs: tuple[str, ...], sources: tuple[str, ...], min_words: int
) -> tuple[tuple[tuple[str, ...], ...], tuple[str, ...]]:
    """Parallel rows (one text per language in ``langs``) and a note per source used."""
    english = [same_language(lang, "en") for lang in langs]
    others = [lang for lang, is_en in zip(langs, english) if not is_en] or [c for c in DEFAULT_LANGS if c != "en"]
    rows: list[list[str]] = []
    notes: list[str] = []
    seen_en: set[str] = set()
    seen = [set() for _ in langs]
    for source in _CATALOG_SOURCES:
        if source.key not in sources:
            continue
        locales = _locales(source)
        locs = [_locale_for(lang, locales) for lang in others]
        if not locales or any(loc is None for loc in locs):
            continue  # source not installed, or lacks one of the languages
        catalogues = {lang: _merged(locales[loc]) for lang, loc in zip(others, locs)}
        keys = [k for k in catalogues[others[0]] if all(k in catalogues[lang] for lang in others[1:])]
        used = 0
        for key in keys:
            en_text = _clean_message(key[2])
            if en_text in seen_en or not _long_enough(en_text, "en", min_words) or not _mostly_text(en_text):
                continue
            row = [en_text if is_en else _clean_message(catalogues[lang][key]) for lang, is_en in zip(langs, english)]
            if any(not _mostly_text(t) for t in row) or any(t in s for t, s in zip(row, seen)):
                continue
            seen_en.add(en_text)
            for t, s in zip(row, seen):
                s.add(t)
            rows.append(row)
            used += 1
        n_files = len(locales[locs[0]])
        notes.append(
            f"{source.distribution} {source.version()} ({used} texts, {n_files} catalogues per language, {source.licence})"
        )
    return tuple(tuple(r) for r in rows), tuple(notes)


def _merged(paths: Sequence[Path]) -> dict[tuple[str, str | None, str], str]:
    """All entries of one locale's catalogues, keyed by (catalogue, msgctxt, msgid), in a fixed order."""
    out: dict[tuple[str, str | None, str], str] = {}
    for path in paths:
        catalogue = f"{path.parent.parent.parent.parent.name}/{path.stem}"
        for (context, msgid), msgstr in sorted(_read_mo_cached(path).items(), key=lambda kv: (kv[0][0] or "", kv[0][1])):
            out[(catalogue, context, msgid)] = msgstr
    return out


@functools.lru_cache(maxsize=4096)
def _read_mo_cached(path: Path) -> dict[tuple[str | None, str], str]:
    return _read_mo(path)


def load_default_corpus(
    langs: str | Sequence[str] | None = None,
    *,
    sources: Sequence[str] | None = None,
    min_words: int = 3,
) -> LanguageCorpus:
    """The offline parallel corpus built from installed gettext catalogues.

    English texts are the message ids, the other languages their human
    translations; a message is kept only if it is translated in every requested
    language.  Placeholders (``%(name)s``, ``{0}``), HTML tags and empty quotes are
    stripped; messages with fewer than ``min_words`` English words are dropped, as
    are repeats.  ``sources`` picks catalogue packages among ``"django"``,
    ``"allauth"`` (django-allauth) and ``"rest_framework"`` (Django REST framework);
    None uses every one that is installed.  Parsed results are cached in memory.
    """
    codes = _resolve_langs(langs, DEFAULT_LANGS)
    keys = _SOURCE_KEYS if sources is None else tuple(sources)
    unknown = [k for k in keys if k not in _SOURCE_KEYS]
    if unknown or not keys:
        raise LangNeuronsError(f"unknown catalogue source(s) {unknown!r}: choose from {list(_SOURCE_KEYS)}")
    if not _locales(_CATALOG_SOURCES[0]):
        raise CorpusError("Django's translation catalogues were not found: install Django (pip install django)")
    available = _locales(_CATALOG_SOURCES[0])
    for code in codes:
        if not same_language(code, "en") and _locale_for(code, available) is None:
            raise MissingLanguageError(
                f"the default corpus has no {code!r} ({language_name(code)}): it offers "
                f"{_show_langs(default_corpus_languages(), 200)}; use another corpus, e.g. load_corpus('flores')"
            )
    if isinstance(min_words, bool) or not isinstance(min_words, int) or min_words < 1:
        raise LangNeuronsError(f"min_words must be a positive integer, got {min_words!r}")
    rows, notes = _catalogue_rows(tuple(codes), tuple(k for k in _SOURCE_KEYS if k in keys), min_words)
    if not rows:
        raise CorpusError(
            f"no message is translated into all of {codes} in the installed catalogues: request fewer languages"
        )
    description = (
        "Parallel UI messages from the gettext catalogues shipped in "
        + "; ".join(notes)
        + ". English is the message id, the other languages are the projects' human translations, "
        "distributed under each project's licence. Placeholders and HTML stripped, messages under "
        f"{min_words} English words dropped."
    )
    return LanguageCorpus(_columns([list(r) for r in rows], codes), "default", description, aligned=True)


# --------------------------------------------------------------------------- Hugging Face loaders


@dataclass(frozen=True)
class _HubSource:
    label: str
    hub_id: str
    corpus: str
    gated: bool


_FLORES = _HubSource("FLORES+", "openlanguagedata/flores_plus", "flores", gated=True)
_PAWS_X = _HubSource("PAWS-X", "google-research-datasets/paws-x", "paws-x", gated=False)
_WIKIPEDIA = _HubSource("Wikipedia", "wikimedia/wikipedia", "wikipedia", gated=False)
_CULTURAX = _HubSource("CulturaX", "uonlp/CulturaX", "culturax", gated=True)

PAWS_X_LANGS: tuple[str, ...] = ("en", "de", "es", "fr", "ja", "ko", "zh")
"""Languages of PAWS-X (each is a dataset config)."""

_OFFLINE_VARS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")


def _env_offline() -> bool:
    return any(os.environ.get(var, "").strip().upper() in {"1", "ON", "YES", "TRUE"} for var in _OFFLINE_VARS)


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Quick TCP probe of the hub endpoint (skipped, i.e. True, behind a proxy)."""
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    url = urlparse(endpoint)
    address = (url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80))
    try:
        socket.create_connection(address, timeout=timeout).close()
    except OSError:
        return False
    return True


@contextmanager
def _offline_mode(on: bool) -> Iterator[None]:
    """Force the hub libraries into offline mode (cache only, no retries) while active.

    ``datasets`` and ``huggingface_hub`` read ``HF_HUB_OFFLINE`` once at import, so
    setting the variable later (or having no network) would otherwise cost ~20 s of
    retries before failing.
    """
    if not on:
        yield
        return
    import datasets.config
    from huggingface_hub import constants

    saved = (datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE)
    datasets.config.HF_HUB_OFFLINE = constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE = saved


class _ConfigNotFound(Exception):
    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def _with_dataset(
    source: _HubSource,
    config: str,
    consume: Callable[[Iterable[Mapping[str, Any]]], T],
    *,
    split: str,
    streaming: bool = False,
    dataset_path: str | os.PathLike[str] | None = None,
    token: str | bool | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> T:
    """``consume(datasets.load_dataset(path, config, split=...))``, with clear errors.

    Raises ``_ConfigNotFound`` if the dataset has no such config, ``LangNeuronsError``
    for an unknown split, and ``CorpusError`` for anything else (offline, gated,
    missing files...).
    """
    import datasets

    path = str(dataset_path) if dataset_path is not None else source.hub_id
    local = Path(path).expanduser().exists()
    looks_local = path.startswith(("/", ".", "~", "\\")) or re.match(r"^[A-Za-z]:[\\/]", path) is not None
    if looks_local and not local:
        raise CorpusError(f"dataset_path {path!r} does not exist: give a local dataset folder or a hub id like {source.hub_id!r}")
    kwargs: dict[str, Any] = {"split": split, "streaming": streaming}
    if token is not None:
        kwargs["token"] = token
    if cache_dir is not None:
        kwargs["cache_dir"] = str(cache_dir)
    offline = not local and (_env_offline() or not _hub_reachable())
    try:
        with _offline_mode(offline):
            return consume(datasets.load_dataset(path, config, **kwargs))
    except (CorpusError, MissingLanguageError):
        raise
    except ValueError as err:
        text = str(err)
        if "BuilderConfig" in text and "not found" in text:
            raise _ConfigNotFound(text.split("\n")[0][:300]) from err
        if "Unknown split" in text or "Bad split" in text:
            raise LangNeuronsError(f"{source.label} has no split {split!r}: {text.splitlines()[0]}") from err
        raise CorpusError(_load_failure(source, path, local, offline, err)) from err
    except Exception as err:  # network, gated, missing files: anything the hub stack raises
        raise CorpusError(_load_failure(source, path, local, offline, err)) from err


def _load_failure(source: _HubSource, path: str, local: bool, offline: bool, err: Exception) -> str:
    cause = f"{type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}"
    if local:
        return f"could not load {source.label} from {path!r}: {cause}"
    why = "offline or gated" if source.gated else "offline?"
    fix = (
        f"log in with a token (load_corpus({source.corpus!r}, token=...))"
        if source.gated
        else "check your internet connection"
    )
    state = "; hub unreachable or HF_HUB_OFFLINE set, so only the local cache was tried" if offline else ""
    return (
        f"could not load {source.label} from the Hugging Face hub ({why}): {fix}, "
        f"or use the offline default corpus load_corpus('default') [{cause}{state}]"
    )


def _column(rows: Iterable[Mapping[str, Any]], column: str, source: _HubSource) -> Iterator[Mapping[str, Any]]:
    for row in rows:
        if column not in row:
            raise CorpusError(f"{source.label} rows have no {column!r} column (columns: {list(row)}): pass the right dataset")
        yield row


def _aligned_rows(tables: dict[str, list[Mapping[str, Any]]], column: str, id_column: str | None) -> tuple[list[list[str]], bool]:
    """Align per-language rows by ``id_column`` (or position); return rows and whether aligned."""
    langs = list(tables)
    if id_column and all(t and id_column in t[0] for t in tables.values()):
        by_id = {lang: {row[id_column]: row[column] for row in rows} for lang, rows in tables.items()}
        ids = [row[id_column] for row in tables[langs[0]] if all(row[id_column] in by_id[lang] for lang in langs[1:])]
        try:
            ids = sorted(ids)  # the dataset's item order, whatever the row order of each file
        except TypeError:
            pass
        return _dedupe_rows([[by_id[lang][i] or "" for lang in langs] for i in ids]), True
    if len({len(t) for t in tables.values()}) == 1:
        return _dedupe_rows(zip(*([row[column] or "" for row in tables[lang]] for lang in langs))), True
    return [], False


def _parallel_corpus(
    source: _HubSource,
    langs: list[str],
    configs: dict[str, list[str]],
    *,
    split: str,
    column: str,
    id_column: str | None,
    description: str,
    **hub: Any,
) -> LanguageCorpus:
    """Load one config per language and build a parallel corpus (falls back to per-language)."""
    tables: dict[str, list[Mapping[str, Any]]] = {}
    for lang in langs:
        tables[lang] = _first_config(
            source, lang, configs[lang], lambda rows: list(_column(rows, column, source)), split=split, **hub
        )
    rows, aligned = _aligned_rows(tables, column, id_column)
    if aligned and rows:
        texts = _columns(rows, langs)
    else:
        texts = {lang: _dedupe(str(r[column] or "") for r in rows_) for lang, rows_ in tables.items()}
        aligned = False
    for lang, values in texts.items():
        if not values:
            raise CorpusError(f"{source.label} split {split!r} has no usable {column!r} texts for {lang!r}")
    return LanguageCorpus(texts, source.corpus, description, aligned=aligned)


def _first_config(
    source: _HubSource, lang: str, candidates: list[str], consume: Callable[[Iterable[Mapping[str, Any]]], T], **kwargs: Any
) -> T:
    """Try config names in turn (e.g. ``cmn_Hans`` then ``zho_Hans``)."""
    detail = ""
    for config in candidates:
        try:
            return _with_dataset(source, config, consume, **kwargs)
        except _ConfigNotFound as err:
            detail = err.detail
    raise MissingLanguageError(
        f"{source.label} has no {lang!r} ({language_name(lang)}; tried config {', '.join(map(repr, candidates))}): {detail}"
    )


# FLORES+ renamed a few FLORES-200 codes.
_FLORES_PLUS_NAMES = {"zho_Hans": "cmn_Hans", "zho_Hant": "cmn_Hant", "est_Latn": "ekk_Latn", "sat_Beng": "sat_Olck"}


def load_flores(
    langs: str | Sequence[str] | None = None,
    *,
    split: str = "dev",
    token: str | bool | None = None,
    dataset_path: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> LanguageCorpus:
    """FLORES+ (``openlanguagedata/flores_plus``): 997 (``dev``) or 1012 (``devtest``)
    professionally translated sentences per language, aligned by ``id``.

    The dataset is gated: accept its terms on the hub and pass ``token=`` (or log
    in with ``huggingface-cli login``).  ``langs=None`` loads :data:`DEFAULT_LANGS`.
    ``dataset_path`` replaces the hub id (e.g. a local copy with one config per
    FLORES code).  Licence: CC BY-SA 4.0.
    """
    codes = _resolve_langs(langs, DEFAULT_LANGS)
    configs = {}
    for code in codes:
        try:
            flores = to_flores(code)
        except UnknownLanguageError:
            raise MissingLanguageError(
                f"FLORES+ has no {code!r} ({language_name(code)}): it covers the FLORES-200 languages "
                "(lang_neurons.languages.FLORES_CODES)"
            ) from None
        configs[code] = list(dict.fromkeys([_FLORES_PLUS_NAMES.get(flores, flores), flores]))
    return _parallel_corpus(
        _FLORES, codes, configs, split=split, column="text", id_column="id",
        description=f"FLORES+ {split} split ({dataset_path or _FLORES.hub_id}); licence CC BY-SA 4.0",
        token=token, dataset_path=dataset_path, cache_dir=cache_dir,
    )


def load_paws_x(
    langs: str | Sequence[str] | None = None,
    *,
    split: str = "test",
    token: str | bool | None = None,
    dataset_path: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> LanguageCorpus:
    """PAWS-X (``google-research-datasets/paws-x``): the ``sentence1`` column, aligned by ``id``.

    ``langs=None`` loads all seven PAWS-X languages (en, de, es, fr, ja, ko, zh).
    The ``test`` and ``validation`` splits are human translations; ``train`` is
    machine-translated.  Licence: see the dataset card (free use with attribution).
    """
    codes = _resolve_langs(langs, PAWS_X_LANGS)
    configs = {}
    for code in codes:
        match = [c for c in PAWS_X_LANGS if same_language(c, code)]
        if not match:
            raise MissingLanguageError(
                f"PAWS-X has no {code!r} ({language_name(code)}): it offers {', '.join(PAWS_X_LANGS)}"
            )
        configs[code] = match
    return _parallel_corpus(
        _PAWS_X, codes, configs, split=split, column="sentence1", id_column="id",
        description=f"PAWS-X {split} split, sentence1 ({dataset_path or _PAWS_X.hub_id})",
        token=token, dataset_path=dataset_path, cache_dir=cache_dir,
    )


def _wiki_code(code: str) -> str:
    """Wikipedia / CulturaX language code: ISO 639-1 where one exists, else ISO 639-3."""
    row = lookup(code)
    if same_language(code, "yue_Hant"):
        return "zh-yue"
    base = row.iso or (row.flores or "")[:3]
    return {"nb": "no"}.get(base, base)


def _streamed_corpus(
    source: _HubSource,
    langs: str | Sequence[str] | None,
    config_of: Callable[[str], str],
    *,
    max_per_lang: int | None,
    min_chars: int,
    max_chars: int,
    description: str,
    split: str = "train",
    **hub: Any,
) -> LanguageCorpus:
    codes = _resolve_langs(langs, DEFAULT_LANGS)
    limit = STREAMING_DEFAULT_MAX if max_per_lang is None else _positive(max_per_lang, "max_per_lang")
    texts: dict[str, list[str]] = {}
    for code in codes:
        floor = max(1, min_chars // 2) if _is_unsegmented(code) else min_chars

        def consume(rows: Iterable[Mapping[str, Any]], floor: int = floor) -> list[str]:
            out: dict[str, None] = {}
            for row in _column(rows, "text", source):
                for para in split_paragraphs(str(row["text"] or ""), floor, max_chars):
                    out.setdefault(para)
                    if len(out) >= limit:
                        return list(out)
            return list(out)

        texts[code] = _first_config(source, code, [config_of(code)], consume, split=split, streaming=True, **hub)
        if not texts[code]:
            raise CorpusError(f"{source.label} gave no paragraphs of at least {floor} characters for {code!r}")
    return LanguageCorpus(texts, source.corpus, description, aligned=False)


def _positive(n: int, what: str) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise LangNeuronsError(f"{what} must be a positive integer or None, got {n!r}")
    return n


def load_wikipedia(
    langs: str | Sequence[str] | None = None,
    *,
    max_per_lang: int | None = None,
    date: str = "20231101",
    min_chars: int = 40,
    max_chars: int = 1000,
    token: str | bool | None = None,
    dataset_path: str | os.PathLike[str] | None = None,
) -> LanguageCorpus:
    """Paragraphs from ``wikimedia/wikipedia`` (config ``<date>.<code>``), streamed.

    The first ``max_per_lang`` paragraphs (default 1000) of at least ``min_chars``
    characters are kept, in dump order; long paragraphs are cut into sentence runs
    of at most ``max_chars``.  ``langs=None`` loads :data:`DEFAULT_LANGS`.
    Licence: CC BY-SA 4.0 (Wikipedia text).
    """
    return _streamed_corpus(
        _WIKIPEDIA, langs, lambda code: f"{date}.{_wiki_code(code)}",
        max_per_lang=max_per_lang, min_chars=min_chars, max_chars=max_chars,
        description=f"Wikipedia {date} dump ({dataset_path or _WIKIPEDIA.hub_id}), first paragraphs; licence CC BY-SA 4.0",
        token=token, dataset_path=dataset_path,
    )


def load_culturax(
    langs: str | Sequence[str] | None = None,
    *,
    max_per_lang: int | None = None,
    min_chars: int = 40,
    max_chars: int = 1000,
    token: str | bool | None = None,
    dataset_path: str | os.PathLike[str] | None = None,
) -> LanguageCorpus:
    """Paragraphs from ``uonlp/CulturaX`` (config = language code), streamed.

    Gated: accept the terms on the hub and pass ``token=``.  Takes the first
    ``max_per_lang`` paragraphs (default 1000) like :func:`load_wikipedia`.
    ``langs=None`` loads :data:`DEFAULT_LANGS`.  Licence: per the dataset card
    (mC4 ODC-BY and OSCAR terms).
    """
    return _streamed_corpus(
        _CULTURAX, langs, _wiki_code,
        max_per_lang=max_per_lang, min_chars=min_chars, max_chars=max_chars,
        description=f"CulturaX ({dataset_path or _CULTURAX.hub_id}), first paragraphs",
        token=token, dataset_path=dataset_path,
    )


# --------------------------------------------------------------------------- dispatcher

_LOADERS: dict[str, Callable[..., LanguageCorpus]] = {
    "default": load_default_corpus,
    "flores": load_flores,
    "paws-x": load_paws_x,
    "wikipedia": load_wikipedia,
    "culturax": load_culturax,
}
_ALIASES = {"flores+": "flores", "flores_plus": "flores", "flores200": "flores", "pawsx": "paws-x",
            "paws_x": "paws-x", "wiki": "wikipedia", "django": "default"}


def load_corpus(
    name: str | os.PathLike[str] = "default",
    langs: str | Sequence[str] | None = None,
    max_per_lang: int | None = None,
    **kwargs: Any,
) -> LanguageCorpus:
    """Load a corpus by name (``"default"``, ``"flores"``, ``"paws-x"``, ``"wikipedia"``,
    ``"culturax"``) or from a directory of ``<code>.txt`` files.

    Args:
        name: corpus name or directory path.
        langs: language codes (list or ``"en,de"``); None means :data:`DEFAULT_LANGS`
            (all seven languages for PAWS-X, every file for a directory).
        max_per_lang: keep at most this many texts per language (a deterministic
            sample; parallel corpora stay parallel; streamed sources stop early).
        **kwargs: passed to the loader, e.g. ``token=``, ``split=``, ``dataset_path=``.

    Raises:
        UnknownLanguageError: for an unknown language code.
        MissingLanguageError: for a language the source does not hold.
        CorpusError: if the source cannot be loaded (offline, gated, missing files).
    """
    if max_per_lang is not None:
        _positive(max_per_lang, "max_per_lang")
    key = str(name).strip().lower()
    key = _ALIASES.get(key, key)
    if key in _LOADERS and not isinstance(name, os.PathLike):
        loader = _LOADERS[key]
    elif Path(name).expanduser().is_dir():
        loader, key = load_text_files, "text files"
        kwargs = {"directory": name, **kwargs}
    else:
        raise LangNeuronsError(
            f"unknown corpus {str(name)!r}: use one of {', '.join(map(repr, _LOADERS))} "
            "or the path of a directory with one <code>.txt file per language"
        )
    params = inspect.signature(loader).parameters
    streamed = "max_per_lang" in params
    bad = [k for k in kwargs if k not in params or k in ("langs", "max_per_lang")]
    if bad:
        allowed = [p for p in params if p not in ("langs", "max_per_lang", "directory")]
        raise LangNeuronsError(
            f"load_corpus({key!r}) got unexpected option(s) {', '.join(map(repr, bad))}: it accepts {allowed or 'no options'}"
        )
    if streamed:
        kwargs["max_per_lang"] = max_per_lang
    corpus = loader(langs=langs, **kwargs)
    if max_per_lang is not None and any(len(t) > max_per_lang for t in corpus.texts.values()):
        corpus = corpus.take(max_per_lang)
    return corpus
