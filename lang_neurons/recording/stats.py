"""The statistics of a recording: :class:`ActivationStats` (mergeable, saveable) and its file format.

Per language and neuron: token counts, how many tokens activated the neuron (> 0), sums and sums
of squares (LAPE, means for language arithmetic); one pooled activation per kept sentence (AP);
per language and layer, the sum of the residual stream (the DiffMean baseline). Saved as
``<path>.safetensors`` + ``<path>.json`` (:mod:`lang_neurons._io`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor

from .._io import check_shape, load_artifact, save_artifact
from ..errors import LangNeuronsError

Pooling = Literal["mean", "max", "last"]
STATS_FORMAT = 2
"""Version of the statistics file's contents (sidecar field ``stats_format``; absent = 1).
1: neuron statistics only. 2: also ``resid_sums``, the residual-stream sums (absent only in
statistics merged with format-1 ones). Files of format 1 still load, without residual sums."""


@dataclass
class ActivationStats:
    """Per-language neuron statistics from :func:`record` (mergeable, saveable).

    Shapes: ``L`` languages, ``n_layers`` layers, ``width`` neurons per layer, ``S`` pooled
    sentences over all languages (grouped by language, in corpus order).
    """

    langs: list[str]
    site: str
    pooling: str
    tokens: Int[Tensor, " lang"]
    active: Int[Tensor, "lang layer neuron"]
    sums: Float[Tensor, "lang layer neuron"]
    sq_sums: Float[Tensor, "lang layer neuron"]
    sentences: Int[Tensor, " lang"]
    pooled: Float[Tensor, "sentence layer neuron"]
    pooled_lang: Int[Tensor, " sentence"]
    model: dict[str, Any] = field(default_factory=dict)
    corpus: str = ""
    truncated: int = 0
    nonfinite: Int[Tensor, "lang layer"] | None = None
    """Non-finite (NaN/inf) activation values per language and layer, over counted tokens.
    They are left out of every other statistic (see :func:`record`); zeros when none."""
    resid_sums: Float[Tensor, "lang layer d_model"] | None = None
    """Sum of ``blocks.<l>.hook_resid_post`` over the counted tokens (the ones ``tokens``
    counts: no pads, no BOS), float64. None in statistics from before it existed (format 1) and
    in merges with such statistics; :meth:`resid_mean` then raises."""

    def __post_init__(self) -> None:
        if self.nonfinite is None:
            self.nonfinite = torch.zeros(self.active.shape[:2], dtype=torch.int64)

    # -- shape -------------------------------------------------------------------------------
    @property
    def n_layers(self) -> int:
        """Number of layers."""
        return int(self.active.shape[1])

    @property
    def width(self) -> int:
        """Neurons per layer."""
        return int(self.active.shape[2])

    @property
    def n_neurons(self) -> int:
        """All neurons at the site (layers x width)."""
        return self.n_layers * self.width

    def lang_index(self, lang: str) -> int:
        """Position of ``lang`` in :attr:`langs`, with a clear error when it is absent."""
        if lang not in self.langs:
            raise LangNeuronsError(
                f"language {lang!r} is not in these statistics ({', '.join(self.langs)}): record it first"
            )
        return self.langs.index(lang)

    # -- derived statistics ----------------------------------------------------------------
    def probability(self) -> Float[Tensor, "lang layer neuron"]:
        """P(activation > 0) per language and neuron, over real tokens (LAPE's p)."""
        return self.active.double().div(self.tokens.clamp(min=1).double()[:, None, None]).float()

    def mean(self) -> Float[Tensor, "lang layer neuron"]:
        """Mean activation per language and neuron, over real tokens."""
        return (self.sums / self.tokens.clamp(min=1).double()[:, None, None]).float()

    def resid_mean(self) -> Float[Tensor, "lang layer d_model"]:
        """Mean residual stream (``blocks.<l>.hook_resid_post``) per language and layer, over the
        counted tokens, in float64; a clear error when these statistics have no residual sums."""
        if self.resid_sums is None:
            raise LangNeuronsError(
                "these statistics have no residual-stream sums (recorded before lang_neurons kept them, "
                "or merged with such statistics): record them again to steer the residual stream"
            )
        return self.resid_sums / self.tokens.clamp(min=1).double()[:, None, None]

    def pooled_median(self) -> Float[Tensor, "lang layer neuron"]:
        """Median of the pooled sentence activations per language (Kojima's override values)."""
        out = torch.empty(len(self.langs), self.n_layers, self.width)
        for i in range(len(self.langs)):
            rows = self.pooled[self.pooled_lang == i]
            if len(rows) == 0:
                out[i] = float("nan")
                continue
            s = rows.sort(dim=0).values
            n = len(s)
            out[i] = (s[(n - 1) // 2] + s[n // 2]) / 2
        return out

    # -- combine ---------------------------------------------------------------------------
    def merge(self, other: ActivationStats) -> ActivationStats:
        """Statistics of the union of two disjoint corpus shards (languages may differ)."""
        for key in ("site", "pooling"):
            if getattr(self, key) != getattr(other, key):
                raise LangNeuronsError(
                    f"cannot merge statistics with different {key}: {getattr(self, key)!r} vs {getattr(other, key)!r}"
                )
        if self.active.shape[1:] != other.active.shape[1:] or (
            self.model.get("weights_sha256") != other.model.get("weights_sha256")
        ):
            raise LangNeuronsError("cannot merge statistics recorded on different models")
        langs = self.langs + [lang for lang in other.langs if lang not in self.langs]
        idx_self = torch.tensor([langs.index(x) for x in self.langs])
        idx_other = torch.tensor([langs.index(x) for x in other.langs])
        assert self.nonfinite is not None and other.nonfinite is not None  # __post_init__ fills them

        def add(a: Tensor, b: Tensor) -> Tensor:
            out = torch.zeros((len(langs), *a.shape[1:]), dtype=a.dtype)
            out.index_add_(0, idx_self, a)
            return out.index_add_(0, idx_other, b)

        lang_of = torch.cat([idx_self[self.pooled_lang], idx_other[other.pooled_lang]])
        order = torch.sort(lang_of, stable=True).indices
        return ActivationStats(
            langs=langs,
            site=self.site,
            pooling=self.pooling,
            tokens=add(self.tokens, other.tokens),
            active=add(self.active, other.active),
            sums=add(self.sums, other.sums),
            sq_sums=add(self.sq_sums, other.sq_sums),
            sentences=add(self.sentences, other.sentences),
            pooled=torch.cat([self.pooled, other.pooled])[order],
            pooled_lang=lang_of[order],
            model=self.model,
            corpus=" + ".join(c for c in (self.corpus, other.corpus) if c),
            truncated=self.truncated + other.truncated,
            nonfinite=add(self.nonfinite, other.nonfinite),
            resid_sums=None
            if self.resid_sums is None or other.resid_sums is None
            else add(self.resid_sums, other.resid_sums),
        )

    __add__ = merge

    # -- files -----------------------------------------------------------------------------
    _TENSORS = ("tokens", "active", "sums", "sq_sums", "sentences", "pooled", "pooled_lang")

    def save(self, path: str | Path) -> Path:
        """Write ``<path>.safetensors`` + ``<path>.json`` atomically; returns the tensor file."""
        meta = {
            "langs": self.langs,
            "site": self.site,
            "pooling": self.pooling,
            "model": self.model,
            "corpus": self.corpus,
            "truncated": self.truncated,
            "shape": [len(self.langs), self.n_layers, self.width],
            "stats_format": STATS_FORMAT,
        }
        tensors = {k: getattr(self, k) for k in self._TENSORS}
        tensors["nonfinite"] = self.nonfinite
        if self.resid_sums is not None:
            tensors["resid_sums"] = self.resid_sums
        return save_artifact(path, "activation_stats", tensors, meta)

    @classmethod
    def load(cls, path: str | Path) -> ActivationStats:
        """Load what :meth:`save` wrote; a damaged or foreign file gives a clear error."""
        tensors, meta = load_artifact(path, "activation_stats")
        missing = [k for k in cls._TENSORS if k not in tensors]
        if missing or list(tensors["active"].shape) != meta.get("shape"):
            raise LangNeuronsError(
                f"{path} is not a complete statistics file (missing {missing or 'shape'}): recompute it"
            )
        fmt = meta.get("stats_format", 1)
        if not isinstance(fmt, int) or not 1 <= fmt <= STATS_FORMAT:
            raise LangNeuronsError(
                f"{path} holds statistics format {fmt!r}; this lang_neurons reads 1 to {STATS_FORMAT}: upgrade it or recompute"
            )
        resid = tensors.get("resid_sums")  # absent in format 1
        if resid is not None:
            d_model = int(meta.get("model", {}).get("d_model", resid.shape[-1]))
            check_shape("resid_sums", resid, [*meta["shape"][:2], d_model], f"statistics {path}")
        return cls(
            langs=list(meta["langs"]),
            site=meta["site"],
            pooling=meta["pooling"],
            model=meta.get("model", {}),
            corpus=meta.get("corpus", ""),
            truncated=int(meta.get("truncated", 0)),
            nonfinite=tensors.get("nonfinite"),  # absent in files written before it existed
            resid_sums=resid,
            **{k: tensors[k] for k in cls._TENSORS},
        )

    # -- display ---------------------------------------------------------------------------
    def __repr__(self) -> str:
        return (
            f"ActivationStats(site={self.site!r}, pooling={self.pooling!r}, langs={self.langs}, "
            f"{self.n_layers} layers x {self.width} neurons, tokens={self.tokens.tolist()}, "
            f"pooled sentences={len(self.pooled_lang)})"
        )

    def summary(self) -> str:
        """A small table: tokens, sentences and mean activation probability per language."""
        p = self.probability()
        rows = [f"{'lang':<10}{'sentences':>10}{'tokens':>10}{'P(act>0)':>10}{'AP rows':>9}"]
        for i, lang in enumerate(self.langs):
            n_ap = int((self.pooled_lang == i).sum())
            rows.append(
                f"{lang:<10}{int(self.sentences[i]):>10}{int(self.tokens[i]):>10}{float(p[i].mean()):>10.3f}{n_ap:>9}"
            )
        return "\n".join(rows)
