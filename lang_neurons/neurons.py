"""Stage 6: :class:`NeuronSet`, the language-specific neurons of one model at one site.

Built by :func:`lape` or :func:`average_precision` from :class:`~lang_neurons.recording.ActivationStats`.
Stored as one boolean mask ``[lang, layer, neuron]`` (plus, for AP, which members are bottom-k),
which makes histograms and overlaps one line each and files small.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from lang_neurons import _io, scoring
from lang_neurons.choices import AP_SHARE
from lang_neurons.errors import LangNeuronsError
from lang_neurons.recording import ActivationStats
from lang_neurons.sites import site_units, width_at


@dataclass
class NeuronSet:
    """Per language, the neurons (layer, index) found language-specific.

    Attributes:
        langs: language codes, in order of the first mask dimension.
        mask: ``[lang, layer, neuron]``, True where the neuron belongs to the language.
        bottom: same shape; True for AP bottom-k members (neurons *suppressed* on the
            language). All False for LAPE.
        scores: the score the method ranked by, ``[lang, layer, neuron]`` (AP) or
            ``[1, layer, neuron]`` (LAPE entropy), or None.
        site, method, params, model: what was selected where, how, and on which model.
    """

    langs: list[str]
    mask: Bool[Tensor, "lang layer neuron"]
    site: str
    method: str
    bottom: Bool[Tensor, "lang layer neuron"] | None = None
    scores: Float[Tensor, "_ layer neuron"] | None = None
    params: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.mask.ndim != 3 or self.mask.shape[0] != len(self.langs):
            raise LangNeuronsError(
                f"mask must be [lang={len(self.langs)}, layer, neuron], got {tuple(self.mask.shape)}"
            )
        self.mask = self.mask.bool()
        self.bottom = torch.zeros_like(self.mask) if self.bottom is None else self.bottom.bool() & self.mask

    # -- shape and access --------------------------------------------------------------------
    @property
    def n_layers(self) -> int:
        """Number of layers."""
        return int(self.mask.shape[1])

    @property
    def width(self) -> int:
        """Neurons per layer at this site."""
        return int(self.mask.shape[2])

    @property
    def n_neurons(self) -> int:
        """All neurons at this site (layers x width)."""
        return self.n_layers * self.width

    def lang_index(self, lang: str) -> int:
        """Position of ``lang`` in :attr:`langs` (the first mask dimension), with a clear error when absent."""
        if lang not in self.langs:
            raise LangNeuronsError(f"language {lang!r} is not in this neuron set ({', '.join(self.langs)})")
        return self.langs.index(lang)

    def indices(self, lang: str, which: str = "all") -> list[Int[Tensor, " index"]]:
        """Neuron indices of ``lang`` per layer (a list of ``n_layers`` LongTensors).

        ``which``: ``all``, ``top`` (not bottom-k) or ``bottom``.
        """
        if which not in ("all", "top", "bottom"):
            raise LangNeuronsError(f"which must be 'all', 'top' or 'bottom', not {which!r}")
        assert self.bottom is not None  # __post_init__ fills it
        m = self.mask[self.lang_index(lang)]
        b = self.bottom[self.lang_index(lang)]
        m = {"all": m, "top": m & ~b, "bottom": b}[which]
        return [row.nonzero().flatten() for row in m]

    def __getitem__(self, lang: str) -> dict[int, Tensor]:
        """``{layer: indices}`` for the layers where ``lang`` has neurons."""
        return {layer: idx for layer, idx in enumerate(self.indices(lang)) if len(idx)}

    def counts(self) -> Int[Tensor, " lang"]:
        """Number of neurons per language."""
        return self.mask.sum((1, 2))

    # -- analysis ----------------------------------------------------------------------------
    def layer_histogram(self) -> Int[Tensor, "lang layer"]:
        """Neurons per language and layer."""
        return self.mask.sum(2)

    def unit_histogram(self) -> dict[str, Int[Tensor, "lang layer"]]:
        """Neurons per language and layer in each module kind of the site, in neuron order:
        at site ``linear`` one entry per Linear module (``attn.q`` ... ``mlp.down``, see
        :mod:`lang_neurons.sites.linear`), at ``gate_up`` ``mlp.gate`` and ``mlp.up``, at the
        other sites one entry ``mlp.<site>``. The entries add up to :meth:`layer_histogram`."""
        units = site_units(self.site, self.model) if self.model else ((f"mlp.{self.site}", self.width),)
        if sum(w for _, w in units) != self.width:
            raise LangNeuronsError(
                f"the units of site {self.site!r} hold {sum(w for _, w in units)} neurons per layer, "
                f"not this set's {self.width}: its model fingerprint does not describe it"
            )
        out, start = {}, 0
        for kind, w in units:
            out[kind] = self.mask[:, :, start : start + w].sum(2)
            start += w
        return out

    def overlap(self) -> Int[Tensor, "lang lang"]:
        """Neurons shared by each pair of languages (diagonal: each language's count)."""
        flat = self.mask.reshape(len(self.langs), -1).float()
        return (flat @ flat.T).round().long()

    def jaccard(self) -> Float[Tensor, "lang lang"]:
        """Intersection over union of each pair of languages' neurons."""
        inter = self.overlap().double()
        n = inter.diag()
        union = n[:, None] + n[None, :] - inter
        return torch.where(union > 0, inter / union.clamp(min=1), torch.zeros_like(inter)).float()

    def union(self) -> Bool[Tensor, "layer neuron"]:
        """Neurons that belong to at least one language."""
        return self.mask.any(0)

    def fraction(self, lang: str | None = None) -> float:
        """Share of all neurons at the site held by ``lang`` (or by any language)."""
        m = self.union() if lang is None else self.mask[self.lang_index(lang)]
        return float(m.sum()) / self.n_neurons

    def layer_bands(self) -> Float[Tensor, "lang 3"]:
        """Share of each language's neurons in the first, middle and last third of the layers."""
        hist = self.layer_histogram().float()
        edges = [0, round(self.n_layers / 3), round(2 * self.n_layers / 3), self.n_layers]
        bands = torch.stack([hist[:, a:b].sum(1) for a, b in zip(edges, edges[1:])], 1)
        return bands / bands.sum(1, keepdim=True).clamp(min=1)

    def subset(self, langs: list[str]) -> NeuronSet:
        """The same neurons for a subset of the languages, in the given order."""
        assert self.bottom is not None  # __post_init__ fills it
        idx = [self.lang_index(x) for x in langs]
        scores = (
            self.scores[idx] if self.scores is not None and self.scores.shape[0] == len(self.langs) else self.scores
        )
        return NeuronSet(
            list(langs),
            self.mask[idx],
            self.site,
            self.method,
            self.bottom[idx],
            scores,
            dict(self.params),
            dict(self.model),
        )

    # -- display -----------------------------------------------------------------------------
    def __repr__(self) -> str:
        counts = ", ".join(f"{x}={int(c)}" for x, c in zip(self.langs, self.counts()))
        return (
            f"NeuronSet(method={self.method!r}, site={self.site!r}, {self.n_layers} layers x {self.width}, "
            f"{counts}; union {self.fraction():.2%} of neurons)"
        )

    def summary(self) -> str:
        """Readable table: neurons per language, share of all neurons, layer bands, max overlap."""
        bands = self.layer_bands()
        jac = self.jaccard().fill_diagonal_(-1)
        lines = [
            f"{self.method.upper()} neurons at site {self.site!r} ({self.n_layers} layers x {self.width} = {self.n_neurons} neurons)"
        ]
        lines.append(
            f"{'lang':<10}{'neurons':>8}{'share':>8}{'first':>7}{'middle':>7}{'last':>7}  most overlap (Jaccard)"
        )
        for i, lang in enumerate(self.langs):
            j = int(jac[i].argmax()) if len(self.langs) > 1 else i
            partner = f"{self.langs[j]} ({float(jac[i, j]):.3f})" if len(self.langs) > 1 else "-"
            f, m, last = (f"{float(x):.0%}" for x in bands[i])
            lines.append(
                f"{lang:<10}{int(self.counts()[i]):>8}{self.fraction(lang):>8.2%}{f:>7}{m:>7}{last:>7}  {partner}"
            )
        lines.append(f"{'union':<10}{int(self.union().sum()):>8}{self.fraction():>8.2%}")
        return "\n".join(lines)

    # -- files -------------------------------------------------------------------------------
    @classmethod
    def from_lape_masks(cls, source: Any, langs: Any, model: Any, site: str = "act", method: str = "lape") -> NeuronSet:
        """Import a published LAPE-layout mask file; see :func:`lang_neurons.masks.from_lape_masks`."""
        from lang_neurons.masks import from_lape_masks

        return from_lape_masks(source, langs, model, site=site, method=method)

    def to_lape_masks(self, path: str | Path | None = None, which: str = "all") -> list[list[Int[Tensor, " index"]]]:
        """Export in the LAPE layout (``masks[lang][layer]`` = LongTensor of indices); see
        :func:`lang_neurons.masks.to_lape_masks`."""
        from lang_neurons.masks import to_lape_masks

        return to_lape_masks(self, path, which)

    def save(self, path: str | Path) -> Path:
        """Write ``<path>.safetensors`` + ``<path>.json`` atomically; returns the tensor file."""
        assert self.bottom is not None  # __post_init__ fills it
        tensors = {"mask": self.mask.to(torch.uint8), "bottom": self.bottom.to(torch.uint8)}
        if self.scores is not None:
            tensors["scores"] = self.scores.float()
        meta = {
            "langs": self.langs,
            "site": self.site,
            "method": self.method,
            "params": self.params,
            "model": self.model,
            "shape": list(self.mask.shape),
        }
        return _io.save_artifact(path, "neuron_set", tensors, meta)

    @classmethod
    def load(cls, path: str | Path, model: Any = None) -> NeuronSet:
        """Load what :meth:`save` wrote; a damaged, edited or foreign file gives a clear error.

        With ``model`` (a hooked model), also check that the set was found on that model.
        """
        tensors, meta = _io.load_artifact(path, "neuron_set", model=model)
        where = f"neuron set {path}"
        for key in ("langs", "site", "method", "shape"):
            if key not in meta:
                raise _io.ArtifactError(f"{where} has no {key!r} in its sidecar: recompute it")
        shape = [int(x) for x in meta["shape"]]
        if len(shape) != 3 or shape[0] != len(meta["langs"]):
            raise _io.ArtifactError(
                f"{where}: shape {shape} does not fit its {len(meta['langs'])} languages: recompute it"
            )
        if shape[1:] != [int(meta["model"].get("n_layers", shape[1])), shape[2]]:
            raise _io.ArtifactError(
                f"{where}: {shape[1]} layers but its model has {meta['model'].get('n_layers')}: recompute it"
            )
        d_mlp, width = meta["model"].get("d_mlp"), width_at(meta["site"], meta["model"])
        if width is not None and shape[2] != width:
            raise _io.ArtifactError(
                f"{where}: {shape[2]} neurons per layer at site {meta['site']!r} but its model has d_mlp {d_mlp} "
                f"({width} neurons per layer there): recompute it"
            )
        _io.check_shape("mask", tensors.get("mask"), shape, where)
        _io.check_shape("bottom", tensors.get("bottom"), shape, where)
        scores = tensors.get("scores")
        if scores is not None and (
            scores.ndim != 3 or list(scores.shape[1:]) != shape[1:] or scores.shape[0] not in (1, shape[0])
        ):
            raise _io.ArtifactError(
                f"{where}: tensor 'scores' has shape {tuple(scores.shape)}, not [1 or lang, {shape[1]}, {shape[2]}]: recompute it"
            )
        return cls(
            langs=list(meta["langs"]),
            mask=tensors["mask"].bool(),
            site=meta["site"],
            method=meta["method"],
            bottom=tensors.get("bottom"),
            scores=scores,
            params=meta.get("params", {}),
            model=meta.get("model", {}),
        )


def lape(
    stats: ActivationStats,
    top_rate: float = 0.01,
    filter_rate: float = 0.95,
    activation_bar_ratio: float = 0.95,
    per_language: int | None = None,
) -> NeuronSet:
    """Language activation probability entropy neurons (Tang et al. 2024) from recorded statistics.

    See :func:`lang_neurons.scoring.lape_select` for the parameters; ``per_language=k`` is the
    balanced variant (every language gets its own ``k`` lowest-entropy neurons).
    """
    prob = scoring.activation_probability(stats.active, stats.tokens)
    mask, entropy = scoring.lape_select(prob, top_rate, filter_rate, activation_bar_ratio, per_language)
    params = {
        "top_rate": top_rate,
        "filter_rate": filter_rate,
        "activation_bar_ratio": activation_bar_ratio,
        "corpus": stats.corpus,
    }
    if per_language is not None:
        params = {"per_language": per_language, "filter_rate": filter_rate, "corpus": stats.corpus}
    return NeuronSet(
        list(stats.langs), mask, stats.site, "lape", scores=entropy[None], params=params, model=stats.model
    )


def ap_k(n_neurons: int, share: float = AP_SHARE) -> int:
    """AP's default k at a site of ``n_neurons`` neurons: ``share`` of them, rounded, at least 1."""
    if not 0 < share <= 0.5:
        raise LangNeuronsError(
            f"AP share must be in (0, 0.5] (top and bottom together at most all neurons), got {share}"
        )
    return max(1, round(share * n_neurons))


def average_precision(
    stats: ActivationStats,
    top_k: int | None = None,
    bottom_k: int | None = None,
    progress: bool = True,
    *,
    share: float = AP_SHARE,
    scores: Float[Tensor, "lang layer neuron"] | None = None,
) -> NeuronSet:
    """Kojima et al. (2024) neurons: per language, the ``top_k`` and ``bottom_k`` neurons by AP.

    The AP of a neuron for language L ranks all pooled sentences by the neuron's pooled
    activation, with L's sentences as positives; exact (sklearn's definition, ties included).
    ``top_k``/``bottom_k`` left out are ``share`` of the site's neurons (:data:`AP_SHARE`: the
    share Kojima et al.'s 1,000 were of XGLM-564M's Linear outputs); the paper's own numbers are
    ``top_k=1000, bottom_k=1000`` (what ``protocol("kojima")`` uses). ``scores``: the AP scores
    of these statistics already computed (an AP set's ``scores``), to select another k without
    computing them again (a sweep over k).
    """
    n = stats.n_neurons
    # A share-sized k is recorded with its share (params then say what was asked and what it gave).
    by_share = {"share": share, "requested": [top_k, bottom_k]} if top_k is None or bottom_k is None else {}
    top_k = ap_k(n, share) if top_k is None else top_k
    bottom_k = ap_k(n, share) if bottom_k is None else bottom_k
    for name, k in (("top_k", top_k), ("bottom_k", bottom_k)):
        if not 0 <= k <= n:
            raise LangNeuronsError(
                f"{name}={k} but the model has {n} neurons at site {stats.site!r}: use 0 <= {name} <= {n}"
            )
    ap = (
        scores
        if scores is not None
        else scoring.ap_scores(stats.pooled, stats.pooled_lang, len(stats.langs), progress=progress)
    )
    top, bottom = scoring.top_bottom_k(ap, top_k, bottom_k)
    params = {"top_k": top_k, "bottom_k": bottom_k, **by_share, "pooling": stats.pooling, "corpus": stats.corpus}
    return NeuronSet(
        list(stats.langs),
        top | bottom,
        stats.site,
        "ap",
        bottom=bottom & ~top,
        scores=ap,
        params=params,
        model=stats.model,
    )
