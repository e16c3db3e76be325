"""Data-parallel recording: 2 ranks on CPU (gloo) give exactly the single-process statistics."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from tiny_models import SENTENCES

import lang_neurons as ln

pytestmark = pytest.mark.slow

TEXTS = {lang: SENTENCES[lang][:12] for lang in ("en", "de", "ja")}
# 18 batches in chunks of 2 (an odd number of chunks: the last round has one rank idle), and
# 12 batches in chunks of 1 with capped AP rows (batches whose texts are not all pooled).
CONFIGS = {
    "a": dict(batch_size=2, reduce_every=2),
    "b": dict(batch_size=3, reduce_every=1, ap_sentences=5, pooling="max"),
}


def _rank(rank: int, world: int, model_dir: str, out: str) -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    dist.init_process_group("gloo", init_method=f"file://{out}/store", rank=rank, world_size=world)
    try:
        model = ln.load_model(model_dir, device="cpu")
        for name, cfg in CONFIGS.items():
            ln.record(model, TEXTS, progress=False, **cfg).save(f"{out}/{name}_rank{rank}")
            if rank == 0:  # the single-process reference, in a process set up like the ranks
                ln.record(model, TEXTS, progress=False, distributed=False, **cfg).save(f"{out}/{name}_single")
        Path(f"{out}/fold_rank{rank}.json").write_text(json.dumps(_fold_order(model, rank, world)))
    finally:
        dist.destroy_process_group()


# Chunk partial sums whose float64 total depends on the order of addition: in chunk order,
# ((1e16 + 1) - 1e16) + 1 = 1 (the first 1 is lost to rounding); summed per rank and then
# across ranks, (1e16 - 1e16) + (1 + 1) = 2.
ORDER_SENSITIVE = [1e16, 1.0, -1e16, 1.0]


def _fold_order(model, rank: int, world: int) -> list[float]:
    """Fold ORDER_SENSITIVE through the real gloo reduction (chunk c recorded by rank c % 2):
    the neuron sums and the residual-stream sums."""
    from lang_neurons.recording.accumulator import Accumulator
    from lang_neurons.recording.distributed import Totals
    from lang_neurons.sites import resolve_site

    site = resolve_site(model, "act")
    cpu, d_model = torch.device("cpu"), model.cfg.d_model
    acc, total = Accumulator(site, 1, 0, "mean", cpu, d_model), Totals(1, site, cpu, d_model)
    for first in range(0, len(ORDER_SENSITIVE), world):
        acc.sums.fill_(ORDER_SENSITIVE[first + rank])
        acc.resid_sums.fill_(ORDER_SENSITIVE[first + rank])
        total.fold(acc, torch.zeros(1, dtype=torch.int64), [[]] * world, rank, world)
    assert (total.sums == total.sums.flatten()[0]).all() and (total.resid_sums == total.resid_sums.flatten()[0]).all()
    return [float(total.sums.flatten()[0]), float(total.resid_sums.flatten()[0])]


def _assert_identical(a: ln.ActivationStats, b: ln.ActivationStats) -> None:
    for key in (*ln.ActivationStats._TENSORS, "nonfinite", "resid_sums"):
        x, y = getattr(a, key), getattr(b, key)
        assert x.dtype == y.dtype and torch.equal(x, y), f"{key}: {int((x != y).sum())} values differ"


def test_two_gloo_ranks_equal_single_process(llama_dir, tmp_path):
    mp.start_processes(_rank, args=(2, str(llama_dir), str(tmp_path)), nprocs=2, join=True, start_method="spawn")
    for name in CONFIGS:
        single = ln.ActivationStats.load(tmp_path / f"{name}_single")
        assert single.tokens.sum() > 0 and single.pooled.abs().sum() > 0
        for rank in (0, 1):  # every rank ends with the complete statistics
            _assert_identical(ln.ActivationStats.load(tmp_path / f"{name}_rank{rank}"), single)
    # Float64 sums are added in chunk order whatever rank recorded a chunk (here order matters).
    sequential = 0.0
    for v in ORDER_SENSITIVE:
        sequential += v
    per_rank = (ORDER_SENSITIVE[0] + ORDER_SENSITIVE[2]) + (ORDER_SENSITIVE[1] + ORDER_SENSITIVE[3])
    assert sequential == 1.0 and per_rank == 2.0
    for rank in (0, 1):
        assert json.loads((tmp_path / f"fold_rank{rank}.json").read_text()) == [sequential, sequential]


def test_distributed_without_a_process_group_is_a_clear_error(gpt2_dir):
    model = ln.load_model(gpt2_dir, device="cpu")
    with pytest.raises(ln.LangNeuronsError, match="init_process_group"):
        ln.record(model, TEXTS, distributed=True, progress=False)


def test_torchrun_cli_identify_equals_single_process(llama_dir, tmp_path):
    """`torchrun --nproc_per_node=2 -m lang_neurons.cli identify` writes what one process writes."""
    texts = tmp_path / "texts"
    texts.mkdir()
    for lang, lines in TEXTS.items():
        (texts / f"{lang}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    args = [
        "-m",
        "lang_neurons.cli",
        "identify",
        "--model",
        str(llama_dir),
        "--corpus",
        str(texts),
        "--langs",
        "en,de,ja",
        "--batch-size",
        "2",
        "--device",
        "cpu",
        "--no-progress",
        "--top-rate",
        "0.05",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    for cmd, out in ((torchrun, "two"), ([sys.executable], "one")):
        proc = subprocess.Popen(
            [*cmd, *args, "--out", str(tmp_path / out)],
            env=env,
            text=True,
            start_new_session=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            stdout, stderr = proc.communicate(timeout=120)
        finally:  # torchrun's workers too, if it hangs
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()
        assert proc.returncode == 0, stderr[-3000:]
        assert stdout.count("wrote ") == 1  # rank 0 alone reports and writes
    _assert_identical(
        ln.ActivationStats.load(tmp_path / "two" / "stats"), ln.ActivationStats.load(tmp_path / "one" / "stats")
    )
    two, one = (
        ln.NeuronSet.load(tmp_path / "two" / "neurons_lape"),
        ln.NeuronSet.load(tmp_path / "one" / "neurons_lape"),
    )
    assert two.langs == one.langs and torch.equal(two.mask, one.mask)
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(p.name for p in (tmp_path / "one").iterdir())
