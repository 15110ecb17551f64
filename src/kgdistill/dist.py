"""Data-parallel runs under ``torchrun``: PyTorch's own process group and DistributedDataParallel.

``torchrun --nproc-per-node N -m kgdistill train|distill|evaluate ...`` starts ``N`` processes (ranks) per node
(``--nnodes`` for several nodes). Each reads torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``, ``MASTER_PORT``) in :func:`init_from_env` and joins one process group: ``gloo`` on a machine
without CUDA, ``cpu:gloo,cuda:nccl`` (NCCL for GPU tensors) with CUDA; ``KGDISTILL_DIST_BACKEND`` overrides
(``gloo``, ``nccl``). Without torchrun, or with a world of one process, nothing here does anything: a single
process runs exactly as it always did.

What each part does with ``W`` ranks (see ``docs/distributed.md``):

* **Training** (:func:`parallel`, :func:`batch_rows`): ``train.batch_size`` stays the *global* batch. Every rank
  draws the same permutation of the epoch's queries (seeded by seed and epoch) and the same negatives for the
  global batch, then keeps the rows ``rank::W`` of it (DistributedSampler's strided split, without padding).
  The loss step (student, teachers, objective) runs under :class:`~torch.nn.parallel.DistributedDataParallel`,
  whose all-reduce averages the gradients; each rank's loss is weighted by its share of the global batch, so
  the averaged gradient is that of the global batch's mean loss (the single-process gradient up to float
  summation order), uneven last batches included.
* **Checkpoints**: written by rank 0 only (:func:`is_main`) while the others wait (:func:`barrier`); they hold
  the unwrapped model and the optimiser state, the same on every rank, so nothing depends on ``W`` and a run
  resumes with any number of processes.
* **Evaluation** (:func:`span`, :func:`gather_span`): each rank ranks a contiguous run of whole evaluation
  chunks (the chunks of one process, so every score row is computed as one process computes it), and the
  float64 ranks are summed into one vector: exactly the numbers of one process.
* **Logs, progress bars, result files**: rank 0 only; other ranks log warnings only.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import inspect
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.distributed as tdist
from torch import nn

from kgdistill.data.batching import Batch
from kgdistill.errors import ConfigError, KGDistillError
from kgdistill.models.base import KGEModel
from kgdistill.objective import Objective
from kgdistill.runfolder import claim as claim_folder
from kgdistill.runs import JsonlLog
from kgdistill.types import BoolTensor, LongTensor

__all__ = [
    "BACKEND_ENV",
    "FIND_UNUSED_ENV",
    "LossStep",
    "World",
    "all_sum",
    "alone",
    "barrier",
    "batch_rows",
    "broadcast",
    "claim",
    "gather_span",
    "init_from_env",
    "is_main",
    "journal",
    "local_device",
    "no_sync",
    "parallel",
    "span",
    "world",
]

log = logging.getLogger(__name__)

#: environment variable naming the backend (``gloo`` or ``nccl``); default: gloo, plus NCCL for CUDA tensors
BACKEND_ENV = "KGDISTILL_DIST_BACKEND"

#: ``0``: DistributedDataParallel without ``find_unused_parameters`` (see :func:`parallel`)
FIND_UNUSED_ENV = "KGDISTILL_DDP_FIND_UNUSED"

T = TypeVar("T")


@dataclass(frozen=True)
class World:
    """This process's place among the ranks: ``rank`` of ``size``, ``local_rank`` on its node."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        """Whether there is more than one process (collectives are needed)."""
        return self.size > 1


#: inside :func:`alone`: this process acts as the only one (no collectives)
_alone = False


def world() -> World:
    """The current world: from the initialised process group, else one process (also inside :func:`alone`)."""
    if _alone or not (tdist.is_available() and tdist.is_initialized()):
        return World()
    return World(
        rank=tdist.get_rank(),
        size=tdist.get_world_size(),
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
    )


def is_main() -> bool:
    """Whether this process is rank 0 (the one that writes files, logs and prints), or the only one."""
    return world().rank == 0


