"""Resumable recordings: the checkpoint file, and the key a checkpoint must match to be resumed.

A checkpoint (one safetensors file, written atomically) holds the folded totals, the pooled rows
and the number of chunks done; its metadata names the model, the corpus (a digest of every text)
and the settings, so that only the same recording resumes from it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .._io import FORMAT_VERSION, atomic_write
from ..corpora import LanguageCorpus
from ..errors import LangNeuronsError
from ..models import HookedModel
from .accumulator import Accumulator
from .distributed import Totals

CHECKPOINT_KIND = "record_checkpoint"
"""The ``kind`` in a checkpoint's metadata."""


def checkpoint_path(path: str | Path) -> Path:
    """``path`` as the checkpoint file: ``.safetensors`` is added when it has another suffix."""
    path = Path(path)
    return path if path.suffix == ".safetensors" else path.with_name(path.name + ".safetensors")


def digest(data: Any) -> str:
    """A short SHA-256 of JSON-able ``data`` (keys sorted): 16 hex digits."""
    return hashlib.sha256(json.dumps(data, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:16]


def recording_key(
    model: HookedModel, corpus: LanguageCorpus, settings: dict[str, Any], fingerprint: dict[str, Any]
) -> dict[str, str]:
    """What a checkpoint must match to be resumed: model (its ``fingerprint``, from
    :func:`~lang_neurons.models.model_fingerprint`, and dtype), corpus (every text) and settings."""
    texts = hashlib.sha256()
    for lang in corpus.langs:
        texts.update(f"\0{lang}\0".encode())
        for text in corpus[lang]:
            texts.update(text.encode("utf-8", "surrogatepass") + b"\0")
    dtype = next((str(p.dtype) for p in model.parameters()), "")  # type: ignore[attr-defined]
    return {
        "model": digest({**fingerprint, "dtype": dtype}),
        "corpus": texts.hexdigest()[:16],
        "settings": digest(settings),
    }


def save_checkpoint(path: Path, key: dict[str, str], total: Totals, acc: Accumulator, done: int, n_chunks: int) -> None:
    """Write ``total``, the pooled rows of ``acc`` and ``done`` of ``n_chunks`` to ``path``, atomically."""
    tensors = {name: getattr(total, name).cpu().contiguous() for name in Totals.FIELDS}
    tensors["pooled"] = acc.pooled.contiguous()
    meta = {"format": str(FORMAT_VERSION), "kind": CHECKPOINT_KIND, **key, "done": str(done), "chunks": str(n_chunks)}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))


def load_checkpoint(path: Path, key: dict[str, str], total: Totals, acc: Accumulator, n_chunks: int) -> int:
    """Restore ``total`` and the pooled rows from ``path``; returns the number of chunks done."""
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise LangNeuronsError(f"checkpoint {path} cannot be read ({e}): delete it to start over") from None
    if meta.get("kind") != CHECKPOINT_KIND or meta.get("format") != str(FORMAT_VERSION):
        raise LangNeuronsError(
            f"{path} is not a recording checkpoint of this lang_neurons version: delete it to start over"
        )
    for what in ("model", "corpus", "settings"):
        if meta.get(what) != key[what]:
            raise LangNeuronsError(
                f"checkpoint {path} belongs to another recording (its {what} differs from this one's): "
                "resume with the same model, corpus and settings, or delete it to start over"
            )
    if meta.get("chunks") != str(n_chunks):
        raise LangNeuronsError(f"checkpoint {path} was made with another batch plan: delete it to start over")
    if any(name not in tensors for name in Totals.FIELDS):
        raise LangNeuronsError(
            f"checkpoint {path} was written by an older lang_neurons (no residual-stream sums): delete it to start over"
        )
    for name in Totals.FIELDS:
        getattr(total, name).copy_(tensors[name])
    acc.pooled.copy_(tensors["pooled"])
    return int(meta["done"])
