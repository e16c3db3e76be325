"""Exact AP, step 4: inputs, chunks of neurons, threads and the two public entry points."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from lang_neurons._ap.keys import TRANSPOSE_BLOCK, NonFinite, centred_keys, sort_argsort, sort_packed, to_rows
from lang_neurons._ap.plan import Plan, make_plan
from lang_neurons._ap.ties import ap_from_sorted
from lang_neurons.errors import LangNeuronsError

__all__ = ["average_precision", "average_precision_both"]

# Working memory per (neuron, sentence) element of a chunk, in bytes (upper bound used to
# size chunks).  Measured peaks: ~24 B continuous scores, ~35 B few distinct values,
# ~105 B when about half of a row's scores are tied (the sparse tie correction).
_BYTES_PER_ELEMENT = 128
_DEFAULT_MEMORY_BUDGET = 256 * 2**20
# Chunks larger than this (in elements) stop fitting in cache and get slower, not faster.
_MAX_CACHE_FRIENDLY_ELEMENTS = 256 * 2**10


def _chunk_ap(x: np.ndarray, plan: Plan, want_desc: bool, want_asc: bool):
    """AP for one chunk ``x`` of shape [sentences, n] (any strides, float32/float64)."""
    n = x.shape[1]
    buf = to_rows(x, x.dtype)
    if buf.dtype == np.float64:
        # float64 data that is float32 data in disguise gets the (faster) float32 keys
        with np.errstate(over="ignore", invalid="ignore"):
            b32 = buf.astype(np.float32)
        if np.array_equal(b32, buf):
            buf = b32
    keys, kmin, kmax, nonfinite = centred_keys(buf)
    if nonfinite:
        raise NonFinite
    span = kmax.astype(np.uint64) - kmin.astype(np.uint64)  # exact modulo 2**64
    b = plan.label_bits
    fit32 = span < (1 << (32 - b)) if b < 32 else span == 0
    if fit32.all():
        return ap_from_sorted(*sort_packed(keys, kmin, plan, np.uint32), plan, want_desc, want_asc)
    # rows whose key range is too wide for 32-bit packing
    fit64 = span < (1 << (64 - b)) if b < 64 else span == 0
    groups = []
    r32 = np.flatnonzero(fit32)
    if r32.size:
        groups.append((r32, sort_packed(keys[r32], kmin[r32], plan, np.uint32)))
    r64 = np.flatnonzero(~fit32 & fit64)
    if r64.size:
        groups.append((r64, sort_packed(keys[r64], kmin[r64], plan, np.uint64)))
    rw = np.flatnonzero(~fit64)
    if rw.size:
        groups.append((rw, sort_argsort(keys[rw], plan)))
    desc = np.empty((n, plan.reported.size)) if want_desc else None
    asc = np.empty((n, plan.reported.size)) if want_asc else None
    for rows, sorted_ in groups:
        d, a = ap_from_sorted(*sorted_, plan, want_desc, want_asc)
        if desc is not None:  # want_desc
            desc[rows] = d
        if asc is not None:  # want_asc
            asc[rows] = a
    return desc, asc


def _scores_source(scores):
    """Return (n_sentences, n_neurons, get_chunk(a, b) -> np [S, b-a] float32/64, count_nonfinite)."""
    if isinstance(scores, Tensor):
        if scores.ndim != 2:
            raise LangNeuronsError(f"scores must be 2-D [sentences, neurons], got shape {tuple(scores.shape)}")
        if not scores.is_floating_point():
            raise LangNeuronsError(f"scores must be floating point, got dtype {scores.dtype}")
        t = scores.detach()
        target = torch.float64 if t.dtype == torch.float64 else torch.float32
        if t.device.type == "cpu" and t.dtype == target:
            arr = t.numpy()  # no copy

            def get(a, b):
                return arr[:, a:b]
        else:

            def get(a, b):
                return t[:, a:b].to(device="cpu", dtype=target).numpy()

        def count_nonfinite(chunk):
            return sum(int((~torch.isfinite(t[:, a : a + chunk])).sum()) for a in range(0, t.shape[1], chunk))

        return t.shape[0], t.shape[1], get, count_nonfinite
    arr = np.asarray(scores)
    if arr.ndim != 2:
        raise LangNeuronsError(f"scores must be 2-D [sentences, neurons], got shape {tuple(arr.shape)}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise LangNeuronsError(f"scores must be floating point, got dtype {arr.dtype}")
    np_target = np.float64 if arr.dtype == np.float64 else np.float32

    def get_np(a, b):
        c = arr[:, a:b]
        return c if c.dtype == np_target else c.astype(np_target)

    def count_nonfinite_np(chunk):
        return sum(int((~np.isfinite(arr[:, a : a + chunk])).sum()) for a in range(0, arr.shape[1], chunk))

    return arr.shape[0], arr.shape[1], get_np, count_nonfinite_np


def _default_chunk(n_sentences: int, n_threads: int) -> int:
    per_thread = _DEFAULT_MEMORY_BUDGET // max(1, n_threads)
    by_memory = per_thread // (_BYTES_PER_ELEMENT * max(1, n_sentences))
    by_cache = _MAX_CACHE_FRIENDLY_ELEMENTS // max(1, n_sentences)
    # >= 64 neurons per chunk keeps the strided [sentences, chunk] reads efficient
    return int(max(1, min(by_memory, max(by_cache, TRANSPOSE_BLOCK))))


def _run(scores, labels, *, want_desc, want_asc, chunk_size, progress, num_classes, num_threads):
    n_sent, n_neur, get, count_nonfinite = _scores_source(scores)
    plan = make_plan(labels, n_sent, num_classes)
    if num_threads is None:
        num_threads = max(1, min(torch.get_num_threads(), os.cpu_count() or 1))
    if num_threads < 1:
        raise LangNeuronsError(f"num_threads must be >= 1, got {num_threads}")
    if chunk_size is None:
        chunk_size = _default_chunk(n_sent, num_threads)
    if chunk_size < 1:
        raise LangNeuronsError(f"chunk_size must be >= 1, got {chunk_size}")
    outs = {}
    if want_desc:
        outs["desc"] = np.full((plan.n_out, n_neur), np.nan)
    if want_asc:
        outs["asc"] = np.full((plan.n_out, n_neur), np.nan)
    starts = list(range(0, n_neur, chunk_size))

    def work(a):
        b = min(a + chunk_size, n_neur)
        d, s = _chunk_ap(get(a, b), plan, want_desc, want_asc)
        if d is not None:
            outs["desc"][plan.out_rows, a:b] = d.T
        if s is not None:
            outs["asc"][plan.out_rows, a:b] = s.T
        return b - a

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n_neur, unit="neuron", desc="average precision")
    try:
        if num_threads == 1 or len(starts) == 1:
            for a in starts:
                done = work(a)
                if bar is not None:
                    bar.update(done)
        else:
            with ThreadPoolExecutor(max_workers=num_threads) as pool:
                futures = [pool.submit(work, a) for a in starts]
                try:
                    for f in futures:
                        done = f.result()
                        if bar is not None:
                            bar.update(done)
                except BaseException:
                    for f in futures:
                        f.cancel()
                    raise
    except NonFinite:
        n_bad = count_nonfinite(max(1, 2**26 // max(1, n_sent)))
        raise LangNeuronsError(
            f"scores contain {n_bad} non-finite value(s) (NaN or +/-inf) out of {n_sent * n_neur}; "
            "AP is undefined for them. Clean the activations first, e.g. "
            "torch.nan_to_num(scores, nan=0.0, posinf=..., neginf=...), or drop the affected "
            "neurons / sentences (torch.isfinite(scores).all(0) gives the good neurons)."
        ) from None
    finally:
        if bar is not None:
            bar.close()
    return {k: torch.from_numpy(v[0] if plan.is_bool else v) for k, v in outs.items()}


def average_precision(
    scores: Float[Tensor, "sentences neurons"],
    labels: Int[Tensor, " sentences"] | Bool[Tensor, " sentences"],
    *,
    descending: bool = True,
    chunk_size: int | None = None,
    progress: bool = False,
    num_classes: int | None = None,
    num_threads: int | None = None,
) -> Float[Tensor, "classes neurons"] | Float[Tensor, " neurons"]:
    """Average precision of every neuron for every class (one-vs-rest), exactly as scikit-learn.

    For class ``c`` and neuron ``n`` the result is
    ``sklearn.metrics.average_precision_score(labels == c, scores[:, n])`` (or of
    ``-scores[:, n]`` with ``descending=False``): step-function AP over the distinct score
    thresholds, tied scores forming one threshold. Maximum deviation from scikit-learn is
    float64 rounding (~1e-15).

    Args:
        scores: ``[sentences, neurons]`` pooled activations (float16/bfloat16/float32 are
            processed exactly in float32, float64 in float64; any device -- chunks are
            moved to the CPU one at a time).  A NumPy array is accepted as well.
        labels: ``[sentences]`` class id per sentence (``0..C-1``; ``C = max + 1`` or
            ``num_classes``), or bool (True = positive).
        descending: True = AP of ``scores`` (high activation on the class, "top-k");
            False = AP of ``-scores`` (low activation on the class, "bottom-k").  Use
            :func:`average_precision_both` to get both for the cost of one.
        chunk_size: neurons per chunk; None picks a cache-friendly size (>= 64 neurons)
            whose working memory (``24 .. 128 * sentences * chunk_size`` bytes per thread,
            more when many scores are tied) stays within 256 MB over all threads.
        progress: show a tqdm bar over neurons.
        num_classes: number of classes ``C`` when some class ids may be absent (e.g. a
            subset of sentences); integer labels only.
        num_threads: worker threads (chunks run in parallel); default
            ``torch.get_num_threads()``.

    Returns:
        float64 ``[C, neurons]`` for integer labels, ``[neurons]`` for bool labels.  A class
        with no sentence gets NaN (scikit-learn would warn "No positive class found in
        y_true" and return 0.0, which is not a meaningful AP).

    Raises:
        LangNeuronsError (a ValueError): wrong shapes/dtypes, fewer than two classes present,
            negative class ids, or non-finite scores (the message gives their count).

    Memory: the input is never copied as a whole -- each chunk is copied (transposed) once.
    For inputs that do not fit in memory, call this function per block of neurons and
    concatenate along the last axis (each neuron's AP depends only on its own column).
    """
    r = _run(
        scores,
        labels,
        want_desc=descending,
        want_asc=not descending,
        chunk_size=chunk_size,
        progress=progress,
        num_classes=num_classes,
        num_threads=num_threads,
    )
    return r["desc"] if descending else r["asc"]


def average_precision_both(
    scores: Float[Tensor, "sentences neurons"],
    labels: Int[Tensor, " sentences"] | Bool[Tensor, " sentences"],
    *,
    chunk_size: int | None = None,
    progress: bool = False,
    num_classes: int | None = None,
    num_threads: int | None = None,
) -> tuple[Float[Tensor, "classes neurons"], Float[Tensor, "classes neurons"]]:
    """``(AP of scores, AP of -scores)`` from a single sort per neuron.

    Same arguments and semantics as :func:`average_precision`; equal to
    ``(average_precision(s, l), average_precision(s, l, descending=False))`` but costs
    little more than one of them.
    """
    r = _run(
        scores,
        labels,
        want_desc=True,
        want_asc=True,
        chunk_size=chunk_size,
        progress=progress,
        num_classes=num_classes,
        num_threads=num_threads,
    )
    return r["desc"], r["asc"]
