"""Stage 4: stream a corpus through the model once and keep per-language neuron statistics.

One pass gives everything both methods need:

* LAPE (Tang et al. 2024): per language and neuron, the number of real tokens and how many of
  them activated the neuron (> 0); also sums and sums of squares (means for language arithmetic).
  These are fixed-size accumulators: memory does not grow with the corpus.
* AP (Kojima et al. 2024): one pooled activation per sentence and neuron (mean over the real
  tokens by default; ``max`` and ``last`` selectable), for up to ``ap_sentences`` sentences per
  language, and from them the per-language medians used for override steering.
* The residual-stream baseline (DiffMean, as in CLaS-Bench): per language and layer, the sum of
  ``blocks.<l>.hook_resid_post`` over the same counted tokens (float64, ``d_model`` wide), from
  which :meth:`ActivationStats.resid_mean` gives per-language residual means.

Batches hold sentences of one language and similar length (little padding); pad positions never
count; the forward stops right after the last layer's ``hook_resid_post`` (the final norm and the
unembedding are skipped).

Modules: :mod:`.stats` (:class:`ActivationStats` and its files), :mod:`.batching` (token ids,
batches, padding; shared with :mod:`lang_neurons.generation`), :mod:`.accumulator` (the hooks),
:mod:`.distributed` (ranks and the folded totals), :mod:`.checkpoint` (resumable recordings)
and :mod:`.recorder` (:func:`record`).
"""

from __future__ import annotations

from ..choices import POOLINGS
from .batching import BATCH_COST, batches, encode, pad
from .recorder import REDUCE_EVERY, record
from .stats import STATS_FORMAT, ActivationStats, Pooling

__all__ = [
    "BATCH_COST",
    "POOLINGS",
    "REDUCE_EVERY",
    "STATS_FORMAT",
    "ActivationStats",
    "Pooling",
    "batches",
    "encode",
    "pad",
    "record",
]
