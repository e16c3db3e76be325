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
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from jaxtyping import Float, Int
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor
from tqdm.auto import tqdm

from lang_neurons import _io
from lang_neurons.corpora import LanguageCorpus
from lang_neurons.errors import LangNeuronsError
from lang_neurons.models import HookedModel, attached, model_fingerprint
from lang_neurons.sites import Site, resolve_site

Pooling = Literal["mean", "max", "last"]
POOLINGS = ("mean", "max", "last")
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
            nonfinite=add(self.nonfinite, other.nonfinite),
            resid_sums=None if self.resid_sums is None or other.resid_sums is None else add(self.resid_sums, other.resid_sums),
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
        return _io.save_artifact(path, "activation_stats", tensors, meta)

    @classmethod
    def load(cls, path: str | Path) -> ActivationStats:
        """Load what :meth:`save` wrote; a damaged or foreign file gives a clear error."""
        tensors, meta = _io.load_artifact(path, "activation_stats")
        missing = [k for k in cls._TENSORS if k not in tensors]
        if missing or list(tensors["active"].shape) != meta.get("shape"):
            raise LangNeuronsError(f"{path} is not a complete statistics file (missing {missing or 'shape'}): recompute it")
        fmt = meta.get("stats_format", 1)
        if not isinstance(fmt, int) or not 1 <= fmt <= STATS_FORMAT:
            raise LangNeuronsError(f"{path} holds statistics format {fmt!r}; this lang_neurons reads 1 to {STATS_FORMAT}: upgrade it or recompute")
        resid = tensors.get("resid_sums")  # absent in format 1
        if resid is not None:
            d_model = int(meta.get("model", {}).get("d_model", resid.shape[-1]))
            _io.check_shape("resid_sums", resid, [*meta["shape"][:2], d_model], f"statistics {path}")
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
            rows.append(f"{lang:<10}{int(self.sentences[i]):>10}{int(self.tokens[i]):>10}{float(p[i].mean()):>10.3f}{n_ap:>9}")
        return "\n".join(rows)


class _StopForward(Exception):
    """Raised from the last recorded hook to skip the rest of the forward (final norm, unembedding)."""


def _resid_hook_name(layer: int) -> str:
    return f"blocks.{layer}.hook_resid_post"


@contextlib.contextmanager
def _one_cpu_thread(device: torch.device) -> Iterator[None]:
    """Run the hooks' few small element-wise passes on one thread when on the CPU. With several,
    every pass ends at an OpenMP barrier that stalls whenever another process holds a core
    (measured on 2 shared cores: 30-60 ms instead of ~1 ms per layer). A no-op elsewhere."""
    threads = torch.get_num_threads() if device.type == "cpu" else 1
    if threads > 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if threads > 1:
            torch.set_num_threads(threads)


