"""What checkpoints and chunked partial sums cost a recording. Prints ONE JSON line.

Records ``--texts`` texts per language of the default corpus on the embedded Gemma-3-270M
(or ``--model``) four ways, each timed (wall clock, after one warm-up batch):

* ``one_chunk``: ``reduce_every`` larger than the plan (no folding until the end);
* ``plain``: the default ``reduce_every`` (a fold and a finite check every 8 batches);
* ``checkpointed``: plus a checkpoint every ``--every`` batches;
* ``resumed``: a recording interrupted after the first checkpoint, then resumed (time of the
  resumed part), and whether it equals ``plain`` exactly (``torch.equal`` on every tensor).

Also the checkpoint size and the mean time of one checkpoint write, and the size a checkpoint
would have for the full default training corpus.

    OMP_NUM_THREADS=1 python benchmarks/bench_checkpoint.py --texts 40 --every 8
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import lang_neurons as ln
from lang_neurons.config import REDUCE_EVERY
from lang_neurons.recording import recorder as rec  # the module whose record() saves the checkpoints


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default=ln.DEFAULT_MODEL)
    p.add_argument("--texts", type=int, default=40, help="texts per language")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--every", type=int, default=8, help="batches between checkpoints")
    args = p.parse_args()
    model = ln.load_model(args.model, device="cpu")
    corpus = ln.load_corpus("default", max_per_lang=args.texts)
    kw = dict(batch_size=args.batch_size, progress=False)
    ln.record(model, {"en": corpus["en"][:2]}, **kw)  # warm-up

    def timed(**extra):
        t = time.perf_counter()
        stats = ln.record(model, corpus, **kw, **extra)
        return stats, time.perf_counter() - t

    writes: list[float] = []
    save = rec.save_checkpoint
    interrupt = False  # set for the interrupted recording: stop it right after its first checkpoint

    def timed_save(*a, **k):
        t = time.perf_counter()
        save(*a, **k)
        writes.append(time.perf_counter() - t)
        if interrupt:
            raise KeyboardInterrupt

    out: dict = {
        "model": args.model,
        "texts": len(corpus),
        "batch_size": args.batch_size,
        "threads": torch.get_num_threads(),
    }
    _, out["one_chunk_s"] = timed(reduce_every=10**9)
    plain, out["plain_s"] = timed()
    with tempfile.TemporaryDirectory() as tmp:
        ck = Path(tmp) / "ck.safetensors"
        rec.save_checkpoint = timed_save
        try:
            _, out["checkpointed_s"] = timed(checkpoint=ck, checkpoint_every=args.every)
            out["checkpoint_writes"] = len(writes)
            out["checkpoint_write_s"] = round(sum(writes) / max(len(writes), 1), 3)
            interrupt = True
            try:
                ln.record(model, corpus, **kw, checkpoint=ck, checkpoint_every=args.every)
            except KeyboardInterrupt:
                pass
            interrupt = False
            if not ck.exists():
                raise SystemExit(
                    f"no checkpoint was written: {len(corpus)} texts make too few batches for a checkpoint "
                    f"every {args.every} (rounded up to whole chunks of {REDUCE_EVERY}): give more --texts or a smaller --every"
                )
            out["checkpoint_bytes"] = ck.stat().st_size
            resumed, out["resumed_part_s"] = timed(checkpoint=ck, checkpoint_every=args.every, resume=True)
        finally:
            rec.save_checkpoint = save
    out["resumed_equals_plain"] = all(
        torch.equal(getattr(resumed, k), getattr(plain, k)) for k in (*ln.ActivationStats._TENSORS, "nonfinite")
    )
    full_rows = len(ln.load_corpus("default").split(held_out=0.2, seed=0)[0])  # what `lang-neurons run` records
    out["full_default_checkpoint_mb"] = round(full_rows * plain.n_neurons * 4 / 2**20)
    for k in ("one_chunk_s", "plain_s", "checkpointed_s", "resumed_part_s"):
        out[k] = round(out[k], 2)
    out["fold_overhead"] = round(out["plain_s"] / out["one_chunk_s"] - 1, 4)
    out["checkpoint_overhead"] = round(out["checkpointed_s"] / out["plain_s"] - 1, 4)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
