"""Progress that moves and a cost said before it is paid: the bars advance with every forward
pass (a decoding step, a scoring batch) and name their row or cell; evaluate prints its projected
time before any steered generation and stops there when a time budget is exceeded."""

from __future__ import annotations

import contextlib

import pytest

import lang_neurons as ln
from lang_neurons import study
from lang_neurons.generation import PassBar, planned_passes
from lang_neurons.study import projection


@pytest.fixture(scope="module")
def tiny(tiny_study):
    return tiny_study.model, tiny_study.lape, tiny_study.stats, tiny_study.held


def _updates(monkeypatch):
    """Every ``update`` of every progress bar, as (description, postfix, n after it)."""
    seen = []
    real = PassBar.__init__

    def init(self, *args, **kwargs):
        real(self, *args, **kwargs)
        bar, update = self.bar, self.bar.update
        if bar.disable:  # the inner bars of generate/text_losses called with progress=False
            return

        def counted(k=1):
            update(k)
            seen.append((bar.desc, bar.postfix, k, bar.n, id(bar)))

        bar.update = counted

    monkeypatch.setattr(PassBar, "__init__", init)
    return seen


def test_generate_moves_once_per_decoding_step(tiny, monkeypatch):
    model, *_ = tiny
    seen = _updates(monkeypatch)
    ln.generate(model, ["Hello there", "Good morning"] * 3, max_new_tokens=5, batch_size=3, do_sample=False)
    steps = [s for s in seen if s[0] == "generating"]
    assert [s[2] for s in steps].count(1) >= 2 * (5 - 1)  # every step but each batch's last moved it by one
    assert steps[-1][3] == 2 * 5  # and it ends at its total
    assert {postfix for _, postfix, *_ in steps} == {"batch 1/2", "batch 2/2"}


def _evaluate(tiny, **kwargs):
    model, neurons, stats, held = tiny
    args = dict(methods=["add"], samples=10, max_new_tokens=4, translation_items=3, loss_texts=4, resamples=50)
    return study.evaluate(model, neurons, stats, held, **{**args, "dev_samples": 2, **kwargs})


def test_evaluate_bars_move_per_pass_and_name_their_row(tiny, monkeypatch, capsys):
    seen = _updates(monkeypatch)
    _evaluate(tiny, progress=True)
    by_stage: dict[str, list] = {}
    by_bar: dict[int, list] = {}
    for desc, postfix, k, n, bar in seen:
        by_stage.setdefault(desc, []).append((postfix, k, n))
        by_bar.setdefault(bar, []).append(n)
    assert set(by_stage) == {"baseline", "residual dev grid", "steering", "loss matrix"}
    steering = by_stage["steering"]
    labels = {postfix for postfix, *_ in steering}
    assert {"de add", "de add:random", "de residual_diffmean", "de translation", "ja add"} <= labels
    # many small moves, not one per row: a row of 10 samples x 4 tokens in batches of 16 is 4 steps + 1 scoring pass
    assert sum(1 for _, k, _ in steering if k == 1) > 4 * len(labels) / 2
    for updates in by_bar.values():
        assert all(b >= a for a, b in zip(updates, updates[1:]))  # never backwards
    assert {"unsteered", "layer 1 alpha 1", "layer 1 alpha 2"} == {p for p, *_ in by_stage["residual dev grid"]}
    assert {"unablated", "de neurons off", "en neurons off", "ja neurons off"} == {
        p for p, *_ in by_stage["loss matrix"]
    }


def test_projection_is_printed_before_any_steered_generation(tiny, monkeypatch, capsys):
    err: list[str] = []
    first_steered = []

    def spy(real):
        def wrapped(*args, **kwargs):
            err.append(capsys.readouterr().err)
            first_steered.append("projected on this machine: " in "".join(err))
            return real(*args, **kwargs)

        return wrapped

    monkeypatch.setattr(study.loop, "choose_residual", spy(study.loop.choose_residual))
    monkeypatch.setattr(study.loop, "pooled_samples", spy(study.loop.pooled_samples))
    _evaluate(tiny, progress=True)
    assert first_steered and all(first_steered)
    line = next(x for x in "".join(err).splitlines() if "projected on this machine" in x)
    assert "residual dev grid" in line and "steering" in line and "loss matrix" in line and "min more" in line


def test_a_time_budget_it_exceeds_stops_before_any_steered_generation(tiny, monkeypatch):
    monkeypatch.setattr(study.loop, "pooled_samples", lambda *a, **k: pytest.fail("generated after the budget check"))
    monkeypatch.setattr(study.loop, "choose_residual", lambda *a, **k: pytest.fail("dev grid after the budget check"))
    with pytest.raises(ln.LangNeuronsError, match=r"the evaluation would take about .* over the time budget's") as e:
        _evaluate(tiny, progress=False, time_budget=1e-6)
    assert "\n" not in str(e.value) and "--time-budget" in str(e.value)


def test_plan_counts_the_passes_evaluate_runs(tiny, monkeypatch):
    """The planned passes of the dev grid and the steering rows equal the forward passes run (within
    the scoring batches' length grouping), so a stage's ETA is its own."""
    model, *_ = tiny
    counts = {"residual dev grid": 0, "steering": 0}
    real_step = PassBar.step

    @contextlib.contextmanager
    def step(self, label, passes):
        def count(*_):
            counts[self.name] += 1

        handle = model.register_forward_pre_hook(count) if self.name in counts else None
        try:
            with real_step(self, label, passes):
                yield
        finally:
            if handle is not None:
                handle.remove()

    monkeypatch.setattr(PassBar, "step", step)
    planned = {}
    real_plan = study.loop._plan
    monkeypatch.setattr(study.loop, "_plan", lambda *a: planned.update(real_plan(*a)) or real_plan(*a))
    _evaluate(tiny, controls=3, progress=False)
    for stage, ran in counts.items():
        assert planned[stage] - 3 <= ran <= planned[stage] + 3, (stage, planned[stage], ran)


def test_planned_passes():
    assert planned_passes(100, 50, 32) == 2 * 32 + 7
    assert planned_passes(100, 50, 32, score_batch=0) == 64
    assert projection.row_passes(3, 10, 16, 4) == 3 * 4 + 1  # 4 + 3 + 3 samples, one batch each, scored together
    assert projection.dev_grid_passes(6, 5, 20, 50, 32) == (32 + 2) + 6 * (2 * 32 + 7)


def test_projection_text_and_budget():
    p = projection.Projection({"residual dev grid": 120.0, "steering": 600.0, "loss matrix": 0.0})
    text = str(p)
    assert text.startswith(
        "projected on this machine: residual dev grid 2.0 min, steering 10.0 min; about 12.0 min more"
    )
    p.check(None, "x")
    p.check(721, "x")
    with pytest.raises(ln.LangNeuronsError, match=r"^the run would take about 12.0 min more .* budget's 1.0 min left"):
        p.check(60, "the run")