class _Accumulator:
    """Hook-side state of one recording: fixed-size sums plus the pooled rows."""

    def __init__(self, site: Site, n_langs: int, n_pooled: int, pooling: str, device: torch.device, d_model: int):
        shape = (n_langs, site.n_layers, site.width)
        self.site, self.pooling = site, pooling
        self.active = torch.zeros(shape, dtype=torch.int64, device=device)
        self.sums = torch.zeros(shape, dtype=torch.float64, device=device)
        self.sq_sums = torch.zeros(shape, dtype=torch.float64, device=device)
        self.resid_sums = torch.zeros((n_langs, site.n_layers, d_model), dtype=torch.float64, device=device)
        self.pooled = torch.zeros((n_pooled, site.n_layers, site.width), dtype=torch.float32)
        self.pending: dict[int, list[Tensor]] = {}
        # Careful mode (set by `record` to redo a chunk whose sums came out non-finite): NaN/inf
        # values are counted per language and layer, then replaced by 0 before `_accumulate`.
        self.careful = False
        self.nonfinite = torch.zeros(shape[:2], dtype=torch.int64, device=device)
        # Set per batch by `set_batch`.
        self.lang = 0
        self.mask = self.maskf = self.lengths = self.last = torch.empty(0)
        self.rows: Tensor = torch.empty(0, dtype=torch.long)  # rows of `pooled` this batch fills (CPU)
        self.keep: Tensor | None = None  # batch items that fill them (device), None = all
        self.batch_pooled: Tensor | None = None  # their pooled values, [kept, layer, width] on the device

    def set_batch(self, lang: int, mask: Tensor, rows: Sequence[int]) -> None:
        """Prepare for one batch of language ``lang``: ``rows[i]`` is the pooled row of batch
        item ``i`` (``-1``: none). Everything the hooks index with is built here, from host
        values, so that no hook needs a host value from the device."""
        self.lang, self.mask = lang, mask
        self.maskf = mask.to(torch.float32)[..., None]
        self.lengths = mask.sum(1)
        # Index of the last real token (works for either padding side).
        pos = torch.arange(mask.shape[1], device=mask.device)
        self.last = torch.where(mask, pos, -1).amax(1).clamp(min=0)
        kept = [i for i, r in enumerate(rows) if r >= 0]
        self.rows = torch.tensor([rows[i] for i in kept], dtype=torch.long)
        self.keep = None if len(kept) == len(rows) else torch.tensor(kept, dtype=torch.long, device=mask.device)
        shape = (len(kept), self.site.n_layers, self.site.width)
        self.batch_pooled = torch.empty(shape, dtype=torch.float32, device=mask.device) if kept else None

    def flush(self) -> None:
        """Copy the batch's pooled rows into :attr:`pooled` (CPU): once per batch, after the
        forward pass, instead of once per layer inside the hooks."""
        if self.batch_pooled is not None:
            self.pooled.index_copy_(0, self.rows, self.batch_pooled.cpu())

    def hooks(self) -> list[tuple[str, Any]]:
        # The forward stops at the last layer's hook_resid_post, which fires after its MLP: the
        # last layer's down projection runs (for the residual sums), the final norm and the
        # unembedding do not.
        out = []
        for layer in range(self.site.n_layers):
            names = self.site.read_hooks(layer)
            for slot, name in enumerate(names):
                out.append((name, self._hook(layer, slot, len(names), stop=False)))
            out.append((_resid_hook_name(layer), self._resid_hook(layer, stop=layer == self.site.n_layers - 1)))
        return out

    def _resid_hook(self, layer: int, stop: bool):
        def hook(value: Tensor, hook: Any = None) -> None:
            with _one_cpu_thread(value.device):
                # Same mask as the neurons (pads and BOS out); float32 per batch, float64 totals.
                self.resid_sums[self.lang, layer] += (value.float() * self.maskf).sum((0, 1)).double()
            if stop:
                raise _StopForward
            return None

        return hook

    def _hook(self, layer: int, slot: int, n_slots: int, stop: bool):
        def hook(value: Tensor, hook: Any = None) -> None:
            got = self.pending.setdefault(layer, [None] * n_slots)  # type: ignore[list-item]
            got[slot] = value
            if any(v is None for v in got):
                return None
            del self.pending[layer]
            with _one_cpu_thread(value.device):
                act = self.site.activation(got)
                if self.careful:
                    bad = ~torch.isfinite(act)
                    self.nonfinite[self.lang, layer] += (bad & self.mask[..., None]).sum()
                    act = act.masked_fill(bad, 0)
                # `act` is ours to overwrite when the site computed it (act_fn, cat, careful fill).
                self._accumulate(layer, act, owned=all(act is not v for v in got))
            if stop:
                raise _StopForward
            return None

        return hook

    def take(self) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """The fixed-size sums added since the last call (active, sums, sq_sums, nonfinite,
        resid_sums), which are reset to zero. `record` folds these chunk partials in plan order;
        whatever `_accumulate` keeps internally must be complete in them when this returns."""
        parts = (self.active, self.sums, self.sq_sums, self.nonfinite, self.resid_sums)
        out = tuple(t.clone() for t in parts)
        for t in parts:
            t.zero_()
        return out  # type: ignore[return-value]

    def _accumulate(self, layer: int, act: Tensor, owned: bool = False) -> None:
        # Few passes over the [batch, pos, width] activations (this runs 10^5+ times per corpus):
        # mask once (in place when `act` is ours), count the active ones by summing a float 0/1
        # buffer (exact below 2**24 positions; a bool sum is ~4x slower), and square the masked
        # copy in place. Same reductions as the plain version, so the same bits.
        # No host synchronisation here (nothing that reads a device value on the host: `.item()`,
        # `.cpu()`, boolean-mask indexing, `if tensor`): pooled rows go to a device buffer that
        # `flush` copies to the CPU once per batch; tests/test_record_sync.py guards this.
        a = act.float()
        if self.batch_pooled is not None and self.pooling != "mean":  # these read the unmasked values
            if self.pooling == "max":
                pooled = a.masked_fill(~self.mask[..., None], -math.inf).amax(1)
            else:
                pooled = a[torch.arange(a.shape[0], device=a.device), self.last]
            self._pool(layer, pooled)
        masked = a.mul_(self.maskf) if owned or a is not act else a * self.maskf
        self.sums[self.lang, layer] += masked.sum((0, 1)).double()
        if masked[..., 0].numel() < 2**24:
            self.active[self.lang, layer] += torch.gt(masked, 0, out=torch.empty_like(masked)).sum((0, 1)).long()
        else:
            self.active[self.lang, layer] += (masked > 0).sum((0, 1))
        if self.batch_pooled is not None and self.pooling == "mean":
            self._pool(layer, masked.sum(1) / self.lengths.clamp(min=1)[:, None])
        self.sq_sums[self.lang, layer] += masked.mul_(masked).sum((0, 1)).double()

    def _pool(self, layer: int, pooled: Tensor) -> None:
        assert self.batch_pooled is not None
        self.batch_pooled[:, layer] = pooled if self.keep is None else pooled.index_select(0, self.keep)


