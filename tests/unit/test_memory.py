"""The memory plan (lang_neurons.memory) matches the tensors `record` really allocates."""

from __future__ import annotations

import pytest
import torch
from tiny_models import SENTENCES

import lang_neurons as ln
from lang_neurons.errors import LangNeuronsError
from lang_neurons.memory import record_memory
from lang_neurons.recording.accumulator import Accumulator
from lang_neurons.recording.distributed import Totals


def _bytes(*tensors: torch.Tensor) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


@pytest.mark.parametrize(("site", "ap_sentences"), [("act", None), ("act", 3), ("gate_up", 2)])
def test_plan_matches_what_record_allocates(llama_dir, monkeypatch, site, ap_sentences):
    model = ln.load_model(llama_dir, device="cpu")
    texts = {"en": SENTENCES["en"][:5], "de": SENTENCES["de"][:4], "ja": SENTENCES["ja"][:6]}
    made: dict[str, object] = {}
    for cls in (Accumulator, Totals):
        init = cls.__init__

        def capture(self, *args, _init=init, **kwargs):
            _init(self, *args, **kwargs)
            made[type(self).__name__] = self

        monkeypatch.setattr(cls, "__init__", capture)
    stats = ln.record(model, texts, site=site, ap_sentences=ap_sentences, batch_size=4, progress=False)
    n_pooled = sum(len(v) if ap_sentences is None else min(ap_sentences, len(v)) for v in texts.values())
    plan = record_memory(len(texts), stats.n_layers, stats.width, n_pooled, batch_size=4, d_model=model.cfg.d_model)

    assert plan.stats == {k: _bytes(getattr(stats, k)) for k in plan.stats}
    assert set(plan.stats) == {*ln.ActivationStats._TENSORS, "nonfinite", "resid_sums"}
    acc, tot = made["Accumulator"], made["Totals"]
    partials = _bytes(acc.active, acc.sums, acc.sq_sums, acc.nonfinite, acc.resid_sums)
    on_device = partials + _bytes(*(getattr(tot, f) for f in Totals.FIELDS))
    assert plan.device_accumulators == on_device
    assert plan.pooled == _bytes(stats.pooled, stats.pooled_lang) and plan.fixed + plan.pooled == sum(
        plan.stats.values()
    )
    assert plan.device_transient >= partials


def test_plan_of_an_8b_model():
    # Llama-3.1-8B: 32 layers x 14,336 neurons; 21 languages, 1,000 pooled sentences each
    plan = record_memory(21, 32, 14336, 21 * 1000)
    assert plan.stats["sums"] == 8 * 21 * 32 * 14336 == 77_070_336
    assert plan.stats["pooled"] == 4 * 21_000 * 458_752 == 38_535_168_000


def test_plan_refuses_bad_shapes():
    with pytest.raises(LangNeuronsError, match="n_layers must be a positive integer"):
        record_memory(2, 0, 8, 4)
    with pytest.raises(LangNeuronsError, match="pooled_sentences must be >= 0"):
        record_memory(2, 1, 8, -1)
    with pytest.raises(LangNeuronsError, match="d_model must be >= 0"):
        record_memory(2, 1, 8, 4, d_model=-1)
