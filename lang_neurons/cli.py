"""Command line: a thin layer over the library.

    lang-neurons identify --method lape --out runs/demo
    lang-neurons run --out runs/demo          # the whole study and an HTML report
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path
from collections.abc import Callable
from typing import Any, NoReturn

import torch

from lang_neurons import _io, protocols, report
from lang_neurons import steering as st
from lang_neurons.corpora import DEFAULT_LANGS, LanguageCorpus, load_corpus
from lang_neurons.errors import LangNeuronsError
from lang_neurons.languages import parse_langs, validate_lang
from lang_neurons.models import DEFAULT_MODEL, HookedModel, check_fingerprint, load_model
from lang_neurons.neurons import NeuronSet, average_precision, lape
from lang_neurons.record import POOLINGS, ActivationStats, record
from lang_neurons.generation import CACHE_CHECK_ENV, CACHE_CHECK_MODES, generate
from lang_neurons.health import LOCK_FILE, doctor
from lang_neurons.sites import SITES, Site, resolve_site
from lang_neurons.intervals import MIN_SAMPLES, check_samples
from lang_neurons.forcing import PROMPT_KINDS
from lang_neurons.evaluation import TRANSLATION_TEMPLATES
from lang_neurons.protocols import PROTOCOLS
from lang_neurons.study import DEACTIVATE, DEFAULT_METHODS, EVAL_METHODS, RESIDUAL, evaluate, steering_for

RUN_FILE = "run.json"


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
    try:
        torch.device(s)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(f"unknown device {s!r}: use cpu, cuda, cuda:1, mps, ...") from None
    return s


class _Parser(argparse.ArgumentParser):
    """Argument errors as one stderr line (exit 2), like every other error of the CLI."""

    commands: dict[str, argparse.ArgumentParser]
    """The subcommands' parsers by name (set by :func:`build_parser`)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=DEFAULT_MODEL, help="embedded 'gemma-3-270m' (default), a hub name or a local HF folder")
    p.add_argument("--corpus", default="default", help="default (offline), flores, paws-x, wikipedia, culturax, or a folder of <lang>.txt files")
    p.add_argument("--langs", default=",".join(DEFAULT_LANGS), help="comma-separated language codes (default: %(default)s)")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--site", default="act", choices=list(SITES), help="which neurons (default: act)")
    p.add_argument("--pooling", default="mean", choices=list(POOLINGS), help="sentence pooling for AP (default: mean)")
    p.add_argument("--batch-size", type=_positive_int, default=16)
    p.add_argument("--max-length", type=_positive_int, default=256, help="tokens kept per text (default: %(default)s)")
    p.add_argument("--max-per-lang", type=_positive_int, default=None, help="texts per language to use (default: all)")
    p.add_argument("--ap-sentences", type=_positive_int, default=None, help="pooled sentences per language kept for AP (default: all)")
    p.add_argument("--held-out", type=float, default=0.2, help="share of each language held out for evaluation (default: %(default)s)")
    p.add_argument("--seed", type=_seed, default=0)
    p.add_argument("--dtype", default="float32", help="model dtype: float32 (default), bfloat16, float16")
    p.add_argument("--device", type=_device_name, default=None, help="cpu, cuda, ... (default: cuda when available)")
    p.add_argument("--n-devices", type=_positive_int, default=None, help="split the model over this many GPUs (default: one device)")
    p.add_argument("--device-map", default=None, help="Hugging Face device map for a big model: auto, balanced, sequential, or a JSON object")
    _add_cache_check(p)
    p.add_argument("--resume", action="store_true", help="continue an interrupted recording from its checkpoint in --out")
    p.add_argument("--checkpoint-every", type=int, default=100, help="batches between recording checkpoints in --out (0: none; default: %(default)s)")
    p.add_argument("--force", action="store_true", help="recompute even if --out holds results of another run")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def build_parser() -> argparse.ArgumentParser:
    """The ``lang-neurons`` argument parser: every command and flag (the docs' CLI reference is its help)."""
    parser = _Parser(prog="lang-neurons", description="Find and steer language-specific neurons.")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)
    parser.commands = sub.choices
    p = sub.add_parser("identify", help="record statistics and select language-specific neurons")
    _add_common(p)
    p.add_argument("--method", default="lape", choices=["lape", "ap"])
    _add_selection_args(p)
    p.set_defaults(func=cmd_identify)

    p = sub.add_parser("import-masks", help="import a published LAPE-layout mask file (.pth) into a folder steer/evaluate use")
    p.add_argument("file", type=Path, help="torch file: a list over languages of lists over layers of LongTensors of neuron indices")
    _add_common(p)
    p.set_defaults(func=cmd_import_masks)

    p = sub.add_parser("steer", help="print steered generations next to unsteered ones")
    _add_neurons_args(p)
    p.add_argument("--target", required=True, type=_lang_code, help="language to steer toward, e.g. de")
    p.add_argument("--method", default="add", help=f"one of {', '.join(st.METHODS)} (default: add)")
    p.add_argument("--alpha", type=_finite, default=1.0, help="strength for add/scale/diffmean (default: 1.0)")
    p.add_argument("--prompt", action="append", help="a prompt (repeatable); default: unconditional samples from BOS")
    p.add_argument("--samples", type=_positive_int, default=5, help="unconditional samples (default: 5)")
    p.add_argument("--max-new-tokens", type=_positive_int, default=32)
    p.add_argument("--seed", type=_seed, default=0)
    p.set_defaults(func=cmd_steer)

    p = sub.add_parser("evaluate", help="target-language rate, BLEU/chrF and loss matrix under steering")
    _add_neurons_args(p)
    p.add_argument("--out", required=True, type=Path, help="folder for metrics.json and metrics.txt")
    _add_evaluation_args(p)
    p.add_argument("--seed", type=_seed, default=0)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("run", help="the whole study: statistics, LAPE and AP neurons, steering evaluation, HTML report")
    _add_common(p)
    _add_selection_args(p)
    _add_evaluation_args(p)
    p.add_argument("--evaluate-set", default="lape", choices=["lape", "ap"],
                   help="which neuron set the steering evaluation uses (default: lape; --protocol kojima: ap)")
    p.add_argument("--sweep-alphas", default="", help="also evaluate the first method, and residual DiffMean at its chosen "
                   "layer, at these comma-separated alphas for the sweep figure (default: none)")
    p.add_argument("--no-images", action="store_true", help="skip the PNG/SVG copies of the figures (made only if kaleido works)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("doctor", help="check the installation: versions against the tested lock, the model, KV-cache "
                       "generation, the language identifier (one PASS/FAIL line each)")
    p.add_argument("--model", default=DEFAULT_MODEL, help="model to check (default: the embedded %(default)s)")
    p.add_argument("--no-model", action="store_true", help="skip the checks that load a model")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--device", type=_device_name, default=None)
    p.add_argument("--lock", type=Path, default=LOCK_FILE, help="tested lock file to compare with (default: the checkout's %(default)s)")
    p.set_defaults(func=cmd_doctor)
    return parser