def _encode(model: HookedModel, texts: Sequence[str], max_length: int) -> tuple[list[list[int]], int]:
    """Token ids per text as the model would see the string (BOS included); truncated count."""
    ids, truncated = [], 0
    for text in texts:
        tok = model.to_tokens(text, truncate=False)[0].tolist()
        if len(tok) > max_length:
            tok, truncated = tok[:max_length], truncated + 1
        ids.append(tok)
    return ids, truncated


_BATCH_COST = 32
"""What one more forward pass costs, in padded positions (see :func:`_batches`)."""


def _batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length, longest first (little padding).

    The texts, sorted longest first, are cut into runs of at most ``batch_size`` that minimise
    the processed positions (batch size x longest text) plus ``_BATCH_COST`` per batch (dynamic
    programming, O(texts x batch_size)): a batch ends early where lengths drop steeply, as in
    the long tail. On the default corpus this takes padding from 7.6 % to 2.2 % of positions.
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    n = len(order)
    best, cut = [0] * (n + 1), [0] * (n + 1)  # best cost of the first j texts; start of the last batch
    for j in range(1, n + 1):
        best[j] = -1
        for i in range(max(0, j - batch_size), j):
            cost = best[i] + lengths[order[i]] * (j - i) + _BATCH_COST
            if best[j] < 0 or cost < best[j]:
                best[j], cut[j] = cost, i
    out, j = [], n
    while j > 0:
        out.append(order[cut[j] : j])
        j = cut[j]
    return out[::-1]


def _pad(seqs: list[list[int]], pad_id: int, side: str, device: torch.device) -> tuple[Tensor, Tensor]:
    width = max(map(len, seqs))
    tokens = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.bool)
    for i, s in enumerate(seqs):
        sl = slice(width - len(s), width) if side == "left" else slice(0, len(s))
        tokens[i, sl] = torch.tensor(s, dtype=torch.long)
        mask[i, sl] = True
    return tokens.to(device), mask.to(device)


