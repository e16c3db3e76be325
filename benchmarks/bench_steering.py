"""Benchmark generation throughput with and without steering hooks.

Prints ONE JSON line. A quick :func:`lang_neurons.record` of a small slice of the default corpus
gives the statistics and the neuron set (LAPE, or AP with ``--neurons ap``); the steerings are
:func:`lang_neurons.language_arithmetic` toward ``--target`` with method ``add`` and
``override`` (every other language's neurons switched off, the target's activated).

Timed: ``model.generate`` of ``--batch`` sequences from BOS, ``--new-tokens`` new tokens each
(``stop_at_eos=False``, so every variant generates exactly the same number of tokens), sampling
with the same seed, KV cache on, inside ``lang_neurons.steer(model, hooks)``; repetitions are
interleaved (none, add, override, none, ...) and medians reported. ``overhead_<method>`` is the
share of throughput lost to the hooks: ``1 - tok_s(method) / tok_s(none)``.

Usage::

    python benchmarks/bench_steering.py --model tiny
    OMP_NUM_THREADS=2 flock /tmp/heavy.lock python benchmarks/bench_steering.py   # embedded Gemma
"""

from __future__ import annotations

import argparse
import json
import time

import _common
import torch

import lang_neurons as ln


def _generate(model, hooks, batch: int, new_tokens: int, seed: int) -> tuple[float, float]:
    """(wall s, CPU s) of one generation of ``batch`` x ``new_tokens`` tokens from BOS."""
    bos = torch.full((batch, 1), int(model.tokenizer.bos_token_id))
    torch.manual_seed(seed)
    t0, c0 = time.perf_counter(), time.process_time()
    with torch.inference_mode(), ln.steer(model, hooks):
        out = model.generate(
            bos,
            max_new_tokens=new_tokens,
            stop_at_eos=False,
            do_sample=True,
            temperature=0.8,
            return_type="tokens",
            verbose=False,
        )
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    assert out.shape == (batch, 1 + new_tokens), out.shape
    return wall, cpu


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="gemma", choices=["gemma", "tiny"])
    p.add_argument("--neurons", default="lape", choices=["lape", "ap"])
    p.add_argument("--target", default="de")
    p.add_argument("--record-texts", type=int, default=40, help="texts per language for the quick recording")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--new-tokens", type=int, default=48)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--profile", action="store_true", help="print cProfile's top functions of one 'add' generation to stderr"
    )
    args = p.parse_args(argv)

    model = _common.load(args.model)
    corpus = ln.load_corpus("default", max_per_lang=args.record_texts)
    t0 = time.perf_counter()
    stats = ln.record(model, corpus, progress=False)
    record_s = time.perf_counter() - t0
    if args.neurons == "lape":
        neurons = ln.lape(stats)
    else:
        k = max(1, stats.n_neurons // 200)  # 0.5 % top + 0.5 % bottom per language
        neurons = ln.average_precision(stats, top_k=k, bottom_k=k)
    steerings = {
        "none": [],
        "add": ln.language_arithmetic(neurons, stats, target=args.target, method="add"),
        "override": ln.language_arithmetic(neurons, stats, target=args.target, method="override"),
    }
    for hooks in steerings.values():  # warm-up (allocator, first-call costs)
        _generate(model, hooks, args.batch, 4, args.seed)
    if args.profile:
        import cProfile
        import pstats
        import sys

        prof = cProfile.Profile()
        prof.enable()
        _generate(model, steerings["add"], args.batch, args.new_tokens, args.seed)
        prof.disable()
        pstats.Stats(prof, stream=sys.stderr).sort_stats("tottime").print_stats(25)

    load0 = _common.machine()["loadavg_1m"]
    wall: dict[str, list[float]] = {k: [] for k in steerings}
    cpu: dict[str, list[float]] = {k: [] for k in steerings}
    for _ in range(args.repeats):
        for name, hooks in steerings.items():
            w, c = _generate(model, hooks, args.batch, args.new_tokens, args.seed)
            wall[name].append(w)
            cpu[name].append(c)
    n_tokens = args.batch * args.new_tokens
    med = {k: _common.median(v) for k, v in wall.items()}
    med_cpu = {k: _common.median(v) for k, v in cpu.items()}
    res = {
        "bench": "steering",
        "model": args.model,
        "neurons": args.neurons,
        "target": args.target,
        "n_steered_neurons": {k: v.n_neurons for k, v in steerings.items() if k != "none"},
        "n_hooks": {k: len(v) for k, v in steerings.items()},
        "batch": args.batch,
        "new_tokens": args.new_tokens,
        "repeats": args.repeats,
        **{f"{k}_tok_s": round(n_tokens / v, 1) for k, v in med.items()},
        **{f"overhead_{k}": round(1 - med["none"] / med[k], 4) for k in steerings if k != "none"},
        # the same from CPU seconds of this process (less sensitive to other load)
        **{f"cpu_overhead_{k}": round(1 - med_cpu["none"] / med_cpu[k], 4) for k in steerings if k != "none"},
        "times_s": {k: [round(t, 3) for t in v] for k, v in wall.items()},
        "cpu_s": {k: [round(t, 3) for t in v] for k, v in cpu.items()},
        "record_texts": len(corpus),
        "record_s": round(record_s, 1),
        "peak_rss_mb": _common.peak_rss_mb(),
        **_common.machine(),
        "loadavg_1m_start": load0,
    }
    print(json.dumps(res))


if __name__ == "__main__":
    main()
