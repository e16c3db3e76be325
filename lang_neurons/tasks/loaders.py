"""Task datasets, through ``datasets``: Belebele, XNLI, SIB-200 and XQuAD from the Hugging Face
hub (or a local copy of the hub dataset), or a local ``.jsonl``/``.json``/``.parquet``/``.csv``
file with the same columns; plus files of your own for either kind.

Hub loads go through :func:`lang_neurons.corpora.hub.first_config`, the corpora's path: offline
(no connection, or ``HF_HUB_OFFLINE``) they fail fast with one line that says to pass a local
file instead.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lang_neurons.choices import TASK_NAMES
from lang_neurons.corpora.hub import HubSource, first_config
from lang_neurons.errors import LangNeuronsError
from lang_neurons.languages import UnknownLanguageError, language_name, same_language, to_flores, validate_lang

from .base import Task
from .prompts import ITEM_BUILDERS

FILE_FORMATS: dict[str, str] = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}
"""Local task files by extension → the ``datasets`` builder that reads them."""

XNLI_LANGS: tuple[str, ...] = ("ar", "bg", "de", "el", "en", "es", "fr", "hi", "ru", "sw", "th", "tr", "ur", "vi", "zh")
XQUAD_LANGS: tuple[str, ...] = ("ar", "de", "el", "en", "es", "hi", "ro", "ru", "th", "tr", "vi", "zh")


@dataclass(frozen=True)
class TaskSpec:
    """A named task: kind, the columns its rows need, where it lives on the hub and its defaults.

    Attributes:
        name: the task's name.
        kind: ``multiple_choice`` or ``generation``.
        label: its name in messages.
        columns: the columns every row needs.
        hub_id: the hub dataset (``None``: only from a file).
        split: the split evaluated by default.
        langs: the languages it has (``None``: every FLORES-200 language).
        config: the hub config of a language (``{flores}``, ``{iso}``: the code filled in).
        licence: the dataset's licence.
        max_new_tokens: generation: new tokens per answer at most.
    """

    name: str
    kind: str
    label: str
    columns: tuple[str, ...]
    hub_id: str | None = None
    split: str = "test"
    langs: tuple[str, ...] | None = None
    config: str = "{flores}"
    licence: str = ""
    max_new_tokens: int = 32


TASKS: dict[str, TaskSpec] = {
    "belebele": TaskSpec(
        "belebele",
        "multiple_choice",
        "Belebele",
        ("flores_passage", "question", "mc_answer1", "mc_answer2", "mc_answer3", "mc_answer4", "correct_answer_num"),
        "facebook/belebele",
        licence="CC BY-SA 4.0",
    ),
    "xnli": TaskSpec(
        "xnli",
        "multiple_choice",
        "XNLI",
        ("premise", "hypothesis", "label"),
        "facebook/xnli",
        langs=XNLI_LANGS,
        config="{iso}",
        licence="CC BY-NC 4.0",
    ),
    "sib200": TaskSpec(
        "sib200", "multiple_choice", "SIB-200", ("text", "category"), "Davlan/sib200", licence="CC BY-SA 4.0"
    ),
    "xquad": TaskSpec(
        "xquad",
        "generation",
        "XQuAD",
        ("context", "question", "answers"),
        "google/xquad",
        split="validation",
        langs=XQUAD_LANGS,
        config="xquad.{iso}",
        licence="CC BY-SA 4.0",
    ),
    "multiple_choice": TaskSpec(
        "multiple_choice", "multiple_choice", "a multiple-choice file", ("prompt", "options", "answer")
    ),
    "generation": TaskSpec("generation", "generation", "a generation file", ("prompt", "answers")),
}
"""Every task by name (the order of :data:`lang_neurons.choices.TASK_NAMES`)."""

assert tuple(TASKS) == TASK_NAMES


def task_spec(name: str) -> TaskSpec:
    """The :class:`TaskSpec` of ``name``; a one-line error with the list for a name that does not exist."""
    if name not in TASKS:
        raise LangNeuronsError(f"unknown task {name!r}: choose one of {', '.join(TASKS)}")
    return TASKS[name]


def _config(spec: TaskSpec, lang: str) -> str:
    if spec.langs is not None:
        match = [c for c in spec.langs if same_language(c, lang)]
        if not match:
            raise LangNeuronsError(
                f"{spec.label} has no {lang!r} ({language_name(lang)}): it has {', '.join(spec.langs)}"
            )
        return spec.config.format(iso=match[0])
    try:
        return spec.config.format(flores=to_flores(lang))
    except UnknownLanguageError:
        raise LangNeuronsError(
            f"{spec.label} has no {lang!r} ({language_name(lang)}): it covers the FLORES-200 languages"
        ) from None


def _rows(rows: Iterable[Mapping[str, Any]], spec: TaskSpec, where: str, limit: int | None) -> list[Mapping[str, Any]]:
    """The first ``limit`` rows, checked to have every column the task needs (one-line error)."""
    out = []
    for row in itertools.islice(rows, limit):
        missing = [c for c in spec.columns if c not in row]
        if missing:
            raise LangNeuronsError(
                f"{where} has no column {', '.join(map(repr, missing))}, which task {spec.name!r} ({spec.kind.replace('_', ' ')}) "
                f"needs: it needs {', '.join(spec.columns)}; the rows have {', '.join(row) or 'no columns'}"
            )
        out.append(row)
    return out


def read_task_file(path: str | os.PathLike[str]) -> Iterable[Mapping[str, Any]]:
    """The rows of a local ``.jsonl``, ``.json``, ``.parquet`` or ``.csv`` file, read with ``datasets``."""
    import datasets

    p = Path(path).expanduser()
    if not p.is_file():
        raise LangNeuronsError(f"task file {str(p)!r} does not exist")
    builder = FILE_FORMATS.get(p.suffix.lower())
    if builder is None:
        raise LangNeuronsError(f"task file {p.name!r}: use a {', '.join(FILE_FORMATS)} file")
    quiet = not datasets.utils.are_progress_bars_disabled()
    if quiet:  # no "Generating train split" bar for a local file
        datasets.utils.disable_progress_bars()
    try:
        return datasets.load_dataset(builder, data_files=str(p), split="train")
    except Exception as err:  # parse errors of every format
        text = str(err).splitlines()[0][:200] if str(err) else ""
        raise LangNeuronsError(f"could not read task file {str(p)!r}: {type(err).__name__}: {text}") from err
    finally:
        if quiet:
            datasets.utils.enable_progress_bars()


def task_from_rows(
    name: str, rows: Iterable[Mapping[str, Any]], lang: str, *, items: int | None = None, source: str = "the rows"
) -> Task:
    """A :class:`Task` from dataset rows in ``name``'s schema (the first ``items`` of them)."""
    spec = task_spec(name)
    lang = validate_lang(lang)
    if items is not None and items < 1:
        raise LangNeuronsError(f"a task needs at least one item, asked for {items}")
    checked = _rows(rows, spec, source, items)
    if not checked:
        raise LangNeuronsError(f"{source} has no rows for task {name!r}")
    build = ITEM_BUILDERS[name]
    built = []
    for i, row in enumerate(checked):
        try:
            built.append(build(row))
        except LangNeuronsError as err:
            raise LangNeuronsError(f"{source}, row {i}: {err}") from None
    return Task(
        name,
        spec.kind,  # type: ignore[arg-type]
        lang,
        tuple(built),
        description=f"{spec.label} ({lang}) from {source}",
        max_new_tokens=spec.max_new_tokens,
    )


