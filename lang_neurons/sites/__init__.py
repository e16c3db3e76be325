"""Stage 2: what a "neuron" is, at each hook site of a model.

A site is the one place that knows hook names. It names the hook points to read at each layer
(:meth:`Site.read_hooks`), says how to turn what they hold into one ``[batch, pos, width]``
activation tensor (:meth:`Site.activation`), how many neurons a layer has, and which hooks an
intervention writes (:meth:`Site.write_hooks`). Recording and steering both go through it, so a
neuron set found at a site is steered at that same site, with the same activation function.

| site      | neurons per layer | what it is |
|-----------|-------------------|------------|
| `act`     | d_mlp   | the activation LAPE defines: `act_fn(gate)` for gated MLPs (read from `mlp.hook_pre`), `mlp.hook_post` for GELU MLPs |
| `post`    | d_mlp   | `mlp.hook_post`, the input of the down projection (`act_fn(gate) * up` for gated MLPs) |
| `pre`     | d_mlp   | `mlp.hook_pre`, the pre-activation (the gate projection output for gated MLPs) |
| `gate_up` | 2 d_mlp | gated MLPs only: gate outputs (index < d_mlp) then up outputs |
| `linear`  | sum of the block's Linear output widths | every Linear output of every block (q, k, v, o, gate, up, down), the neurons of the AP paper |

The first four are :class:`Site` (built from a model with :func:`resolve_site`, or from the model
fingerprint a neuron set carries with :meth:`Site.from_fingerprint`). The residual stream,
``blocks.<l>.hook_resid_post`` (``d_model`` wide), is :class:`ResidualSite`; a new kind of site
is one more class with ``read_hooks``, ``activation`` and ``write_hooks``, like
:class:`LinearSite` (site ``linear``, which :func:`resolve_site` and :meth:`Site.from_fingerprint`
also build), whose unit table maps each neuron to its module and column.

Modules: ``mlp`` (the MLP sites, the gatedness test, the activation function), ``linear``, ``residual``,
``edits`` (the hook functions write hooks are made of) and ``positions`` (which token
positions they act on).
"""

from lang_neurons.choices import SITES
from lang_neurons.sites.linear import UNIT_ORDER, LinearSite, layer_width, site_fingerprint, site_units, width_at
from lang_neurons.sites.mlp import (
    Site,
    act_fn_name,
    activation_function,
    is_gated,
    mlp_act_fn,
    resolve_site,
    site_width,
)
from lang_neurons.sites.positions import POSITIONS, Positions, PositionTracker, check_positions, prompt_length
from lang_neurons.sites.residual import ResidualSite

__all__ = [
    "POSITIONS",
    "UNIT_ORDER",
    "LinearSite",
    "SITES",
    "PositionTracker",
    "Positions",
    "ResidualSite",
    "Site",
    "act_fn_name",
    "activation_function",
    "check_positions",
    "is_gated",
    "layer_width",
    "mlp_act_fn",
    "prompt_length",
    "resolve_site",
    "site_fingerprint",
    "site_units",
    "site_width",
    "width_at",
]
