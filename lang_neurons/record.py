"""Stage 4: stream a corpus through the model once and keep per-language neuron statistics.

One pass gives everything both methods need:

* LAPE (Tang et al. 2024): per language and neuron, the number of real tokens and how many of
  them activated the neuron (> 0); also sums and sums of squares (means for language arithmetic).
  These are fixed-size accumulators: memory does not grow with the corpus.
* AP (Kojima et al. 2024): one pooled activation per sentence and neuron (mean over the real
  tokens by default; ``max`` and ``last`` selectable), for up to ``ap_sentences`` sentences per
  language, and from them the per-language medians used for override steering.

Batches hold sentences of one language and similar length (little padding); pad positions never
count; the forward stops right after the last MLP (the unembedding is skipped).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from lang_neurons import _io
from lang_neurons.corpora import LanguageCorpus
from lang_neurons.errors import LangNeuronsError
from lang_neurons.models import HookedModel, attached, model_fingerprint
from lang_neurons.sites import Site, resolve_site

Pooling = Literal["mean", "max", "last"]
POOLINGS = ("mean", "max", "last")


@dataclass
class ActivationStats:
    """Per-language neuron statistics from :func:`record` (mergeable, saveable).

    Shapes: ``L`` languages, ``n_layers`` layers, ``width`` neurons per layer, ``S`` pooled
    sentences over all languages (grouped by language, in corpus order).
    """

    langs: list[str]
    site: str
    pooling: str
    tokens: Int[Tensor, "lang"]
    active: Int[Tensor, "lang layer neuron"]
    sums: Float[Tensor, "lang layer neuron"]
    sq_sums: Float[Tensor, "lang layer neuron"]
    sentences: Int[Tensor, "lang"]
    pooled: Float[Tensor, "sentence layer neuron"]
    pooled_lang: Int[Tensor, "sentence"]
    model: dict[str, Any] = field(default_factory=dict)
    corpus: str = ""
    truncated: int = 0

    # -- shape -------------------------------------------------------------------------------
    @property
    def n_layers(self) -> int:
        return int(self.active.shape[1])

    @property
    def width(self) -> int:
        """Neurons per layer."""
        return int(self.active.shape[2])

    @property
    def n_neurons(self) -> int:
        return self.n_layers * self.width

    def lang_index(self, lang: str) -> int:
        """Position of ``lang`` in :attr:`langs`, with a clear error when it is absent."""
        if lang not in self.langs:
            raise LangNeuronsError(f"language {lang!r} is not in these statistics ({', '.join(self.langs)}): record it first")
        return self.langs.index(lang)

    # -- derived statistics ----------------------------------------------------------------
    def probability(self) -> Float[Tensor, "lang layer neuron"]:
        """P(activation > 0) per language and neuron, over real tokens (LAPE's p)."""
        return self.active.double().div(self.tokens.clamp(min=1).double()[:, None, None]).float()

    def mean(self) -> Float[Tensor, "lang layer neuron"]:
        """Mean activation per language and neuron, over real tokens."""
        return (self.sums / self.tokens.clamp(min=1).double()[:, None, None]).float()

    def std(self) -> Float[Tensor, "lang layer neuron"]:
        """Standard deviation of the activation per language and neuron, over real tokens."""
        n = self.tokens.clamp(min=1).double()[:, None, None]
        var = (self.sq_sums / n - (self.sums / n) ** 2).clamp(min=0)
        return var.sqrt().float()

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
                raise LangNeuronsError(f"cannot merge statistics with different {key}: {getattr(self, key)!r} vs {getattr(other, key)!r}")
        if self.active.shape[1:] != other.active.shape[1:] or (
            self.model.get("weights_sha256") != other.model.get("weights_sha256")
        ):
            raise LangNeuronsError("cannot merge statistics recorded on different models")
        langs = self.langs + [lang for lang in other.langs if lang not in self.langs]
        idx_self = torch.tensor([langs.index(x) for x in self.langs])
        idx_other = torch.tensor([langs.index(x) for x in other.langs])

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
        }
        return _io.save_artifact(path, "activation_stats", {k: getattr(self, k) for k in self._TENSORS}, meta)

    @classmethod
    def load(cls, path: str | Path) -> ActivationStats:
        """Load what :meth:`save` wrote; a damaged or foreign file gives a clear error."""
        tensors, meta = _io.load_artifact(path, "activation_stats")
        missing = [k for k in cls._TENSORS if k not in tensors]
        if missing or list(tensors["active"].shape) != meta.get("shape"):
            raise LangNeuronsError(f"{path} is not a complete statistics file (missing {missing or 'shape'}): recompute it")
        return cls(
            langs=list(meta["langs"]),
            site=meta["site"],
            pooling=meta["pooling"],
            model=meta.get("model", {}),
            corpus=meta.get("corpus", ""),
            truncated=int(meta.get("truncated", 0)),
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
            rows.append(f"{lang:<10}{int(self.sentences[i]):>10}{int(self.tokens[i]):>10}{float(p[i].mean()):>10.3f}{n_ap:>9}")
        return "\n".join(rows)


class _StopForward(Exception):
    """Raised from the last recorded hook to skip the rest of the forward (the unembedding)."""


class _Accumulator:
    """Hook-side state of one recording: fixed-size sums plus the pooled rows."""

    def __init__(self, site: Site, n_langs: int, n_pooled: int, pooling: str, device: torch.device):
        shape = (n_langs, site.n_layers, site.width)
        self.site, self.pooling = site, pooling
        self.active = torch.zeros(shape, dtype=torch.int64, device=device)
        self.sums = torch.zeros(shape, dtype=torch.float64, device=device)
        self.sq_sums = torch.zeros(shape, dtype=torch.float64, device=device)
        self.pooled = torch.zeros((n_pooled, site.n_layers, site.width), dtype=torch.float32)
        self.pending: dict[int, list[Tensor]] = {}
        # Set per batch by `set_batch`.
        self.lang = 0
        self.mask = self.maskf = self.lengths = self.last = torch.empty(0)
        self.rows: Tensor = torch.empty(0, dtype=torch.long)  # pooled row per batch item, -1 = none
        self.keep: Tensor = torch.empty(0, dtype=torch.bool)

    def set_batch(self, lang: int, mask: Tensor, rows: Tensor) -> None:
        self.lang, self.mask = lang, mask
        self.maskf = mask.to(torch.float32)[..., None]
        self.lengths = mask.sum(1)
        # Index of the last real token (works for either padding side).
        pos = torch.arange(mask.shape[1], device=mask.device)
        self.last = torch.where(mask, pos, -1).amax(1).clamp(min=0)
        self.keep = rows >= 0
        self.rows = rows[self.keep]

    def hooks(self) -> list[tuple[str, Any]]:
        out = []
        for layer in range(self.site.n_layers):
            names = self.site.read_hooks(layer)
            for slot, name in enumerate(names):
                out.append((name, self._hook(layer, slot, len(names), stop=layer == self.site.n_layers - 1)))
        return out

    def _hook(self, layer: int, slot: int, n_slots: int, stop: bool):
        def hook(value: Tensor, hook: Any = None) -> None:
            got = self.pending.setdefault(layer, [None] * n_slots)  # type: ignore[list-item]
            got[slot] = value
            if any(v is None for v in got):
                return None
            del self.pending[layer]
            self._accumulate(layer, self.site.activation(got))
            if stop:
                raise _StopForward
            return None

        return hook

    def _accumulate(self, layer: int, act: Tensor) -> None:
        a = act.float()
        masked = a * self.maskf
        self.active[self.lang, layer] += ((a > 0) & self.mask[..., None]).sum((0, 1))
        self.sums[self.lang, layer] += masked.sum((0, 1)).double()
        self.sq_sums[self.lang, layer] += masked.square().sum((0, 1)).double()
        if not len(self.rows):
            return
        if self.pooling == "mean":
            pooled = masked.sum(1) / self.lengths.clamp(min=1)[:, None]
        elif self.pooling == "max":
            pooled = a.masked_fill(~self.mask[..., None], -math.inf).amax(1)
        else:
            pooled = a[torch.arange(a.shape[0], device=a.device), self.last]
        self.pooled[self.rows, layer] = pooled[self.keep].cpu()


def _encode(model: HookedModel, texts: Sequence[str], max_length: int) -> tuple[list[list[int]], int]:
    """Token ids per text as the model would see the string (BOS included); truncated count."""
    ids, truncated = [], 0
    for text in texts:
        tok = model.to_tokens(text, truncate=False)[0].tolist()
        if len(tok) > max_length:
            tok, truncated = tok[:max_length], truncated + 1
        ids.append(tok)
    return ids, truncated


def _batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length, longest first (little padding)."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def _pad(seqs: list[list[int]], pad_id: int, side: str, device: torch.device) -> tuple[Tensor, Tensor]:
    width = max(map(len, seqs))
    tokens = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.bool)
    for i, s in enumerate(seqs):
        sl = slice(width - len(s), width) if side == "left" else slice(0, len(s))
        tokens[i, sl] = torch.tensor(s, dtype=torch.long)
        mask[i, sl] = True
    return tokens.to(device), mask.to(device)


