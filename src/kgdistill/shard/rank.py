"""Filtered ranking with a sharded entity table: every rank scores every query against its own entities.

For each chunk of queries (the chunks one process uses), rank ``r`` computes ``S_r = q @ E_r^T (b, hi - lo)``,
removes the filtered answers that fall in its columns, and counts the entities scored above and level with
the true answer among its columns. The true answer's score comes from its owner (an all-reduce in which every
other rank adds zero: exact), and the counts are integers summed over the ranks (one all-reduce of ``(3, N)``
int64 at the end: exact). The ranks are the counts one process finds over all columns, so every tie mode
gives one process's MRR, MR and Hits@k, to the last bit, as long as the scores are those of one process (the
same query vectors; a matrix product over fewer columns gives the same dot products; checked in the tests).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.distributed as tdist
from tqdm.auto import tqdm

from kgdistill import dist
from kgdistill.config import TimeFilter
from kgdistill.data.filters import FilterIndex
from kgdistill.data.kg import KG
from kgdistill.evaluate import (
    Metrics,
    _check_ties,
    _EvalMode,
    _metrics,
    _nan_error,
    _setup,
    _tie_rank,
)
from kgdistill.models.base import KGEModel
from kgdistill.shard.layout import ShardedEntities
from kgdistill.types import TAIL, FloatTensor, LongTensor, TieMode

__all__ = ["block_counts", "evaluate_sharded", "local_positions"]


def local_positions(flat: LongTensor, num_entities: int, lo: int, hi: int) -> LongTensor:
    """Flat positions ``row * E + col (N,)`` of a chunk's filtered entries -> those in columns ``[lo, hi)``, as
    positions ``row * (hi - lo) + col - lo`` of the block."""
    rows, cols = flat // num_entities, flat % num_entities
    keep = (cols >= lo) & (cols < hi)
    return rows[keep] * (hi - lo) + cols[keep] - lo


def block_counts(
    scores: FloatTensor, true: FloatTensor, targets: LongTensor, lo: int, flat: LongTensor | None
) -> tuple[LongTensor, LongTensor]:
    """Entities of one block scored above and level with each row's true score.

    Args:
        scores: ``(B, C_r)`` the block's scores (modified in place). true: ``(B,)`` the true answers' scores.
        targets: ``(B,)`` global ids of the true answers (the one in this block is not counted).
        lo: the block's first entity. flat: the block's filtered positions (:func:`local_positions`) or ``None``.

    Returns:
        ``greater (B,)`` and ``equal (B,)`` int64 counts; summed over the blocks, they are the counts of
        :func:`kgdistill.evaluate.rank_filtered` (filtered entries and the true answer set to ``-inf``).
    """
    if flat is not None and len(flat):
        scores.view(-1).index_fill_(0, flat, -math.inf)
    local = targets - lo
    rows = ((local >= 0) & (local < scores.shape[1])).nonzero().squeeze(1)
    scores[rows, local[rows]] = -math.inf
    col = true.unsqueeze(1)
    return (scores > col).sum(1), (scores == col).sum(1)


@torch.inference_mode()
def evaluate_sharded(
    model: KGEModel,
    kg: KG,
    split: str = "test",
    *,
    filter_index: FilterIndex | None = None,
    filtered: bool = True,
    time_aware: bool = True,
    time_filter: TimeFilter = "validity",
    ties: TieMode = "realistic",
    ks: Sequence[int] = (1, 3, 10),
    batch_size: int | None = None,
    progress: bool = False,
    max_queries: int | None = None,
    by_relation: bool = False,
) -> Metrics:
    """:func:`kgdistill.evaluate.evaluate` of a model whose entity table is sharded (collective: every rank calls
    it, and every rank gets the metrics). Arguments as there."""
    _check_ties(ties)
    ents = model.entities
    if not isinstance(ents, ShardedEntities):
        raise TypeError("evaluate_sharded needs a model whose entities are sharded")
    device = ents.weight.device
    width = int(ents.weight.shape[1])
    setup = _setup(
        kg,
        split,
        device,
        filter_index=filter_index,
        filtered=filtered,
        time_aware=time_aware,
        time_filter=time_filter,
        batch_size=batch_size,
        max_queries=max_queries,
        width=width,
    )
    q, chunk, index = setup.queries, setup.batch_size, setup.filter_index
    e = kg.num_entities
    known = index.known_flat_chunks(q, chunk, e) if index is not None else None
    counts = torch.zeros(3, len(q), dtype=torch.long, device=device)  # greater, equal, NaN scores
    with _EvalMode(model):
        for s in tqdm(
            range(0, len(q), chunk),
            desc=f"eval {split}",
            leave=False,
            disable=None if progress and dist.is_main() else True,
        ):
            part = q[s : s + chunk]
            targets = part[:, TAIL]
            scores = model.interaction.score_all(model.query_vectors(part), ents.weight).float()
            local = targets - ents.lo
            inside = (local >= 0) & (local < scores.shape[1])
            true = scores.gather(1, local.clamp(0, scores.shape[1] - 1).unsqueeze(1)).squeeze(1)
            true = torch.where(inside, true, 0.0)
            tdist.all_reduce(true, op=tdist.ReduceOp.SUM)  # the owner's score plus zeros
            flat = next(known) if known is not None else None
            if flat is not None:
                flat = local_positions(flat, e, ents.lo, ents.hi)
            counts[2, s : s + len(part)] = scores.isnan().sum(1)
            greater, equal = block_counts(scores, true, targets, ents.lo, flat)
            counts[0, s : s + len(part)] = greater
            counts[1, s : s + len(part)] = equal
    tdist.all_reduce(counts, op=tdist.ReduceOp.SUM)
    if bool(counts[2].any()):
        raise _nan_error()
    ranks = _tie_rank(counts[0], counts[1], ties)
    return _metrics(ranks, kg, split, setup, ties, ks, by_relation)
