"""lang_neurons: find the neurons of a multilingual decoder LLM that belong to one language,
and steer the language it writes by intervening on them.

    import lang_neurons as ln
    model = ln.load_model()                         # embedded Gemma-3-270M, offline
    train, held_out = ln.load_corpus("default").split(held_out=0.2)
    stats = ln.record(model, train)                 # one streaming pass
    neurons = ln.lape(stats)                        # or ln.average_precision(stats)
    print(neurons.summary())
"""

from lang_neurons.corpora import DEFAULT_LANGS, LanguageCorpus, load_corpus
from lang_neurons.errors import LangNeuronsError
from lang_neurons.models import DEFAULT_MODEL, HookedModel, load_model, model_fingerprint
from lang_neurons.neurons import NeuronSet, average_precision, lape
from lang_neurons.record import ActivationStats, record
from lang_neurons.sites import SITES, Site, resolve_site

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_LANGS",
    "DEFAULT_MODEL",
    "SITES",
    "ActivationStats",
    "HookedModel",
    "LangNeuronsError",
    "LanguageCorpus",
    "NeuronSet",
    "Site",
    "average_precision",
    "lape",
    "load_corpus",
    "load_model",
    "model_fingerprint",
    "record",
    "resolve_site",
]
