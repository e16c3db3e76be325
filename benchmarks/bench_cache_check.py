"""Benchmark the KV-cache check that :func:`lang_neurons.load_model` runs once per model.

Prints ONE JSON line: the model's load time with the check off, then ``--repeats`` timings of
:func:`lang_neurons.generation.check_kv_cache` at its default (3 greedy steps on a left-padded
batch of 2 prompts, then one uncached forward pass), their median and share of the load time;
for scale, one 32-token greedy generation of the same batch.

Usage::

    python benchmarks/bench_cache_check.py --model tiny
    OMP_NUM_THREADS=2 python benchmarks/bench_cache_check.py   # embedded Gemma-3-270M
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("LANG_NEURONS_CACHE_CHECK", "off")  # load without the check; it is timed below

import _common
import torch

import lang_neurons as ln
from lang_neurons.generation import CACHE_CHECK_PROMPTS, check_kv_cache


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gemma", choices=["tiny", "gemma"])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    t0 = time.perf_counter()
    model = _common.load(args.model)
    load_s = time.perf_counter() - t0
    check_kv_cache(model)  # warm-up
    runs = [check_kv_cache(model) for _ in range(args.repeats)]
    seconds = [r.seconds for r in runs]
    t0 = time.perf_counter()
    ln.generate(model, list(CACHE_CHECK_PROMPTS), max_new_tokens=32, do_sample=False, progress=False)
    generate_s = time.perf_counter() - t0
    print(
        json.dumps(
            {
                "bench": "cache_check",
                "model": args.model,
                "passed": all(r.passed for r in runs),
                "steps": runs[0].steps,
                "prompts": len(CACHE_CHECK_PROMPTS),
                "repeats": args.repeats,
                "check_s": [round(s, 3) for s in seconds],
                "check_median_s": round(_common.median(seconds), 3),
                "load_s": round(load_s, 2),
                "check_over_load": round(_common.median(seconds) / load_s, 3),
                "generate_32_tokens_s": round(generate_s, 2),
                "torch_threads": torch.get_num_threads(),
                **_common.machine(),
            }
        )
    )


if __name__ == "__main__":
    main()
