"""The grid and settings of a sweep (:class:`SweepConfig`), what it returns (:class:`SweepResult`)
and its text tables (:func:`format_sweep`)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lang_neurons import intervals as iv
from lang_neurons.choices import EVAL_METHODS, RESAMPLES, RESIDUAL
from lang_neurons.config import EvaluateConfig, Setting, _Config, _freeze, check_generation_dtype
from lang_neurons.errors import LangNeuronsError
from lang_neurons.recording import ActivationStats
from lang_neurons.study import format_interval, format_rate, residual_candidates

CELLS_FILE = "sweep_cells.jsonl"
"""The file of finished cells in a sweep's ``out`` folder, one JSON object a line."""

DEFAULT_TOP_RATES = (0.01, 0.02)
"""The LAPE top rates swept when neither ``top_rates`` nor ``ks`` is given."""

GRID = ("top_rates", "ks", "alphas", "methods", "residual_layers")
PROMPTS_SPLIT = ("source", "prompts", "prompt_tokens", "dev_share", "seed")
"""The settings that draw the dev/test split of the prompts (kept in ``chosen.json``)."""
"""The :class:`SweepConfig` fields of the grid; the others go into the cells' digest."""

_TEST_ONLY = ("samples", "controls", "residual")
"""Fields that shape only the test re-measurement (a cell does not depend on them)."""


def _positive(name: str, values: Sequence[Any], whole: bool = False, unit: bool = False) -> None:
    """Refuse an empty, repeated or out-of-range grid axis, in one line (naming its flag too)."""
    name = f"{name} (--{name.replace('_', '-')})"
    if not values:
        raise LangNeuronsError(f"the sweep grid is empty: {name} has no values (give at least one)")
    for v in values:
        bad = isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0
        bad = bad or (whole and not isinstance(v, int)) or (unit and v > 1)
        if bad:
            kind = "whole numbers >= 1" if whole else "numbers in (0, 1]" if unit else "positive finite numbers"
            raise LangNeuronsError(f"{name} must be {kind}, got {v!r}")
    if len(set(values)) < len(values):
        raise LangNeuronsError(f"{name} repeats a value ({', '.join(map(str, values))}): give each once")


