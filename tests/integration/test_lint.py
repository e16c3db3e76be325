"""The linters of the dev extra are clean on the repository: ``ruff check``, ``ruff format --check``
and ``mypy`` (its settings are ``[tool.mypy]`` in pyproject.toml), each run from the test venv's
bin folder at the version requirements/lock.txt pins."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent  # not resolved: a venv's python may link to the base interpreter


def _run(tool: str, *args: str, timeout: float) -> None:
    exe = BIN / tool
    if not exe.is_file():
        pytest.skip(f"{tool} is not installed in {BIN} (bash scripts/setup.sh installs the dev extra at the lock)")
    proc = subprocess.run([str(exe), *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"`{tool} {' '.join(args)}` exited with {proc.returncode}:\n{proc.stdout}{proc.stderr}"


@pytest.mark.parametrize("args", [("check", "."), ("format", "--check", ".")], ids=["check", "format"])
def test_ruff_is_clean(args):
    _run("ruff", *args, timeout=300)


def test_mypy_is_clean():
    # About 45 s without .mypy_cache on 2 cores, 2 s with it; the packages checked against are this venv's.
    _run("mypy", "--python-executable", sys.executable, timeout=900)
