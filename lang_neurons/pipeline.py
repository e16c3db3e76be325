"""The stages of ``lang-neurons run`` and ``identify`` over an output folder, and their reuse.

Data flows one way: :func:`open_run` (check ``--out``, load the corpus and the model) →
:func:`run_statistics` (record, or reuse ``stats.safetensors``) → :func:`run_neuron_set` (LAPE
or AP, or reuse a set selected with the same parameters) → :func:`run_steering` (the steering
evaluation and the sweep, or reuse ``metrics.json`` made with the same settings). Each stage
writes its artifacts atomically, so a killed run leaves ``--out`` resumable. The settings come
from the command line's parsed arguments (:mod:`lang_neurons.cli`); :mod:`lang_neurons.commands`
prints what the stages return.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from lang_neurons import _io, hardware, protocols
from lang_neurons.choices import RESIDUAL
from lang_neurons.config import EvaluateConfig, RunConfig, Setting
from lang_neurons.corpora import LanguageCorpus, load_corpus
from lang_neurons.errors import LangNeuronsError
from lang_neurons.languages import parse_langs
from lang_neurons.models import HookedModel, check_fingerprint, load_model
from lang_neurons.neurons import NeuronSet, average_precision, lape
from lang_neurons.recording import ActivationStats, record
from lang_neurons.run_configs import COMPARISON, ap_config, lape_config, run_config, selection_params
from lang_neurons.sites import Site, resolve_site
from lang_neurons.study import EvaluationResult, evaluate

RUN_FILE = "run.json"


def check_out_dir(out: Path, run: RunConfig, force: bool) -> bool:
    """Whether ``out`` already holds statistics of this very run. Errors if it holds another run."""
    if out.exists() and not out.is_dir():
        raise LangNeuronsError(f"--out {out} is a file: give a folder")
    run_file = out / RUN_FILE
    if not run_file.is_file():
        if out.is_dir() and any(out.iterdir()) and not force:
            raise LangNeuronsError(
                f"--out {out} is not empty and holds no lang-neurons run: choose an empty or new folder, or pass --force"
            )
        return False
    try:  # a run.json written before a setting existed means its default (RunConfig.from_dict)
        saved = RunConfig.from_dict(json.loads(run_file.read_text())).to_dict()
    except (json.JSONDecodeError, LangNeuronsError):
        saved = {}
    settings = run.to_dict()
    diff = [k for k in settings if saved.get(k) != settings[k]]
    if diff and not force:
        k = diff[0]
        raise LangNeuronsError(
            f"--out {out} holds a different run ({k}: {saved.get(k)!r} there, {settings[k]!r} now): "
            "use another --out, or --force to overwrite it"
        )
    return not diff and not force and (out / "stats.json").is_file()


def run_corpora(run: RunConfig | Mapping[str, Any]) -> tuple[LanguageCorpus, LanguageCorpus]:
    """The train and held-out corpora of a run (its config, or ``run.json`` as a dict)."""
    if isinstance(run, Mapping):
        run = RunConfig.from_dict(run)
    options = {"parallel": True} if run.parallel else {}
    corpus = load_corpus(run.corpus, langs=list(run.langs), max_per_lang=run.max_per_lang, **options)
    if run.held_out > 0:
        return corpus.split(held_out=run.held_out, seed=run.seed)
    return corpus, corpus


def open_run(
    args: argparse.Namespace,
) -> tuple[HookedModel, Site, LanguageCorpus, LanguageCorpus, RunConfig, bool]:
    """Check --out, load the corpus and the model (what identify and run share).

    Returns the model, its site, the train and held-out corpora, the run's settings and whether
    --out already holds the statistics of this very run.
    """
    langs = parse_langs(args.langs)
    if len(langs) < 2 and args.command != "import-masks":
        raise LangNeuronsError(f"--langs {args.langs!r} names one language: LAPE and AP compare at least two")
    run = run_config(args, langs)
    if args.checkpoint_every < 0:
        raise LangNeuronsError(
            f"--checkpoint-every must be 0 (no checkpoints) or a positive number of batches, got {args.checkpoint_every}"
        )
    if args.parallel and not Path(args.corpus).expanduser().is_dir():
        raise LangNeuronsError(
            f"--parallel marks a --corpus folder of <code>.txt files as line-aligned, but --corpus {args.corpus!r} is not a folder "
            "(the named corpora already know whether they are parallel): leave --parallel out"
        )
    reuse = check_out_dir(args.out, run, args.force)
    train, held_out = run_corpora(run)
    device = init_distributed(args)
    model = load_model(
        args.model,
        dtype=args.dtype,
        device=device,
        n_devices=args.n_devices,
        device_map=device_map(args.device_map),
        cache_check=args.cache_check,
    )
    return model, resolve_site(model, args.site), train, held_out, run, reuse


def load_run(args: argparse.Namespace):
    """Model, neuron set, statistics and held-out corpus of an identify folder."""
    folder = args.neurons
    run_file = folder / RUN_FILE
    if not run_file.is_file():
        raise LangNeuronsError(
            f"--neurons {folder} holds no lang-neurons run ({RUN_FILE} missing): run `lang-neurons identify --out {folder}` first"
        )
    run = RunConfig.from_dict(json.loads(run_file.read_text()))
    method = args.set or next((m for m in ("lape", "ap") if (folder / f"neurons_{m}.json").is_file()), None)
    if method is None:
        raise LangNeuronsError(f"--neurons {folder} holds no neuron set: run `lang-neurons identify --out {folder}`")
    if not (folder / f"neurons_{method}.json").is_file():
        why = (
            f" (--protocol {args.protocol} evaluates {method.upper()} neurons)"
            if getattr(args, "protocol", None)
            else ""
        )
        raise LangNeuronsError(
            f"--neurons {folder} holds no {method.upper()} neuron set{why}: "
            f"run `lang-neurons identify --method {method} --out {folder}`"
        )
    neurons = NeuronSet.load(folder / f"neurons_{method}")
    stats = ActivationStats.load(folder / "stats")
    model = load_model(run.model, dtype=args.dtype, device=args.device, cache_check=args.cache_check)
    check_fingerprint(neurons.model, model, f"{folder}/neurons_{method}")
    return model, neurons, stats, run_corpora(run)[1]


def device_map(text: str | None) -> str | dict | None:
    """--device-map: a name such as ``auto`` or a JSON object module → device."""
    if text is None or not text.strip().startswith("{"):
        return text
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise LangNeuronsError(
            f"--device-map is neither a name (auto, balanced, sequential) nor a JSON object: {e}"
        ) from None


def init_distributed(args: argparse.Namespace) -> str | None:
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
        raise LangNeuronsError(
            "data-parallel recording (torchrun) puts one model on each rank: drop --n-devices/--device-map"
        )
    if cuda:
        torch.cuda.set_device(local)
    dist.init_process_group("nccl" if cuda else "gloo")
    return f"cuda:{local}" if cuda and args.device is None else args.device


def is_main() -> bool:
    """Whether this process writes files: always, except on ranks > 0 of a torchrun group."""
    import torch.distributed as dist

    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def check_ap_k(args: argparse.Namespace, site: Site) -> None:
    """Refuse ``--top-k``/``--bottom-k`` outside ``[0, neurons at the site]`` before recording starts."""
    ap_config(args).check(site.n_neurons, site.name)


def run_statistics(
    args: argparse.Namespace, model: HookedModel, train: LanguageCorpus, run: RunConfig, reuse: bool
) -> ActivationStats:
    """The statistics in --out when ``reuse``, else recorded now and saved there with run.json."""
    stats_path = args.out / "stats"
    if reuse:
        stats = ActivationStats.load(stats_path)
        check_fingerprint(stats.model, model, f"{stats_path}.json")
        print(f"reusing statistics in {stats_path}.safetensors", file=sys.stderr)
        return stats
    checkpoint = args.out / "stats.checkpoint.safetensors"
    if is_main():
        if args.force and not args.resume:
            checkpoint.unlink(missing_ok=True)
        # run.json first: a killed recording leaves --out resumable with the same settings.
        _io.atomic_write_text(args.out / RUN_FILE, json.dumps(run.to_dict(), indent=1))
    stats = record(
        model,
        train,
        config=run.record,
        progress=not args.no_progress,
        checkpoint=checkpoint if args.checkpoint_every else None,
        checkpoint_every=args.checkpoint_every or 1,
        resume=args.resume,
    )
    if is_main():
        stats.save(stats_path)
    return stats


def select_neurons(args: argparse.Namespace, stats: ActivationStats, method: str) -> NeuronSet:
    """Select ``method``'s neurons from ``stats`` and save them in --out."""
    if method == "lape":
        neurons = lape(stats, **lape_config(args).to_dict())
    else:
        ap = ap_config(args)
        neurons = average_precision(stats, ap.top_k, ap.bottom_k, progress=not args.no_progress, share=ap.share)
    neurons.save(args.out / f"neurons_{method}")
    return neurons


