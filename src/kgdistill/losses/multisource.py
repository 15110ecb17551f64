"""Terms of multi-source joint pre-training and local re-training (:mod:`kgdistill.multi`).

* ``alignment`` (no teacher): pulls the embeddings of aligned entities together in a union graph whose aligned
  entities are kept apart (``data.multi.tie: separate``); the tied alternative needs no term.
* ``feature`` (teacher): the student's embeddings of aligned entities imitate the teacher's, through a learned
  projection (entity-level FitNet restricted to the entities that link the graphs).
* ``network`` (teacher): the student organises every entity's neighbourhood like the teacher: over a fixed sample
  of each entity's neighbours in the training graph (the target plus its linked subgraph), the softmax of the
  similarities between the entity and its neighbours, KL from the teacher's to the student's.
* prediction-level distillation is ``kd_kl`` (:mod:`kgdistill.losses.kd`) on the target's queries.

Each reads the whole entity table ``t`` of a 1-N step (``train.negatives: 0``).

Paper: Sun et al., "Joint Pre-training and Local Re-training: Transferable Representation Learning on
Multi-source Knowledge Graphs", KDD 2023, https://arxiv.org/abs/2306.02679
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, PositiveFloat, PositiveInt
from torch import nn

from kgdistill.data.batching import Batch
from kgdistill.data.kg import KG
from kgdistill.errors import ConfigError
from kgdistill.losses.base import LOSSES, LossTerm
from kgdistill.models.base import ModelOutput
from kgdistill.types import HEAD, TAIL, FloatTensor, LongTensor

__all__ = ["Alignment", "FeatureKD", "NetworkKD", "neighbour_table"]


@LOSSES.register("alignment")
class Alignment(LossTerm):
    """Mean squared distance ``||e_a - e_b||^2`` over all aligned pairs of the graph's ``links``.

    Paper: the alignment objective of joint multi-KG embedding, e.g. Chen et al. 2017 (MTransE),
    https://arxiv.org/abs/1611.03954
    """

    needs_entity_table: ClassVar[bool] = True

    def __init__(self) -> None:
        super().__init__()
        self.reads = frozenset({"t"})
        self.register_buffer("pairs", torch.zeros((0, 2), dtype=torch.long), persistent=False)

    def bind(self, kg: KG) -> None:
        links = getattr(kg, "links", None)
        if links is None or len(links) == 0:
            raise ConfigError(
                "loss 'alignment' needs aligned entity pairs kept apart: train on a linked collection with "
                "data.multi.view: union and data.multi.tie: separate"
            )
        self.pairs = links.clone()

    def forward(
        self, student: ModelOutput, teacher: ModelOutput | None, batch: Batch
    ) -> FloatTensor:
        e = student.t
        assert e is not None and e.dim() == 2
        a, b = e[self.pairs[:, 0]].float(), e[self.pairs[:, 1]].float()
        return ((a - b) ** 2).sum(-1).mean()


def _batch_entities(batch: Batch) -> LongTensor:
    """Distinct heads and true tails of the batch's queries ``(k,)``."""
    return torch.unique(batch.queries[:, [HEAD, TAIL]].reshape(-1))


class _ProjectedTable(LossTerm):
    """A teacher term on the whole entity table through a learned projection ``W: d_S -> d_T``."""

    requires_teacher: ClassVar[bool] = True
    needs_entity_table: ClassVar[bool] = True

    def __init__(self) -> None:
        super().__init__()
        self.proj: nn.Module = nn.Identity()

    def setup(self, student: ModelOutput, teacher: ModelOutput | None) -> None:
        assert teacher is not None and student.t is not None and teacher.t is not None
        self.proj = nn.Linear(student.t.shape[-1], teacher.t.shape[-1], bias=False)


@LOSSES.register("feature")
class FeatureKD(_ProjectedTable):
    """``mean((W e_S - e_T)^2) / mean(e_T^2)`` over the batch's aligned entities (heads and true tails).

    Args:
        entities: ``aligned`` (the graph's ``anchors``: entities linked to another graph) or ``all``.
        normalize: divide by the mean square of the teacher's rows (the term starts near 1 whatever the
            teacher's scale).

    Paper: Sun et al. 2023, feature knowledge distillation of "Joint Pre-training and Local Re-training:
    Transferable Representation Learning on Multi-source Knowledge Graphs" (KDD 2023),
    https://arxiv.org/abs/2306.02679
    """

    def __init__(
        self, *, entities: Literal["aligned", "all"] = "aligned", normalize: bool = True
    ) -> None:
        super().__init__()
        if entities not in ("aligned", "all"):
            raise ConfigError(f"feature: 'entities' must be 'aligned' or 'all', not {entities!r}")
        self.entities, self.normalize = entities, normalize
        self.reads = frozenset({"t"})
        self.register_buffer("anchors", torch.zeros(0, dtype=torch.bool), persistent=False)

    def bind(self, kg: KG) -> None:
        anchors = getattr(kg, "anchors", None)
        if self.entities == "aligned":
            if anchors is None or not bool(anchors.any()):
                raise ConfigError(
                    "loss 'feature' with entities: aligned needs a graph with aligned entities "
                    "(a target view of a linked collection: data.multi.view); or set entities: all"
                )
            self.anchors = anchors.clone()
        else:
            self.anchors = torch.ones(kg.num_entities, dtype=torch.bool)

    def forward(
        self, student: ModelOutput, teacher: ModelOutput | None, batch: Batch
    ) -> FloatTensor:
        assert teacher is not None and student.t is not None and teacher.t is not None
        ids = _batch_entities(batch)
        keep = self.anchors[ids]
        if teacher.known is not None:
            keep &= teacher.known[ids]
        ids = ids[keep]
        if len(ids) == 0:
            return student.t.new_zeros((), dtype=torch.float32)
        s = self.proj(student.t[ids].float())
        t = teacher.t[ids].float().detach()
        err = ((s - t) ** 2).mean()
        if self.normalize:
            err = err / (t**2).mean().detach().clamp_min(1e-12)
        return err


