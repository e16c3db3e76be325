"""Benchmark recording, AP and steering on a model of a real model's shape, random weights.

Prints ONE JSON line. A Llama-architecture Hugging Face model is built with random weights
directly on the device from a shape preset (``--shape llama-3.1-8b``: 32 layers, d_model 4096,
d_mlp 14336, vocab 128256, 32 heads, 8 KV heads; ``--shape tiny``: seconds on a CPU), with the
tests' tiny byte-level tokenizer (``tests/tiny_models.build_tokenizer``; it only produces ids
below 512, which costs the same as any other ids), and booted in the TransformerLens bridge as
:func:`lang_neurons.load_model` does (compatibility mode, unprocessed weights): bfloat16 on
CUDA, float32 on CPU. Nothing is downloaded.

Synthetic texts: random token ids of that tokenizer decoded to text, ``--batches`` batches of
``--batch-size`` texts for each of ``--langs`` languages, each truncated to ``--seq-len``
tokens. Timed on the same batches (``recording.encode`` + ``recording.batches`` + ``recording.pad``),
interleaved ``--repeats`` times, medians reported, the device synchronised after every pass:

* ``a``: bare full forward (logits); ``b``: bare forward stopped after the last MLP (a hook on
  ``blocks.<last>.hook_mlp_out`` raises); ``b_same_stop``: stopped where ``record`` stops (the
  last hook the site reads);
* ``c``: :func:`lang_neurons.record` end to end (tokenisation, batching, LAPE counts, sums,
  sums of squares, AP mean pooling) on the texts themselves.

Then: peak device memory of a recording (CUDA ``max_memory_allocated``; on CPU the process's
peak RSS), the time of exact AP scoring of the pooled matrix (:func:`lang_neurons.average_precision`),
and ``model.generate`` tokens/s without and with a language-arithmetic steering (``add``
toward the second language, AP neurons). Before allocating anything, the memory the run needs
is estimated from the shape; if the device has less, it refuses with one message (exit 1).

Usage::

    python benchmarks/bench_scale.py --shape tiny                       # CPU, seconds (in CI)
    python benchmarks/bench_scale.py --shape llama-3.1-8b --device cuda # an 8B-shaped model
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import _common
import torch

import lang_neurons as ln
from lang_neurons.memory import record_memory
from lang_neurons.recording import batching
from lang_neurons.sites import resolve_site

SHAPES: dict[str, dict[str, int]] = {
    "llama-3.1-8b": dict(n_layers=32, d_model=4096, d_mlp=14336, vocab=128256, n_heads=32, n_kv_heads=8),
    "tiny": dict(n_layers=2, d_model=64, d_mlp=256, vocab=1024, n_heads=4, n_kv_heads=2),
}
LANGS = ("en", "de", "fr", "es", "ja", "zh")


class _Stop(Exception):
    pass


def _raise(value, hook=None):
    raise _Stop


def n_params(shape: dict[str, int]) -> int:
    """Parameters of an untied Llama of ``shape`` (embedding, attention with GQA, gated MLP, norms, head)."""
    d, f, v, n_l = shape["d_model"], shape["d_mlp"], shape["vocab"], shape["n_layers"]
    kv = d // shape["n_heads"] * shape["n_kv_heads"]
    per_layer = 2 * d * d + 2 * d * kv + 3 * d * f + 2 * d
    return 2 * v * d + n_l * per_layer + d


def estimate_bytes(shape: dict[str, int], dtype: torch.dtype, batch: int, seq: int, n_langs: int, n_pooled: int) -> int:
    """What the run needs at its peak: weights, the full forward's float32 logits (and a copy),
    a few MLP-wide float32 activations of one batch, and record's statistics (lang_neurons.memory)."""
    size = torch.empty((), dtype=dtype).element_size()
    weights = n_params(shape) * size
    logits = 2 * batch * seq * shape["vocab"] * 4
    activations = 6 * batch * seq * shape["d_mlp"] * 4
    plan = record_memory(n_langs, shape["n_layers"], shape["d_mlp"], n_pooled, batch)
    stats = plan.device_accumulators + plan.device_transient + sum(plan.stats.values())
    return weights + logits + activations + stats


