"""torch.distributed set-up for torchrun: NCCL on CUDA, gloo on the CPU."""
from __future__ import annotations

import functools
import os

import torch
import torch.distributed as dist


def distributed_setup() -> tuple[int, int]:
    """(rank, world size); joins the process group when started by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def distributed_teardown() -> None:
    """Leave the process group once every rank is done with it.

    Left to interpreter exit, gloo's teardown can abort a rank whose peer is still running
    (seen as SIGABRT in a two-process evaluation), so ranks meet, then destroy the group.
    """
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


@functools.cache
def _host_group() -> dist.ProcessGroup:
    """A gloo group for small messages between hosts' CPUs (no wait on an NCCL stream)."""
    return dist.group.WORLD if dist.get_backend() == "gloo" else dist.new_group(backend="gloo")


def gather_rare(items: list, flag: bool = False) -> tuple[list, bool]:
    """Every rank's ``items`` (in rank order) and whether any rank raised ``flag``, on every
    rank: one all_reduce of two numbers on the CPU per call, and the items travel only
    when some rank has any.  Every rank must call it at the same point."""
    if not dist.is_initialized():
        return list(items), flag
    counts = torch.tensor([len(items), int(flag)])
    dist.all_reduce(counts, group=_host_group())
    if counts[0]:
        parts: list[list | None] = [None] * dist.get_world_size()
        dist.all_gather_object(parts, items, group=_host_group())
        items = [item for part in parts for item in part]
    return items, bool(counts[1])


def local_device() -> torch.device:
    """This process's GPU under torchrun (LOCAL_RANK), or the CPU."""
    if torch.cuda.is_available():
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
        return device
    return torch.device("cpu")
