"""The configs of a parsed ``lang-neurons`` command line: ``--site``, ``--samples``, ... become
a :class:`~lang_neurons.config.RunConfig` (``run.json``), :class:`~lang_neurons.config.LapeConfig`
and :class:`~lang_neurons.config.ApConfig` (the selections) and an
:class:`~lang_neurons.config.EvaluateConfig`; :func:`evaluation_settings` is what ``lang-neurons
run`` compares to reuse ``metrics.json``. :mod:`lang_neurons.pipeline` runs the stages with them."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from lang_neurons.config import ApConfig, EvaluateConfig, LapeConfig, RecordConfig, RunConfig
from lang_neurons.errors import LangNeuronsError

if TYPE_CHECKING:
    from lang_neurons.sweep import SweepConfig


def record_config(args: argparse.Namespace) -> RecordConfig:
    """The recording settings of the command line (``--site``, ``--pooling``, ``--batch-size``, ...)."""
    return RecordConfig(
        site=args.site,
        pooling=args.pooling,
        batch_size=args.batch_size,
        max_length=args.max_length,
        ap_sentences=args.ap_sentences,
        skip_bos=args.skip_bos,
    )


def run_config(args: argparse.Namespace, langs: list[str]) -> RunConfig:
    """What determines the statistics in an output folder (``run.json``, compared on re-runs)."""
    return RunConfig(
        model=str(args.model),
        corpus=str(args.corpus),
        langs=tuple(langs),
        max_per_lang=args.max_per_lang,
        held_out=args.held_out,
        seed=args.seed,
        parallel=args.parallel,
        record=record_config(args),
    )


def lape_config(args: argparse.Namespace) -> LapeConfig:
    """The LAPE selection of the command line (``--top-rate``, ``--filter-rate``, ...)."""
    return LapeConfig(args.top_rate, args.filter_rate, args.activation_bar, args.per_language)


def ap_config(args: argparse.Namespace) -> ApConfig:
    """The AP selection of the command line (``--top-k``, ``--bottom-k``, ``--ap-share``)."""
    return ApConfig(args.top_k, args.bottom_k, args.ap_share)


def selection_params(args: argparse.Namespace, method: str) -> dict[str, Any]:
    """The parameters a neuron set of ``method`` is selected with (as in ``NeuronSet.params``)."""
    return (lape_config(args) if method == "lape" else ap_config(args)).params()


COMPARISON = (
    "controls",
    "residual",
    "residual_layers",
    "dev_samples",
    "batch_size",
    "prompts",
    "prompt_tokens",
    "dev_share",
    "do_sample",
    "temperature",
    "repetition_penalty",
    "deactivate",
    "deactivate_value",
    "translation_template",
    "translation_tokens",
    "generation_dtype",
)
"""The :class:`EvaluateConfig` fields of the controls, the residual baseline, the prompts and
the decoding (``metrics.json``'s ``evaluation["comparison"]``)."""


def _numbers(flag: str, text: str | None, cast: Any, example: str) -> tuple[Any, ...] | None:
    """The comma-separated numbers of a flag (``None`` when not given), or one line saying what was expected."""
    if text is None:
        return None
    try:
        return tuple(cast(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise LangNeuronsError(f"{flag} takes comma-separated numbers, e.g. {example}; got {text!r}") from None


def _residual_layers(args: argparse.Namespace) -> tuple[int, ...] | None:
    return _numbers("--residual-layers", args.residual_layers or None, int, "6,9,12")


def sweep_config(args: argparse.Namespace, targets: list[str] | None) -> SweepConfig:
    """The grid and settings of ``lang-neurons sweep`` (``--top-rates``, ``--alphas``, ...)."""
    from lang_neurons.sweep import SweepConfig  # the sweep package imports torch

    return SweepConfig(
        top_rates=_numbers("--top-rates", args.top_rates, float, "0.005,0.01,0.02"),
        ks=_numbers("--ks", args.ks, int, "100,200"),
        alphas=_numbers("--alphas", args.alphas, float, "0.5,1,2") or (),
        methods=tuple(m.strip() for m in args.methods.split(",") if m.strip()),
        residual_layers=_residual_layers(args),
        residual=args.residual,
        **_generation(args, targets),
    )


def evaluate_config(args: argparse.Namespace, methods: list[str], targets: list[str] | None) -> EvaluateConfig:
    """The steering evaluation of the command line (``--samples``, ``--controls``, ...)."""
    layers = _residual_layers(args)
    return EvaluateConfig(
        methods=tuple(methods),
        alpha=args.alpha,
        translation_items=args.translation_items,
        translation_template=args.translation_template,
        translation_tokens=args.translation_tokens,
        loss_texts=args.loss_texts,
        residual=not args.no_residual,
        residual_layers=tuple(layers) if layers is not None else None,
        **_generation(args, targets),
    )


def _generation(args: argparse.Namespace, targets: list[str] | None) -> dict[str, Any]:
    """The settings of :func:`~lang_neurons.arguments.add_generation_args` (targets, prompts,
    samples, decoding, controls, dev split, intervals) that ``evaluate``, ``run`` and ``sweep`` share."""
    return dict(
        targets=tuple(targets) if targets is not None else None,
        samples=args.samples,
        prompts=args.prompts,
        prompt_tokens=args.prompt_tokens,
        dev_share=args.dev_share,
        max_new_tokens=args.max_new_tokens,
        do_sample=not args.greedy,
        temperature=args.temperature,
        repetition_penalty=args.repetition_penalty,
        deactivate=args.deactivate,
        deactivate_value=args.deactivate_value,
        source=args.source,
        seed=args.seed,
        intervals=not args.no_intervals,
        controls=args.controls,
        dev_samples=args.dev_samples,
        batch_size=args.gen_batch_size,
        generation_dtype=args.generation_dtype,  # "auto" is decided on the model's device (lang_neurons.hardware)
    )


def evaluation_settings(
    args: argparse.Namespace, run: RunConfig, config: EvaluateConfig, sweep_alphas: list[float]
) -> dict[str, Any]:
    """What ``lang-neurons run`` compares to reuse ``metrics.json`` (its ``evaluation``): the
    run, the LAPE selection, the evaluation's settings, the sweep, the evaluated set and the protocol."""
    chosen = args.evaluate_set
    return {
        "run": run.to_dict(),
        "lape": lape_config(args).params(),
        **config.pick(
            ("methods", "targets", "source", "alpha", "samples", "max_new_tokens", "translation_items", "loss_texts")
        ),
        "sweep_alphas": sweep_alphas,
        "intervals": config.intervals,
        "comparison": config.pick(COMPARISON),
        "evaluate_set": chosen,
        "neurons": selection_params(args, chosen),
        "protocol": args.protocol,
    }
