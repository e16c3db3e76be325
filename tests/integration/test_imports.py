"""What importing costs: the package and the CLI's help and argument errors load no torch."""

from __future__ import annotations

import subprocess
import sys

import lang_neurons as ln

HEAVY = ("torch", "transformer_lens", "transformers", "plotly")


def _loaded_after(code: str) -> list[str]:
    probe = f"import sys\n{code}\nprint('loaded:', *(m for m in {HEAVY!r} if m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.rsplit("loaded:", 1)[1].split()


def test_import_lang_neurons_loads_no_torch_or_plotly():
    assert _loaded_after("import lang_neurons") == []


def test_help_and_argument_errors_answer_before_torch():
    help_ = "from lang_neurons import cli\ntry:\n    cli.main(['run', '--help'])\nexcept SystemExit:\n    pass"
    assert _loaded_after(help_) == []
    bad = "from lang_neurons import cli\ntry:\n    cli.main(['run', '--out', 'x', '--samples', '0'])\nexcept SystemExit as e:\n    assert e.code == 2"
    assert _loaded_after(bad) == []


def test_every_public_name_resolves_and_is_listed():
    for name in ln.__all__:
        assert getattr(ln, name) is not None
    assert callable(ln.record) and ln.record.__module__ == "lang_neurons.recording.recorder"
    assert set(ln.__all__) <= set(dir(ln))
    try:
        ln.no_such_name  # noqa: B018
    except AttributeError as err:
        assert "no_such_name" in str(err)
    else:
        raise AssertionError("unknown attribute did not raise")
