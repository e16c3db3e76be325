"""Memory plan of a recording: the bytes of every tensor :func:`lang_neurons.record` allocates.

With ``L`` languages, ``N = n_layers x width`` neurons at the site (``width`` is ``d_mlp``,
``2 d_mlp`` for site ``gate_up``, the sum of the Linear output widths for site ``linear``:
42,496 on Llama-2-7B) and ``S`` pooled sentences (per language
``min(ap_sentences, sentences)``, summed):

* fixed-size statistics, independent of the corpus: ``active``, ``sums``, ``sq_sums``
  (int64 / float64, ``8 L N`` bytes each), ``nonfinite`` (``8 L n_layers``), ``resid_sums``
  (float64, ``8 L n_layers d_model``), ``tokens`` and ``sentences`` (``8 L``). During the pass they exist twice on the model's device (the current
  chunk's partial sums and the totals), plus one transient copy of the partials per chunk;
* the AP pooled matrix ``pooled`` (float32, ``4 S N`` bytes, host memory) and its labels
  ``pooled_lang`` (``8 S``): the only part that grows with the corpus, capped by
  ``ap_sentences``;
* per batch, ``B`` pooled rows on the device (float32, ``4 B N``) until they are copied to the
  host;
* the hooks' scratch buffers, sized by the largest batch (``T`` = batch x positions), kept for
  the whole pass: two float32 ``[T, width]`` and one float32 ``[T, d_model]``. Like the model's
  own activations they grow with the batch, not the corpus, and are not in the plan.

See docs/performance.md for the figures of an 8B model.
"""

from __future__ import annotations

from dataclasses import dataclass

from lang_neurons.errors import LangNeuronsError


@dataclass(frozen=True)
class RecordMemory:
    """Bytes :func:`lang_neurons.record` allocates, by tensor (see the module docstring)."""

    stats: dict[str, int]
    """Each tensor of the resulting :class:`~lang_neurons.recording.ActivationStats`."""
    device_accumulators: int
    """Fixed-size sums kept on the model's device during the pass (partials + totals)."""
    device_transient: int
    """Largest short-lived extra on the device: the copy of the partials folded per chunk,
    or one batch's pooled rows, whichever is larger."""

    @property
    def fixed(self) -> int:
        """Bytes of the fixed-size statistics in the result (everything but the pooled rows)."""
        return sum(v for k, v in self.stats.items() if k not in ("pooled", "pooled_lang"))

    @property
    def pooled(self) -> int:
        """Bytes of the AP pooled matrix and its labels (host memory)."""
        return self.stats["pooled"] + self.stats["pooled_lang"]


def record_memory(
    n_langs: int, n_layers: int, width: int, pooled_sentences: int, batch_size: int = 16, *, d_model: int = 0
) -> RecordMemory:
    """The memory plan of one recording (bytes; activations of the model itself not included).

    Args:
        n_langs: languages recorded.
        n_layers: model layers.
        width: neurons per layer at the site (``d_mlp``; ``2 * d_mlp`` for ``gate_up``;
            ``resolve_site(model, "linear").width`` for ``linear``).
        pooled_sentences: rows of the AP pooled matrix, summed over languages: per language
            ``min(ap_sentences, its sentences)`` (all sentences without ``ap_sentences``).
        batch_size: sentences per forward pass (the per-batch pooled rows on the device).
        d_model: residual-stream width (``cfg.d_model``) for the residual sums; 0 leaves them
            out of the plan.
    """
    for name, v in (("n_langs", n_langs), ("n_layers", n_layers), ("width", width), ("batch_size", batch_size)):
        if v < 1:
            raise LangNeuronsError(f"{name} must be a positive integer, got {v}")
    for name, v in (("pooled_sentences", pooled_sentences), ("d_model", d_model)):
        if v < 0:
            raise LangNeuronsError(f"{name} must be >= 0, got {v}")
    neurons = n_layers * width
    per_stat = 8 * n_langs * neurons  # int64 / float64
    stats = {
        "tokens": 8 * n_langs,
        "active": per_stat,
        "sums": per_stat,
        "sq_sums": per_stat,
        "sentences": 8 * n_langs,
        "pooled": 4 * pooled_sentences * neurons,
        "pooled_lang": 8 * pooled_sentences,
        "nonfinite": 8 * n_langs * n_layers,
        "resid_sums": 8 * n_langs * n_layers * d_model,
    }
    partials = 3 * per_stat + stats["nonfinite"] + stats["resid_sums"]  # the sums of one chunk
    totals = partials + stats["tokens"]
    batch_rows = 4 * min(batch_size, pooled_sentences) * neurons
    return RecordMemory(stats=stats, device_accumulators=partials + totals, device_transient=max(partials, batch_rows))
