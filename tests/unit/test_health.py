"""`lang-neurons doctor` and the lock check: one PASS/FAIL line per check, exit code 1 on any FAIL."""

from __future__ import annotations

from importlib import metadata

import pytest

from lang_neurons import cli, health


def _doctor(capsys, *argv: str) -> tuple[int, str]:
    code = cli.main(["doctor", *argv])
    return code, capsys.readouterr().out


def test_read_lock_skips_comments_and_canonicalises_names(tmp_path):
    lock = tmp_path / "lock.txt"
    lock.write_text("# header\n\nTransformer_Lens==4.3.0  # why\nPyYAML==6.0.4\n")
    assert health.read_lock(lock) == {"transformer-lens": "4.3.0", "pyyaml": "6.0.4"}
    lock.write_text("numpy>=2\n")
    with pytest.raises(ValueError, match="'numpy>=2' is not a 'name==version' pin"):
        health.read_lock(lock)


def test_lock_mismatches_name_wrong_and_missing_packages(tmp_path):
    lock = tmp_path / "lock.txt"
    lock.write_text(f"torch=={metadata.version('torch')}\ntransformers==0.0.1\nno-such-package-here==1.0\n")
    assert health.lock_mismatches(lock) == [
        f"transformers {metadata.version('transformers')} (locked 0.0.1)",
        "no-such-package-here missing (locked 1.0)",
    ]


@pytest.mark.locked
def test_the_repo_lock_is_what_is_installed():
    """CI installs the lock with scripts/setup.sh: the venv the tests run in is the locked set."""
    assert health.LOCK_FILE.is_file()
    assert health.lock_mismatches(health.LOCK_FILE) == []
    assert health.read_lock(health.LOCK_FILE)["transformers"] != "5.24.0"


def test_known_bad_release_is_named():
    check = health._known_bad_check({"transformers": "5.24.0", "transformer-lens": "4.3.0"})
    assert not check.passed and "transformers 5.24.0 breaks transformer-lens 4.3" in check.detail
    assert health._known_bad_check({"transformers": "5.23.0"}).passed


@pytest.mark.locked
def test_doctor_without_model_passes_on_the_locked_set(capsys):
    code, out = _doctor(capsys, "--no-model")
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0].startswith("versions: lang_neurons ") and "transformers " in lines[0]
    assert [line.split()[:2] for line in lines[1:5]] == [
        ["PASS", "lock"],
        ["PASS", "releases"],
        ["PASS", "lid"],
        ["PASS", "generation"],
    ]
    assert "--generation-dtype auto picks " in lines[4] and "on cpu: auto: " in lines[4]
    assert lines[-1] == "doctor: 4 of 4 checks passed"


def test_doctor_names_a_lock_mismatch(capsys, tmp_path):
    lock = tmp_path / "lock.txt"
    lock.write_text("transformers==0.0.1\n")
    code, out = _doctor(capsys, "--no-model", "--lock", str(lock))
    assert code == 1
    assert "FAIL  lock       1 differ from" in out and "(locked 0.0.1)" in out
    assert out.splitlines()[-1] == "doctor: 3 of 4 checks passed; failed: lock"


def test_doctor_checks_a_model(capsys, llama_dir):
    code, out = _doctor(capsys, "--model", str(llama_dir), "--device", "cpu")
    assert code == 0, out
    for name in ("model", "forward", "kv-cache"):
        assert f"PASS  {name}" in out
    assert "agree over 8 greedy steps" in out


def test_doctor_names_a_broken_kv_cache(capsys, llama_dir, broken_cache):
    code, out = _doctor(capsys, "--model", str(llama_dir), "--device", "cpu")
    assert code == 1
    assert "FAIL  kv-cache   KV-cache generation and an uncached forward DISAGREE" in out
    assert out.splitlines()[-1].endswith("failed: kv-cache")


def test_doctor_reports_a_model_that_does_not_load(capsys, tmp_path):
    code, out = _doctor(capsys, "--model", str(tmp_path / "nothing"))
    assert code == 1 and "FAIL  model" in out and "does not exist" in out
