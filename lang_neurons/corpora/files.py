"""Corpora from a folder of text files, one ``<code>.txt`` file per language."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ..languages import UnknownLanguageError, parse_langs, same_language, validate_lang
from .corpus import CorpusError, LanguageCorpus, MissingLanguageError, show_langs
from .texts import columns, dedupe, dedupe_rows


def _read_lines(path: Path) -> list[str]:
    """The lines of a UTF-8 text file (a BOM is dropped); an error naming the line that is not UTF-8."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig").splitlines()
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise CorpusError(
            f"{path} is not UTF-8: line {line} has the byte {data[err.start]:#04x} ({err.reason}); "
            "save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)"
        ) from None


def load_text_files(
    directory: str | os.PathLike[str],
    langs: str | Sequence[str] | None = None,
    *,
    parallel: bool = False,
) -> LanguageCorpus:
    """Load a folder with one ``<code>.txt`` file per language (one text per line).

    Blank lines are skipped and repeated lines dropped.  ``langs=None`` loads every
    file, in file-name order.  With ``parallel=True`` line ``i`` of every file must
    be a translation of the same text: all files need the same number of lines, and
    a line blank (or repeated) in any language is dropped in all of them.
    """
    root = Path(directory).expanduser()
    if not root.is_dir():
        raise CorpusError(
            f"corpus directory {str(directory)!r} does not exist: create it with one <code>.txt file per language"
        )
    files: dict[str, Path] = {}
    for path in sorted(root.glob("*.txt")):
        try:
            code = validate_lang(path.stem)
        except UnknownLanguageError as err:
            raise UnknownLanguageError(
                f"{path.name!r} in {str(root)!r} is not named after a language: rename it to <code>.txt ({err})"
            ) from None
        files[code] = path
    if not files:
        raise CorpusError(f"no <code>.txt files in {str(root)!r}: add one file per language, e.g. en.txt and de.txt")
    if langs is None:
        chosen = list(files)
    else:
        chosen = []
        for code in parse_langs(langs):
            match = [key for key in files if same_language(key, code)]
            if not match:
                raise MissingLanguageError(
                    f"no file for {code!r} in {str(root)!r}: it has {show_langs(files)}; add {code}.txt or leave {code!r} out"
                )
            chosen.append(match[0])
    lines = {code: _read_lines(files[code]) for code in chosen}
    if parallel:
        counts = {code: len(v) for code, v in lines.items()}
        if len(set(counts.values())) > 1:
            raise CorpusError(
                f"parallel text files must have the same number of lines, got {counts}: align the files or pass parallel=False"
            )
        rows = dedupe_rows(zip(*(lines[code] for code in chosen)))
        texts = columns(rows, chosen)
    else:
        texts = {code: dedupe(v) for code, v in lines.items()}
    empty = [code for code, v in texts.items() if not v]
    if empty:
        raise CorpusError(
            f"{files[empty[0]].name} in {str(root)!r} has no non-blank lines: add texts or remove the file"
        )
    return LanguageCorpus(
        texts,
        name=root.name or str(root),
        description=f"text files from {root} ({'parallel' if parallel else 'not aligned'})",
        aligned=parallel,
    )
