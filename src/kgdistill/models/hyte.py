"""HyTE: TransE on per-time hyperplanes, scored 1-N without a ``batch x entities x dim`` tensor."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kgdistill.models.base import KGEModel, ModelOutput
from kgdistill.models.interactions import TransE
from kgdistill.models.representations import EntityRepresentation, StaticRelations, embedding
from kgdistill.types import HEAD, REL, TAIL, TIME, FloatTensor, LongTensor

__all__ = ["HyTE"]


def _project(x: FloatTensor, w: FloatTensor) -> FloatTensor:
    """Projection onto the hyperplane with unit normal ``w``: ``(*B, d), (*B, d) -> (*B, d)``."""
    return x - (x * w).sum(-1, keepdim=True) * w


class HyTE(KGEModel):
    """``-||P(h) + P(r) - P(t)||_2`` with ``P`` the projection onto the time's hyperplane.

    1-N scoring uses ``||a - P(t)||^2 = ||a||^2 - 2 a.t + ||t||^2 - (w.t)^2`` for ``a = P(h) + P(r)`` (``a`` lies
    in the hyperplane and ``||w|| = 1``): three matrix products instead of projecting every entity per query.
    The paper uses a margin loss with an L1 distance; here the distance is L2 so that the identity holds.
    Paper: Dasgupta et al. 2018, https://aclanthology.org/D18-1225
    """

    def __init__(
        self, *, entities: EntityRepresentation, relations: StaticRelations, normals: nn.Embedding
    ) -> None:
        super().__init__(entities=entities, relations=relations, interaction=TransE(p=2.0))
        self.normals = normals

    @property
    def temporal(self) -> bool:
        return True

    def _normal(self, queries: LongTensor) -> FloatTensor:
        return F.normalize(self.normals(queries[:, TIME]), dim=-1)

    def encode(self, queries: LongTensor) -> tuple[FloatTensor, FloatTensor]:
        if queries.shape[1] < 4:
            raise ValueError("HyTE needs queries with a time column (B, 4)")
        w = self._normal(queries)
        return _project(self.entities(queries[:, HEAD]), w), _project(
            self.relations.rel(queries[:, REL]), w
        )

    def score_all(self, queries: LongTensor) -> FloatTensor:
        return self._score_all(self.query_vectors(queries), self._normal(queries))

    def _score_all(self, a: FloatTensor, w: FloatTensor) -> FloatTensor:
        t = self.entities.table()
        d2 = (a * a).sum(-1, keepdim=True) - 2 * a @ t.T + (t * t).sum(-1) - (w @ t.T) ** 2
        return -torch.sqrt(d2.clamp_min(0.0) + 1e-9)

    def forward(self, queries: LongTensor, candidates: LongTensor | None = None) -> ModelOutput:
        h, r = self.encode(queries)
        a, w = h + r, self._normal(queries)
        if candidates is None:
            t = self.entities.table()
            scores = self._score_all(a, w)
        else:
            t = self.entities(candidates)
            scores = -torch.sqrt(
                ((a.unsqueeze(1) - _project(t, w.unsqueeze(1))) ** 2).sum(-1) + 1e-9
            )
        true_t = self.entities(queries[:, TAIL])
        return ModelOutput(
            scores=scores, h=h, r=r, t=t, factors=(h, r, true_t), time_table=self.normals.weight
        )

    def score_hrt(self, facts: LongTensor) -> FloatTensor:
        h, r = self.encode(facts)
        pt = _project(self.entities(facts[:, TAIL]), self._normal(facts))
        return -torch.sqrt(((h + r - pt) ** 2).sum(-1) + 1e-9)

    @classmethod
    def build(
        cls, *, num_entities: int, num_relations: int, num_times: int, dim: int, init_scale: float
    ) -> HyTE:
        return cls(
            entities=embedding(num_entities, dim, init_scale),
            relations=StaticRelations(num_relations=num_relations, dim=dim, init_scale=init_scale),
            normals=embedding(num_times, dim, 1.0),
        )
