"""What the machine computes fast: the dtype generation runs in, and the process's allocator.

**The generation dtype.** bfloat16 halves a generation's time where the hardware multiplies it
natively (CUDA with bf16 support; an x86 CPU with AVX512-BF16 or AMX, measured 1.8x on
Gemma-3-270M) and multiplies it by 20 or more where it does not: torch has no fast bfloat16
matrix product on a CPU with only AVX2, so every product is widened in software (the
unembedding ``[100, 640] x [640, 262144]``: 0.55-0.69 s in float32, over 15 s in bfloat16).
:func:`generation_dtype` decides ``"auto"`` by the device the model runs on, not by its dtype
alone, and says why; :func:`bfloat16_slowdown` measures the cost where the answer is not known
from the CPU's flags (and for the warning when bfloat16 is asked for on such a CPU).

**The allocator.** Scoring a batch of continuations makes logits of ``batch x positions x
vocabulary`` floats (553 MB for 16 x 33 x 262,144): glibc serves blocks that large with a fresh
``mmap`` and returns them at ``free``, so the kernel maps and zeroes every page again for every
batch (a fifth of a float32 run's CPU time on a 2-vCPU AVX2-only EPYC, 182 million page faults). :func:`keep_freed_memory`
raises glibc's mmap and trim thresholds so that freed blocks are reused; the CLI calls it at start.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import platform
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lang_neurons.models import parse_dtype

BFLOAT16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
"""x86 CPU flags (``/proc/cpuinfo``) under which torch's bfloat16 matrix products are native."""

