"""The bi-encoder: link prediction with a trainable pre-trained text encoder (SimKGC-style).

A query ``(h, r, ?, [tau])`` and every candidate tail are encoded separately by a Hugging Face encoder, mean
pooled and L2-normalised::

    q = enc_q([CLS] text(h) [SEP] text(r) [text(tau)] [SEP])      (B, d)
    t = enc_e([CLS] text(t) [SEP])                                 (E, d)
    s = q @ t^T / T                                                (B, E)

with a learnable temperature ``T``. ``enc_q`` and ``enc_e`` are one encoder by default (``shared_encoder``), or
two copies of the same pre-trained weights, as in SimKGC. Scoring all entities encodes every entity once per
evaluation (cached in eval mode), so the ordinary filtered evaluator ranks all of them; training uses in-batch
candidates (``train.negative_sampling: in_batch``), whose distinct tails are encoded once per step.
"""

from __future__ import annotations

import copy

from kgdistill.models.aux import ReconstructionModel, reconstruction_task
from kgdistill.models.base import ModelOutput
from kgdistill.models.plm import PLMEntities, QueryTexts, ScaledCosine, TextEncoder
from kgdistill.plm.features import PLMFeatures
from kgdistill.types import HEAD, REL, FloatTensor, LongTensor

__all__ = ["BiEncoder"]


class BiEncoder(ReconstructionModel):
    """See the module docstring.

    Args:
        features: the encoder's config and weights and the graph's token tables (computed before the model).
        dim: width of a linear projection after pooling, or ``None`` (the encoder's own width).
        temperature: initial temperature ``T``. learn_temperature: train ``log(1 / T)``.
        min_temperature / max_temperature: the clamp of ``T``.
        shared_encoder: one encoder for queries and entities, else two (the query side a copy).
        dropout: overrides the encoder's dropout probabilities, or ``None``.
        chunk_size: texts per encoder pass when encoding many entities.
    """

    #: why ``kgdistill export`` refuses this model (read by :func:`kgdistill.export.export_model`)
    export_refusal = (
        "its queries and entities go through a transformer text encoder, which the exported graphs and "
        "tables do not carry; serve the run with kgdistill serve, or distil it into a KGE student and export that"
    )

    def __init__(
        self,
        *,
        features: PLMFeatures,
        dim: int | None = None,
        temperature: float = 0.05,
        learn_temperature: bool = True,
        min_temperature: float = 0.01,
        max_temperature: float = 1.0,
        shared_encoder: bool = True,
        dropout: float | None = None,
        chunk_size: int = 256,
    ) -> None:
        encoder = TextEncoder(features.config, state=features.state, dim=dim, dropout=dropout)
        super().__init__(
            entities=PLMEntities(
                encoder=encoder,
                tokens=features.entities,
                special=features.special,
                chunk_size=chunk_size,
            ),
            relations=QueryTexts(features=features),
            interaction=ScaledCosine(
                temperature=temperature,
                learn=learn_temperature,
                min_temperature=min_temperature,
                max_temperature=max_temperature,
            ),
        )
        self.query_encoder = None if shared_encoder else copy.deepcopy(encoder)
        self.reconstruction = reconstruction_task(features)

    def text_encoder(self) -> TextEncoder:
        """The entity encoder: ``reconstruction`` trains it."""
        entities = self.entities
        assert isinstance(entities, PLMEntities)
        return entities.encoder

    def encode(self, queries: LongTensor) -> tuple[FloatTensor, FloatTensor]:
        """``queries (B, 3|4)`` -> the unit query vector twice, as ``(h, r)`` ``(B, d)`` (head and relation are
        encoded together)."""
        entities = self.entities
        assert isinstance(entities, PLMEntities) and isinstance(self.relations, QueryTexts)
        seq = self.relations.sequences(
            entities, queries[:, HEAD], queries[:, REL], self._tau(queries)
        )
        encoder = self.query_encoder if self.query_encoder is not None else entities.encoder
        q = encoder(*seq)
        return q, q

    def forward(self, queries: LongTensor, candidates: LongTensor | None = None) -> ModelOutput:
        """Score ``candidates (B, C)`` or all entities (``None``).

        Returns:
            :class:`ModelOutput` with ``scores (B, C)`` (``cos / T``), ``h = r`` the unit query vectors
            ``(B, d)``, ``t`` the unit entity vectors (``(E, d)`` or ``(B, C, d)``) and ``scale = 1 / T``. No
            regulariser factors: every vector has norm 1.
        """
        h, r, t, scores = self.scored(queries, candidates)
        assert isinstance(self.interaction, ScaledCosine)
        return ModelOutput(
            scores=scores,
            h=h,
            r=r,
            t=t,
            scale=self.interaction.scale(),
            aux=self.aux_losses(queries),
        )

    def num_token_bytes(self) -> int:
        """Bytes of the token tables (buffers, not parameters)."""
        return sum(b.numel() * b.element_size() for n, b in self.named_buffers() if "tokens" in n)
