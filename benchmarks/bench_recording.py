"""Benchmark :func:`lang_neurons.record` against bare forward passes on the same batches.

Prints ONE JSON line. Timed variants, each over the same batches (record's own batching,
``recording.batches`` + ``recording.pad``, on the default corpus):

* ``a``: a bare full forward (``model(ids, attention_mask=mask)``, no hooks, logits computed);
* ``b``: a bare forward stopped right after the last MLP layer (one hook on
  ``blocks.<last>.hook_mlp_out`` that raises; the unembedding is skipped);
* ``b_same_stop``: a bare forward stopped where ``record`` stops (``blocks.<last>.hook_resid_post``,
  since ``record`` also sums the residual stream): the same model work as ``c``, so
  ``c / b_same_stop`` is the pure cost of the statistics;
* ``c``: ``lang_neurons.record`` (LAPE counts + sums + sums of squares + AP mean pooling),
  end to end: tokenisation, batching, hooks, statistics.

Repetitions are interleaved (a, b, b_same_stop, c, a, b, ...) and the medians reported, so load
from other processes hits every variant alike. Each ratio also comes as the mean of its
per-repetition ratios (a variant against the ``c`` run next to it) with a 95 % bootstrap interval
over the repetitions (``*_mean``, ``*_ci``).

Inside ``c`` the time is split, measured in the same pass and so robust to the machine's speed
drifting between passes: the time spent in ``record``'s hooks (``perf_counter`` around every hook
call: the neuron statistics, including the ``act_fn`` module hooks, and the residual sums), in
the model's forward outside them, and in ``record`` outside the forward (tokenisation, batching,
``set_batch``, ``flush``, folding the chunk sums). ``c_share_*`` are those parts of ``c``;
``c_share_model`` is what ``c/b_same_stop`` would be if ``c``'s model work took exactly as long
as ``b_same_stop``'s (``c_model_over_b_same_stop`` checks that, pass against pass).

``--every k`` times the texts of every k-th batch of each language: ``record`` gets those texts,
and ``a``/``b`` get the batches ``recording.batches`` makes of them.
The padding share is reported for the whole corpus and for the timed batches. Peak RSS is read
after an untimed ``record`` warm-up (before any full forward has allocated logits) and at the end.

Usage::

    python benchmarks/bench_recording.py --model tiny
    OMP_NUM_THREADS=2 flock /tmp/heavy.lock python benchmarks/bench_recording.py   # embedded Gemma
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import time

import _common
import torch

import lang_neurons as ln
from lang_neurons.intervals import bootstrap
from lang_neurons.recording import batching, recorder
from lang_neurons.recording.accumulator import Accumulator
from lang_neurons.sites import resolve_site


class _Stop(Exception):
    pass


def _raise(value, hook=None):
    raise _Stop


def _timed(fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of ``fn()``."""
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0


