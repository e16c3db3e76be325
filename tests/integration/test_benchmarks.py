"""The benchmark scripts run (on tiny models, small sizes) and print one JSON line of figures;
record's batching keeps padding low."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from lang_neurons.recording import batching

ROOT = Path(__file__).resolve().parents[2]


def _run(script: str, *args: str) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    out = (
        subprocess.run(
            [sys.executable, str(ROOT / "benchmarks" / script), *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
            check=True,
        )
        .stdout.strip()
        .splitlines()
    )
    assert len(out) == 1, out  # ONE JSON line
    return json.loads(out[0])


def test_batches_partition_longest_first_and_bounded():
    rng = random.Random(0)
    lengths = [rng.randint(2, 90) for _ in range(1000)]
    for size in (1, 3, 16):
        batches = batching.batches(lengths, size)
        assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
        assert all(1 <= len(b) <= size for b in batches)
        flat = [lengths[i] for b in batches for i in b]
        assert flat == sorted(flat, reverse=True)
    assert batching.batches([], 4) == [] and batching.batches([7], 4) == [[0]]
    assert batching.batches([5, 5, 5, 5], 2) == [[0, 1], [2, 3]]  # equal lengths: full batches, index order


def test_batches_cut_the_long_tail():
    # One long text among short ones: it gets its own batch instead of padding 15 short ones.
    lengths = [200] + [10] * 31
    batches = batching.batches(lengths, 16)
    assert batches[0] == [0]
    padded = sum(max(lengths[i] for i in b) * len(b) for b in batches)
    assert padded == sum(lengths)


@pytest.mark.slow
def test_bench_recording_tiny():
    r = _run("bench_recording.py", "--model", "tiny", "--every", "12", "--repeats", "2", "--profile")
    assert r["bench"] == "recording" and r["model"] == "tiny"
    for key in (
        "a_tok_s",
        "b_tok_s",
        "b_same_stop_tok_s",
        "c_tok_s",
        "c_over_a",
        "c_over_b",
        "peak_rss_mb_end",
        "cpu_count",
        "torch",
    ):
        assert r[key] > 0 if not isinstance(r[key], str) else r[key]
    assert 0 <= r["padding_share_corpus"] <= 0.05  # the default corpus with record's batching
    assert r["timed_tokens"] > 0 and r["timed_batches"] >= 6
    # c split within each pass: the hooks run inside the forward, the forward inside c
    parts_s = r["c_parts_s"]
    assert all(len(v) == 2 for v in parts_s.values())
    for neurons, resid, forward, c in zip(parts_s["neurons"], parts_s["resid"], parts_s["forward"], r["times_s"]["c"]):
        assert neurons > 0 and resid > 0 and neurons + resid <= forward + 0.002 and forward <= c + 0.002
    assert r["c_model_over_b_same_stop_mean"] > 0 and r["c_over_a_mean"] > 0
    # --profile: the ops inside the labelled hook calls
    assert set(r["profile_hook_ops_ms"]) == {"neurons", "resid"}
    assert all(ms >= 0 for ops in r["profile_hook_ops_ms"].values() for ms in ops.values())
    parts = ("model", "hooks", "outside_forward")
    assert sum(r[f"c_share_{k}_mean"] for k in parts) == pytest.approx(1, abs=0.003)  # rounded to 3 places
    assert r["c_share_hooks_mean"] == pytest.approx(r["c_share_neurons_mean"] + r["c_share_resid_mean"], abs=0.002)
    for key in ("c_over_b_same_stop", "c_share_model", "c_share_hooks"):
        low, high = r[f"{key}_ci"]
        assert low <= r[f"{key}_mean"] <= high


@pytest.mark.slow
def test_bench_cache_check_tiny():
    r = _run("bench_cache_check.py", "--model", "tiny", "--repeats", "2")
    assert r["bench"] == "cache_check" and r["passed"] is True and r["steps"] == 3 and r["prompts"] == 2
    assert len(r["check_s"]) == 2 and r["check_median_s"] > 0 and r["load_s"] > 0


@pytest.mark.slow
def test_bench_steering_tiny():
    r = _run("bench_steering.py", "--model", "tiny", "--new-tokens", "8", "--repeats", "1", "--record-texts", "10")
    assert r["bench"] == "steering"
    assert r["n_hooks"]["none"] == 0 and r["n_hooks"]["add"] > 0 and r["n_hooks"]["override"] > 0
    assert r["none_tok_s"] > 0 and r["add_tok_s"] > 0 and r["override_tok_s"] > 0


def test_bench_row_tiny():
    r = _run(
        "bench_row.py", "--model", "tiny", "--samples", "6", "--batch", "3", "--new-tokens", "4", "--keep-freed-memory"
    )
    assert r["bench"] == "row" and r["dtype"] == "float32" and r["samples"] == 6
    assert r["keep_freed_memory"] is (sys.platform == "linux")
    assert r["generate_s"] > 0 and r["fluency_s"] > 0 and len(r["runs"]) == 2
    assert {"generate", "fluency"} == set(r["last"]) and r["last"]["fluency"]["minor_faults"] >= 0
    assert r["machine"]["torch_capability"] and "cpu_flags" in r["machine"]


@pytest.mark.parametrize(
    "args", [("--neurons", "512", "--sentences", "300", "--sklearn-neurons", "8", "--repeats", "1")]
)
@pytest.mark.slow
def test_bench_ap_small(args):
    r = _run("bench_ap.py", *args, "--threads", "1")
    assert r["max_abs_diff"] <= 1e-6
    assert r["sklearn_extrapolated_from"] == 8 and r["speedup"] > 1


@pytest.mark.slow
def test_bench_recording_layer_micro():
    r = _run("bench_recording.py", "--micro")
    assert r["shape"] == [16, 7, 2048] and r["hook_ms"] > 0 and r["all_threads_ms"] > 0 and r["gelu_only_ms"] > 0


@pytest.mark.slow
def test_bench_scale_tiny():
    r = _run("bench_scale.py", "--shape", "tiny", "--device", "cpu")
    assert r["bench"] == "scale" and r["shape"] == "tiny" and r["device"] == "cpu" and r["dtype"] == "float32"
    assert r["timed_tokens"] == r["batch_size"] * r["seq_len"] * r["timed_batches"]  # full-length synthetic texts
    for key in (
        "a_tok_s",
        "b_tok_s",
        "b_same_stop_tok_s",
        "c_tok_s",
        "gen_none_tok_s",
        "gen_add_tok_s",
        "peak_mem_mb_record",
        "ap_s",
    ):
        assert r[key] > 0, key
    for key in ("c_over_a", "c_over_b", "c_over_b_same_stop"):
        assert 0.05 < r[key] < 20, (key, r[key])  # the same work timed: a ratio, not noise
    assert r["ap_pooled_shape"] == [r["langs"] * r["batch_size"] * 2, r["n_layers"], r["d_mlp"]]
    assert r["n_steered_neurons"] > 0 and r["n_params"] > 0 and r["estimated_gib"] < r["free_gib"]


@pytest.mark.slow
def test_bench_scale_refuses_an_8b_model_without_the_memory():
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "bench_scale.py"),
            "--shape",
            "llama-3.1-8b",
            "--device",
            "cpu",
            "--available-gb",
            "8",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr.strip().splitlines() == [
        "bench_scale: refusing --shape llama-3.1-8b on cpu: it needs about 40.7 GiB (torch.float32, batch 16 x 512) "
        "but only 8.0 GiB is free; use a GPU or --shape tiny"
    ]


@pytest.mark.slow
def test_bench_checkpoint_tiny(llama_dir):
    r = _run("bench_checkpoint.py", "--model", str(llama_dir), "--texts", "6", "--batch-size", "2", "--every", "2")
    assert r["texts"] == 36 and r["batch_size"] == 2
    assert r["resumed_equals_plain"] is True  # the resumed recording is the uninterrupted one, bit for bit
    # 18-24 batches (3-4 per language) in 3 chunks of 8: a checkpoint every 2 batches rounds up to
    # one after each of the first two chunks (none after the last: the recording is then done)
    assert r["checkpoint_writes"] == 2 and r["checkpoint_write_s"] >= 0 and r["checkpoint_bytes"] > 0
    assert all(r[k] > 0 for k in ("one_chunk_s", "plain_s", "checkpointed_s", "resumed_part_s"))
    assert isinstance(r["full_default_checkpoint_mb"], int)
