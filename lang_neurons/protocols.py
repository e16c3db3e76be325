"""The three papers' protocols, as literally as this library allows, as named presets.

    p = ln.protocol("kojima")                  # or "tang", "gurgurov"
    neurons = p.select(stats)                  # AP top/bottom 1000 (Kojima), LAPE 1 % (Tang, Gurgurov)
    results = ln.protocols.evaluate(model, neurons, stats, held_out, "kojima", samples=30)

A :class:`Protocol` holds how its paper selects neurons (``identify``), the keyword arguments of
:func:`lang_neurons.study.evaluate` that reproduce its steering measurement (``evaluate``), and
every remaining departure from the paper's released code. Our additions (random controls, the
residual DiffMean baseline, intervals, quality, the loss matrix) stay on in every preset and are
listed as additions. :func:`evaluate` runs a preset (keyword arguments override it and are then
listed as departures too) and, for Tang et al., the deactivate-one-language generation
(:func:`deactivation_generation`). ``lang-neurons run/evaluate --protocol NAME`` do the same.
See ``docs/protocols.md``.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from lang_neurons import intervals as iv
from lang_neurons import steering as st
from lang_neurons import study
from lang_neurons.config import Setting
from lang_neurons.controls import random_controls
from lang_neurons.corpora import LanguageCorpus
from lang_neurons.errors import LangNeuronsError
from lang_neurons.evaluation import LanguageIdentifier
from lang_neurons.generation import PassBar, generate, planned_passes
from lang_neurons.models import HookedModel, computing_in, parse_dtype
from lang_neurons.neurons import NeuronSet, average_precision, lape
from lang_neurons.recording import ActivationStats
from lang_neurons.study.projection import row_passes

ADDITIONS = (
    "random-neuron controls: the same intervention on random neurons with the set's per-layer counts "
    "(row <method>:random, 3 seeds pooled)",
    "the residual-stream DiffMean baseline (row residual_diffmean), its layer and alpha chosen on a dev split of the prompts",
    "95 % intervals on every number (Wilson for rates; paired bootstrap for quality, BLEU/chrF and the loss matrix)",
    "quality and forcing score of every row's continuations (fluency under the unsteered model)",
)
"""What every preset measures beyond its paper (ours, not departures)."""

_LOSS_MATRIX = "the loss-change matrix (Tang et al.'s measure) on up to 40 held-out texts per language"
_CORPUS = (
    "texts: --corpus (default: the embedded parallel corpus, 583 texts per language, 20 % held out) and "
    "--model (default: Gemma-3-270M), not the paper's data and models"
)
_MLP_SITE = (
    "neurons: one MLP site (--site, default act = act_fn(gate) for gated MLPs); theirs are the outputs of every "
    "Linear layer, attention included: --site linear"
)


@dataclass(frozen=True)
class Protocol:
    """One paper's protocol as a preset.

    Attributes:
        name: the preset's name (``--protocol NAME``).
        paper: the paper it follows.
        code: where the paper's released code is.
        identify: how its neurons are selected: ``{"method": "lape" | "ap", ...}`` with the
            parameters of :func:`~lang_neurons.neurons.lape` or :func:`~lang_neurons.neurons.average_precision`.
        evaluate: keyword arguments of :func:`lang_neurons.study.evaluate`.
        departures: every remaining difference from the paper's code, one sentence each.
        additions: what the preset measures beyond the paper (ours).
        deactivation_generation: settings of :func:`deactivation_generation` (``template``,
            ``value``) when the protocol includes it (Tang et al.), else ``None``.
    """

    name: str
    paper: str
    code: str
    identify: Mapping[str, Any]
    evaluate: Mapping[str, Any]
    departures: tuple[str, ...]
    additions: tuple[str, ...] = ADDITIONS
    deactivation_generation: Mapping[str, Any] | None = field(default=None)

    def __post_init__(self) -> None:
        object.__setattr__(self, "identify", MappingProxyType(dict(self.identify)))
        object.__setattr__(self, "evaluate", MappingProxyType(dict(self.evaluate)))
        if self.deactivation_generation is not None:
            object.__setattr__(self, "deactivation_generation", MappingProxyType(dict(self.deactivation_generation)))

    @property
    def neuron_set(self) -> str:
        """Which neuron set the protocol evaluates: ``"lape"`` or ``"ap"``."""
        return str(self.identify["method"])

    @property
    def selection(self) -> dict[str, Any]:
        """The selection parameters of :attr:`neuron_set` (``identify`` without ``method``)."""
        return {k: v for k, v in self.identify.items() if k != "method"}

    def select(self, stats: ActivationStats, *, progress: bool = False) -> NeuronSet:
        """The protocol's neuron set, selected from ``stats``."""
        if self.neuron_set == "ap":
            return average_precision(stats, progress=progress, **self.selection)
        return lape(stats, **self.selection)

    def to_dict(self) -> dict[str, Any]:
        """Everything the preset sets and says, JSON-ready."""
        out = {
            "name": self.name,
            "paper": self.paper,
            "code": self.code,
            "identify": dict(self.identify),
            "evaluate": {k: list(v) if isinstance(v, tuple) else v for k, v in self.evaluate.items()},
            "departures": list(self.departures),
            "additions": list(self.additions),
        }
        if self.deactivation_generation is not None:
            out["deactivation_generation"] = dict(self.deactivation_generation)
        return out


