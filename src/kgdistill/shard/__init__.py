"""Row-wise sharding of the entity table over the ranks of a ``torchrun`` run (``train.shard_entities``).

Data parallelism (:mod:`kgdistill.dist`) replicates the model on every rank; here rank ``r`` of ``N`` holds only
the entity rows ``[r E / N, (r + 1) E / N)`` with their gradient and optimiser state, for 1-N models whose
scores are ``q @ E^T`` (DistMult, ComplEx, TNTComplEx, TA-DistMult). Relation and time tables stay replicated.

* :mod:`~kgdistill.shard.layout`: the blocks and :class:`ShardedEntities`, the rank's block of the table;
* :mod:`~kgdistill.shard.ops`: collectives with gradients and the cross-entropy with a global log-sum-exp;
* :mod:`~kgdistill.shard.step`: one training step (:class:`ShardedStep`);
* :mod:`~kgdistill.shard.rank`: filtered ranking, exact counts summed over the ranks;
* :mod:`~kgdistill.shard.state`: checkpoints gathered into one ordinary file on rank 0;
* :mod:`~kgdistill.shard.check`: what the config may combine with it.

See ``docs/distributed.md`` for the design, the costs and the limits.
"""

from __future__ import annotations

from kgdistill.shard.check import KEY, check_config, refuse
from kgdistill.shard.layout import (
    Blocks,
    ShardedEntities,
    shard_model,
    shardable,
    unshardable_reason,
)
from kgdistill.shard.rank import evaluate_sharded
from kgdistill.shard.state import (
    gather_model_state,
    gather_optimizer_state,
    local_optimizer_state,
)
from kgdistill.shard.step import SUPPORTED_TERMS, ShardedStep, build_objective, clip_grad_norm

__all__ = [
    "KEY",
    "SUPPORTED_TERMS",
    "Blocks",
    "ShardedEntities",
    "ShardedStep",
    "build_objective",
    "check_config",
    "clip_grad_norm",
    "evaluate_sharded",
    "gather_model_state",
    "gather_optimizer_state",
    "is_sharded",
    "local_optimizer_state",
    "refuse",
    "shard_model",
    "shardable",
    "unshardable_reason",
]


def is_sharded(model: object) -> bool:
    """Whether ``model``'s entity table is sharded over the ranks."""
    return isinstance(getattr(model, "entities", None), ShardedEntities)
