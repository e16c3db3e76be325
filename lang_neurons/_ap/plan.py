"""Exact AP, step 1: everything that depends on the labels only (shared by all chunks)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from lang_neurons.errors import LangNeuronsError


@dataclass(frozen=True)
class Plan:
    """Everything that depends on the labels only (shared by all chunks)."""

    n_sentences: int
    is_bool: bool
    label_bits: int  # bits reserved for the class id in a packed key
    labels32: np.ndarray  # uint32 [S]  class id of every sentence
    labels64: np.ndarray  # uint64 [S]
    lab_dtype: type[np.integer[Any]]  # dtype of the sorted class ids fed to the radix arg-sort
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


def make_plan(labels, n_sentences: int, num_classes: int | None) -> Plan:
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
    return Plan(
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