_LAPE = {"method": "lape", "top_rate": 0.01, "filter_rate": 0.95, "activation_bar_ratio": 0.95}
_COMMON = {"controls": 3, "residual": True, "loss_texts": 40, "source": "en", "alpha": 1.0, "prompt_tokens": 16}
_GREEDY_PROMPTED = {
    "prompts": "source",
    "dev_share": 0.1,
    "samples": 100,
    "max_new_tokens": 32,
    "do_sample": False,
    "temperature": 0.8,
    "repetition_penalty": 1.1,
    "translation_items": 0,
}

PROTOCOLS: dict[str, Protocol] = {
    "kojima": Protocol(
        name="kojima",
        paper="Kojima et al. 2024, On the Multilingual Ability of Decoder-based Pre-trained Language Models: "
        "Finding and Controlling Language-Specific Neurons (NAACL)",
        code="https://github.com/kojima-takeshi188/lang_neuron",
        identify={"method": "ap", "top_k": 1000, "bottom_k": 1000},
        evaluate={
            **_COMMON,
            "methods": ("pin",),
            "prompts": "bos",
            "samples": 100,
            "max_new_tokens": 64,
            "do_sample": True,
            "temperature": 0.8,
            "repetition_penalty": 1.0,
            "deactivate": "others",
            "deactivate_value": 0.0,
            "dev_share": 0.2,
            "translation_items": 20,
            "translation_template": "kojima",
            "translation_tokens": 128,
        },
        departures=(
            _MLP_SITE,
            "sentence pooling of the AP scores and of the median: the mean over a sentence's tokens, BOS left out "
            "(--pooling mean, ours)",
            _CORPUS,
            "targets: every language of the set but --source (en), which is the translation source",
            "translation: up to 20 held-out items of --corpus per target from en, the continuation cut at its first "
            "newline; BLEU and chrF with sacrebleu (the paper's BLEU implementation is not checked)",
        ),
        additions=(*ADDITIONS, _LOSS_MATRIX),
    ),
    "tang": Protocol(
        name="tang",
        paper="Tang et al. 2024, Language-Specific Neurons: The Key to Multilingual Capabilities in Large Language Models (ACL)",
        code="https://github.com/RUCAIBox/Language-Specific-Neurons",
        identify=_LAPE,
        evaluate={**_COMMON, **_GREEDY_PROMPTED, "methods": ("add",), "deactivate": "others", "deactivate_value": 0.0},
        departures=(
            _CORPUS,
            "loss matrix: mean token loss on up to 40 held-out texts of --corpus per language (theirs: Wikipedia "
            "validation texts), the neurons set to 0 as theirs",
            "deactivation generation: the questions are held-out texts of each language cut to 16 tokens, in their "
            "'Q: {text}\\nA:' template (theirs: their own question set); up to 100 per language, 32 new tokens (ours); "
            "fastText lid.176 decides whether an output stays in the language",
        ),
        additions=(
            "steering toward each target (row add: the other languages' neurons off, then the target's mean added; "
            "Gurgurov et al.'s language arithmetic) with Tang et al.'s decoding (greedy, repetition penalty 1.1), "
            "on held-out en prompts",
            *ADDITIONS,
            "a random control of the deactivation generation (the same count of random neurons per layer set to 0)",
        ),
        deactivation_generation={"template": "Q: {text}\nA:", "value": 0.0},
    ),
    "gurgurov": Protocol(
        name="gurgurov",
        paper="Gurgurov et al. 2025, Language Arithmetics: Towards Systematic Language Neuron Identification and Manipulation",
        code="https://github.com/d-gurgurov/Language-Neurons-Manipulation",
        identify=_LAPE,
        evaluate={**_COMMON, **_GREEDY_PROMPTED, "methods": ("add",), "deactivate": "source", "deactivate_value": 0.0},
        departures=(
            _CORPUS,
            "top_rate 0.01: they sweep 0.01 to 0.05; the preset takes 0.01 (--top-rate for another)",
            "switched-off neurons are set to 0; their other value is -1 (--deactivate-value -1)",
            "prompts: held-out --source (en) texts cut to 16 tokens, 10 % of them on the dev side (ours); "
            "32 new tokens (ours)",
            "translation is not measured (--translation-items N adds it, few-shot prompts)",
        ),
        additions=(*ADDITIONS, _LOSS_MATRIX),
    ),
}
"""The presets by name."""