@contextlib.contextmanager
def alone() -> Iterator[None]:
    """Run the block as a single process: what only rank 0 does (writing results) must not wait for the others
    in a collective they never join, so an evaluation inside ranks every query itself."""
    global _alone
    before, _alone = _alone, True
    try:
        yield
    finally:
        _alone = before


def _backend() -> str:
    """The process group's backend: ``$KGDISTILL_DIST_BACKEND``, else gloo (with NCCL for CUDA tensors)."""
    asked = os.environ.get(BACKEND_ENV, "").strip().lower()
    if asked not in ("", "gloo", "nccl"):
        raise ConfigError(f"{BACKEND_ENV}='{asked}': use gloo (CPU or GPU) or nccl (GPU)")
    if asked == "nccl" and not torch.cuda.is_available():
        raise ConfigError(
            f"{BACKEND_ENV}=nccl asks for NCCL, but no CUDA device is visible; use gloo on CPU"
        )
    if asked:
        return asked
    return "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"


def init_from_env() -> World:
    """Join the process group torchrun describes in the environment (idempotent).

    Nothing happens without ``WORLD_SIZE`` or with ``WORLD_SIZE=1``: the run is a single process. With CUDA,
    each rank's current device becomes ``cuda:LOCAL_RANK``; ranks other than 0 log warnings only.

    Raises:
        ConfigError: a malformed environment, an unknown backend, NCCL without GPUs, or more ranks on a node
            than it has GPUs when NCCL is asked for.
    """
    if tdist.is_available() and tdist.is_initialized():
        return world()
    try:
        size = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError:
        raise ConfigError(
            "WORLD_SIZE, RANK and LOCAL_RANK must be integers (torchrun sets them)"
        ) from None
    if size <= 1:
        return World()
    if not 0 <= rank < size:
        raise ConfigError(f"RANK={rank} is not in 0..{size - 1} (WORLD_SIZE={size})")
    if not tdist.is_available():
        raise ConfigError("this PyTorch build has no torch.distributed; run one process")
    backend = _backend()
    if "nccl" in backend and torch.cuda.is_available():
        if local >= torch.cuda.device_count():
            if backend == "nccl":
                raise ConfigError(
                    f"LOCAL_RANK={local} but this node has {torch.cuda.device_count()} GPU(s): start at "
                    "most one process per GPU (--nproc-per-node), or use gloo"
                )
        else:
            torch.cuda.set_device(local)
    tdist.init_process_group(backend=backend)
    atexit.register(_destroy)
    if rank != 0:
        logging.getLogger("kgdistill").setLevel(logging.WARNING)
    log.info("process group: %d processes, backend %s", size, backend)
    return world()


def _destroy() -> None:
    """At exit: wait until every rank is done (a rank that tears its connections down while another still
    talks to it can abort that one), then destroy the group. A rank that never arrives (it crashed; torchrun
    stops the others) is waited for at most a minute on gloo."""
    if not (tdist.is_available() and tdist.is_initialized()):
        return
    try:
        if tdist.get_backend() == "gloo":
            tdist.monitored_barrier(timeout=timedelta(seconds=60))
        else:
            tdist.barrier()
    except Exception as e:
        log.debug("exit barrier: %s", e)
    tdist.destroy_process_group()


def local_device(device: torch.device) -> torch.device:
    """The rank's own device: ``cuda`` becomes ``cuda:LOCAL_RANK`` under torchrun; CPU is unchanged.

    Raises:
        ConfigError: a device pinned to one GPU (``cuda:1``) while several ranks share a node, a rank with no
            GPU of its own, or a CPU device under an NCCL-only process group.
    """
    w = world()
    if not w.active:
        return device
    if device.type != "cuda":
        if tdist.get_backend() == "nccl":
            raise ConfigError(
                f"config key 'train.device': '{device}' under NCCL, which reduces GPU tensors only; use "
                f"'cuda' (or 'auto'), or {BACKEND_ENV}=gloo"
            )
        return device
    if device.index is not None:
        raise ConfigError(
            f"config key 'train.device': '{device}' would put every rank on one GPU; use 'cuda' or "
            "'auto' under torchrun (each rank takes cuda:LOCAL_RANK)"
        )
    if w.local_rank >= torch.cuda.device_count():
        raise ConfigError(
            f"rank {w.rank} has LOCAL_RANK {w.local_rank} but its node has {torch.cuda.device_count()} "
            "GPU(s): start at most one process per GPU (--nproc-per-node)"
        )
    return torch.device("cuda", w.local_rank)