REDUCE_EVERY = 8
"""Batches per partial sum (see :func:`record`): part of what defines the exact float64 sums."""

_CHECKPOINT_KIND = "record_checkpoint"


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
    checkpoint: str | Path | None = None,
    checkpoint_every: int = 100,
    resume: bool = False,
    distributed: bool | None = None,
    reduce_every: int = REDUCE_EVERY,
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
        checkpoint: a file (``.safetensors``) where the recording state is saved every
            ``checkpoint_every`` batches (written atomically: temporary file, then rename) and
            removed once the recording is complete. An existing checkpoint is an error unless
            ``resume``.
        checkpoint_every: batches between checkpoints (rounded up to whole chunks of
            ``reduce_every`` batches per rank).
        resume: continue from ``checkpoint`` if it exists (start afresh if it does not). The
            result is identical to an uninterrupted recording. A checkpoint of another model,
            corpus or settings is refused.
        distributed: shard the batches over the ranks of the initialised default
            ``torch.distributed`` process group; every rank gets the same, complete statistics,
            equal to a single-process recording. ``None`` (default): when a group of more than
            one rank is initialised.
        reduce_every: batches per partial sum. The plan's batches are cut into chunks of this
            many; each chunk's float64 sums start from zero and are added to the totals in plan
            order, so the totals do not depend on how chunks are spread over ranks or runs.

    Non-finite activations (NaN/inf) never enter the statistics: a chunk whose sums come out
    non-finite is recorded again with such values counted per language and layer
    (:attr:`ActivationStats.nonfinite`) and replaced by 0, so they add nothing to sums, active
    counts or pooled values (tokens still count); a warning names the layers and counts.

    The same pass sums the residual stream ``blocks.<l>.hook_resid_post`` of every layer over
    the same counted tokens (:attr:`ActivationStats.resid_sums`, float64 on the model's device
    during the pass, folded in plan order like the neuron sums). The forward therefore stops
    after the last layer's ``hook_resid_post`` instead of right after its MLP activation: the
    last layer's down projection is the only extra work. A non-finite residual stream is not
    cleaned: its sums stay NaN/inf, with a warning naming the layers.
    """
    if not isinstance(corpus, LanguageCorpus):
        corpus = LanguageCorpus({k: list(v) for k, v in corpus.items()}, name="texts")
    if pooling not in POOLINGS:
        raise LangNeuronsError(f"unknown pooling {pooling!r}: choose one of {', '.join(POOLINGS)}")
    if padding_side not in ("left", "right"):
        raise LangNeuronsError(f"padding_side must be 'left' or 'right', not {padding_side!r}")
    if batch_size < 1 or (ap_sentences is not None and ap_sentences < 1):
        raise LangNeuronsError("batch_size and ap_sentences must be positive integers")
    if checkpoint_every < 1 or reduce_every < 1:
        raise LangNeuronsError("checkpoint_every and reduce_every must be positive integers")
    rank, world = _world(distributed)
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
    if truncated and rank == 0:
        warnings.warn(f"{truncated} of {len(corpus)} texts were longer than {max_length} tokens and were truncated", stacklevel=2)

    keep = {lang: len(ids) if ap_sentences is None else min(ap_sentences, len(ids)) for lang, ids in encoded.items()}
    offsets = dict(zip(corpus.langs, [0, *torch.tensor(list(keep.values())).cumsum(0).tolist()]))
    d_model = int(model.cfg.d_model)
    missing = [_resid_hook_name(layer) for layer in range(spec.n_layers) if _resid_hook_name(layer) not in model.hook_dict]
    if missing:
        raise LangNeuronsError(f"this model has no hook point {missing[0]!r}: lang_neurons records the residual stream there")
    acc = _Accumulator(spec, len(corpus.langs), sum(keep.values()), pooling, device, d_model)
    plan = [(li, lang, b) for li, lang in enumerate(corpus.langs) for b in _batches([len(x) for x in encoded[lang]], batch_size)]
    chunks = [plan[i : i + reduce_every] for i in range(0, len(plan), reduce_every)]

    def rows_of(lang: str, batch: list[int]) -> list[int]:
        return [offsets[lang] + i if i < keep[lang] else -1 for i in batch]

    total = _Totals(len(corpus.langs), spec, device, d_model)
    key = _recording_key(model, corpus, dict(
        site=site, pooling=pooling, batch_size=batch_size, max_length=max_length, ap_sentences=ap_sentences,
        padding_side=padding_side, skip_bos=skip_bos, reduce_every=reduce_every,
    ))
    ckpt = _checkpoint_path(checkpoint) if checkpoint is not None else None
    done = 0  # chunks folded into `total`
    if ckpt is not None and ckpt.exists():
        if not resume:
            raise LangNeuronsError(
                f"{ckpt} holds the checkpoint of an unfinished recording: resume it (resume=True, CLI --resume) "
                "or delete it to start over"
            )
        done = _load_checkpoint(ckpt, key, total, acc, len(chunks))

    def run_chunk(chunk: list[tuple[int, str, list[int]]], bar: Any) -> Tensor:
        """Record one chunk into `acc`; returns its token counts per language."""
        tokens = torch.zeros(len(corpus.langs), dtype=torch.int64, device=device)
        for li, lang, batch in chunk:
            ids, mask = _pad([encoded[lang][i] for i in batch], pad_id, padding_side, device)
            counted = mask & (ids != bos_id) if skip_bos else mask
            acc.set_batch(li, counted, rows_of(lang, batch))
            tokens[li] += counted.sum()
            try:
                model(ids, attention_mask=mask.long())
            except _StopForward:
                pass
            finally:
                acc.pending.clear()
            acc.flush()
            if bar is not None:
                bar.update(len(batch))
        return tokens

    n_texts = [sum(len(b) for *_, b in chunk) for chunk in chunks]
    bar = tqdm(total=sum(n_texts), initial=sum(n_texts[:done]), desc="recording", unit="text", disable=not progress or rank != 0)
    since_checkpoint = 0
    with torch.inference_mode(), attached(model, acc.hooks()):
        while done < len(chunks):
            round_ids = list(range(done, min(done + world, len(chunks))))
            tokens = torch.zeros(len(corpus.langs), dtype=torch.int64, device=device)
            if rank < len(round_ids):
                chunk = chunks[round_ids[rank]]
                tokens = run_chunk(chunk, bar)
                if not (torch.isfinite(acc.sums).all() and torch.isfinite(acc.sq_sums).all()):
                    acc.take()  # drop the poisoned partial sums and record the chunk again, carefully
                    acc.careful = True
                    try:
                        tokens = run_chunk(chunk, None)
                    finally:
                        acc.careful = False
            rows = [[r for li, lang, b in chunks[c] for r in rows_of(lang, b) if r >= 0] for c in round_ids]
            total.fold(acc, tokens, rows, rank, world)
            bar.update(sum(n_texts[c] for i, c in enumerate(round_ids) if i != rank))
            done += len(round_ids)
            since_checkpoint += sum(len(chunks[c]) for c in round_ids)
            if ckpt is not None and since_checkpoint >= checkpoint_every and done < len(chunks):
                if rank == 0:
                    _save_checkpoint(ckpt, key, total, acc, done, len(chunks))
                since_checkpoint = 0
    bar.close()
    stats = ActivationStats(
        langs=list(corpus.langs),
        site=site,
        pooling=pooling,
        tokens=total.tokens.cpu(),
        active=total.active.cpu(),
        sums=total.sums.cpu(),
        sq_sums=total.sq_sums.cpu(),
        sentences=torch.tensor([len(encoded[lang]) for lang in corpus.langs]),
        pooled=acc.pooled,
        pooled_lang=torch.repeat_interleave(torch.arange(len(corpus.langs)), torch.tensor(list(keep.values()))),
        model=model_fingerprint(model),
        corpus=getattr(corpus, "name", ""),
        truncated=truncated,
        nonfinite=total.nonfinite.cpu(),
        resid_sums=total.resid_sums.cpu(),
    )
    bad_resid = (~torch.isfinite(stats.resid_sums)).any(2).any(0).nonzero().flatten().tolist()
    if bad_resid and rank == 0:
        warnings.warn(
            f"the residual stream is non-finite (NaN/inf) at layers {bad_resid}: its sums there are not finite and "
            "cannot be steered with; check the model's weights and dtype",
            stacklevel=2,
        )
    if int(stats.nonfinite.sum()) and rank == 0:
        per_layer = stats.nonfinite.sum(0)
        where = ", ".join(f"layer {int(i)}: {int(per_layer[i])}" for i in per_layer.nonzero().flatten())
        warnings.warn(
            f"{int(per_layer.sum())} non-finite activation values (NaN/inf) were left out of the statistics ({where}; "
            "per language in stats.nonfinite): check the model's weights and dtype",
            stacklevel=2,
        )
    if ckpt is not None and rank == 0:
        ckpt.unlink(missing_ok=True)
        for stale in ckpt.parent.glob(f".{ckpt.name}.*.tmp"):  # left by a kill during a save
            stale.unlink(missing_ok=True)
    return stats


# -- data-parallel reduction -----------------------------------------------------------------


def _world(distributed: bool | None) -> tuple[int, int]:
    """This process's rank and the number of ranks recording together."""
    import torch.distributed as dist

    ready = dist.is_available() and dist.is_initialized()
    if distributed is None:
        distributed = ready and dist.get_world_size() > 1
    if not distributed:
        return 0, 1
    if not ready:
        raise LangNeuronsError(
            "distributed recording needs an initialised torch.distributed process group: launch with "
            "torchrun (the CLI then sets it up) or call torch.distributed.init_process_group() first"
        )
    return dist.get_rank(), dist.get_world_size()