def record(
    model: HookedModel,
    corpus: LanguageCorpus | Mapping[str, Sequence[str]],
    *,
    site: str = "act",
    pooling: Pooling = "mean",
    batch_size: int = 16,
    max_length: int | None = None,
    ap_sentences: int | None = None,
    padding_side: Literal["right", "left"] = "right",
    skip_bos: bool = True,
    progress: bool = True,
) -> ActivationStats:
    """Stream ``corpus`` through ``model`` once and return its :class:`ActivationStats`.

    Args:
        model: a hooked model (:func:`lang_neurons.load_model`, or a TL3 ``HookedTransformer``).
        corpus: a :class:`LanguageCorpus`, or a mapping language → texts.
        site: which neurons (see :mod:`lang_neurons.sites`): ``act`` (default), ``post``, ``pre``,
            ``gate_up``.
        pooling: how a sentence's tokens become one value per neuron for AP: ``mean`` over real
            tokens (default, as Kojima et al.), ``max``, or the ``last`` real token.
        batch_size: sentences per forward pass.
        max_length: tokens kept per text (longer texts are truncated, with one warning that
            counts them); default ``min(n_ctx, 512)``.
        ap_sentences: at most this many pooled sentences per language are kept for AP (the
            first ones in corpus order); all tokens still count for LAPE. ``None`` keeps all.
        padding_side: where batches are padded; results are the same either way.
        skip_bos: leave the BOS token out of every statistic (default). Its activations are
            language-independent outliers (an attention sink) that would dominate means.
        progress: show a progress bar.
    """
    if not isinstance(corpus, LanguageCorpus):
        corpus = LanguageCorpus({k: list(v) for k, v in corpus.items()}, name="texts")
    if pooling not in POOLINGS:
        raise LangNeuronsError(f"unknown pooling {pooling!r}: choose one of {', '.join(POOLINGS)}")
    if padding_side not in ("left", "right"):
        raise LangNeuronsError(f"padding_side must be 'left' or 'right', not {padding_side!r}")
    if batch_size < 1 or (ap_sentences is not None and ap_sentences < 1):
        raise LangNeuronsError("batch_size and ap_sentences must be positive integers")
    spec = resolve_site(model, site)
    n_ctx = int(getattr(model.cfg, "n_ctx", 0) or 2048)
    max_length = min(n_ctx, max_length or 512)
    device = torch.device(getattr(model.cfg, "device", None) or "cpu")
    pad_id = getattr(model.tokenizer, "pad_token_id", None)
    pad_id = 0 if pad_id is None else int(pad_id)
    bos_id = getattr(model.tokenizer, "bos_token_id", None)
    skip_bos = skip_bos and bos_id is not None

    encoded, truncated = {}, 0
    for lang in corpus.langs:
        encoded[lang], n = _encode(model, corpus[lang], max_length)
        truncated += n
    if truncated:
        warnings.warn(f"{truncated} of {len(corpus)} texts were longer than {max_length} tokens and were truncated", stacklevel=2)

    keep = {lang: len(ids) if ap_sentences is None else min(ap_sentences, len(ids)) for lang, ids in encoded.items()}
    offsets = dict(zip(corpus.langs, [0, *torch.tensor(list(keep.values())).cumsum(0).tolist()]))
    acc = _Accumulator(spec, len(corpus.langs), sum(keep.values()), pooling, device)
    tokens = torch.zeros(len(corpus.langs), dtype=torch.int64)
    plan = [(li, lang, b) for li, lang in enumerate(corpus.langs) for b in _batches([len(x) for x in encoded[lang]], batch_size)]
    bar = tqdm(total=sum(map(len, encoded.values())), desc="recording", unit="text", disable=not progress)
    with torch.inference_mode(), attached(model, acc.hooks()):
        for li, lang, batch in plan:
            ids, mask = _pad([encoded[lang][i] for i in batch], pad_id, padding_side, device)
            rows = torch.tensor([offsets[lang] + i if i < keep[lang] else -1 for i in batch])
            counted = mask & (ids != bos_id) if skip_bos else mask
            acc.set_batch(li, counted, rows.to(device))
            tokens[li] += int(counted.sum())
            try:
                model(ids, attention_mask=mask.long())
            except _StopForward:
                pass
            finally:
                acc.pending.clear()
            bar.update(len(batch))
    bar.close()
    if not torch.isfinite(acc.sums).all():
        bad = sorted({int(layer) for layer in (~torch.isfinite(acc.sums)).any(-1).any(0).nonzero().flatten()})
        warnings.warn(f"non-finite activations (NaN/inf) at layers {bad}: statistics there are unreliable", stacklevel=2)
    return ActivationStats(
        langs=list(corpus.langs),
        site=site,
        pooling=pooling,
        tokens=tokens,
        active=acc.active.cpu(),
        sums=acc.sums.cpu(),
        sq_sums=acc.sq_sums.cpu(),
        sentences=torch.tensor([len(encoded[lang]) for lang in corpus.langs]),
        pooled=acc.pooled,
        pooled_lang=torch.repeat_interleave(torch.arange(len(corpus.langs)), torch.tensor(list(keep.values()))),
        model=model_fingerprint(model),
        corpus=getattr(corpus, "name", ""),
        truncated=truncated,
    )
