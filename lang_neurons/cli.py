"""Command line: a thin layer over the library.

    lang-neurons identify --method lape --out runs/demo
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from lang_neurons import _io
from lang_neurons import steering as st
from lang_neurons.corpora import DEFAULT_LANGS, load_corpus
from lang_neurons.errors import LangNeuronsError
from lang_neurons.languages import parse_langs
from lang_neurons.models import DEFAULT_MODEL, check_fingerprint, load_model
from lang_neurons.neurons import NeuronSet, average_precision, lape
from lang_neurons.record import POOLINGS, ActivationStats, record
from lang_neurons.generation import generate
from lang_neurons.sites import SITES, resolve_site
from lang_neurons.study import DEFAULT_METHODS, evaluate, format_table, steering_for

RUN_FILE = "run.json"


def _positive_int(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {s!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v}")
    return v


def _rate(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {s!r}") from None
    if not 0 < v <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {v}")
    return v


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
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", default="float32", help="model dtype: float32 (default), bfloat16, float16")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda when available)")
    p.add_argument("--force", action="store_true", help="recompute even if --out holds results of another run")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lang-neurons", description="Find and steer language-specific neurons.")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("identify", help="record statistics and select language-specific neurons")
    _add_common(p)
    p.add_argument("--method", default="lape", choices=["lape", "ap"])
    p.add_argument("--top-rate", type=_rate, default=0.01, help="LAPE: share of neurons kept (default: %(default)s)")
    p.add_argument("--filter-rate", type=_rate, default=0.95, help="LAPE: probability quantile a neuron must pass")
    p.add_argument("--activation-bar", type=_rate, default=0.95, help="LAPE: probability quantile a language must pass")
    p.add_argument("--top-k", type=int, default=1000, help="AP: top-k neurons per language")
    p.add_argument("--bottom-k", type=int, default=1000, help="AP: bottom-k neurons per language")
    p.set_defaults(func=cmd_identify)

    p = sub.add_parser("steer", help="print steered generations next to unsteered ones")
    _add_neurons_args(p)
    p.add_argument("--target", required=True, help="language to steer toward, e.g. de")
    p.add_argument("--method", default="add", help=f"one of {', '.join(st.METHODS)} (default: add)")
    p.add_argument("--alpha", type=float, default=1.0, help="strength for add/scale/diffmean (default: 1.0)")
    p.add_argument("--prompt", action="append", help="a prompt (repeatable); default: unconditional samples from BOS")
    p.add_argument("--samples", type=_positive_int, default=5, help="unconditional samples (default: 5)")
    p.add_argument("--max-new-tokens", type=_positive_int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_steer)

    p = sub.add_parser("evaluate", help="target-language rate, BLEU/chrF and loss matrix under steering")
    _add_neurons_args(p)
    p.add_argument("--out", required=True, type=Path, help="folder for metrics.json and metrics.txt")
    p.add_argument("--methods", default=",".join(DEFAULT_METHODS), help="comma-separated steering methods (default: %(default)s)")
    p.add_argument("--targets", default=None, help="comma-separated targets (default: every language but --source)")
    p.add_argument("--source", default="en", help="source language of the translation task (default: en)")
    p.add_argument("--alpha", type=float, default=1.0)
    p.add_argument("--samples", type=_positive_int, default=30, help="unconditional samples per target and method (default: 30)")
    p.add_argument("--max-new-tokens", type=_positive_int, default=32)
    p.add_argument("--translation-items", type=int, default=20, help="translation prompts per target (0: skip)")
    p.add_argument("--loss-texts", type=int, default=40, help="held-out texts per language for the loss matrix (0: skip)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_evaluate)
    return parser


def _add_neurons_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--neurons", required=True, type=Path, help="a folder written by `lang-neurons identify`")
    p.add_argument("--set", default=None, choices=["lape", "ap"], help="which neuron set in that folder (default: lape if present)")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--device", default=None)
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


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
    neurons = NeuronSet.load(folder / f"neurons_{method}")
    stats = ActivationStats.load(folder / "stats")
    model = load_model(settings["model"], dtype=args.dtype, device=args.device)
    check_fingerprint(neurons.model, model, f"{folder}/neurons_{method}")
    corpus = load_corpus(settings["corpus"], langs=settings["langs"], max_per_lang=settings.get("max_per_lang"))
    held_out = corpus.split(held_out=settings["held_out"], seed=settings["seed"])[1] if settings["held_out"] > 0 else corpus
    return model, neurons, stats, held_out


def cmd_steer(args: argparse.Namespace) -> int:
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


def cmd_evaluate(args: argparse.Namespace) -> int:
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    for m in methods:
        if m not in st.METHODS:
            raise LangNeuronsError(f"unknown method {m!r}: choose from {', '.join(st.METHODS)}")
    targets = parse_langs(args.targets) if args.targets else None
    if args.out.exists() and not args.out.is_dir():
        raise LangNeuronsError(f"--out {args.out} is a file: give a folder")
    model, neurons, stats, held_out = _load_run(args)
    results = evaluate(
        model, neurons, stats, held_out, targets=targets, methods=methods, alpha=args.alpha, samples=args.samples,
        max_new_tokens=args.max_new_tokens, translation_items=args.translation_items, source=args.source,
        loss_texts=args.loss_texts, seed=args.seed, progress=not args.no_progress,
    )
    table = format_table(results)
    _io.atomic_write_text(args.out / "metrics.json", json.dumps(results, indent=1, ensure_ascii=False))
    _io.atomic_write_text(args.out / "metrics.txt", table + "\n")
    print(table)
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


def cmd_identify(args: argparse.Namespace) -> int:
    langs = parse_langs(args.langs)
    if not 0 <= args.held_out < 1:
        raise LangNeuronsError(f"--held-out must be in [0, 1), got {args.held_out}")
    settings = _run_settings(args, langs)
    reuse = _check_out_dir(args.out, settings, args.force)
    corpus = load_corpus(args.corpus, langs=langs, max_per_lang=args.max_per_lang)
    train = corpus.split(held_out=args.held_out, seed=args.seed)[0] if args.held_out > 0 else corpus
    model = load_model(args.model, dtype=args.dtype, device=args.device)
    site = resolve_site(model, args.site)
    if args.method == "ap":
        for name in ("top_k", "bottom_k"):
            k = getattr(args, name)
            if not 0 <= k <= site.n_neurons:
                raise LangNeuronsError(f"--{name.replace('_', '-')} {k} but the model has {site.n_neurons} neurons at site {site.name!r}")
    stats_path = args.out / "stats"
    if reuse:
        stats = ActivationStats.load(stats_path)
        check_fingerprint(stats.model, model, f"{stats_path}.json")
        print(f"reusing statistics in {stats_path}.safetensors", file=sys.stderr)
    else:
        stats = record(
            model, train, site=args.site, pooling=args.pooling, batch_size=args.batch_size,
            max_length=args.max_length, ap_sentences=args.ap_sentences, progress=not args.no_progress,
        )
        stats.save(stats_path)
        _io.atomic_write_text(args.out / RUN_FILE, json.dumps(settings, indent=1))
    if args.method == "lape":
        neurons = lape(stats, args.top_rate, args.filter_rate, args.activation_bar)
    else:
        neurons = average_precision(stats, args.top_k, args.bottom_k, progress=not args.no_progress)
    neurons.save(args.out / f"neurons_{args.method}")
    print(stats.summary())
    print()
    print(_identify_report(neurons))
    print(f"\nwrote {args.out}/stats.safetensors and {args.out}/neurons_{args.method}.safetensors (+ .json)")
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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
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
