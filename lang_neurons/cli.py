"""Command line: a thin layer over the library.

    lang-neurons identify --method lape --out runs/demo
    lang-neurons run --out runs/demo          # the whole study and an HTML report

This module parses arguments only: its imports are light (:mod:`lang_neurons.choices` holds the
names the flags offer), so ``--help`` and argument errors answer before torch is imported; the
commands themselves live in :mod:`lang_neurons.commands`.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from lang_neurons.arguments import (
    add_common,
    add_evaluation_args,
    add_neurons_args,
    add_selection_args,
    add_sweep_args,
    add_task_args,
    device_name,
    finite,
    lang_code,
    positive_int,
    seed_number,
)
from lang_neurons.choices import (
    DEFAULT_MODEL,
    STEERING_METHODS,
)
from lang_neurons.errors import LangNeuronsError
from lang_neurons.health import LOCK_FILE


class _Parser(argparse.ArgumentParser):
    """Argument errors as one stderr line (exit 2), like every other error of the CLI."""

    commands: dict[str, _Parser]
    """The subcommands' parsers by name (set by :func:`build_parser`)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> _Parser:
    """The ``lang-neurons`` argument parser: every command and flag (the docs' CLI reference is its help)."""
    parser = _Parser(prog="lang-neurons", description="Find and steer language-specific neurons.")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)
    parser.commands = sub.choices
    p = sub.add_parser("identify", help="record statistics and select language-specific neurons")
    add_common(p)
    p.add_argument("--method", default="lape", choices=["lape", "ap"])
    add_selection_args(p)

    p = sub.add_parser(
        "import-masks", help="import a published LAPE-layout mask file (.pth) into a folder steer/evaluate use"
    )
    p.add_argument(
        "file",
        type=Path,
        help="torch file: a list over languages of lists over layers of LongTensors of neuron indices",
    )
    add_common(p)

    p = sub.add_parser("steer", help="print steered generations next to unsteered ones")
    add_neurons_args(p)
    p.add_argument("--target", required=True, type=lang_code, help="language to steer toward, e.g. de")
    p.add_argument("--method", default="add", help=f"one of {', '.join(STEERING_METHODS)} (default: add)")
    p.add_argument("--alpha", type=finite, default=1.0, help="strength for add/scale/diffmean (default: 1.0)")
    p.add_argument("--prompt", action="append", help="a prompt (repeatable); default: unconditional samples from BOS")
    p.add_argument("--samples", type=positive_int, default=5, help="unconditional samples (default: 5)")
    p.add_argument("--max-new-tokens", type=positive_int, default=32)
    p.add_argument("--seed", type=seed_number, default=0)

    p = sub.add_parser("evaluate", help="target-language rate, BLEU/chrF and loss matrix under steering")
    add_neurons_args(p)
    p.add_argument("--out", required=True, type=Path, help="folder for metrics.json and metrics.txt")
    add_evaluation_args(p)
    add_task_args(p)
    p.add_argument("--seed", type=seed_number, default=0)

    p = sub.add_parser("run", help="the whole study: statistics, LAPE and AP neurons, steering evaluation, HTML report")
    add_common(p)
    add_selection_args(p)
    add_evaluation_args(p)
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
    p.add_argument(
        "--setting",
        type=Path,
        default=None,
        help="a sweep's chosen.json (or its folder): its top rate or k, method and alpha (and residual layer and "
        "alpha) become the defaults; flags given explicitly still win (docs/howto/sweep.md)",
    )

    p = sub.add_parser(
        "sweep",
        help="sweep top rate (or AP k) x alpha x method on the dev split, choose, re-measure on the test split",
    )
    add_common(p)
    add_sweep_args(p)

    p = sub.add_parser(
        "doctor",
        help="check the installation: versions against the tested lock, the model, KV-cache "
        "generation, the language identifier (one PASS/FAIL line each)",
    )
    p.add_argument("--model", default=DEFAULT_MODEL, help="model to check (default: the embedded %(default)s)")
    p.add_argument("--no-model", action="store_true", help="skip the checks that load a model")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--device", type=device_name, default=None)
    p.add_argument(
        "--lock",
        type=Path,
        default=LOCK_FILE,
        help="tested lock file to compare with (default: the checkout's %(default)s)",
    )
    return parser


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


def _setting_defaults(path: Path) -> dict[str, Any]:
    """The defaults a sweep's ``chosen.json`` gives ``run``'s flags: the neuron set and its
    selection, the method, alpha, the residual layer (its alpha is set by the command) and the
    settings of the sweep's dev/test split of the prompts."""
    from lang_neurons.config import Setting  # no torch

    s = Setting.load(path)
    out: dict[str, Any] = {"evaluate_set": s.selection, "methods": s.method, "alpha": s.alpha}
    if s.top_rate is not None:
        out.update(top_rate=s.top_rate, per_language=None)
        out.update({k: v for k, v in (("filter_rate", s.filter_rate), ("activation_bar", s.activation_bar_ratio)) if v})
    else:
        out.update(top_k=s.k, bottom_k=s.k)
    if s.residual_layer is not None:
        out["residual_layers"] = str(s.residual_layer)
    return {**out, **(s.prompts_split or {})}  # the sweep's dev/test split of the prompts


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``lang-neurons``: run one command; a user mistake is one stderr line and exit code 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    defaults: dict[str, Any] = {}
    if getattr(args, "protocol", None):  # the preset's values become defaults; flags given explicitly still win
        defaults.update(_protocol_defaults(args.protocol, args.command))
    try:
        if getattr(args, "setting", None):  # so do a sweep's chosen values, over the preset's
            defaults.update(_setting_defaults(args.setting))
    except LangNeuronsError as e:
        print(f"lang-neurons: error: {e}", file=sys.stderr)
        return 2
    if defaults:
        parser.commands[args.command].set_defaults(**defaults)
        args = parser.parse_args(argv)
    from lang_neurons.commands import (
        COMMANDS,  # torch and the model stack load here, after the arguments parsed
    )
    from lang_neurons.hardware import keep_freed_memory

    keep_freed_memory()  # big logits blocks reused, not mapped afresh per batch (lang_neurons.hardware)
    args.started = time.monotonic()  # --time-budget counts from here

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
