"""Shared pytest fixtures: tiny random models of every supported architecture, built offline.

This is the one conftest of the suite (tests/unit, tests/integration, tests/real_model and any
test file at the top of tests/): it puts tests/ on ``sys.path``, so every test module imports the
shared helpers by name (``from tiny_models import SENTENCES``, ``from plot_inputs import _results``).

Fixtures (all session-scoped, each model built once per session):

* ``tiny_model_dir`` -- parametrised over ``tiny_models.TINY_ARCHS`` (ids are the arch
  names: gpt2, bloom, xglm, llama, mistral, qwen2, gemma3, cohere); a folder holding a
  saved HF model + tokenizer that ``TransformerBridge.boot_transformers`` boots offline.
* ``gpt2_dir`` -- the non-gated GPT-2 folder, for fast tests that need one model.
* ``llama_dir`` -- the gated Llama folder, for fast tests that need one model.

The three share one build per arch (``gpt2_dir`` is the same folder as
``tiny_model_dir[gpt2]``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from types import SimpleNamespace

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tiny_models import TINY_ARCHS, make_tiny_model

_BUILT: dict[str, Path] = {}


def _tiny_dir(arch: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    if arch not in _BUILT:
        _BUILT[arch] = make_tiny_model(arch, tmp_path_factory.mktemp(f"tiny_{arch}"), seed=0)
    return _BUILT[arch]


@pytest.fixture(scope="session", params=TINY_ARCHS, ids=list(TINY_ARCHS))
def tiny_model_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder with a tiny random model of one architecture (+ its tokenizer)."""
    return _tiny_dir(request.param, tmp_path_factory)


@pytest.fixture(scope="session")
def gpt2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder with the tiny GPT-2 (non-gated MLP, learned absolute positions)."""
    return _tiny_dir("gpt2", tmp_path_factory)


@pytest.fixture(scope="session")
def llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder with the tiny Llama (gated SiLU MLP, rotary positions)."""
    return _tiny_dir("llama", tmp_path_factory)


@pytest.fixture
def broken_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every bridge drops the KV cache it is handed, so each cached generation step sees only its
    newest token: how transformers 5.24.0 broke TransformerLens 4.3's generation. Uncached
    generation and plain forward passes are unaffected, as they were there."""
    from transformer_lens.model_bridge import TransformerBridge

    forward = TransformerBridge.forward

    def forgetful(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        kwargs.pop("past_key_values", None)
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(TransformerBridge, "forward", forgetful)


@pytest.fixture(scope="session")
def tiny_study(llama_dir: Path) -> SimpleNamespace:
    """The tiny Llama with statistics of 8 texts each of en/de/ja, a LAPE set (top 10 %), an AP set
    (5 + 5) and 14 held-out aligned texts per language: what the evaluation tests share."""
    from tiny_models import SENTENCES

    import lang_neurons as ln
    from lang_neurons.corpora import LanguageCorpus

    langs = ("en", "de", "ja")
    model = ln.load_model(llama_dir, device="cpu")
    stats = ln.record(model, {lang: SENTENCES[lang][:8] for lang in langs}, progress=False)
    held = LanguageCorpus({lang: SENTENCES[lang][8:22] for lang in langs}, name="held", aligned=True)
    return SimpleNamespace(
        model=model,
        stats=stats,
        held=held,
        lape=ln.lape(stats, top_rate=0.1),
        ap=ln.average_precision(stats, top_k=5, bottom_k=5, progress=False),
    )
