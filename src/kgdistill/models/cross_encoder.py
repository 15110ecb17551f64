"""The cross-encoder: link prediction by one transformer pass over a query and a candidate (KG-BERT-style).

Every ``(query, candidate)`` pair is read as one text by a Hugging Face encoder, and a linear head on its
mean-pooled (or ``[CLS]``) vector gives the pair's score::

    x = enc([CLS] text(h) [SEP] text(r) [text(tau)] [SEP] text(t) [SEP])     (N, L, D)
    s = w^T pool(x) + b                      (or w^T tanh(W pool(x) + c) + b with ``dim``)

Head and tail attend to each other in every layer, which a bi-encoder cannot do, but nothing is shared between
candidates: scoring ``C`` candidates costs ``C`` encoder passes per query. :meth:`CrossEncoder.score_candidates`
is its natural interface (a re-ranker of a retriever's top-k, :func:`kgdistill.evaluate.evaluate_rerank`);
:meth:`CrossEncoder.score_all` works (``E`` passes per query, in chunks) but is only practical on small graphs.
Train it with sampled negatives (``train.negatives > 0``) and ``supervised_ce`` or ``negative_sampling``.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from kgdistill.models.aux import ReconstructionModel, reconstruction_task
from kgdistill.models.base import ModelOutput
from kgdistill.models.interactions import Interaction
from kgdistill.models.plm import EntityTexts, QueryTexts, TextEncoder, mean_pool
from kgdistill.plm.features import PLMFeatures
from kgdistill.types import HEAD, REL, TAIL, BoolTensor, FloatTensor, LongTensor

__all__ = ["CrossEncoder", "PairHead"]

Pooling = Literal["cls", "mean"]


class PairHead(Interaction):
    """The score of a pair from its encoded sequence: pooling, an optional ``tanh`` layer, a linear output.

    Its ``kind`` is ``joint``: scores are no function of separate query and entity vectors, so the vector
    scoring paths of :class:`Interaction` (and an approximate top-k index) do not apply.
    """

    kind = "joint"

    def __init__(self, width: int, *, dim: int | None, pooling: Pooling) -> None:
        super().__init__()
        self.pooling = pooling
        self.dense = nn.Linear(width, dim) if dim is not None else None
        self.out = nn.Linear(dim or width, 1)

    def forward(self, hidden: FloatTensor, mask: BoolTensor) -> FloatTensor:
        """``hidden (N, L, D)``, ``mask (N, L)`` -> scores ``(N,)`` (float32)."""
        pooled = hidden[:, 0] if self.pooling == "cls" else mean_pool(hidden, mask)
        if self.dense is not None:
            pooled = torch.tanh(self.dense(pooled))
        return self.out(pooled).squeeze(-1).float()

    def combine(self, h: FloatTensor, r: FloatTensor) -> FloatTensor:
        raise TypeError(
            "a cross-encoder has no query vectors: it scores (query, entity) pairs jointly"
        )


class CrossEncoder(ReconstructionModel):
    """See the module docstring.

    Args:
        features: the encoder's config and weights and the graph's token tables (computed before the model).
        dim: width of a ``tanh`` layer between the pooled vector and the score (KG-BERT's pooler), or ``None``
            (the score is linear in the pooled vector).
        pooling: ``mean`` (over the sequence's tokens: how sentence encoders such as the packaged
            all-MiniLM-L6-v2 were trained) or ``cls`` (the first token's state, KG-BERT's choice for BERT).
        dropout: overrides the encoder's dropout probabilities, or ``None``.
        chunk_size: ``(query, candidate)`` pairs per encoder pass.
    """

    #: why ``kgdistill export`` refuses this model (read by :func:`kgdistill.export.export_model`)
    export_refusal = (
        "it scores every (query, entity) pair with a transformer pass over their joint text, which the exported "
        "graphs and tables do not carry; use it as a re-ranker in Python (evaluate_rerank), or distil it into "
        "a KGE student and export that"
    )

    def __init__(
        self,
        *,
        features: PLMFeatures,
        dim: int | None = None,
        pooling: Pooling = "mean",
        dropout: float | None = None,
        chunk_size: int = 256,
    ) -> None:
        super().__init__(
            entities=EntityTexts(tokens=features.entities, special=features.special),
            relations=QueryTexts(features=features),
            interaction=PairHead(features.dim, dim=dim, pooling=pooling),
        )
        self.encoder = TextEncoder(features.config, state=features.state, dropout=dropout)
        self.chunk_size = chunk_size
        self.reconstruction = reconstruction_task(features)

    def text_encoder(self) -> TextEncoder:
        """The pair encoder: ``reconstruction`` trains it."""
        return self.encoder

    def score_pairs(self, queries: LongTensor, tails: LongTensor) -> FloatTensor:
        """``queries (N, 3|4)`` and one tail each ``(N,)`` -> scores ``(N,)``, in one encoder pass."""
        entities, relations = self.entities, self.relations
        assert isinstance(entities, EntityTexts) and isinstance(relations, QueryTexts)
        ids, mask, types = relations.pair_sequences(
            entities, queries[:, HEAD], queries[:, REL], self._tau(queries), tails
        )
        head = self.interaction
        assert isinstance(head, PairHead)
        return head(self.encoder.hidden(ids, mask, types), mask)

    def score_candidates(self, queries: LongTensor, candidates: LongTensor) -> FloatTensor:
        """``queries (B, 3|4)``, ``candidates (B, C)`` ids -> ``(B, C)``: one pass per pair, ``chunk_size``
        pairs at a time (with gradients, every chunk's activations are kept for the backward pass)."""
        b, c = candidates.shape
        self._tau(queries)  # a temporal model without a time column fails here, whatever C is
        if b * c == 0:
            return torch.zeros(b, c, device=candidates.device)
        flat = torch.arange(b * c, device=candidates.device)
        out = [
            self.score_pairs(queries[idx // c], candidates[idx // c, idx % c])
            for idx in flat.split(self.chunk_size)
        ]
        return torch.cat(out).view(b, c)

    def score_all(self, queries: LongTensor) -> FloatTensor:
        """Every entity as the tail: ``(B, 3|4) -> (B, E)``; ``B * E`` encoder passes (small graphs only)."""
        entities = self.entities
        assert isinstance(entities, EntityTexts)
        n = entities.tokens.shape[0]
        every = torch.arange(n, device=queries.device).expand(len(queries), n)
        return self.score_candidates(queries, every)

    def score_hrt(self, facts: LongTensor) -> FloatTensor:
        """Score of each fact's own tail: ``(B, 3|4) -> (B,)``."""
        return self.score_candidates(facts, facts[:, TAIL : TAIL + 1])[:, 0]

    def forward(self, queries: LongTensor, candidates: LongTensor | None = None) -> ModelOutput:
        """Score ``candidates (B, C)`` or all entities (``None``).

        Returns:
            :class:`ModelOutput` with ``scores (B, C)`` only: there are no query or entity vectors, and no
            regulariser factors.
        """
        scores = (
            self.score_all(queries)
            if candidates is None
            else self.score_candidates(queries, candidates)
        )
        return ModelOutput(scores=scores, aux=self.aux_losses(queries))

    def encode(self, queries: LongTensor) -> tuple[FloatTensor, FloatTensor]:
        raise TypeError(
            "a cross-encoder has no query vectors: it scores (query, entity) pairs jointly "
            "(score_candidates)"
        )
