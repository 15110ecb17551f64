"""The model: entity embeddings + a relation encoder + an interaction, and what leaves it (:class:`ModelOutput`)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace

import torch
from torch import nn

from kgdistill.data.batching import shared_negatives
from kgdistill.models.history import HistoryTerm
from kgdistill.models.interactions import Interaction
from kgdistill.models.representations import EntityRepresentation, RelationEncoder
from kgdistill.types import HEAD, REL, TAIL, TIME, BoolTensor, FloatTensor, LongTensor

__all__ = ["KGEModel", "ModelOutput", "Vocab", "masked_log_softmax"]


def masked_log_softmax(
    scores: FloatTensor, mask: BoolTensor | None, temperature: float
) -> FloatTensor:
    """``log softmax(scores / T)`` over the valid entries of each row: ``(B, C) -> (B, C)`` (-inf where masked)."""
    z = scores.float()
    if temperature != 1.0:
        z = z / temperature
    if mask is not None:
        z = z.masked_fill(~mask, float("-inf"))
    return torch.log_softmax(z, dim=-1)


@dataclass(frozen=True)
class Vocab:
    """What a model builder needs to know about the graph: sizes and time labels (from a KG or a checkpoint).

    ``num_relations`` counts the original relations; models hold ``2 * num_relations`` (reciprocals).
    """

    num_entities: int
    num_relations: int
    time_labels: tuple[str, ...] = ()

    @property
    def num_times(self) -> int:
        return len(self.time_labels)


@dataclass
class ModelOutput:
    """The only thing that leaves a model or a teacher; loss terms read nothing else.

    Attributes:
        scores: ``(B, C)`` scores of the candidates (``C = num_entities`` when scoring all).
        mask: ``(B, C)`` valid entries (teachers read from a partial cache), or ``None`` = all valid.
        h: ``(B, d)`` query head representation.
        r: ``(B, d_r)`` (time-conditioned) relation representation.
        t: ``(B, C, d)`` candidate embeddings, or ``(E, d)`` the entity table when scoring all.
        factors: tensors ``(B, k)`` the N3 / L2 regularisers act on (head, relation, true tail).
        time_table: ``(T, d_tau)`` the time embeddings, for temporal smoothness; ``None`` if none.
        known: ``(E,)`` entities a teacher knows (rows of ``t`` that are real), or ``None`` = all.
        ids: ``(B, k)`` the entity of every column of ``scores`` when a teacher answers with its top-k
            candidates only (``scores (B, k)``, a cached teacher); ``None``: the columns are the candidates
            (or all entities). :meth:`dense` expands such an output to all entities.
        scale: ``()`` the factor a cosine model's scores are its cosines times (``1 / temperature`` of a
            bi-encoder, ``scores = scale * <h, t>``), for terms that work in cosine units (an additive
            margin, pre-batch negatives); ``None`` for other models.
        generation: ``(B,)`` the mean negative log-likelihood per token of each query's true answer under
            teacher forcing (a generative model, :mod:`kgdistill.models.generative`); ``None`` for others.
        aux: auxiliary losses (scalars) by name, e.g. ``reconstruction`` (:mod:`kgdistill.models.aux`): only
            those the trainer asked for (:meth:`KGEModel.auxiliary`), empty otherwise.
    """

    scores: FloatTensor
    mask: BoolTensor | None = None
    h: FloatTensor | None = None
    r: FloatTensor | None = None
    t: FloatTensor | None = None
    factors: tuple[FloatTensor, ...] = field(default_factory=tuple)
    time_table: FloatTensor | None = None
    known: BoolTensor | None = None
    ids: LongTensor | None = None
    scale: FloatTensor | None = None
    generation: FloatTensor | None = None
    aux: dict[str, FloatTensor] = field(default_factory=dict)
    # per-output memo of softmaxes: the terms of one step share one pass (and its backward); never copied
    _memo: dict[tuple[object, ...], tuple[BoolTensor | None, FloatTensor]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def log_softmax(self, temperature: float = 1.0, mask: BoolTensor | None = None) -> FloatTensor:
        """``log softmax(scores / T)`` over the ``mask``'s valid entries (-inf elsewhere): ``(B, C)``.

        Computed once per output, temperature and mask: the supervised loss, BKD and the score-matching terms
        of one step read the same tensor, so a step with several such terms pays one pass, not one per term.
        """
        return self._memoised("log", temperature, mask)

    def softmax(self, temperature: float = 1.0, mask: BoolTensor | None = None) -> FloatTensor:
        """``softmax(scores / T)`` over the ``mask``'s valid entries (0 elsewhere): ``(B, C)``, memoised."""
        return self._memoised("prob", temperature, mask)

    def _memoised(self, kind: str, temperature: float, mask: BoolTensor | None) -> FloatTensor:
        # the mask is kept with the value, so its id cannot be reused while the memo lives
        key = (
            kind,
            float(temperature),
            None if mask is None else id(mask),
            torch.is_grad_enabled(),
        )
        hit = self._memo.get(key)
        if hit is None:
            value = (
                masked_log_softmax(self.scores, mask, temperature)
                if kind == "log"
                else self.log_softmax(temperature, mask).exp()
            )
            hit = self._memo[key] = (mask, value)
        return hit[1]

    def dense(self, num_entities: int) -> ModelOutput:
        """A top-k output (``ids`` set) as scores over all entities ``(B, E)``, the rest masked; else itself."""
        if self.ids is None:
            return self
        valid = torch.ones_like(self.scores, dtype=torch.bool) if self.mask is None else self.mask
        rows = self.scores.new_zeros((len(self.ids), num_entities))
        mask = torch.zeros(rows.shape, dtype=torch.bool, device=rows.device)
        rows.scatter_(1, self.ids, torch.where(valid, self.scores, 0))
        mask.scatter_(1, self.ids, valid)
        return replace(self, scores=rows, mask=mask, ids=None)


