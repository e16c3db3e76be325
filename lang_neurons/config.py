"""Typed settings of each stage: what a recording, a LAPE or AP selection, a run folder and a
steering evaluation are made with.

Each config is a frozen dataclass whose fields are the keyword arguments of its stage, checked
once in ``__post_init__`` (a :class:`~lang_neurons.errors.LangNeuronsError` naming the keyword
and its ``--flag``), with ``to_dict()`` (JSON-ready) and ``from_dict()`` (a key it does not know
is an error; a missing key takes the field's default, so files written before a setting existed
still read as they meant).

    cfg = RecordConfig(site="post", batch_size=8)
    stats = ln.record(model, corpus, config=cfg)      # the same as ln.record(model, corpus, site="post", batch_size=8)

The library functions keep their keyword arguments; the pipeline builds these configs from the
command line and stores them: ``run.json`` is :meth:`RunConfig.to_dict`, a recording's
checkpoint key digests :meth:`RecordConfig.to_dict`, and ``metrics.json``'s ``settings`` and
``evaluation`` come from :class:`EvaluateConfig`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from lang_neurons.choices import (
    AP_SHARE,
    DEACTIVATE,
    DEFAULT_METHODS,
    EVAL_METHODS,
    POOLINGS,
    PROMPT_KINDS,
    RESAMPLES,
)
from lang_neurons.errors import LangNeuronsError

REDUCE_EVERY = 8
"""Batches per partial sum of a recording: part of what defines the exact float64 sums."""

_C = TypeVar("_C", bound="_Config")


class _Config:
    """``to_dict``/``from_dict`` shared by the configs (fields in declaration order; tuples as lists)."""

    def to_dict(self) -> dict[str, Any]:
        """The fields by name, in declaration order, JSON-ready (tuples as lists)."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls: type[_C], data: Mapping[str, Any]) -> _C:
        """The config of a dict of :meth:`to_dict`: an unknown key is an error, a missing key takes the default."""
        names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
        unknown = [k for k in data if k not in names]
        if unknown:
            raise LangNeuronsError(f"{cls.__name__} has no setting {unknown[0]!r}: the settings are {', '.join(names)}")
        return cls(**data)


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _whole(value: Any, low: int) -> bool:
    return not isinstance(value, bool) and isinstance(value, int) and value >= low


