"""The named choices the stages and the command line share: sites, poolings, methods, presets.

This module imports nothing heavy (no torch, no TransformerLens), so that ``lang-neurons
--help`` and argument errors answer at once; each stage re-exports the names it owns (for
example ``lang_neurons.sites.SITES`` is this module's ``SITES``).
"""

from __future__ import annotations

DEFAULT_MODEL = "gemma-3-270m"
"""Name of the embedded default model: google/gemma-3-270m (base), shipped on PyPI as GGUF."""

DEFAULT_LANGS: tuple[str, ...] = ("en", "de", "fr", "es", "zh", "ja")

AP_SHARE = 0.0045
"""AP's default top-k and bottom-k as a share of the site's neurons: Kojima et al.'s 1,000 of
XGLM-564M's 221,184 Linear outputs (24 layers x 9,216), i.e. 166 of the embedded model's 36,864."""
"""Languages loaded when ``langs=None`` (except for text-file folders and PAWS-X)."""

SITES: dict[str, str] = {
    "act": "act_fn(gate) for gated MLPs, hook_post for GELU MLPs (as LAPE defines neurons)",
    "post": "mlp.hook_post, the input of the down projection",
    "pre": "mlp.hook_pre, the pre-activation (gate projection for gated MLPs)",
    "gate_up": "gate and up projection outputs side by side (gated MLPs only; 2*d_mlp per layer)",
    "linear": "every Linear output of every block (q, k, v, o, gate, up, down; Kojima et al.), pre-activation",
}
"""The neuron sites by name, with what each reads."""

POOLINGS = ("mean", "max", "last")
"""How a sentence's activations are pooled into one value per neuron for AP."""

CACHE_CHECK_MODES: tuple[str, ...] = ("warn", "error", "off")
"""What to do when KV-cache generation disagrees with an uncached forward pass."""

CACHE_CHECK_ENV = "LANG_NEURONS_CACHE_CHECK"
"""Environment variable with the default mode of the KV-cache check: ``warn``, ``error`` or ``off``."""

STEERING_METHODS = ("override", "deactivate", "add", "scale", "replace", "diffmean")
"""The neuron interventions of :func:`lang_neurons.steering.language_arithmetic`."""

PIN = "pin"
"""Kojima et al.'s intervention as a method name: only the target's neurons, pinned to its median
pooled activation; no other language's neurons are touched (unlike ``override``, which is
language arithmetic: the others off, then the target's pinned)."""

EVAL_METHODS = (*STEERING_METHODS, PIN)
"""The neuron methods :func:`lang_neurons.evaluate` takes."""

DEFAULT_METHODS = ("add", "diffmean", "override")
"""Every neuron steering method :func:`lang_neurons.evaluate` compares by default (the full comparison)."""

DEACTIVATE = ("others", "source")
"""Whose neurons language arithmetic switches off: every language but the target, or only the
prompts' language (Gurgurov et al.)."""

RESIDUAL = "residual_diffmean"
"""The row name of the residual-stream DiffMean baseline in :func:`lang_neurons.evaluate`'s results."""

PROMPT_KINDS = ("source", "bos")
"""``source``: continuations of held-out source-language texts; ``bos``: unconditional samples."""

TRANSLATION_TEMPLATES = ("few-shot", "kojima")
"""The prompts :func:`lang_neurons.evaluation.translation_task` builds: few-shot ``English:
...\\nGerman:`` (default), or Kojima et al.'s zero-shot instruction that does not name the
target language."""

PROTOCOL_NAMES = ("kojima", "tang", "gurgurov")
"""The papers' protocols as presets (:data:`lang_neurons.protocols.PROTOCOLS`)."""

RESAMPLES = 1000
"""Default number of bootstrap resamples of the intervals (:mod:`lang_neurons.intervals`)."""

MIN_SAMPLES = 10
"""Fewest generations per cell for which intervals are computed."""

TASK_NAMES: tuple[str, ...] = ("belebele", "xnli", "sib200", "xquad", "multiple_choice", "generation")
"""The downstream tasks :func:`lang_neurons.tasks.load_task` knows (``lang-neurons evaluate --task``):
four hub datasets, and the two kinds for a file of your own."""
