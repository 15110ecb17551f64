"""Building blocks of the PLM models: a trainable text encoder, token packing, entity and query texts, and the
scaled-cosine interaction with a learnable temperature (bi-encoder); the joint ``(query, tail)`` sequences of
the cross-encoder come from the same pieces (:meth:`QueryTexts.pair_sequences`).

Texts arrive as token tables (:class:`~kgdistill.plm.PLMFeatures`, computed before the model); sequences are
assembled from them with tensor operations only (no tokenizer at run time): pieces are concatenated, padding is
moved to the end by a stable sort, and the batch is cut to its longest sequence.
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from kgdistill.errors import KGDistillError
from kgdistill.io import atomic_save_tensors, read_safetensors
from kgdistill.models.interactions import Interaction
from kgdistill.models.representations import EntityRepresentation, RelationEncoder
from kgdistill.plm.encoders import build_encoder_module
from kgdistill.plm.features import PLMFeatures, TokenTable
from kgdistill.types import BoolTensor, FloatTensor, LongTensor

if TYPE_CHECKING:
    from kgdistill.plm.causal import LMFeatures

__all__ = ["EntityTexts", "PLMEntities", "QueryTexts", "ScaledCosine", "TextEncoder", "pack"]

log = logging.getLogger(__name__)

#: One piece of a sequence: ``(ids (B, L), valid (B, L), token type)``.
Piece = tuple[torch.Tensor, BoolTensor, int]


def pack(pieces: Sequence[Piece]) -> tuple[LongTensor, BoolTensor, LongTensor]:
    """Concatenate pieces and move every row's valid tokens to its front, in order.

    Returns:
        ``ids (B, L)``, ``mask (B, L)`` and ``token_type_ids (B, L)``, ``L`` the longest row.
    """
    ids = torch.cat([p[0].long() for p in pieces], dim=1)
    valid = torch.cat([p[1] for p in pieces], dim=1)
    types = torch.cat([torch.full_like(p[0], p[2], dtype=torch.long) for p in pieces], dim=1)
    order = torch.argsort((~valid).to(torch.int8), dim=1, stable=True)
    width = int(valid.sum(1).max())
    ids, valid, types = (x.gather(1, order)[:, :width] for x in (ids, valid, types))
    return ids.masked_fill(~valid, 0), valid, types.masked_fill(~valid, 0)


def _piece(table: torch.Tensor, lengths: torch.Tensor, rows: LongTensor, kind: int) -> Piece:
    ids = table[rows]
    keep = torch.arange(ids.shape[1], device=ids.device)[None, :] < lengths[rows, None]
    return ids, keep, kind


def _cut(piece: Piece, room: LongTensor) -> Piece:
    """Keep at most ``room (B,)`` tokens of each row of ``piece``."""
    ids, keep, kind = piece
    first = torch.arange(ids.shape[1], device=ids.device)[None, :] < room[:, None]
    return ids, keep & first, kind


def _const(value: int, b: int, device: torch.device, kind: int) -> Piece:
    ones = torch.ones(b, 1, dtype=torch.bool, device=device)
    return torch.full((b, 1), value, dtype=torch.long, device=device), ones, kind


def mean_pool(hidden: FloatTensor, mask: BoolTensor) -> FloatTensor:
    """Mean of ``hidden (N, L, D)`` over the valid tokens of ``mask (N, L)``: ``(N, D)``."""
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp_min(1.0)


class TextEncoder(nn.Module):
    """A Hugging Face encoder, mean-pooled over the attention mask, optionally projected, L2-normalised.

    Args:
        config: the encoder's config dict (:attr:`PLMFeatures.config`).
        state: pre-trained weights, or ``None`` (random; a checkpoint fills them).
        dim: width of a linear projection after pooling, or ``None`` (the encoder's width).
        dropout: overrides every dropout probability of the config, or ``None`` (keep the encoder's).
    """

    def __init__(
        self,
        config: dict[str, Any],
        *,
        state: dict[str, torch.Tensor] | None = None,
        dim: int | None = None,
        dropout: float | None = None,
    ) -> None:
        super().__init__()
        config = dict(config)
        if dropout is not None:
            for k, v in config.items():
                if "dropout" in k and isinstance(v, float):
                    config[k] = dropout
        self.model = build_encoder_module(config)
        if state is not None:
            self.model.load_state_dict(state, strict=True)
        width = int(config["hidden_size"])
        self.proj = nn.Linear(width, dim) if dim is not None else None
        self.dim = dim or width
        params = inspect.signature(self.model.forward).parameters
        self.token_types = "token_type_ids" in params and config.get("type_vocab_size", 0) > 1

    def hidden(self, ids: LongTensor, mask: BoolTensor, types: LongTensor) -> FloatTensor:
        """``ids``, ``mask``, ``types`` ``(N, L)`` -> the last hidden states ``(N, L, D)``."""
        extra = {"token_type_ids": types} if self.token_types else {}
        return self.model(input_ids=ids, attention_mask=mask.long(), **extra)[0]

    def forward(self, ids: LongTensor, mask: BoolTensor, types: LongTensor) -> FloatTensor:
        """``ids``, ``mask``, ``types`` ``(N, L)`` -> unit vectors ``(N, dim)``."""
        pooled = mean_pool(self.hidden(ids, mask, types), mask)
        if self.proj is not None:
            pooled = self.proj(pooled)
        return F.normalize(pooled.float(), dim=-1)


class EntityTexts(EntityRepresentation):
    """The entities' token tables ``tokens (E, L_e)`` and ``lengths (E,)`` (buffers), and the special tokens.

    On its own (the cross-encoder) it holds no vectors: entities are only read as text inside a joint
    sequence, so :meth:`forward` and :meth:`table` refuse.
    """

    def __init__(self, *, tokens: TokenTable, special: dict[str, int]) -> None:
        super().__init__()
        self.register_buffer("tokens", tokens.ids.clone())
        self.register_buffer("lengths", tokens.lengths.clone())
        self.special = dict(special)

    def forward(self, ids: LongTensor) -> FloatTensor:
        raise TypeError(
            "these entities are texts without vectors: score (query, entity) pairs jointly"
        )

    def table(self) -> FloatTensor:
        raise TypeError(
            "these entities are texts without vectors: score (query, entity) pairs jointly"
        )


class PLMEntities(EntityTexts):
    """Entities as ``encoder([CLS] text [SEP])``: unit vectors ``(E, d)``.

    ``forward(ids)`` encodes each distinct id once (in-batch candidates repeat the batch's tails). :meth:`table`
    encodes all entities in chunks of ``chunk_size``, shortest texts together; in eval mode without gradients the
    table is kept until the module is trained again or loaded (one encoding per evaluation), and, once
    :meth:`keep_on_disk` named a file, in that file too: a later process with the same weights reads it instead
    of encoding again.
    """

    def __init__(
        self, *, encoder: TextEncoder, tokens: TokenTable, special: dict[str, int], chunk_size: int
    ) -> None:
        super().__init__(tokens=tokens, special=special)
        self.encoder = encoder
        self.chunk_size = chunk_size
        self._table: FloatTensor | None = None
        self._disk: tuple[Path, str] | None = None
        self.register_load_state_dict_post_hook(lambda module, _: module.forget_disk())

    def keep_on_disk(self, path: Path, key: str) -> None:
        """Keep the eval-mode table in the safetensors file ``path`` under ``key`` (a digest of the weights and
        token tables it was encoded from): read when the file holds that key and shape, else encoded and
        written (atomically; a folder that cannot be written is logged and skipped)."""
        self._disk = (Path(path), key)

    def forget_disk(self) -> None:
        """New weights: neither the kept table nor its file stand for them."""
        self._disk = None
        self.clear_cache()

    def clear_cache(self) -> None:
        self._table = None

    def train(self, mode: bool = True) -> PLMEntities:
        self.clear_cache()
        return super().train(mode)

    def encode_ids(self, ids: LongTensor) -> FloatTensor:
        """Distinct entity ids ``(N,)`` -> ``(N, d)``, in chunks."""
        out = []
        for start in range(0, len(ids), self.chunk_size):
            rows = ids[start : start + self.chunk_size]
            b, dev = len(rows), rows.device
            seq = pack(
                [
                    _const(self.special["cls"], b, dev, 0),
                    _piece(self.tokens, self.lengths, rows, 0),
                    _const(self.special["sep"], b, dev, 0),
                ]
            )
            out.append(self.encoder(*seq))
        if not out:
            return torch.zeros(0, self.encoder.dim, device=ids.device)
        return torch.cat(out)

    def forward(self, ids: LongTensor) -> FloatTensor:
        """``ids (*B,)`` -> ``(*B, d)``."""
        uniq, inverse = torch.unique(ids.reshape(-1), return_inverse=True)
        return self.encode_ids(uniq)[inverse].view(*ids.shape, -1)

    def _compute(self) -> FloatTensor:
        order = torch.argsort(self.lengths, stable=True)
        vectors = self.encode_ids(order)
        return torch.empty_like(vectors).index_copy_(0, order, vectors)

    def table(self) -> FloatTensor:
        """All entity vectors ``(E, d)``, in id order."""
        if self.training or torch.is_grad_enabled():
            return self._compute()
        if self._table is None or self._table.device != self.tokens.device:
            self._table = self._read_disk() if self._disk is not None else None
            if self._table is None:
                self._table = self._compute()
                self._write_disk(self._table)
        return self._table

    def _read_disk(self) -> FloatTensor | None:
        assert self._disk is not None
        path, key = self._disk
        if not path.is_file():
            return None
        try:
            header, tensors = read_safetensors(path, "entity table")
        except KGDistillError as e:
            log.warning("%s; encoding the entities again", e)
            return None
        table = tensors.get("table")
        if header.get("key") != key or table is None or table.shape[0] != len(self.lengths):
            return None
        return table.to(self.tokens.device)

    def _write_disk(self, table: FloatTensor) -> None:
        if self._disk is None:
            return
        path, key = self._disk
        try:
            atomic_save_tensors(path, {"table": table.detach().cpu().contiguous()}, {"key": key})
        except OSError as e:
            log.warning("%s: the entity table is not kept (%s)", path, e)


def register_query_tables(module: nn.Module, features: PLMFeatures | LMFeatures) -> None:
    """The query side's token tables as ``module``'s buffers: relations ``(2R, L_r)`` (``rel_tokens``,
    ``rel_lengths``) and times ``(T, L_t)`` when the graph has them (``temporal``); the special tokens and the
    window (``special``, ``max_length``)."""
    module.register_buffer("rel_tokens", features.relations.ids.clone())
    module.register_buffer("rel_lengths", features.relations.lengths.clone())
    module.temporal = features.times is not None
    if features.times is not None:
        module.register_buffer("time_tokens", features.times.ids.clone())
        module.register_buffer("time_lengths", features.times.lengths.clone())
    module.special = dict(features.special)
    module.max_length = features.max_length


class QueryTexts(RelationEncoder):
    """Token tables of relations ``(2R, L_r)`` and times ``(T, L_t)``: the pieces of a query's text.

    It holds no parameters: the bi-encoder encodes ``[CLS] head [SEP] relation [time] [SEP]`` (:meth:`sequences`)
    with its query encoder, the cross-encoder ``[CLS] head [SEP] relation [time] [SEP] tail [SEP]``
    (:meth:`pair_sequences`). ``temporal`` when the graph has times.
    """

    def __init__(self, *, features: PLMFeatures) -> None:
        super().__init__()
        register_query_tables(self, features)

    def relation_pieces(
        self, r: LongTensor, tau: LongTensor | None
    ) -> tuple[list[Piece], LongTensor]:
        """``r, tau (B,)`` -> the relation (and time) pieces, token type 1, and their tokens ``(B,)``."""
        pieces = [_piece(self.rel_tokens, self.rel_lengths, r, 1)]
        used = self.rel_lengths[r].long()
        if self.temporal:
            assert tau is not None, "a temporal model needs a time column"
            pieces.append(_piece(self.time_tokens, self.time_lengths, tau, 1))
            used = used + self.time_lengths[tau].long()
        return pieces, used

    def sequences(
        self, entities: EntityTexts, h: LongTensor, r: LongTensor, tau: LongTensor | None
    ) -> tuple[LongTensor, BoolTensor, LongTensor]:
        """``h, r, tau (B,)`` -> packed ``ids, mask, types (B, L)`` of ``[CLS] head [SEP] relation [time]
        [SEP]``; the head's text is cut to fit the window."""
        b, dev = len(h), h.device
        rel, used = self.relation_pieces(r, tau)
        room = (self.max_length - 3 - used).clamp_min(0)
        return pack(
            [
                _const(self.special["cls"], b, dev, 0),
                _cut(_piece(entities.tokens, entities.lengths, h, 0), room),
                _const(self.special["sep"], b, dev, 0),
                *rel,
                _const(self.special["sep"], b, dev, 1),
            ]
        )

    def pair_sequences(
        self,
        entities: EntityTexts,
        h: LongTensor,
        r: LongTensor,
        tau: LongTensor | None,
        t: LongTensor,
    ) -> tuple[LongTensor, BoolTensor, LongTensor]:
        """``h, r, tau, t (N,)`` -> packed ``ids, mask, types (N, L)`` of ``[CLS] head [SEP] relation [time]
        [SEP] tail [SEP]`` (head and tail token type 0, relation and time 1, as KG-BERT).

        The head and the tail share what the relation, the time and the four special tokens leave of the window:
        each keeps at least half of it, and a shorter text leaves the rest to the other.
        """
        return pack(self.pair_pieces(entities, h, r, tau, t))

    def pair_pieces(
        self,
        entities: EntityTexts,
        h: LongTensor,
        r: LongTensor,
        tau: LongTensor | None,
        t: LongTensor,
    ) -> list[Piece]:
        """The pieces of :meth:`pair_sequences`, unpacked (more can follow them)."""
        n, dev = len(h), h.device
        rel, used = self.relation_pieces(r, tau)
        room = (self.max_length - 4 - used).clamp_min(0)
        len_h, len_t = entities.lengths[h].long(), entities.lengths[t].long()
        tail_room = torch.minimum(len_t, torch.maximum(room // 2, room - len_h))
        return [
            _const(self.special["cls"], n, dev, 0),
            _cut(_piece(entities.tokens, entities.lengths, h, 0), room - tail_room),
            _const(self.special["sep"], n, dev, 0),
            *rel,
            _const(self.special["sep"], n, dev, 1),
            _cut(_piece(entities.tokens, entities.lengths, t, 0), tail_room),
            _const(self.special["sep"], n, dev, 0),
        ]


class ScaledCosine(Interaction):
    """``score = <q, t> / T`` for unit vectors, with a learnable temperature ``T = exp(-log_inv_t)``.

    ``T`` is kept in ``[min_temperature, max_temperature]`` by clamping ``log_inv_t`` (no gradient beyond the
    bounds). ``combine(h, r)`` scales the query vector ``h`` (``r`` is the same vector: a bi-encoder encodes head
    and relation together), so every scoring path of :class:`Interaction` gives ``cos / T``.
    """

    def __init__(
        self,
        *,
        temperature: float,
        learn: bool = True,
        min_temperature: float = 0.01,
        max_temperature: float = 1.0,
    ) -> None:
        super().__init__()
        self.log_inv_t = nn.Parameter(torch.tensor(-math.log(temperature)), requires_grad=learn)
        self.bounds = (-math.log(max_temperature), -math.log(min_temperature))

    def scale(self) -> FloatTensor:
        """``1 / T``, a scalar tensor."""
        return self.log_inv_t.clamp(*self.bounds).exp()

    def combine(self, h: FloatTensor, r: FloatTensor) -> FloatTensor:
        return h * self.scale()