def load_task(
    name: str,
    lang: str = "en",
    *,
    path: str | os.PathLike[str] | None = None,
    split: str | None = None,
    items: int | None = None,
    token: str | bool | None = None,
    dataset_path: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Task:
    """Load task ``name`` in language ``lang``.

    Args:
        name: one of :data:`TASKS` (``belebele``, ``xnli``, ``sib200``, ``xquad``; or
            ``multiple_choice`` / ``generation`` for a file of your own).
        lang: the language (ISO 639-1 or FLORES-200 code): the hub config to load, and the
            language the result is reported under.
        path: a local ``.jsonl``/``.json``/``.parquet``/``.csv`` file in the task's schema, read
            with ``datasets`` in place of the hub (the only source of the two file-only tasks).
        split: the hub split (default: the task's, ``test``; ``validation`` for XQuAD).
        items: the first ``items`` rows only (default: all).
        token: a hub token (for a gated copy).
        dataset_path: a local copy of the hub dataset with one config per language, in place of the hub id.
        cache_dir: the ``datasets`` cache.
    """
    spec = task_spec(name)
    lang = validate_lang(lang)
    if path is not None:
        return task_from_rows(name, read_task_file(path), lang, items=items, source=f"task file {str(path)!r}")
    if spec.hub_id is None:
        raise LangNeuronsError(
            f"task {name!r} is for a file of your own: pass path= (--task-file) with columns {', '.join(spec.columns)}"
        )
    config = _config(spec, lang)
    source = HubSource(
        spec.label,
        spec.hub_id,
        name,
        gated=False,
        offline_fix=f"check your connection, or pass a local file in its schema (load_task({name!r}, path=...), --task-file)",
    )
    split = split or spec.split

    def consume(rows: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        return _rows(rows, spec, f"{spec.label} {config} {split}", items)

    rows = first_config(
        source, lang, [config], consume, split=split, token=token, dataset_path=dataset_path, cache_dir=cache_dir
    )
    where = f"{spec.label} ({dataset_path or spec.hub_id}, {config}, {split}; licence {spec.licence})"
    return task_from_rows(name, rows, lang, source=where)
