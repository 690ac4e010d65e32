"""Multi-process training through torchrun: process-group set-up and the few collectives we need.

Nothing home-made: torchrun starts the processes and sets RANK / WORLD_SIZE / LOCAL_RANK,
torch.distributed (gloo on CPU, NCCL on GPU) does the communication, DDP averages gradients.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Only the main process writes files and prints."""
        return self.rank == 0


def launched() -> DistInfo:
    """What torchrun says about this process (RANK, WORLD_SIZE, LOCAL_RANK; one process when unset), before any process
    group exists: the one place that reads them."""
    return DistInfo(int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("LOCAL_RANK", "0")))


def world_size() -> int:
    """Processes of this run (torchrun's WORLD_SIZE; 1 without torchrun)."""
    return launched().world_size


def is_main_process() -> bool:
    """Whether this process is rank 0 (or the only one): the one that writes files and prints."""
    return launched().is_main


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group torchrun set up (no-op when run as a single process)."""
    info = launched()
    if info.world_size <= 1:
        return DistInfo()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), info.local_rank)


def resolve_device(name: str) -> torch.device:
    """'auto' picks this process's GPU under torchrun (LOCAL_RANK), else the CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", launched().local_rank)
        return torch.device("cpu")
    return torch.device(name)


def all_true(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """True only if `flag` holds on every process (so all stop together, e.g. on a NaN loss)."""
    if not info.enabled:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MIN)
    return bool(value.item() > 0)


def sum_across(values: list[float], info: DistInfo, device: torch.device) -> list[float]:
    """Element-wise sum of per-process numbers."""
    if not info.enabled:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def cleanup(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
