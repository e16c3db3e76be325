"""What each ``lang-neurons`` command does, over the stages of :mod:`lang_neurons.pipeline`:
check the command's own inputs, run the stages, print the result. :func:`lang_neurons.cli.main`
imports this module only after the arguments parsed, so that ``--help`` and argument errors
never wait for torch."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from lang_neurons import hardware, protocols, report
from lang_neurons import steering as st
from lang_neurons.choices import EVAL_METHODS
from lang_neurons.config import Setting
from lang_neurons.errors import LangNeuronsError
from lang_neurons.generation import generate
from lang_neurons.health import doctor
from lang_neurons.intervals import check_samples
from lang_neurons.languages import parse_langs
from lang_neurons.neurons import NeuronSet
from lang_neurons.pipeline import (
    check_ap_k,
    evaluate_neurons,
    is_main,
    load_run,
    log_generation_dtype,
    open_run,
    run_neuron_set,
    run_statistics,
    run_steering,
    select_neurons,
    time_left,
    write_metrics,
)
from lang_neurons.run_configs import COMPARISON, evaluate_config, evaluation_settings, sweep_config
from lang_neurons.study import steering_for


def cmd_doctor(args: argparse.Namespace) -> int:
    """``lang-neurons doctor``: one PASS/FAIL line per check; exit code 0 when all pass, 1 otherwise."""
    checks = doctor(None if args.no_model else args.model, device=args.device, dtype=args.dtype, lock=args.lock)
    failed = [c.name for c in checks if not c.passed]
    print(
        f"doctor: {len(checks) - len(failed)} of {len(checks)} checks passed"
        + (f"; failed: {', '.join(failed)}" if failed else "")
    )
    return 1 if failed else 0


def cmd_steer(args: argparse.Namespace) -> int:
    """``lang-neurons steer``: print steered generations next to unsteered ones; returns the exit code."""
    if args.method not in st.METHODS:
        raise LangNeuronsError(f"unknown method {args.method!r}: choose one of {', '.join(st.METHODS)}")
    model, neurons, stats, _ = load_run(args)
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


def cmd_evaluate(args: argparse.Namespace) -> int:
    """``lang-neurons evaluate``: steering evaluation of an identify folder into ``--out``; returns the exit code."""
    if args.task:  # a downstream task instead of the generation study
        return cmd_evaluate_task(args)
    methods = _parse_methods(args.methods)
    targets = parse_langs(args.targets) if args.targets else None
    config = evaluate_config(args, methods, targets)
    if args.out.exists() and not args.out.is_dir():
        raise LangNeuronsError(f"--out {args.out} is a file: give a folder")
    model, neurons, stats, held_out = load_run(args)
    order = ("targets", "methods", "alpha", "samples", "max_new_tokens", "translation_items", "source", "loss_texts")
    kwargs = config.pick((*order, "seed", "intervals", *COMPARISON))  # the order departures are listed in
    results = evaluate_neurons(args, model, neurons, stats, held_out, **kwargs, progress=not args.no_progress)
    print(write_metrics(args.out, results, neurons))
    print(f"\nwrote {args.out}/metrics.json and {args.out}/metrics.txt")
    return 0


def cmd_evaluate_task(args: argparse.Namespace) -> int:
    """``lang-neurons evaluate --task NAME``: the task unsteered and under each of ``--methods``
    toward each of ``--targets`` (default: every language of the set); writes ``tasks.json`` and
    the task's lines of ``metrics.txt`` into ``--out``; returns the exit code."""
    from lang_neurons import _io, tasks

    methods = _parse_methods(args.methods)
    if args.out.exists() and not args.out.is_dir():
        raise LangNeuronsError(f"--out {args.out} is a file: give a folder")
    lang = args.task_lang or args.source
    task = tasks.load_task(args.task, lang, path=args.task_file, split=args.task_split, items=args.task_items)
    if not args.no_intervals:
        check_samples(len(task))
    model, neurons, stats, _ = load_run(args)
    targets = parse_langs(args.targets) if args.targets else list(neurons.langs)
    for t in targets:
        neurons.lang_index(t)
    source = args.source if args.deactivate == "source" else None

    def make(target: str, method: str) -> st.Steering:
        how = dict(source=source, deactivate_value=args.deactivate_value)
        return steering_for(neurons, stats, target, method, args.alpha, **how)

    results = tasks.compare_task(
        model,
        task,
        tasks.steering_rows(make, methods, targets),
        intervals=not args.no_intervals,
        seed=args.seed,
        batch_size=args.task_batch_size,
        repetition_penalty=args.repetition_penalty,
        progress=not args.no_progress,
    )
    results["settings"] = {
        "task_file": str(args.task_file) if args.task_file else None,
        "split": args.task_split,
        "methods": methods,
        "targets": targets,
        "alpha": args.alpha,
        "deactivate": args.deactivate,
        "deactivate_value": args.deactivate_value,
        "repetition_penalty": args.repetition_penalty,
        "seed": args.seed,
        "neurons": {"method": neurons.method, "params": neurons.params},
    }
    lines = tasks.format_comparison(results)
    args.out.mkdir(parents=True, exist_ok=True)
    _io.save_json_artifact(
        args.out / "tasks.json", "tasks", results, model=neurons.model, site=neurons.site, method=neurons.method
    )
    metrics = args.out / "metrics.txt"
    kept = [x for x in metrics.read_text().splitlines() if not x.startswith("task ")] if metrics.is_file() else []
    _io.atomic_write_text(metrics, "\n".join([*kept, *lines]) + "\n")
    print("\n".join(lines))
    print(f"\nwrote {args.out}/tasks.json and the task's lines of {args.out}/metrics.txt")
    return 0