def _unit(name: str, flag: str, value: Any) -> None:
    """Refuse a rate outside (0, 1] (the LAPE quantiles and budget)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise LangNeuronsError(f"{name} ({flag}) must be in (0, 1], got {value!r}")


def _freeze(cfg: object, name: str) -> None:
    """Store a sequence field as a tuple (frozen configs hold no mutable lists)."""
    value = getattr(cfg, name)
    if value is not None and not isinstance(value, tuple):
        object.__setattr__(cfg, name, tuple(value))


@dataclass(frozen=True)
class RecordConfig(_Config):
    """How :func:`lang_neurons.record` streams a corpus (see it for each field): every setting
    that shapes the statistics, and so the key a recording checkpoint must match."""

    site: str = "act"
    pooling: str = "mean"
    batch_size: int = 16
    max_length: int | None = None
    ap_sentences: int | None = None
    padding_side: str = "right"
    skip_bos: bool = True
    reduce_every: int = REDUCE_EVERY

    def __post_init__(self) -> None:
        if self.pooling not in POOLINGS:
            raise LangNeuronsError(f"unknown pooling {self.pooling!r}: choose one of {', '.join(POOLINGS)}")
        if self.padding_side not in ("left", "right"):
            raise LangNeuronsError(f"padding_side must be 'left' or 'right', not {self.padding_side!r}")
        if not _whole(self.batch_size, 1) or (self.ap_sentences is not None and not _whole(self.ap_sentences, 1)):
            raise LangNeuronsError("batch_size and ap_sentences must be positive integers")
        if self.max_length is not None and not _whole(self.max_length, 1):
            raise LangNeuronsError(f"max_length (--max-length) must be a positive integer, got {self.max_length!r}")
        if not _whole(self.reduce_every, 1):
            raise LangNeuronsError(f"reduce_every must be a positive integer, got {self.reduce_every!r}")


@dataclass(frozen=True)
class RunConfig(_Config):
    """What determines the statistics of a ``lang-neurons run``/``identify`` folder: the model,
    the corpus and its split, and the recording. :meth:`to_dict` is ``run.json`` (compared on
    re-runs); the recording's ``batch_size``, ``padding_side`` and ``reduce_every`` are not in it."""

    model: str
    corpus: str
    langs: tuple[str, ...]
    max_per_lang: int | None = None
    held_out: float = 0.2
    seed: int = 0
    parallel: bool = False
    record: RecordConfig = field(default_factory=RecordConfig)

    def __post_init__(self) -> None:
        _freeze(self, "langs")
        if isinstance(self.record, Mapping):
            object.__setattr__(self, "record", RecordConfig.from_dict(self.record))
        if isinstance(self.held_out, bool) or not isinstance(self.held_out, (int, float)) or not 0 <= self.held_out < 1:
            raise LangNeuronsError(f"--held-out must be in [0, 1), got {self.held_out}")

    _RECORD_KEYS = ("site", "pooling", "max_length", "ap_sentences", "skip_bos")

    def to_dict(self) -> dict[str, Any]:
        """``run.json``: the run's fields and the recording's site, pooling, max_length,
        ap_sentences and skip_bos, in the file's order."""
        r = self.record
        return {
            "model": self.model,
            "corpus": self.corpus,
            "langs": list(self.langs),
            "site": r.site,
            "pooling": r.pooling,
            "max_length": r.max_length,
            "max_per_lang": self.max_per_lang,
            "ap_sentences": r.ap_sentences,
            "held_out": self.held_out,
            "seed": self.seed,
            "parallel": self.parallel,
            "skip_bos": r.skip_bos,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunConfig:
        """A ``run.json`` read back (an unknown key is an error; ``parallel`` and ``skip_bos``,
        absent from older files, take their defaults)."""
        known = [*cls._own_keys(), *cls._RECORD_KEYS]
        unknown = [k for k in data if k not in known]
        if unknown:
            raise LangNeuronsError(f"run settings have no {unknown[0]!r}: they are {', '.join(known)}")
        missing = [k for k in ("model", "corpus", "langs") if k not in data]
        if missing:
            raise LangNeuronsError(f"run settings lack {missing[0]!r}")
        record = RecordConfig(**{k: data[k] for k in cls._RECORD_KEYS if k in data})
        return cls(**{k: data[k] for k in cls._own_keys() if k in data}, record=record)

    @classmethod
    def _own_keys(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls) if f.name != "record"]


@dataclass(frozen=True)
class LapeConfig(_Config):
    """How :func:`lang_neurons.lape` selects (see :func:`lang_neurons.scoring.lape_select`)."""

    top_rate: float = 0.01
    filter_rate: float = 0.95
    activation_bar_ratio: float = 0.95
    per_language: int | None = None

    def __post_init__(self) -> None:
        _unit("top_rate", "--top-rate", self.top_rate)
        _unit("filter_rate", "--filter-rate", self.filter_rate)
        _unit("activation_bar_ratio", "--activation-bar", self.activation_bar_ratio)
        if self.per_language is not None and not _whole(self.per_language, 1):
            raise LangNeuronsError(f"per_language must be a whole number >= 1, got {self.per_language!r}")

    def params(self) -> dict[str, Any]:
        """The parameters a set selected so records (as in ``NeuronSet.params``, without the corpus)."""
        if self.per_language is not None:
            return {"per_language": self.per_language, "filter_rate": self.filter_rate}
        return {
            "top_rate": self.top_rate,
            "filter_rate": self.filter_rate,
            "activation_bar_ratio": self.activation_bar_ratio,
        }


