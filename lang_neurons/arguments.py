"""The argument groups and value types of the command line (:mod:`lang_neurons.cli` builds the
parser from them).

Light imports only, as in :mod:`lang_neurons.cli`: the names the flags offer come from
:mod:`lang_neurons.choices`. Each value type is an argparse ``type=`` that turns a bad value into
one line saying what was expected.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lang_neurons.choices import (
    AP_SHARE,
    CACHE_CHECK_ENV,
    CACHE_CHECK_MODES,
    DEACTIVATE,
    DEFAULT_LANGS,
    DEFAULT_METHODS,
    DEFAULT_MODEL,
    MIN_SAMPLES,
    POOLINGS,
    PROMPT_KINDS,
    PROTOCOL_NAMES,
    RESIDUAL,
    SITES,
    TASK_NAMES,
    TRANSLATION_TEMPLATES,
)
from lang_neurons.errors import LangNeuronsError
from lang_neurons.languages import validate_lang


def number(cast: Callable[[str], Any], ok: Callable[[Any], bool], expected: str) -> Callable[[str], Any]:
    """An argparse type: ``cast`` the text, then require ``ok``; errors say what was ``expected``."""

    def parse(s: str) -> Any:
        try:
            v = cast(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {s!r}") from None
        if not ok(v):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {s!r}")
        return v

    parse.__doc__ = f"An argparse type: {expected}."
    return parse


positive_int = number(int, lambda v: v >= 1, "a positive integer")


non_negative_int = number(int, lambda v: v >= 0, "a whole number >= 0")


seed_number = number(int, lambda v: 0 <= v < 2**32, "a whole number in [0, 2**32)")


rate = number(float, lambda v: 0 < v <= 1, "a number in (0, 1]")


finite = number(float, math.isfinite, "a finite number")


def lang_code(s: str) -> str:
    """An argparse type: a language code (ISO 639-1 or FLORES-200), validated."""
    try:
        return validate_lang(s)
    except LangNeuronsError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def device_name(s: str) -> str:
    """An argparse type: a torch device name (torch is imported only when ``--device`` is given)."""
    import torch  # only when --device is given

    try:
        torch.device(s)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(f"unknown device {s!r}: use cpu, cuda, cuda:1, mps, ...") from None
    return s


def add_common(p: argparse.ArgumentParser) -> None:
    """The model, corpus, language, site and recording flags every recording command takes."""
    p.add_argument(
        "--model", default=DEFAULT_MODEL, help="embedded 'gemma-3-270m' (default), a hub name or a local HF folder"
    )
    p.add_argument(
        "--corpus",
        default="default",
        help="default (offline), flores, paws-x, wikipedia, culturax, or a folder of <lang>.txt files",
    )
    p.add_argument(
        "--parallel",
        action="store_true",
        help="a --corpus folder's files are line-aligned translations (line i of every file is the same text): "
        "enables BLEU/chrF on your own files",
    )
    p.add_argument(
        "--langs", default=",".join(DEFAULT_LANGS), help="comma-separated language codes (default: %(default)s)"
    )
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument(
        "--site",
        default="act",
        choices=list(SITES),
        help="which neurons (default: act; linear: every Linear output of every block, Kojima et al.)",
    )
    p.add_argument("--pooling", default="mean", choices=list(POOLINGS), help="sentence pooling for AP (default: mean)")
    p.add_argument("--batch-size", type=positive_int, default=16)
    p.add_argument("--max-length", type=positive_int, default=256, help="tokens kept per text (default: %(default)s)")
    p.add_argument("--max-per-lang", type=positive_int, default=None, help="texts per language to use (default: all)")
    p.add_argument(
        "--skip-bos",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="leave the BOS token out of every statistic (default; --no-skip-bos keeps it)",
    )
    p.add_argument(
        "--ap-sentences",
        type=positive_int,
        default=None,
        help="pooled sentences per language kept for AP (default: all); the pooled matrix takes 4 bytes x "
        "sentences x layers x neurons per layer: cap it on big models and at --site linear",
    )
    p.add_argument(
        "--held-out",
        type=float,
        default=0.2,
        help="share of each language held out for evaluation (default: %(default)s)",
    )
    p.add_argument("--seed", type=seed_number, default=0)
    p.add_argument("--dtype", default="float32", help="model dtype: float32 (default), bfloat16, float16")
    p.add_argument("--device", type=device_name, default=None, help="cpu, cuda, ... (default: cuda when available)")
    p.add_argument(
        "--n-devices",
        type=positive_int,
        default=None,
        help="split the model over this many GPUs (default: one device)",
    )
    p.add_argument(
        "--device-map",
        default=None,
        help="Hugging Face device map for a big model: auto, balanced, sequential, or a JSON object",
    )
    add_cache_check(p)
    p.add_argument(
        "--resume", action="store_true", help="continue an interrupted recording from its checkpoint in --out"
    )
    p.add_argument(
        "--checkpoint-every",
        type=int,
        default=100,
        help="batches between recording checkpoints in --out (0: none; default: %(default)s)",
    )
    p.add_argument("--force", action="store_true", help="recompute even if --out holds results of another run")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def add_selection_args(p: argparse.ArgumentParser) -> None:
    """The LAPE and AP selection flags (``identify`` and ``run``)."""
    p.add_argument("--top-rate", type=rate, default=0.01, help="LAPE: share of neurons kept (default: %(default)s)")
    p.add_argument("--filter-rate", type=rate, default=0.95, help="LAPE: probability quantile a neuron must pass")
    p.add_argument("--activation-bar", type=rate, default=0.95, help="LAPE: probability quantile a language must pass")
    p.add_argument(
        "--per-language",
        type=positive_int,
        default=None,
        help="LAPE, balanced variant: this many lowest-entropy neurons for every language instead of one global --top-rate",
    )
    p.add_argument(
        "--ap-share",
        type=rate,
        default=AP_SHARE,
        help="AP: top-k and bottom-k as this share of the site's neurons (default: %(default)s, the share Kojima et al.'s "
        "1,000 were of XGLM-564M's Linear outputs; 166 of the embedded model's 36,864)",
    )
    p.add_argument(
        "--top-k",
        type=int,
        default=None,
        help="AP: top-k neurons per language (default: --ap-share of the site's neurons)",
    )
    p.add_argument(
        "--bottom-k",
        type=int,
        default=None,
        help="AP: bottom-k neurons per language (default: --ap-share of the site's neurons)",
    )


def add_evaluation_args(p: argparse.ArgumentParser) -> None:
    """The steering-evaluation flags (``evaluate`` and ``run``): the protocol, the methods and
    alpha, the residual baseline, translation and the loss matrix, and :func:`add_generation_args`."""
    p.add_argument(
        "--protocol",
        default=None,
        choices=list(PROTOCOL_NAMES),
        help="a paper's protocol as a preset of the flags below (and of the neuron set); flags given "
        "explicitly still win and are listed as departures (docs/protocols.md)",
    )
    p.add_argument(
        "--methods",
        default="add",
        help="comma-separated neuron steering methods (default: %(default)s; the full "
        f"comparison: {','.join(DEFAULT_METHODS)})",
    )
    p.add_argument("--alpha", type=finite, default=1.0)
    p.add_argument("--no-residual", action="store_true", help="skip the residual-stream DiffMean baseline")
    p.add_argument(
        "--translation-items",
        type=non_negative_int,
        default=0,
        help="few-shot translation prompts per target, BLEU/chrF under each row (default: 0, skip; the full comparison: 20)",
    )
    p.add_argument(
        "--translation-template",
        default="few-shot",
        choices=list(TRANSLATION_TEMPLATES),
        help="few-shot: one-shot 'English: ...\\nGerman:' prompts (default); kojima: Kojima et al.'s zero-shot "
        "prompt, which does not name the target language",
    )
    p.add_argument(
        "--translation-tokens",
        type=positive_int,
        default=48,
        help="new tokens of each translation, cut at the first newline (default: %(default)s)",
    )
    p.add_argument(
        "--loss-texts",
        type=non_negative_int,
        default=40,
        help="held-out texts per language for the loss matrix (0: skip)",
    )
    add_generation_args(p)


def add_generation_args(p: argparse.ArgumentParser) -> None:
    """The targets, prompts, samples, decoding, controls, dev split and intervals of a steering
    measurement (``evaluate``, ``run`` and ``sweep``)."""
    p.add_argument("--targets", default=None, help="comma-separated targets (default: every language but --source)")
    p.add_argument(
        "--time-budget",
        type=number(float, lambda v: v > 0, "a positive number of minutes"),
        default=None,
        help="minutes the command may take: the projected time of the rest is printed once the unsteered "
        "generation is timed, and over the budget the command stops there with one line (default: no budget)",
    )
    p.add_argument(
        "--source",
        default="en",
        type=lang_code,
        help="language of the prompts and of the translation task's source (default: en)",
    )
    p.add_argument(
        "--samples",
        type=positive_int,
        default=100,
        help="samples per target and row (default: %(default)s: a rate's 95%% interval is then at most +-0.10)",
    )
    p.add_argument(
        "--prompts",
        default="source",
        choices=list(PROMPT_KINDS),
        help="source: continue held-out --source texts (prompted forcing, default); bos: unconditional samples",
    )
    p.add_argument(
        "--prompt-tokens", type=positive_int, default=16, help="tokens kept of each prompt (default: %(default)s)"
    )
    p.add_argument(
        "--dev-share",
        type=rate,
        default=0.2,
        help="share of the prompts on the dev side, where the residual layer and alpha are chosen (default: %(default)s)",
    )
    p.add_argument(
        "--greedy",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="decode greedily instead of sampling (--no-greedy: sample)",
    )
    p.add_argument("--temperature", type=finite, default=0.8, help="sampling temperature (default: %(default)s)")
    p.add_argument(
        "--repetition-penalty", type=finite, default=1.0, help="repetition penalty (1.0: off; Gurgurov et al.: 1.1)"
    )
    p.add_argument(
        "--deactivate",
        default="others",
        choices=list(DEACTIVATE),
        help="language arithmetic switches off every other language's neurons (others, default) or the --source's only",
    )
    p.add_argument(
        "--deactivate-value",
        type=finite,
        default=0.0,
        help="the value switched-off neurons get (default: 0; Gurgurov et al. also -1)",
    )
    p.add_argument(
        "--controls",
        type=non_negative_int,
        default=3,
        help="random-neuron control of each method, pooled over this many seeds (0: none; default: %(default)s)",
    )
    p.add_argument(
        "--residual-layers",
        default=None,
        help="comma-separated residual layers tried on the dev split (default: a third, half and two thirds of the depth)",
    )
    p.add_argument(
        "--dev-samples",
        type=positive_int,
        default=20,
        help="dev-split samples per target for each setting tried on the dev split (the residual layer and alpha; "
        "a sweep's cells) (default: %(default)s; with 8, two candidates 0.01 apart in dev score swapped between runs)",
    )
    p.add_argument(
        "--gen-batch-size",
        type=positive_int,
        default=50,
        help="sequences per generation batch (default: %(default)s: 100 samples in two batches; on Gemma-3-270M, "
        "2 cores, 50 gave 1.3x the tokens/s of 16 and 100 no more than 50)",
    )
    p.add_argument(
        "--generation-dtype",
        default="auto",
        choices=["auto", "bfloat16", "float32", "float16"],
        help="dtype of every generation and its fluency scoring (statistics and the loss matrix keep --dtype); "
        "default auto: for a float32 model, bfloat16 where the device computes it natively (a CPU with "
        "AVX512-BF16 or AMX: 1.8x the generation speed of float32 on Gemma-3-270M; a CUDA GPU with bf16), "
        "float32 elsewhere (on an AVX2-only CPU bfloat16 is over 20x slower); else the model's dtype. "
        "`lang-neurons doctor` says what auto picks here",
    )
    p.add_argument("--max-new-tokens", type=positive_int, default=32)
    p.add_argument(
        "--no-intervals",
        action="store_true",
        help=f"skip the 95%% intervals (Wilson for rates, bootstrap for BLEU/chrF and the loss matrix), which need "
        f"--samples >= {MIN_SAMPLES}",
    )


def add_sweep_args(p: argparse.ArgumentParser) -> None:
    """The grid and budget of ``lang-neurons sweep``, then :func:`add_generation_args` (samples,
    prompts, decoding) with the sweep's defaults."""
    p.add_argument(
        "--top-rates",
        default=None,
        help="comma-separated LAPE top rates in (0, 1] (default: 0.01,0.02 unless --ks)",
    )
    p.add_argument(
        "--ks", default=None, help="comma-separated AP per-language k (top-k = bottom-k = k), instead of --top-rates"
    )
    p.add_argument("--alphas", default="0.5,1,2", help="comma-separated steering strengths > 0 (default: %(default)s)")
    p.add_argument(
        "--methods",
        default="add",
        help=f"comma-separated neuron methods, and {RESIDUAL} for the residual baseline over --residual-layers "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--residual",
        action="store_true",
        help="re-measure the residual DiffMean baseline on the test split beside the chosen setting (default: off, "
        "as `run --setting` measures it; on when residual_diffmean is swept)",
    )
    p.add_argument(
        "--no-images", action="store_true", help="skip the PNG/SVG copies of the figures (made only if kaleido works)"
    )
    add_generation_args(p)


