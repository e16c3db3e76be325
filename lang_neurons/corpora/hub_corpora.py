"""The hub corpora: FLORES+, PAWS-X (parallel) and Wikipedia, CulturaX (streamed paragraphs)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from ..languages import UnknownLanguageError, language_name, lookup, same_language, to_flores
from .corpus import DEFAULT_LANGS, CorpusError, LanguageCorpus, MissingLanguageError
from .hub import HubSource, first_config, require_column
from .texts import columns, dedupe, dedupe_rows, is_unsegmented, positive, resolve_langs, split_paragraphs

STREAMING_DEFAULT_MAX = 1000
"""Texts per language taken from a streamed source when ``max_per_lang`` is None."""

_FLORES = HubSource("FLORES+", "openlanguagedata/flores_plus", "flores", gated=True)
_PAWS_X = HubSource("PAWS-X", "google-research-datasets/paws-x", "paws-x", gated=False)
_WIKIPEDIA = HubSource("Wikipedia", "wikimedia/wikipedia", "wikipedia", gated=False)
_CULTURAX = HubSource("CulturaX", "uonlp/CulturaX", "culturax", gated=True)

PAWS_X_LANGS: tuple[str, ...] = ("en", "de", "es", "fr", "ja", "ko", "zh")
"""Languages of PAWS-X (each is a dataset config)."""


def _aligned_rows(
    tables: dict[str, list[Mapping[str, Any]]], column: str, id_column: str | None
) -> tuple[list[list[str]], bool]:
    """Align per-language rows by ``id_column`` (or position); return rows and whether aligned."""
    langs = list(tables)
    if id_column and all(t and id_column in t[0] for t in tables.values()):
        by_id = {lang: {row[id_column]: row[column] for row in rows} for lang, rows in tables.items()}
        ids = [row[id_column] for row in tables[langs[0]] if all(row[id_column] in by_id[lang] for lang in langs[1:])]
        try:
            ids = sorted(ids)  # the dataset's item order, whatever the row order of each file
        except TypeError:
            pass
        return dedupe_rows([[by_id[lang][i] or "" for lang in langs] for i in ids]), True
    if len({len(t) for t in tables.values()}) == 1:
        return dedupe_rows(zip(*([row[column] or "" for row in tables[lang]] for lang in langs))), True
    return [], False


def _parallel_corpus(
    source: HubSource,
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
        tables[lang] = first_config(
            source, lang, configs[lang], lambda rows: list(require_column(rows, column, source)), split=split, **hub
        )
    rows, aligned = _aligned_rows(tables, column, id_column)
    if aligned and rows:
        texts = columns(rows, langs)
    else:
        texts = {lang: dedupe(str(r[column] or "") for r in rows_) for lang, rows_ in tables.items()}
        aligned = False
    for lang, values in texts.items():
        if not values:
            raise CorpusError(f"{source.label} split {split!r} has no usable {column!r} texts for {lang!r}")
    return LanguageCorpus(texts, source.corpus, description, aligned=aligned)


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
    codes = resolve_langs(langs, DEFAULT_LANGS)
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
        _FLORES,
        codes,
        configs,
        split=split,
        column="text",
        id_column="id",
        description=f"FLORES+ {split} split ({dataset_path or _FLORES.hub_id}); licence CC BY-SA 4.0",
        token=token,
        dataset_path=dataset_path,
        cache_dir=cache_dir,
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
    codes = resolve_langs(langs, PAWS_X_LANGS)
    configs = {}
    for code in codes:
        match = [c for c in PAWS_X_LANGS if same_language(c, code)]
        if not match:
            raise MissingLanguageError(
                f"PAWS-X has no {code!r} ({language_name(code)}): it offers {', '.join(PAWS_X_LANGS)}"
            )
        configs[code] = match
    return _parallel_corpus(
        _PAWS_X,
        codes,
        configs,
        split=split,
        column="sentence1",
        id_column="id",
        description=f"PAWS-X {split} split, sentence1 ({dataset_path or _PAWS_X.hub_id})",
        token=token,
        dataset_path=dataset_path,
        cache_dir=cache_dir,
    )


def _wiki_code(code: str) -> str:
    """Wikipedia / CulturaX language code: ISO 639-1 where one exists, else ISO 639-3."""
    row = lookup(code)
    if same_language(code, "yue_Hant"):
        return "zh-yue"
    base = row.iso or (row.flores or "")[:3]
    return {"nb": "no"}.get(base, base)


def _streamed_corpus(
    source: HubSource,
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
    codes = resolve_langs(langs, DEFAULT_LANGS)
    limit = STREAMING_DEFAULT_MAX if max_per_lang is None else positive(max_per_lang, "max_per_lang")
    texts: dict[str, list[str]] = {}
    for code in codes:
        floor = max(1, min_chars // 2) if is_unsegmented(code) else min_chars

        def consume(rows: Iterable[Mapping[str, Any]], floor: int = floor) -> list[str]:
            out: dict[str, None] = {}
            for row in require_column(rows, "text", source):
                for para in split_paragraphs(str(row["text"] or ""), floor, max_chars):
                    out.setdefault(para)
                    if len(out) >= limit:
                        return list(out)
            return list(out)

        texts[code] = first_config(source, code, [config_of(code)], consume, split=split, streaming=True, **hub)
        if not texts[code]:
            raise CorpusError(f"{source.label} gave no paragraphs of at least {floor} characters for {code!r}")
    return LanguageCorpus(texts, source.corpus, description, aligned=False)


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
        _WIKIPEDIA,
        langs,
        lambda code: f"{date}.{_wiki_code(code)}",
        max_per_lang=max_per_lang,
        min_chars=min_chars,
        max_chars=max_chars,
        description=f"Wikipedia {date} dump ({dataset_path or _WIKIPEDIA.hub_id}), first paragraphs; licence CC BY-SA 4.0",
        token=token,
        dataset_path=dataset_path,
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
        _CULTURAX,
        langs,
        _wiki_code,
        max_per_lang=max_per_lang,
        min_chars=min_chars,
        max_chars=max_chars,
        description=f"CulturaX ({dataset_path or _CULTURAX.hub_id}), first paragraphs",
        token=token,
        dataset_path=dataset_path,
    )
