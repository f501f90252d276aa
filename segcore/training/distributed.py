"""This process's place in a torchrun job: rank, world size, the barrier, and the decisions all ranks share.

Under ``torchrun --nproc_per_node=N`` the same command trains with DistributedDataParallel (gloo on CPU,
nccl on CUDA) and a distributed sampler; only rank 0 validates and writes the run directory. Alone, every
helper here is a no-op, so the loop is written once.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import torch
import torch.distributed as dist

from segcore import liveness
from segcore.errors import SegcoreError


@dataclasses.dataclass
class Process:
    """This process's place in a (possibly single-process) distributed job."""

    rank: int = 0
    world_size: int = 1

    @property
    def main(self) -> bool:
        """Whether this process validates and writes the run directory."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """Whether other processes train beside this one."""
        return self.world_size > 1

    def barrier(self) -> None:
        """Wait for every process (nothing to wait for alone)."""
        if self.distributed:
            dist.barrier()


def start_process(device: torch.device) -> Process:
    """Join the torchrun job described by the environment, if there is one."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return Process()
    if device.type == "cuda":
        # otherwise every rank's pinned-memory thread and NCCL's first guess land on GPU 0
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo",
                                device_id=device if device.type == "cuda" else None)
    return Process(dist.get_rank(), world_size)


def end_process(process: Process) -> None:
    """Leave the torchrun job, if this process joined one."""
    if process.distributed and dist.is_initialized():
        dist.destroy_process_group()


def non_finite(losses: dict[str, torch.Tensor], process: Process) -> list[str]:
    """Names of the losses that are not finite, here or (as a placeholder name) on another process.

    Every process must stop together: one that stopped alone would leave the others waiting in the
    gradient all-reduce forever.
    """
    bad = [name for name, value in losses.items() if not torch.isfinite(value).all()]
    if process.distributed:
        flag = torch.tensor([float(len(bad))], device=next(iter(losses.values())).device)
        dist.all_reduce(flag)
        if flag.item() and not bad:
            bad = ["a loss on another process"]
    return bad


def lock(run_dir: Path, process: Process):
    """Rank 0 takes the run's lock (:func:`segcore.liveness.lock_run`) before anything is read, so that two
    trainings started at once cannot both pass the checks; every rank learns whether it got it."""
    refusal, held = None, None
    if process.main:
        try:
            held = liveness.lock_run(run_dir)
        except SegcoreError as error:
            refusal = str(error)
    if process.distributed:
        told = [refusal]
        dist.broadcast_object_list(told, src=0)
        refusal = told[0]
    if refusal is not None:
        raise SegcoreError(refusal)
    return held
