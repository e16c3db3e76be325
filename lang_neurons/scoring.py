"""Stage 5: score neurons. Pure tensor functions (tensors in, tensors out).

LAPE (Tang et al., ACL 2024, "Language-Specific Neurons: The Key to Multilingual Capabilities
in Large Language Models"), written to match the authors' ``identify.py``:

1. ``p[l, j, k]`` = P(activation > 0) of neuron ``k`` of layer ``j`` on language ``l``;
2. normalise over languages, ``p' = p / sum_l p``;  entropy ``H = -sum_l p' log p'``;
3. ``tau`` = the ``filter_rate`` quantile (95th percentile) of all ``p``; neurons where no
   language has ``p > tau`` are excluded;
4. keep the ``top_rate`` (1 %) of all neurons with the lowest entropy;
5. a kept neuron belongs to every language whose ``p`` exceeds the ``activation_bar_ratio``
   quantile of all ``p``.

AP (Kojima et al., NAACL 2024): per language, the average precision with which a neuron's
sentence-pooled activation ranks that language's sentences above the others'; the top-k and
the bottom-k neurons by AP are the language's neurons.
"""

from __future__ import annotations

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from lang_neurons._ap import average_precision as _average_precision
from lang_neurons.errors import LangNeuronsError


def activation_probability(
    active: Int[Tensor, "lang layer neuron"], tokens: Int[Tensor, "lang"]
) -> Float[Tensor, "lang layer neuron"]:
    """LAPE's ``p``: the share of a language's tokens on which each neuron is > 0."""
    if (tokens <= 0).any():
        raise LangNeuronsError("every language needs at least one token to compute activation probabilities")
    return (active.double() / tokens.double()[:, None, None]).float()


def lape_entropy(prob: Float[Tensor, "lang layer neuron"]) -> Float[Tensor, "layer neuron"]:
    """Entropy of each neuron's activation probability normalised over languages (low = specific).

    A neuron that never fires (all ``p`` zero) gets entropy 0, as in the reference code.
    """
    normed = prob / prob.sum(0, keepdim=True)
    normed = torch.nan_to_num(normed, nan=0.0)
    logs = torch.where(normed > 0, normed.log(), torch.zeros_like(normed))
    return -(normed * logs).sum(0)


def _kth_quantile(values: Tensor, rate: float) -> float:
    """The reference code's threshold: ``kthvalue(round(n * rate))`` of the flattened values."""
    flat = values.flatten()
    k = min(max(round(len(flat) * rate), 1), len(flat))
    return float(flat.kthvalue(k).values)


def lape_select(
    prob: Float[Tensor, "lang layer neuron"],
    top_rate: float = 0.01,
    filter_rate: float = 0.95,
    activation_bar_ratio: float = 0.95,
) -> tuple[Bool[Tensor, "lang layer neuron"], Float[Tensor, "layer neuron"]]:
    """LAPE neuron selection. Returns (membership mask per language, entropy used to rank).

    Args:
        prob: activation probabilities (:func:`activation_probability`).
        top_rate: share of all neurons kept, by lowest entropy.
        filter_rate: quantile of all ``p`` that some language must exceed for a neuron to count.
        activation_bar_ratio: quantile of all ``p`` a language must exceed to own a kept neuron.
    """
    for name, v in (("top_rate", top_rate), ("filter_rate", filter_rate), ("activation_bar_ratio", activation_bar_ratio)):
        if not 0 < v <= 1:
            raise LangNeuronsError(f"{name} must be in (0, 1], got {v}")
    if prob.ndim != 3 or prob.shape[0] < 2:
        raise LangNeuronsError(f"LAPE needs probabilities of shape [lang>=2, layer, neuron], got {tuple(prob.shape)}")
    entropy = lape_entropy(prob)
    tau = _kth_quantile(prob, filter_rate)
    ranked = entropy.masked_fill((prob > tau).sum(0) == 0, torch.inf).flatten()
    n_keep = round(ranked.numel() * top_rate)
    # Lowest entropy first; ties broken by position (layer, neuron) so results are deterministic.
    order = torch.sort(ranked, stable=True).indices[:n_keep]
    kept = torch.zeros_like(ranked, dtype=torch.bool)
    kept[order] = True
    bar = _kth_quantile(prob, activation_bar_ratio)
    mask = (prob > bar) & kept.view(1, *entropy.shape)
    return mask, entropy


def ap_scores(
    pooled: Float[Tensor, "sentence layer neuron"],
    pooled_lang: Int[Tensor, "sentence"],
    n_langs: int,
    progress: bool = False,
) -> Float[Tensor, "lang layer neuron"]:
    """Average precision of every neuron for every language (positives: that language's sentences)."""
    if pooled.shape[0] != pooled_lang.shape[0]:
        raise LangNeuronsError(f"{pooled.shape[0]} pooled rows but {pooled_lang.shape[0]} labels")
    counts = torch.bincount(pooled_lang, minlength=n_langs)
    if (counts == 0).any():
        raise LangNeuronsError(f"AP needs pooled sentences for every language; counts per language: {counts.tolist()}")
    s, n_layers, width = pooled.shape
    ap = _average_precision(pooled.reshape(s, n_layers * width), pooled_lang, progress=progress)
    return ap.reshape(n_langs, n_layers, width).float()


def top_bottom_k(
    scores: Float[Tensor, "lang layer neuron"], top_k: int, bottom_k: int
) -> tuple[Bool[Tensor, "lang layer neuron"], Bool[Tensor, "lang layer neuron"]]:
    """Per language, the ``top_k`` highest- and ``bottom_k`` lowest-scoring neurons (ties: lower index)."""
    n_langs, n_layers, width = scores.shape
    n = n_layers * width
    for name, k in (("top_k", top_k), ("bottom_k", bottom_k)):
        if k < 0 or k > n:
            raise LangNeuronsError(f"{name}={k} but the model has {n} neurons at this site: use 0 <= {name} <= {n}")
    if top_k + bottom_k > n:
        raise LangNeuronsError(f"top_k + bottom_k = {top_k + bottom_k} exceeds the {n} neurons at this site")
    flat = scores.reshape(n_langs, n)
    top = torch.zeros(n_langs, n, dtype=torch.bool)
    bottom = torch.zeros(n_langs, n, dtype=torch.bool)
    order = torch.sort(flat, dim=1, descending=True, stable=True).indices
    top.scatter_(1, order[:, :top_k], True)
    order = torch.sort(flat, dim=1, stable=True).indices
    bottom.scatter_(1, order[:, :bottom_k], True)
    return top.view_as(scores), bottom.view_as(scores)