# ------------------------------------------------------------------------------------------ collectives
def barrier() -> None:
    """Wait for every rank (nothing with one process)."""
    if world().active:
        tdist.barrier()


def broadcast(obj: T) -> T:
    """Rank 0's ``obj`` (any picklable object) on every rank; ``obj`` itself with one process."""
    if not world().active:
        return obj
    box = [obj]
    tdist.broadcast_object_list(box, src=0)
    return box[0]  # type: ignore[no-any-return]


def all_sum(t: torch.Tensor) -> torch.Tensor:
    """Element-wise sum of ``t`` over the ranks, in place (``t`` itself with one process)."""
    if world().active:
        tdist.all_reduce(t, op=tdist.ReduceOp.SUM)
    return t


@contextlib.contextmanager
def claim(folder: Path, *, fresh: bool, overwrite: bool = False) -> Iterator[Path]:
    """:func:`kgdistill.runfolder.claim` on rank 0; the other ranks wait for its verdict and fail with the
    same error when it fails (a folder in use or already holding a run)."""
    if not world().active:
        with claim_folder(folder, fresh=fresh, overwrite=overwrite) as f:
            yield f
        return
    if not is_main():
        error = broadcast(None)
        if error is not None:
            raise KGDistillError(error)
        yield folder
        return
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(claim_folder(folder, fresh=fresh, overwrite=overwrite))
        except KGDistillError as e:
            broadcast(str(e))
            raise
        broadcast(None)
        yield folder


class _SilentLog(JsonlLog):
    """A :class:`~kgdistill.runs.JsonlLog` that counts records but writes nothing (ranks other than 0)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines = 0

    def truncate(self, lines: int) -> None:
        self.lines = lines

    def write(self, **record: Any) -> None:
        self.lines += 1


def journal(path: Path) -> JsonlLog:
    """The run's ``log.jsonl`` on rank 0; a log that only counts its records on the other ranks."""
    return JsonlLog(path) if is_main() else _SilentLog(path)


