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
"""

from __future__ import annotations

import os
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from lang_neurons.errors import LangNeuronsError

__all__ = ["average_precision", "average_precision_both"]

# Working memory per (neuron, sentence) element of a chunk, in bytes (upper bound used to
# size chunks).  Measured peaks: ~24 B continuous scores, ~35 B few distinct values,
# ~105 B when about half of a row's scores are tied (the sparse tie correction).
_BYTES_PER_ELEMENT = 128
_DEFAULT_MEMORY_BUDGET = 256 * 2**20
# Chunks larger than this (in elements) stop fitting in cache and get slower, not faster.
_MAX_CACHE_FRIENDLY_ELEMENTS = 256 * 2**10

_LITTLE_ENDIAN = sys.byteorder == "little"
_TRANSPOSE_BLOCK = 64


@dataclass(frozen=True)
class _Plan:
    """Everything that depends on the labels only (shared by all chunks)."""

    n_sentences: int
    is_bool: bool
    label_bits: int  # bits reserved for the class id in a packed key
    labels32: np.ndarray  # uint32 [S]  class id of every sentence
    labels64: np.ndarray  # uint64 [S]
    lab_dtype: type  # dtype of the sorted class ids fed to the radix arg-sort
    lo: int  # first position (in class-block order) of the first reported class
    reported: np.ndarray  # int64 [R]  class ids that get a column (have positives)
    n_out: int  # number of output rows (classes, or 1 for bool labels)
    out_rows: np.ndarray  # int64 [R]  output row of each reported class
    # Per class-block position j in [lo, S):  block = the members of one class, in order.
    v_desc: np.ndarray  # float64 [S-lo]  (#members at or after j in its block) / P_c
    v_asc: np.ndarray  # float64 [S-lo]  (#members at or before j in its block) / P_c
    segments: np.ndarray  # int64 [R]  start of each reported class's block, relative to lo
    r_desc: np.ndarray  # float64 [S]  1 / (S - q): sentences scoring >= sorted position q
    r_asc: np.ndarray  # float64 [S]  1 / (q + 1)
    counts: np.ndarray  # int64 [C]  sentences per class
    block_offset: np.ndarray  # int64 [C]  first class-block position of each class
    col_of_class: np.ndarray  # int64 [C]  column of the class in a chunk result, -1 if none


def _as_numpy_labels(labels) -> tuple[np.ndarray, bool]:
    if isinstance(labels, Tensor):
        is_bool = labels.dtype == torch.bool
        if labels.is_floating_point() or labels.is_complex():
            raise LangNeuronsError(f"labels must be integer class ids or bool, got dtype {labels.dtype}")
        arr = labels.detach().cpu().numpy()
    else:
        arr = np.asarray(labels)
        is_bool = arr.dtype == np.bool_
        if not (is_bool or np.issubdtype(arr.dtype, np.integer)):
            raise LangNeuronsError(f"labels must be integer class ids or bool, got dtype {arr.dtype}")
    if arr.ndim != 1:
        raise LangNeuronsError(f"labels must be 1-D [sentences], got shape {tuple(arr.shape)}")
    return arr.astype(np.int64), is_bool


def _make_plan(labels, n_sentences: int, num_classes: int | None) -> _Plan:
    lab, is_bool = _as_numpy_labels(labels)
    if lab.shape[0] != n_sentences:
        raise LangNeuronsError(
            f"scores has {n_sentences} sentences (rows) but labels has {lab.shape[0]} entries; "
            "scores must be [sentences, neurons] and labels [sentences]"
        )
    if n_sentences and lab.min() < 0:
        raise LangNeuronsError(f"class ids must be >= 0, got {int(lab.min())}")
    n_classes = 2 if is_bool else int(lab.max()) + 1 if n_sentences else 0
    if num_classes is not None:
        if is_bool:
            raise LangNeuronsError("num_classes cannot be used with bool labels")
        if num_classes < n_classes:
            raise LangNeuronsError(f"num_classes={num_classes} but labels contain class id {n_classes - 1}")
        n_classes = num_classes
    counts = np.bincount(lab, minlength=n_classes)
    present = int((counts > 0).sum())
    if present < 2:
        what = "positives and negatives" if is_bool else "sentences of at least 2 classes"
        raise LangNeuronsError(
            f"AP needs {what}; labels contain only {present} class(es) (counts per class: {counts.tolist()})"
        )
    wanted = np.array([1]) if is_bool else np.arange(n_classes)
    reported = wanted[counts[wanted] > 0]
    out_rows = np.zeros(1, np.int64) if is_bool else reported
    n_out = 1 if is_bool else n_classes

    offsets = np.concatenate([[0], np.cumsum(counts)])
    lo = int(offsets[reported[0]])
    pos = np.arange(lo, n_sentences)
    cls = np.searchsorted(offsets, pos, side="right") - 1  # class of block position
    bstart = offsets[cls]
    bend = offsets[cls + 1]
    inv_p = 1.0 / counts[cls]
    v_desc = (bend - pos) * inv_p
    v_asc = (pos - bstart + 1) * inv_p

    col_of_class = np.full(n_classes, -1, np.int64)
    col_of_class[reported] = np.arange(reported.size)

    bits = max(1, (n_classes - 1).bit_length())
    lab_dtype = np.uint8 if bits <= 8 else np.uint16 if bits <= 16 else np.int64
    q = np.arange(n_sentences, dtype=np.float64)
    return _Plan(
        n_sentences=n_sentences,
        is_bool=is_bool,
        label_bits=bits,
        labels32=lab.astype(np.uint32),
        labels64=lab.astype(np.uint64),
        lab_dtype=lab_dtype,
        lo=lo,
        reported=reported,
        n_out=n_out,
        out_rows=out_rows,
        v_desc=v_desc,
        v_asc=v_asc,
        segments=offsets[reported] - lo,
        r_desc=1.0 / (n_sentences - q),
        r_asc=1.0 / (q + 1.0),
        counts=counts,
        block_offset=offsets[:-1],
        col_of_class=col_of_class,
    )


# ----------------------------------------------------------------------------- per chunk


class _NonFinite(Exception):
    pass


def _centred_keys(buf: np.ndarray):
    """Map each row of floats (in place) to signed integers with the same order and ties.

    ``key = +(m - base)`` for ``x >= 0`` and ``-(m - base) - 1`` for ``x < 0``, where ``m``
    is the magnitude's bit pattern and ``base`` the row's smallest one: strictly monotone
    in ``x`` (IEEE magnitudes order like their bit patterns), and the unused key range
    between the smallest negative and positive magnitudes is cut out, so a row's keys
    usually span < 2**28 values (room for the class id in the low bits of 32).
    ``buf`` must be contiguous float32/float64 without negative zeros.

    Returns ``keys`` (int32/int64 view of ``buf``), per-row ``kmin``/``kmax`` (int64) and
    whether any value is NaN or infinite.
    """
    if buf.dtype == np.float32:
        sdt, abs_mask, inf_bits = np.int32, np.int32(0x7FFFFFFF), 0x7F800000
    else:
        sdt, abs_mask, inf_bits = np.int64, np.int64(0x7FFFFFFFFFFFFFFF), 0x7FF0000000000000
    i = buf.view(sdt)
    sign = np.right_shift(i, sdt(8 * i.itemsize - 1))  # -1 for negative floats, else 0
    np.bitwise_and(i, abs_mask, out=i)  # magnitude bits
    base = i.min(axis=1)
    np.subtract(i, base[:, None], out=i)
    np.bitwise_xor(i, sign, out=i)  # ~m = -m - 1 for negative floats
    kmin = i.min(axis=1).astype(np.int64)
    kmax = i.max(axis=1).astype(np.int64)
    base = base.astype(np.int64)
    # largest magnitude = base + max(kmax, -kmin - 1); NaN/inf have magnitude >= inf's bits
    if sdt is np.int32:
        nonfinite = bool((base + np.maximum(kmax, -kmin - 1) >= inf_bits).any())
    else:  # avoid int64 overflow: compare the margin instead
        nonfinite = bool((np.maximum(kmax, -kmin - 1) >= inf_bits - base).any())
    return i, kmin, kmax, nonfinite


def _sort_packed(keys: np.ndarray, kmin: np.ndarray, plan: _Plan, key_dtype):
    """Sort the rows of ``(key - rowmin) << bits | class``.

    Returns the class ids in ascending-score order ``[m, S]`` (within a tie group they are
    in ascending class order), the indices of the rows that contain ties and, for those
    rows, ``eq[:, q]`` = sorted positions ``q`` and ``q + 1`` hold equal scores.
    """
    b = plan.label_bits
    if keys.itemsize == np.dtype(key_dtype).itemsize:
        packed = keys.view(key_dtype)  # keys - kmin < 2**(8 * itemsize - b): no wrap-around
        np.subtract(packed, kmin.astype(key_dtype)[:, None], out=packed)
    elif keys.itemsize < np.dtype(key_dtype).itemsize:
        packed = keys.astype(key_dtype)  # sign-extended; differences are exact modulo 2**64
        np.subtract(packed, kmin.astype(key_dtype)[:, None], out=packed)
    else:  # int64 keys of float64 data that fit 32 bits after centring
        packed = (keys - kmin[:, None]).astype(key_dtype)
    np.left_shift(packed, key_dtype(b), out=packed)
    np.bitwise_or(packed, plan.labels32 if key_dtype == np.uint32 else plan.labels64, out=packed)
    packed.sort(axis=1)
    mask = key_dtype((1 << b) - 1)
    if plan.lab_dtype == np.uint8 and _LITTLE_ENDIAN:
        low = packed.view(np.uint8).reshape(packed.shape[0], packed.shape[1], packed.itemsize)[:, :, 0]
        lab = np.bitwise_and(low, np.uint8(mask))
    else:
        lab = np.bitwise_and(packed, mask).astype(plan.lab_dtype)
    # same score <=> same high bits <=> xor of neighbours < 2**b
    x = packed[:, :-1]
    np.bitwise_xor(packed[:, 1:], x, out=x)
    if x.shape[1] == 0:
        return lab, np.zeros(0, np.int64), np.zeros((0, 0), bool)
    tie_rows = np.flatnonzero(x.min(axis=1) <= mask)
    return lab, tie_rows, x[tie_rows] <= mask


def _sort_argsort(keys: np.ndarray, plan: _Plan):
    """Fallback for float64 rows whose key range is too wide to pack a class id into 64 bits."""
    lab_u = np.broadcast_to(plan.labels64, keys.shape)
    order = np.lexsort((lab_u, keys), axis=-1)  # by score, then class id (like the packed sort)
    sk = np.take_along_axis(keys, order, axis=1)
    lab = plan.labels64[order].astype(plan.lab_dtype)
    eq = sk[:, 1:] == sk[:, :-1]
    tie_rows = np.flatnonzero(eq.any(axis=1))
    return lab, tie_rows, eq[tie_rows]


def _ap_from_sorted(lab, tie_rows, eq, plan: _Plan, want_desc: bool, want_asc: bool):
    """AP of every reported class for rows whose class ids are given in ascending-score order.

    Without ties, the k-th (0-based) of the ``P`` members of class c, at sorted position q,
    adds ``(P - k) / (S - q)`` (descending scores) or ``(k + 1) / (q + 1)`` (ascending) to
    ``P * AP_c``.  Rows with ties are corrected afterwards, only at the tied positions.
    """
    lo = plan.lo
    # perm[:, j] = sorted position of the j-th sentence in class-block order: the members of
    # class c occupy a fixed block of j's, in ascending-score order (stable sort).
    perm_full = np.argsort(lab, axis=1, kind="stable")
    perm = perm_full[:, lo:]
    desc = _segment_sums(plan.r_desc, perm, plan.v_desc, plan.segments) if want_desc else None
    asc = _segment_sums(plan.r_asc, perm, plan.v_asc, plan.segments) if want_asc else None
    if tie_rows.size:
        # rows with many ties (few distinct values: dead or quantised neurons) are recomputed
        # per tie group; rows with a few ties get a correction at the tied positions only
        S = plan.n_sentences
        n_eq = eq.sum(axis=1)
        groups = S - n_eq
        # measured cost model: per-group ~ S + 1.4 * groups * classes, sparse ~ 8 * n_eq
        dense = S + 1.4 * groups * plan.reported.size < 8 * n_eq
        if dense.any():
            d, a = _grouped_ap(lab[tie_rows[dense]], eq[dense], plan, want_desc, want_asc)
            if want_desc:
                desc[tie_rows[dense]] = d
            if want_asc:
                asc[tie_rows[dense]] = a
        if not dense.all():
            _tie_correction(lab, perm_full, tie_rows[~dense], eq[~dense], plan, desc, asc)
    return desc, asc


def _grouped_ap(lab, eq, plan: _Plan, want_desc: bool, want_asc: bool):
    """AP computed per tie group (sklearn's formula over distinct thresholds) -> [k, R] each.

    Cost ~ S + (#groups x #classes) per row: meant for rows with few distinct scores.
    """
    k, S = lab.shape
    rep = plan.reported
    new = np.ones((k, S), bool)
    np.logical_not(eq, out=new[:, 1:])
    starts = np.flatnonzero(new)  # flat index of each group's first element
    gid = np.cumsum(new.ravel()) - 1  # global group id of every element
    n_cls = plan.counts.size
    cnt = np.bincount(gid * n_cls + lab.ravel(), minlength=starts.size * n_cls)
    cnt = cnt.reshape(starts.size, n_cls)[:, rep].astype(np.float64)
    row = starts // S
    row_first = np.flatnonzero(starts == row * S)  # first group of each row
    before = np.cumsum(cnt, axis=0) - cnt  # class members in earlier groups (all rows)
    before -= before[row_first][np.repeat(np.arange(k), np.diff(np.append(row_first, starts.size)))]
    p = plan.counts[rep].astype(np.float64)
    desc = asc = None
    if want_desc:  # threshold of group g: N = S - start, T = P - before
        n_ge = (S - (starts - row * S)).astype(np.float64)
        desc = np.add.reduceat(cnt * (p - before) / n_ge[:, None], row_first, axis=0) / p
    if want_asc:  # N = end + 1, T = before + count
        ends = np.append(starts[1:], k * S) - 1 - row * S
        asc = np.add.reduceat(cnt * (before + cnt) / (ends + 1.0)[:, None], row_first, axis=0) / p
    return desc, asc


def _segment_sums(table: np.ndarray, perm: np.ndarray, weight: np.ndarray, segments: np.ndarray) -> np.ndarray:
    """``sum_{j in segment} table[perm[:, j]] * weight[j]`` for each segment -> [m, R].

    (No BLAS matmul here: OpenBLAS worker threads spinning between calls steal the cores.)
    """
    g = np.take(table, perm)
    np.multiply(g, weight, out=g)
    return np.add.reduceat(g, segments, axis=1)


def _run_first(new: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """1-D: index of the first element of each element's run (``new[0]`` must be True)."""
    return np.maximum.accumulate(np.where(new, idx, 0))


def _run_last(last: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """1-D: index of the last element of each element's run (``last[-1]`` must be True)."""
    n = idx.size
    return (n - 1) - _run_first(last[::-1], idx)[::-1]


def _class_rank(perm_full, rows, qq, c, plan: _Plan) -> np.ndarray:
    """Rank among its class (number of same-class sentences sorted before it) of the sentence
    at sorted position ``qq`` of row ``rows`` with class ``c``.

    The class block ``perm_full[row, off_c : off_c + P_c]`` lists the sorted positions of
    the class in increasing order, so the rank is found by binary search (cost independent
    of S); with many tied sentences per row, inverting the permutation is cheaper.
    """
    S = plan.n_sentences
    n_iter = int(plan.counts.max()).bit_length()
    uniq_rows = np.unique(rows)
    if qq.size * 4 * n_iter >= uniq_rows.size * S:
        inv = np.empty((uniq_rows.size, S), np.int64)
        ar = np.arange(S, dtype=np.int64)
        for i, r in enumerate(uniq_rows):
            inv[i, perm_full[r]] = ar
        return inv.ravel()[np.searchsorted(uniq_rows, rows) * S + qq] - plan.block_offset[c]
    pf = perm_full.ravel()
    base = rows * S
    lo = plan.block_offset[c].copy()
    hi = lo + plan.counts[c]
    first = lo.copy()
    for _ in range(n_iter):  # first j in [lo, hi) with perm[row, j] >= qq
        active = lo < hi
        if not active.any():
            break
        mid = (lo + hi) >> 1
        go_right = active & (pf[base + np.minimum(mid, S - 1)] < qq)
        lo = np.where(go_right, mid + 1, lo)
        hi = np.where(active & ~go_right, mid, hi)
    return lo - first


def _tie_correction(lab, perm_full, tie_rows, eq, plan: _Plan, desc, asc) -> None:
    """Replace, in place, the no-tie terms of tied sentences by scikit-learn's tie handling.

    A tie group occupying sorted positions ``[s, e]`` is one threshold: every member of it
    sees ``N = S - s`` sentences at or above the threshold (descending) and ``T = P - kf``
    class members, ``kf`` = rank of the group's first class member (``N = e + 1`` and
    ``T = kl + 1`` with the last member ``kl`` for ascending scores).  Only the tied
    sentences are visited (flat 1-D indexing over the rows that have ties).
    """
    S = plan.n_sentences
    k = tie_rows.size
    ep = np.zeros((k, S + 1), bool)  # ep[:, q] = position q ties with q - 1
    ep[:, 1:S] = eq
    fi = np.flatnonzero(ep[:, :S] | ep[:, 1:])  # tied elements, by row then position
    rr = fi // S
    qq = fi - rr * S
    epf = ep.ravel()
    fe = fi + rr  # the same element in the [k, S + 1] layout
    tie_prev = epf[fe]
    tie_next = epf[fe + 1]
    rows = tie_rows[rr]
    c = lab.ravel()[rows * S + qq].astype(np.intp)
    idx = np.arange(fi.size)
    first_of_group = ~tie_prev
    last_of_group = ~tie_next
    # class runs inside a group are contiguous (ties are ordered by class id)
    same_c = c[1:] == c[:-1]
    new_run = first_of_group.copy()
    new_run[1:] |= ~same_c
    last_run = last_of_group.copy()
    last_run[:-1] |= ~same_c
    rank = _class_rank(perm_full, rows, qq, c, plan)
    p = plan.counts[c].astype(np.float64)
    col = plan.col_of_class[c]
    keep = col >= 0
    flat = (rows * plan.reported.size + col)[keep]
    size = desc.size if desc is not None else asc.size
    if desc is not None:
        s = qq - idx + _run_first(first_of_group, idx)  # group start
        kf = rank - idx + _run_first(new_run, idx)  # rank of the group's first class member
        delta = (p - kf) / (S - s) - (p - rank) / (S - qq)
        desc += np.bincount(flat, weights=(delta / p)[keep], minlength=size).reshape(desc.shape)
    if asc is not None:
        e = qq - idx + _run_last(last_of_group, idx)  # group end
        kl = rank - idx + _run_last(last_run, idx)  # rank of the group's last class member
        delta = (kl + 1) / (e + 1) - (rank + 1) / (qq + 1)
        asc += np.bincount(flat, weights=(delta / p)[keep], minlength=size).reshape(asc.shape)


def _to_rows(x: np.ndarray, dtype) -> np.ndarray:
    """Copy ``x`` [S, n] into a new C-contiguous [n, S] array, turning -0.0 into +0.0."""
    S, n = x.shape
    buf = np.empty((n, S), dtype)
    # transpose via small contiguous blocks (strided [S, n] reads are TLB-hostile);
    # "+ 0" makes -0.0 and +0.0 one tie group, as they are for scikit-learn
    tmp = np.empty((S, min(n, _TRANSPOSE_BLOCK)), dtype)
    for a in range(0, n, _TRANSPOSE_BLOCK):
        b = min(a + _TRANSPOSE_BLOCK, n)
        t = tmp[:, : b - a]
        np.copyto(t, x[:, a:b], casting="same_kind")
        np.add(t, dtype.type(0), out=buf[a:b].T)
    return buf


def _chunk_ap(x: np.ndarray, plan: _Plan, want_desc: bool, want_asc: bool):
    """AP for one chunk ``x`` of shape [sentences, n] (any strides, float32/float64)."""
    n = x.shape[1]
    buf = _to_rows(x, x.dtype)
    if buf.dtype == np.float64:
        # float64 data that is float32 data in disguise gets the (faster) float32 keys
        with np.errstate(over="ignore", invalid="ignore"):
            b32 = buf.astype(np.float32)
        if np.array_equal(b32, buf):
            buf = b32
    keys, kmin, kmax, nonfinite = _centred_keys(buf)
    if nonfinite:
        raise _NonFinite
    span = kmax.astype(np.uint64) - kmin.astype(np.uint64)  # exact modulo 2**64
    b = plan.label_bits
    fit32 = span < (1 << (32 - b)) if b < 32 else span == 0
    if fit32.all():
        return _ap_from_sorted(*_sort_packed(keys, kmin, plan, np.uint32), plan, want_desc, want_asc)
    # rows whose key range is too wide for 32-bit packing
    fit64 = span < (1 << (64 - b)) if b < 64 else span == 0
    groups = []
    r32 = np.flatnonzero(fit32)
    if r32.size:
        groups.append((r32, _sort_packed(keys[r32], kmin[r32], plan, np.uint32)))
    r64 = np.flatnonzero(~fit32 & fit64)
    if r64.size:
        groups.append((r64, _sort_packed(keys[r64], kmin[r64], plan, np.uint64)))
    rw = np.flatnonzero(~fit64)
    if rw.size:
        groups.append((rw, _sort_argsort(keys[rw], plan)))
    desc = np.empty((n, plan.reported.size)) if want_desc else None
    asc = np.empty((n, plan.reported.size)) if want_asc else None
    for rows, sorted_ in groups:
        d, a = _ap_from_sorted(*sorted_, plan, want_desc, want_asc)
        if want_desc:
            desc[rows] = d
        if want_asc:
            asc[rows] = a
    return desc, asc


# ----------------------------------------------------------------------------- driver


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
    target = np.float64 if arr.dtype == np.float64 else np.float32

    def get(a, b):
        c = arr[:, a:b]
        return c if c.dtype == target else c.astype(target)

    def count_nonfinite(chunk):
        return sum(int((~np.isfinite(arr[:, a : a + chunk])).sum()) for a in range(0, arr.shape[1], chunk))

    return arr.shape[0], arr.shape[1], get, count_nonfinite


def _default_chunk(n_sentences: int, n_threads: int) -> int:
    per_thread = _DEFAULT_MEMORY_BUDGET // max(1, n_threads)
    by_memory = per_thread // (_BYTES_PER_ELEMENT * max(1, n_sentences))
    by_cache = _MAX_CACHE_FRIENDLY_ELEMENTS // max(1, n_sentences)
    # >= 64 neurons per chunk keeps the strided [sentences, chunk] reads efficient
    return int(max(1, min(by_memory, max(by_cache, _TRANSPOSE_BLOCK))))


def _run(scores, labels, *, want_desc, want_asc, chunk_size, progress, num_classes, num_threads):
    n_sent, n_neur, get, count_nonfinite = _scores_source(scores)
    plan = _make_plan(labels, n_sent, num_classes)
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
    except _NonFinite:
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