def cmd_identify(args: argparse.Namespace) -> int:
    """``lang-neurons identify``: record (or reuse) statistics and write one neuron set; returns the exit code."""
    model, site, train, _, run, reuse = open_run(args)
    if args.method == "ap":
        check_ap_k(args, site)
    stats = run_statistics(args, model, train, run, reuse)
    if not is_main():
        return 0
    neurons = select_neurons(args, stats, args.method)
    print(stats.summary())
    print()
    print(_identify_report(neurons))
    print(f"\nwrote {args.out}/stats.safetensors and {args.out}/neurons_{args.method}.safetensors (+ .json)")
    return 0


def cmd_import_masks(args: argparse.Namespace) -> int:
    """Import a published mask file as ``neurons_lape`` of --out; --langs gives the file's language
    order. Statistics are recorded on --corpus as by identify (steering needs their means)."""
    from lang_neurons import masks

    masks.read_mask_file(args.file)  # a missing or unreadable file fails before the model loads
    model, site, train, _, run, reuse = open_run(args)
    neurons = masks.from_lape_masks(args.file, list(run.langs), model, site=args.site)
    stats = run_statistics(args, model, train, run, reuse)
    neurons.params["corpus"] = stats.corpus
    neurons.save(args.out / "neurons_lape")
    print(_identify_report(neurons))
    print(
        f"\nwrote {args.out}/neurons_lape.safetensors (+ .json) and {args.out}/stats.safetensors: "
        f"use `lang-neurons steer --neurons {args.out} --target ...`"
    )
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


def _targets(args: argparse.Namespace) -> list[str] | None:
    """``--targets`` (``None``: every language but the source), each one of ``--langs``."""
    targets = parse_langs(args.targets) if args.targets else None
    langs = parse_langs(args.langs)
    for t in targets or []:
        if t not in langs:
            raise LangNeuronsError(f"--targets {t!r} is not one of --langs {','.join(langs)}")
    return targets


def cmd_run(args: argparse.Namespace) -> int:
    """``lang-neurons run``: the whole study and its HTML report, reusing finished stages; returns the exit code."""
    methods = _parse_methods(args.methods)
    targets = _targets(args)
    config = evaluate_config(args, methods, targets)
    alphas = _parse_alphas(args.sweep_alphas)
    out: Path = args.out
    setting = Setting.load(args.setting) if args.setting else None  # its values are the flags' defaults (cli.main)
    if setting is not None and setting.residual_alpha is not None:
        config = dataclasses.replace(config, residual_alphas=(setting.residual_alpha,))
    if setting is not None:
        setting.check_split(config, f"--setting {args.setting}")

    _stage(1, "statistics")
    model, site, train, held_out, run, reuse = open_run(args)
    check_ap_k(args, site)
    stats = run_statistics(args, model, train, run, reuse)
    if not is_main():
        return 0

    _stage(2, "LAPE and AP neurons")
    sets: dict[str, NeuronSet] = {}
    reused: dict[str, bool] = {}
    for method in ("lape", "ap"):
        sets[method], reused[method] = run_neuron_set(args, stats, method, reuse)

    chosen = args.evaluate_set
    label = f"{chosen.upper()} neurons"
    _stage(3, f"steering evaluation ({label})")
    evaluation = evaluation_settings(args, run, config, alphas)
    # a metrics.json is reused only when made in the dtype that "auto" decides on this machine
    evaluation["comparison"]["generation_dtype"] = hardware.for_model(model, config.generation_dtype).dtype
    if setting is not None:
        evaluation["setting"] = setting.to_dict()
    results = run_steering(args, model, sets[chosen], stats, held_out, config, evaluation, reused[chosen], setting)
    table = protocols.format_results(results)

    _stage(4, "figures")
    figures = report.build_figures(sets, stats, results)

    _stage(5, "report")
    tables: dict[str, str | report.Table] = {
        "Headline": report.headline_table(results),
        "Statistics": stats.summary(),
        **{f"{m.upper()} neurons": _identify_report(n) for m, n in sets.items()},
        f"Steering ({label})": report.steering_table(results),
    }
    if "loss_matrix" in results:
        tables[f"Loss matrix ({label})"] = report.loss_matrix_table(results["loss_matrix"])
    if "deactivation_generation" in results:
        tables[f"Deactivation generation ({label})"] = protocols.format_deactivation(results["deactivation_generation"])
    shown = {
        **run.to_dict(),
        "model fingerprint": stats.model,
        "LAPE": sets["lape"].params,
        "AP": sets["ap"].params,
        "steering": results["settings"],
        "sweep alphas": alphas,
    }
    if setting is not None:
        shown["setting"] = setting.describe()
    if args.protocol:
        rs = results["settings"]
        shown["protocol"] = {
            "name": rs["protocol"],
            "paper": rs["paper"],
            "code": rs["code"],
            "departures": {str(i): d for i, d in enumerate(rs["departures"], 1)},
            "additions": {str(i): a for i, a in enumerate(rs["additions"], 1)},
        }
    page = report.write_report(
        out,
        figures,
        shown,
        tables,
        title=f"lang_neurons: {args.model}",
        images=not args.no_images,
        progress=not args.no_progress,
    )
    print(table)
    print(f"\nwrote {out}/metrics.json, {out}/metrics.txt and {len(figures)} figures in {out}/{report.FIGURES}/")
    print(f"report: {page.resolve()}")
    return 0


