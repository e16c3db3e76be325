"""study.evaluate puts each neuron method beside its random control and the residual-stream
DiffMean baseline (layer and alpha chosen on a dev split), every row with its interval."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import lang_neurons as ln
from lang_neurons import cli, forcing, study


@pytest.fixture(scope="module")
def tiny(tiny_study):
    return tiny_study.model, tiny_study.lape, tiny_study.stats, tiny_study.held


def _evaluate(tiny, **kwargs):
    model, neurons, stats, held = tiny
    args = dict(
        methods=["add"],
        samples=10,
        max_new_tokens=4,
        translation_items=3,
        loss_texts=0,
        resamples=50,
        seed=0,
        dev_samples=2,
        progress=False,
    )
    return study.evaluate(model, neurons, stats, held, **{**args, **kwargs})


def test_method_control_residual_and_baseline_rows(tiny):
    model, neurons, stats, _ = tiny
    res = _evaluate(tiny)
    assert res["settings"]["methods"] == ["add", "add:random", "residual_diffmean"]
    assert res["settings"]["neuron_methods"] == ["add"] and res["settings"]["controls"] == 3
    chosen = res["residual"]
    assert chosen["split"] == "dev" and chosen["layer"] in study.residual_candidates(stats.n_layers)
    assert chosen["alpha"] in (1.0, 2.0) and len(chosen["grid"]) == len(study.residual_candidates(stats.n_layers)) * 2
    best = max(g["score"] for g in chosen["grid"])  # chosen by the forcing score, not by the rate alone
    assert chosen["criterion"] == "forcing score"
    assert (
        next(g for g in chosen["grid"] if (g["layer"], g["alpha"]) == (chosen["layer"], chosen["alpha"]))["score"]
        == best
    )
    assert all(g["score"] == pytest.approx(forcing.harmonic_mean(g["rate"], g["quality"])) for g in chosen["grid"])
    for entry in res["targets"].values():
        rows = entry["methods"]
        # per language and layer the control has the method's counts (tests/unit/test_controls.py); the union it
        # touches differs only by how the languages' sets overlap (by chance in the control)
        assert rows["add:random"]["neurons"] > 0 and rows["add"]["neurons"] > 0
        assert rows["residual_diffmean"]["neurons"] == 0
        assert (rows["residual_diffmean"]["layer"], rows["residual_diffmean"]["alpha"]) == (
            chosen["layer"],
            chosen["alpha"],
        )
        for row in rows.values():
            assert (
                row["rate_interval"]["n"] == 10
                and row["rate_interval"]["low"] <= row["rate"] <= row["rate_interval"]["high"]
            )
            assert "translation_interval" in row
    assert set(res["summary_interval"]) == {"add", "add:random", "residual_diffmean", "baseline"}
    assert res["summary_interval"]["add:random"]["n"] == 10 * len(res["targets"])
    table = study.format_table(res)
    assert "add:random" in table and "residual_diffmean" in table


def test_controls_and_residual_can_be_left_out(tiny):
    res = _evaluate(tiny, controls=0, residual=False)
    assert res["settings"]["methods"] == ["add"] and "residual" not in res


def test_control_samples_pool_every_seed(tiny, monkeypatch):
    model, neurons, stats, _ = tiny
    seen = []
    real = study.pooled_samples

    def spy(model, hook_sets, prompts, samples, gen):
        seen.append((len(hook_sets), samples))
        return real(model, hook_sets, prompts, samples, gen)

    monkeypatch.setattr(study.loop, "pooled_samples", spy)  # where evaluate looks it up
    _evaluate(tiny, controls=4, residual=False, translation_items=0)
    assert (4, 10) in seen and (1, 10) in seen  # the control's 10 samples come from 4 seeds


def test_residual_needs_residual_sums(tiny):
    model, neurons, stats, held = tiny
    old = dataclasses.replace(stats, resid_sums=None)
    with pytest.raises(ln.LangNeuronsError, match="no residual-stream sums.*--no-residual"):
        study.evaluate(model, neurons, old, held, methods=["add"], samples=10, progress=False)
    with pytest.raises(ln.LangNeuronsError, match="controls is the number of random-control seeds"):
        study.evaluate(model, neurons, stats, held, methods=["add"], samples=10, controls=-1, progress=False)


def test_cli_rejects_bad_residual_layers(tmp_path, capsys):
    code = cli.main(["evaluate", "--neurons", str(tmp_path), "--out", str(tmp_path / "e"), "--residual-layers", "a,b"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error" in err


def test_generation_dtype_runs_generation_in_it_and_leaves_the_loss_matrix(tiny, monkeypatch):
    model, *_ = tiny
    seen = []
    real = study.loop.generate

    def spy(m, *args, **kwargs):
        seen.append(next(m.parameters()).dtype)
        return real(m, *args, **kwargs)

    monkeypatch.setattr(study.loop, "generate", spy)
    low = _evaluate(tiny, generation_dtype="bfloat16", loss_texts=4, residual=False, translation_items=0)
    assert seen and set(seen) == {torch.bfloat16}
    assert low["settings"]["generation_dtype"] == "bfloat16"
    assert next(model.parameters()).dtype == torch.float32  # restored
    full = _evaluate(tiny, loss_texts=4, residual=False, translation_items=0)
    assert full["settings"]["generation_dtype"] is None
    assert low["loss_matrix"] == full["loss_matrix"]  # computed in the model's own dtype either way
    with pytest.raises(ln.LangNeuronsError, match="generation_dtype"):
        _evaluate(tiny, generation_dtype="int8")


def test_evaluate_records_what_auto_decided(tiny, monkeypatch):
    from lang_neurons import hardware

    monkeypatch.setattr(hardware, "native_bfloat16", lambda device: (False, "CPU without AVX512-BF16 or AMX"))
    res = _evaluate(tiny, generation_dtype="auto", residual=False, translation_items=0, controls=0)
    assert res["settings"]["generation_dtype"] == "float32"
    assert res["settings"]["generation_dtype_reason"] == "auto: CPU without AVX512-BF16 or AMX"
    monkeypatch.setattr(hardware, "native_bfloat16", lambda device: (True, "CPU with avx512_bf16"))
    res = _evaluate(tiny, generation_dtype="auto", residual=False, translation_items=0, controls=0)
    assert res["settings"]["generation_dtype"] == "bfloat16"