@dataclass(frozen=True)
class ApConfig(_Config):
    """How :func:`lang_neurons.average_precision` selects: ``top_k``/``bottom_k`` neurons per
    language, each left out as ``share`` of the site's neurons."""

    top_k: int | None = None
    bottom_k: int | None = None
    share: float = AP_SHARE

    def __post_init__(self) -> None:
        if isinstance(self.share, bool) or not isinstance(self.share, (int, float)) or not 0 < self.share <= 0.5:
            raise LangNeuronsError(f"--ap-share must be in (0, 0.5], got {self.share}")
        for name in ("top_k", "bottom_k"):
            k = getattr(self, name)
            if k is not None and (isinstance(k, bool) or not isinstance(k, int)):
                raise LangNeuronsError(f"{name} must be a whole number of neurons, got {k!r}")

    def check(self, n_neurons: int, site: str) -> None:
        """Refuse a ``top_k``/``bottom_k`` outside ``[0, n_neurons]`` (the neurons at ``site``)."""
        for name in ("top_k", "bottom_k"):
            k = getattr(self, name)
            if k is not None and not 0 <= k <= n_neurons:
                raise LangNeuronsError(
                    f"--{name.replace('_', '-')} {k} but the model has {n_neurons} neurons at site {site!r}"
                )

    def params(self) -> dict[str, Any]:
        """The parameters a set selected so records, as in ``NeuronSet.params`` (a share-sized k
        with its share and what was asked)."""
        if self.top_k is None or self.bottom_k is None:
            return {"share": self.share, "requested": [self.top_k, self.bottom_k]}
        return {"top_k": self.top_k, "bottom_k": self.bottom_k}


GENERATION_DTYPES = (None, "auto", "bfloat16", "float32", "float16")
"""What :class:`EvaluateConfig`'s ``generation_dtype`` takes (``None``: the model's own dtype;
``"auto"``: bfloat16 where the model's device multiplies it natively, :func:`lang_neurons.hardware.generation_dtype`)."""


def check_generation_dtype(value: str | None) -> None:
    """Refuse, in one line, a ``generation_dtype`` that is not one of :data:`GENERATION_DTYPES`."""
    if value not in GENERATION_DTYPES:
        raise LangNeuronsError(
            f"generation_dtype is the dtype generation runs in: None (the model's), "
            f"{', '.join(map(str, GENERATION_DTYPES[1:]))}; got {value!r}"
        )


@dataclass(frozen=True)
class EvaluateConfig(_Config):
    """The settings of :func:`lang_neurons.study.evaluate` (see it for each field): which rows,
    samples, prompts and decoding, translation, loss matrix, intervals, controls and residual
    baseline. Checked here: methods, prompts, deactivate, controls, samples with intervals, and
    greedy decoding from BOS; what needs the neuron set or the corpus is checked by ``evaluate``."""

    targets: tuple[str, ...] | None = None
    methods: tuple[str, ...] = DEFAULT_METHODS
    alpha: float = 1.0
    samples: int = 30
    prompts: str = "source"
    prompt_tokens: int = 16
    dev_share: float = 0.2
    max_new_tokens: int = 32
    do_sample: bool = True
    temperature: float = 0.8
    repetition_penalty: float = 1.0
    deactivate: str = "others"
    deactivate_value: float = 0.0
    translation_items: int = 20
    translation_template: str = "few-shot"
    translation_tokens: int = 48
    source: str = "en"
    loss_texts: int = 40
    seed: int = 0
    intervals: bool = True
    resamples: int = RESAMPLES
    controls: int = 3
    residual: bool = True
    residual_layers: tuple[int, ...] | None = None
    residual_alphas: tuple[float, ...] = (1.0, 2.0)
    dev_samples: int = 20
    batch_size: int = 16
    generation_dtype: str | None = None

    def __post_init__(self) -> None:
        for name in ("targets", "methods", "residual_layers", "residual_alphas"):
            _freeze(self, name)
        if self.intervals:
            from lang_neurons.intervals import check_samples  # intervals imports torch; this module does not

            check_samples(self.samples)
        for m in self.methods:
            if m not in EVAL_METHODS:
                raise LangNeuronsError(f"unknown method {m!r}: choose from {', '.join(EVAL_METHODS)}")
        if self.deactivate not in DEACTIVATE:
            raise LangNeuronsError(
                f"deactivate is whose neurons go off, one of {', '.join(DEACTIVATE)}; got {self.deactivate!r}"
            )
        if self.prompts not in PROMPT_KINDS:
            raise LangNeuronsError(f"unknown prompts {self.prompts!r}: choose from {', '.join(PROMPT_KINDS)}")
        if not _whole(self.controls, 0):
            raise LangNeuronsError(f"controls is the number of random-control seeds (0: none), got {self.controls!r}")
        check_generation_dtype(self.generation_dtype)
        if not self.do_sample and self.prompts == "bos":
            raise LangNeuronsError(
                "greedy decoding from BOS gives one and the same sample every time: sample (do_sample=True) or use prompts='source'"
            )

    def pick(self, names: Sequence[str]) -> dict[str, Any]:
        """The fields ``names``, in that order, JSON-ready."""
        return {name: _plain(getattr(self, name)) for name in names}


