"""What :func:`~lang_neurons.study.evaluate` returns: an :class:`EvaluationResult` with one
:class:`TargetResult` per target and one :class:`MethodResult` per row.

``to_dict()`` is the JSON of ``metrics.json`` (keys in the order of the fields, optional fields
left out when absent); ``from_dict()`` reads it back. An :class:`EvaluationResult` also reads
like that dict (``result["targets"]["de"]["methods"]["add"]["rate"]``), so the functions that
take ``metrics.json`` (tables, figures, the report) take it too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from lang_neurons.errors import LangNeuronsError

_R = TypeVar("_R", bound="_Record")

ARTIFACT_KEYS = ("format", "kind", "model", "site", "method", "meta_sha256")
"""The keys ``metrics.json`` adds around the results (see :func:`lang_neurons._io.save_json_artifact`)."""


class _Record:
    """``to_dict``/``from_dict`` of the result records: fields in order, ``None`` left out."""

    def to_dict(self) -> dict[str, Any]:
        """The fields in declaration order, JSON-ready; a field that is ``None`` is left out."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if value is None:
                continue
            if f.name in ("methods", "targets"):
                value = {k: v.to_dict() for k, v in value.items()}
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls: type[_R], data: Mapping[str, Any]) -> _R:
        """The record of a dict of :meth:`to_dict`; an unknown or missing required key is an error."""
        fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = [k for k in data if k not in fields]
        if unknown:
            raise LangNeuronsError(f"{cls.__name__} has no {unknown[0]!r}: its keys are {', '.join(fields)}")
        required = [
            name
            for name, f in fields.items()
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        missing = [name for name in required if name not in data]
        if missing:
            raise LangNeuronsError(f"{cls.__name__} lacks {missing[0]!r} (results of an older lang_neurons?)")
        return cls(**data)


@dataclass
class MethodResult(_Record):
    """One row (a method, its random control, or residual DiffMean) toward one target.

    Attributes:
        rate: share of the continuations fastText labels the target language.
        quality: fluency of the continuations against the unsteered ones (:mod:`lang_neurons.forcing`).
        forcing_score: harmonic mean of ``rate`` and ``quality``.
        fluency_loss: mean token loss of the continuations under the unsteered model.
        split: the prompts' split the row is measured on (``"test"``).
        neurons: neurons the intervention touches; share: of the site's neurons.
        examples: the first three continuations.
        layer, alpha: the residual DiffMean row's layer and alpha (chosen on the dev split).
        rate_interval, forcing_interval: the 95 % intervals (with ``intervals``).
        translation, translation_interval: BLEU/chrF of translation under the row, and its intervals.
    """

    rate: float
    quality: float
    forcing_score: float
    fluency_loss: float
    split: str
    neurons: int
    share: float
    examples: list[str]
    layer: int | None = None
    alpha: float | None = None
    rate_interval: dict[str, Any] | None = None
    forcing_interval: dict[str, Any] | None = None
    translation: dict[str, Any] | None = None
    translation_interval: dict[str, Any] | None = None


@dataclass
class TargetResult(_Record):
    """Everything measured toward one target: the unsteered baseline and each row.

    Attributes:
        baseline_rate, baseline_fluency_loss, baseline_forcing_score: the unsteered continuations.
        methods: the rows by name, in the order of ``settings["methods"]``.
        baseline_interval, baseline_forcing_interval: the baseline's 95 % intervals.
        translation_baseline, translation_baseline_interval: unsteered translation BLEU/chrF.
    """

    baseline_rate: float
    baseline_fluency_loss: float
    baseline_forcing_score: float
    methods: dict[str, MethodResult] = field(default_factory=dict)
    baseline_interval: dict[str, Any] | None = None
    baseline_forcing_interval: dict[str, Any] | None = None
    translation_baseline: dict[str, Any] | None = None
    translation_baseline_interval: dict[str, Any] | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TargetResult:
        """The record of a dict of :meth:`to_dict`, its rows as :class:`MethodResult`."""
        methods = {k: MethodResult.from_dict(v) for k, v in data.get("methods", {}).items()}
        return super().from_dict({**data, "methods": methods})


@dataclass(eq=False)
class EvaluationResult(_Record, Mapping):
    """The results of :func:`~lang_neurons.study.evaluate`; reads like :meth:`to_dict`
    (``result["summary"]``, ``"residual" in result``), which is ``metrics.json``.

    Attributes:
        targets: per target, its :class:`TargetResult`.
        settings: the evaluation's settings (from its :class:`~lang_neurons.config.EvaluateConfig`),
            the row names, the site and method; under a protocol also its name, paper and departures.
        prompts: the prompts' dev/test split (:meth:`~lang_neurons.forcing.ForcingPrompts.to_dict`).
        residual: the residual DiffMean layer and alpha chosen on the dev split, and its grid.
        loss_matrix: the loss-change matrix (:meth:`~lang_neurons.evaluation.LossMatrix.to_dict`).
        summary, summary_forcing: per row and the baseline, the mean over targets of the rate
            and of the forcing score; summary_interval, summary_forcing_interval: their intervals.
        deactivation_generation: Tang et al.'s deactivation generation (the ``tang`` protocol).
        sweep: the steering-sweep points (``lang-neurons run --sweep-alphas``).
        evaluation: the settings a ``lang-neurons run`` compares to reuse ``metrics.json``.
    """

    targets: dict[str, TargetResult]
    settings: dict[str, Any]
    prompts: dict[str, Any]
    residual: dict[str, Any] | None = None
    loss_matrix: dict[str, Any] | None = None
    summary: dict[str, float] = field(default_factory=dict)
    summary_forcing: dict[str, float] = field(default_factory=dict)
    summary_interval: dict[str, Any] | None = None
    summary_forcing_interval: dict[str, Any] | None = None
    deactivation_generation: dict[str, Any] | None = None
    sweep: list[dict[str, Any]] | None = None
    evaluation: dict[str, Any] | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EvaluationResult:
        """The results of a dict of :meth:`to_dict`, e.g. a loaded ``metrics.json`` (its
        artifact keys, :data:`ARTIFACT_KEYS`, are dropped)."""
        data = {k: v for k, v in data.items() if k not in ARTIFACT_KEYS}
        targets = {k: TargetResult.from_dict(v) for k, v in data.get("targets", {}).items()}
        return super().from_dict({**data, "targets": targets})

    def __getitem__(self, key: str) -> Any:
        return self.to_dict()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.to_dict())

    def __len__(self) -> int:
        return len(self.to_dict())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Mapping):
            return NotImplemented
        return self.to_dict() == dict(other)

    def __repr__(self) -> str:
        rows = self.settings.get("methods", [])
        return f"EvaluationResult(targets={list(self.targets)}, rows={rows}, summary={self.summary})"