@dataclass(frozen=True)
class SweepConfig(_Config):
    """The grid and the settings of :func:`sweep`.

    Attributes:
        top_rates: LAPE top rates, each in (0, 1] (default :data:`DEFAULT_TOP_RATES` unless ``ks``).
        ks: AP per-language k (top-k = bottom-k = k), instead of ``top_rates``.
        alphas: steering strengths, each > 0 (``pin`` ignores it).
        methods: neuron methods of :data:`~lang_neurons.choices.EVAL_METHODS` and optionally
            ``"residual_diffmean"`` (the residual baseline, over ``residual_layers``).
        residual_layers: the residual layers swept (default: a third, half and two thirds of the depth).
        dev_samples: dev samples per target and cell; samples: test samples per target and row.
        filter_rate, activation_bar_ratio: LAPE's other parameters (not swept).
        controls, residual: the test re-measurement's random-control seeds, and whether it also
            measures the residual DiffMean baseline (off by default: ``run --setting`` measures
            it; on whenever ``residual_diffmean`` is swept, at its chosen layer and alpha).
        The rest are :func:`lang_neurons.study.evaluate`'s settings of the same names.
    """

    top_rates: tuple[float, ...] | None = None
    ks: tuple[int, ...] | None = None
    alphas: tuple[float, ...] = (0.5, 1.0, 2.0)
    methods: tuple[str, ...] = ("add",)
    residual_layers: tuple[int, ...] | None = None
    dev_samples: int = 20
    samples: int = 100
    targets: tuple[str, ...] | None = None
    source: str = "en"
    prompts: str = "source"
    prompt_tokens: int = 16
    dev_share: float = 0.2
    max_new_tokens: int = 32
    do_sample: bool = True
    temperature: float = 0.8
    repetition_penalty: float = 1.0
    deactivate: str = "others"
    deactivate_value: float = 0.0
    filter_rate: float = 0.95
    activation_bar_ratio: float = 0.95
    controls: int = 3
    residual: bool = False
    intervals: bool = True
    resamples: int = RESAMPLES
    seed: int = 0
    batch_size: int = 16
    generation_dtype: str | None = None

    def __post_init__(self) -> None:
        for name in (*GRID, "targets"):
            _freeze(self, name)
        check_generation_dtype(self.generation_dtype)
        if self.top_rates is not None and self.ks is not None:
            raise LangNeuronsError("give top_rates (LAPE, --top-rates) or ks (AP, --ks), not both")
        if self.top_rates is None and self.ks is None:
            object.__setattr__(self, "top_rates", DEFAULT_TOP_RATES)
        if not self.methods:
            raise LangNeuronsError(
                "the sweep grid is empty: methods (--methods) has no values (give at least one, e.g. add)"
            )
        for m in self.methods:
            if m not in (*EVAL_METHODS, RESIDUAL):
                raise LangNeuronsError(f"unknown method {m!r}: choose from {', '.join((*EVAL_METHODS, RESIDUAL))}")
        if len(set(self.methods)) < len(self.methods):
            raise LangNeuronsError(f"methods repeats a method ({', '.join(self.methods)}): give each once")
        if not self.neuron_methods:
            raise LangNeuronsError(
                f"methods has no neuron method, only {RESIDUAL}: add one (e.g. add); the test re-measures a neuron setting"
            )
        if self.ks is not None:
            _positive("ks", self.ks, whole=True)
        else:
            _positive("top_rates", self.top_rates or (), unit=True)
        _positive("alphas", self.alphas)
        if self.residual_layers is not None:
            if RESIDUAL not in self.methods:
                raise LangNeuronsError(f"residual_layers are swept only with the method {RESIDUAL}: add it to methods")
            if not self.residual_layers or any(
                isinstance(x, bool) or not isinstance(x, int) for x in self.residual_layers
            ):
                raise LangNeuronsError(f"residual_layers must be layer numbers, got {self.residual_layers!r}")
        self.evaluate_config(self.neuron_methods[0], self.alphas[0])  # the shared settings, checked there
        if self.intervals:
            iv.check_samples(self.dev_samples)

    @property
    def test_residual(self) -> bool:
        """Whether the test re-measurement includes the residual baseline (``residual``, or swept)."""
        return self.residual or RESIDUAL in self.methods

    @property
    def neuron_methods(self) -> tuple[str, ...]:
        """The swept methods that steer neurons (all but ``residual_diffmean``)."""
        return tuple(m for m in self.methods if m != RESIDUAL)

    @property
    def selection(self) -> str:
        """``"lape"`` (``top_rates``) or ``"ap"`` (``ks``)."""
        return "ap" if self.ks is not None else "lape"

    @property
    def parameter(self) -> str:
        """The name of the selection parameter in the cells: ``"top_rate"`` or ``"k"``."""
        return "k" if self.ks is not None else "top_rate"

    def grid(self, n_layers: int) -> list[dict[str, Any]]:
        """Every cell's key, in grid order: method, then selection value (or layer), then alpha."""
        values = list(self.ks if self.ks is not None else self.top_rates or ())
        layers = list(self.residual_layers) if self.residual_layers is not None else residual_candidates(n_layers)
        cells = []
        for m in self.methods:
            name, axis = ("layer", layers) if m == RESIDUAL else (self.parameter, values)
            cells += [{"method": m, name: v, "alpha": a} for v in axis for a in self.alphas]
        return cells

    def evaluate_config(self, method: str, alpha: float, **more: Any) -> EvaluateConfig:
        """The :class:`~lang_neurons.config.EvaluateConfig` of the test re-measurement of ``method`` at ``alpha``."""
        shared = {f.name: getattr(self, f.name) for f in dataclasses.fields(EvaluateConfig) if hasattr(self, f.name)}
        shared.update(methods=(method,), alpha=alpha, translation_items=0, loss_texts=0, residual_layers=None)
        return EvaluateConfig(**{**shared, **more})

    def digest(self, stats: ActivationStats, test: bool = False) -> str:
        """sha256 of the settings that are not the grid (``test``: the test-only ones too), the
        model's fingerprint and the statistics' corpus: what a cell in the file must share."""
        data = {k: v for k, v in self.to_dict().items() if k not in GRID and (test or k not in _TEST_ONLY)}
        data.update(model=stats.model, corpus=stats.corpus, langs=list(stats.langs), site=stats.site)
        return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class SweepResult:
    """What :func:`sweep` returns.

    Attributes:
        cells: every cell's dev measurement, in grid order (key, ``rate``, ``quality``,
            ``score``, ``n``, ``split: "dev"``, per-target rates, and with intervals
            ``rate_interval`` and ``forcing_interval``).
        chosen: per method, its best cell; ``"overall"``: the best of all.
        test: per neuron method, :func:`~lang_neurons.study.evaluate`'s results (``to_dict()``)
            of its chosen cell on the test split.
        settings: the config, the targets, the prompts' split and the digest.
        projection: the projected cost in seconds (with ``time_budget``; ``None`` when nothing was left to run).
        reused: how many cells came from ``sweep_cells.jsonl`` instead of being generated.
    """

    cells: list[dict[str, Any]]
    chosen: dict[str, dict[str, Any]]
    test: dict[str, dict[str, Any]]
    settings: dict[str, Any]
    projection: dict[str, Any] | None = None
    reused: int = 0
    splits: dict[str, str] = field(
        default_factory=lambda: {
            "dev": "every cell and the choice (dev prompts, dev seeds)",
            "test": "the chosen settings' re-measurement (test prompts, test seeds)",
        }
    )

    def setting(self) -> Setting:
        """The chosen :class:`~lang_neurons.config.Setting`: the best neuron-method cell and, when
        swept, the best residual layer and alpha (``chosen.json``)."""
        best = max((self.chosen[m] for m in self.settings["methods"] if m != RESIDUAL), key=lambda c: c["score"])
        res = self.chosen.get(RESIDUAL)
        lape = best.get("top_rate") is not None
        return Setting(
            method=best["method"],
            alpha=best["alpha"],
            top_rate=best.get("top_rate"),
            k=best.get("k"),
            residual_layer=res["layer"] if res else None,
            residual_alpha=res["alpha"] if res else None,
            score=best["score"],
            sweep=self.settings.get("out"),
            filter_rate=self.settings["filter_rate"] if lape else None,
            activation_bar_ratio=self.settings["activation_bar_ratio"] if lape else None,
            prompts_split={k: self.settings[k] for k in PROMPTS_SPLIT},
        )

    def to_dict(self) -> dict[str, Any]:
        """``sweep.json``: the fields, JSON-ready, with the chosen setting."""
        return {**dataclasses.asdict(self), "setting": self.setting().to_dict()}


