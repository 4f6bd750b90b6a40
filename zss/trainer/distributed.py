"""DDP under torchrun: process-group set-up and gathers that keep gradients.

Contrastive losses need every process's embeddings as negatives. `all_gather_with_grad` returns
the concatenation over processes; its backward sums the incoming gradients over processes and
hands each process the slice of its own inputs (all_reduce + slice, which gloo supports — gloo
has no reduce_scatter). If every process computes the same full loss L on the gathered batch,
each process's local gradient is world·dL/dx_local and DDP's averaging of parameter gradients
then yields exactly dL/dθ of the single-process loss over the whole batch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def setup() -> DistInfo:
    """Join the torchrun process group when WORLD_SIZE > 1 (NCCL on CUDA, gloo on CPU)."""
    ws = int(os.environ.get("WORLD_SIZE", "1"))
    if ws <= 1:
        return DistInfo()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not is_distributed():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend)
    return DistInfo(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank)


def cleanup() -> None:
    if is_distributed():
        dist.destroy_process_group()


class _GatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, counts: list[int]) -> torch.Tensor:  # type: ignore[override]
        ctx.counts = counts
        ctx.rank = dist.get_rank()
        n_max = max(counts)
        padded = x.new_zeros((n_max,) + tuple(x.shape[1:]))
        padded[: x.shape[0]] = x
        out = [torch.empty_like(padded) for _ in counts]
        dist.all_gather(out, padded.contiguous())
        return torch.cat([o[:c] for o, c in zip(out, counts)], dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = sum(ctx.counts[: ctx.rank])
        return grad[start: start + ctx.counts[ctx.rank]], None


def all_gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate `x` [n_r, ...] over processes along dim 0 (rows of rank 0 first).

    Row counts may differ between processes. Gradients flow back to each owner, summed over the
    processes' losses. Identity without a process group.
    """
    if not is_distributed() or dist.get_world_size() == 1:
        return x
    n = torch.tensor([x.shape[0]], device=x.device, dtype=torch.long)
    sizes = [torch.zeros_like(n) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, n)
    return _GatherWithGrad.apply(x, [int(s.item()) for s in sizes])


def gather_offset(n_local: int, device: torch.device) -> int:
    """Index of this process's first row in `all_gather_with_grad`'s output."""
    if not is_distributed():
        return 0
    n = torch.tensor([n_local], device=device, dtype=torch.long)
    sizes = [torch.zeros_like(n) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, n)
    return int(sum(int(s.item()) for s in sizes[: dist.get_rank()]))


def all_reduce_mean(values: dict[str, float], device: torch.device) -> dict[str, float]:
    """Average scalar metrics over processes (identity without a process group)."""
    if not is_distributed() or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], device=device, dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    t /= dist.get_world_size()
    return dict(zip(keys, t.tolist()))
