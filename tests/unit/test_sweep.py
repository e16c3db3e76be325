"""lang_neurons.sweep on the tiny Llama: every cell on the dev split, the choice, the test
re-measurement with intervals, resumption from sweep_cells.jsonl, the time budget, bad input,
and the sweep figures."""

from __future__ import annotations

import json

import pytest

from lang_neurons import forcing, plots
from lang_neurons import sweep as sw
from lang_neurons.choices import RESIDUAL
from lang_neurons.config import Setting
from lang_neurons.errors import LangNeuronsError
from lang_neurons.study import DEV_SEED

FAST = dict(dev_samples=10, samples=10, max_new_tokens=4, resamples=50, batch_size=16)


@pytest.fixture(scope="module")
def tiny(tiny_study):
    return tiny_study.model, tiny_study.stats, tiny_study.held


@pytest.fixture(scope="module")
def full(tiny, tmp_path_factory):
    """A sweep over LAPE top rate x alpha x {add, residual DiffMean at layers 0 and 1}."""
    model, stats, held = tiny
    config = sw.SweepConfig(
        top_rates=(0.05, 0.1), alphas=(0.5, 2.0), methods=("add", RESIDUAL), residual_layers=(0, 1), controls=1, **FAST
    )
    out = tmp_path_factory.mktemp("sweep")
    return sw.sweep(model, stats, held, config, out=out, progress=False), config, out


def test_cells_choice_and_test_split(full, tiny):
    result, config, out = full
    model, stats, held = tiny
    keys = [{k: c[k] for k in ("method", "top_rate", "layer", "alpha") if k in c} for c in result.cells]
    assert (
        keys
        == config.grid(stats.n_layers)
        == [
            {"method": "add", "top_rate": 0.05, "alpha": 0.5},
            {"method": "add", "top_rate": 0.05, "alpha": 2.0},
            {"method": "add", "top_rate": 0.1, "alpha": 0.5},
            {"method": "add", "top_rate": 0.1, "alpha": 2.0},
            {"method": RESIDUAL, "layer": 0, "alpha": 0.5},
            {"method": RESIDUAL, "layer": 0, "alpha": 2.0},
            {"method": RESIDUAL, "layer": 1, "alpha": 0.5},
            {"method": RESIDUAL, "layer": 1, "alpha": 2.0},
        ]
    )
    for c in result.cells:  # two targets (de, ja) x 10 dev samples, every number with its interval
        assert c["split"] == "dev" and c["n"] == 20 and set(c["targets"]) == {"de", "ja"}
        assert c["score"] == pytest.approx(forcing.harmonic_mean(c["rate"], c["quality"]))
        assert c["rate_interval"]["n"] == 20 and c["rate_interval"]["rate"] == pytest.approx(c["rate"])
        assert c["forcing_interval"]["score"]["estimate"] == pytest.approx(c["score"])
        assert c["forcing_interval"]["quality"]["estimate"] == pytest.approx(c["quality"])
        assert (c["neurons"] > 0) == (c["method"] == "add")
    for m in ("add", RESIDUAL):  # the chosen cell: the first of the highest dev score
        mine = [c for c in result.cells if c["method"] == m]
        best = max(c["score"] for c in mine)
        assert result.chosen[m] is next(c for c in mine if c["score"] == best)
    assert result.chosen["overall"]["score"] == max(c["score"] for c in result.cells)
    # the test re-measurement: study.evaluate on the test split at the chosen cells
    test = result.test["add"]
    add = result.chosen["add"]
    assert list(result.test) == ["add"] and test["settings"]["alpha"] == add["alpha"]
    assert test["settings"]["methods"] == ["add", "add:random", RESIDUAL] and test["settings"]["samples"] == 10
    assert (test["residual"]["layer"], test["residual"]["alpha"]) == (
        result.chosen[RESIDUAL]["layer"],
        result.chosen[RESIDUAL]["alpha"],
    )
    for entry in test["targets"].values():
        assert "baseline_interval" in entry
        for row in entry["methods"].values():
            assert row["split"] == "test" and row["rate_interval"]["n"] == 10 and "forcing_interval" in row
    # dev and test prompts are disjoint
    split = forcing.forcing_prompts(held, source="en", tokenizer=model.tokenizer, seed=0)
    assert split.dev and split.test and not set(split.dev) & set(split.test)
    assert result.settings["prompts_split"] == split.to_dict()
    # the chosen setting, as chosen.json holds it
    s = result.setting()
    assert (s.method, s.top_rate, s.alpha, s.k) == ("add", add["top_rate"], add["alpha"], None)
    assert (s.residual_layer, s.residual_alpha) == (result.chosen[RESIDUAL]["layer"], result.chosen[RESIDUAL]["alpha"])
    assert Setting.from_dict(json.loads(json.dumps(s.to_dict()))) == s
    data = json.loads(json.dumps(result.to_dict()))
    assert data["setting"] == s.to_dict() and data["splits"]["dev"].startswith("every cell")
    assert "test split: add" in sw.format_sweep(result) and "chosen on the dev split" in sw.format_sweep(data)
    assert len((out / sw.CELLS_FILE).read_text().splitlines()) == len(result.cells) + 1  # the cells, then the test