def _add_selection_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--top-rate", type=_rate, default=0.01, help="LAPE: share of neurons kept (default: %(default)s)")
    p.add_argument("--filter-rate", type=_rate, default=0.95, help="LAPE: probability quantile a neuron must pass")
    p.add_argument("--activation-bar", type=_rate, default=0.95, help="LAPE: probability quantile a language must pass")
    p.add_argument("--per-language", type=_positive_int, default=None,
                   help="LAPE, balanced variant: this many lowest-entropy neurons for every language instead of one global --top-rate")
    p.add_argument("--top-k", type=int, default=1000, help="AP: top-k neurons per language")
    p.add_argument("--bottom-k", type=int, default=1000, help="AP: bottom-k neurons per language")


def _add_evaluation_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--protocol", default=None, choices=list(PROTOCOLS),
                   help="a paper's protocol as a preset of the flags below (and of the neuron set); flags given "
                        "explicitly still win and are listed as departures (docs/protocols.md)")
    p.add_argument("--methods", default="add", help="comma-separated neuron steering methods (default: %(default)s; the full "
                   f"comparison: {','.join(DEFAULT_METHODS)})")
    p.add_argument("--targets", default=None, help="comma-separated targets (default: every language but --source)")
    p.add_argument("--source", default="en", type=_lang_code,
                   help="language of the prompts and of the translation task's source (default: en)")
    p.add_argument("--alpha", type=_finite, default=1.0)
    p.add_argument("--samples", type=_positive_int, default=100,
                   help="samples per target and row (default: %(default)s: a rate's 95%% interval is then at most +-0.10)")
    p.add_argument("--prompts", default="source", choices=list(PROMPT_KINDS),
                   help="source: continue held-out --source texts (prompted forcing, default); bos: unconditional samples")
    p.add_argument("--prompt-tokens", type=_positive_int, default=16, help="tokens kept of each prompt (default: %(default)s)")
    p.add_argument("--dev-share", type=_rate, default=0.2,
                   help="share of the prompts on the dev side, where the residual layer and alpha are chosen (default: %(default)s)")
    p.add_argument("--greedy", action=argparse.BooleanOptionalAction, default=False,
                   help="decode greedily instead of sampling (--no-greedy: sample)")
    p.add_argument("--temperature", type=_finite, default=0.8, help="sampling temperature (default: %(default)s)")
    p.add_argument("--repetition-penalty", type=_finite, default=1.0, help="repetition penalty (1.0: off; Gurgurov et al.: 1.1)")
    p.add_argument("--deactivate", default="others", choices=list(DEACTIVATE),
                   help="language arithmetic switches off every other language's neurons (others, default) or the --source's only")
    p.add_argument("--deactivate-value", type=_finite, default=0.0, help="the value switched-off neurons get (default: 0; Gurgurov et al. also -1)")
    p.add_argument("--controls", type=_non_negative_int, default=3,
                   help="random-neuron control of each method, pooled over this many seeds (0: none; default: %(default)s)")
    p.add_argument("--no-residual", action="store_true", help="skip the residual-stream DiffMean baseline")
    p.add_argument("--residual-layers", default=None,
                   help="comma-separated residual layers tried on the dev split (default: a third, half and two thirds of the depth)")
    p.add_argument("--dev-samples", type=_positive_int, default=8,
                   help="dev-split samples per target for each residual layer and alpha tried (default: %(default)s)")
    p.add_argument("--gen-batch-size", type=_positive_int, default=50,
                   help="sequences per generation batch (default: %(default)s: 100 samples in two batches; on Gemma-3-270M, "
                        "2 cores, 50 gave 1.3x the tokens/s of 16 and 100 no more than 50)")
    p.add_argument("--max-new-tokens", type=_positive_int, default=32)
    p.add_argument("--translation-items", type=_non_negative_int, default=0,
                   help="few-shot translation prompts per target, BLEU/chrF under each row (default: 0, skip; the full comparison: 20)")
    p.add_argument("--translation-template", default="few-shot", choices=list(TRANSLATION_TEMPLATES),
                   help="few-shot: one-shot 'English: ...\\nGerman:' prompts (default); kojima: Kojima et al.'s zero-shot "
                        "prompt, which does not name the target language")
    p.add_argument("--translation-tokens", type=_positive_int, default=48,
                   help="new tokens of each translation, cut at the first newline (default: %(default)s)")
    p.add_argument("--loss-texts", type=_non_negative_int, default=40, help="held-out texts per language for the loss matrix (0: skip)")
    p.add_argument("--no-intervals", action="store_true",
                   help=f"skip the 95%% intervals (Wilson for rates, bootstrap for BLEU/chrF and the loss matrix), which need "
                        f"--samples >= {MIN_SAMPLES}")


