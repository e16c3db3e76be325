"""Artifact files: one safetensors file of tensors plus a JSON sidecar, written atomically."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from lang_neurons.errors import LangNeuronsError

FORMAT_VERSION = 1


def _atomic_write(path: Path, write: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    _atomic_write(Path(path), lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def save_artifact(path: str | os.PathLike, kind: str, tensors: dict[str, Tensor], meta: dict[str, Any]) -> Path:
    """Save ``tensors`` to ``<path>.safetensors`` and ``meta`` to ``<path>.json``.

    ``path`` may be given with or without a suffix. The JSON gets ``format``, ``kind`` and the
    safetensors file's size, so a truncated or swapped file is caught on load.
    """
    stem = Path(path).with_suffix("") if Path(path).suffix in (".safetensors", ".json") else Path(path)
    st = stem.with_suffix(".safetensors")
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    _atomic_write(st, lambda tmp: save_file(tensors, tmp, metadata={"format": str(FORMAT_VERSION), "kind": kind}))
    meta = {"format": FORMAT_VERSION, "kind": kind, **meta, "bytes": st.stat().st_size}
    atomic_write_text(stem.with_suffix(".json"), json.dumps(meta, indent=1, sort_keys=False))
    return st


def load_artifact(path: str | os.PathLike, kind: str) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Load what :func:`save_artifact` wrote, checking format, kind and completeness."""
    stem = Path(path).with_suffix("") if Path(path).suffix in (".safetensors", ".json") else Path(path)
    st, js = stem.with_suffix(".safetensors"), stem.with_suffix(".json")
    if not st.is_file() or not js.is_file():
        raise LangNeuronsError(f"no {kind} at {stem}: expected {st.name} and {js.name} there")
    try:
        meta = json.loads(js.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise LangNeuronsError(f"{js} is not valid JSON ({e}): the file is damaged; recompute it") from None
    if meta.get("kind") != kind:
        raise LangNeuronsError(f"{js} holds a {meta.get('kind')!r}, not a {kind!r}")
    if meta.get("format") != FORMAT_VERSION:
        raise LangNeuronsError(f"{js} has format {meta.get('format')}, this lang_neurons reads {FORMAT_VERSION}: recompute it")
    if meta.get("bytes") is not None and st.stat().st_size != meta["bytes"]:
        raise LangNeuronsError(f"{st} is {st.stat().st_size} bytes, its sidecar says {meta['bytes']}: truncated or replaced; recompute it")
    try:
        tensors = load_file(st)
    except (SafetensorError, OSError, ValueError) as e:
        raise LangNeuronsError(f"{st} cannot be read ({e}): the file is damaged; recompute it") from None
    return tensors, meta
