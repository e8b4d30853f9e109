"""One training run over several processes (GPUs, nodes), launched with `torchrun`.

`init` reads torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT), starts
the process group (NCCL on CUDA, each process on `cuda:LOCAL_RANK`; gloo on the CPU) and
returns the `Runtime` with `rank` and `world_size` filled in; `shutdown` ends it. The
training loop (`sr_lib.train.train`) is the same loop as on one process; every helper here is
a no-op when no process group of more than one process is active (`is_active`).

Why not `DistributedDataParallel`. DDP wraps one module and averages its gradients from hooks
during backward, once per forward. Our methods call several nets in several roles per step:
a discriminator frozen inside the generator's loss, `critic_steps` critic updates on fresh
batches, GAN-CIRCLE's two generators learning from one loss. DDP's reducer supports that
only with per-method plumbing (`no_sync`, `find_unused_parameters`, calling `.module` for
the frozen and inference calls). Instead the one place a loss becomes a step,
`sr_lib.train.optimise`, averages the gradients of the nets it steps with one
`all_reduce` after backward and before clipping (`all_reduce_gradients`). That is DDP's
arithmetic: every rank steps with the same averaged gradient, so the weights stay
identical on every rank (they are broadcast from rank 0 once at the start of training
too, `broadcast_weights`, against any drift). Gradients are not overlapped with backward
as DDP's buckets are; at our net sizes the all-reduce is small next to the step.

What each rank trains on. Every rank draws the same global batch of `batch_size` patches
from the sampler generator seeded by the run's seed, and keeps its contiguous shard (rank r
keeps rows r*B/W .. (r+1)*B/W, `shard`); `batch_size` must be a multiple of the world size
(`check_runtime`). So the run's patches do not depend on how many GPUs it runs on, and the
union of the shards is exactly the one-process batch. Losses are means over the batch and
the shards are equal, so the mean of the shards' gradients is the gradient of the whole
batch: the weights follow a one-process run's up to float rounding (the test allows 1e-5).
Exceptions, where the result is equivalent but not equal: BatchNorm normalises each
shard by its own batch statistics (as DDP without SyncBatchNorm), and randomness drawn
inside a step from the global torch RNG (WGAN-GP's interpolation weights, dropout) is
drawn per shard. The global torch RNG is the same on every rank (seeded alike, synced from
rank 0 at the start, and every rank draws the same shapes), so rank 0's checkpoint holds
every rank's RNG state.

BatchNorm buffers (running mean and variance) are broadcast from rank 0 after every step
(DDP's default, `broadcast_buffers=True`): validation runs on every rank and the EMA copies
buffers, and both must see the same buffers for the ranks to stay identical.

Validation runs on every rank on the same validation batch; its PSNR/SSIM, like the logged
losses, are averaged over the ranks (`average_floats`). The averaged losses are the whole
batch's losses, as a one-process log would show them; the averaged validation scores are
bit-identical on every rank (an all-reduce hands every rank the same result), so every rank
takes the same early-stopping decision even where CUDA kernels differ in the last bit. A
SIGINT/SIGTERM seen by any rank stops every rank after the same step (`any_rank`).

Writes and resume. Only rank 0 writes (checkpoint, log, and in `sr_lib.runs` the config,
status, model, metrics and predictions); the run folder must be on storage every rank sees,
and on resume every rank loads the same checkpoint (a rank that resumes from another step
is an error naming the folder). Work that fills a cache (the phantom, prepared data, the
MRI feature net) runs on rank 0 first, then on each node's local rank 0, then on the rest
(`rank_zero_first`), so no two processes race to write one cache entry.

Failures. A rank that raises ends its process; torchrun then stops the others (a rank never
waits for a collective its peers will not reach, which would hang until the timeout).
`DEFAULT_TIMEOUT` bounds how long ranks wait for each other, e.g. while rank 0 alone
evaluates the test subjects at the end.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import os
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
from torch import nn

if TYPE_CHECKING:
    from sr_lib.train import Runtime

LAUNCH_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")  # what torchrun sets
DEFAULT_TIMEOUT = datetime.timedelta(hours=1)  # longest wait for the other ranks (rank 0's evaluation, cache filling)


class LaunchError(RuntimeError):
    """A distributed launch that cannot work; the message is one line saying why."""


# ----------------------------------------------------------------------------- the process group


def launched() -> bool:
    """Whether this process was started by torchrun (its environment variables are set)."""
    return all(name in os.environ for name in LAUNCH_ENV)


def is_active() -> bool:
    """Whether a process group of more than one process is running in this process: the one
    check `sr_lib.train` makes before averaging gradients or syncing anything."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def init(device: str = "auto", *, timeout: datetime.timedelta = DEFAULT_TIMEOUT) -> "Runtime":
    """Join the run's process group from torchrun's environment; the `Runtime` of this rank.

    `device` 'auto' or 'cuda' gives each process `cuda:LOCAL_RANK` with NCCL when CUDA is
    available; 'cpu' (or no CUDA) gives gloo. Without torchrun's environment, an explicit
    `cuda:N`, or more processes on a node than it has GPUs: a `LaunchError`."""
    from sr_lib.train import Runtime, pick_device

    missing = [name for name in LAUNCH_ENV if name not in os.environ]
    if missing:
        raise LaunchError(f"--distributed needs torchrun's environment ({', '.join(missing)} not set): launch with "
                          "`torchrun --nproc_per_node=N -m sr_lib train --distributed ...`")
    if not dist.is_available():
        raise LaunchError(f"this torch ({torch.__version__}) was built without torch.distributed")
    rank, world_size, local_rank = (int(os.environ[name]) for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
    picked = pick_device(device)
    if picked.type == "cuda":
        if picked.index is not None:
            raise LaunchError(f"device {device!r}: in a distributed run each process takes cuda:LOCAL_RANK; "
                              "give --device cuda or auto")
        if local_rank >= torch.cuda.device_count():
            raise LaunchError(f"LOCAL_RANK {local_rank}, but this node has {torch.cuda.device_count()} CUDA device(s): "
                              "--nproc_per_node must not exceed the GPUs per node")
        torch.cuda.set_device(local_rank)
        name, backend, device_id = f"cuda:{local_rank}", "nccl", torch.device("cuda", local_rank)
    else:
        name, backend, device_id = "cpu", "gloo", None
    if not dist.is_initialized():
        dist.init_process_group(backend, init_method="env://", rank=rank, world_size=world_size, timeout=timeout,
                                device_id=device_id)
    return dataclasses.replace(Runtime.auto(name), rank=rank, world_size=world_size)


def shutdown() -> None:
    """End this process's process group (nothing when none is running)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@contextlib.contextmanager
def process_group(device: str = "auto", *, timeout: datetime.timedelta = DEFAULT_TIMEOUT) -> Iterator["Runtime"]:
    """`init` for the block, `shutdown` after it, also when it raises."""
    try:
        yield init(device, timeout=timeout)
    finally:
        shutdown()


def check_runtime(runtime: "Runtime", batch_size: int) -> None:
    """The runtime agrees with the process group, and `batch_size` splits evenly over it
    (one-line `ValueError`s): a runtime that claims ranks without a group would shard the
    batch without averaging gradients, and a group with a one-process runtime would write
    from every rank."""
    rank, world_size = (dist.get_rank(), dist.get_world_size()) if is_active() else (0, 1)
    if (runtime.rank, runtime.world_size) != (rank, world_size):
        raise ValueError(f"runtime says rank {runtime.rank} of {runtime.world_size}, the process group rank {rank} of "
                         f"{world_size}: build the runtime with sr_lib.distributed.init()")
    if batch_size % world_size:
        raise ValueError(f"batch_size {batch_size} cannot be split over {world_size} processes: give a multiple of "
                         f"{world_size} (each process takes its share of the same global batch)")


def _rank() -> int:
    return dist.get_rank() if is_active() else 0


def _local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", _rank()))


def _device() -> torch.device:
    """Where collectives' own tensors live: the current CUDA device under NCCL, else the CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def barrier() -> None:
    """Wait until every rank gets here."""
    if is_active():
        dist.barrier()


@contextlib.contextmanager
def rank_zero_first() -> Iterator[None]:
    """Run the block on rank 0 first, then on each node's local rank 0, then on the other
    ranks: for work that fills a cache (on storage all nodes share, or one per node), so the
    later ranks read the entry the earlier ones wrote instead of racing to write it. If rank
    0's block raises, rank 0 exits and torchrun stops the waiting ranks."""
    if not is_active():
        yield
        return
    stage = 0 if _rank() == 0 else 1 if _local_rank() == 0 else 2
    for _ in range(stage):
        dist.barrier()
    yield
    for _ in range(stage, 2):
        dist.barrier()


# ----------------------------------------------------------------------------- tensors


def _unique(tensors: Iterable[torch.Tensor]) -> list[torch.Tensor]:
    seen, out = set(), []
    for t in tensors:
        if id(t) not in seen:
            seen.add(id(t))
            out.append(t)
    return out


def _buckets(tensors: list[torch.Tensor]) -> list[list[torch.Tensor]]:
    """Tensors grouped by (device, dtype), so each group flattens into one tensor."""
    groups: dict[tuple[torch.device, torch.dtype], list[torch.Tensor]] = {}
    for t in tensors:
        groups.setdefault((t.device, t.dtype), []).append(t)
    return list(groups.values())


def _unflatten_into(flat: torch.Tensor, tensors: list[torch.Tensor]) -> None:
    offset = 0
    for t in tensors:
        t.copy_(flat[offset : offset + t.numel()].view(t.shape))
        offset += t.numel()


@torch.no_grad()
def all_reduce_gradients(params: Iterable[nn.Parameter]) -> None:
    """Average the `.grad` of `params` over the ranks, in one flattened all-reduce per call
    (per dtype, in practice one). Parameters without a gradient are left out: they have
    none on every rank alike (the same code ran), and an optimiser skips them as on one
    process."""
    if not is_active():
        return
    grads = [p.grad for p in _unique(params) if p.grad is not None]
    world_size = dist.get_world_size()
    for group in _buckets(grads):
        flat = torch.cat([g.reshape(-1) for g in group])
        dist.all_reduce(flat)  # a sum (ReduceOp.AVG is NCCL-only), then divided
        flat.div_(world_size)
        _unflatten_into(flat, group)


@torch.no_grad()
def _broadcast(tensors: Iterable[torch.Tensor]) -> None:
    if not is_active():
        return
    for group in _buckets(_unique(tensors)):
        flat = torch.cat([t.detach().reshape(-1) for t in group])
        dist.broadcast(flat, src=0)
        _unflatten_into(flat, group)


def broadcast_weights(modules: Iterable[nn.Module]) -> None:
    """Copy rank 0's parameters and buffers of `modules` to every rank."""
    _broadcast(t for m in modules for t in (*m.parameters(), *m.buffers()))


def broadcast_buffers(modules: Iterable[nn.Module]) -> None:
    """Copy rank 0's buffers (BatchNorm's running statistics) of `modules` to every rank."""
    _broadcast(t for m in modules for t in m.buffers())


def broadcast_rng_state() -> None:
    """Give every rank rank 0's global (CPU) torch RNG state."""
    if is_active():
        state = torch.get_rng_state().to(_device())
        dist.broadcast(state, src=0)
        torch.set_rng_state(state.cpu())


def average_floats(values: Mapping[str, float]) -> dict[str, float]:
    """`values` (logged losses, validation scores) averaged over the ranks, in one float64
    all-reduce; every rank gets the same numbers. As given when no group is active."""
    if not is_active() or not values:
        return dict(values)
    keys = sorted(values)
    total = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=_device())
    dist.all_reduce(total)
    mean = dict(zip(keys, (total / dist.get_world_size()).tolist()))
    return {k: mean[k] for k in values}


