"""Stage 7: steer the output language by intervening on language-specific neurons.

Every factory returns a :class:`Steering`: a list of ``(hook_name, fn)`` pairs, usable as

    model.run_with_hooks(tokens, fwd_hooks=hooks)
    with model.hooks(fwd_hooks=hooks):          # or: with ln.steer(model, hooks):
        model.generate(...)

Each intervention is an affine map of the selected neurons, ``x -> a * x + b``: pinning to a
value (``a = 0``), adding (``a = 1``) and scaling (``b = 0``). Steerings compose with ``+``
(the right one is applied after the left one), so "deactivate the source and add the target"
is one set of hooks that edits each layer once.

Interventions act on the quantity the neurons were found on (the neuron set's site). For the
default site ``act`` of a gated MLP that is ``act_fn(gate)``; since ``hook_post = act_fn(gate) *
up``, the edit is written at ``hook_post`` as ``(a * act_fn(gate) + b) * up`` for the selected
neurons, reading ``gate`` at ``hook_pre`` and ``up`` at ``hook_pre_linear`` in the same pass.

The residual-stream baseline is not a neuron intervention: :func:`residual_diffmean` returns a
:class:`ResidualSteering`, the same kind of ``(hook_name, fn)`` list, that adds one vector per
layer at ``blocks.<l>.hook_resid_post`` (CLaS-Bench's DiffMean).

Every hook name comes from the site (:mod:`lang_neurons.sites`): a :class:`Steering` asks the
neuron set's :class:`~lang_neurons.sites.Site` (rebuilt from its model fingerprint) for the
write hooks of each layer's edit, a :class:`ResidualSteering` asks
:class:`~lang_neurons.sites.ResidualSite`.

Modules: ``neurons`` (:class:`Steering` and its factories), ``residual`` (the residual-stream
baseline) and ``context`` (:func:`steer`); :class:`PositionTracker` and :func:`prompt_length`
come from :mod:`lang_neurons.sites.positions`.
"""

from lang_neurons.choices import STEERING_METHODS as METHODS
from lang_neurons.sites.positions import POSITIONS, Positions, PositionTracker, prompt_length
from lang_neurons.steering.context import steer
from lang_neurons.steering.neurons import (
    Steering,
    add,
    deactivate,
    diffmean,
    language_arithmetic,
    override,
    replace,
    scale,
)
from lang_neurons.steering.residual import ResidualSteering, residual_diffmean, residual_direction, stack_rows

__all__ = [
    "METHODS",
    "POSITIONS",
    "PositionTracker",
    "Positions",
    "ResidualSteering",
    "Steering",
    "add",
    "deactivate",
    "diffmean",
    "language_arithmetic",
    "override",
    "prompt_length",
    "replace",
    "residual_diffmean",
    "residual_direction",
    "scale",
    "stack_rows",
    "steer",
]
