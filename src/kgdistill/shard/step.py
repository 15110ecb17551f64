"""One training step of a 1-N model whose entity table is sharded by rows over the ranks.

Rank ``r`` holds the entity rows ``[lo, hi)`` (:class:`~kgdistill.shard.layout.ShardedEntities`) and the
replicated rest of the model (relation and time tables, an LSTM). For its rows ``b`` of the global batch ``B``:

1. the head rows (and the true tails' rows when a regulariser reads them) come from their owners
   (:func:`~kgdistill.shard.ops.fetch_rows`) and the query vectors ``q = combine(h, r) (b, w)`` are computed;
2. the query vectors of all ranks are all-gathered, ``Q (B, w)``, and scored against the rank's rows only,
   ``S_r = Q @ E_r^T (B, hi - lo)``: the ``B x E`` score matrix exists on no rank;
3. ``supervised_ce`` is the cross-entropy over all entities with a global log-sum-exp
   (:func:`~kgdistill.shard.ops.sharded_cross_entropy`); the regularisers (``n3``, ``l2``, ``lambda3``) are
   computed on the rank's rows, weighted by their share of the batch and summed over the ranks.

The loss is the global batch's, the same value on every rank. Backward gives each rank the gradient of its
own entity rows (complete: no all-reduce of the table) and partial gradients of the replicated tensors, summed
over the ranks by :meth:`ShardedStep.reduce_gradients` before the optimiser steps.
"""

from __future__ import annotations

import torch
import torch.distributed as tdist
from torch import nn

from kgdistill.config import StageConfig
from kgdistill.data.batching import Batch
from kgdistill.data.kg import KG
from kgdistill.losses.supervised import L2, N3, Lambda3, SupervisedCE
from kgdistill.models.base import KGEModel, ModelOutput
from kgdistill.objective import Objective
from kgdistill.shard.layout import ShardedEntities
from kgdistill.shard.ops import gather_rows, global_sum, pad_rows, sharded_cross_entropy
from kgdistill.types import HEAD, REL, TAIL, FloatTensor, LongTensor

__all__ = ["SUPPORTED_TERMS", "ShardedStep", "build_objective", "clip_grad_norm"]

#: loss terms a sharded step computes: the 1-N cross-entropy and the regularisers of the batch's own factors
SUPPORTED_TERMS: dict[str, type[nn.Module]] = {
    "supervised_ce": SupervisedCE,
    "n3": N3,
    "l2": L2,
    "lambda3": Lambda3,
}


def build_objective(stage: StageConfig, index: int, kg: KG) -> Objective:
    """Stage ``index``'s objective for a sharded step: its terms (:data:`SUPPORTED_TERMS`) have no parameters
    that depend on output widths, so no probe pass (which would score the whole table) is needed."""
    objective = Objective.build(
        [t.as_dict() for t in stage.objective], where=f"stages.{index}.objective"
    )
    objective.bind(kg)
    return objective


