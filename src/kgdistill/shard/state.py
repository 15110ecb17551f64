"""Checkpoints of a sharded run: one ordinary file, whatever the number of ranks.

Before a write, every rank sends its entity block (and the optimiser state of it) to rank 0, which writes the
whole table, as a single process would (:func:`gather_model_state`, :func:`gather_optimizer_state`); this
costs one table in rank 0's memory while writing. Reading is the other way: a rank slices its block out of the
whole table (:class:`~kgdistill.shard.layout.ShardedEntities` loads a whole table; :func:`local_optimizer_state`
slices the optimiser state), so a run resumes with any number of ranks, sharded or not, and ``kgdistill
evaluate`` / ``predict`` load a sharded run's checkpoint in one process.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.distributed as tdist

from kgdistill.shard.layout import ShardedEntities
from kgdistill.shard.ops import pad_rows

__all__ = ["gather_block", "gather_model_state", "gather_optimizer_state", "local_optimizer_state"]


def gather_block(block: torch.Tensor, entities: ShardedEntities) -> torch.Tensor | None:
    """The whole table on rank 0 from every rank's ``block (hi - lo, *)`` (``None`` on the other ranks).

    Collective (``torch.distributed.gather``; blocks padded to the tallest, then cut).
    """
    blocks = entities.blocks
    heights = [hi - lo for lo, hi in (blocks.bounds(r) for r in range(blocks.size))]
    tall = max(heights)
    mine = pad_rows(block.detach(), tall)
    parts = [torch.empty_like(mine) for _ in heights] if entities.rank == 0 else None
    tdist.gather(mine, parts, dst=0)
    if parts is None:
        return None
    return torch.cat([p[:h] for p, h in zip(parts, heights, strict=True)]).cpu()


def _sharded(model: torch.nn.Module) -> tuple[str, ShardedEntities]:
    for name, module in model.named_modules():
        if isinstance(module, ShardedEntities):
            return f"{name}.weight" if name else "weight", module
    raise TypeError("the model has no sharded entity table")


def gather_model_state(model: torch.nn.Module) -> dict[str, torch.Tensor] | None:
    """``model.state_dict()`` with the whole entity table, on rank 0 (``None`` elsewhere). Collective."""
    key, ents = _sharded(model)
    full = gather_block(ents.weight, ents)
    if full is None:
        return None
    return {**model.state_dict(), key: full}


def _entity_slot(optimizer: torch.optim.Optimizer, ents: ShardedEntities) -> int:
    """The index of the entity block among the optimiser's parameters (its key in ``state_dict()["state"]``)."""
    params = [p for g in optimizer.param_groups for p in g["params"]]
    return next(i for i, p in enumerate(params) if p is ents.weight)


def gather_optimizer_state(
    optimizer: torch.optim.Optimizer, model: torch.nn.Module
) -> dict[str, Any] | None:
    """``optimizer.state_dict()`` with the entity block's per-row state (Adagrad's sums, Adam's moments) whole,
    on rank 0 (``None`` elsewhere). Collective."""
    _, ents = _sharded(model)
    state = optimizer.state_dict()
    slot = _entity_slot(optimizer, ents)
    mine = state["state"].get(slot, {})
    rows = ents.weight.shape[0]
    gathered: dict[str, Any] = {}
    for k in sorted(mine):  # the same keys in the same order on every rank
        v = mine[k]
        rowwise = isinstance(v, torch.Tensor) and v.dim() >= 1 and v.shape[0] == rows
        gathered[k] = gather_block(v, ents) if rowwise else v
    if ents.rank != 0:
        return None
    out = {**state, "state": {**state["state"]}}
    if mine:
        out["state"][slot] = gathered
    return out


def local_optimizer_state(
    state: dict[str, Any], optimizer: torch.optim.Optimizer, model: torch.nn.Module
) -> dict[str, Any]:
    """An ordinary (whole-table) optimiser state with the entity rows cut to this rank's block, for
    ``optimizer.load_state_dict``."""
    _, ents = _sharded(model)
    slot = _entity_slot(optimizer, ents)
    out = copy.copy(state)
    out["state"] = dict(state["state"])
    entry = out["state"].get(slot)
    if entry:
        n = ents.num_entities
        out["state"][slot] = {
            k: v[ents.lo : ents.hi]
            if isinstance(v, torch.Tensor) and v.dim() >= 1 and v.shape[0] == n
            else v
            for k, v in entry.items()
        }
    return out
