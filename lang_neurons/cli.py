"""Command line: a thin layer over the library.

    lang-neurons identify --method lape --out runs/demo
    lang-neurons run --out runs/demo          # the whole study and an HTML report

This module parses arguments only: its imports are light (:mod:`lang_neurons.choices` holds the
names the flags offer), so ``--help`` and argument errors answer before torch is imported; the
commands themselves live in :mod:`lang_neurons.commands`.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

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
    SITES,
    STEERING_METHODS,
    TASK_NAMES,
    TRANSLATION_TEMPLATES,
)
from lang_neurons.errors import LangNeuronsError
from lang_neurons.health import LOCK_FILE
from lang_neurons.languages import validate_lang


def _number(cast: Callable[[str], Any], ok: Callable[[Any], bool], expected: str) -> Callable[[str], Any]:
    """An argparse type: ``cast`` the text, then require ``ok``; errors say what was ``expected``."""

    def parse(s: str) -> Any:
        try:
            v = cast(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {s!r}") from None
        if not ok(v):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {s!r}")
        return v

    return parse


_positive_int = _number(int, lambda v: v >= 1, "a positive integer")


_non_negative_int = _number(int, lambda v: v >= 0, "a whole number >= 0")


_seed = _number(int, lambda v: 0 <= v < 2**32, "a whole number in [0, 2**32)")


_rate = _number(float, lambda v: 0 < v <= 1, "a number in (0, 1]")


_finite = _number(float, math.isfinite, "a finite number")


def _lang_code(s: str) -> str:
    try:
        return validate_lang(s)
    except LangNeuronsError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _device_name(s: str) -> str:
    import torch  # only when --device is given

    try:
        torch.device(s)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(f"unknown device {s!r}: use cpu, cuda, cuda:1, mps, ...") from None
    return s


class _Parser(argparse.ArgumentParser):
    """Argument errors as one stderr line (exit 2), like every other error of the CLI."""

    commands: dict[str, _Parser]
    """The subcommands' parsers by name (set by :func:`build_parser`)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _add_common(p: argparse.ArgumentParser) -> None:
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
    p.add_argument("--batch-size", type=_positive_int, default=16)
    p.add_argument("--max-length", type=_positive_int, default=256, help="tokens kept per text (default: %(default)s)")
    p.add_argument("--max-per-lang", type=_positive_int, default=None, help="texts per language to use (default: all)")
    p.add_argument(
        "--skip-bos",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="leave the BOS token out of every statistic (default; --no-skip-bos keeps it)",
    )
    p.add_argument(
        "--ap-sentences",
        type=_positive_int,
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
    p.add_argument("--seed", type=_seed, default=0)
    p.add_argument("--dtype", default="float32", help="model dtype: float32 (default), bfloat16, float16")
    p.add_argument("--device", type=_device_name, default=None, help="cpu, cuda, ... (default: cuda when available)")
    p.add_argument(
        "--n-devices",
        type=_positive_int,
        default=None,
        help="split the model over this many GPUs (default: one device)",
    )
    p.add_argument(
        "--device-map",
        default=None,
        help="Hugging Face device map for a big model: auto, balanced, sequential, or a JSON object",
    )
    _add_cache_check(p)
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


def build_parser() -> _Parser:
    """The ``lang-neurons`` argument parser: every command and flag (the docs' CLI reference is its help)."""
    parser = _Parser(prog="lang-neurons", description="Find and steer language-specific neurons.")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)
    parser.commands = sub.choices
    p = sub.add_parser("identify", help="record statistics and select language-specific neurons")
    _add_common(p)
    p.add_argument("--method", default="lape", choices=["lape", "ap"])
    _add_selection_args(p)

    p = sub.add_parser(
        "import-masks", help="import a published LAPE-layout mask file (.pth) into a folder steer/evaluate use"
    )
    p.add_argument(
        "file",
        type=Path,
        help="torch file: a list over languages of lists over layers of LongTensors of neuron indices",
    )
    _add_common(p)

    p = sub.add_parser("steer", help="print steered generations next to unsteered ones")
    _add_neurons_args(p)
    p.add_argument("--target", required=True, type=_lang_code, help="language to steer toward, e.g. de")
    p.add_argument("--method", default="add", help=f"one of {', '.join(STEERING_METHODS)} (default: add)")
    p.add_argument("--alpha", type=_finite, default=1.0, help="strength for add/scale/diffmean (default: 1.0)")
    p.add_argument("--prompt", action="append", help="a prompt (repeatable); default: unconditional samples from BOS")
    p.add_argument("--samples", type=_positive_int, default=5, help="unconditional samples (default: 5)")
    p.add_argument("--max-new-tokens", type=_positive_int, default=32)
    p.add_argument("--seed", type=_seed, default=0)

    p = sub.add_parser("evaluate", help="target-language rate, BLEU/chrF and loss matrix under steering")
    _add_neurons_args(p)
    p.add_argument("--out", required=True, type=Path, help="folder for metrics.json and metrics.txt")
    _add_evaluation_args(p)
    _add_task_args(p)
    p.add_argument("--seed", type=_seed, default=0)

    p = sub.add_parser("run", help="the whole study: statistics, LAPE and AP neurons, steering evaluation, HTML report")
    _add_common(p)
    _add_selection_args(p)
    _add_evaluation_args(p)
    p.add_argument(
        "--evaluate-set",
        default="lape",
        choices=["lape", "ap"],
        help="which neuron set the steering evaluation uses (default: lape; --protocol kojima: ap)",
    )
    p.add_argument(
        "--sweep-alphas",
        default="",
        help="also evaluate the first method, and residual DiffMean at its chosen "
        "layer, at these comma-separated alphas for the sweep figure (default: none)",
    )
    p.add_argument(
        "--no-images", action="store_true", help="skip the PNG/SVG copies of the figures (made only if kaleido works)"
    )

    p = sub.add_parser(
        "doctor",
        help="check the installation: versions against the tested lock, the model, KV-cache "
        "generation, the language identifier (one PASS/FAIL line each)",
    )
    p.add_argument("--model", default=DEFAULT_MODEL, help="model to check (default: the embedded %(default)s)")
    p.add_argument("--no-model", action="store_true", help="skip the checks that load a model")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--device", type=_device_name, default=None)
    p.add_argument(
        "--lock",
        type=Path,
        default=LOCK_FILE,
        help="tested lock file to compare with (default: the checkout's %(default)s)",
    )
    return parser