def run_neuron_set(
    args: argparse.Namespace, stats: ActivationStats, method: str, reuse: bool
) -> tuple[NeuronSet, bool]:
    """``method``'s neurons in --out when ``reuse`` and they were selected with the same
    parameters from these statistics; else selected now and saved. Also says if reused."""
    path = args.out / f"neurons_{method}"
    if reuse and path.with_suffix(".json").is_file():
        neurons = NeuronSet.load(path)
        wanted = selection_params(args, method)
        if {k: neurons.params.get(k) for k in wanted} == wanted and neurons.langs == stats.langs:
            print(f"reusing {method.upper()} neurons in {path}.safetensors", file=sys.stderr)
            return neurons, True
    return select_neurons(args, stats, method), False


def evaluate_neurons(
    args: argparse.Namespace,
    model: HookedModel,
    neurons: NeuronSet,
    stats: ActivationStats,
    held_out: LanguageCorpus,
    setting: Setting | None = None,
    **kwargs: Any,
) -> EvaluationResult:
    """:func:`~lang_neurons.study.evaluate`, or :func:`~lang_neurons.protocols.evaluate` under --protocol
    (every setting passed, so the run's departures from the preset are listed); ``setting``: a
    sweep's chosen setting (--setting), recorded in ``settings["setting"]``."""
    log_generation_dtype(model, kwargs.get("generation_dtype"))
    kwargs["time_budget"] = time_left(args)
    if args.protocol:
        return protocols.evaluate(model, neurons, stats, held_out, args.protocol, setting=setting, **kwargs)
    if setting is not None:
        setting.check_neurons(neurons.params)
    results = evaluate(model, neurons, stats, held_out, **kwargs)
    if setting is not None:
        results.settings["setting"] = setting.record()
    return results


