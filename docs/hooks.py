"""MkDocs hooks for the lang_neurons site (listed under ``hooks:`` in mkdocs.yml).

* ``<!-- cli-reference -->`` in a page is replaced by the ``--help`` text of ``lang-neurons``
  and of each of its commands, taken from :func:`lang_neurons.cli.build_parser` at build time,
  so the CLI reference cannot drift from the code.
* The teaching notebooks (``notebooks/*.ipynb`` at the repository root) are added to the site
  as downloadable files, so pages can link ``notebooks/<name>.ipynb`` and strict builds check
  those links.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from mkdocs.structure.files import File

MARKER = "<!-- cli-reference -->"
ROOT = Path(__file__).resolve().parents[1]


def _help(parser: argparse.ArgumentParser) -> str:
    os.environ["COLUMNS"] = "100"  # stable wrapping, whatever the terminal
    return parser.format_help().rstrip()


def cli_reference() -> str:
    """Markdown: the top-level help, then one section per sub-command with its full help."""
    from lang_neurons.cli import build_parser

    parser = build_parser()
    parts = ["## `lang-neurons`", "", "```text", _help(parser), "```", ""]
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in subs.choices.items():
        parts += [f"## `lang-neurons {name}`", "", "```text", _help(sub), "```", ""]
    return "\n".join(parts)


def on_page_markdown(markdown: str, page, config, files) -> str:
    if MARKER in markdown:
        markdown = markdown.replace(MARKER, cli_reference())
    return markdown


def on_files(files, config):
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        files.append(File.generated(config, f"notebooks/{path.name}", abs_src_path=str(path)))
    return files
