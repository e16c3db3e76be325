"""Exact AP, step 3: AP of every class from the sorted class ids of each row, ties as scikit-learn."""

from __future__ import annotations

import numpy as np

from lang_neurons._ap.plan import Plan


def ap_from_sorted(lab, tie_rows, eq, plan: Plan, want_desc: bool, want_asc: bool):
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
            if desc is not None:  # want_desc
                desc[tie_rows[dense]] = d
            if asc is not None:  # want_asc
                asc[tie_rows[dense]] = a
        if not dense.all():
            _tie_correction(lab, perm_full, tie_rows[~dense], eq[~dense], plan, desc, asc)
    return desc, asc


def _grouped_ap(lab, eq, plan: Plan, want_desc: bool, want_asc: bool):
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


def _class_rank(perm_full, rows, qq, c, plan: Plan) -> np.ndarray:
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


def _tie_correction(lab, perm_full, tie_rows, eq, plan: Plan, desc, asc) -> None:
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
