"""The generation dtype that ``"auto"`` picks on each kind of hardware (the capability simulated),
the warning for bfloat16 asked for where it is slow, and the allocator setting."""

from __future__ import annotations

import warnings

import pytest
import torch

from lang_neurons import hardware

AVX2 = frozenset({"fpu", "sse4_2", "avx", "avx2", "fma"})
AVX512 = AVX2 | {"avx512f", "avx512bw", "avx512vl"}


@pytest.fixture
def cpu(monkeypatch):
    """Simulate a Linux x86 CPU: ``cpu(flags, capability)``; the measurement is counted, never run."""
    measured = []

    def simulate(flags, capability="AVX2", slowdown=25.0, x86=True):
        monkeypatch.setattr(hardware, "cpu_flags", lambda: frozenset(flags))
        monkeypatch.setattr(hardware, "cpu_capability", lambda: capability)
        monkeypatch.setattr(hardware, "_is_x86", lambda: x86)
        monkeypatch.setattr(hardware, "bfloat16_slowdown", lambda *a, **k: measured.append(1) or slowdown)
        return measured

    return simulate


def test_auto_is_float32_on_an_avx2_cpu(cpu):
    measured = cpu(AVX2, "AVX2")
    choice = hardware.generation_dtype("auto", torch.float32, "cpu")
    assert choice.dtype == "float32"
    assert "without AVX512-BF16 or AMX" in choice.reason and "AVX2" in choice.reason
    assert not measured  # the flags decide, no measurement


def test_auto_is_float32_on_avx512_without_bf16(cpu):
    cpu(AVX512, "AVX512")
    assert hardware.generation_dtype("auto", "float32").dtype == "float32"


@pytest.mark.parametrize("flag", ["avx512_bf16", "amx_bf16"])
def test_auto_is_bfloat16_where_the_cpu_has_it(cpu, flag):
    cpu(AVX512 | {flag}, "AVX512")
    choice = hardware.generation_dtype("auto", torch.float32, "cpu")
    assert choice.dtype == "bfloat16" and flag in choice.reason


def test_auto_respects_a_lowered_torch_capability(cpu):
    cpu(AVX512 | {"avx512_bf16"}, "AVX2")  # ATEN_CPU_CAPABILITY=avx2
    choice = hardware.generation_dtype("auto", torch.float32)
    assert choice.dtype == "float32" and "ATEN_CPU_CAPABILITY" in choice.reason


@pytest.mark.parametrize(("slowdown", "dtype"), [(0.5, "bfloat16"), (0.9, "float32"), (30.0, "float32")])
def test_auto_measures_where_the_flags_do_not_tell(cpu, slowdown, dtype):
    measured = cpu(frozenset({"fp", "asimd", "bf16"}), "DEFAULT", slowdown=slowdown, x86=False)
    choice = hardware.generation_dtype("auto", torch.float32, "cpu")
    assert choice.dtype == dtype and measured == [1] and "measured" in choice.reason


def test_auto_keeps_a_model_that_is_not_float32(cpu):
    cpu(AVX2)
    choice = hardware.generation_dtype("auto", torch.bfloat16)
    assert choice.dtype is None and "bfloat16" in choice.reason


def test_cuda_decides_by_native_bf16_support(monkeypatch):
    import contextlib

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device", lambda d: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "NVIDIA T4")
    asked = []
    for native, dtype in ((True, "bfloat16"), (False, "float32")):
        monkeypatch.setattr(
            torch.cuda,
            "is_bf16_supported",
            lambda including_emulation=True, n=native: asked.append(including_emulation) or n,
        )
        choice = hardware.generation_dtype("auto", torch.float32, "cuda")
        assert choice.dtype == dtype
    assert asked == [False, False]  # emulated bf16 (a T4, a V100) does not count
    assert "only emulates" in choice.reason


def test_cuda_that_is_not_there(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    choice = hardware.generation_dtype("auto", torch.float32, "cuda")
    assert choice.dtype == "float32" and "CUDA is not available" in choice.reason


def test_explicit_choices_are_kept(cpu):
    cpu(AVX512 | {"avx512_bf16"}, "AVX512")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert hardware.generation_dtype("float32", torch.float32).dtype == "float32"
        assert hardware.generation_dtype("bfloat16", torch.float32).dtype == "bfloat16"  # native: no warning
        assert hardware.generation_dtype(None, torch.float32).dtype is None


def test_bfloat16_on_a_slow_cpu_warns_with_the_slowdown(cpu):
    cpu(AVX2, "AVX2", slowdown=23.4)
    with pytest.warns(UserWarning, match=r"measured 23x the time of a float32 one.*--generation-dtype auto") as caught:
        assert hardware.generation_dtype("bfloat16", torch.float32).dtype == "bfloat16"
    assert len(caught) == 1 and "\n" not in str(caught[0].message)


def test_the_measurement_is_a_ratio_of_real_products():
    slow = hardware.bfloat16_slowdown("cpu", repeats=1)
    assert 0 < slow < 1000


def test_keep_freed_memory_applies_on_glibc():
    import sys

    applied = hardware.keep_freed_memory()
    assert applied is sys.platform.startswith("linux")