def _key(cell: Mapping[str, Any]) -> dict[str, Any]:
    return {k: cell[k] for k in ("method", "top_rate", "k", "layer", "alpha") if k in cell}


def format_sweep(result: SweepResult | Mapping[str, Any]) -> str:
    """The cells (dev), the choice and the test re-measurement as text tables (``metrics.txt``)."""
    from lang_neurons.protocols import format_results  # the test tables, as a run prints them

    data = result.to_dict() if isinstance(result, SweepResult) else result
    lines = ["dev split: every cell (rate Wilson, quality and score paired bootstrap, 95 %)"]
    lines.append(f"{'method':<19}{'set':<16}{'alpha':>7}  {'rate':<24}{'quality':<20}{'score':<20}{'neurons':>8}")
    for x in data["cells"]:
        where = (
            f"layer {x['layer']}"
            if "layer" in x
            else f"{'top_rate' if 'top_rate' in x else 'k'} {x.get('top_rate', x.get('k')):g}"
        )
        fi = x.get("forcing_interval")
        rate = format_rate(x["rate_interval"]) if "rate_interval" in x else f"{x['rate']:.2f}"
        q = format_interval(fi["quality"], digits=2) if fi else f"{x['quality']:.2f}"
        s = format_interval(fi["score"], digits=2) if fi else f"{x['score']:.2f}"
        lines.append(f"{x['method']:<19}{where:<16}{x['alpha']:>7g}  {rate:<24}{q:<20}{s:<20}{x['neurons']:>8}")
    lines += ["", "chosen on the dev split (highest forcing score; ties: the earlier cell):"]
    for m, x in data["chosen"].items():
        lines.append(f"  {m}: " + ", ".join(f"{k} {v}" for k, v in _key(x).items()) + f" (score {x['score']:.3f})")
    for m, results in data["test"].items():
        lines += ["", f"test split: {m} at its chosen setting", format_results(results)]
    return "\n".join(lines)