SETTING_KIND = "lang_neurons.setting"
"""The ``kind`` of a ``chosen.json`` file (:class:`Setting`)."""


@dataclass(frozen=True)
class Setting(_Config):
    """A steering setting chosen by a sweep on its dev split (``lang-neurons sweep`` writes it
    as ``chosen.json``; ``lang-neurons run --setting chosen.json`` and
    :func:`lang_neurons.protocols.evaluate` (``setting=``) take it).

    Attributes:
        method: the neuron steering method (one of :data:`~lang_neurons.choices.EVAL_METHODS`).
        alpha: its strength.
        top_rate: the LAPE top rate of the neuron set (``None`` for an AP set).
        k: the AP set's top-k and bottom-k per language (``None`` for a LAPE set).
        residual_layer, residual_alpha: the residual DiffMean baseline's layer and alpha, when
            the sweep swept them (else ``None``: the evaluation chooses them itself).
        score: the setting's dev forcing score in the sweep.
        sweep: the sweep's folder (or another note of where the setting came from).
        split: the split it was chosen on (``"dev"``).
        filter_rate, activation_bar_ratio: a LAPE set's other selection parameters (``None``: not recorded).
        prompts_split: the settings that drew the sweep's dev/test split of the prompts (``source``,
            ``prompts``, ``prompt_tokens``, ``dev_share``, ``seed``): an evaluation with other ones
            could test on the prompts the setting was chosen on (``None``: not recorded).
    """

    method: str
    alpha: float
    top_rate: float | None = None
    k: int | None = None
    residual_layer: int | None = None
    residual_alpha: float | None = None
    score: float | None = None
    sweep: str | None = None
    split: str = "dev"
    filter_rate: float | None = None
    activation_bar_ratio: float | None = None
    prompts_split: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float)) or not math.isfinite(self.alpha):
            raise LangNeuronsError(f"the setting's alpha must be a finite number, got {self.alpha!r}")
        if self.method not in EVAL_METHODS:
            raise LangNeuronsError(
                f"the setting's method {self.method!r} is unknown: it must be one of {', '.join(EVAL_METHODS)}"
            )
        if (self.top_rate is None) == (self.k is None):
            raise LangNeuronsError("a setting names its neuron set by top_rate (LAPE) or k (AP): give exactly one")
        if self.top_rate is not None:
            _unit("top_rate", "the setting's top_rate", self.top_rate)
        if self.k is not None and not _whole(self.k, 1):
            raise LangNeuronsError(f"the setting's k must be a whole number >= 1, got {self.k!r}")
        if (self.residual_layer is None) != (self.residual_alpha is None):
            raise LangNeuronsError("a setting gives the residual layer and alpha together, or neither")

    @property
    def selection(self) -> str:
        """The neuron set it names: ``"lape"`` (``top_rate``) or ``"ap"`` (``k``)."""
        return "lape" if self.top_rate is not None else "ap"

    def selection_params(self) -> dict[str, Any]:
        """The selection parameters of its set: ``{"top_rate"}`` (with ``filter_rate`` and
        ``activation_bar_ratio`` when recorded) or ``{"top_k", "bottom_k"}``."""
        if self.top_rate is None:
            return {"top_k": self.k, "bottom_k": self.k}
        lape = {"filter_rate": self.filter_rate, "activation_bar_ratio": self.activation_bar_ratio}
        return {"top_rate": self.top_rate, **{k: v for k, v in lape.items() if v is not None}}

    def evaluate_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of :func:`lang_neurons.study.evaluate` it sets: ``methods``,
        ``alpha`` and, when it has them, ``residual_layers`` and ``residual_alphas``."""
        out: dict[str, Any] = {"methods": (self.method,), "alpha": self.alpha}
        if self.residual_layer is not None:
            out.update(residual_layers=(self.residual_layer,), residual_alphas=(self.residual_alpha,))
        return out

    def check_neurons(self, params: Mapping[str, Any]) -> None:
        """Refuse a neuron set (its ``params``) selected with other parameters than the setting's."""
        for key, value in self.selection_params().items():
            if params.get(key) != value:
                raise LangNeuronsError(
                    f"the setting's neurons are selected with {key}={value!r}, this set with {params.get(key)!r}: "
                    "select the set with the setting's parameters"
                )

    def check_split(self, config: Any, what: str = "the setting") -> None:
        """Refuse an evaluation ``config`` whose prompts' dev/test split is drawn with other
        settings than the sweep's (:attr:`prompts_split`): its test side could hold the prompts
        the setting was chosen on."""
        for key, value in (self.prompts_split or {}).items():
            if getattr(config, key) != value:
                raise LangNeuronsError(
                    f"{what} was chosen on the dev split drawn with {key}={value!r}, this run draws "
                    f"it with {getattr(config, key)!r}: leave that flag to the setting, or sweep with it"
                )

    def record(self) -> dict[str, Any]:
        """What an evaluation's ``settings["setting"]`` holds: :meth:`to_dict` and the :meth:`describe` line."""
        return {**self.to_dict(), "note": self.describe()}

    def describe(self) -> str:
        """One line: which settings came from the sweep's dev split."""
        chosen = ", ".join(f"{k} {v:g}" for k, v in self.selection_params().items() if k in ("top_rate", "top_k"))
        chosen = chosen.replace("top_k", "k")
        line = f"{chosen}, method {self.method} and alpha {self.alpha:g}"
        if self.residual_layer is not None:
            line += f", and the residual DiffMean layer {self.residual_layer} and alpha {self.residual_alpha:g}"
        where = f"the sweep in {self.sweep}" if self.sweep else "a sweep"
        score = f" (dev forcing score {self.score:.3f})" if self.score is not None else ""
        return f"{line} came from {where}, chosen on its {self.split} split{score}"

    def to_file(self) -> dict[str, Any]:
        """``chosen.json``: :meth:`to_dict` with ``"kind": SETTING_KIND``."""
        return {"kind": SETTING_KIND, **self.to_dict()}

    @classmethod
    def load(cls, path: str | os.PathLike) -> Setting:
        """The setting of a ``chosen.json`` (:meth:`to_file`); a missing or foreign file is one line."""
        p = Path(path)
        if p.is_dir():
            p = p / "chosen.json"
        if not p.is_file():
            raise LangNeuronsError(
                f"--setting {path}: no such file (give the chosen.json a `lang-neurons sweep` wrote)"
            )
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise LangNeuronsError(f"--setting {p} is not JSON ({e})") from None
        if not isinstance(data, dict) or data.get("kind") != SETTING_KIND:
            raise LangNeuronsError(f'--setting {p} is not a sweep\'s chosen setting (no "kind": {SETTING_KIND!r})')
        try:
            return cls.from_dict({k: v for k, v in data.items() if k != "kind"})
        except TypeError as e:  # a required field (method, alpha) is missing
            raise LangNeuronsError(f"--setting {p} is incomplete ({e}): use the chosen.json a sweep wrote") from None