def add_task_args(p: argparse.ArgumentParser) -> None:
    """The downstream-task flags of ``evaluate`` (``--task`` and its file, language, items, split)."""
    p.add_argument(
        "--task",
        default=None,
        choices=list(TASK_NAMES),
        help="evaluate a downstream task instead of the generation study: baseline and each --methods toward each "
        "--targets (default: every language of the set), accuracy or F1 with intervals -> tasks.json (docs/tasks.md)",
    )
    p.add_argument(
        "--task-file", type=Path, default=None, help="a local .jsonl/.json/.parquet/.csv file in the task's schema"
    )
    p.add_argument("--task-lang", type=lang_code, default=None, help="the task's language (default: --source)")
    p.add_argument("--task-items", type=positive_int, default=None, help="the first N items only (default: all)")
    p.add_argument("--task-split", default=None, help="the hub split (default: the task's, test; xquad: validation)")
    p.add_argument("--task-batch-size", type=positive_int, default=8, help="sequences per forward pass (default: 8)")


def add_neurons_args(p: argparse.ArgumentParser) -> None:
    """The neuron-set folder, which set in it, and the model dtype/device/cache check a steering command uses."""
    p.add_argument("--neurons", required=True, type=Path, help="a folder written by `lang-neurons identify`")
    p.add_argument(
        "--set", default=None, choices=["lape", "ap"], help="which neuron set in that folder (default: lape if present)"
    )
    p.add_argument("--dtype", default="float32")
    p.add_argument("--device", type=device_name, default=None)
    add_cache_check(p)
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def add_cache_check(p: argparse.ArgumentParser) -> None:
    """The ``--cache-check`` flag of the commands that load a model to generate."""
    p.add_argument(
        "--cache-check",
        default=None,
        choices=list(CACHE_CHECK_MODES),
        help="when KV-cache generation disagrees with an uncached forward pass (checked at load): warn and "
        f"generate without the cache, fail, or skip the check (default: ${CACHE_CHECK_ENV} or warn)",
    )
