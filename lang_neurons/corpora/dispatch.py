"""``load_corpus``: one entry point for every corpus, by name or folder."""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import LangNeuronsError
from .catalogues import load_default_corpus
from .corpus import LanguageCorpus
from .files import load_text_files
from .hub_corpora import load_culturax, load_flores, load_paws_x, load_wikipedia
from .texts import positive

if TYPE_CHECKING:
    from ..languages import UnknownLanguageError  # noqa: F401  (named in load_corpus's docstring; the API page links it)

_LOADERS: dict[str, Callable[..., LanguageCorpus]] = {
    "default": load_default_corpus,
    "flores": load_flores,
    "paws-x": load_paws_x,
    "wikipedia": load_wikipedia,
    "culturax": load_culturax,
}
_ALIASES = {
    "flores+": "flores",
    "flores_plus": "flores",
    "flores200": "flores",
    "pawsx": "paws-x",
    "paws_x": "paws-x",
    "wiki": "wikipedia",
    "django": "default",
}


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
        positive(max_per_lang, "max_per_lang")
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
