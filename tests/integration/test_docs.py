"""The documentation: the mkdocs site builds strictly (offline), every public object has a
docstring, and tensor arguments/results carry their shapes."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

import lang_neurons

ROOT = Path(__file__).resolve().parents[2]


def _public_modules(*, deep: bool = True) -> list:
    """The package's public modules; ``deep``: the modules inside its subpackages too (each
    subpackage has one API page, but the checks of docstrings and shapes reach every module)."""
    walk = pkgutil.walk_packages if deep else pkgutil.iter_modules
    names = [m.name for m in walk(lang_neurons.__path__, "lang_neurons.")]
    names = [n for n in names if not any(part.startswith("_") for part in n.split("."))]
    return [importlib.import_module(n) for n in sorted(names)]


def _own_members(module) -> list[tuple[str, object]]:
    """Public functions and classes defined in ``module`` (not imported into it)."""
    out = []
    for name, obj in vars(module).items():
        if name.startswith("_") or not (inspect.isfunction(obj) or inspect.isclass(obj)):
            continue
        if getattr(obj, "__module__", None) == module.__name__:
            out.append((f"{module.__name__}.{name}", obj))
    return out


def _public_api() -> list[tuple[str, object]]:
    """``lang_neurons.__all__``, every public module's own functions and classes, and the
    public methods and properties those classes define."""
    seen: dict[int, tuple[str, object]] = {id(lang_neurons): ("lang_neurons", lang_neurons)}
    for module in _public_modules():
        seen.setdefault(id(module), (module.__name__, module))
        for qual, obj in _own_members(module):
            seen.setdefault(id(obj), (qual, obj))
    for name in lang_neurons.__all__:
        obj = getattr(lang_neurons, name)
        if inspect.ismodule(obj) or inspect.isfunction(obj) or inspect.isclass(obj):
            seen.setdefault(id(obj), (f"lang_neurons.{name}", obj))
    items = list(seen.values())
    for qual, obj in list(items):
        if not inspect.isclass(obj) or issubclass(obj, BaseException):
            continue
        for name, attr in vars(obj).items():
            if name.startswith("_"):
                continue
            fn = attr.fget if isinstance(attr, property) else getattr(attr, "__func__", attr)
            if inspect.isfunction(fn):
                items.append((f"{qual}.{name}", fn))
    return items


def test_public_api_is_found():
    names = {q for q, _ in _public_api()}
    # a few anchors, so that a broken walk cannot pass by finding nothing
    for expected in (
        "lang_neurons.recording",
        "lang_neurons.scoring.lape_select",
        "lang_neurons.neurons.NeuronSet.jaccard",
        "lang_neurons.steering.neurons.add",
        "lang_neurons.cli.build_parser",
        "lang_neurons.plots.neurons.layer_distribution",
    ):
        assert expected in names
    assert len(names) > 100


def test_every_public_object_has_a_docstring():
    missing = [qual for qual, obj in _public_api() if not (obj.__doc__ or "").strip()]
    assert not missing, "public objects without a docstring: " + ", ".join(missing)


# Float[Tensor, "lang layer"] as written (string annotations) or as jaxtyping prints it (quotes ')
_SHAPED = re.compile(r"""\w+\[(?:torch\.)?Tensor, (?:"[^"]*"|'[^']*')\]""")
# a function-valued argument (Callable[[Tensor], Tensor]) is not a tensor
_CALLABLE = re.compile(r"Callable\[\[[^\]]*\], [^\]]*\]")


def _annotations(fn) -> dict[str, str]:
    return {k: v if isinstance(v, str) else getattr(v, "__name__", str(v)) for k, v in fn.__annotations__.items()}


def test_tensor_arguments_and_results_name_their_shapes():
    """A ``Tensor`` in a public signature is written ``Float[Tensor, "lang layer neuron"]`` (jaxtyping)."""
    bare = []
    for qual, obj in _public_api():
        if not inspect.isfunction(obj):
            continue
        for arg, text in _annotations(obj).items():
            if "Tensor" in _CALLABLE.sub("", _SHAPED.sub("", text)):
                bare.append(f"{qual}({arg}: {text})")
    assert not bare, "tensor annotations without a shape: " + "; ".join(bare)


def test_cli_reference_covers_every_command_and_option():
    spec = importlib.util.spec_from_file_location("lang_neurons_docs_hooks", ROOT / "docs" / "hooks.py")
    hooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hooks)
    text = hooks.cli_reference()
    import argparse

    from lang_neurons.cli import build_parser

    parser = build_parser()
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in subs.choices.items():
        assert f"## `lang-neurons {name}`" in text
        for action in sub._actions:
            for opt in action.option_strings:
                assert opt in text, f"{name} {opt} missing from the CLI reference"


@pytest.mark.slow
def test_mkdocs_build_strict(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("material")
    pytest.importorskip("mkdocstrings_handlers.python")
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"), "-d", str(site)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (site / "index.html").is_file()
    cli = (site / "cli" / "index.html").read_text()
    assert "cli-reference" not in cli and "--method" in cli and "lang-neurons identify" in cli
    api = (site / "api" / "steering" / "index.html").read_text()
    assert "language_arithmetic" in api
    for nb in (ROOT / "notebooks").glob("*.ipynb"):
        assert (site / "notebooks" / nb.name).is_file()


def test_every_public_module_has_an_api_page():
    pages = "\n".join(p.read_text() for p in (ROOT / "docs" / "api").glob("*.md"))
    listed = set(re.findall(r"^::: (lang_neurons\.\w+)", pages, flags=re.M))
    wanted = {m.__name__ for m in _public_modules(deep=False)} - {"lang_neurons.cli"}  # cli: docs/cli.md
    assert not wanted - listed, f"modules missing from docs/api/*.md: {sorted(wanted - listed)}"
