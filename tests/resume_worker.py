"""Subprocess side of tests/integration/test_resume.py: record a tiny model with checkpoints.

    python resume_worker.py MODEL_DIR OUT CHECKPOINT [--resume] [--sleep S] [--reference REF]

Records ``tiny_models.SENTENCES`` (3 languages x 12 texts, batch size 2, a checkpoint every 2
batches) and saves the statistics to OUT. ``--sleep`` adds a user hook that sleeps after every
forward pass (it changes no activation), so that a test can kill the process part-way.
``--reference`` then records the same corpus again without any checkpoint into REF. Prints
``batches=N``: the forward passes this process ran for OUT.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tiny_models import SENTENCES

import lang_neurons as ln

TEXTS = {lang: SENTENCES[lang][:12] for lang in ("en", "de", "ja")}
SETTINGS = dict(batch_size=2, reduce_every=1, progress=False)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("out")
    p.add_argument("checkpoint")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--sleep", type=float, default=0.0)
    p.add_argument("--reference", default=None)
    args = p.parse_args()
    model = ln.load_model(args.model, device="cpu")
    batches = []

    def count(act, hook):
        batches.append(1)
        time.sleep(args.sleep)

    model.hook_dict["blocks.0.hook_resid_pre"].add_hook(count)
    stats = ln.record(model, TEXTS, checkpoint=args.checkpoint, checkpoint_every=2, resume=args.resume, **SETTINGS)
    stats.save(args.out)
    print(f"batches={len(batches)}", flush=True)
    model.reset_hooks()
    if args.reference:
        ln.record(model, TEXTS, **SETTINGS).save(args.reference)


if __name__ == "__main__":
    main()