class ShardedStep(nn.Module):
    """The loss of a global batch for a model with :class:`ShardedEntities` (see the module docstring).

    Args:
        model: a :class:`~kgdistill.models.KGEModel` whose ``entities`` are sharded.
        objective: its terms among :data:`SUPPORTED_TERMS` (checked by
            :func:`kgdistill.shard.check.check_config`).
    """

    def __init__(self, model: KGEModel, objective: Objective) -> None:
        super().__init__()
        if not isinstance(model.entities, ShardedEntities):
            raise TypeError("ShardedStep needs a model whose entities are sharded (shard_model)")
        kinds = tuple(SUPPORTED_TERMS.values())
        for name, term in zip(objective.names, objective.terms, strict=True):
            if not isinstance(term, kinds):
                raise TypeError(f"a sharded step cannot compute loss term '{name}'")
        self.model = model
        self.objective = objective
        self.reads_factors = any(isinstance(t, (N3, L2)) for t in objective.terms)

    @property
    def entities(self) -> ShardedEntities:
        ents = self.model.entities
        assert isinstance(ents, ShardedEntities)
        return ents

    def replicated(self) -> list[nn.Parameter]:
        """Trained parameters every rank holds a copy of (all but the entity block), in a fixed order."""
        block = self.entities.weight
        mine = [p for p in self.model.parameters() if p is not block]
        return [p for p in [*mine, *self.objective.parameters()] if p.requires_grad]

    def forward(
        self, queries: LongTensor, share: float
    ) -> tuple[FloatTensor, dict[str, FloatTensor]]:
        """``queries (b, 3|4)``: this rank's rows of the global batch, ``share``: ``b / B`` (0 for a rank
        that only runs a placeholder row) -> ``(loss (), {term: value ()})``, the global batch's values."""
        model, ents = self.model, self.entities
        b = len(queries)
        ids = queries[:, HEAD]
        if self.reads_factors:
            ids = torch.cat([ids, queries[:, TAIL]])
        rows = ents(ids)  # collective: from their owners
        h = rows[:b]
        r = model.relations(queries[:, REL], model._tau(queries))
        q = model.interaction.combine(h, r)  # (b, w)
        big_q, _, m = gather_rows(q)  # (size * m, w), every rank's rows
        # every rank's targets and row weights (1 / B on real rows, 0 on placeholders and padding)
        real = torch.full((b,), 1.0 if share > 0 else 0.0, dtype=torch.float64, device=q.device)
        meta = torch.stack([queries[:, TAIL].double(), real], 1)
        every = q.new_empty((tdist.get_world_size() * m, 2), dtype=torch.float64)
        tdist.all_gather_into_tensor(every, pad_rows(meta, m))
        targets = every[:, 0].long()
        weights = (every[:, 1] / every[:, 1].sum()).float()
        scores = model.interaction.score_all(big_q, ents.weight)  # (size * m, hi - lo)
        out = ModelOutput(
            scores=q.new_zeros((b, 0)),
            h=h,
            r=r,
            factors=model.interaction.factors(h, r, rows[b:]) if self.reads_factors else (),
            time_table=model.relations.time_table(),
        )
        batch = Batch(queries)
        total = q.new_zeros((), dtype=torch.float32)
        parts: dict[str, FloatTensor] = {}
        for name, w, term in zip(
            self.objective.names, self.objective.weights, self.objective.terms, strict=True
        ):
            if isinstance(term, SupervisedCE):
                value = sharded_cross_entropy(
                    scores, targets, weights, ents.lo, ents.num_entities, term.label_smoothing
                )
            else:  # a term of the rank's own rows: weighted by their share, summed over the ranks
                value = global_sum(term(out, None, batch).float() * share)
            parts[name] = value.detach()
            total = total + w * value
        return total, parts

    def reduce_gradients(self) -> None:
        """Sum the replicated parameters' partial gradients over the ranks (one all-reduce), before a step."""
        params = self.replicated()
        if not params:
            return
        grads = [
            torch.zeros_like(p) if p.grad is None else p.grad for p in params
        ]  # a parameter without gradient on one rank still joins the collective
        flat = torch.cat([g.reshape(-1) for g in grads])
        tdist.all_reduce(flat, op=tdist.ReduceOp.SUM)
        for p, g in zip(params, flat.split([g.numel() for g in grads]), strict=True):
            p.grad = g.view_as(p).clone()


def clip_grad_norm(step: ShardedStep, max_norm: float) -> FloatTensor:
    """:func:`torch.nn.utils.clip_grad_norm_` over the whole model: the entity blocks' squared norms summed over
    the ranks plus the replicated parameters' (after :meth:`ShardedStep.reduce_gradients`). Returns the norm."""
    block = step.entities.weight
    local = block.grad.float().pow(2).sum() if block.grad is not None else block.new_zeros(())
    tdist.all_reduce(local, op=tdist.ReduceOp.SUM)
    rest = [p.grad for p in step.replicated() if p.grad is not None]
    total = (local + sum((g.float().pow(2).sum() for g in rest), local.new_zeros(()))).sqrt()
    coef = (max_norm / (total + 1e-6)).clamp(max=1.0)
    for g in [block.grad, *rest]:
        if g is not None:
            g.mul_(coef.to(g.dtype))
    return total