def time_left(args: argparse.Namespace) -> float | None:
    """Seconds of ``--time-budget`` left since the command started (``None``: no budget)."""
    if getattr(args, "time_budget", None) is None:
        return None
    return args.time_budget * 60 - (time.monotonic() - getattr(args, "started", time.monotonic()))


def log_generation_dtype(model: HookedModel, choice: str | None) -> None:
    """One stderr line: the dtype generation runs in on this machine, and why."""
    print(f"generation in {hardware.for_model(model, choice)}", file=sys.stderr)


def write_metrics(out: Path, results: EvaluationResult, neurons: NeuronSet) -> str:
    """Write ``metrics.json`` (``results.to_dict()``, a checked artifact) and ``metrics.txt`` into
    ``out``; returns the table."""
    table = protocols.format_results(results)
    data = results.to_dict()
    _io.save_json_artifact(
        out / "metrics.json", "metrics", data, model=neurons.model, site=neurons.site, method=neurons.method
    )
    _io.atomic_write_text(out / "metrics.txt", table + "\n")
    return table


def sweep_points(results: Mapping[str, Any], method: str, alpha: float) -> list[dict[str, Any]]:
    """One steering-sweep point per target from :func:`evaluate`'s results (quality and forcing
    score where the results have them)."""
    points = []
    for target, entry in results["targets"].items():
        row = entry["methods"][method]
        point = {
            "target": target,
            "method": method,
            "alpha": alpha,
            "rate": row["rate"],
            "bleu": row.get("translation", {}).get("bleu"),
            "n_neurons": row["neurons"],
        }
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


def run_steering(
    args: argparse.Namespace,
    model: HookedModel,
    neurons: NeuronSet,
    stats: ActivationStats,
    held_out: LanguageCorpus,
    config: EvaluateConfig,
    evaluation: dict[str, Any],
    reuse: bool,
    setting: Setting | None = None,
) -> Mapping[str, Any]:
    """:func:`evaluate` of ``neurons`` with ``config`` (plus the sweep's points at
    ``evaluation["sweep_alphas"]``), or the results in --out/metrics.json when ``reuse`` and they
    were made with the same ``evaluation`` settings (:func:`evaluation_settings`). ``setting``: a
    sweep's chosen setting (--setting), recorded in the results' settings."""
    path = args.out / "metrics.json"
    if reuse and path.is_file():
        try:  # an older, damaged or edited file, or one from another model, is recomputed
            saved = _io.load_json_artifact(path, "metrics", model=model)
        except LangNeuronsError:
            saved = {}
        if saved.get("evaluation") == evaluation:
            print(f"reusing the steering evaluation in {path}", file=sys.stderr)
            return saved
    progress = not args.no_progress
    order = ("methods", "alpha", "loss_texts", *COMPARISON, "targets", "samples", "max_new_tokens", "source")
    kwargs = config.pick((*order, "translation_items", "seed", "intervals", "residual_alphas"))  # departures' order
    results = evaluate_neurons(args, model, neurons, stats, held_out, setting, **kwargs, progress=progress)
    methods = list(config.methods)
    if evaluation["sweep_alphas"]:
        results.sweep = []
        layer = results.residual["layer"] if results.residual is not None else None
        for alpha in evaluation["sweep_alphas"]:
            # the first method at this alpha (measured above at --alpha), and residual DiffMean at its chosen layer with this alpha
            same = alpha == config.alpha
            more: Mapping[str, Any] = results
            if layer is not None or not same:
                at = dataclasses.replace(
                    config,
                    methods=() if same else tuple(methods[:1]),
                    alpha=alpha,
                    loss_texts=0,
                    controls=0,
                    residual=layer is not None,
                    residual_layers=(layer,) if layer is not None else None,
                    residual_alphas=(alpha,),
                )
                more = evaluate(model, neurons, stats, held_out, config=at, progress=progress)
            results.sweep += sweep_points(results if same else more, methods[0], alpha)
            if layer is not None:
                results.sweep += sweep_points(more, RESIDUAL, alpha)
    results.evaluation = evaluation
    write_metrics(args.out, results, neurons)
    return results
