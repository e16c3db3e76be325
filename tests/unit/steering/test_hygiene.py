"""Hook hygiene: after any steering call, normal or interrupted (exception, KeyboardInterrupt
during generation), the model holds none of our hooks and gives exactly its unsteered logits and
generations; hooks the user added before (permanent ``add_hook`` or an enclosing
``model.hooks(...)``) are kept and still fire. On a gated (Llama) and a GELU (GPT-2) tiny model."""

from __future__ import annotations

import pytest
import torch
from tiny_models import SENTENCES

import lang_neurons as ln
from lang_neurons import steering as st
from lang_neurons import study
from lang_neurons.corpora import LanguageCorpus

LANGS = ("en", "de", "ja")
PROMPTS = [SENTENCES["en"][0], SENTENCES["de"][1]]
_CACHE: dict[str, tuple] = {}
_BASE: dict[int, dict] = {}


@pytest.fixture(params=["llama", "gpt2"])
def setup(request):
    """(model, neuron set, stats, unsteered logits, unsteered greedy generations), built once per arch."""
    arch = request.param
    if arch not in _CACHE:
        model = ln.load_model(request.getfixturevalue(f"{arch}_dir"), device="cpu")
        stats = ln.record(model, {lang: SENTENCES[lang][:4] for lang in LANGS}, progress=False)
        g = torch.Generator().manual_seed(3)
        mask = torch.rand(len(LANGS), stats.n_layers, stats.width, generator=g) < 0.2
        neurons = ln.NeuronSet(list(LANGS), mask, "act", "test", model=stats.model)
        _CACHE[arch] = (model, neurons, stats, _logits(model), _greedy(model))
        _BASE[id(model)] = _hook_state(model)  # the bridge's own internal hooks
    model = _CACHE[arch][0]
    before = _hook_state(model)
    yield _CACHE[arch]
    model.reset_hooks(including_permanent=True)
    assert _hook_state(model) == before


def _logits(model) -> torch.Tensor:
    with torch.inference_mode():
        return model(model.to_tokens(PROMPTS[0]))


def _greedy(model) -> list[str]:
    return ln.generate(model, PROMPTS, max_new_tokens=6, do_sample=False, progress=False)


def _hook_state(model) -> dict[str, tuple[int, ...]]:
    """Every hook the model holds: TransformerLens handles and the torch hooks of every module."""
    state = {}
    for name, module in model.named_modules():
        counts = (len(module._forward_hooks), len(module._forward_pre_hooks), len(module._backward_hooks))
        counts += (len(getattr(module, "fwd_hooks", ())), len(getattr(module, "bwd_hooks", ())))
        if any(counts):
            state[name] = counts
    return state


def _assert_clean(model, logits, greedy, user_state=None) -> None:
    """No hook of ours is left (only the bridge's own, or ``user_state``) and outputs are exactly
    the unsteered ones."""
    assert _hook_state(model) == (user_state or _BASE[id(model)])
    torch.testing.assert_close(_logits(model), logits, rtol=0, atol=0)
    assert _greedy(model) == greedy


class Interrupter:
    """A forward hook that raises ``exc`` on its ``after``-th call (e.g. the 3rd generated token)."""

    def __init__(self, after: int, exc: BaseException = KeyboardInterrupt()):
        self.after, self.calls, self.exc = after, 0, exc

    def __call__(self, x, hook=None):
        self.calls += 1
        if self.calls >= self.after:
            raise self.exc


class Counter:
    def __init__(self):
        self.calls = 0

    def __call__(self, x, hook=None):
        self.calls += 1


def _steering(neurons, stats, target="de") -> st.Steering:
    return st.language_arithmetic(neurons, stats, target=target, method="add", alpha=4.0)


def test_steering_changes_outputs(setup):
    """Sanity: the steering used below does change logits, so "unchanged after" means something."""
    model, neurons, stats, logits, greedy = setup
    with torch.inference_mode():
        steered = model.run_with_hooks(model.to_tokens(PROMPTS[0]), fwd_hooks=_steering(neurons, stats))
    assert not torch.allclose(steered, logits)