def _add_neurons_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--neurons", required=True, type=Path, help="a folder written by `lang-neurons identify`")
    p.add_argument("--set", default=None, choices=["lape", "ap"], help="which neuron set in that folder (default: lape if present)")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--device", type=_device_name, default=None)
    _add_cache_check(p)
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _add_cache_check(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cache-check", default=None, choices=list(CACHE_CHECK_MODES),
                   help="when KV-cache generation disagrees with an uncached forward pass (checked at load): warn and "
                        f"generate without the cache, fail, or skip the check (default: ${CACHE_CHECK_ENV} or warn)")


def _load_run(args: argparse.Namespace):
    """Model, neuron set, statistics and held-out corpus of an identify folder."""
    folder = args.neurons
    run_file = folder / RUN_FILE
    if not run_file.is_file():
        raise LangNeuronsError(f"--neurons {folder} holds no lang-neurons run ({RUN_FILE} missing): run `lang-neurons identify --out {folder}` first")
    settings = json.loads(run_file.read_text())
    method = args.set or next((m for m in ("lape", "ap") if (folder / f"neurons_{m}.json").is_file()), None)
    if method is None:
        raise LangNeuronsError(f"--neurons {folder} holds no neuron set: run `lang-neurons identify --out {folder}`")
    if not (folder / f"neurons_{method}.json").is_file():
        why = f" (--protocol {args.protocol} evaluates {method.upper()} neurons)" if getattr(args, "protocol", None) else ""
        raise LangNeuronsError(f"--neurons {folder} holds no {method.upper()} neuron set{why}: "
                               f"run `lang-neurons identify --method {method} --out {folder}`")
    neurons = NeuronSet.load(folder / f"neurons_{method}")
    stats = ActivationStats.load(folder / "stats")
    model = load_model(settings["model"], dtype=args.dtype, device=args.device, cache_check=args.cache_check)
    check_fingerprint(neurons.model, model, f"{folder}/neurons_{method}")
    return model, neurons, stats, _corpora(settings)[1]