def _counting(monkeypatch):
    """Count the sweep's own generate calls (the real function, wrapped)."""
    from lang_neurons.sweep import loop

    calls = []
    real = loop.generate

    def counted(*args, **kwargs):
        calls.append(kwargs.get("hooks"))
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "generate", counted)
    return calls


def test_a_resumed_sweep_generates_only_the_missing_cells(tiny, tmp_path, monkeypatch):
    model, stats, held = tiny
    calls = _counting(monkeypatch)
    part = sw.SweepConfig(top_rates=(0.1,), alphas=(1.0,), controls=0, residual=False, **FAST)
    first = sw.sweep(model, stats, held, part, out=tmp_path, progress=False)
    assert len(calls) == 1 + 2 and first.reused == 0  # the unsteered dev texts, then one cell x two targets
    calls.clear()
    whole = sw.SweepConfig(top_rates=(0.1, 0.2), alphas=(1.0, 2.0), controls=0, residual=False, **FAST)
    second = sw.sweep(model, stats, held, whole, out=tmp_path, progress=False)
    assert second.reused == 1 and len(second.cells) == 4
    assert len(calls) == 1 + 3 * 2  # the unsteered dev texts again, and only the three new cells
    assert second.cells[0] == first.cells[0]  # the finished cell is read back, not made again
    calls.clear()
    again = sw.sweep(model, stats, held, whole, out=tmp_path, progress=False)
    assert calls == [] and again.reused == 4 and again.cells == second.cells and again.test == second.test
    # a killed sweep's half-written last line is skipped
    path = tmp_path / sw.CELLS_FILE
    path.write_text(path.read_text() + '{"digest": "trunc')
    assert sw.sweep(model, stats, held, whole, out=tmp_path, progress=False).cells == second.cells
    # other settings that are not the grid: refused, unless forced
    other = sw.SweepConfig(top_rates=(0.1,), alphas=(1.0,), controls=0, residual=False, **{**FAST, "max_new_tokens": 5})
    with pytest.raises(LangNeuronsError, match="holds a sweep with other settings"):
        sw.sweep(model, stats, held, other, out=tmp_path, progress=False)
    calls.clear()
    forced = sw.sweep(model, stats, held, other, out=tmp_path, force=True, progress=False)
    assert forced.reused == 0 and len(calls) == 3 and len(path.read_text().splitlines()) == 2


def test_the_test_split_only_settings_keep_the_cells(tiny, tmp_path, monkeypatch):
    model, stats, held = tiny
    config = sw.SweepConfig(top_rates=(0.1,), alphas=(1.0,), controls=0, residual=False, **FAST)
    sw.sweep(model, stats, held, config, out=tmp_path, progress=False)
    calls = _counting(monkeypatch)
    more = sw.SweepConfig(top_rates=(0.1,), alphas=(1.0,), controls=0, residual=False, **{**FAST, "samples": 12})
    result = sw.sweep(model, stats, held, more, out=tmp_path, progress=False)
    assert calls == [] and result.reused == 1 and result.test["add"]["settings"]["samples"] == 12