class _Totals:
    """The statistics of every chunk folded so far, identical on every rank."""

    FIELDS = ("tokens", "active", "sums", "sq_sums", "nonfinite", "resid_sums")

    def __init__(self, n_langs: int, site: Site, device: torch.device, d_model: int):
        shape = (n_langs, site.n_layers, site.width)
        self.resid_sums = torch.zeros((n_langs, site.n_layers, d_model), dtype=torch.float64, device=device)
        self.tokens = torch.zeros(n_langs, dtype=torch.int64, device=device)
        self.active = torch.zeros(shape, dtype=torch.int64, device=device)
        self.sums = torch.zeros(shape, dtype=torch.float64, device=device)
        self.sq_sums = torch.zeros(shape, dtype=torch.float64, device=device)
        self.nonfinite = torch.zeros(shape[:2], dtype=torch.int64, device=device)

    def fold(self, acc: _Accumulator, tokens: Tensor, rows: list[list[int]], rank: int, world: int) -> None:
        """Add one round of chunks (chunk ``i`` of the round recorded by rank ``i``) in chunk order.

        Integer counts are exact in any order: one all-reduce. Float64 sums are not associative,
        so every rank gathers every chunk's partial sums and adds them in chunk order, exactly as
        a single process adds its chunks one after the other. Pooled rows are copied from the
        rank that recorded them.
        """
        active, sums, sq_sums, nonfinite, resid = acc.take()
        if world == 1:
            parts = [(sums, sq_sums, resid)]
            ints = (active, nonfinite, tokens)
        else:
            import torch.distributed as dist

            comm = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
            mine = torch.cat([sums.flatten(), sq_sums.flatten(), resid.flatten()]).to(comm)
            gathered = [torch.empty_like(mine) for _ in range(world)]
            dist.all_gather(gathered, mine)
            k = sums.numel()
            parts = [
                (g[:k].view_as(sums).to(sums.device), g[k : 2 * k].view_as(sums).to(sums.device), g[2 * k :].view_as(resid).to(resid.device))
                for g in gathered[: len(rows)]
            ]
            flat = torch.cat([active.flatten(), nonfinite.flatten(), tokens]).to(comm)
            dist.all_reduce(flat)
            flat = flat.to(active.device)
            a, n = active.numel(), nonfinite.numel()
            ints = (flat[:a].view_as(active), flat[a : a + n].view_as(nonfinite), flat[a + n :])
            for src, idx in enumerate(rows):
                if not idx:
                    continue
                index = torch.tensor(idx)
                buf = acc.pooled[index].to(comm) if src == rank else torch.empty((len(idx), *acc.pooled.shape[1:]), device=comm)
                dist.broadcast(buf, src=src)
                acc.pooled[index] = buf.cpu()
        for s, q, r in parts:  # in chunk order
            self.sums += s
            self.sq_sums += q
            self.resid_sums += r
        self.active += ints[0]
        self.nonfinite += ints[1]
        self.tokens += ints[2]


