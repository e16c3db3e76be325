"""Exact AP, step 2: order-preserving integer keys of a chunk's scores and their sort.

The class id of every sentence is packed into the low bits of its score's key, so one
``numpy.sort`` per row yields the class ids in ascending-score order (and the tied
positions); rows whose key range is too wide for that fall back to ``numpy.lexsort``.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from lang_neurons._ap.plan import Plan

_LITTLE_ENDIAN = sys.byteorder == "little"
TRANSPOSE_BLOCK = 64  # neurons per block when a chunk is transposed to [neurons, sentences]


class NonFinite(Exception):
    pass


def centred_keys(buf: np.ndarray):
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
    sdt: type[np.signedinteger[Any]]
    abs_mask: np.signedinteger[Any]
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


def sort_packed(keys: np.ndarray, kmin: np.ndarray, plan: Plan, key_dtype) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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
    x = packed[:, :-1]  # S >= 2 (make_plan needs two classes present): never empty
    np.bitwise_xor(packed[:, 1:], x, out=x)
    tie_rows = np.flatnonzero(x.min(axis=1) <= mask)
    return lab, tie_rows, x[tie_rows] <= mask


def sort_argsort(keys: np.ndarray, plan: Plan) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fallback for float64 rows whose key range is too wide to pack a class id into 64 bits."""
    lab_u = np.broadcast_to(plan.labels64, keys.shape)
    order = np.lexsort((lab_u, keys), axis=-1)  # by score, then class id (like the packed sort)
    sk = np.take_along_axis(keys, order, axis=1)
    lab = plan.labels64[order].astype(plan.lab_dtype)
    eq = sk[:, 1:] == sk[:, :-1]
    tie_rows = np.flatnonzero(eq.any(axis=1))
    return lab, tie_rows, eq[tie_rows]


def to_rows(x: np.ndarray, dtype) -> np.ndarray:
    """Copy ``x`` [S, n] into a new C-contiguous [n, S] array, turning -0.0 into +0.0."""
    S, n = x.shape
    buf = np.empty((n, S), dtype)
    # transpose via small contiguous blocks (strided [S, n] reads are TLB-hostile);
    # "+ 0" makes -0.0 and +0.0 one tie group, as they are for scikit-learn
    tmp = np.empty((S, min(n, TRANSPOSE_BLOCK)), dtype)
    for a in range(0, n, TRANSPOSE_BLOCK):
        b = min(a + TRANSPOSE_BLOCK, n)
        t = tmp[:, : b - a]
        np.copyto(t, x[:, a:b], casting="same_kind")
        np.add(t, dtype.type(0), out=buf[a:b].T)
    return buf
