"""Benchmark :func:`lang_neurons._ap.average_precision` against a scikit-learn loop.

Prints ONE JSON line.

Default mode: ``N`` neurons x ``S`` sentences x ``C`` classes of random float32 scores
(with a few exact ties, as float32 activations have).  Reports our wall time for
``[C, N]`` APs (one direction, and both directions from one sort), the time of the
equivalent scikit-learn loop (``average_precision_score`` for every class and neuron),
measured on ``--sklearn-neurons`` neurons and extrapolated linearly to ``N``
(``"sklearn_extrapolated_from"``), the speedup, the max abs difference to scikit-learn on
that subsample (both directions), and the peak RSS of the process.

``--llama7b``: Llama-2-7B scale, 352,256 neurons (32 layers x 11,008) x 18,000 sentences
(input alone would be 25 GB in float32, so random data is generated one block of neurons at
a time and the function is called per block, as a caller with huge data would).
``--llama7b-neurons n`` runs only the first ``n`` neurons and extrapolates the time to
352,256 (stated in the JSON); peak RSS is measured, not extrapolated.

Usage::

    python benchmarks/bench_ap.py                       # 36,864 x 3,000 x 6
    python benchmarks/bench_ap.py --neurons 4096 --sklearn-neurons 20
    python benchmarks/bench_ap.py --llama7b --llama7b-neurons 32768
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def _load_ap_module():
    from lang_neurons import _ap

    return _ap


def peak_rss_mb() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return r / 2**20 if sys.platform == "darwin" else r / 2**10


def random_scores(rng: np.random.Generator, n_sentences: int, n_neurons: int) -> np.ndarray:
    """float32 [sentences, neurons], per-neuron shifted/scaled normals (realistic: ~20% of
    neurons of 3,000 float32 samples contain an exact tie somewhere)."""
    x = rng.standard_normal((n_sentences, n_neurons), dtype=np.float32)
    x *= rng.uniform(0.1, 3.0, n_neurons).astype(np.float32)
    x += rng.uniform(-1.0, 1.0, n_neurons).astype(np.float32)
    return x


def sklearn_loop(scores: np.ndarray, labels: np.ndarray, n_classes: int, descending: bool) -> np.ndarray:
    from sklearn.metrics import average_precision_score  # imported (and warmed up) before timing

    out = np.empty((n_classes, scores.shape[1]))
    s = scores if descending else -scores
    for n in range(scores.shape[1]):
        col = s[:, n]
        for c in range(n_classes):
            out[c, n] = average_precision_score(labels == c, col)
    return out


def bench_default(args, ap) -> dict:
    rng = np.random.default_rng(args.seed)
    N, S, C = args.neurons, args.sentences, args.classes
    labels = rng.integers(0, C, S)
    rss_before = peak_rss_mb()  # interpreter + torch + numpy, before the input exists
    scores = random_scores(rng, S, N)
    st, lt = torch.from_numpy(scores), torch.from_numpy(labels)
    kw = dict(chunk_size=args.chunk_size, num_threads=args.threads)
    load0 = os.getloadavg()[0]

    ap.average_precision(st[:, :256], lt, **kw)  # warm-up (allocator, thread pool)
    times_one, times_both, cpu_one = [], [], []
    for _ in range(args.repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        ours = ap.average_precision(st, lt, **kw)
        times_one.append(time.perf_counter() - t0)
        cpu_one.append(time.process_time() - c0)
        t0 = time.perf_counter()
        ours_d, ours_a = ap.average_precision_both(st, lt, **kw)
        times_both.append(time.perf_counter() - t0)
    t_one, t_both = min(times_one), min(times_both)
    rss_ours = peak_rss_mb()  # high-water mark: input + our working memory (sklearn not imported yet)

    sklearn_loop(scores[:, :1], labels, C, descending=True)  # import + warm-up, not timed
    n_sk = min(args.sklearn_neurons, N)
    idx = np.sort(rng.choice(N, n_sk, replace=False))
    sub = np.ascontiguousarray(scores[:, idx])
    t0, c0 = time.perf_counter(), time.process_time()
    ref_d = sklearn_loop(sub, labels, C, descending=True)
    t_sk_sub = time.perf_counter() - t0
    cpu_sk = (time.process_time() - c0) * N / n_sk
    ref_a = sklearn_loop(sub, labels, C, descending=False)
    t_sk = t_sk_sub * N / n_sk  # one direction, all C classes, all N neurons
    diff = max(
        float(np.abs(ours.numpy()[:, idx] - ref_d).max()),
        float(np.abs(ours_d.numpy()[:, idx] - ref_d).max()),
        float(np.abs(ours_a.numpy()[:, idx] - ref_a).max()),
    )
    per_call_ms = t_sk_sub / (n_sk * C) * 1e3
    # neurons of the checked subsample whose scores hold an exact tie (the tie rule is exercised)
    tied = int(sum(len(np.unique(sub[:, j])) < S for j in range(n_sk)))
    return {
        "mode": "default",
        "neurons": N,
        "sentences": S,
        "classes": C,
        "threads": args.threads or torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "ours_s": round(t_one, 4),
        "ours_both_directions_s": round(t_both, 4),
        "ours_us_per_neuron": round(t_one / N * 1e6, 2),
        "repeats": args.repeats,
        "sklearn_s": round(t_sk, 2),
        "sklearn_extrapolated_from": n_sk,
        "sklearn_ms_per_call": round(per_call_ms, 4),
        "speedup": round(t_sk / t_one, 1),
        "speedup_both_directions": round(2 * t_sk / t_both, 1),
        # stricter reading: one sklearn call per neuron (not per class x neuron) as the baseline
        "speedup_vs_one_sklearn_call_per_neuron": round(t_sk / C / t_one, 1),
        # CPU seconds (all threads) instead of wall time: robust to other load on the machine
        "ours_cpu_s": round(min(cpu_one), 3),
        "sklearn_cpu_s": round(cpu_sk, 2),
        "cpu_time_ratio": round(cpu_sk / min(cpu_one), 1),
        "max_abs_diff": diff,
        "checked_neurons_with_ties": tied,
        "peak_rss_mb_after_ours": round(rss_ours, 1),
        "peak_rss_mb_end": round(peak_rss_mb(), 1),
        "peak_rss_before_input_mb": round(rss_before, 1),
        "input_mb": round(scores.nbytes / 2**20, 1),
        "loadavg_1m_start_end": [round(load0, 2), round(os.getloadavg()[0], 2)],
        "numpy": np.__version__,
        "torch": torch.__version__,
        "machine": platform.machine(),
    }


def bench_llama7b(args, ap) -> dict:
    total_neurons, S, C = 32 * 11008, 18000, args.classes
    n_run = min(args.llama7b_neurons or total_neurons, total_neurons)
    block = args.block
    rng = np.random.default_rng(args.seed)
    labels = torch.from_numpy(rng.integers(0, C, S))
    kw = dict(chunk_size=args.chunk_size, num_threads=args.threads)
    rss_before = peak_rss_mb()
    load0 = os.getloadavg()[0]
    t_ap = t_gen = 0.0
    diff = sk_per_call = float("nan")
    checksum = 0.0
    for a in range(0, n_run, block):
        b = min(a + block, n_run)
        t0 = time.perf_counter()
        x = torch.from_numpy(random_scores(rng, S, b - a))
        t1 = time.perf_counter()
        d, asc = ap.average_precision_both(x, labels, **kw)
        t2 = time.perf_counter()
        t_gen += t1 - t0
        t_ap += t2 - t1
        checksum += float(d.sum() + asc.sum())
        if a == 0:  # spot check vs scikit-learn on a few neurons of the first block (untimed)
            sub = x[:, : args.llama7b_check].numpy().copy()  # a copy: a view would keep the block alive
            lab = labels.numpy()
            sklearn_loop(sub[:, :1], lab, C, True)  # import + warm-up
            t0 = time.perf_counter()
            ref_d = sklearn_loop(sub, lab, C, True)
            sk_per_call = (time.perf_counter() - t0) / (sub.shape[1] * C)
            diff = max(
                float(np.abs(d[:, : sub.shape[1]].numpy() - ref_d).max()),
                float(np.abs(asc[:, : sub.shape[1]].numpy() - sklearn_loop(sub, lab, C, False)).max()),
            )
            del sub
        del x, d, asc
    return {
        "mode": "llama7b",
        "neurons_total": total_neurons,
        "neurons_run": n_run,
        "extrapolated": n_run < total_neurons,
        "sentences": S,
        "classes": C,
        "block_neurons": block,
        "block_input_mb": round(S * block * 4 / 2**20, 1),
        "threads": args.threads or torch.get_num_threads(),
        "ours_both_directions_s": round(t_ap, 2),
        "ours_both_directions_s_full": round(t_ap * total_neurons / n_run, 1),
        "us_per_neuron": round(t_ap / n_run * 1e6, 2),
        "data_generation_s": round(t_gen, 2),
        "max_abs_diff_vs_sklearn": diff,
        "sklearn_ms_per_call": round(sk_per_call * 1e3, 3),
        # both directions = 2 sklearn calls per (class, neuron); extrapolated from the checked neurons
        "sklearn_both_directions_s_full_extrapolated": round(2 * C * total_neurons * sk_per_call, 0),
        "speedup_both_directions": round(2 * C * sk_per_call * n_run / t_ap, 1),
        "sklearn_checked_neurons": args.llama7b_check,
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "peak_rss_before_mb": round(rss_before, 1),
        "loadavg_1m_start_end": [round(load0, 2), round(os.getloadavg()[0], 2)],
        "checksum": checksum,
    }


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--neurons", type=int, default=36_864)
    p.add_argument("--sentences", type=int, default=3_000)
    p.add_argument("--classes", type=int, default=6)
    p.add_argument("--sklearn-neurons", type=int, default=100, help="neurons of the sklearn subsample")
    p.add_argument("--repeats", type=int, default=3, help="best of this many timings of ours")
    p.add_argument("--chunk-size", type=int, default=None)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--llama7b", action="store_true", help="352,256 x 18,000 random data, block by block")
    p.add_argument("--llama7b-neurons", type=int, default=None, help="run only this many neurons, extrapolate")
    p.add_argument("--block", type=int, default=16_384, help="neurons generated per block in --llama7b")
    p.add_argument("--llama7b-check", type=int, default=3, help="neurons checked against sklearn in --llama7b")
    args = p.parse_args(argv)
    ap = _load_ap_module()
    res = bench_llama7b(args, ap) if args.llama7b else bench_default(args, ap)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
