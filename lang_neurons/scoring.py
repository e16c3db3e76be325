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
    active: Int[Tensor, "lang layer neuron"], tokens: Int[Tensor, " lang"]
) -> Float[Tensor, "lang layer neuron"]:
    """LAPE's ``p``: the share of a language's tokens on which each neuron is > 0."""
    if active.ndim != 3 or tokens.shape != (active.shape[0],):
        raise LangNeuronsError(
            f"need active [lang, layer, neuron] and tokens [lang], got {tuple(active.shape)} and {tuple(tokens.shape)}"
        )
    if active.is_floating_point() and not torch.isfinite(active).all():
        raise LangNeuronsError(
            f"activation counts hold {int((~torch.isfinite(active)).sum())} NaN/inf values: recompute the statistics"
        )
    if (tokens <= 0).any():
        raise LangNeuronsError("every language needs at least one token to compute activation probabilities")
    if (active < 0).any() or (active > tokens[:, None, None]).any():
        raise LangNeuronsError(
            "activation counts must lie between 0 and the language's token count: the statistics are damaged"
        )
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
    per_language: int | None = None,
) -> tuple[Bool[Tensor, "lang layer neuron"], Float[Tensor, "layer neuron"]]:
    """LAPE neuron selection. Returns (membership mask per language, entropy used to rank).

    Args:
        prob: activation probabilities (:func:`activation_probability`), ``[lang, layer, neuron]``.
        top_rate: share of all neurons kept, by lowest entropy.
        filter_rate: quantile of all ``p`` that some language must exceed for a neuron to count.
        activation_bar_ratio: quantile of all ``p`` a language must exceed to own a kept neuron.
        per_language: balanced variant (not in the paper): instead of one global budget, every
            language gets its own ``per_language`` lowest-entropy neurons among those (passing
            the filter) on which it has the highest ``p``. Memberships are then exclusive and
            ``top_rate``/``activation_bar_ratio`` are not used. Under the global budget a
            language whose neurons are shared with related languages (English among de/fr/es)
            can end up with very few neurons; this gives every language the same number.

    Returns:
        ``(mask [lang, layer, neuron], entropy [layer, neuron])``.
    """
    for name, v in (
        ("top_rate", top_rate),
        ("filter_rate", filter_rate),
        ("activation_bar_ratio", activation_bar_ratio),
    ):
        if not 0 < v <= 1:
            raise LangNeuronsError(f"{name} must be in (0, 1], got {v}")
    if prob.ndim != 3 or prob.shape[0] < 2 or prob.numel() == 0:
        raise LangNeuronsError(f"LAPE needs probabilities of shape [lang>=2, layer, neuron], got {tuple(prob.shape)}")
    if not torch.isfinite(prob).all() or (prob < 0).any() or (prob > 1).any():
        raise LangNeuronsError(f"activation probabilities must be finite and in [0, 1]; {_nonfinite_report(prob)}")
    entropy = lape_entropy(prob)
    tau = _kth_quantile(prob, filter_rate)
    passes = (prob > tau).any(0)
    if per_language is not None:
        return _lape_per_language(prob, entropy, passes, per_language), entropy
    ranked = entropy.masked_fill(~passes, torch.inf).flatten()
    n_keep = round(ranked.numel() * top_rate)
    # Lowest entropy first; ties broken by position (layer, neuron) so results are deterministic.
    order = torch.sort(ranked, stable=True).indices[:n_keep]
    kept = torch.zeros_like(ranked, dtype=torch.bool)
    kept[order] = True
    bar = _kth_quantile(prob, activation_bar_ratio)
    mask = (prob > bar) & kept.view(1, *entropy.shape)
    return mask, entropy


def _lape_per_language(
    prob: Float[Tensor, "lang layer neuron"],
    entropy: Float[Tensor, "layer neuron"],
    passes: Bool[Tensor, "layer neuron"],
    k: int,
) -> Bool[Tensor, "lang layer neuron"]:
    """Per language, the ``k`` lowest-entropy neurons it owns (highest ``p``, filter passed)."""
    n_langs, n_layers, width = prob.shape
    if isinstance(k, bool) or not isinstance(k, int) or not 0 < k <= n_layers * width:
        raise LangNeuronsError(f"per_language must be a whole number in [1, {n_layers * width}], got {k!r}")
    owner = prob.argmax(0)
    mask = torch.zeros(n_langs, n_layers * width, dtype=torch.bool)
    for i in range(n_langs):
        ranked = entropy.masked_fill(~(passes & (owner == i)), torch.inf).flatten()
        order = torch.sort(ranked, stable=True).indices[:k]
        mask[i, order[torch.isfinite(ranked[order])]] = True
    return mask.view_as(prob)


