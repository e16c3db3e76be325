"""The library also accepts a TransformerLens 3 ``HookedTransformer`` (duck-typed protocol).

TL3 cannot be installed beside TL4 in one environment, so this test installs
transformer-lens 3.9 (no dependencies: TL4 already brought them) into a cache folder and runs
``tl3_check.py`` with it first on the path.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lang_neurons.models import cache_dir

HERE = Path(__file__).resolve().parents[1]  # tests/: tl3_check.py and tiny_models.py

pytestmark = [pytest.mark.network, pytest.mark.slow]


@pytest.fixture(scope="module")
def tl3_path():
    target = cache_dir() / "tl3.9"
    if not (target / "transformer_lens" / "HookedTransformer.py").is_file():
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "-q",
                "--no-deps",
                "--target",
                str(target),
                "transformer-lens==3.9.0",
                "better-abc",
                "fancy-einsum",
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if proc.returncode != 0:
            pytest.skip(f"cannot install transformer-lens 3.9 from PyPI: {proc.stderr.strip()[-300:]}")
    return target


def test_hooked_transformer_from_tl3(tl3_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tl3_path), str(HERE)])}
    proc = subprocess.run(
        [sys.executable, str(HERE / "tl3_check.py"), str(tl3_path)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ["ok", "gated", "ok", "gelu"]