def protocol(name: str | Protocol) -> Protocol:
    """The preset called ``name`` (a :class:`Protocol` is returned as it is)."""
    if isinstance(name, Protocol):
        return name
    if name not in PROTOCOLS:
        raise LangNeuronsError(f"unknown protocol {name!r}: choose from {', '.join(PROTOCOLS)}")
    return PROTOCOLS[name]


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return list(a) == list(b)
    return bool(a == b)


def departures(
    p: Protocol, overrides: Mapping[str, Any], neurons: NeuronSet | None = None, model_dtype: Any = None
) -> list[str]:
    """``p.departures`` plus this run's: an ``overrides`` value other than the preset's, a ``generation_dtype``
    other than ``model_dtype`` (when known), a neuron set of another method or parameters than ``p.identify``."""
    out = list(p.departures)
    if (dtype := overrides.get("generation_dtype")) and (model_dtype is None or parse_dtype(dtype) != model_dtype):
        out.append(
            f"generation and its fluency scoring in {dtype}; statistics and the loss matrix in the model's dtype"
        )
    for key, value in overrides.items():
        if key in p.evaluate and not _same(value, p.evaluate[key]):
            out.append(f"{key}={value!r} given (the preset: {p.evaluate[key]!r})")
    if neurons is not None:
        if neurons.method != p.neuron_set:
            out.append(f"the neuron set is {neurons.method.upper()} (the preset: {p.neuron_set.upper()})")
        else:
            for key, value in p.selection.items():
                if neurons.params.get(key) != value:
                    out.append(
                        f"the neurons were selected with {key}={neurons.params.get(key)!r} (the preset: {value!r})"
                    )
    return out


def evaluate(
    model: HookedModel,
    neurons: NeuronSet,
    stats: ActivationStats,
    held_out: LanguageCorpus,
    name: str | Protocol,
    *,
    setting: Setting | None = None,
    **overrides: Any,
) -> study.EvaluationResult:
    """:func:`lang_neurons.study.evaluate` with the preset's settings (``overrides`` win) and,
    when the protocol has one, its :func:`deactivation_generation` (``results["deactivation_generation"]``,
    with the same samples, prompt length, decoding, controls and seed). ``results["settings"]``
    gains ``protocol``, ``paper``, ``code``, ``departures`` (the preset's and this run's, see
    :func:`departures`) and ``additions``. ``setting``: a sweep's chosen
    :class:`~lang_neurons.config.Setting` (``neurons`` selected with its parameters): its method,
    alpha and residual layer/alpha override the preset's, one departure says they came from the
    sweep's dev split, and ``settings["setting"]`` holds it."""
    p = protocol(name)
    if setting is not None:
        setting.check_neurons(neurons.params)
        overrides = {**setting.evaluate_kwargs(), **overrides}
    kwargs = {**p.evaluate, **overrides}
    results = study.evaluate(model, neurons, stats, held_out, **kwargs)
    dtype = results.settings["generation_dtype"]  # "auto" decided for this model's device
    if p.deactivation_generation is not None:
        keys: tuple[str, ...] = ("samples", "prompt_tokens", "max_new_tokens", "do_sample", "temperature")
        keys += ("repetition_penalty", "controls", "lid", "seed", "batch_size", "intervals", "progress")  # as given
        with computing_in(model, dtype):
            results.deactivation_generation = deactivation_generation(
                model, neurons, held_out, **{k: kwargs[k] for k in keys if k in kwargs}, **p.deactivation_generation
            )
    decided = {**overrides, "generation_dtype": dtype} if "generation_dtype" in overrides else overrides
    listed = departures(p, decided, neurons, getattr(model.cfg, "dtype", None))
    listed += [setting.describe()] if setting is not None else []
    results.settings.update(protocol=p.name, paper=p.paper, code=p.code, departures=listed, additions=list(p.additions))
    if setting is not None:
        results.settings["setting"] = setting.record()
    return results