def ap_scores(
    pooled: Float[Tensor, "sentence layer neuron"],
    pooled_lang: Int[Tensor, " sentence"],
    n_langs: int,
    progress: bool = False,
) -> Float[Tensor, "lang layer neuron"]:
    """Average precision of every neuron for every language (positives: that language's sentences).

    NaN or infinite pooled activations raise a :class:`LangNeuronsError` that says how many there
    are in which layers (AP is undefined for them); they are never silently ranked.
    """
    if pooled.ndim != 3:
        raise LangNeuronsError(f"pooled activations must be [sentence, layer, neuron], got shape {tuple(pooled.shape)}")
    if pooled_lang.ndim != 1 or pooled_lang.is_floating_point() or pooled_lang.dtype == torch.bool:
        raise LangNeuronsError(
            f"pooled_lang must be a 1-D integer tensor of language ids, got {pooled_lang.dtype} {tuple(pooled_lang.shape)}"
        )
    if pooled.shape[0] != pooled_lang.shape[0]:
        raise LangNeuronsError(f"{pooled.shape[0]} pooled rows but {pooled_lang.shape[0]} labels")
    if n_langs < 2:
        raise LangNeuronsError(f"AP needs at least two languages, got n_langs={n_langs}")
    if len(pooled_lang) and (int(pooled_lang.min()) < 0 or int(pooled_lang.max()) >= n_langs):
        raise LangNeuronsError(
            f"language ids must be in [0, {n_langs}), got {int(pooled_lang.min())}..{int(pooled_lang.max())}"
        )
    counts = torch.bincount(pooled_lang, minlength=n_langs)
    if (counts == 0).any():
        raise LangNeuronsError(f"AP needs pooled sentences for every language; counts per language: {counts.tolist()}")
    s, n_layers, width = pooled.shape
    try:
        ap = _average_precision(
            pooled.reshape(s, n_layers * width), pooled_lang, progress=progress, num_classes=n_langs
        )
    except LangNeuronsError:
        if not torch.isfinite(pooled).all():
            raise LangNeuronsError(
                f"AP is undefined for non-finite pooled activations; {_nonfinite_report(pooled)}"
            ) from None
        raise
    return ap.reshape(n_langs, n_layers, width).float()


def _nonfinite_report(x: Float[Tensor, "_ layer neuron"]) -> str:
    """Where the NaN/inf values of ``x`` are: count per layer (the second dimension)."""
    bad = ~torch.isfinite(x)
    if not bad.any():
        return "values outside [0, 1] found"
    per_layer = bad.sum(dim=tuple(i for i in range(x.ndim) if i != 1))
    where = ", ".join(f"layer {i}: {int(n)}" for i, n in enumerate(per_layer.tolist()) if n)
    n_nan = int(torch.isnan(x).sum())
    return f"{int(bad.sum())} non-finite values ({n_nan} NaN, {int(bad.sum()) - n_nan} inf) in {where}: clean or recompute the activations"


def top_bottom_k(
    scores: Float[Tensor, "lang layer neuron"], top_k: int, bottom_k: int
) -> tuple[Bool[Tensor, "lang layer neuron"], Bool[Tensor, "lang layer neuron"]]:
    """Per language, the ``top_k`` highest- and ``bottom_k`` lowest-scoring neurons (ties: lower index)."""
    if scores.ndim != 3:
        raise LangNeuronsError(f"scores must be [lang, layer, neuron], got shape {tuple(scores.shape)}")
    if not torch.isfinite(scores).all():
        raise LangNeuronsError(f"cannot rank non-finite scores; {_nonfinite_report(scores)}")
    n_langs, n_layers, width = scores.shape
    n = n_layers * width
    for name, k in (("top_k", top_k), ("bottom_k", bottom_k)):
        if not isinstance(k, int) or isinstance(k, bool):
            raise LangNeuronsError(f"{name} must be a whole number of neurons, got {k!r}")
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