@pytest.mark.parametrize("ending", ["normal", "exception", "keyboard_interrupt"])
def test_steer_context_manager(setup, ending):
    model, neurons, stats, logits, greedy = setup
    steering = _steering(neurons, stats)
    stop = Interrupter(3, RuntimeError("boom") if ending == "exception" else KeyboardInterrupt())
    hooks = [("blocks.0.hook_resid_pre", stop)] if ending != "normal" else []
    try:
        with ln.steer(model, steering, hooks):
            assert _hook_state(model) != _BASE[id(model)]  # ours are on
            ln.generate(model, PROMPTS, max_new_tokens=8, do_sample=False, progress=False)
    except (RuntimeError, KeyboardInterrupt) as e:
        assert ending != "normal" and stop.calls == 3, e  # interrupted at the 3rd forward step
    else:
        assert ending == "normal"
    _assert_clean(model, logits, greedy)


def test_steering_reused_after_interrupt_in_mid_layer(setup):
    """Interrupted between reading the gate and writing hook_post (gated site ``act``): the same
    Steering object later gives exactly what a fresh one gives."""
    model, neurons, stats, logits, greedy = setup
    steering = _steering(neurons, stats)
    name = (
        "blocks.1.mlp.hook_pre_linear" if "blocks.1.mlp.hook_pre_linear" in model.hook_dict else "blocks.1.mlp.hook_pre"
    )
    tokens = model.to_tokens(PROMPTS[0])
    with torch.inference_mode():
        with pytest.raises(KeyboardInterrupt):
            model.run_with_hooks(tokens, fwd_hooks=list(steering) + [(name, Interrupter(1))])
        again = model.run_with_hooks(model.to_tokens(PROMPTS[1]), fwd_hooks=steering)
        fresh = model.run_with_hooks(model.to_tokens(PROMPTS[1]), fwd_hooks=_steering(neurons, stats))
    torch.testing.assert_close(again, fresh, rtol=0, atol=0)
    _assert_clean(model, logits, greedy)


@pytest.mark.parametrize("ending", ["exception", "keyboard_interrupt"])
def test_generate_with_hooks(setup, ending):
    model, neurons, stats, logits, greedy = setup
    exc = RuntimeError("boom") if ending == "exception" else KeyboardInterrupt()
    stop = Interrupter(4, exc)
    with pytest.raises(type(exc)):
        ln.generate(
            model,
            n=3,
            hooks=list(_steering(neurons, stats)) + [("blocks.0.hook_resid_pre", stop)],
            max_new_tokens=10,
            progress=False,
        )
    assert stop.calls == 4
    _assert_clean(model, logits, greedy)
    # A steering whose hook raises itself mid-generation (neuron index out of range) cleans up too.
    wide = ln.NeuronSet(
        ["de"], torch.ones(1, neurons.n_layers, 10_000, dtype=torch.bool), "post", "test", model=neurons.model
    )
    with pytest.raises(ln.LangNeuronsError, match="out of range"):
        ln.generate(model, PROMPTS, hooks=st.deactivate(wide, "de"), max_new_tokens=4, progress=False)
    _assert_clean(model, logits, greedy)


def test_steering_calls_keep_user_hooks(setup):
    """Permanent hooks and hooks of an enclosing ``model.hooks(...)`` survive every kind of exit
    of our calls, still fire, and outputs are unsteered afterwards."""
    model, neurons, stats, logits, greedy = setup
    permanent, temporary = Counter(), Counter()
    model.hook_dict["blocks.0.mlp.hook_post"].add_hook(permanent, is_permanent=True)
    with model.hooks(fwd_hooks=[("blocks.1.mlp.hook_post", temporary)]):
        user_state = _hook_state(model)
        steering = _steering(neurons, stats)
        with ln.steer(model, steering):
            ln.generate(model, PROMPTS, max_new_tokens=3, progress=False)
        with pytest.raises(KeyboardInterrupt):
            with ln.steer(model, steering, [("blocks.0.hook_resid_pre", Interrupter(2))]):
                ln.generate(model, PROMPTS, max_new_tokens=8, progress=False)
        with pytest.raises(KeyboardInterrupt):
            ln.language_loss(
                model,
                {lang: SENTENCES[lang][4:6] for lang in LANGS},
                hooks=list(steering) + [("blocks.0.hook_resid_pre", Interrupter(2))],
                progress=False,
            )
        with torch.inference_mode():
            model.run_with_hooks(model.to_tokens(PROMPTS[1]), fwd_hooks=steering)
        seen = permanent.calls, temporary.calls
        _assert_clean(model, logits, greedy, user_state)
        assert permanent.calls > seen[0] and temporary.calls > seen[1]  # still there and still firing
    assert temporary.calls and len(model.hook_dict["blocks.1.mlp.hook_post"].fwd_hooks) == 0  # TL removed its own
    assert len(model.hook_dict["blocks.0.mlp.hook_post"].fwd_hooks) == 1
    model.reset_hooks(including_permanent=True)
    _assert_clean(model, logits, greedy)


