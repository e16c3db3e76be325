"""Benchmark one steering row's work, where the main job spends its time: generating continuations
of held-out English prompts and scoring their fluency under the unsteered model.

Prints ONE JSON line. Timed, ``--repeats`` times after a warm-up: ``lang_neurons.generate`` of
``--samples`` continuations (16-token prompts of the default corpus, ``--new-tokens`` new tokens,
sampling, batches of ``--batch``) and ``forcing.fluency`` of them, in ``--dtype`` (cast with
``computing_in``, as ``evaluate`` does); for each, wall seconds, CPU seconds (user, system) and
minor page faults (``getrusage``). ``--keep-freed-memory`` applies what the CLI applies at start
(:func:`lang_neurons.hardware.keep_freed_memory`); compare a run with it and one without.
The machine block names the CPU, its AVX/AMX flags and torch's kernel level: on an x86 CPU with
AVX-512, ``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2``
restricts torch, oneDNN and MKL to AVX2 kernels, the closest this machine comes to an AVX2-only CPU.

Usage::

    python benchmarks/bench_row.py --model tiny --samples 8 --new-tokens 4
    python benchmarks/bench_row.py --dtype float32 --keep-freed-memory       # embedded Gemma
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import _common

import lang_neurons as ln
from lang_neurons import hardware
from lang_neurons.forcing import fluency, forcing_prompts
from lang_neurons.models import computing_in


def _usage() -> tuple[int, float, float]:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_minflt, r.ru_utime, r.ru_stime


def _timed(fn):
    """(result, {wall_s, user_s, sys_s, minor_faults}) of ``fn()``."""
    f0, u0, s0 = _usage()
    t0 = time.perf_counter()
    out = fn()
    wall = time.perf_counter() - t0
    f1, u1, s1 = _usage()
    return out, {
        "wall_s": round(wall, 3),
        "user_s": round(u1 - u0, 2),
        "sys_s": round(s1 - s0, 2),
        "minor_faults": f1 - f0,
    }


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="gemma", choices=["gemma", "tiny"])
    p.add_argument("--dtype", default="float32", help="generation dtype: float32, bfloat16, or auto")
    p.add_argument("--samples", type=int, default=100)
    p.add_argument("--batch", type=int, default=50)
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--keep-freed-memory", action="store_true")
    args = p.parse_args(argv)

    applied = hardware.keep_freed_memory() if args.keep_freed_memory else False
    model = _common.load(args.model)
    held = ln.load_corpus("default", max_per_lang=120).subset(["en"])
    prompts = forcing_prompts(held, "source", tokenizer=model.tokenizer, dev_share=0.01).take("test", args.samples)
    choice = hardware.for_model(model, args.dtype)
    runs = []
    with computing_in(model, choice.dtype):
        gen = dict(max_new_tokens=args.new_tokens, batch_size=args.batch, progress=False)
        ln.generate(model, prompts[:4], **{**gen, "max_new_tokens": 2})  # warm-up
        for rep in range(args.repeats):
            texts, g = _timed(lambda rep=rep: ln.generate(model, prompts, n=args.samples, seed=rep, **gen))
            _, f = _timed(lambda texts=texts: fluency(model, texts))
            runs.append({"generate": g, "fluency": f})
    last = runs[-1]
    print(
        json.dumps(
            {
                "bench": "row",
                "model": args.model,
                "dtype": choice.dtype,
                "dtype_reason": choice.reason,
                "samples": args.samples,
                "batch": args.batch,
                "new_tokens": args.new_tokens,
                "keep_freed_memory": applied,
                "generate_s": _common.median([r["generate"]["wall_s"] for r in runs]),
                "fluency_s": _common.median([r["fluency"]["wall_s"] for r in runs]),
                "row_s": _common.median([r["generate"]["wall_s"] + r["fluency"]["wall_s"] for r in runs]),
                "last": last,
                "runs": runs,
                "peak_rss_mb": _common.peak_rss_mb(),
                "machine": _common.machine(),
            }
        )
    )


if __name__ == "__main__":
    main()
