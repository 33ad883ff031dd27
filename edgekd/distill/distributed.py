"""torchrun support: process group set-up and the sharding of each shuffled batch.

Under ``torchrun --nproc-per-node N`` (``WORLD_SIZE`` > 1) the loop joins a process group
(NCCL on CUDA, gloo on CPU), wraps the student in DistributedDataParallel and gives each
rank an equal, disjoint share of every global batch of the same seeded permutation.

What an N-process run matches:

- Without BatchNorm: the single-process run on the same global batches, weight for weight,
  up to float summation order (gradients are averaged over the ranks).
- With BatchNorm and ``train.sync_batchnorm: false`` (the default): each rank normalises
  with the mean and variance of its own B/N rows, so the step is not the single-process
  step on the B-row batch. The weights stay identical on every rank (averaged gradients),
  and so do the running statistics: DDP copies rank 0's buffers to the others before each
  forward pass, and the loop does the same (:func:`broadcast_buffers`) before each
  validation, so every rank evaluates, early-stops and saves the same model, whose running
  statistics are rank 0's per-shard estimates.
- With BatchNorm and ``train.sync_batchnorm: true``: BatchNorm layers become
  ``torch.nn.SyncBatchNorm`` for the run, which normalises with the statistics of the whole
  global batch (all ranks) and updates the running statistics from them: the step matches
  the single-process step on the full batch, up to float summation order. torch implements
  it for CUDA (NCCL) only, so on CPU (gloo) it is refused with a ConfigError; with a single
  process it changes nothing. The student's own BatchNorm modules are put back afterwards,
  holding the trained values, so checkpoints and exports see ordinary BatchNorm.

A command (``torchrun ... -m edgekd distill``) joins the group once for all its stages with
:func:`command_process_group`; the loop then reuses it. Collectives give up after
``EDGEKD_DIST_TIMEOUT_S`` seconds (default 1800), so a rank that died or stalled ends the
others with an error instead of a hang (torchrun normally stops them sooner).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import os
from collections.abc import Callable, Iterator

import torch
import torch.distributed as dist
from torch import nn

from edgekd.errors import ConfigError


@dataclasses.dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False  # True when this loop created the process group (and must end it)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: torch.device) -> DistContext:
    """Join (or reuse) the process group that torchrun describes in the environment."""
    if dist.is_available() and dist.is_initialized():
        return DistContext(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext()
    if not dist.is_available():
        raise ConfigError("WORLD_SIZE > 1 but torch.distributed is not available in this build")
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=collective_timeout_s()))
    return DistContext(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)), True)


def collective_timeout_s() -> float:
    """Seconds a collective (barrier, all-reduce) waits for the other ranks: EDGEKD_DIST_TIMEOUT_S."""
    raw = os.environ.get("EDGEKD_DIST_TIMEOUT_S", "1800")
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise ConfigError(f"EDGEKD_DIST_TIMEOUT_S must be a positive number of seconds, got {raw!r}")
    return seconds


@contextlib.contextmanager
def command_process_group(device: torch.device) -> Iterator[DistContext]:
    """The torchrun process group for a whole command (every stage); a plain context alone.

    Rank 0 writes the artifacts; the others wait at :func:`barrier` and read them.
    """
    ctx = setup_distributed(process_device(device))
    try:
        yield ctx
    finally:
        teardown(ctx)


def process_device(device: torch.device) -> torch.device:
    """Under torchrun a bare ``cuda`` means this process's GPU, ``cuda:LOCAL_RANK``."""
    if device.type == "cuda" and device.index is None and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def local_device(device: torch.device, ctx: DistContext) -> torch.device:
    """One GPU per process: cuda:LOCAL_RANK under torchrun; CPU stays CPU."""
    if ctx.enabled and device.type == "cuda":
        torch.cuda.set_device(ctx.local_rank)
        return torch.device("cuda", ctx.local_rank)
    return device


def global_batches(order: torch.Tensor, batch_size: int, world_size: int) -> list[torch.Tensor]:
    """Split a permutation [n] into global batches whose sizes are multiples of ``world_size``.

    The order is padded by repeating its head (as DistributedSampler does) so every rank
    gets the same number of rows; batches with fewer than 2 rows per rank are dropped
    (train-mode BatchNorm needs 2), identically on every rank.
    """
    if batch_size % world_size:
        raise ConfigError(
            f"train.batch_size {batch_size} does not split evenly over {world_size} processes",
            hint=f"use a multiple of {world_size}",
        )
    pad = (-len(order)) % world_size
    if pad:
        order = torch.cat([order, order[:pad]])
    return [b for b in torch.split(order, batch_size) if len(b) >= 2 * world_size]


def shard(batch: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """This rank's rows of a global batch: rows rank, rank + W, rank + 2W, ..."""
    return batch[ctx.rank :: ctx.world_size] if ctx.enabled else batch


def all_reduce_sum(values: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    if ctx.enabled:
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def broadcast_buffers(modules: list[nn.Module], ctx: DistContext) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every rank; a no-op alone.

    Each rank's last forward pass updated them from its own shard: without this the ranks
    would validate (and decide early stopping) with different models.
    """
    if not ctx.enabled:
        return
    for module in modules:
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)


def teardown(ctx: DistContext) -> None:
    if ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def is_main_process() -> bool:
    """True outside torchrun and on rank 0: the process that writes artifacts."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return int(os.environ.get("RANK", "0")) == 0


def barrier() -> None:
    """Wait for every rank (after rank 0 wrote a file the others read); a no-op alone."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def world_size() -> int:
    """Processes training together: the process group's size, else torchrun's WORLD_SIZE, else 1."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


def check_sync_batchnorm(enabled: bool, device: torch.device) -> None:
    """ConfigError for ``train.sync_batchnorm`` with several processes on a non-CUDA device.

    torch's SyncBatchNorm gathers the statistics with GPU collectives only (its forward
    raises ValueError for CPU tensors), so the option is refused before any work is done.
    """
    if enabled and world_size() > 1 and device.type != "cuda":
        raise ConfigError(
            f"train.sync_batchnorm is set, but torch's SyncBatchNorm runs only on CUDA GPUs and this "
            f"run trains {world_size()} processes on {device.type}",
            hint="set train.sync_batchnorm: false (BatchNorm statistics stay per process), or train on GPUs",
        )


def sync_batchnorm(
    module: nn.Module, enabled: bool, ctx: DistContext, device: torch.device
) -> Callable[[], None]:
    """Swap every BatchNorm layer inside ``module`` for ``nn.SyncBatchNorm`` (several processes
    and ``enabled`` only); returns the function that puts the original layers back.

    The SyncBatchNorm layers share the originals' parameters and buffers, and the restore
    copies their state back in any case, so the originals end up holding the trained values.
    """
    if not (enabled and ctx.enabled):
        return lambda: None
    check_sync_batchnorm(enabled, device)
    swapped: list[tuple[nn.Module, str, nn.Module, nn.Module]] = []
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.modules.batchnorm._BatchNorm) and not isinstance(child, nn.SyncBatchNorm):
                synced = nn.SyncBatchNorm.convert_sync_batchnorm(child)
                setattr(parent, name, synced)
                swapped.append((parent, name, child, synced))

    def restore() -> None:
        for parent, name, original, synced in reversed(swapped):
            with torch.no_grad():
                original.load_state_dict(synced.state_dict())
            original.train(synced.training)
            setattr(parent, name, original)
        swapped.clear()

    return restore