def _add_selection_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--top-rate", type=_rate, default=0.01, help="LAPE: share of neurons kept (default: %(default)s)")
    p.add_argument("--filter-rate", type=_rate, default=0.95, help="LAPE: probability quantile a neuron must pass")
    p.add_argument("--activation-bar", type=_rate, default=0.95, help="LAPE: probability quantile a language must pass")
    p.add_argument(
        "--per-language",
        type=_positive_int,
        default=None,
        help="LAPE, balanced variant: this many lowest-entropy neurons for every language instead of one global --top-rate",
    )
    p.add_argument(
        "--ap-share",
        type=_rate,
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


def _add_evaluation_args(p: argparse.ArgumentParser) -> None:
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
    p.add_argument("--targets", default=None, help="comma-separated targets (default: every language but --source)")
    p.add_argument(
        "--source",
        default="en",
        type=_lang_code,
        help="language of the prompts and of the translation task's source (default: en)",
    )
    p.add_argument("--alpha", type=_finite, default=1.0)
    p.add_argument(
        "--samples",
        type=_positive_int,
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
        "--prompt-tokens", type=_positive_int, default=16, help="tokens kept of each prompt (default: %(default)s)"
    )
    p.add_argument(
        "--dev-share",
        type=_rate,
        default=0.2,
        help="share of the prompts on the dev side, where the residual layer and alpha are chosen (default: %(default)s)",
    )
    p.add_argument(
        "--greedy",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="decode greedily instead of sampling (--no-greedy: sample)",
    )
    p.add_argument("--temperature", type=_finite, default=0.8, help="sampling temperature (default: %(default)s)")
    p.add_argument(
        "--repetition-penalty", type=_finite, default=1.0, help="repetition penalty (1.0: off; Gurgurov et al.: 1.1)"
    )
    p.add_argument(
        "--deactivate",
        default="others",
        choices=list(DEACTIVATE),
        help="language arithmetic switches off every other language's neurons (others, default) or the --source's only",
    )
    p.add_argument(
        "--deactivate-value",
        type=_finite,
        default=0.0,
        help="the value switched-off neurons get (default: 0; Gurgurov et al. also -1)",
    )
    p.add_argument(
        "--controls",
        type=_non_negative_int,
        default=3,
        help="random-neuron control of each method, pooled over this many seeds (0: none; default: %(default)s)",
    )
    p.add_argument("--no-residual", action="store_true", help="skip the residual-stream DiffMean baseline")
    p.add_argument(
        "--residual-layers",
        default=None,
        help="comma-separated residual layers tried on the dev split (default: a third, half and two thirds of the depth)",
    )
    p.add_argument(
        "--dev-samples",
        type=_positive_int,
        default=20,
        help="dev-split samples per target for each residual layer and alpha tried (default: %(default)s; "
        "with 8, two candidates 0.01 apart in dev score swapped between runs)",
    )
    p.add_argument(
        "--gen-batch-size",
        type=_positive_int,
        default=50,
        help="sequences per generation batch (default: %(default)s: 100 samples in two batches; on Gemma-3-270M, "
        "2 cores, 50 gave 1.3x the tokens/s of 16 and 100 no more than 50)",
    )
    p.add_argument("--max-new-tokens", type=_positive_int, default=32)
    p.add_argument(
        "--translation-items",
        type=_non_negative_int,
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
        type=_positive_int,
        default=48,
        help="new tokens of each translation, cut at the first newline (default: %(default)s)",
    )
    p.add_argument(
        "--loss-texts",
        type=_non_negative_int,
        default=40,
        help="held-out texts per language for the loss matrix (0: skip)",
    )
    p.add_argument(
        "--no-intervals",
        action="store_true",
        help=f"skip the 95%% intervals (Wilson for rates, bootstrap for BLEU/chrF and the loss matrix), which need "
        f"--samples >= {MIN_SAMPLES}",
    )


def _add_task_args(p: argparse.ArgumentParser) -> None:
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
    p.add_argument("--task-lang", type=_lang_code, default=None, help="the task's language (default: --source)")
    p.add_argument("--task-items", type=_positive_int, default=None, help="the first N items only (default: all)")
    p.add_argument("--task-split", default=None, help="the hub split (default: the task's, test; xquad: validation)")
    p.add_argument("--task-batch-size", type=_positive_int, default=8, help="sequences per forward pass (default: 8)")


def _add_neurons_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--neurons", required=True, type=Path, help="a folder written by `lang-neurons identify`")
    p.add_argument(
        "--set", default=None, choices=["lape", "ap"], help="which neuron set in that folder (default: lape if present)"
    )
    p.add_argument("--dtype", default="float32")
    p.add_argument("--device", type=_device_name, default=None)
    _add_cache_check(p)
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _add_cache_check(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--cache-check",
        default=None,
        choices=list(CACHE_CHECK_MODES),
        help="when KV-cache generation disagrees with an uncached forward pass (checked at load): warn and "
        f"generate without the cache, fail, or skip the check (default: ${CACHE_CHECK_ENV} or warn)",
    )


# The study.evaluate keyword -> (its CLI dest, value -> that dest's value); the rest keep their name.
_CLI_DESTS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "methods": ("methods", lambda v: ",".join(v)),
    "do_sample": ("greedy", lambda v: not v),
    "residual": ("no_residual", lambda v: not v),
    "activation_bar_ratio": ("activation_bar", lambda v: v),
}


