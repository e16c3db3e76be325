"""Exact, vectorised average precision (AP) of every neuron as a language detector.

Kojima et al. (NAACL 2024, "On the Multilingual Ability of Decoder-based Pre-trained
Language Models: Finding and Controlling Language-Specific Neurons") score each neuron by
how well its sentence-pooled activation separates the sentences of one language (positives)
from all other sentences (negatives): the neuron's *average precision*

    AP = sklearn.metrics.average_precision_score(labels == language, scores[:, neuron])

i.e. the step-function ("uninterpolated") AP, ``sum_k (R_k - R_{k-1}) * P_k`` over the
distinct score thresholds, where tied scores form a single threshold.  Neurons whose
activation is *low* on the language ("bottom-k" in the paper) are found with the AP of the
negated scores.

This module computes the exact same number as scikit-learn (up to float64 rounding,
~1e-15) for *every class and every neuron at once*, with one sort per neuron:

* the scores of a neuron are mapped to order-preserving integer keys, the class id is
  packed into the low bits of the key and the keys are sorted (``numpy.sort``, so the
  class ids travel with the scores without an ``argsort`` + gather);
* a stable (radix) arg-sort of the sorted class ids yields, for every class, the ranks of
  its members in the neuron's ordering; AP of class ``c`` is then
  ``1/P_c * sum_k T_k / N_k`` over its ``P_c`` members, where ``N_k`` is the number of
  sentences that score at least as high as member ``k`` (its threshold) and ``T_k`` the
  number of class-``c`` sentences among them; tie groups are resolved exactly like
  scikit-learn (all tied sentences enter at the same threshold);
* the same sorted order read backwards gives the AP of the negated scores, so
  :func:`average_precision_both` returns both directions for the price of one sort.

Rows with ties are exact too: a row with a few tied pairs gets a correction at the tied
positions only; a row with few distinct values (dead/quantised neurons) is computed per
tie group.  -0.0 and +0.0 are one tie group (they compare equal, as in scikit-learn).
float64 scores are handled in float64 (float32 keys are used when the values are exactly
float32); float16/bfloat16 are widened to float32 exactly.

Neurons are processed in chunks (bounded memory) and chunks are spread over threads
(NumPy releases the GIL in its sorting and element-wise loops).

Cost (2-core AMD EPYC Zen 4 VM, NumPy 2.4): ~55 us of CPU per neuron for 3,000 sentences
and 6 classes on an idle machine (80-90 us when other processes load both cores); about
half is the ``numpy.sort`` of the packed keys (NumPy's AVX-512 sort is slow on Zen 4).
scikit-learn needs ~1.1 ms per (class, neuron), so computing all classes is ~75-200x faster
than the equivalent scikit-learn loop.  The sort dominates, so cost grows like
``S log S`` (18,000 sentences: ~0.6 ms per neuron, both directions).

Classes without any sentence get NaN (scikit-learn warns "No positive class found in
y_true" and returns 0.0, which is not a meaningful AP).

Huge inputs: the function never copies the whole input (only one neuron chunk at a
time, transposed to ``[chunk, sentences]``), so it can be called on a memory-mapped or
lazily produced array; if the full ``[sentences, neurons]`` matrix does not fit in memory
at all, call it once per block of neurons (results are independent per neuron, so
concatenating per-block results along the neuron axis is exact).

Layout of this private package: :mod:`~lang_neurons._ap.plan` (everything that depends on
the labels only), :mod:`~lang_neurons._ap.keys` (order-preserving integer keys, the packed
sort and its argsort fallback), :mod:`~lang_neurons._ap.ties` (AP from the sorted class ids,
with the tie corrections) and :mod:`~lang_neurons._ap.driver` (inputs, chunks, threads and
the two entry points).
"""

from lang_neurons._ap.driver import average_precision, average_precision_both

__all__ = ["average_precision", "average_precision_both"]
