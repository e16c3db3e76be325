"""Data-parallel recording: this process's rank, and :class:`Totals`, the folded statistics.

Every rank records its own chunks of the batch plan; :meth:`Totals.fold` adds the chunks'
partial sums in plan order on every rank, so that the totals are bit for bit those of a single
process (float64 addition is not associative).
"""

from __future__ import annotations

import torch
from jaxtyping import Int
from torch import Tensor

from ..errors import LangNeuronsError
from ..sites import Site
from .accumulator import Accumulator


def rank_and_world(distributed: bool | None) -> tuple[int, int]:
    """This process's rank and the number of ranks recording together."""
    import torch.distributed as dist

    ready = dist.is_available() and dist.is_initialized()
    if distributed is None:
        distributed = ready and dist.get_world_size() > 1
    if not distributed:
        return 0, 1
    if not ready:
        raise LangNeuronsError(
            "distributed recording needs an initialised torch.distributed process group: launch with "
            "torchrun (the CLI then sets it up) or call torch.distributed.init_process_group() first"
        )
    return dist.get_rank(), dist.get_world_size()


class Totals:
    """The statistics of every chunk folded so far, identical on every rank."""

    FIELDS = ("tokens", "active", "sums", "sq_sums", "nonfinite", "resid_sums")

    def __init__(self, n_langs: int, site: Site, device: torch.device, d_model: int):
        shape = (n_langs, site.n_layers, site.width)
        self.resid_sums = torch.zeros((n_langs, site.n_layers, d_model), dtype=torch.float64, device=device)
        self.tokens = torch.zeros(n_langs, dtype=torch.int64, device=device)
        self.active = torch.zeros(shape, dtype=torch.int64, device=device)
        self.sums = torch.zeros(shape, dtype=torch.float64, device=device)
        self.sq_sums = torch.zeros(shape, dtype=torch.float64, device=device)
        self.nonfinite = torch.zeros(shape[:2], dtype=torch.int64, device=device)

    def fold(
        self, acc: Accumulator, tokens: Int[Tensor, " lang"], rows: list[list[int]], rank: int, world: int
    ) -> None:
        """Add one round of chunks (chunk ``i`` of the round recorded by rank ``i``) in chunk order.

        Integer counts are exact in any order: one all-reduce. Float64 sums are not associative,
        so every rank gathers every chunk's partial sums and adds them in chunk order, exactly as
        a single process adds its chunks one after the other. Pooled rows are copied from the
        rank that recorded them.
        """
        active, sums, sq_sums, nonfinite, resid = acc.take()
        if world == 1:
            parts = [(sums, sq_sums, resid)]
            ints = (active, nonfinite, tokens)
        else:
            import torch.distributed as dist

            comm = (
                torch.device("cuda", torch.cuda.current_device())
                if dist.get_backend() == "nccl"
                else torch.device("cpu")
            )
            mine = torch.cat([sums.flatten(), sq_sums.flatten(), resid.flatten()]).to(comm)
            gathered = [torch.empty_like(mine) for _ in range(world)]
            dist.all_gather(gathered, mine)
            k = sums.numel()
            parts = [
                (
                    g[:k].view_as(sums).to(sums.device),
                    g[k : 2 * k].view_as(sums).to(sums.device),
                    g[2 * k :].view_as(resid).to(resid.device),
                )
                for g in gathered[: len(rows)]
            ]
            flat = torch.cat([active.flatten(), nonfinite.flatten(), tokens]).to(comm)
            dist.all_reduce(flat)
            flat = flat.to(active.device)
            a, n = active.numel(), nonfinite.numel()
            ints = (flat[:a].view_as(active), flat[a : a + n].view_as(nonfinite), flat[a + n :])
            for src, idx in enumerate(rows):
                if not idx:
                    continue
                index = torch.tensor(idx)
                buf = (
                    acc.pooled[index].to(comm)
                    if src == rank
                    else torch.empty((len(idx), *acc.pooled.shape[1:]), device=comm)
                )
                dist.broadcast(buf, src=src)
                acc.pooled[index] = buf.cpu()
        for s, q, r in parts:  # in chunk order
            self.sums += s
            self.sq_sums += q
            self.resid_sums += r
        self.active += ints[0]
        self.nonfinite += ints[1]
        self.tokens += ints[2]