class KGEModel(nn.Module):
    """A link-prediction model scoring queries ``(h, r, ?, [tau])`` against tails.

    Queries are ``(B, 3)`` or ``(B, 4)`` id tensors ``(h, r, t, [tau])``; ``r`` may be a reciprocal relation
    (``r + num_relations``), so head prediction is tail prediction on the reciprocal. Column ``t`` is the true
    answer; it is only read for the regulariser factors and :meth:`score_hrt`.
    """

    def __init__(
        self,
        *,
        entities: EntityRepresentation,
        relations: RelationEncoder,
        interaction: Interaction,
    ) -> None:
        super().__init__()
        self.entities = entities
        self.relations = relations
        self.interaction = interaction
        self.aux_wanted: frozenset[str] = frozenset()
        #: the recurrence term over the training facts (``model.history``, :mod:`kgdistill.models.history`)
        self.history: HistoryTerm | None = None

    def _plus_history(
        self, queries: LongTensor, scores: FloatTensor, candidates: LongTensor | None = None
    ) -> FloatTensor:
        """``scores (B, E|C)`` plus the history term of the same entries, if the model has one."""
        if self.history is None:
            return scores
        return self.history.add_to(queries, scores, candidates)

    @property
    def export_refusal(self) -> str | None:
        """Why the model cannot be exported (:mod:`kgdistill.export`), or ``None``."""
        if self.history is not None:
            return (
                "its recurrence term (model.history) looks up the training facts of every query, which the "
                "exported graphs and tables do not hold; serve the run folder instead (kgdistill serve)"
            )
        return None

    @property
    def aux_tasks(self) -> frozenset[str]:
        """Auxiliary losses this model can compute (:attr:`ModelOutput.aux`); none for a KGE model."""
        return frozenset()

    @contextlib.contextmanager
    def auxiliary(self, names: Iterable[str]) -> Iterator[None]:
        """Inside the block, every forward pass also computes the auxiliary losses ``names`` (those of
        :attr:`aux_tasks`; others are ignored). Outside, none is computed (evaluation, serving, teachers)."""
        previous = self.aux_wanted
        self.aux_wanted = frozenset(names) & self.aux_tasks
        try:
            yield
        finally:
            self.aux_wanted = previous

    def aux_losses(self, queries: LongTensor) -> dict[str, FloatTensor]:
        """The wanted auxiliary losses of the batch ``queries (B, 3|4)``: name -> scalar."""
        return {name: self.aux_loss(name, queries) for name in sorted(self.aux_wanted)}

    def aux_loss(self, name: str, queries: LongTensor) -> FloatTensor:
        """One auxiliary loss of the batch ``queries (B, 3|4)`` (a scalar); models with :attr:`aux_tasks`
        override it."""
        raise KeyError(f"{type(self).__name__} has no auxiliary task '{name}'")

    @property
    def temporal(self) -> bool:
        return self.relations.temporal

    def _tau(self, queries: LongTensor) -> LongTensor | None:
        if not self.temporal:
            return None
        if queries.shape[1] < 4:
            raise ValueError("a temporal model needs queries with a time column (B, 4)")
        return queries[:, TIME]

    def encode(self, queries: LongTensor) -> tuple[FloatTensor, FloatTensor]:
        """``queries (B, 3|4)`` -> ``(h (B, d), r (B, d_r))``."""
        return self.entities(queries[:, HEAD]), self.relations(queries[:, REL], self._tau(queries))

    def query_vectors(self, queries: LongTensor) -> FloatTensor:
        """``queries (B, 3|4)`` -> ``q (B, d)`` such that ``score(t) = match(q, t)``."""
        h, r = self.encode(queries)
        return self.interaction.combine(h, r)

    def score_all(self, queries: LongTensor) -> FloatTensor:
        """Scores of every entity as the tail: ``(B, 3|4) -> (B, E)``, one matrix product for bilinear models."""
        scores = self.interaction.score_all(self.query_vectors(queries), self.entities.table())
        return self._plus_history(queries, scores)

    def forward(self, queries: LongTensor, candidates: LongTensor | None = None) -> ModelOutput:
        """Score ``candidates (B, C)`` (entity ids), or all entities when ``None``.

        Returns:
            :class:`ModelOutput` with ``scores (B, C)``, ``h``, ``r``, ``t`` and regulariser factors.
        """
        h, r, t, scores = self.scored(queries, candidates)
        factors = self.interaction.factors(h, r, self.entities(queries[:, TAIL]))
        return ModelOutput(
            scores=scores, h=h, r=r, t=t, factors=factors, time_table=self.relations.time_table()
        )

    def scored(
        self, queries: LongTensor, candidates: LongTensor | None = None
    ) -> tuple[FloatTensor, FloatTensor, FloatTensor, FloatTensor]:
        """``(h, r, t, scores)`` of :meth:`forward`: the encoded queries, the entity vectors scored (``(E, d)``
        or ``(B, C, d)``) and the scores ``(B, E)`` or ``(B, C)``."""
        if candidates is None:
            h, r = self.encode(queries)
            q = self.interaction.combine(h, r)
            t = self.entities.table()
            return h, r, t, self._plus_history(queries, self.interaction.score_all(q, t))
        shared = shared_negatives(candidates)
        wanted = (candidates,) if shared is None else (candidates[:, 0], shared)
        # heads from the entity table too (the encoder is not overridden): one lookup for all
        if type(self).encode is KGEModel.encode:
            h, *ts = self.entities.many(queries[:, HEAD], *wanted)
            r = self.relations(queries[:, REL], self._tau(queries))
        else:
            (h, r), ts = self.encode(queries), list(self.entities.many(*wanted))
        q = self.interaction.combine(h, r)
        if shared is None:
            scores = self.interaction.score_candidates(q, ts[0])
            return h, r, ts[0], self._plus_history(queries, scores, candidates)
        # negatives shared by the batch: one (B, d) x (d, k) product; ``t`` keeps its (B, 1 + k, d) shape
        # (a copy without gradient unless a term reads it)
        pos, neg = ts
        scores = torch.cat(
            [
                self.interaction.score_hrt(q, pos).unsqueeze(1),
                self.interaction.score_all(q, neg),
            ],
            dim=1,
        )
        t = torch.cat([pos.unsqueeze(1), neg.expand(len(pos), *neg.shape)], dim=1)
        return h, r, t, self._plus_history(queries, scores, candidates)

    def score_candidates(self, queries: LongTensor, candidates: LongTensor) -> FloatTensor:
        """Scores of given entities as the tail: ``queries (B, 3|4)``, ``candidates (B, C)`` ids -> ``(B, C)``.

        The re-ranking interface (:func:`kgdistill.evaluate.evaluate_rerank` hands a reranker each query's
        top-k candidates of a retriever): any scorer of candidate lists offers it, e.g. a language model that
        reads the query and the candidates' texts. Higher is better; only the order within a row matters.
        Here it is ``forward(queries, candidates).scores``.
        """
        return self.forward(queries, candidates).scores

    def score_hrt(self, facts: LongTensor) -> FloatTensor:
        """Score of each fact's own tail: ``(B, 3|4) -> (B,)``."""
        scores = self.interaction.score_hrt(
            self.query_vectors(facts), self.entities(facts[:, TAIL])
        )
        return self._plus_history(facts, scores.unsqueeze(1), facts[:, TAIL : TAIL + 1]).squeeze(1)

    def _remote(self) -> int:
        """Entity parameters held by the other ranks when the table is sharded (:mod:`kgdistill.shard`)."""
        remote = getattr(self.entities, "remote_parameters", None)
        return int(remote()) if callable(remote) else 0

    def num_parameters(self) -> int:
        """Parameters of the model (a sharded entity table counted whole)."""
        return sum(p.numel() for p in self.parameters()) + self._remote()

    def num_bytes(self) -> int:
        """Bytes of parameters and buffers (what a shipped student weighs; a sharded table counted whole)."""
        tensors: Sequence[torch.Tensor] = [*self.parameters(), *self.buffers()]
        remote = self._remote() * (self.entities.weight.element_size() if self._remote() else 0)
        return sum(t.numel() * t.element_size() for t in tensors) + remote
