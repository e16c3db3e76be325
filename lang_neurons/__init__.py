"""lang_neurons: find the neurons of a multilingual decoder LLM that belong to one language,
and steer the language it writes by intervening on them.

    import lang_neurons as ln
    model = ln.load_model()                         # embedded Gemma-3-270M, offline
    train, held_out = ln.load_corpus("default").split(held_out=0.2)
    stats = ln.record(model, train)                 # one streaming pass
    neurons = ln.lape(stats)                        # or ln.average_precision(stats)
    print(neurons.summary())
    hooks = ln.language_arithmetic(neurons, stats, target="de")
    print(ln.generate(model, n=5, hooks=hooks))

The names below load on first use (PEP 562), so ``import lang_neurons`` and ``lang-neurons
--help`` do not import torch, TransformerLens or plotly until something needs them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Each public name and the module that defines it.
_NAMES = {
    "lang_neurons.choices": ("DEFAULT_LANGS", "DEFAULT_MODEL", "SITES"),
    "lang_neurons.controls": ("random_control", "random_controls"),
    "lang_neurons.corpora": ("LanguageCorpus", "load_corpus"),
    "lang_neurons.errors": ("LangNeuronsError",),
    "lang_neurons.evaluation": ("LanguageIdentifier", "LossMatrix", "translation_scores", "translation_task"),
    "lang_neurons.generation": ("generate", "language_loss"),
    "lang_neurons.models": ("HookedModel", "computing_in", "load_model", "model_fingerprint"),
    "lang_neurons.neurons": ("NeuronSet", "average_precision", "lape"),
    "lang_neurons.protocols": ("PROTOCOLS", "Protocol", "protocol"),
    "lang_neurons.recording": ("ActivationStats", "record"),
    "lang_neurons.sites": ("Site", "resolve_site"),
    "lang_neurons.steering": ("ResidualSteering", "Steering", "language_arithmetic", "residual_diffmean", "steer"),
    "lang_neurons.study": ("evaluate", "loss_matrix"),
    "lang_neurons.tasks": ("TASKS", "Task", "evaluate_task", "load_task"),
}
_HOME = {name: module for module, names in _NAMES.items() for name in names}
_SUBMODULES = ("controls", "evaluation", "masks", "plots", "protocols", "report", "steering", "tasks")

__all__ = [
    "DEFAULT_LANGS",
    "DEFAULT_MODEL",
    "PROTOCOLS",
    "SITES",
    "TASKS",
    "ActivationStats",
    "HookedModel",
    "LangNeuronsError",
    "LanguageCorpus",
    "LanguageIdentifier",
    "LossMatrix",
    "NeuronSet",
    "Protocol",
    "ResidualSteering",
    "Site",
    "Steering",
    "Task",
    "average_precision",
    "computing_in",
    "controls",
    "evaluate",
    "evaluate_task",
    "evaluation",
    "generate",
    "language_arithmetic",
    "language_loss",
    "lape",
    "load_corpus",
    "load_model",
    "load_task",
    "loss_matrix",
    "masks",
    "model_fingerprint",
    "plots",
    "protocol",
    "protocols",
    "random_control",
    "random_controls",
    "report",
    "record",
    "residual_diffmean",
    "resolve_site",
    "steer",
    "steering",
    "tasks",
    "translation_scores",
    "translation_task",
]


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"lang_neurons.{name}")
    if name not in _HOME:
        raise AttributeError(f"module 'lang_neurons' has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOME[name]), name)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


if TYPE_CHECKING:  # what the names are, for type checkers and IDEs
    from lang_neurons import controls, evaluation, masks, plots, protocols, report, steering, tasks
    from lang_neurons.choices import DEFAULT_LANGS, DEFAULT_MODEL, SITES
    from lang_neurons.controls import random_control, random_controls
    from lang_neurons.corpora import LanguageCorpus, load_corpus
    from lang_neurons.errors import LangNeuronsError
    from lang_neurons.evaluation import LanguageIdentifier, LossMatrix, translation_scores, translation_task
    from lang_neurons.generation import generate, language_loss
    from lang_neurons.models import HookedModel, computing_in, load_model, model_fingerprint
    from lang_neurons.neurons import NeuronSet, average_precision, lape
    from lang_neurons.protocols import PROTOCOLS, Protocol, protocol
    from lang_neurons.recording import ActivationStats, record
    from lang_neurons.sites import Site, resolve_site
    from lang_neurons.steering import ResidualSteering, Steering, language_arithmetic, residual_diffmean, steer
    from lang_neurons.study import evaluate, loss_matrix
    from lang_neurons.tasks import TASKS, Task, evaluate_task, load_task