# ------------------------------------------------------------------------------------------- training
class LossStep(nn.Module):
    """One training step's loss as one module, so that DistributedDataParallel sees every trained parameter
    (the model's and the objective's: a FitNet projection) and reduces exactly the gradients the loss has.

    The teachers are held in a plain dict: frozen and never synchronised.
    """

    def __init__(
        self,
        model: KGEModel,
        objective: Objective,
        teachers: Mapping[str, Any],
        used: Mapping[str, frozenset[str]],
    ) -> None:
        super().__init__()
        self.model = model
        self.objective = objective
        self.teachers = dict(teachers)
        self.used = dict(used)

    def forward(
        self, queries: LongTensor, candidates: LongTensor | None, mask: BoolTensor | None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``queries (B, 3|4)``, ``candidates (B, C)`` or ``None`` (1-N), ``mask (B, C)`` or ``None`` ->
        ``(loss (), {term: value ()})``: the student, then the teachers (no gradient), then the objective."""
        out = self.model(queries, candidates)
        with torch.no_grad():
            t_outs = {
                name: self.teachers[name](queries, candidates, need)
                for name, need in self.used.items()
            }
        return self.objective(out, t_outs, Batch(queries, candidates, mask))  # type: ignore[no-any-return]


def parallel(step: nn.Module, device: torch.device) -> nn.Module:
    """``step`` under DistributedDataParallel when there are several ranks, else ``step`` itself.

    ``find_unused_parameters``: a stage's objective may leave parameters without gradient (a time table no
    term reads); DDP then finds them from the loss instead of waiting for their gradients, at the cost of one
    walk over the autograd graph a step. ``KGDISTILL_DDP_FIND_UNUSED=0`` turns the walk off when every trained
    parameter always gets a gradient (a run that then misses one stops with DDP's error naming it).
    """
    if not world().active:
        return step
    gc.collect()  # an earlier stage's wrapper (and its gradient hooks) goes before the next one is made
    ddp = nn.parallel.DistributedDataParallel
    # buffers (token tables, id maps) are the same on every rank: synchronised once, not before every step
    quiet = (
        {"forward_sync_buffers": False}
        if "forward_sync_buffers" in inspect.signature(ddp).parameters
        else {"broadcast_buffers": False}
    )
    return ddp(
        step,
        device_ids=[device.index] if device.type == "cuda" else None,
        find_unused_parameters=os.environ.get(FIND_UNUSED_ENV, "1") != "0",
        **quiet,
    )


def no_sync(module: nn.Module, sync: bool) -> contextlib.AbstractContextManager[Any]:
    """DDP's ``no_sync`` (gradients stay local: a micro-batch inside an accumulation window) unless ``sync``."""
    if sync or not isinstance(module, nn.parallel.DistributedDataParallel):
        return contextlib.nullcontext()
    return module.no_sync()  # type: ignore[no-any-return]


def batch_rows(
    queries: LongTensor,
    candidates: LongTensor | None,
    mask: BoolTensor | None,
    rank: int | None = None,
    size: int | None = None,
) -> tuple[LongTensor, LongTensor | None, BoolTensor | None, float]:
    """This rank's rows of a global batch: rows ``rank::size``, and their share of the batch.

    Args:
        queries: ``(B, 3|4)`` the global batch. candidates / mask: ``(B, C)`` its candidates, or ``None``.
        rank / size: default: this process's.

    Returns:
        ``queries (b, 3|4)``, ``candidates (b, C)``, ``mask (b, C)`` and ``share = b / B``. A rank left without
        rows (a last batch smaller than the world) gets row 0 with share 0: it still runs the step, so that
        the collectives match, and its loss is weighted by 0.
    """
    if rank is None or size is None:
        w = world()
        rank, size = w.rank, w.size
    if size == 1:
        return queries, candidates, mask, 1.0
    rows = torch.arange(rank, len(queries), size, device=queries.device)
    share = len(rows) / len(queries)
    if len(rows) == 0:
        rows = torch.zeros(1, dtype=torch.long, device=queries.device)

    def take(x: torch.Tensor | None) -> Any:
        return None if x is None else x[rows]

    return queries[rows], take(candidates), take(mask), share


# ----------------------------------------------------------------------------------------- evaluation
def span(n: int, chunk: int, rank: int | None = None, size: int | None = None) -> tuple[int, int]:
    """This rank's queries ``[lo, hi)`` of ``n`` evaluated in chunks of ``chunk``: a contiguous run of whole
    chunks (chunk boundaries as with one process), the chunks spread as evenly as they go; ``(0, n)`` for one
    process."""
    if rank is None or size is None:
        w = world()
        rank, size = w.rank, w.size
    if size == 1:
        return 0, n
    chunks = -(-n // chunk)
    first, last = rank * chunks // size, (rank + 1) * chunks // size
    return min(first * chunk, n), min(last * chunk, n)


def gather_span(values: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
    """Every rank's ``values[lo:hi]`` (its :func:`span`) in one ``(N,)`` vector on every rank.

    The rest of each rank's vector is zeroed and the vectors are summed: each entry is one rank's value plus
    zeros, exact in any floating type (use float64 ranks).
    """
    if not world().active:
        return values
    full = torch.zeros_like(values)
    full[lo:hi] = values[lo:hi]
    return all_sum(full)
