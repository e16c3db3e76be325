"""Checks of the string lists that the evaluation's functions take, shared by its modules."""

from __future__ import annotations

from collections.abc import Sequence

from lang_neurons.errors import LangNeuronsError


def string_list(values: Sequence[str], what: str) -> list[str]:
    """``values`` as a list of strings, or a LangNeuronsError saying what is wrong."""
    if isinstance(values, str) or not isinstance(values, Sequence):
        raise LangNeuronsError(f"{what} must be a list of strings, got {type(values).__name__}")
    for i, value in enumerate(values):
        if not isinstance(value, str):
            raise LangNeuronsError(f"{what}[{i}] is a {type(value).__name__}, not a string: pass plain strings")
    return list(values)
