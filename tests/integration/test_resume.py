"""Resumable recording: kill a recording part-way, resume it, get exactly the same statistics."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from tiny_models import SENTENCES

import lang_neurons as ln

WORKER = Path(__file__).resolve().parents[1] / "resume_worker.py"  # a shared helper in tests/
TEXTS = {lang: SENTENCES[lang][:12] for lang in ("en", "de", "ja")}
SETTINGS = dict(batch_size=2, reduce_every=1, progress=False)
N_BATCHES = 18  # 3 languages x 12 texts / batch size 2


def _assert_identical(a: ln.ActivationStats, b: ln.ActivationStats) -> None:
    for key in (*ln.ActivationStats._TENSORS, "nonfinite", "resid_sums"):
        x, y = getattr(a, key), getattr(b, key)
        assert x.dtype == y.dtype and torch.equal(x, y), key
    assert a.langs == b.langs and a.model == b.model


def _done(checkpoint: Path) -> int:
    with safe_open(str(checkpoint), framework="pt") as f:
        return int(f.metadata()["done"])


@pytest.mark.slow
def test_sigkill_then_resume_equals_uninterrupted(llama_dir, tmp_path):
    ck, out, ref = tmp_path / "rec.ckpt.safetensors", tmp_path / "stats", tmp_path / "reference"
    cmd = [sys.executable, str(WORKER), str(llama_dir), str(out), str(ck)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([*cmd, "--sleep", "0.3"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not ck.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.05)
        time.sleep(0.4)  # let it go on past the first checkpoint
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    assert not (tmp_path / "stats.safetensors").exists()  # no half-finished artifact
    done = _done(ck)
    assert 0 < done < N_BATCHES  # killed part-way, after a checkpoint

    res = subprocess.run(
        [*cmd, "--resume", "--reference", str(ref)], env=env, capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stderr
    ran = int(res.stdout.split("batches=")[1].split()[0])
    assert ran == N_BATCHES - done  # resumed, did not start over
    assert not ck.exists() and not list(tmp_path.glob(".*.tmp"))  # checkpoint gone after success
    _assert_identical(ln.ActivationStats.load(out), ln.ActivationStats.load(ref))


class _Interrupt:
    """A user hook that raises KeyboardInterrupt on the n-th forward pass (a kill, in-process)."""

    def __init__(self, n: int):
        self.n, self.seen = n, 0

    def __call__(self, act, hook):
        self.seen += 1
        if self.seen == self.n:
            raise KeyboardInterrupt


def _interrupted(model, ck: Path, n: int = 6) -> None:
    model.hook_dict["blocks.0.hook_resid_pre"].add_hook(_Interrupt(n))
    try:
        with pytest.raises(KeyboardInterrupt):
            ln.record(model, TEXTS, checkpoint=ck, checkpoint_every=2, **SETTINGS)
    finally:
        model.reset_hooks()
    assert ck.exists()


@pytest.fixture(scope="module")
def gpt2(gpt2_dir):
    return ln.load_model(gpt2_dir, device="cpu")


def test_resume_in_process_and_checkpoint_cleanup(gpt2, tmp_path):
    ck = tmp_path / "ck"  # the suffix is added
    whole = ln.record(gpt2, TEXTS, **SETTINGS)
    _interrupted(gpt2, tmp_path / "ck.safetensors")
    resumed = ln.record(gpt2, TEXTS, checkpoint=ck, checkpoint_every=2, resume=True, **SETTINGS)
    _assert_identical(resumed, whole)
    assert not list(tmp_path.iterdir())
    # resume=True without a checkpoint starts afresh; checkpoints every batch change nothing either
    again = ln.record(gpt2, TEXTS, checkpoint=ck, checkpoint_every=1, resume=True, **SETTINGS)
    _assert_identical(again, whole)


def test_foreign_or_damaged_checkpoint_is_refused(gpt2, llama_dir, tmp_path):
    ck = tmp_path / "ck.safetensors"
    _interrupted(gpt2, ck)
    with pytest.raises(ln.LangNeuronsError, match="unfinished recording.*resume"):
        ln.record(gpt2, TEXTS, checkpoint=ck, **SETTINGS)
    with pytest.raises(ln.LangNeuronsError, match="its settings differ"):
        ln.record(gpt2, TEXTS, checkpoint=ck, resume=True, **{**SETTINGS, "batch_size": 3})
    with pytest.raises(ln.LangNeuronsError, match="its settings differ"):
        ln.record(gpt2, TEXTS, checkpoint=ck, resume=True, pooling="max", **SETTINGS)
    other = {**TEXTS, "de": TEXTS["de"][:-1] + ["ein anderer Satz"]}
    with pytest.raises(ln.LangNeuronsError, match="its corpus differs"):
        ln.record(gpt2, other, checkpoint=ck, resume=True, **SETTINGS)
    llama = ln.load_model(llama_dir, device="cpu")
    with pytest.raises(ln.LangNeuronsError, match="its model differs"):
        ln.record(llama, TEXTS, checkpoint=ck, resume=True, **SETTINGS)
    assert ck.exists()  # a refusal leaves the checkpoint alone
    ck.write_bytes(ck.read_bytes()[:100])
    with pytest.raises(ln.LangNeuronsError, match="cannot be read"):
        ln.record(gpt2, TEXTS, checkpoint=ck, resume=True, **SETTINGS)


def test_checkpoint_without_residual_sums_is_refused(gpt2, tmp_path):
    """A checkpoint written before the residual-stream sums existed cannot be resumed (the
    chunks it holds have none): one clear error, and the checkpoint stays."""
    from safetensors.torch import save_file

    ck = tmp_path / "ck.safetensors"
    _interrupted(gpt2, ck)
    with safe_open(str(ck), framework="pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys() if k != "resid_sums"}
    save_file(tensors, str(ck), metadata=meta)
    with pytest.raises(ln.LangNeuronsError, match="older lang_neurons .*delete it to start over"):
        ln.record(gpt2, TEXTS, checkpoint=ck, resume=True, **SETTINGS)
    assert ck.exists()


def test_cli_identify_resume(llama_dir, tmp_path, capsys):
    """A killed `identify` leaves run.json and the checkpoint in --out: `--resume` finishes it."""
    from lang_neurons import cli, pipeline

    texts = tmp_path / "texts"
    texts.mkdir()
    for lang, lines in TEXTS.items():
        (texts / f"{lang}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    argv = [
        "identify",
        "--model",
        str(llama_dir),
        "--corpus",
        str(texts),
        "--langs",
        "en,de,ja",
        "--batch-size",
        "2",
        "--no-progress",
        "--checkpoint-every",
        "1",
    ]
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    assert cli.main([*argv, "--out", str(clean)]) == 0
    assert not (clean / "stats.checkpoint.safetensors").exists()

    # What a kill part-way leaves: run.json (written first) and a checkpoint of the CLI's recording.
    killed.mkdir()
    (killed / "run.json").write_text((clean / "run.json").read_text())
    settings = json.loads((clean / "run.json").read_text())
    train, _ = pipeline.run_corpora(settings)
    model = ln.load_model(llama_dir, device="cpu")
    model.hook_dict["blocks.0.hook_resid_pre"].add_hook(_Interrupt(10))  # 15 batches; chunks of 8
    with pytest.raises(KeyboardInterrupt):
        ln.record(
            model,
            train,
            batch_size=2,
            max_length=settings["max_length"],
            checkpoint=killed / "stats.checkpoint",
            checkpoint_every=1,
            progress=False,
        )
    assert _done(killed / "stats.checkpoint.safetensors") == 1
    capsys.readouterr()
    assert cli.main([*argv, "--out", str(killed)]) == 2
    err = capsys.readouterr().err
    assert "unfinished recording" in err and "--resume" in err
    assert cli.main([*argv, "--out", str(killed), "--resume"]) == 0
    assert not (killed / "stats.checkpoint.safetensors").exists()
    _assert_identical(ln.ActivationStats.load(killed / "stats"), ln.ActivationStats.load(clean / "stats"))
    # --force without --resume starts over and drops the checkpoint
    assert cli.main([*argv, "--out", str(killed), "--force", "--checkpoint-every", "0"]) == 0
    _assert_identical(ln.ActivationStats.load(killed / "stats"), ln.ActivationStats.load(clean / "stats"))


def test_cli_bad_big_model_options(llama_dir, tmp_path, capsys):
    from lang_neurons import cli

    base = ["identify", "--model", str(llama_dir), "--corpus", "default", "--langs", "en,de", "--no-progress"]
    for extra, message in (
        (["--dtype", "float8"], "unknown dtype 'float8'"),
        (["--checkpoint-every", "-1"], "--checkpoint-every"),
        (["--device-map", "{nope"], "--device-map is neither"),
        (["--device", "cpu", "--n-devices", "2"], "either device or n_devices"),
    ):
        out = tmp_path / extra[0].strip("-")
        assert cli.main([*base, "--out", str(out), *extra]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
        assert not (out / "stats.safetensors").exists()
