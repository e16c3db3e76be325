"""The offline default corpus: parallel UI messages from the gettext catalogues (``.mo``)
that ship inside Django and, when installed, django-allauth and Django REST framework (the
three are the extra ``lang_neurons[default]``)."""

from __future__ import annotations

import functools
import gettext
import html
import importlib.metadata
import importlib.util
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import LangNeuronsError
from ..languages import FLORES_CODES, UnknownLanguageError, language_name, lookup, same_language, validate_lang
from .corpus import DEFAULT_LANGS, CorpusError, LanguageCorpus, MissingLanguageError, show_langs
from .texts import columns, is_unsegmented, resolve_langs


@dataclass(frozen=True)
class _CatalogSource:
    """A Python package that ships gettext catalogues (``.mo``)."""

    key: str
    package: str
    distribution: str
    licence: str
    locale_roots: tuple[str, ...]  # globs, relative to the package folder

    def package_dir(self) -> Path | None:
        try:
            spec = importlib.util.find_spec(self.package)  # does not import the package
        except ImportError:  # an import hook that refuses it: as good as not installed
            return None
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

    Parsed by :class:`gettext.GNUTranslations`, whose ``_catalog`` holds every entry
    (the standard library has no public way to list them): ``"msgctxt\\x04msgid"``
    or ``msgid`` -> ``msgstr``, and ``(msgid, n)`` -> ``msgstr[n]`` for plural entries.
    """
    with path.open("rb") as f:
        try:
            catalog = gettext.GNUTranslations(f)._catalog  # type: ignore[attr-defined]  # private, not in typeshed
        except OSError as err:  # bad magic number, unknown major version, offsets past the end
            raise CorpusError(f"{path} is not a gettext .mo file: reinstall the package that ships it") from err
    out: dict[tuple[str | None, str], str] = {}
    for key, msgstr in catalog.items():
        if isinstance(key, tuple):  # plural entry: keep msgstr[0]
            key, n = key
            if n:
                continue
        context, _, msgid = key.rpartition("\x04")
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
    langs: list[str] = []
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
    if is_unsegmented(lang):
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
    seen: list[set[str]] = [set() for _ in langs]
    for source in _CATALOG_SOURCES:
        if source.key not in sources:
            continue
        locales = _locales(source)
        found = [_locale_for(lang, locales) for lang in others]
        locs = [loc for loc in found if loc is not None]
        if not locales or len(locs) < len(found):
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
        for (context, msgid), msgstr in sorted(
            _read_mo_cached(path).items(), key=lambda kv: (kv[0][0] or "", kv[0][1])
        ):
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
    codes = resolve_langs(langs, DEFAULT_LANGS)
    keys = _SOURCE_KEYS if sources is None else tuple(sources)
    unknown = [k for k in keys if k not in _SOURCE_KEYS]
    if unknown or not keys:
        raise LangNeuronsError(f"unknown catalogue source(s) {unknown!r}: choose from {list(_SOURCE_KEYS)}")
    if not _locales(_CATALOG_SOURCES[0]):
        raise CorpusError(
            "the default corpus is in the extra 'default' (Django's translation catalogues were not found): "
            'pip install "lang_neurons[default]", or use your own corpus (a folder of <code>.txt files) or a hub corpus'
        )
    available = _locales(_CATALOG_SOURCES[0])
    for code in codes:
        if not same_language(code, "en") and _locale_for(code, available) is None:
            raise MissingLanguageError(
                f"the default corpus has no {code!r} ({language_name(code)}): it offers "
                f"{show_langs(default_corpus_languages(), 200)}; use another corpus, e.g. load_corpus('flores')"
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
    return LanguageCorpus(columns([list(r) for r in rows], codes), "default", description, aligned=True)
