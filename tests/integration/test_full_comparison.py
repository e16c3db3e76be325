"""scripts/full-comparison.sh end to end on the tiny Llama: every method's run, then each
protocol's run on the same statistics (reused, not recorded again)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_models import SENTENCES

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def test_full_comparison_script(llama_dir, tmp_path):
    texts = tmp_path / "texts"
    texts.mkdir()
    for lang in ("en", "de", "ja"):
        (texts / f"{lang}.txt").write_text("\n".join(SENTENCES[lang][:20]) + "\n", encoding="utf-8")
    flags = (
        f"--model {llama_dir} --corpus {texts} --langs en,de,ja --samples 10 --max-new-tokens 3 --top-rate 0.1 "
        "--top-k 5 --bottom-k 5 --loss-texts 2 --dev-samples 2 --controls 1 --held-out 0.6 --no-progress --no-images"
    )
    env = {**os.environ, "LN": f"{sys.executable} -m lang_neurons.cli", "LN_FLAGS": flags}
    out = tmp_path / "full"
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "full-comparison.sh"), str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    times = dict(line.split() for line in (out / "times.txt").read_text().splitlines())
    assert list(times) == ["methods", "kojima", "tang", "gurgurov"]
    methods = json.loads((out / "methods" / "metrics.json").read_text())
    assert methods["settings"]["neuron_methods"] == ["add", "diffmean", "override", "pin"]
    for protocol in ("kojima", "tang", "gurgurov"):
        folder = out / protocol
        assert (folder / "index.html").is_file()
        settings = json.loads((folder / "metrics.json").read_text())["settings"]
        assert settings["protocol"] == protocol
        assert (folder / "stats.safetensors").read_bytes() == (out / "methods" / "stats.safetensors").read_bytes()
    assert done.stderr.count("reusing statistics") == 3  # only the first run records