@pytest.mark.parametrize("loop", ["loss_matrix", "evaluate"])
def test_study_loops_interrupted(setup, loop, lid):
    """KeyboardInterrupt from a user's hook inside ``study``'s loops (during the first steered pass)."""
    model, neurons, stats, logits, greedy = setup
    held = LanguageCorpus({lang: SENTENCES[lang][4:7] for lang in LANGS}, name="held")
    counter = Counter()
    model.hook_dict["blocks.0.hook_resid_pre"].add_hook(counter, is_permanent=True)
    # Count the forward steps of one unsteered pass, then interrupt one step into the steered ones.
    if loop == "loss_matrix":
        study.loss_matrix(model, neurons.subset(["de"]), held, progress=False)
        run = lambda: study.loss_matrix(model, neurons, held, progress=False)  # noqa: E731
    else:
        ln.generate(model, n=2, max_new_tokens=3, progress=False)

        def run():
            return study.evaluate(
                model,
                neurons,
                stats,
                held,
                targets=["de"],
                methods=["add"],
                samples=2,
                max_new_tokens=3,
                translation_items=0,
                loss_texts=0,
                lid=lid,
                intervals=False,
                progress=False,
            )

    per_pass = counter.calls // 2 if loop == "loss_matrix" else counter.calls
    hook_point = model.hook_dict["blocks.0.hook_resid_pre"]
    stop = Interrupter(per_pass + 2)
    handle = hook_point.add_hook(stop, is_permanent=True)
    user_state = _hook_state(model)
    with pytest.raises(KeyboardInterrupt):
        run()
    assert stop.calls == per_pass + 2
    assert _hook_state(model) == user_state  # both user hooks kept, none of ours left
    handle.hook.remove()
    hook_point.fwd_hooks.remove(handle)
    calls = counter.calls
    _assert_clean(model, logits, greedy, {k: v for k, v in _hook_state(model).items()})
    assert counter.calls > calls and len(hook_point.fwd_hooks) == 1


@pytest.fixture(scope="module")
def lid():
    return ln.LanguageIdentifier()


def test_interrupt_from_progress_bar(setup, monkeypatch):
    """Ctrl-C arriving in the progress bar's update at the first decoding step, inside the model's
    forward pass (a real tqdm, subclassed to raise there): hooks removed, the bar's counting hook
    too, bar closed, outputs unsteered."""
    import lang_neurons.generation as generation

    model, neurons, stats, logits, greedy = setup
    bars = []

    class InterruptedBar(generation.tqdm):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            bars.append(self)

        def update(self, n=1):
            super().update(n)
            raise KeyboardInterrupt

    monkeypatch.setattr(generation, "tqdm", InterruptedBar)
    with pytest.raises(KeyboardInterrupt):
        ln.generate(model, n=4, batch_size=2, hooks=_steering(neurons, stats), max_new_tokens=3, progress=True)
    assert len(bars) == 1 and bars[0].n == 1  # interrupted at the first forward pass
    assert not model.embed._forward_pre_hooks and not model._forward_pre_hooks  # the pass counter is gone
    assert bars[0] not in generation.tqdm._instances  # closed (an open bar stays registered)
    monkeypatch.undo()
    _assert_clean(model, logits, greedy)


def test_steering_needs_a_model_fingerprint(setup):
    """A hand-built neuron set without a fingerprint cannot steer: the gated ``act`` semantics and
    the model check both depend on it, and would otherwise fail silently."""
    model, neurons, stats, logits, greedy = setup
    bare = ln.NeuronSet(neurons.langs, neurons.mask, "act", "test")
    with pytest.raises(ln.LangNeuronsError, match="no model fingerprint"):
        st.deactivate(bare, "de")
    _assert_clean(model, logits, greedy)
