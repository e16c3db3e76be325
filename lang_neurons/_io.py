"""Artifact files: one safetensors file of tensors plus a JSON sidecar, written atomically.

Every artifact's sidecar carries the format version, its kind, the model fingerprint
(:func:`lang_neurons.models.model_fingerprint`), the site, the tensor file's size and SHA-256,
and a SHA-256 of the sidecar's own fields. Loading checks all of them, so a truncated, edited
or swapped file, or a file of another kind or model, fails with one clear
:class:`~lang_neurons.errors.LangNeuronsError` instead of a deep traceback or silently wrong
numbers. Nothing time-dependent is written: the same inputs give byte-identical files.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from lang_neurons.errors import LangNeuronsError
from lang_neurons.models import check_fingerprint

FORMAT_VERSION = 2
"""Version 2 added the checksums; version 1 files (no checksums) are still read."""
READABLE_FORMATS = (1, 2)
FINGERPRINT_KEYS = ("architecture", "n_layers", "d_mlp", "weights_sha256")
"""The model fingerprint fields every artifact must carry."""


class ArtifactError(LangNeuronsError):
    """An artifact file is missing, damaged, edited, of another kind or from another model."""


def atomic_write(path: Path, write: Any) -> None:
    """Create ``path`` through ``write(tmp)`` on a temporary file beside it, then a rename: a
    reader never sees a half-written file, and a failed write leaves no temporary file."""
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
    atomic_write(Path(path), lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    atomic_write(Path(path), lambda tmp: Path(tmp).write_bytes(data))


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes (read in 16 MiB chunks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            digest.update(chunk)
    return digest.hexdigest()


def _meta_sha256(meta: dict[str, Any]) -> str:
    """SHA-256 of a sidecar's fields (all but ``meta_sha256`` itself), in a canonical form."""
    body = {k: v for k, v in meta.items() if k != "meta_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=True).encode()).hexdigest()


def _check_model_meta(model: Any, where: str) -> None:
    if not isinstance(model, dict) or any(k not in model for k in FINGERPRINT_KEYS):
        missing = [k for k in FINGERPRINT_KEYS if not isinstance(model, dict) or k not in model]
        raise ArtifactError(
            f"{where} carries no complete model fingerprint (missing {', '.join(missing)}): "
            "build it from recorded statistics or pass model= so it can be checked on load"
        )


def _stem(path: str | os.PathLike) -> Path:
    return Path(path).with_suffix("") if Path(path).suffix in (".safetensors", ".json") else Path(path)


def save_artifact(path: str | os.PathLike, kind: str, tensors: dict[str, Tensor], meta: dict[str, Any]) -> Path:
    """Save ``tensors`` to ``<path>.safetensors`` and ``meta`` to ``<path>.json``, atomically.

    ``path`` may be given with or without a suffix. ``meta`` must hold ``model`` (a model
    fingerprint) and ``site``. The JSON gets ``format``, ``kind``, the tensor file's size and
    SHA-256, and a SHA-256 of its own fields.
    """
    _check_model_meta(meta.get("model"), f"this {kind}")
    if not meta.get("site"):
        raise ArtifactError(f"this {kind} has no site: give the hook site it was computed at")
    stem = _stem(path)
    st = stem.with_suffix(".safetensors")
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    # One metadata key only: safetensors writes a multi-key metadata map in a random order per
    # process, which would make identical inputs give different bytes.
    header = {"lang_neurons": json.dumps({"format": FORMAT_VERSION, "kind": kind}, sort_keys=True)}
    atomic_write(st, lambda tmp: save_file(tensors, tmp, metadata=header))
    meta = {
        "format": FORMAT_VERSION,
        "kind": kind,
        **meta,
        "bytes": st.stat().st_size,
        "tensors_sha256": file_sha256(st),
    }
    meta["meta_sha256"] = _meta_sha256(meta)
    atomic_write_text(stem.with_suffix(".json"), json.dumps(meta, indent=1, sort_keys=False))
    return st


def _read_sidecar(js: Path, kind: str) -> dict[str, Any]:
    try:
        meta = json.loads(js.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ArtifactError(f"{js} is not valid JSON ({e}): the file is damaged; recompute it") from None
    if not isinstance(meta, dict):
        raise ArtifactError(f"{js} is not a lang_neurons sidecar (a JSON object): recompute it")
    if meta.get("kind") != kind:
        raise ArtifactError(f"{js} holds a {meta.get('kind')!r}, not a {kind!r}")
    if meta.get("format") not in READABLE_FORMATS:
        raise ArtifactError(
            f"{js} has format {meta.get('format')!r}, this lang_neurons reads {READABLE_FORMATS}: recompute it"
        )
    if meta["format"] >= 2:
        if meta.get("meta_sha256") != _meta_sha256(meta):
            raise ArtifactError(
                f"{js} was edited after it was written (its checksum does not match its fields): restore it or recompute it"
            )
        _check_model_meta(meta.get("model"), str(js))
    return meta


def _check_made_on(meta: dict[str, Any], model: Any, where: Path) -> None:
    """With a hooked ``model``, check that the file ``where`` was made on it."""
    if model is not None:
        check_fingerprint(meta.get("model", {}), model, str(where))


def load_artifact(path: str | os.PathLike, kind: str, model: Any = None) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Load what :func:`save_artifact` wrote, checking format, kind, completeness and checksums.

    With ``model`` (a hooked model), also check that the file was made on that model.
    """
    stem = _stem(path)
    st, js = stem.with_suffix(".safetensors"), stem.with_suffix(".json")
    if not st.is_file() or not js.is_file():
        raise ArtifactError(f"no {kind} at {stem}: expected {st.name} and {js.name} there")
    meta = _read_sidecar(js, kind)
    if meta.get("bytes") is not None and st.stat().st_size != meta["bytes"]:
        raise ArtifactError(
            f"{st} is {st.stat().st_size} bytes, its sidecar says {meta['bytes']}: truncated or replaced; recompute it"
        )
    if meta["format"] >= 2 and file_sha256(st) != meta.get("tensors_sha256"):
        raise ArtifactError(
            f"{st} does not match the checksum in {js.name}: the file is damaged or was replaced; recompute it"
        )
    try:
        tensors = load_file(st)
    except (SafetensorError, OSError, ValueError) as e:
        raise ArtifactError(f"{st} cannot be read ({e}): the file is damaged; recompute it") from None
    _check_made_on(meta, model, js)
    return tensors, meta


def check_shape(name: str, tensor: Tensor | None, shape: tuple[int, ...] | list[int], where: Any) -> None:
    """Raise a clear error when a loaded ``tensor`` does not have ``shape``."""
    if tensor is None or tuple(tensor.shape) != tuple(shape):
        got = "missing" if tensor is None else f"shape {tuple(tensor.shape)}"
        raise ArtifactError(
            f"{where}: tensor {name!r} is {got}, expected {tuple(shape)}: the file is damaged; recompute it"
        )


def save_json_artifact(
    path: str | os.PathLike, kind: str, data: dict[str, Any], *, model: dict[str, Any], site: str, method: str
) -> Path:
    """Write a JSON result (e.g. ``metrics.json``) with format, kind, model fingerprint, site,
    method and a checksum of its fields, atomically."""
    _check_model_meta(model, f"this {kind}")
    doc = {**data, "format": FORMAT_VERSION, "kind": kind, "model": model, "site": site, "method": method}
    doc["meta_sha256"] = _meta_sha256(doc)
    atomic_write_text(Path(path), json.dumps(doc, indent=1, ensure_ascii=False))
    return Path(path)


def load_json_artifact(path: str | os.PathLike, kind: str, model: Any = None) -> dict[str, Any]:
    """Load what :func:`save_json_artifact` wrote, checking kind, format, checksum and model."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"no {kind} at {path}")
    meta = _read_sidecar(path, kind)
    _check_made_on(meta, model, path)
    return meta