def _corpora(settings: dict[str, Any]) -> tuple[LanguageCorpus, LanguageCorpus]:
    """The train and held-out corpora of a run, from its settings (see :func:`_run_settings`)."""
    corpus = load_corpus(settings["corpus"], langs=settings["langs"], max_per_lang=settings.get("max_per_lang"))
    if settings["held_out"] > 0:
        return corpus.split(held_out=settings["held_out"], seed=settings["seed"])
    return corpus, corpus


def cmd_doctor(args: argparse.Namespace) -> int:
    """``lang-neurons doctor``: one PASS/FAIL line per check; exit code 0 when all pass, 1 otherwise."""
    checks = doctor(None if args.no_model else args.model, device=args.device, dtype=args.dtype, lock=args.lock)
    failed = [c.name for c in checks if not c.passed]
    print(f"doctor: {len(checks) - len(failed)} of {len(checks)} checks passed" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


def cmd_steer(args: argparse.Namespace) -> int:
    """``lang-neurons steer``: print steered generations next to unsteered ones; returns the exit code."""
    if args.method not in st.METHODS:
        raise LangNeuronsError(f"unknown method {args.method!r}: choose one of {', '.join(st.METHODS)}")
    model, neurons, stats, _ = _load_run(args)
    hooks = steering_for(neurons, stats, args.target, args.method, args.alpha)
    kwargs = dict(max_new_tokens=args.max_new_tokens, seed=args.seed, progress=not args.no_progress)
    prompts = args.prompt
    plain = generate(model, prompts, n=args.samples, **kwargs)
    steered = generate(model, prompts, n=args.samples, hooks=hooks, **kwargs)
    print(f"{hooks!r} toward {args.target!r} ({args.method}, alpha={args.alpha}) with {neurons.method.upper()} neurons")
    for i, (a, b) in enumerate(zip(plain, steered)):
        head = f"[{i}] prompt: {prompts[i]!r}" if prompts else f"[{i}] from BOS"
        print(f"{head}\n  unsteered: {a!r}\n  steered:   {b!r}")
    return 0


def _parse_methods(text: str) -> list[str]:
    """The steering methods of ``--methods``, checked."""
    methods = [m.strip() for m in text.split(",") if m.strip()]
    for m in methods:
        if m not in EVAL_METHODS:
            raise LangNeuronsError(f"unknown method {m!r}: choose from {', '.join(EVAL_METHODS)}")
    if not methods:
        raise LangNeuronsError("--methods is empty: give at least one steering method, e.g. add")
    return methods


def _write_metrics(out: Path, results: dict[str, Any], neurons: NeuronSet) -> str:
    """Write ``metrics.json`` (a checked artifact) and ``metrics.txt`` into ``out``; returns the table."""
    table = protocols.format_results(results)
    _io.save_json_artifact(out / "metrics.json", "metrics", results, model=neurons.model, site=neurons.site, method=neurons.method)
    _io.atomic_write_text(out / "metrics.txt", table + "\n")
    return table


def _comparison_args(args: argparse.Namespace) -> dict[str, Any]:
    """The controls, residual baseline and generation batch size :func:`evaluate` takes from the CLI."""
    layers = None
    if args.residual_layers:
        try:
            layers = [int(x) for x in args.residual_layers.split(",") if x.strip()]
        except ValueError:
            raise LangNeuronsError(f"--residual-layers takes comma-separated layer numbers, e.g. 6,9,12; got {args.residual_layers!r}") from None
    return {"controls": args.controls, "residual": not args.no_residual, "residual_layers": layers,
            "dev_samples": args.dev_samples, "batch_size": args.gen_batch_size, "prompts": args.prompts,
            "prompt_tokens": args.prompt_tokens, "dev_share": args.dev_share, "do_sample": not args.greedy,
            "temperature": args.temperature, "repetition_penalty": args.repetition_penalty, "deactivate": args.deactivate,
            "deactivate_value": args.deactivate_value, "translation_template": args.translation_template,
            "translation_tokens": args.translation_tokens}


def _evaluate(args: argparse.Namespace, model: HookedModel, neurons: NeuronSet, stats: ActivationStats,
              held_out: LanguageCorpus, **kwargs: Any) -> dict[str, Any]:
    """:func:`~lang_neurons.study.evaluate`, or :func:`~lang_neurons.protocols.evaluate` under --protocol
    (every setting passed, so the run's departures from the preset are listed)."""
    if args.protocol:
        return protocols.evaluate(model, neurons, stats, held_out, args.protocol, **kwargs)
    return evaluate(model, neurons, stats, held_out, **kwargs)


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


def cmd_evaluate(args: argparse.Namespace) -> int:
    """``lang-neurons evaluate``: steering evaluation of an identify folder into ``--out``; returns the exit code."""
    methods = _parse_methods(args.methods)
    targets = parse_langs(args.targets) if args.targets else None
    if not args.no_intervals:
        check_samples(args.samples)
    if args.out.exists() and not args.out.is_dir():
        raise LangNeuronsError(f"--out {args.out} is a file: give a folder")
    model, neurons, stats, held_out = _load_run(args)
    results = _evaluate(
        args, model, neurons, stats, held_out, targets=targets, methods=methods, alpha=args.alpha, samples=args.samples,
        max_new_tokens=args.max_new_tokens, translation_items=args.translation_items, source=args.source,
        loss_texts=args.loss_texts, seed=args.seed, intervals=not args.no_intervals, progress=not args.no_progress,
        **_comparison_args(args),
    )
    print(_write_metrics(args.out, results, neurons))
    print(f"\nwrote {args.out}/metrics.json and {args.out}/metrics.txt")
    return 0


def _run_settings(args: argparse.Namespace, langs: list[str]) -> dict[str, Any]:
    """What determines the statistics in an output folder (compared on re-runs)."""
    return {
        "model": str(args.model),
        "corpus": str(args.corpus),
        "langs": langs,
        "site": args.site,
        "pooling": args.pooling,
        "max_length": args.max_length,
        "max_per_lang": args.max_per_lang,
        "ap_sentences": args.ap_sentences,
        "held_out": args.held_out,
        "seed": args.seed,
    }


def _check_out_dir(out: Path, settings: dict[str, Any], force: bool) -> bool:
    """Whether ``out`` already holds statistics of this very run. Errors if it holds another run."""
    if out.exists() and not out.is_dir():
        raise LangNeuronsError(f"--out {out} is a file: give a folder")
    run_file = out / RUN_FILE
    if not run_file.is_file():
        if out.is_dir() and any(out.iterdir()) and not force:
            raise LangNeuronsError(f"--out {out} is not empty and holds no lang-neurons run: choose an empty or new folder, or pass --force")
        return False
    try:
        saved = json.loads(run_file.read_text())
    except json.JSONDecodeError:
        saved = {}
    diff = [k for k in settings if saved.get(k) != settings[k]]
    if diff and not force:
        k = diff[0]
        raise LangNeuronsError(
            f"--out {out} holds a different run ({k}: {saved.get(k)!r} there, {settings[k]!r} now): "
            "use another --out, or --force to overwrite it"
        )
    return not diff and not force and (out / "stats.json").is_file()


def _open_run(args: argparse.Namespace) -> tuple[HookedModel, Site, LanguageCorpus, LanguageCorpus, dict[str, Any], bool]:
    """Check --out, load the corpus and the model (what identify and run share).

    Returns the model, its site, the train and held-out corpora, the run settings and whether
    --out already holds the statistics of this very run.
    """
    langs = parse_langs(args.langs)
    if len(langs) < 2 and args.command != "import-masks":
        raise LangNeuronsError(f"--langs {args.langs!r} names one language: LAPE and AP compare at least two")
    if not 0 <= args.held_out < 1:
        raise LangNeuronsError(f"--held-out must be in [0, 1), got {args.held_out}")
    if args.checkpoint_every < 0:
        raise LangNeuronsError(f"--checkpoint-every must be 0 (no checkpoints) or a positive number of batches, got {args.checkpoint_every}")
    settings = _run_settings(args, langs)
    reuse = _check_out_dir(args.out, settings, args.force)
    train, held_out = _corpora(settings)
    device = _init_distributed(args)
    model = load_model(args.model, dtype=args.dtype, device=device, n_devices=args.n_devices, device_map=_device_map(args.device_map),
                       cache_check=args.cache_check)
    return model, resolve_site(model, args.site), train, held_out, settings, reuse


def _device_map(text: str | None) -> str | dict | None:
    """--device-map: a name such as ``auto`` or a JSON object module → device."""
    if text is None or not text.strip().startswith("{"):
        return text
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise LangNeuronsError(f"--device-map is neither a name (auto, balanced, sequential) nor a JSON object: {e}") from None


def _init_distributed(args: argparse.Namespace) -> str | None:
    """Join the torchrun process group when ``WORLD_SIZE`` > 1; returns the device for this rank.

    Under ``torchrun --nproc_per_node=N -m lang_neurons.cli identify ...`` every rank records a
    share of the batches (gloo on CPU, NCCL with one GPU per rank) and rank 0 writes the files.
    """
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return args.device
    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available() and not str(args.device or "").startswith("cpu")
    if args.n_devices or args.device_map:
        raise LangNeuronsError("data-parallel recording (torchrun) puts one model on each rank: drop --n-devices/--device-map")
    if cuda:
        torch.cuda.set_device(local)
    dist.init_process_group("nccl" if cuda else "gloo")
    return f"cuda:{local}" if cuda and args.device is None else args.device


def _is_main() -> bool:
    """Whether this process writes files: always, except on ranks > 0 of a torchrun group."""
    import torch.distributed as dist

    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def _check_ap_k(args: argparse.Namespace, site: Site) -> None:
    for name in ("top_k", "bottom_k"):
        k = getattr(args, name)
        if not 0 <= k <= site.n_neurons:
            raise LangNeuronsError(f"--{name.replace('_', '-')} {k} but the model has {site.n_neurons} neurons at site {site.name!r}")


def _statistics(
    args: argparse.Namespace, model: HookedModel, train: LanguageCorpus, settings: dict[str, Any], reuse: bool
) -> ActivationStats:
    """The statistics in --out when ``reuse``, else recorded now and saved there with run.json."""
    stats_path = args.out / "stats"
    if reuse:
        stats = ActivationStats.load(stats_path)
        check_fingerprint(stats.model, model, f"{stats_path}.json")
        print(f"reusing statistics in {stats_path}.safetensors", file=sys.stderr)
        return stats
    checkpoint = args.out / "stats.checkpoint.safetensors"
    if _is_main():
        if args.force and not args.resume:
            checkpoint.unlink(missing_ok=True)
        # run.json first: a killed recording leaves --out resumable with the same settings.
        _io.atomic_write_text(args.out / RUN_FILE, json.dumps(settings, indent=1))
    stats = record(
        model, train, site=args.site, pooling=args.pooling, batch_size=args.batch_size,
        max_length=args.max_length, ap_sentences=args.ap_sentences, progress=not args.no_progress,
        checkpoint=checkpoint if args.checkpoint_every else None, checkpoint_every=args.checkpoint_every or 1,
        resume=args.resume,
    )
    if _is_main():
        stats.save(stats_path)
    return stats


def _selection_params(args: argparse.Namespace, method: str) -> dict[str, Any]:
    """The parameters a neuron set of ``method`` is selected with (as in ``NeuronSet.params``)."""
    if method == "lape":
        if args.per_language is not None:
            return {"per_language": args.per_language, "filter_rate": args.filter_rate}
        return {"top_rate": args.top_rate, "filter_rate": args.filter_rate, "activation_bar_ratio": args.activation_bar}
    return {"top_k": args.top_k, "bottom_k": args.bottom_k}


def _select(args: argparse.Namespace, stats: ActivationStats, method: str) -> NeuronSet:
    """Select ``method``'s neurons from ``stats`` and save them in --out."""
    if method == "lape":
        neurons = lape(stats, args.top_rate, args.filter_rate, args.activation_bar, per_language=args.per_language)
    else:
        neurons = average_precision(stats, args.top_k, args.bottom_k, progress=not args.no_progress)
    neurons.save(args.out / f"neurons_{method}")
    return neurons


def cmd_identify(args: argparse.Namespace) -> int:
    """``lang-neurons identify``: record (or reuse) statistics and write one neuron set; returns the exit code."""
    model, site, train, _, settings, reuse = _open_run(args)
    if args.method == "ap":
        _check_ap_k(args, site)
    stats = _statistics(args, model, train, settings, reuse)
    if not _is_main():
        return 0
    neurons = _select(args, stats, args.method)
    print(stats.summary())
    print()
    print(_identify_report(neurons))
    print(f"\nwrote {args.out}/stats.safetensors and {args.out}/neurons_{args.method}.safetensors (+ .json)")
    return 0


def cmd_import_masks(args: argparse.Namespace) -> int:
    """Import a published mask file as ``neurons_lape`` of --out; --langs gives the file's language
    order. Statistics are recorded on --corpus as by identify (steering needs their means)."""
    from lang_neurons import masks

    masks._read(args.file)  # a missing or unreadable file fails before the model loads
    model, site, train, _, settings, reuse = _open_run(args)
    neurons = masks.from_lape_masks(args.file, settings["langs"], model, site=args.site)
    stats = _statistics(args, model, train, settings, reuse)
    neurons.params["corpus"] = stats.corpus
    neurons.save(args.out / "neurons_lape")
    print(_identify_report(neurons))
    print(f"\nwrote {args.out}/neurons_lape.safetensors (+ .json) and {args.out}/stats.safetensors: "
          f"use `lang-neurons steer --neurons {args.out} --target ...`")
    return 0


def _identify_report(neurons: NeuronSet) -> str:
    lines = [neurons.summary()]
    ov, jac = neurons.overlap(), neurons.jaccard()
    if len(neurons.langs) > 1:
        jac = jac.clone().fill_diagonal_(-1)
        i, j = divmod(int(jac.argmax()), len(neurons.langs))
        lines.append(
            f"largest pairwise overlap: {neurons.langs[i]}-{neurons.langs[j]}, {int(ov[i, j])} neurons (Jaccard {float(jac[i, j]):.3f})"
        )
    return "\n".join(lines)


def _parse_alphas(text: str) -> list[float]:
    try:
        return [float(a) for a in text.split(",") if a.strip()]
    except ValueError:
        raise LangNeuronsError(f"--sweep-alphas takes comma-separated numbers, e.g. 0.5,1,2; got {text!r}") from None


def _stage(step: int, text: str) -> None:
    print(f"[{step}/5] {text}", file=sys.stderr)


def _neuron_set(args: argparse.Namespace, stats: ActivationStats, method: str, reuse: bool) -> tuple[NeuronSet, bool]:
    """``method``'s neurons in --out when ``reuse`` and they were selected with the same
    parameters from these statistics; else selected now and saved. Also says if reused."""
    path = args.out / f"neurons_{method}"
    if reuse and path.with_suffix(".json").is_file():
        neurons = NeuronSet.load(path)
        wanted = _selection_params(args, method)
        if {k: neurons.params.get(k) for k in wanted} == wanted and neurons.langs == stats.langs:
            print(f"reusing {method.upper()} neurons in {path}.safetensors", file=sys.stderr)
            return neurons, True
    return _select(args, stats, method), False


def _sweep_points(results: dict[str, Any], method: str, alpha: float) -> list[dict[str, Any]]:
    """One steering-sweep point per target from :func:`evaluate`'s results (quality and forcing
    score where the results have them)."""
    points = []
    for target, entry in results["targets"].items():
        row = entry["methods"][method]
        point = {"target": target, "method": method, "alpha": alpha, "rate": row["rate"],
                 "bleu": row.get("translation", {}).get("bleu"), "n_neurons": row["neurons"]}
        point.update({key: row[key] for key in ("quality", "forcing_score") if key in row})
        if "rate_interval" in row:
            point["rate_low"], point["rate_high"] = row["rate_interval"]["low"], row["rate_interval"]["high"]
        for key, interval in (row.get("forcing_interval") or {}).items():
            if key in ("quality", "score"):
                point[f"{key}_low"], point[f"{key}_high"] = interval["low"], interval["high"]
        if "translation_interval" in row:
            steered = row["translation_interval"]["bleu"]["steered"]
            point["bleu_low"], point["bleu_high"] = steered["low"], steered["high"]
        points.append(point)
    return points


def _steering_results(
    args: argparse.Namespace, model: HookedModel, neurons: NeuronSet, stats: ActivationStats, held_out: LanguageCorpus,
    evaluation: dict[str, Any], reuse: bool,
) -> dict[str, Any]:
    """:func:`evaluate` of ``neurons`` (plus the --sweep-alphas points), or the results in
    --out/metrics.json when ``reuse`` and they were made with the same ``evaluation`` settings."""
    path = args.out / "metrics.json"
    if reuse and path.is_file():
        try:  # an older, damaged or edited file, or one from another model, is recomputed
            saved = _io.load_json_artifact(path, "metrics", model=model)
        except LangNeuronsError:
            saved = {}
        if saved.get("evaluation") == evaluation:
            print(f"reusing the steering evaluation in {path}", file=sys.stderr)
            return saved
    methods = evaluation["methods"]
    kwargs = dict(targets=evaluation["targets"], samples=args.samples, max_new_tokens=args.max_new_tokens, source=args.source,
                  translation_items=args.translation_items, seed=args.seed, intervals=evaluation["intervals"],
                  progress=not args.no_progress)
    comparison = evaluation["comparison"]
    results = _evaluate(args, model, neurons, stats, held_out, methods=methods, alpha=args.alpha, loss_texts=args.loss_texts,
                        **comparison, **kwargs)
    if evaluation["sweep_alphas"]:
        results["sweep"] = []
        layer = results["residual"]["layer"] if "residual" in results else None
        for alpha in evaluation["sweep_alphas"]:
            # the first method at this alpha (measured above at --alpha), and residual DiffMean at its chosen layer with this alpha
            same = alpha == args.alpha
            more = results
            if layer is not None or not same:
                more = evaluate(model, neurons, stats, held_out, methods=[] if same else methods[:1], alpha=alpha, loss_texts=0,
                                **{**comparison, "controls": 0, "residual": layer is not None,
                                   "residual_layers": [layer] if layer is not None else None, "residual_alphas": [alpha]},
                                **kwargs)
            results["sweep"] += _sweep_points(results if same else more, methods[0], alpha)
            if layer is not None:
                results["sweep"] += _sweep_points(more, RESIDUAL, alpha)
    results["evaluation"] = evaluation
    _write_metrics(args.out, results, neurons)
    return results


def cmd_run(args: argparse.Namespace) -> int:
    """``lang-neurons run``: the whole study and its HTML report, reusing finished stages; returns the exit code."""
    methods = _parse_methods(args.methods)
    targets = parse_langs(args.targets) if args.targets else None
    if not args.no_intervals:
        check_samples(args.samples)
    langs = parse_langs(args.langs)
    for t in targets or []:
        if t not in langs:
            raise LangNeuronsError(f"--targets {t!r} is not one of --langs {','.join(langs)}")
    alphas = _parse_alphas(args.sweep_alphas)
    out: Path = args.out

    _stage(1, "statistics")
    model, site, train, held_out, settings, reuse = _open_run(args)
    _check_ap_k(args, site)
    stats = _statistics(args, model, train, settings, reuse)
    if not _is_main():
        return 0

    _stage(2, "LAPE and AP neurons")
    sets: dict[str, NeuronSet] = {}
    reused: dict[str, bool] = {}
    for method in ("lape", "ap"):
        sets[method], reused[method] = _neuron_set(args, stats, method, reuse)

    chosen = args.evaluate_set
    label = f"{chosen.upper()} neurons"
    _stage(3, f"steering evaluation ({label})")
    evaluation = {
        "run": settings, "lape": _selection_params(args, "lape"), "methods": methods, "targets": targets, "source": args.source,
        "alpha": args.alpha, "samples": args.samples, "max_new_tokens": args.max_new_tokens,
        "translation_items": args.translation_items, "loss_texts": args.loss_texts, "sweep_alphas": alphas,
        "intervals": not args.no_intervals, "comparison": _comparison_args(args),
        "evaluate_set": chosen, "neurons": _selection_params(args, chosen), "protocol": args.protocol,
    }
    results = _steering_results(args, model, sets[chosen], stats, held_out, evaluation, reused[chosen])
    table = protocols.format_results(results)

    _stage(4, "figures")
    figures = report.build_figures(sets, stats, results)

    _stage(5, "report")
    tables: dict[str, str | report.Table] = {
        "Headline": report.headline_table(results),
        "Statistics": stats.summary(), **{f"{m.upper()} neurons": _identify_report(n) for m, n in sets.items()},
        f"Steering ({label})": report.steering_table(results),
    }
    if "loss_matrix" in results:
        tables[f"Loss matrix ({label})"] = report.loss_matrix_table(results["loss_matrix"])
    if "deactivation_generation" in results:
        tables[f"Deactivation generation ({label})"] = protocols.format_deactivation(results["deactivation_generation"])
    shown = {**settings, "model fingerprint": stats.model, "LAPE": sets["lape"].params, "AP": sets["ap"].params,
             "steering": results["settings"], "sweep alphas": alphas}
    if args.protocol:
        rs = results["settings"]
        shown["protocol"] = {"name": rs["protocol"], "paper": rs["paper"], "code": rs["code"],
                             "departures": {str(i): d for i, d in enumerate(rs["departures"], 1)},
                             "additions": {str(i): a for i, a in enumerate(rs["additions"], 1)}}
    page = report.write_report(
        out, figures, shown, tables, title=f"lang_neurons: {args.model}", images=not args.no_images, progress=not args.no_progress
    )
    print(table)
    print(f"\nwrote {out}/metrics.json, {out}/metrics.txt and {len(figures)} figures in {out}/{report.FIGURES}/")
    print(f"report: {page.resolve()}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``lang-neurons``: run one command; a user mistake is one stderr line and exit code 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "protocol", None):  # the preset's values become defaults; flags given explicitly still win
        parser.commands[args.command].set_defaults(**_protocol_defaults(args.protocol, args.command))
        args = parser.parse_args(argv)
    try:
        return int(args.func(args))
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
