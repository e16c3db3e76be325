"""``lang-neurons doctor``: is this installation computing what it should?

Run it when numbers look wrong. Each check gives one line, ``PASS`` or ``FAIL`` with what it saw:
the installed versions against the tested lock (``requirements/lock.txt``), versions known to
break, the model's forward pass, KV-cache generation against an uncached forward pass
(:func:`~lang_neurons.generation.check_kv_cache`) and the fastText language identifier.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

STACK_PACKAGES: tuple[str, ...] = (
    "lang_neurons",
    "torch",
    "transformers",
    "transformer-lens",
    "tokenizers",
    "safetensors",
    "numpy",
    "fasttext-numpy2-wheel",
    "sacrebleu",
    "datasets",
    "plotly",
)
"""The installed packages whose versions decide what lang_neurons computes."""

KNOWN_BAD: dict[tuple[str, str], str] = {
    ("transformers", "5.24."): "breaks transformer-lens 4.3's KV-cache generation (greedy text repeats one token)",
}
"""(package, version prefix) → what that release is known to break."""

LOCK_FILE = Path(__file__).resolve().parents[1] / "requirements" / "lock.txt"
"""The tested lock of a source checkout (absent in an installed wheel)."""

LID_SAMPLES: dict[str, str] = {
    "en": "The weather is lovely today, so we are going for a walk in the park.",
    "de": "Das Wetter ist heute schön, deshalb gehen wir im Park spazieren.",
    "fr": "Il fait beau aujourd'hui, alors nous allons nous promener dans le parc.",
    "es": "Hoy hace buen tiempo, así que vamos a pasear por el parque.",
    "zh": "今天天气很好，所以我们要去公园散步。",
    "ja": "今日は天気が良いので、公園を散歩します。",
}
"""One plain sentence per default language that any working language identifier gets right."""


@dataclass(frozen=True)
class Check:
    """One line of :func:`doctor`'s report."""

    name: str
    passed: bool
    detail: str

    def __str__(self) -> str:
        return f"{'PASS' if self.passed else 'FAIL'}  {self.name:<10} {self.detail}"


def versions(packages: tuple[str, ...] = STACK_PACKAGES) -> dict[str, str]:
    """Installed version of each of ``packages`` (``"not installed"`` where missing)."""
    found = {}
    for name in packages:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(path: str | Path) -> dict[str, str]:
    """``name == version`` pins of a lock file (canonical names; comments skipped)."""
    pins = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            if not sep:
                raise ValueError(f"{path}: {line!r} is not a 'name==version' pin")
            pins[_canonical(name)] = version.strip()
    return pins


def lock_mismatches(path: str | Path) -> list[str]:
    """How the installed packages differ from the lock at ``path``; empty when they match.

    Every pinned package must be installed at its pinned version. Packages the lock does not
    name (torch, which set-up installs first; pip; your own extras) are not judged.
    """
    installed = {_canonical(d.metadata["Name"]): d.version for d in metadata.distributions()}
    out = []
    for name, version in read_lock(path).items():
        have = installed.get(name)
        if have != version:
            out.append(f"{name} {have or 'missing'} (locked {version})")
    return out


def _lock_check(lock: Path | None) -> Check:
    if lock is None or not lock.is_file():
        return Check("lock", True, f"no lock file at {lock} (not a source checkout): skipped")
    bad = lock_mismatches(lock)
    if bad:
        return Check(
            "lock",
            False,
            f"{len(bad)} differ from {lock}: {'; '.join(bad[:5])}"
            f"{' ...' if len(bad) > 5 else ''} (bash scripts/setup.sh installs the lock)",
        )
    return Check("lock", True, f"all {len(read_lock(lock))} pinned packages match {lock}")


def _known_bad_check(found: dict[str, str]) -> Check:
    hits = [
        f"{pkg} {found[pkg]} {why}" for (pkg, prefix), why in KNOWN_BAD.items() if found.get(pkg, "").startswith(prefix)
    ]
    return Check("releases", not hits, "; ".join(hits) or "no release known to break is installed")


def _lid_check() -> Check:
    from lang_neurons.errors import LangNeuronsError
    from lang_neurons.evaluation import LanguageIdentifier

    try:
        lid = LanguageIdentifier()
    except LangNeuronsError as e:
        return Check("lid", False, str(e))
    got = {lang: label for lang, (label, _) in zip(LID_SAMPLES, lid.predict(list(LID_SAMPLES.values())))}
    wrong = [f"{lang} read as {label}" for lang, label in got.items() if label != lang]
    return Check("lid", not wrong, "; ".join(wrong) or f"{lid.path.name} identifies {', '.join(got)} sentences")


def _generation_check(device: str | None, dtype: str) -> Check:
    """What ``--generation-dtype auto`` picks on this machine, and why (informational: fails only for a
    device that is not there)."""
    import torch

    from lang_neurons import hardware

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if torch.device(device).type == "cuda" and not torch.cuda.is_available():
        return Check("generation", False, f"--device {device}, but CUDA is not available here")
    choice = hardware.generation_dtype("auto", dtype, device)
    return Check(
        "generation", True, f"--generation-dtype auto picks {choice.dtype or dtype} on {device}: {choice.reason}"
    )


def _model_checks(model_name: str, device: str | None, dtype: str) -> Iterator[Check]:
    import torch

    from lang_neurons.errors import LangNeuronsError
    from lang_neurons.generation import check_kv_cache
    from lang_neurons.models import load_model

    start = time.perf_counter()
    try:
        model = load_model(model_name, device=device, dtype=dtype, cache_check="off")  # checked below, reported
    except LangNeuronsError as e:
        yield Check("model", False, str(e))
        return
    cfg = model.cfg
    yield Check(
        "model",
        True,
        f"{model_name}: {cfg.n_layers} layers, d_mlp {cfg.d_mlp}, {cfg.dtype}, "
        f"{cfg.device}, loaded in {time.perf_counter() - start:.1f} s",
    )
    with torch.inference_mode():
        logits = model(model.to_tokens("The capital of France is"))
    yield Check(
        "forward",
        bool(torch.isfinite(logits).all()),
        "logits of a forward pass are finite"
        if torch.isfinite(logits).all()
        else "the forward pass gives NaN/inf logits",
    )
    result = check_kv_cache(model, steps=8)
    yield Check("kv-cache", result.passed, str(result))


def doctor(
    model: str | None = "gemma-3-270m",
    *,
    device: str | None = None,
    dtype: str = "float32",
    lock: Path | None = LOCK_FILE,
    emit: Callable[[str], None] = print,
) -> list[Check]:
    """Run every check, ``emit`` (print) each line as it finishes, and return them.

    ``model=None`` skips the checks that load a model (versions, lock, language ID and generation dtype only).
    """
    found = versions()
    emit("versions: " + ", ".join(f"{k} {v}" for k, v in found.items()))
    checks: list[Check] = []

    def run(check: Check) -> None:
        checks.append(check)
        emit(str(check))

    run(_lock_check(lock))
    run(_known_bad_check(found))
    run(_lid_check())
    run(_generation_check(device, dtype))
    if model is not None:
        for check in _model_checks(model, device, dtype):
            run(check)
    return checks
