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
"""

from lang_neurons import controls, evaluation, masks, plots, protocols, report, steering
from lang_neurons.controls import random_control, random_controls
from lang_neurons.corpora import DEFAULT_LANGS, LanguageCorpus, load_corpus
from lang_neurons.errors import LangNeuronsError
from lang_neurons.evaluation import LanguageIdentifier, LossMatrix, translation_scores, translation_task
from lang_neurons.generation import generate, language_loss
from lang_neurons.models import DEFAULT_MODEL, HookedModel, load_model, model_fingerprint
from lang_neurons.neurons import NeuronSet, average_precision, lape
from lang_neurons.protocols import PROTOCOLS, Protocol, protocol
from lang_neurons.recording import ActivationStats, record
from lang_neurons.sites import SITES, Site, resolve_site
from lang_neurons.steering import ResidualSteering, Steering, language_arithmetic, residual_diffmean, steer
from lang_neurons.study import evaluate, loss_matrix

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_LANGS",
    "DEFAULT_MODEL",
    "PROTOCOLS",
    "SITES",
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
    "average_precision",
    "controls",
    "evaluate",
    "evaluation",
    "generate",
    "language_arithmetic",
    "language_loss",
    "lape",
    "load_corpus",
    "load_model",
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
    "translation_scores",
    "translation_task",
]