def _protocol_defaults(name: str, command: str) -> dict[str, Any]:
    """The defaults --protocol ``name`` gives ``command``'s flags: its evaluate settings, its neuron
    set (--set for evaluate, --evaluate-set for run) and, for run, its selection parameters."""
    from lang_neurons import protocols  # the presets live with the protocol code

    p = protocols.protocol(name)
    settings = dict(p.evaluate)
    if command == "run":
        settings.update(p.selection)
    out = {}
    for key, value in settings.items():
        dest, convert = _CLI_DESTS.get(key, (key, lambda v: v))
        out[dest] = convert(value)
    out["evaluate_set" if command == "run" else "set"] = p.neuron_set
    return out


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``lang-neurons``: run one command; a user mistake is one stderr line and exit code 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "protocol", None):  # the preset's values become defaults; flags given explicitly still win
        parser.commands[args.command].set_defaults(**_protocol_defaults(args.protocol, args.command))
        args = parser.parse_args(argv)
    from lang_neurons.commands import (
        COMMANDS,  # torch and the model stack load here, after the arguments parsed
    )

    try:
        return int(COMMANDS[args.command](args))
    except (LangNeuronsError, FileNotFoundError) as e:
        if args.debug:
            raise
        print(f"lang-neurons: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lang-neurons: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