def _language_prompts(held_out: LanguageCorpus, lang: str, tokenizer: Any, prompt_tokens: int, seed: int) -> list[str]:
    """``lang``'s held-out texts, each cut to ``prompt_tokens`` tokens, shuffled with ``seed``."""
    texts = [t for t in held_out[lang] if t.strip()]
    texts = [tokenizer.decode(tokenizer.encode(t, add_special_tokens=False)[:prompt_tokens]).strip() for t in texts]
    random.Random(seed).shuffle(texts)
    return texts


def deactivation_generation(
    model: HookedModel,
    neurons: NeuronSet,
    held_out: LanguageCorpus,
    *,
    langs: Sequence[str] | None = None,
    samples: int = 100,
    prompt_tokens: int = 16,
    template: str = "Q: {text}\nA:",
    max_new_tokens: int = 32,
    do_sample: bool = False,
    temperature: float = 0.8,
    repetition_penalty: float = 1.1,
    value: float = 0.0,
    controls: int = 1,
    lid: LanguageIdentifier | None = None,
    seed: int = 0,
    batch_size: int = 16,
    intervals: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """Tang et al.'s deactivate-one-language generation: per language ``L``, prompts in ``L``
    (held-out texts cut to ``prompt_tokens`` tokens, put into ``template``), generated unsteered
    and with ``L``'s neurons set to ``value``; the measure is the share of outputs fastText labels
    ``L`` (deactivating a language's own neurons should make the model leave it).

    ``samples`` prompts per language: greedy decoding uses each held-out text once (fewer when
    there are fewer), sampling cycles through them. With ``controls`` > 0 the same count of
    random neurons per layer (:func:`~lang_neurons.controls.random_controls`, seeds pooled) is
    set to ``value`` too. Returns ``{"settings", "langs", "per_language": {L: {"n", "neurons",
    "unsteered_rate", "deactivated_rate", ["control_rate"], "examples", and with ``intervals``
    "<row>_interval" (Wilson)}}, "summary": {row: rate}, ["summary_interval"]}``.
    """
    if "{text}" not in template:
        raise LangNeuronsError(f"the deactivation-generation template must contain {{text}}, got {template!r}")
    lid = lid or LanguageIdentifier()
    langs = [x for x in (langs or neurons.langs) if x in held_out.langs]
    if not langs:
        raise LangNeuronsError(
            f"deactivation generation needs held-out texts of a language of the set ({', '.join(neurons.langs)})"
        )
    sets = random_controls(neurons, range(controls)) if controls else []
    gen: dict[str, Any] = dict(
        max_new_tokens=max_new_tokens,
        do_sample=do_sample,
        temperature=temperature,
        repetition_penalty=repetition_penalty,
        seed=seed,
        batch_size=batch_size,
        progress=False,
    )
    rows = ["unsteered", "deactivated", *(["control"] if sets else [])]
    counts = {r: [0, 0] for r in rows}
    per_language: dict[str, Any] = {}
    steps = planned_passes(samples, batch_size, max_new_tokens, score_batch=0)
    control_steps = row_passes(len(sets), samples, batch_size, max_new_tokens, scored=False) if sets else 0
    bar = PassBar(model, len(langs) * (2 * steps + control_steps), "deactivation generation", progress)
    with bar:  # counts decoding steps; closes on any exit
        for lang in langs:
            pool = _language_prompts(held_out, lang, model.tokenizer, prompt_tokens, seed)
            n = min(samples, len(pool)) if not do_sample else samples
            if intervals:
                iv.check_samples(n)
            prompts = [template.format(text=pool[i % len(pool)]) for i in range(n)]
            off = st.deactivate(neurons, lang, value)
            outputs: dict[str, list[str]] = {}
            with bar.step(f"{lang} unsteered", steps):
                outputs["unsteered"] = generate(model, prompts, **gen)
            with bar.step(f"{lang} deactivated", steps):
                outputs["deactivated"] = generate(model, prompts, hooks=off, **gen)
            if sets:
                with bar.step(f"{lang} control", control_steps):
                    controls_off = [st.deactivate(c, lang, value) for c in sets]
                    outputs["control"] = study.pooled_samples(model, controls_off, prompts, n, gen)
            per_language[lang] = _deactivation_entry(
                lid, lang, rows, outputs, prompts, n, off.n_neurons, counts, intervals
            )
    settings = {
        "samples": samples,
        "prompt_tokens": prompt_tokens,
        "template": template,
        "max_new_tokens": max_new_tokens,
        "do_sample": do_sample,
        "temperature": temperature,
        "repetition_penalty": repetition_penalty,
        "value": value,
        "controls": controls,
        "seed": seed,
        "measure": "share of outputs fastText labels the prompts' language",
    }
    out: dict[str, Any] = {
        "settings": settings,
        "langs": langs,
        "per_language": per_language,
        "summary": {r: k / n for r, (k, n) in counts.items()},
    }
    if intervals:
        out["summary_interval"] = {r: iv.wilson_interval(k, n).to_dict() for r, (k, n) in counts.items()}
    return out


def _deactivation_entry(
    lid: LanguageIdentifier,
    lang: str,
    rows: list[str],
    outputs: dict[str, list[str]],
    prompts: list[str],
    n: int,
    neurons: int,
    counts: dict[str, list[int]],
    intervals: bool,
) -> dict[str, Any]:
    """One language's rates (and intervals, examples) of the deactivation generation; adds its hits to ``counts``."""
    entry: dict[str, Any] = {"n": n, "neurons": neurons}
    for r in rows:
        hits = sum(lid.rate(outputs[r], lang).hits)
        counts[r][0] += hits
        counts[r][1] += n
        entry[f"{r}_rate"] = hits / n
        if intervals:
            entry[f"{r}_interval"] = iv.wilson_interval(hits, n).to_dict()
    entry["examples"] = [{"prompt": prompts[i], **{r: outputs[r][i] for r in rows}} for i in range(min(3, n))]
    return entry


def format_deactivation(result: Mapping[str, Any]) -> str:
    """:func:`deactivation_generation`'s result as a table (with intervals when it has them)."""
    rows = [
        r for r in ("unsteered", "deactivated", "control") if f"{r}_rate" in next(iter(result["per_language"].values()))
    ]
    s = result["settings"]
    decoding = "greedy" if not s["do_sample"] else f"sampled at temperature {s['temperature']:g}"
    lines = [
        f"deactivation generation (Tang et al.): {s['measure']}, the language's own neurons set to {s['value']:g}; "
        f"{decoding}, repetition penalty {s['repetition_penalty']:g}, {s['max_new_tokens']} new tokens",
        f"{'lang':<8}" + "".join(f"{r:<24}" for r in rows) + f"{'neurons':>8}",
    ]

    def cell(entry: Mapping[str, Any], r: str) -> str:
        i = entry.get(f"{r}_interval")
        return study.format_rate(i) if i else f"{entry[f'{r}_rate']:.2f} n={entry['n']}"

    for lang, entry in result["per_language"].items():
        lines.append(f"{lang:<8}" + "".join(f"{cell(entry, r):<24}" for r in rows) + f"{entry['neurons']:>8}")
    pooled = result.get("summary_interval")
    lines.append(
        f"{'pooled':<8}"
        + "".join(
            f"{(study.format_rate(pooled[r]) if pooled else format(result['summary'][r], '.2f')):<24}" for r in rows
        )
    )
    return "\n".join(line.rstrip() for line in lines)


def format_results(results: Mapping[str, Any]) -> str:
    """:func:`lang_neurons.study.format_table`, then the protocol, its departures and additions,
    and the deactivation generation when the results have them (``metrics.txt``)."""
    lines = [study.format_table(results)]
    settings = results["settings"]
    if "protocol" in settings:
        lines += [
            "",
            f"protocol: {settings['protocol']} ({settings['paper']}; code: {settings['code']})",
            "departures:",
        ]
        lines += [f"  - {d}" for d in settings["departures"]]
        lines += ["additions (ours):", *[f"  - {a}" for a in settings["additions"]]]
    elif "setting" in settings:  # under a protocol the departures say it
        lines += ["", f"setting: {settings['setting']['note']}"]
    if "deactivation_generation" in results:
        lines += ["", format_deactivation(results["deactivation_generation"])]
    return "\n".join(lines)