FASTER = 1.2
"""Where the flags do not decide (not Linux x86), bfloat16 is chosen when the measured product is this much faster."""


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (Linux: ``/proc/cpuinfo``'s ``flags``, or ``Features`` on ARM); empty elsewhere."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def cpu_capability() -> str:
    """torch's CPU kernel level (``AVX512``, ``AVX2``, ... ; ``ATEN_CPU_CAPABILITY`` can lower it)."""
    return torch.backends.cpu.get_cpu_capability()


def _is_x86() -> bool:
    return platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")


@dataclass(frozen=True)
class DtypeChoice:
    """What a generation runs in, and why.

    Attributes:
        dtype: the dtype's name, or ``None`` for the model's own.
        reason: one line: the device, what it computes natively, what was asked.
    """

    dtype: str | None
    reason: str

    def __str__(self) -> str:
        return f"{self.dtype or 'the model dtype'} ({self.reason})"


def native_bfloat16(device: torch.device | str) -> tuple[bool | None, str]:
    """Whether ``device`` multiplies bfloat16 natively: ``True``/``False`` with what showed it,
    or ``None`` when only a measurement can tell (a CPU that is not Linux x86)."""
    device = torch.device(device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            return False, "CUDA is not available"
        with torch.cuda.device(device):
            ok = torch.cuda.is_bf16_supported(including_emulation=False)  # emulated bf16 (T4, V100) is slow
            name = torch.cuda.get_device_name(device)
        return ok, f"{name} {'computes' if ok else 'only emulates'} bfloat16"
    if device.type != "cpu":
        return False, f"{device.type} device: bfloat16 speed unknown, float32 kept"
    flags = cpu_flags()
    if not (_is_x86() and flags):
        return None, f"{platform.machine() or 'unknown'} CPU without readable flags"
    has = [f for f in BFLOAT16_CPU_FLAGS if f in flags]
    capability = cpu_capability()
    if not has:
        return False, f"CPU without AVX512-BF16 or AMX (torch capability {capability})"
    if not capability.startswith("AVX512"):
        return False, f"CPU has {'/'.join(has)} but torch runs at capability {capability} (ATEN_CPU_CAPABILITY?)"
    return True, f"CPU with {'/'.join(has)} (torch capability {capability})"


@functools.cache
def bfloat16_slowdown(device_type: str = "cpu", repeats: int = 3) -> float:
    """bfloat16 time over float32 time of an unembedding-shaped product ``[32, 512] x [512, 16384]``
    on this device (median of ``repeats``; below 1: bfloat16 is faster). Measured once per process,
    about 0.1 s where bfloat16 is native and a few seconds where it is not."""
    device = torch.device(device_type)
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(32, 512, generator=gen).to(device), torch.randn(512, 16384, generator=gen).to(device)

    def seconds(dtype: torch.dtype) -> float:
        x, y = a.to(dtype), b.to(dtype)
        x @ y  # warm up
        times = []
        for _ in range(repeats):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            x @ y
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times.append(time.perf_counter() - start)
        return sorted(times)[len(times) // 2]

    with torch.inference_mode():
        return seconds(torch.bfloat16) / max(seconds(torch.float32), 1e-9)


def _warn_if_slow(device: torch.device) -> None:
    """One warning line, with the measured slowdown, for bfloat16 asked on a CPU that is not native."""
    native, why = native_bfloat16(device)
    if native is not True and (slow := bfloat16_slowdown("cpu")) > FASTER:
        warnings.warn(
            f"generation in bfloat16 on this CPU ({why}): a bfloat16 matrix product measured {slow:.0f}x the time "
            "of a float32 one, so generation may take about that much longer; use --generation-dtype auto or float32",
            stacklevel=3,
        )


def generation_dtype(
    choice: str | None, model_dtype: torch.dtype | str, device: torch.device | str = "cpu"
) -> DtypeChoice:
    """The dtype a generation runs in for ``choice`` (``"auto"``, a dtype name, or ``None``: the model's).

    ``"auto"``: bfloat16 for a float32 model on a device that multiplies bfloat16 natively
    (:func:`native_bfloat16`; on a CPU whose flags do not tell, where :func:`bfloat16_slowdown`
    measures it at least :data:`FASTER` times faster), else the model's own dtype. An explicit
    ``"bfloat16"`` on a CPU that is not native is kept, with a one-line warning of the measured slowdown.
    """
    device = torch.device(device)
    if choice is None:
        return DtypeChoice(None, "the model's own dtype, as asked")
    if choice != "auto":
        if choice == "bfloat16" and device.type == "cpu":
            _warn_if_slow(device)
        return DtypeChoice(choice, "as asked")
    if parse_dtype(model_dtype) != torch.float32:
        return DtypeChoice(None, f"auto: the model already runs in {str(model_dtype).removeprefix('torch.')}")
    native, why = native_bfloat16(device)
    if native is None:
        slow = bfloat16_slowdown(device.type)
        native = slow * FASTER <= 1
        why = f"{why}: a bfloat16 product measured {1 / slow:.1f}x the speed of float32"
    return DtypeChoice("bfloat16" if native else "float32", f"auto: {why}")


def for_model(model: Any, choice: str | None) -> DtypeChoice:
    """:func:`generation_dtype` for ``model`` (its ``cfg.dtype`` and ``cfg.device``)."""
    cfg = getattr(model, "cfg", None)
    return generation_dtype(choice, getattr(cfg, "dtype", None) or torch.float32, getattr(cfg, "device", None) or "cpu")


def keep_freed_memory() -> bool:
    """Make glibc reuse freed large blocks instead of returning them to the kernel at once
    (``mallopt``: mmap and trim thresholds 1 GiB); returns whether it applied (glibc
    only). The numbers do not change, only the time spent mapping pages: on Gemma-3-270M, 2 cores
    of an AMD EPYC held to AVX2 kernels, float32, one steering row went from 67.9 s to 54.3 s
    (``benchmarks/bench_row.py``, docs/performance.md). The resident
    memory stays near its peak instead of shrinking after each batch."""
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other libcs without mallopt
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(mallopt(m_mmap_threshold, 1 << 30)) and bool(mallopt(m_trim_threshold, 1 << 30))
