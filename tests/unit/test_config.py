"""The typed configs (lang_neurons.config) and EvaluationResult: checked once, to_dict/from_dict
round trips, run.json compatibility, and the dict view of the results."""

from __future__ import annotations

import dataclasses

import pytest

import lang_neurons as ln
from lang_neurons import study
from lang_neurons.config import ApConfig, EvaluateConfig, LapeConfig, RecordConfig, RunConfig
from lang_neurons.study import EvaluationResult, MethodResult, TargetResult


@pytest.mark.parametrize("cls", [RecordConfig, LapeConfig, ApConfig, EvaluateConfig])
def test_round_trip_and_unknown_keys(cls):
    cfg = cls()
    assert cls.from_dict(cfg.to_dict()) == cfg
    assert cls.from_dict({}) == cfg  # a missing key takes its default
    with pytest.raises(ln.LangNeuronsError, match=f"{cls.__name__} has no setting 'nope'"):
        cls.from_dict({**cfg.to_dict(), "nope": 1})
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.seed = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: RecordConfig(pooling="median"), "unknown pooling 'median'"),
        (lambda: RecordConfig(padding_side="up"), "padding_side must be 'left' or 'right'"),
        (lambda: RecordConfig(batch_size=0), "batch_size and ap_sentences must be positive integers"),
        (lambda: RecordConfig(max_length=0), r"max_length \(--max-length\) must be a positive integer"),
        (lambda: RecordConfig(reduce_every=0), "reduce_every must be a positive integer"),
        (lambda: LapeConfig(top_rate=0), r"top_rate \(--top-rate\) must be in \(0, 1\]"),
        (lambda: LapeConfig(per_language=0), "per_language must be a whole number"),
        (lambda: ApConfig(share=0.6), r"--ap-share must be in \(0, 0.5\]"),
        (lambda: ApConfig(top_k=1.5), "top_k must be a whole number"),
        (lambda: EvaluateConfig(samples=9), "at least 10 samples per cell, got 9"),
        (lambda: EvaluateConfig(methods=("teleport",)), "unknown method 'teleport'"),
        (lambda: EvaluateConfig(deactivate="all"), "deactivate is whose neurons"),
        (lambda: EvaluateConfig(prompts="none"), "unknown prompts 'none'"),
        (lambda: EvaluateConfig(controls=-1), "controls is the number of random-control seeds"),
        (lambda: EvaluateConfig(prompts="bos", do_sample=False), "greedy decoding from BOS"),
        (lambda: RunConfig("m", "c", ("en", "de"), held_out=1.5), r"--held-out must be in \[0, 1\)"),
    ],
)
def test_bad_settings_get_one_clear_error(make, message):
    with pytest.raises(ln.LangNeuronsError, match=message):
        make()


def test_run_json_order_and_older_files():
    run = RunConfig("gemma-3-270m", "default", ["en", "de"], record=RecordConfig(max_length=256))
    assert list(run.to_dict()) == [
        *("model", "corpus", "langs", "site", "pooling", "max_length", "max_per_lang", "ap_sentences"),
        *("held_out", "seed", "parallel", "skip_bos"),
    ]
    old = {k: v for k, v in run.to_dict().items() if k not in ("parallel", "skip_bos")}  # before they existed
    assert RunConfig.from_dict(old).to_dict() == run.to_dict()
    assert RunConfig.from_dict(run.to_dict()).record == RecordConfig(max_length=256)
    with pytest.raises(ln.LangNeuronsError, match="run settings have no 'batch'"):
        RunConfig.from_dict({**run.to_dict(), "batch": 3})


def test_selection_params_are_the_neuron_sets():
    assert LapeConfig().params() == {"top_rate": 0.01, "filter_rate": 0.95, "activation_bar_ratio": 0.95}
    assert LapeConfig(per_language=5).params() == {"per_language": 5, "filter_rate": 0.95}
    assert ApConfig().params() == {"share": 0.0045, "requested": [None, None]}
    assert ApConfig(3, 4).params() == {"top_k": 3, "bottom_k": 4}
    with pytest.raises(ln.LangNeuronsError, match="--top-k 9 but the model has 8 neurons at site 'act'"):
        ApConfig(9, 1).check(8, "act")


def test_record_and_evaluate_take_config_or_keywords_not_both(tiny_study):
    model, neurons, stats, held = tiny_study.model, tiny_study.lape, tiny_study.stats, tiny_study.held
    texts = {lang: held[lang][:2] for lang in held.langs}
    a = ln.record(model, texts, batch_size=3, progress=False)
    b = ln.record(model, texts, config=RecordConfig(batch_size=3), progress=False)
    assert a.sums.equal(b.sums) and a.pooled.equal(b.pooled)
    with pytest.raises(ln.LangNeuronsError, match="either as config= or as keywords"):
        ln.record(model, texts, batch_size=3, config=RecordConfig(), progress=False)
    cfg = EvaluateConfig(methods=("add",), samples=10, max_new_tokens=3, controls=0, residual=False, loss_texts=0)
    res = study.evaluate(model, neurons, stats, held, config=cfg, progress=False)
    same = study.evaluate(model, neurons, stats, held, **cfg.to_dict(), progress=False)
    assert isinstance(res, EvaluationResult) and res == same and res.to_dict() == same.to_dict()
    with pytest.raises(ln.LangNeuronsError, match="either as config= or as keywords"):
        study.evaluate(model, neurons, stats, held, config=cfg, samples=20, progress=False)
    # typed rows, the dict view, and the round trip through metrics.json's dict
    row = res.targets["de"].methods["add"]
    assert isinstance(row, MethodResult) and isinstance(res.targets["de"], TargetResult)
    assert res["targets"]["de"]["methods"]["add"]["rate"] == row.rate and "residual" not in res
    assert EvaluationResult.from_dict({**res.to_dict(), "kind": "metrics"}).to_dict() == res.to_dict()
    assert list(res.to_dict()["targets"]["de"])[:4] == [
        "baseline_rate",
        "baseline_fluency_loss",
        "baseline_forcing_score",
        "methods",
    ]
