"""Several processes, one per GPU (or CPU process), as started by ``torchrun``.

``torchrun --nproc-per-node N -m maskrcnn train ...`` sets RANK, LOCAL_RANK and WORLD_SIZE; ``init_from_env``
starts the process group (NCCL on CUDA, gloo on CPU). Only rank 0 writes files and prints progress.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_from_env(device_type: str) -> DistInfo:
    """Start the process group if this process was launched by torchrun with more than one process."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    return DistInfo(rank=rank, local_rank=local_rank, world_size=world_size)


def all_reduce_mean(values: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Mean over processes (identity with one process)."""
    if not info.enabled:
        return values
    values = values.clone()
    dist.all_reduce(values)
    return values / info.world_size


def any_process(flags: list[bool], info: DistInfo, device: torch.device) -> list[bool]:
    """For each flag, whether it is set in any process (the flags themselves with one process)."""
    if not info.enabled:
        return flags
    values = torch.tensor(flags, dtype=torch.float32, device=device)
    dist.all_reduce(values)
    return [bool(v > 0) for v in values.tolist()]


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def shutdown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
