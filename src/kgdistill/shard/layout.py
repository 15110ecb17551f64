"""Which rank owns which entity rows, and the entity representation that holds only this rank's rows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from kgdistill.models.base import KGEModel
from kgdistill.models.representations import EmbeddingTable, EntityRepresentation
from kgdistill.shard.ops import fetch_rows
from kgdistill.types import FloatTensor, LongTensor

__all__ = ["Blocks", "ShardedEntities", "shard_model", "shardable", "unshardable_reason"]


@dataclass(frozen=True)
class Blocks:
    """``num`` rows split over ``size`` ranks: rank ``r`` owns the contiguous rows ``[r num // size,
    (r + 1) num // size)`` (block heights differ by at most one when ``size`` does not divide ``num``)."""

    num: int
    size: int

    def bounds(self, rank: int) -> tuple[int, int]:
        """Rank ``rank``'s rows ``[lo, hi)``."""
        return rank * self.num // self.size, (rank + 1) * self.num // self.size

    def owner(self, ids: LongTensor) -> LongTensor:
        """The rank owning each id of ``ids (*,)``: ``(*,)``."""
        edges = torch.tensor(
            [self.bounds(r)[1] for r in range(self.size)], dtype=torch.long, device=ids.device
        )
        return torch.bucketize(ids, edges, right=True)


class ShardedEntities(EntityRepresentation):
    """Rank ``rank``'s block ``table[lo:hi] (hi - lo, w)`` of an entity table (state-dict key ``weight``).

    ``forward(ids)`` is collective (:func:`~kgdistill.shard.ops.fetch_rows`: every rank calls it with its own
    ids); :meth:`table` is refused, since the whole table exists on no rank. Loading a state dict accepts the
    block or the whole table (an ordinary checkpoint: the block is sliced out of it).
    """

    def __init__(self, weight: FloatTensor, *, num_entities: int, rank: int, size: int) -> None:
        super().__init__()
        self.blocks = Blocks(num_entities, size)
        self.rank = rank
        self.lo, self.hi = self.blocks.bounds(rank)
        if weight.shape[0] != self.hi - self.lo:
            raise ValueError(
                f"rank {rank} holds rows [{self.lo}, {self.hi}) but got {weight.shape[0]}"
            )
        self.weight = nn.Parameter(weight)

    @property
    def num_entities(self) -> int:
        return self.blocks.num

    def forward(self, ids: LongTensor) -> FloatTensor:
        flat = fetch_rows(self.weight, ids.reshape(-1), self.lo, self.hi)
        return flat.view(*ids.shape, self.weight.shape[1])

    def table(self) -> FloatTensor:
        raise RuntimeError(
            "the entity table is sharded over the ranks (train.shard_entities): no rank holds all of it; "
            "score with kgdistill.shard (or load the checkpoint in one process)"
        )

    def remote_parameters(self) -> int:
        """Numbers of the table held by the other ranks."""
        return (self.blocks.num - self.weight.shape[0]) * self.weight.shape[1]

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        key = prefix + "weight"
        full = state_dict.get(key)
        if isinstance(full, torch.Tensor) and full.dim() == 2 and len(full) == self.blocks.num:
            state_dict = {**state_dict, key: full[self.lo : self.hi]}
        super()._load_from_state_dict(state_dict, prefix, *args)

    def extra_repr(self) -> str:
        return f"rows [{self.lo}, {self.hi}) of {self.blocks.num}, width {self.weight.shape[1]}"


def unshardable_reason(model: nn.Module) -> str | None:
    """Why ``model``'s entity table cannot be sharded by rows, or ``None`` when it can.

    Shardable: a plain :class:`~kgdistill.models.KGEModel` (no subclass overriding its scoring) with a table of
    free embeddings and a dot-product interaction, so that ``score_all = q @ E^T`` (DistMult, ComplEx,
    TNTComplEx, TA-DistMult).
    """
    if type(model) is not KGEModel:
        return f"{type(model).__name__} does not score as q @ E^T over an entity table"
    if not isinstance(model.entities, (EmbeddingTable, ShardedEntities)):
        return f"its entities are {type(model.entities).__name__}, not a table of embeddings"
    if model.interaction.kind != "dot":
        return (
            f"its interaction {type(model.interaction).__name__} scores by a distance, not q @ E^T"
        )
    return None


def shardable(model: nn.Module) -> bool:
    """Whether :func:`shard_model` accepts ``model`` (see :func:`unshardable_reason`)."""
    return unshardable_reason(model) is None


def shard_model(model: KGEModel, rank: int, size: int) -> KGEModel:
    """Keep only rank ``rank``'s block of ``model``'s entity table (in place; the whole table is freed).

    The block is a copy of the rows of the table as built, so a sharded run starts from the same weights as a
    single process with the same seed.
    """
    reason = unshardable_reason(model)
    if reason is not None:
        raise ValueError(reason)
    if isinstance(model.entities, ShardedEntities):
        return model
    table = model.entities.weight.detach()
    lo, hi = Blocks(len(table), size).bounds(rank)
    model.entities = ShardedEntities(
        table[lo:hi].clone(), num_entities=len(table), rank=rank, size=size
    )
    return model