def _timing(clock: dict[str, float], part: str, fn, label: bool = False):
    """``fn`` that adds its own wall time (also when it raises) to ``clock[part]``; with ``label``
    each call is also a ``torch.profiler`` range named ``record.<part>`` (see :func:`_hook_ops`)."""

    def timed(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            if not label:
                return fn(*args, **kwargs)
            with torch.profiler.record_function(f"record.{part}"):
                return fn(*args, **kwargs)
        finally:
            clock[part] += time.perf_counter() - t0

    return timed


@contextlib.contextmanager
def _split_clock(model, clock: dict[str, float], label: bool = False):
    """For the ``with`` block, time ``record``'s hooks (``neurons``: the site's hooks and the
    ``act_fn`` module hooks; ``resid``: the ``hook_resid_post`` hooks, which also hold the neuron
    statistics of any layer whose ``act_fn`` module did not take the gate) and the model's whole
    forward (``forward``, hooks included) into ``clock``: ``record`` builds its
    :class:`Accumulator` from :mod:`lang_neurons.recording.recorder`, where a subclass that wraps
    each hook stands in for it. About 650 wrapped calls per pass on Gemma."""

    class TimedAccumulator(Accumulator):
        def hooks(self):
            return [
                (name, _timing(clock, "resid" if name.endswith("hook_resid_post") else "neurons", fn, label))
                for name, fn in super().hooks()
            ]

        def _act_hook(self, layer):
            return _timing(clock, "neurons", super()._act_hook(layer), label)

    accumulator, own_forward = recorder.Accumulator, vars(model).get("forward")  # an instance's own, if any
    try:
        recorder.Accumulator = TimedAccumulator
        model.forward = _timing(clock, "forward", model.forward)
        yield
    finally:
        recorder.Accumulator = accumulator
        if own_forward is None:
            vars(model).pop("forward", None)  # back to the class's forward
        else:
            model.forward = own_forward


def _hook_ops(prof) -> dict[str, dict[str, float]]:
    """Self CPU ms of the ops inside the labelled hook calls (:func:`_timing`), per part and op;
    ``python`` is the hooks' own time outside any op."""
    out: dict[str, dict[str, float]] = {}
    for e in prof.events():
        part, up = None, e
        while up is not None and part is None:
            if up.name.startswith("record."):
                part = up.name.removeprefix("record.")
            up = up.cpu_parent
        if part is not None:
            op = "python" if e.name.startswith("record.") else e.name
            out.setdefault(part, {}).setdefault(op, 0.0)
            out[part][op] += e.self_cpu_time_total / 1e3
    return {k: dict(sorted(((op, round(ms, 1)) for op, ms in v.items()), key=lambda x: -x[1])) for k, v in out.items()}


def _mean_ci(values: list[float]) -> tuple[float, list[float]]:
    """Mean and 95 % percentile-bootstrap interval over the repetitions (10,000 resamples)."""
    ci = bootstrap(values, lambda xs: sum(xs) / len(xs), resamples=10_000)
    return round(ci.estimate, 3), [round(ci.low, 3), round(ci.high, 3)]


def _forward(model, batches, stop_at: str | None) -> None:
    """One pass over ``batches`` (token ids, mask), stopping at hook ``stop_at``."""
    hooks = [(stop_at, _raise)] if stop_at else []
    with torch.inference_mode(), ln.steer(model, hooks):
        for ids, mask in batches:
            try:
                model(ids, attention_mask=mask)
            except _Stop:
                pass


def _padding(encoded: dict[str, list[list[int]]], plans: dict[str, list[list[int]]]) -> tuple[int, int]:
    """(pad positions, processed positions) over the given batches."""
    pad = total = 0
    for lang, plan in plans.items():
        for batch in plan:
            lengths = [len(encoded[lang][i]) for i in batch]
            total += max(lengths) * len(lengths)
            pad += max(lengths) * len(lengths) - sum(lengths)
    return pad, total


def micro(batch: int, pos: int, width: int, repeats: int = 300) -> dict:
    """One layer's statistics (site ``act`` of a gated MLP: tanh-GELU of the gate, then LAPE
    counts, sums, squares, mean pooling) on random data, as ``record``'s hook runs them (one
    thread) and the same work at the process's thread count; also the GELU alone."""
    from lang_neurons.recording.accumulator import Accumulator
    from lang_neurons.sites import Site

    act_fn = torch.nn.GELU(approximate="tanh")
    site = Site("act", 1, width, width, True, act_fn)
    acc = Accumulator(site, 1, batch, "mean", torch.device("cpu"), d_model=640)
    mask = torch.rand(batch, pos) > 0.05
    acc.set_batch(0, mask, list(range(batch)))
    (_, hook), _resid = acc.hooks()  # the neuron hook; the residual-sum hook is not timed here
    gate = torch.randn(batch, pos, width)

    def in_hook():
        try:
            hook(gate)
        except Exception:  # the last layer's hook stops the forward
            pass

    def all_threads():
        acc._accumulate(0, site.activation([gate]), owned=True)

    out = {}
    with torch.inference_mode():
        for name, fn in (("hook_ms", in_hook), ("all_threads_ms", all_threads), ("gelu_only_ms", lambda: act_fn(gate))):
            for _ in range(10):
                fn()
            t0 = time.perf_counter()
            for _ in range(repeats):
                fn()
            out[name] = round((time.perf_counter() - t0) / repeats * 1e3, 3)
    return {"bench": "recording_layer_micro", "shape": [batch, pos, width], **out, **_common.machine()}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="gemma", choices=["gemma", "tiny"])
    p.add_argument("--site", default="act")
    p.add_argument("--batch-size", type=int, default=16, help="record's default")
    p.add_argument(
        "--every",
        type=int,
        default=None,
        help="time the texts of every k-th batch of each language (default: gemma 12, tiny 1)",
    )
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument(
        "--profile",
        action="store_true",
        help="print the top ops of one record pass (torch.profiler) to stderr, and report the ops inside its hooks",
    )
    p.add_argument(
        "--micro",
        action="store_true",
        help="time one layer's statistics on random [16, 7, 2048] data instead (no model)",
    )
    args = p.parse_args(argv)
    if args.micro:
        print(json.dumps(micro(16, 7, 2048)))
        return
    every = args.every or (12 if args.model == "gemma" else 1)

    t0 = time.perf_counter()
    model = _common.load(args.model)
    load_s = time.perf_counter() - t0
    rss_model = _common.peak_rss_mb()
    corpus = ln.load_corpus("default")
    max_length = min(int(getattr(model.cfg, "n_ctx", 0) or 2048), 512)  # record's default
    encoded = {lang: batching.encode(model, corpus[lang], max_length)[0] for lang in corpus.langs}
    full_plan = {lang: batching.batches([len(x) for x in encoded[lang]], args.batch_size) for lang in corpus.langs}
    pad_id = model.tokenizer.pad_token_id or 0

    # The timed texts: those of every k-th batch of each language (neighbours in length, so
    # the subset pads like the whole corpus), batched again by record's own `recording.batches`.
    sub = {
        lang: [corpus[lang][i] for i in sorted(i for b in full_plan[lang][::every] for i in b)] for lang in corpus.langs
    }
    sub_corpus = ln.LanguageCorpus(sub, name=f"default (every {every}th batch)")
    sub_enc = {lang: batching.encode(model, sub[lang], max_length)[0] for lang in corpus.langs}
    timed_plan = {lang: batching.batches([len(x) for x in sub_enc[lang]], args.batch_size) for lang in corpus.langs}

    batches = []
    for lang in corpus.langs:
        for b in timed_plan[lang]:
            ids, mask = batching.pad([sub_enc[lang][i] for i in b], pad_id, "right", torch.device("cpu"))
            batches.append((ids, mask.long()))
    n_tokens = int(sum(int(m.sum()) for _, m in batches))
    last = int(model.cfg.n_layers) - 1
    resolve_site(model, args.site)  # a bad --site fails here, before any timing
    stops = {"a": None, "b": f"blocks.{last}.hook_mlp_out", "b_same_stop": f"blocks.{last}.hook_resid_post"}

    def run_c() -> None:
        ln.record(model, sub_corpus, site=args.site, batch_size=args.batch_size, progress=False)

    clock: dict[str, float] = {}
    parts: dict[str, list[float]] = {k: [] for k in ("neurons", "resid", "forward")}

    def run_c_split() -> None:
        clock.update(dict.fromkeys(parts, 0.0))
        with _split_clock(model, clock):
            run_c()
        assert min(clock.values()) > 0, f"record's hooks were not all timed ({clock}): see _split_clock"
        for k in parts:
            parts[k].append(clock[k])

    run_c()  # warm-up; peak RSS of recording before any full forward allocates logits
    rss_record = _common.peak_rss_mb()
    for stop in stops.values():
        _forward(model, batches[:2], stop)  # warm-up
    hook_ops = None
    if args.profile:
        import sys

        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof, _split_clock(model, dict.fromkeys(parts, 0.0), True):
            run_c()
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25), file=sys.stderr)
        hook_ops = _hook_ops(prof)
        assert set(hook_ops) == {"neurons", "resid"}, f"the profile has no labelled hook calls: {sorted(hook_ops)}"

    times: dict[str, list[float]] = {k: [] for k in (*stops, "c")}
    cpu: dict[str, list[float]] = {k: [] for k in times}
    load0 = _common.machine()["loadavg_1m"]
    for _ in range(args.repeats):
        for name in times:
            fn = run_c_split if name == "c" else lambda: _forward(model, batches, stops[name])  # noqa: B023
            wall, c = _timed(fn)
            times[name].append(wall)
            cpu[name].append(c)
    med = {k: _common.median(v) for k, v in times.items()}
    med_cpu = {k: _common.median(v) for k, v in cpu.items()}
    # Per repetition: each variant against the c run next to it, and c's parts (shares of c's wall time).
    paired = {k: _mean_ci([x / y for x, y in zip(times[k], times["c"])]) for k in stops}
    hooks_s = [n + r for n, r in zip(parts["neurons"], parts["resid"])]
    model_s = [f - h for f, h in zip(parts["forward"], hooks_s)]  # c's forward less its hooks
    shares = {
        "hooks": [h / c for h, c in zip(hooks_s, times["c"])],
        "neurons": [n / c for n, c in zip(parts["neurons"], times["c"])],
        "resid": [r / c for r, c in zip(parts["resid"], times["c"])],
        "model": [m / c for m, c in zip(model_s, times["c"])],
        "outside_forward": [(c - f) / c for f, c in zip(parts["forward"], times["c"])],
    }
    assert all(math.isfinite(x) and x >= 0 for v in shares.values() for x in v)
    share_ci = {k: _mean_ci(v) for k, v in shares.items()}
    # the split's premise: c's model work takes as long as b_same_stop's (its own pass next to it)
    model_vs_b = _mean_ci([m / b for m, b in zip(model_s, times["b_same_stop"])])
    pad_all, total_all = _padding(encoded, full_plan)
    pad_sub, total_sub = _padding(sub_enc, timed_plan)
    res = {
        "bench": "recording",
        "model": args.model,
        "n_layers": int(model.cfg.n_layers),
        "d_mlp": int(model.cfg.d_mlp),
        "d_vocab": int(model.cfg.d_vocab),
        "site": args.site,
        "batch_size": args.batch_size,
        "timed_texts": sum(map(len, sub.values())),
        "timed_batches": len(batches),
        "corpus_batches": sum(map(len, full_plan.values())),
        "timed_tokens": n_tokens,
        "repeats": args.repeats,
        **{f"{k}_tok_s": round(n_tokens / v, 1) for k, v in med.items()},
        "c_over_a": round(med["a"] / med["c"], 3),
        "c_over_b": round(med["b"] / med["c"], 3),
        "c_over_b_same_stop": round(med["b_same_stop"] / med["c"], 3),
        # the same ratios from the fastest repetition of each variant (least disturbed by others)
        "min_c_over_a": round(min(times["a"]) / min(times["c"]), 3),
        "min_c_over_b": round(min(times["b"]) / min(times["c"]), 3),
        "min_c_over_b_same_stop": round(min(times["b_same_stop"]) / min(times["c"]), 3),
        # the same ratios from CPU seconds of this process (less sensitive to other load)
        "cpu_c_over_a": round(med_cpu["a"] / med_cpu["c"], 3),
        "cpu_c_over_b": round(med_cpu["b"] / med_cpu["c"], 3),
        "cpu_c_over_b_same_stop": round(med_cpu["b_same_stop"] / med_cpu["c"], 3),
        # mean of the per-repetition ratios, with its 95 % bootstrap interval over the repetitions
        **{f"c_over_{k}_mean": paired[k][0] for k in stops},
        **{f"c_over_{k}_ci": paired[k][1] for k in stops},
        # c's wall time split within each pass: hooks (neurons + resid), the model's own forward
        # work (model = 1 - hooks - outside_forward), and record outside the forward
        **{f"c_share_{k}_mean": v[0] for k, v in share_ci.items()},
        **{f"c_share_{k}_ci": v[1] for k, v in share_ci.items()},
        "c_model_over_b_same_stop_mean": model_vs_b[0],
        "c_model_over_b_same_stop_ci": model_vs_b[1],
        "c_parts_s": {k: [round(t, 3) for t in v] for k, v in parts.items()},
        **({"profile_hook_ops_ms": hook_ops} if hook_ops is not None else {}),
        "times_s": {k: [round(t, 3) for t in v] for k, v in times.items()},
        "cpu_s": {k: [round(t, 3) for t in v] for k, v in cpu.items()},
        "stop_hooks": {k: v for k, v in stops.items() if v},
        "padding_share_corpus": round(pad_all / total_all, 4),
        "padding_share_timed": round(pad_sub / total_sub, 4),
        "peak_rss_mb_model_loaded": rss_model,
        "peak_rss_mb_after_record": rss_record,
        "peak_rss_mb_end": _common.peak_rss_mb(),
        "model_load_s": round(load_s, 1),
        **_common.machine(),
        "loadavg_1m_start": load0,
    }
    print(json.dumps(res))


if __name__ == "__main__":
    main()