def _decided(settings: dict[str, Any], decided: dict[str, Any]) -> dict[str, Any]:
    """``settings`` with the generation dtype that ``auto`` decided, and why."""
    keys = ("generation_dtype", "generation_dtype_reason")
    return {**settings, **{k: decided[k] for k in keys if k in decided}}


def cmd_sweep(args: argparse.Namespace) -> int:
    """``lang-neurons sweep``: the statistics (recorded or reused), the sweep's cells on the dev
    split (resumed from ``sweep_cells.jsonl``), the choice and its test re-measurement; writes
    ``sweep.json``, ``chosen.json``, ``metrics.txt``, the figures and ``index.html``; returns the exit code."""
    from lang_neurons import _io, plots
    from lang_neurons.sweep import format_sweep, sweep

    config = sweep_config(args, _targets(args))
    model, site, train, held_out, run, reuse = open_run(args)
    if config.ks is not None and 2 * max(config.ks) > site.n_neurons:
        raise LangNeuronsError(
            f"--ks {max(config.ks)}: top-k plus bottom-k must fit the site's {site.n_neurons} neurons"
        )
    stats = run_statistics(args, model, train, run, reuse)
    if not is_main():
        return 0
    budget = time_left(args)
    progress = not args.no_progress
    log_generation_dtype(model, config.generation_dtype)
    result = sweep(
        model, stats, held_out, config, out=args.out, time_budget=budget, force=args.force, progress=progress
    )
    if result.reused:
        print(f"reusing {result.reused} finished cells of {args.out}/sweep_cells.jsonl", file=sys.stderr)
    setting = result.setting()
    _io.atomic_write_text(args.out / "sweep.json", json.dumps(result.to_dict(), indent=1, default=str))
    _io.atomic_write_text(args.out / "chosen.json", json.dumps(setting.to_file(), indent=1))
    table = format_sweep(result)
    _io.atomic_write_text(args.out / "metrics.txt", table + "\n")
    figures = {"sweep_heatmap": plots.sweep_heatmap(result), "sweep_lines": plots.sweep_lines(result)}
    tables: dict[str, str | report.Table] = {"Chosen setting": setting.describe()}
    for method, test in result.test.items():
        figures[f"test_{method}"] = plots.headline_figure(test)
        tables[f"Test split: {method} at its chosen setting"] = report.headline_table(test)
    tables["Sweep"] = table
    shown = {
        **run.to_dict(),
        "model fingerprint": stats.model,
        "sweep": _decided(config.to_dict(), result.settings),
        "setting": setting.to_dict(),
    }
    page = report.write_report(
        args.out, figures, shown, tables, title=f"lang_neurons sweep: {args.model}", images=not args.no_images
    )
    print(table)
    print(f"\n{setting.describe()}")
    print(f"wrote {args.out}/sweep.json, {args.out}/chosen.json, {args.out}/metrics.txt and {len(figures)} figures")
    print(f"report: {page.resolve()}")
    print(f"use it: lang-neurons run --setting {args.out}/chosen.json --out DIR ...")
    return 0


COMMANDS = {
    "identify": cmd_identify,
    "import-masks": cmd_import_masks,
    "steer": cmd_steer,
    "evaluate": cmd_evaluate,
    "run": cmd_run,
    "sweep": cmd_sweep,
    "doctor": cmd_doctor,
}
"""Each command's function by name: it takes the parsed arguments and returns the exit code."""