# -- checkpoints -----------------------------------------------------------------------------


def _checkpoint_path(path: str | Path) -> Path:
    path = Path(path)
    return path if path.suffix == ".safetensors" else path.with_name(path.name + ".safetensors")


def _digest(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:16]


def _recording_key(model: HookedModel, corpus: LanguageCorpus, settings: dict[str, Any]) -> dict[str, str]:
    """What a checkpoint must match to be resumed: model, corpus (every text) and settings."""
    texts = hashlib.sha256()
    for lang in corpus.langs:
        texts.update(f"\0{lang}\0".encode())
        for text in corpus[lang]:
            texts.update(text.encode("utf-8", "surrogatepass") + b"\0")
    dtype = next((str(p.dtype) for p in model.parameters()), "")  # type: ignore[attr-defined]
    return {
        "model": _digest({**model_fingerprint(model), "dtype": dtype}),
        "corpus": texts.hexdigest()[:16],
        "settings": _digest(settings),
    }


def _save_checkpoint(path: Path, key: dict[str, str], total: _Totals, acc: _Accumulator, done: int, n_chunks: int) -> None:
    tensors = {name: getattr(total, name).cpu().contiguous() for name in _Totals.FIELDS}
    tensors["pooled"] = acc.pooled.contiguous()
    meta = {"format": str(_io.FORMAT_VERSION), "kind": _CHECKPOINT_KIND, **key, "done": str(done), "chunks": str(n_chunks)}
    _io._atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))