def test_a_grid_over_the_time_budget_stops_before_the_first_cell(tiny, tmp_path, monkeypatch):
    model, stats, held = tiny
    calls = _counting(monkeypatch)
    config = sw.SweepConfig(top_rates=(0.1, 0.2), alphas=(1.0, 2.0), controls=0, residual=False, **FAST)
    with pytest.raises(LangNeuronsError, match=r"would take about .* min \(4 cells x 2 targets x 10 dev samples"):
        sw.sweep(model, stats, held, config, out=tmp_path, time_budget=0.01, progress=False)
    assert calls == [None]  # only the unsteered dev generation, which was timed
    assert not (tmp_path / sw.CELLS_FILE).exists()
    fits = sw.sweep(model, stats, held, config, time_budget=3600, progress=False)
    p = fits.projection
    assert (
        p["cells"] == 4 and p["grid_s"] == pytest.approx(p["seconds_per_sample"] * 4 * 2 * 10) and p["total_s"] < 3600
    )


def test_ap_ks_and_deterministic_dev_seeds(tiny):
    model, stats, held = tiny
    config = sw.SweepConfig(ks=(3, 6), alphas=(1.0,), controls=0, residual=False, **FAST)
    result = sw.sweep(model, stats, held, config, progress=False)
    assert [c["k"] for c in result.cells] == [3, 6] and result.setting().k == result.chosen["add"]["k"]
    assert result.test["add"]["settings"]["method"] == "ap"
    assert DEV_SEED > 1000  # the dev seeds are far from the test seeds
    again = sw.sweep(model, stats, held, config, progress=False)
    assert [c["score"] for c in again.cells] == [c["score"] for c in result.cells]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(alphas=()), r"the sweep grid is empty: alphas \(--alphas\) has no values"),
        (dict(top_rates=()), r"the sweep grid is empty: top_rates \(--top-rates\) has no values"),
        (dict(methods=()), r"the sweep grid is empty: methods \(--methods\) has no values"),
        (dict(alphas=(0.0, 1.0)), r"alphas \(--alphas\) must be positive finite numbers, got 0.0"),
        (dict(alphas=(-1.0,)), r"alphas \(--alphas\) must be positive finite numbers"),
        (dict(top_rates=(1.5,)), r"top_rates \(--top-rates\) must be numbers in \(0, 1\], got 1.5"),
        (dict(ks=(0,)), r"ks \(--ks\) must be whole numbers >= 1"),
        (dict(alphas=(1.0, 1.0)), r"alphas \(--alphas\) repeats a value"),
        (dict(top_rates=(0.1,), ks=(5,)), "not both"),
        (dict(methods=("teleport",)), "unknown method 'teleport'"),
        (dict(methods=(RESIDUAL,)), "methods has no neuron method"),
        (dict(residual_layers=(0,)), "residual_layers are swept only with the method residual_diffmean"),
        (dict(dev_samples=5), "intervals need at least 10 samples per cell, got 5"),
        (dict(samples=3), "intervals need at least 10 samples per cell, got 3"),
        (dict(deactivate="everyone"), "deactivate is whose neurons go off"),
    ],
)
def test_bad_config_is_one_line(kwargs, message):
    with pytest.raises(LangNeuronsError, match=message) as e:
        sw.SweepConfig(**kwargs)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            dict(methods=("add", RESIDUAL), residual_layers=(0, 99)),
            "residual layer 99 is out of range: the model has layers 0..1",
        ),
        (dict(ks=(200,)), "k 200 is too large"),
        (dict(targets=("fr",)), "'fr'"),
    ],
)
def test_bad_input_against_the_model_is_one_line(tiny, kwargs, message):
    model, stats, held = tiny
    with pytest.raises(LangNeuronsError, match=message):
        sw.sweep(model, stats, held, sw.SweepConfig(**{**FAST, **kwargs}), progress=False)