def any_rank(flag: bool) -> bool:
    """Whether `flag` is true on any rank (e.g. a stop signal one rank received)."""
    if not is_active():
        return flag
    value = torch.tensor([int(flag)], device=_device())
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def gather_objects(value: Any) -> list[Any]:
    """`value` of every rank, in rank order (picklable values; a one-item list without a group)."""
    if not is_active():
        return [value]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, value)
    return out


def broadcast_object(value: Any) -> Any:
    """Rank 0's `value` on every rank (picklable values)."""
    if not is_active():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def shard(batch: Mapping[str, Any], rank: int, world_size: int) -> dict[str, Any]:
    """Rank `rank`'s contiguous share of a global batch: rows r*B/W .. (r+1)*B/W of every
    tensor (each has the batch on its first axis, as the samplers' lr, hr and mask); other
    values (a missing mask) as they are."""
    if world_size == 1:
        return dict(batch)
    out: dict[str, Any] = {}
    for key, value in batch.items():
        if torch.is_tensor(value):
            if value.shape[0] % world_size:
                raise ValueError(f"batch entry {key!r} has {value.shape[0]} rows, "
                                 f"not a multiple of {world_size} processes")
            size = value.shape[0] // world_size
            value = value[rank * size : (rank + 1) * size]
        out[key] = value
    return out


def start_training(modules: Iterable[nn.Module], resumed_from: int, run_dir: Any) -> None:
    """At the start of `train`: every rank resumed from the same step (else the run folder
    is not on storage every rank sees: a one-line `RuntimeError` on every rank), and rank 0's
    weights, buffers and global torch RNG state everywhere."""
    if not is_active():
        return
    steps = gather_objects(resumed_from)
    if len(set(steps)) > 1:
        raise RuntimeError(f"the ranks resume from steps {steps}: the run folder {run_dir} must be on storage "
                           "every rank sees")
    broadcast_weights(modules)
    broadcast_rng_state()