def _load_checkpoint(path: Path, key: dict[str, str], total: _Totals, acc: _Accumulator, n_chunks: int) -> int:
    """Restore ``total`` and the pooled rows from ``path``; returns the number of chunks done."""
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise LangNeuronsError(f"checkpoint {path} cannot be read ({e}): delete it to start over") from None
    if meta.get("kind") != _CHECKPOINT_KIND or meta.get("format") != str(_io.FORMAT_VERSION):
        raise LangNeuronsError(f"{path} is not a recording checkpoint of this lang_neurons version: delete it to start over")
    for what in ("model", "corpus", "settings"):
        if meta.get(what) != key[what]:
            raise LangNeuronsError(
                f"checkpoint {path} belongs to another recording (its {what} differs from this one's): "
                "resume with the same model, corpus and settings, or delete it to start over"
            )
    if meta.get("chunks") != str(n_chunks):
        raise LangNeuronsError(f"checkpoint {path} was made with another batch plan: delete it to start over")
    if any(name not in tensors for name in _Totals.FIELDS):
        raise LangNeuronsError(f"checkpoint {path} was written by an older lang_neurons (no residual-stream sums): delete it to start over")
    for name in _Totals.FIELDS:
        getattr(total, name).copy_(tensors[name])
    acc.pooled.copy_(tensors["pooled"])
    return int(meta["done"])