def test_sweep_figures_show_the_cells(full):
    result, _, _ = full
    heat = plots.sweep_heatmap(result)
    assert [t.name for t in heat.data] == ["add", RESIDUAL]
    add, res = heat.data
    assert list(add.x) == ["0.5", "2"] and list(add.y) == ["top_rate 0.05", "top_rate 0.1"]
    assert [list(r) for r in add.z] == [[c["score"] for c in result.cells[i : i + 2]] for i in (0, 2)]
    assert list(res.y) == ["layer 0", "layer 1"]
    starred = [(i, j) for i, row in enumerate(add.text) for j, t in enumerate(row) if t.endswith("★")]
    chosen = result.chosen["add"]
    assert starred == [([0.05, 0.1].index(chosen["top_rate"]), [0.5, 2.0].index(chosen["alpha"]))]
    assert heat.layout.coloraxis.cmin == 0 and heat.layout.coloraxis.cmax == 1
    assert plots.sweep_heatmap(json.loads(json.dumps(result.to_dict()))).data[0].z == add.z  # sweep.json works too
    lines = plots.sweep_lines(result)
    drawn = [t for t in lines.data if t.mode == "lines+markers"]
    names = {t.name for t in drawn}
    assert names == {"top_rate 0.05 add", "top_rate 0.1 add", f"layer 0 {RESIDUAL}", f"layer 1 {RESIDUAL}"}
    assert len(drawn) == 4 * 3  # rate, quality and score panels
    first = next(t for t in drawn if t.name == "top_rate 0.05 add" and t.yaxis == "y3")  # the score panel
    assert list(first.x) == [0.5, 2.0] and list(first.y) == [c["score"] for c in result.cells[:2]]
    bands = [t for t in lines.data if t.fill == "toself"]
    assert len(bands) == 12  # every line has its interval band
    with pytest.raises(LangNeuronsError, match="needs the sweep's cells"):
        plots.sweep_heatmap({"cells": []})


def test_generation_dtype_casts_the_cells_and_the_test_and_restores_the_model(tiny, monkeypatch):
    import torch

    model, stats, held = tiny
    seen = []
    real = sw.loop.generate

    def spy(m, *args, **kwargs):
        seen.append(next(m.parameters()).dtype)
        return real(m, *args, **kwargs)

    monkeypatch.setattr(sw.loop, "generate", spy)
    config = sw.SweepConfig(
        top_rates=(0.1,), alphas=(1.0,), controls=0, residual=False, generation_dtype="bfloat16", **FAST
    )
    result = sw.sweep(model, stats, held, config, progress=False)
    assert seen and set(seen) == {torch.bfloat16}  # the unsteered dev generation and every cell
    assert result.test["add"]["settings"]["generation_dtype"] == "bfloat16"
    assert next(model.parameters()).dtype == torch.float32
    assert config.digest(stats) != sw.SweepConfig(top_rates=(0.1,), alphas=(1.0,), **FAST).digest(stats)


def test_the_test_measures_the_residual_baseline_only_when_asked_or_swept():
    from lang_neurons import cli
    from lang_neurons.run_configs import sweep_config

    assert not sw.SweepConfig().test_residual  # run --setting measures it beside the chosen setting
    assert sw.SweepConfig(residual=True).test_residual
    assert sw.SweepConfig(methods=("add", RESIDUAL)).test_residual
    parser = cli.build_parser()
    assert not sweep_config(parser.parse_args(["sweep", "--out", "x"]), None).residual
    assert sweep_config(parser.parse_args(["sweep", "--out", "x", "--residual"]), None).residual


def test_a_saved_test_is_measured_again_when_its_residual_baseline_changes(tiny, tmp_path):
    model, stats, held = tiny
    grid = dict(top_rates=(0.1,), alphas=(1.0,), controls=0, **FAST)
    first = sw.sweep(model, stats, held, sw.SweepConfig(**grid), out=tmp_path, progress=False)
    assert "residual_diffmean" not in first.test["add"]["settings"]["methods"]
    again = sw.sweep(model, stats, held, sw.SweepConfig(**grid, residual=True), out=tmp_path, progress=False)
    assert again.reused == 1 and "residual_diffmean" in again.test["add"]["settings"]["methods"]
    same = sw.sweep(model, stats, held, sw.SweepConfig(**grid, residual=True), out=tmp_path, progress=False)
    assert same.test == again.test  # read back, not measured again