def available_bytes(device: torch.device) -> int:
    """Free memory on ``device``: CUDA ``mem_get_info``; on CPU the kernel's ``MemAvailable``."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def build(shape: dict[str, int], device: torch.device, dtype: torch.dtype, folder: Path):
    """A random Llama of ``shape`` built on ``device`` in ``dtype``, booted in the bridge."""
    import transformers as tf
    from tiny_models import BOS_ID, EOS_ID, PAD_ID, build_tokenizer
    from transformer_lens.model_bridge import TransformerBridge

    tokenizer = build_tokenizer(folder, add_bos=True)  # saved: the bridge wants its name_or_path
    config = tf.LlamaConfig(
        vocab_size=shape["vocab"],
        hidden_size=shape["d_model"],
        intermediate_size=shape["d_mlp"],
        num_hidden_layers=shape["n_layers"],
        num_attention_heads=shape["n_heads"],
        num_key_value_heads=shape["n_kv_heads"],
        max_position_embeddings=8192,
        tie_word_embeddings=False,
        pad_token_id=PAD_ID,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
    )
    config.architectures = ["LlamaForCausalLM"]
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            torch.manual_seed(0)
            hf = tf.LlamaForCausalLM(config).eval()
    finally:
        torch.set_default_dtype(default)
    bridge = TransformerBridge.boot_transformers(
        str(folder), hf_model=hf, tokenizer=tokenizer, device=device, dtype=dtype
    )
    bridge.enable_compatibility_mode(disable_warnings=True, no_processing=True)  # as ln.load_model
    return bridge.eval()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device: torch.device) -> float:
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t0


def _forward(model, batches, stop_at: str | None) -> None:
    with torch.inference_mode(), ln.steer(model, [(stop_at, _raise)] if stop_at else []):
        for ids, mask in batches:
            try:
                model(ids, attention_mask=mask)
            except _Stop:
                pass


def _generate(model, hooks, batch: int, new_tokens: int, device: torch.device) -> None:
    bos = torch.full((batch, 1), int(model.tokenizer.bos_token_id), device=device)
    torch.manual_seed(0)
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
    assert out.shape == (batch, 1 + new_tokens), out.shape


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", default="tiny", choices=sorted(SHAPES))
    p.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    p.add_argument("--batch-size", type=int, default=None, help="texts per forward (default: tiny 4, else 16)")
    p.add_argument("--seq-len", type=int, default=None, help="tokens per text (default: tiny 32, else 512)")
    p.add_argument("--batches", type=int, default=None, help="batches per language (default: tiny 2, else 4)")
    p.add_argument("--langs", type=int, default=2, help=f"languages (2..{len(LANGS)})")
    p.add_argument("--repeats", type=int, default=None, help="interleaved repetitions (default: tiny 1, else 3)")
    p.add_argument(
        "--new-tokens", type=int, default=None, help="generated tokens per sequence (default: tiny 8, else 32)"
    )
    p.add_argument(
        "--available-gb", type=float, default=None, help="pretend the device has this much free memory (tests)"
    )
    args = p.parse_args(argv)
    tiny = args.shape == "tiny"
    batch = args.batch_size or (4 if tiny else 16)
    seq = args.seq_len or (32 if tiny else 512)
    n_batches = args.batches or (2 if tiny else 4)
    repeats = args.repeats or (1 if tiny else 3)
    new_tokens = args.new_tokens or (8 if tiny else 32)
    if not 2 <= args.langs <= len(LANGS):
        raise SystemExit(f"bench_scale: --langs must be in 2..{len(LANGS)}, got {args.langs}")
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    shape = SHAPES[args.shape]
    n_texts = batch * n_batches
    need = estimate_bytes(shape, dtype, batch, seq, args.langs, args.langs * n_texts)
    free = int(args.available_gb * 2**30) if args.available_gb is not None else available_bytes(device)
    if need > 0.9 * free:
        raise SystemExit(
            f"bench_scale: refusing --shape {args.shape} on {device}: it needs about {need / 2**30:.1f} GiB "
            f"({dtype}, batch {batch} x {seq}) but only {free / 2**30:.1f} GiB is free; use a GPU or --shape tiny"
        )

    t0 = time.perf_counter()
    model = build(shape, device, dtype, Path(tempfile.mkdtemp(prefix="bench-scale-")))
    build_s = time.perf_counter() - t0
    gen = torch.Generator().manual_seed(0)
    texts = {
        lang: [
            model.tokenizer.decode(torch.randint(4, 512, (seq + 8,), generator=gen).tolist()) for _ in range(n_texts)
        ]
        for lang in LANGS[: args.langs]
    }
    corpus = ln.LanguageCorpus(texts, name="synthetic")
    encoded = {lang: batching.encode(model, texts[lang], seq)[0] for lang in corpus.langs}
    pad_id = model.tokenizer.pad_token_id or 0
    batches = []
    for lang in corpus.langs:
        for b in batching.batches([len(x) for x in encoded[lang]], batch):
            ids, mask = batching.pad([encoded[lang][i] for i in b], pad_id, "right", device)
            batches.append((ids, mask.long()))
    n_tokens = int(sum(int(m.sum()) for _, m in batches))
    last = shape["n_layers"] - 1
    site = resolve_site(model, "act")
    stops = {"a": None, "b": f"blocks.{last}.hook_mlp_out", "b_same_stop": site.read_hooks(last)[-1]}

    def run_c():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the synthetic texts are cut to --seq-len on purpose
            return ln.record(model, corpus, batch_size=batch, max_length=seq, progress=False)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    stats = run_c()  # warm-up, and the recording whose peak memory is reported
    _sync(device)
    peak_record_mb = (
        round(torch.cuda.max_memory_allocated(device) / 2**20, 1) if device.type == "cuda" else _common.peak_rss_mb()
    )
    for stop in stops.values():
        _forward(model, batches[:1], stop)  # warm-up
    times: dict[str, list[float]] = {k: [] for k in (*stops, "c")}
    for _ in range(repeats):
        for name in times:
            times[name].append(_timed(run_c if name == "c" else lambda: _forward(model, batches, stops[name]), device))  # noqa: B023
    med = {k: _common.median(v) for k, v in times.items()}

    k = max(1, stats.n_neurons // 200)
    t0 = time.perf_counter()
    neurons = ln.average_precision(stats, top_k=k, bottom_k=k, progress=False)
    ap_s = time.perf_counter() - t0
    steering = {"none": [], "add": ln.language_arithmetic(neurons, stats, target=corpus.langs[1], method="add")}
    gen_batch = batch
    for hooks in steering.values():
        _generate(model, hooks, gen_batch, 2, device)  # warm-up
    gen_times: dict[str, list[float]] = {name: [] for name in steering}
    for _ in range(repeats):
        for name, hooks in steering.items():
            gen_times[name].append(_timed(lambda: _generate(model, hooks, gen_batch, new_tokens, device), device))  # noqa: B023
    gen_med = {name: _common.median(v) for name, v in gen_times.items()}

    res = {
        "bench": "scale",
        "shape": args.shape,
        **shape,
        "n_params": n_params(shape),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "dtype": str(dtype).removeprefix("torch."),
        "estimated_gib": round(need / 2**30, 2),
        "free_gib": round(free / 2**30, 2),
        "batch_size": batch,
        "seq_len": seq,
        "langs": args.langs,
        "timed_batches": len(batches),
        "timed_tokens": n_tokens,
        "repeats": repeats,
        **{f"{k}_tok_s": round(n_tokens / v, 1) for k, v in med.items()},
        "c_over_a": round(med["a"] / med["c"], 3),
        "c_over_b": round(med["b"] / med["c"], 3),
        "c_over_b_same_stop": round(med["b_same_stop"] / med["c"], 3),
        "times_s": {k: [round(t, 4) for t in v] for k, v in times.items()},
        "peak_mem_mb_record": peak_record_mb,
        "peak_mem_kind": "cuda_max_memory_allocated" if device.type == "cuda" else "peak_rss",
        "ap_pooled_shape": list(stats.pooled.shape),
        "ap_s": round(ap_s, 3),
        "n_steered_neurons": steering["add"].n_neurons,
        "gen_batch": gen_batch,
        "new_tokens": new_tokens,
        **{f"gen_{k}_tok_s": round(gen_batch * new_tokens / v, 1) for k, v in gen_med.items()},
        "gen_overhead_add": round(1 - gen_med["none"] / gen_med["add"], 4),
        "build_s": round(build_s, 1),
        "peak_rss_mb": _common.peak_rss_mb(),
        **_common.machine(),
    }
    print(json.dumps(res))


if __name__ == "__main__":
    sys.exit(main())
