"""The loss change matrix (Tang et al., 2024): per-language loss before and after ablating each
language's neurons.

:class:`LossMatrix` holds the losses and their change (:func:`loss_change_matrix`); the
model-side part that measures the losses lives in :func:`lang_neurons.study.loss_matrix`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from lang_neurons.errors import LangNeuronsError
from lang_neurons.languages import parse_langs

__all__ = ["LossMatrix", "loss_change_matrix"]


def loss_change_matrix(
    base: Float[Tensor, " lang"],
    ablated: Float[Tensor, "ablated_lang eval_lang"],
) -> Float[Tensor, "ablated_lang eval_lang"]:
    """``ablated - base[None]``: how much each language's loss rose when each language's neurons were ablated.

    Raises:
        LangNeuronsError: if ``base`` is not 1-D or ``ablated`` is not 2-D with one column per base language.
    """
    base = torch.as_tensor(base).detach().float().cpu()
    ablated = torch.as_tensor(ablated).detach().float().cpu()
    if base.ndim != 1 or ablated.ndim != 2 or ablated.shape[1] != base.shape[0]:
        raise LangNeuronsError(
            f"loss_change_matrix: need base of shape (lang,) and ablated of shape (ablated_lang, lang), "
            f"got {tuple(base.shape)} and {tuple(ablated.shape)}"
        )
    return ablated - base[None]


@dataclass(repr=False)
class LossMatrix:
    """Per-language loss before and after ablating each language's neurons (Tang et al., 2024).

    Attributes:
        langs: language codes; rows (ablated language) and columns (evaluated language) follow this order.
        base: loss per language without intervention, shape (lang,).
        ablated: ``ablated[a, e]`` = loss on language ``e`` with language ``a``'s neurons ablated.
        change: ``ablated - base``, computed.
    """

    langs: list[str]
    base: Float[Tensor, " lang"]
    ablated: Float[Tensor, "ablated_lang eval_lang"]
    change: Float[Tensor, "ablated_lang eval_lang"] = field(init=False)

    def __post_init__(self) -> None:
        self.langs = parse_langs(self.langs)
        self.change = loss_change_matrix(self.base, self.ablated)
        self.base = torch.as_tensor(self.base).detach().float().cpu()
        self.ablated = torch.as_tensor(self.ablated).detach().float().cpu()
        k = len(self.langs)
        if tuple(self.ablated.shape) != (k, k):
            raise LangNeuronsError(
                f"LossMatrix: {k} languages need an ablated matrix of shape ({k}, {k}), got {tuple(self.ablated.shape)}"
            )

    def diagonal_dominance(self) -> dict[str, bool]:
        """Per ablated language A: does ablating A raise A's loss more than the mean rise of the others?"""
        k = len(self.langs)
        if k < 2:
            raise LangNeuronsError("diagonal_dominance needs at least two languages to compare")
        off = ~torch.eye(k, dtype=torch.bool)
        out = {}
        for a, lang in enumerate(self.langs):
            others = self.change[a][off[a]].mean()
            out[lang] = bool(self.change[a, a] > others)
        return out

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: langs, base, ablated, change and diagonal dominance."""
        out: dict[str, Any] = {
            "langs": list(self.langs),
            "base": self.base.tolist(),
            "ablated": self.ablated.tolist(),
            "change": self.change.tolist(),
        }
        if len(self.langs) > 1:
            out["diagonal_dominance"] = self.diagonal_dominance()
        return out

    def __repr__(self) -> str:
        return f"LossMatrix(langs={self.langs})"

    def __str__(self) -> str:
        width = max(8, *(len(lang) + 1 for lang in self.langs))
        head = "ablated \\ eval"
        first = max(len(head), *(len(lang) for lang in self.langs))
        lines = ["loss change (ablated - base); rows: ablated language, columns: evaluated language"]
        lines.append(f"{head:<{first}}" + "".join(f"{lang:>{width}}" for lang in self.langs))
        for a, lang in enumerate(self.langs):
            cells = "".join(f"{_fmt(float(v), True):>{width}}" for v in self.change[a])
            lines.append(f"{lang:<{first}}{cells}")
        lines.append(f"{'base loss':<{first}}" + "".join(f"{_fmt(float(v), False):>{width}}" for v in self.base))
        if len(self.langs) > 1:
            dominant = [lang for lang, ok in self.diagonal_dominance().items() if ok]
            lines.append(f"diagonal dominant: {len(dominant)}/{len(self.langs)} ({', '.join(dominant) or 'none'})")
        return "\n".join(lines)


def _fmt(value: float, signed: bool) -> str:
    if math.isnan(value):
        return "nan"
    return f"{value:+.3f}" if signed else f"{value:.3f}"
