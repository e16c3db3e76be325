"""The statistics of one layer and batch by plain reductions, the reference the recording hooks
are compared with bit for bit (same float32 reductions, float64 totals)."""

from __future__ import annotations

import torch
from torch import Tensor


def plain_layer_statistics(
    act: Tensor, resid: Tensor, counted: Tensor, pooling: str
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """``act`` ``[batch, pos, width]`` and ``resid`` ``[batch, pos, d_model]`` (float32) over the
    ``counted`` positions (bool ``[batch, pos, 1]``): active counts, sums, sums of squares and
    residual sums per neuron, and each sentence's pooled row."""
    masked = act * counted
    if pooling == "mean":
        pooled = masked.sum(1) / counted.sum(1).clamp(min=1)
    elif pooling == "max":
        pooled = act.masked_fill(~counted, -torch.inf).amax(1)
    else:  # the last counted position
        pooled = act[torch.arange(act.shape[0]), counted[..., 0].long().cumsum(1).argmax(1)]
    return (
        (masked > 0).sum((0, 1)),
        masked.sum((0, 1)).double(),
        (masked * masked).sum((0, 1)).double(),
        (resid * counted).sum((0, 1)).double(),
        pooled,
    )
