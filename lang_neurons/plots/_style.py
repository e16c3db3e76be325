"""What every figure shares: the language colours, the grey of other neurons, the Plotly template."""

from __future__ import annotations

from collections.abc import Sequence

import plotly.colors

__all__ = ["BACKGROUND", "PALETTE", "TEMPLATE", "language_colors"]

PALETTE: list[str] = list(plotly.colors.qualitative.Plotly) + list(plotly.colors.qualitative.Dark24)
"""Language colours, assigned in order of ``langs`` (cycled past the end)."""

BACKGROUND = "#c8c8c8"
"""Colour of neurons that belong to no language."""

TEMPLATE = "plotly_white"
"""The Plotly template of every figure."""


def language_colors(langs: Sequence[str]) -> dict[str, str]:
    """One colour per language, by position in ``langs``: the same list gives the same colours."""
    return {lang: PALETTE[i % len(PALETTE)] for i, lang in enumerate(langs)}