def neighbour_table(facts: LongTensor, num_entities: int, k: int, seed: int = 0) -> LongTensor:
    """Up to ``k`` distinct neighbours of every entity over ``facts (n, 3)`` in either direction:
    ``(num_entities, k)``, ``-1`` padded. Which neighbours are kept when there are more than ``k`` is fixed by
    ``seed``."""
    f = facts.cpu().numpy()
    pairs = np.concatenate([f[:, [0, 2]], f[:, [2, 0]]])
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    pairs = np.unique(pairs, axis=0)
    rng = np.random.default_rng(seed)
    pairs = pairs[rng.permutation(len(pairs))]
    pairs = pairs[np.argsort(pairs[:, 0], kind="stable")]
    starts = np.searchsorted(pairs[:, 0], np.arange(num_entities))
    rank = np.arange(len(pairs)) - starts[pairs[:, 0]]
    keep = rank < k
    table = np.full((num_entities, k), -1, dtype=np.int64)
    table[pairs[keep, 0], rank[keep]] = pairs[keep, 1]
    return torch.from_numpy(table)


@LOSSES.register("network")
class NetworkKD(_ProjectedTable):
    """KL between the teacher's and the student's neighbour-similarity distributions (see the module docstring).

    For each distinct head ``e`` of the batch (at most ``max_entities``) with sampled neighbours ``n_1..n_k``:
    ``p_T = softmax(cos(t_e, t_n) / tau)`` from the teacher's embeddings and ``p_S = softmax(<W s_e, W s_n>)``
    from the student's through a learned projection ``W``; loss ``KL(p_T || p_S)`` averaged over entities with at
    least two neighbours. The student side is not normalised on purpose: a scale-free similarity has gradients
    ``~ 1 / ||s||``, which for a freshly initialised student (small embeddings) would drown the supervised loss;
    ``W`` learns the scale instead.

    Args:
        neighbours: neighbours sampled per entity (fixed for the run).
        temperature: ``tau`` of the teacher's softmax over cosine similarities.
        max_entities: entities per step.

    Paper: Sun et al. 2023, network knowledge distillation of "Joint Pre-training and Local Re-training:
    Transferable Representation Learning on Multi-source Knowledge Graphs" (KDD 2023),
    https://arxiv.org/abs/2306.02679
    """

    def __init__(
        self,
        *,
        neighbours: Annotated[int, Field(ge=2)] = 16,
        temperature: PositiveFloat = 0.1,
        max_entities: PositiveInt = 1024,
    ) -> None:
        super().__init__()
        if neighbours < 2:
            raise ConfigError("network: 'neighbours' must be >= 2")
        if temperature <= 0:
            raise ConfigError("network: 'temperature' must be > 0")
        self.k, self.temperature, self.max_entities = neighbours, temperature, max_entities
        self.reads = frozenset({"t"})
        self.register_buffer(
            "table", torch.zeros((0, neighbours), dtype=torch.long), persistent=False
        )

    def bind(self, kg: KG) -> None:
        self.table = neighbour_table(kg.splits["train"][:, :3], kg.num_entities, self.k)

    def forward(
        self, student: ModelOutput, teacher: ModelOutput | None, batch: Batch
    ) -> FloatTensor:
        assert teacher is not None and student.t is not None and teacher.t is not None
        ids = torch.unique(batch.queries[:, HEAD])[: self.max_entities]
        nb = self.table[ids]
        valid = nb >= 0
        if teacher.known is not None:
            valid &= teacher.known[nb.clamp_min(0)] & teacher.known[ids].unsqueeze(1)
        rows = valid.sum(1) >= 2
        if not bool(rows.any()):
            return student.t.new_zeros((), dtype=torch.float32)
        ids, nb, valid = ids[rows], nb[rows], valid[rows]
        with torch.no_grad():
            te = F.normalize(teacher.t[ids].float(), dim=-1)  # (B, d_T)
            tn = F.normalize(teacher.t[nb.clamp_min(0)].float(), dim=-1)  # (B, k, d_T)
            zt = (te.unsqueeze(1) * tn).sum(-1) / self.temperature
            log_pt = torch.log_softmax(zt.masked_fill(~valid, float("-inf")), dim=-1)
        e = self.proj(student.t[ids].float())  # (B, d_T)
        n = self.proj(student.t[nb.clamp_min(0)].float())  # (B, k, d_T)
        zs = (e.unsqueeze(1) * n).sum(-1)
        log_ps = torch.log_softmax(zs.masked_fill(~valid, float("-inf")), dim=-1)
        pt = log_pt.exp()
        kl = torch.where(valid, pt * (log_pt - log_ps), torch.zeros_like(pt)).sum(-1)
        return kl.mean()
