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

from .catalogues import default_corpus_languages, load_default_corpus
from .corpus import DEFAULT_LANGS, CorpusError, LanguageCorpus, MissingLanguageError
from .dispatch import load_corpus
from .files import load_text_files
from .hub_corpora import PAWS_X_LANGS, STREAMING_DEFAULT_MAX, load_culturax, load_flores, load_paws_x, load_wikipedia
from .texts import split_paragraphs

__all__ = [
    "DEFAULT_LANGS",
    "CorpusError",
    "LanguageCorpus",
    "MissingLanguageError",
    "PAWS_X_LANGS",
    "STREAMING_DEFAULT_MAX",
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
