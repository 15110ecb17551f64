"""Auxiliary tasks of the PLM models over LLM-written contexts (contextualization distillation, arXiv 2402.01729).

* :class:`ContextTexts`: the context tables of :class:`~kgdistill.plm.contexts.ContextTokens` as buffers, and
  the context pieces of a batch of training triples (their own context, else head and tail entity contexts);
* :func:`mask_tokens`: BERT's masking (a share of the maskable positions; of those 80% become the mask token,
  10% a random token, 10% stay) for the ``reconstruction`` task of encoder models;
* :class:`MaskedLMHead`: the masked-token predictor on an encoder's hidden states (dense, GELU, layer norm, then
  the encoder's own word embeddings as the output matrix, plus a bias).

The models compute an auxiliary loss only when the trainer asks for it (:meth:`KGEModel.auxiliary`), so
evaluation and serving never pay for it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kgdistill.errors import ConfigError
from kgdistill.models.base import KGEModel
from kgdistill.models.plm import (
    EntityTexts,
    Piece,
    QueryTexts,
    TextEncoder,
    _const,
    _cut,
    _piece,
    pack,
)
from kgdistill.plm.contexts import ContextTokens, triple_keys
from kgdistill.plm.features import PLMFeatures
from kgdistill.types import HEAD, REL, TAIL, BoolTensor, FloatTensor, LongTensor

__all__ = [
    "ContextTexts",
    "MaskedLMHead",
    "Reconstruction",
    "ReconstructionModel",
    "canonical",
    "mask_tokens",
    "reconstruction_task",
    "select_rows",
]


def canonical(queries: LongTensor, num_relations: int) -> tuple[LongTensor, LongTensor, LongTensor]:
    """The triples ``(h, r, t)`` of ``queries (B, 3|4)`` in their original direction: a reciprocal query
    ``(t, r + R, h)`` gives ``(h, r, t)``. Returns three ``(B,)`` tensors."""
    h, r, t = queries[:, HEAD], queries[:, REL], queries[:, TAIL]
    inverse = r >= num_relations
    return (
        torch.where(inverse, t, h),
        torch.where(inverse, r - num_relations, r),
        torch.where(inverse, h, t),
    )


class ContextTexts(nn.Module):
    """Context token tables (buffers): ``entity_tokens (E, L_c)``, ``entity_lengths (E,)``, ``triple_keys
    (N,)``, ``triple_tokens (N, L_c)``, ``triple_lengths (N,)``. No parameters."""

    def __init__(self, contexts: ContextTokens) -> None:
        super().__init__()
        self.register_buffer("entity_tokens", contexts.entities.ids.clone())
        self.register_buffer("entity_lengths", contexts.entities.lengths.clone())
        self.register_buffer("triple_keys", contexts.keys.clone())
        self.register_buffer("triple_tokens", contexts.triples.ids.clone())
        self.register_buffer("triple_lengths", contexts.triples.lengths.clone())
        self.num_relations = contexts.num_relations
        self.max_length = contexts.max_length

    def own_rows(self, h: LongTensor, r: LongTensor, t: LongTensor) -> LongTensor:
        """Row of each triple ``(B,)`` in the triple table, ``-1`` where it has no own context."""
        if not len(self.triple_keys):
            return torch.full_like(h, -1)
        keys = triple_keys(h, r, t, self.entity_lengths.shape[0], self.num_relations)
        pos = torch.searchsorted(self.triple_keys, keys).clamp_max(len(self.triple_keys) - 1)
        return torch.where(self.triple_keys[pos] == keys, pos, -1)

    def pieces(
        self, h: LongTensor, r: LongTensor, t: LongTensor, kind: int
    ) -> tuple[list[Piece], LongTensor]:
        """The context of each canonical triple ``(B,)``: its own, else the head's then the tail's entity
        context (the same entity once), sharing ``max_length`` tokens (each keeps at least half of it, a shorter
        one leaves the rest to the other). Returns the pieces (token type ``kind``) and the context tokens of
        each row ``(B,)`` (0: no context)."""
        row = self.own_rows(h, r, t)
        own = row >= 0
        pieces: list[Piece] = []
        if len(self.triple_keys):
            ids, keep, _ = _piece(self.triple_tokens, self.triple_lengths, row.clamp_min(0), kind)
            pieces.append((ids, keep & own[:, None], kind))
        len_h = torch.where(own, 0, self.entity_lengths[h].long())
        len_t = torch.where(own | (h == t), 0, self.entity_lengths[t].long())
        room = torch.full_like(len_h, self.max_length)
        tail_room = torch.minimum(len_t, torch.maximum(room // 2, room - len_h))
        for ent, keep_room, present in (
            (h, room - tail_room, len_h > 0),
            (t, tail_room, len_t > 0),
        ):
            e_ids, e_keep, _ = _cut(
                _piece(self.entity_tokens, self.entity_lengths, ent, kind), keep_room
            )
            pieces.append((e_ids, e_keep & present[:, None], kind))
        count = sum(p[1].sum(1) for p in pieces)
        assert isinstance(count, torch.Tensor)
        return pieces, count


def mask_tokens(
    ids: LongTensor,
    maskable: BoolTensor,
    *,
    mask_id: int,
    vocab_size: int,
    rate: float = 0.15,
) -> tuple[LongTensor, BoolTensor]:
    """BERT's masking of ``ids (B, L)`` at the ``maskable (B, L)`` positions.

    Each maskable position is chosen with probability ``rate`` (at least one per row that has any); a chosen
    position becomes ``mask_id`` with probability 0.8, a uniformly random token with 0.1, and stays with 0.1.
    Draws from the default generator of ``ids``' device (seeded per epoch by the trainer, saved in checkpoints).

    Returns:
        the masked ids ``(B, L)`` and the chosen positions ``(B, L)`` (the targets are ``ids`` there).
    """
    draw = torch.rand(ids.shape, device=ids.device)
    chosen = maskable & (draw < rate)
    # a row with maskable tokens but none chosen gets its lowest-draw maskable position
    first = draw.masked_fill(~maskable, 2.0).argmin(1)
    lacking = maskable.any(1) & ~chosen.any(1)
    chosen[lacking, first[lacking]] = True
    action = torch.rand(ids.shape, device=ids.device)
    to_mask = chosen & (action < 0.8)
    to_random = chosen & (action >= 0.8) & (action < 0.9)
    random_ids = torch.randint(0, vocab_size, ids.shape, device=ids.device)
    out = torch.where(to_mask, torch.full_like(ids, mask_id), ids)
    return torch.where(to_random, random_ids, out), chosen


class MaskedLMHead(nn.Module):
    """``logits = LN(gelu(W x + b)) E^T + c``: masked-token prediction with the encoder's word embeddings
    ``E (V, D)`` as the output matrix (BERT's tied head). ``x (K, D) -> (K, V)``."""

    def __init__(self, width: int, vocab_size: int, eps: float = 1e-12) -> None:
        super().__init__()
        self.dense = nn.Linear(width, width)
        self.norm = nn.LayerNorm(width, eps=eps)
        self.bias = nn.Parameter(torch.zeros(vocab_size))

    def forward(self, hidden: FloatTensor, embeddings: FloatTensor) -> FloatTensor:
        x = self.norm(F.gelu(self.dense(hidden)))
        return x @ embeddings.t() + self.bias


def select_rows(count: LongTensor, limit: int | None) -> LongTensor:
    """Rows of a batch that get an auxiliary task: those with a context (``count (B,) > 0``), the first
    ``limit`` of them (the batch is shuffled). Returns row indices ``(K,)``."""
    rows = (count > 0).nonzero()[:, 0]
    return rows if limit is None else rows[:limit]


def _rows(pieces: list[Piece], rows: LongTensor) -> list[Piece]:
    return [(ids[rows], keep[rows], kind) for ids, keep, kind in pieces]


#: token type marking context positions inside :func:`pack` (mapped to 1 before the encoder reads it)
_CONTEXT = 2


class Reconstruction(nn.Module):
    """The ``reconstruction`` task of an encoder model: masked-token recovery over each training triple's
    context, ``[CLS] head [SEP] relation [time] [SEP] tail [SEP] context [SEP]`` (``prefix``) or
    ``[CLS] context [SEP]``, with the context's tokens masked by :func:`mask_tokens`; the loss is the mean
    cross-entropy over the masked positions of the batch.

    Args:
        contexts: the context tables and options (:class:`~kgdistill.plm.contexts.ContextTokens`).
        width: the encoder's hidden width. vocab_size: its vocabulary. eps: its layer-norm epsilon.
        special: ``cls``, ``sep`` and ``mask`` token ids.
    """

    def __init__(
        self,
        contexts: ContextTokens,
        *,
        width: int,
        vocab_size: int,
        special: dict[str, int],
        eps: float,
    ) -> None:
        super().__init__()
        if "mask" not in special:
            raise ConfigError(
                "config key 'model.context': the encoder's tokenizer has no mask token, which the "
                "reconstruction task needs"
            )
        self.texts = ContextTexts(contexts)
        self.head = MaskedLMHead(width, vocab_size, eps)
        self.special = dict(special)
        self.vocab_size = vocab_size
        self.rate = contexts.mask_rate
        self.prefix = contexts.prefix
        self.rows = contexts.rows

    def forward(
        self,
        encoder: TextEncoder,
        relations: QueryTexts,
        entities: EntityTexts,
        queries: LongTensor,
        tau: LongTensor | None,
    ) -> FloatTensor:
        """The mean masked-token cross-entropy of the batch's contexts (a scalar; 0 without any context)."""
        h, r, t = canonical(queries, self.texts.num_relations)
        pieces, count = self.texts.pieces(h, r, t, _CONTEXT)
        rows = select_rows(count, self.rows)
        if not len(rows):
            return self.head.bias.sum() * 0.0
        h, r, t = h[rows], r[rows], t[rows]
        n, dev = len(rows), rows.device
        if self.prefix:
            start = relations.pair_pieces(entities, h, r, None if tau is None else tau[rows], t)
        else:
            start = [_const(self.special["cls"], n, dev, 0)]
        ids, mask, types = pack(
            [*start, *_rows(pieces, rows), _const(self.special["sep"], n, dev, 1)]
        )
        masked, chosen = mask_tokens(
            ids,
            types == _CONTEXT,
            mask_id=self.special["mask"],
            vocab_size=self.vocab_size,
            rate=self.rate,
        )
        hidden = encoder.hidden(masked, mask, types.clamp_max(1))
        words = encoder.model.get_input_embeddings().weight
        logits = self.head(hidden[chosen], words)
        return F.cross_entropy(logits.float(), ids[chosen])


def reconstruction_task(features: PLMFeatures) -> Reconstruction | None:
    """The ``reconstruction`` module of an encoder model built from ``features``, ``None`` without contexts."""
    if features.contexts is None:
        return None
    return Reconstruction(
        features.contexts,
        width=features.dim,
        vocab_size=int(features.config["vocab_size"]),
        special=features.special,
        eps=float(features.config.get("layer_norm_eps", 1e-12)),
    )


class ReconstructionModel(KGEModel):
    """An encoder model with the ``reconstruction`` task when built with contexts: subclasses set
    :attr:`reconstruction` (:func:`reconstruction_task`) and name the encoder it trains (:meth:`text_encoder`)."""

    reconstruction: Reconstruction | None  # set by subclasses (a submodule, or None)

    def text_encoder(self) -> TextEncoder:
        """The encoder whose masked-token recovery the task trains."""
        raise NotImplementedError

    @property
    def aux_tasks(self) -> frozenset[str]:
        """``reconstruction`` when built with contexts."""
        return frozenset() if self.reconstruction is None else frozenset({"reconstruction"})

    def aux_loss(self, name: str, queries: LongTensor) -> FloatTensor:
        if name != "reconstruction" or self.reconstruction is None:
            return super().aux_loss(name, queries)
        entities, relations = self.entities, self.relations
        assert isinstance(entities, EntityTexts) and isinstance(relations, QueryTexts)
        return self.reconstruction(
            self.text_encoder(), relations, entities, queries, self._tau(queries)
        )
