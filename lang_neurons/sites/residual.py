"""The residual stream as a site: ``blocks.<l>.hook_resid_post``, ``d_model`` wide.

Recording sums it per language (:meth:`lang_neurons.recording.ActivationStats.resid_mean`) and the
residual-stream DiffMean baseline (:func:`lang_neurons.steering.residual_diffmean`) adds a
vector there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from jaxtyping import Float, Int
from torch import Tensor

from lang_neurons.errors import LangNeuronsError
from lang_neurons.models import HookedModel, HookFn
from lang_neurons.sites.edits import affine_hook, vector_hook


@dataclass(frozen=True)
class ResidualSite:
    """The residual stream after each block. Build with :meth:`from_model` or :meth:`from_fingerprint`."""

    n_layers: int
    width: int
    name: ClassVar[str] = "resid_post"

    @classmethod
    def from_model(cls, model: HookedModel) -> ResidualSite:
        """The residual stream of ``model``; clear error when it has no ``hook_resid_post``."""
        site = cls(int(model.cfg.n_layers), int(model.cfg.d_model))
        missing = [h for layer in range(site.n_layers) if (h := site.hook(layer)) not in model.hook_dict]
        if missing:
            raise LangNeuronsError(
                f"this model has no hook point {missing[0]!r}: lang_neurons records the residual stream there"
            )
        return site

    @classmethod
    def from_fingerprint(cls, fingerprint: dict[str, Any]) -> ResidualSite:
        """The residual stream of the model that ``fingerprint`` (:func:`lang_neurons.models.model_fingerprint`) describes."""
        return cls(int(fingerprint.get("n_layers", 0)), int(fingerprint.get("d_model", 0)))

    @property
    def n_neurons(self) -> int:
        """Dimensions over all layers."""
        return self.n_layers * self.width

    @staticmethod
    def hook(layer: int) -> str:
        """The hook name of the residual stream after block ``layer`` (the same on every model)."""
        return f"blocks.{layer}.hook_resid_post"

    def read_hooks(self, layer: int) -> tuple[str, ...]:
        """Hook names whose values :meth:`activation` needs at ``layer``."""
        return (self.hook(layer),)

    def activation(self, values: list[Float[Tensor, "batch pos d_model"]]) -> Float[Tensor, "batch pos d_model"]:
        """The residual stream from the values of :meth:`read_hooks`."""
        return values[0]

    def write_hooks(
        self,
        layer: int,
        index: Int[Tensor, " k"],
        a: Float[Tensor, " k"],
        b: Float[Tensor, " k"],
        positions: str = "all",
    ) -> list[tuple[str, HookFn]]:
        """The ``(hook_name, fn)`` pair that edits ``x[..., index] = a * x[..., index] + b`` of the
        residual stream after block ``layer``, at ``positions``."""
        return [(self.hook(layer), affine_hook(index, a, b, positions))]

    def add_hooks(
        self, layer: int, vector: Float[Tensor, "*rows d_model"], positions: str = "all"
    ) -> list[tuple[str, HookFn]]:
        """The ``(hook_name, fn)`` pair that adds ``vector`` to the residual stream after block
        ``layer``, at ``positions``: ``[d_model]`` for every batch row, or ``[rows, d_model]``
        for one vector per row of a ``rows``-row batch."""
        return [(self.hook(layer), vector_hook(vector, positions))]

    def __repr__(self) -> str:
        return f"ResidualSite({self.n_layers} layers x {self.width} dimensions)"
