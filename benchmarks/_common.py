"""Helpers shared by the benchmark scripts: the machine, peak memory, the models, medians."""

from __future__ import annotations

import os
import platform
import resource
import statistics
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # tiny_models.py builds the tiny random models


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (MiB)."""
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return round(r / 2**20 if sys.platform == "darwin" else r / 2**10, 1)


def machine() -> dict:
    """What the numbers were measured on."""
    from lang_neurons import hardware

    return {
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu": cpu_name(),
        "cpu_flags": sorted(f for f in hardware.cpu_flags() if f.startswith(("avx", "amx"))),
        "torch_capability": hardware.cpu_capability(),
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }


def cpu_name() -> str:
    """The CPU's model name (Linux ``/proc/cpuinfo``; else ``platform.processor()``)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor()


def load(model: str):
    """``tiny``: a random tiny Gemma-3 built like ``tests/tiny_models.py`` (2 layers, d_mlp 128,
    vocab 512); ``gemma``: the embedded Gemma-3-270M. Both through :func:`lang_neurons.load_model`."""
    import lang_neurons as ln

    if model == "tiny":
        from tiny_models import make_tiny_model

        path = make_tiny_model("gemma3", Path(tempfile.mkdtemp(prefix="bench-tiny-")), seed=0)
        return ln.load_model(path, device="cpu")
    if model == "gemma":
        return ln.load_model(device="cpu")
    raise SystemExit(f"unknown --model {model!r}: use tiny or gemma")


def median(xs: list[float]) -> float:
    return statistics.median(xs)
