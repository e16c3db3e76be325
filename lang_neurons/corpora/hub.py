"""Loading datasets from the Hugging Face hub (or a local copy) with ``datasets``: offline
detection, fast failure without a network, and one clear error for every way it fails."""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

from ..errors import LangNeuronsError
from ..languages import language_name
from .corpus import CorpusError, MissingLanguageError

T = TypeVar("T")


@dataclass(frozen=True)
class HubSource:
    """A hub dataset: its name in messages, hub id, corpus name for ``load_corpus`` and whether it
    is gated; ``offline_fix``, when given, is what a failed hub load tells the user to do instead
    (by default: a token, the connection, or the offline default corpus)."""

    label: str
    hub_id: str
    corpus: str
    gated: bool
    offline_fix: str = ""


_OFFLINE_VARS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")


def _env_offline() -> bool:
    return any(os.environ.get(var, "").strip().upper() in {"1", "ON", "YES", "TRUE"} for var in _OFFLINE_VARS)


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Quick TCP probe of the hub endpoint (skipped, i.e. True, behind a proxy)."""
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    url = urlparse(endpoint)
    address = (url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80))
    try:
        socket.create_connection(address, timeout=timeout).close()
    except OSError:
        return False
    return True


@contextmanager
def _offline_mode(on: bool) -> Iterator[None]:
    """Force the hub libraries into offline mode (cache only, no retries) while active.

    ``datasets`` and ``huggingface_hub`` read ``HF_HUB_OFFLINE`` once at import, so
    setting the variable later (or having no network) would otherwise cost ~20 s of
    retries before failing.
    """
    if not on:
        yield
        return
    import datasets.config
    from huggingface_hub import constants

    saved = (datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE)
    datasets.config.HF_HUB_OFFLINE = constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE = saved


class _ConfigNotFound(Exception):
    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def _with_dataset(
    source: HubSource,
    config: str,
    consume: Callable[[Iterable[Mapping[str, Any]]], T],
    *,
    split: str,
    streaming: bool = False,
    dataset_path: str | os.PathLike[str] | None = None,
    token: str | bool | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> T:
    """``consume(datasets.load_dataset(path, config, split=...))``, with clear errors.

    Raises ``_ConfigNotFound`` if the dataset has no such config, ``LangNeuronsError``
    for an unknown split, and ``CorpusError`` for anything else (offline, gated,
    missing files...).
    """
    import datasets

    path = str(dataset_path) if dataset_path is not None else source.hub_id
    local = Path(path).expanduser().exists()
    looks_local = path.startswith(("/", ".", "~", "\\")) or re.match(r"^[A-Za-z]:[\\/]", path) is not None
    if looks_local and not local:
        raise CorpusError(
            f"dataset_path {path!r} does not exist: give a local dataset folder or a hub id like {source.hub_id!r}"
        )
    kwargs: dict[str, Any] = {"split": split, "streaming": streaming}
    if token is not None:
        kwargs["token"] = token
    if cache_dir is not None:
        kwargs["cache_dir"] = str(cache_dir)
    offline = not local and (_env_offline() or not _hub_reachable())
    try:
        with _offline_mode(offline):
            return consume(datasets.load_dataset(path, config, **kwargs))
    except (CorpusError, MissingLanguageError):
        raise
    except ValueError as err:
        text = str(err)
        if "BuilderConfig" in text and "not found" in text:
            raise _ConfigNotFound(text.split("\n")[0][:300]) from err
        if "Unknown split" in text or "Bad split" in text:
            raise LangNeuronsError(f"{source.label} has no split {split!r}: {text.splitlines()[0]}") from err
        raise CorpusError(_load_failure(source, path, local, offline, err)) from err
    except Exception as err:  # network, gated, missing files: anything the hub stack raises
        raise CorpusError(_load_failure(source, path, local, offline, err)) from err


def _load_failure(source: HubSource, path: str, local: bool, offline: bool, err: Exception) -> str:
    cause = f"{type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}"
    if local:
        return f"could not load {source.label} from {path!r}: {cause}"
    why = "offline or gated" if source.gated else "offline?"
    state = "; hub unreachable or HF_HUB_OFFLINE set, so only the local cache was tried" if offline else ""
    if source.offline_fix:
        return f"could not load {source.label} from the Hugging Face hub ({why}): {source.offline_fix} [{cause}{state}]"
    fix = (
        f"log in with a token (load_corpus({source.corpus!r}, token=...))"
        if source.gated
        else "check your internet connection"
    )
    return (
        f"could not load {source.label} from the Hugging Face hub ({why}): {fix}, "
        f"or use the offline default corpus load_corpus('default') [{cause}{state}]"
    )


def require_column(rows: Iterable[Mapping[str, Any]], column: str, source: HubSource) -> Iterator[Mapping[str, Any]]:
    """The rows of a dataset, unchanged; a :class:`CorpusError` at the first one without ``column``."""
    for row in rows:
        if column not in row:
            raise CorpusError(
                f"{source.label} rows have no {column!r} column (columns: {list(row)}): pass the right dataset"
            )
        yield row


def first_config(
    source: HubSource,
    lang: str,
    candidates: list[str],
    consume: Callable[[Iterable[Mapping[str, Any]]], T],
    **kwargs: Any,
) -> T:
    """Try config names in turn (e.g. ``cmn_Hans`` then ``zho_Hans``)."""
    detail = ""
    for config in candidates:
        try:
            return _with_dataset(source, config, consume, **kwargs)
        except _ConfigNotFound as err:
            detail = err.detail
    raise MissingLanguageError(
        f"{source.label} has no {lang!r} ({language_name(lang)}; tried config {', '.join(map(repr, candidates))}): {detail}"
    )
