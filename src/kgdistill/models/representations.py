"""Representations: entity embeddings and relation encoders, static or conditioned on time.

A temporal model is a static interaction plus a time-aware relation encoder (tkbc's design):

* :class:`StaticRelations` - ``r``;
* :class:`AddTime` - ``r + tau`` (TTransE);
* :class:`MulTime` - ``r * tau + r_nt`` in complex space (TNTComplEx);
* :class:`LSTMTime` - the last LSTM state over ``[r, time tokens]`` (TA-DistMult / TA-TransE).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from kgdistill.models.interactions import complex_mul
from kgdistill.types import FloatTensor, LongTensor

__all__ = [
    "AddTime",
    "EmbeddingTable",
    "EntityRepresentation",
    "LSTMTime",
    "MulTime",
    "RelationEncoder",
    "StaticRelations",
    "embedding",
    "time_tokens",
]


class EntityRepresentation(nn.Module):
    """Entity ids -> vectors: the one interface every entity representation offers to a model.

    A table of free embeddings (:class:`EmbeddingTable`), frozen text encodings under a trainable projection
    (:class:`~kgdistill.models.text.TextEntities`), or a trainable text encoder all look alike to
    :class:`~kgdistill.models.KGEModel`: ``forward(ids)`` for some entities, :meth:`table` for all of them (what
    1-N scoring multiplies with).
    """

    def forward(self, ids: LongTensor) -> FloatTensor:
        """``ids (*B,)`` -> ``(*B, d)``."""
        raise NotImplementedError

    def table(self) -> FloatTensor:
        """All entity vectors ``(E, d)``, in id order."""
        raise NotImplementedError

    def many(self, *ids: LongTensor) -> tuple[FloatTensor, ...]:
        """``forward`` of each of ``ids``, as one lookup where the representation can (a table: one gradient
        table for all of them)."""
        return tuple(self(i) for i in ids)

    def remote_parameters(self) -> int:
        """Parameters of the representation held by other processes (a table sharded by rows, see
        :mod:`kgdistill.shard`); 0 here."""
        return 0


class _Lookup(torch.autograd.Function):
    """Rows of a table for one or several index tensors; the backward is one zero table and one ``index_add_``
    per index tensor.

    On CPU, PyTorch's dense embedding backward is slower, and every separate lookup of the same table makes its
    own zero table that autograd then adds: a step's heads and candidates (WN18RR, 40,943 x 200, batch 1000, 33
    candidates, one thread) took 20.9 ms forward + backward as two ``F.embedding`` calls and 12.5 ms as one
    lookup here (the sampled-step benchmark, ``sampled_step.py --threads 1``). The gradient is the same sum, in
    another order (equal up to float rounding).
    """

    @staticmethod
    def forward(ctx: Any, weight: FloatTensor, *ids: LongTensor) -> tuple[FloatTensor, ...]:
        ctx.save_for_backward(*ids)
        ctx.rows = weight.shape[0]
        d = weight.shape[1]
        return tuple(weight.index_select(0, i.reshape(-1)).view(*i.shape, d) for i in ids)

    @staticmethod
    def backward(ctx: Any, *grads: FloatTensor | None) -> tuple[FloatTensor | None, ...]:
        ids = ctx.saved_tensors
        out = None
        for i, g in zip(ids, grads, strict=True):
            if g is None:
                continue
            if out is None:
                out = g.new_zeros(ctx.rows, g.shape[-1])
            out.index_add_(0, i.reshape(-1), g.reshape(-1, g.shape[-1]))
        return (out, *(None for _ in ids))


class EmbeddingTable(nn.Embedding, EntityRepresentation):
    """Free embeddings ``(E, d)`` (an :class:`torch.nn.Embedding`: its state-dict key stays ``weight``).

    Trained on CPU, a lookup takes :class:`_Lookup`'s faster backward; elsewhere (CUDA's sorted, deterministic
    backward; no gradient; ONNX export) PyTorch's own embedding.
    """

    def _own_backward(self) -> bool:
        w = self.weight
        return (
            w.device.type == "cpu"
            and w.requires_grad
            and torch.is_grad_enabled()
            and not self.sparse
        )

    def forward(self, ids: LongTensor) -> FloatTensor:
        if self._own_backward():
            return _Lookup.apply(self.weight, ids)[0]  # type: ignore[no-any-return]
        return nn.Embedding.forward(self, ids)

    def many(self, *ids: LongTensor) -> tuple[FloatTensor, ...]:
        if self._own_backward():
            return _Lookup.apply(self.weight, *ids)  # type: ignore[no-any-return]
        return super().many(*ids)

    def table(self) -> FloatTensor:
        return self.weight


def embedding(num: int, dim: int, init_scale: float) -> EmbeddingTable:
    """An embedding table ``(num, dim)`` initialised from ``N(0, init_scale^2)``."""
    emb = EmbeddingTable(num, dim)
    nn.init.normal_(emb.weight, std=init_scale)
    return emb


class RelationEncoder(nn.Module):
    """Maps relation ids and, for temporal encoders, time ids to relation vectors ``(B, d_r)``."""

    temporal: bool = False

    def forward(self, r: LongTensor, tau: LongTensor | None) -> FloatTensor:
        """``r (B,)``, ``tau (B,)`` or ``None`` -> ``(B, d_r)``."""
        raise NotImplementedError

    def time_table(self) -> FloatTensor | None:
        """All time embeddings ``(T, d_tau)`` in time-id order, for the temporal smoothness regulariser."""
        return None


class StaticRelations(RelationEncoder):
    """One vector per relation; the time column, if any, is ignored."""

    def __init__(self, *, num_relations: int, dim: int, init_scale: float) -> None:
        super().__init__()
        self.rel = embedding(num_relations, dim, init_scale)

    def forward(self, r: LongTensor, tau: LongTensor | None) -> FloatTensor:
        return self.rel(r)


class AddTime(RelationEncoder):
    """``r + tau`` (TTransE). Paper: Leblay and Chekol 2018, https://doi.org/10.1145/3184558.3191639"""

    temporal = True

    def __init__(self, *, num_relations: int, num_times: int, dim: int, init_scale: float) -> None:
        super().__init__()
        self.rel = embedding(num_relations, dim, init_scale)
        self.time = embedding(num_times, dim, init_scale)

    def forward(self, r: LongTensor, tau: LongTensor | None) -> FloatTensor:
        assert tau is not None, "a temporal model needs a time column"
        return self.rel(r) + self.time(tau)

    def time_table(self) -> FloatTensor:
        return self.time.weight


class MulTime(RelationEncoder):
    """``r * tau + r_nt`` with complex products (TNTComplEx). Paper: Lacroix et al. 2020,
    https://arxiv.org/abs/2004.04926"""

    temporal = True

    def __init__(self, *, num_relations: int, num_times: int, dim: int, init_scale: float) -> None:
        super().__init__()
        self.rel = embedding(num_relations, dim, init_scale)
        self.rel_nt = embedding(num_relations, dim, init_scale)
        self.time = embedding(num_times, dim, init_scale)

    def forward(self, r: LongTensor, tau: LongTensor | None) -> FloatTensor:
        assert tau is not None, "a temporal model needs a time column"
        return complex_mul(self.rel(r), self.time(tau)) + self.rel_nt(r)

    def time_table(self) -> FloatTensor:
        return self.time.weight


class TimePlexRelations(RelationEncoder):
    """TimePlex's relation and time terms, as one vector ``[r_so + gamma * tau | beta * tau * r_ot]`` that
    :class:`~kgdistill.models.interactions.TimePlexComplEx` turns into the query ``h * (r_so + gamma tau) +
    beta tau * r_ot`` (complex products). Paper: Jain et al. 2020, https://arxiv.org/abs/2010.03526"""

    temporal = True

    def __init__(
        self,
        *,
        num_relations: int,
        num_times: int,
        dim: int,
        init_scale: float,
        beta: float,
        gamma: float,
    ) -> None:
        super().__init__()
        self.rel = embedding(num_relations, dim, init_scale)
        self.rel_time = embedding(num_relations, dim, init_scale)
        self.time = embedding(num_times, dim, init_scale)
        self.beta, self.gamma = beta, gamma

    def forward(self, r: LongTensor, tau: LongTensor | None) -> FloatTensor:
        """``r (B,)``, ``tau (B,)`` -> ``(B, 2 * dim)``: the head's multiplier, then the head-free term."""
        assert tau is not None, "a temporal model needs a time column"
        t = self.time(tau)
        return torch.cat(
            [self.rel(r) + self.gamma * t, self.beta * complex_mul(t, self.rel_time(r))], dim=-1
        )

    def time_table(self) -> FloatTensor:
        return self.time.weight


_DATE = re.compile(r"^(-?)(\d{1,4})(?:-(\d{2})-(\d{2}))?$")


def time_tokens(labels: Sequence[str]) -> tuple[torch.Tensor, list[str]]:
    """Tokenise time labels as TA-DistMult does: ``[modifier] [bc] d y d y d y d y [MM m] [DD d]``.

    ``"since 1990..1993"`` -> ``since 1y 9y 9y 0y`` (a bin is named by its first year); ``"2014-01-05"`` ->
    ``2y 0y 1y 4y 01m 05d``; ``"unknown"`` -> ``unknown``. Sequences are left-padded with ``<pad>`` so that the
    LSTM's last state follows a real token.

    Returns:
        ``(T, L)`` token ids and the token vocabulary.
    """
    seqs = []
    for label in labels:
        toks: list[str] = []
        text = label
        for m in ("since ", "until "):
            if text.startswith(m):
                toks.append(m.strip())
                text = text[len(m) :]
        first = text.split("..")[0]
        match = _DATE.match(first) if first else None
        if match is None:
            toks.append(text or "unknown")
        else:
            sign, year, month, day = match.groups()
            if sign:
                toks.append("bc")
            toks += [f"{d}y" for d in year.zfill(4)]
            if month:
                toks += [f"{month}m", f"{day}d"]
        seqs.append(toks)
    vocab = ["<pad>", *sorted({t for s in seqs for t in s})]
    index = {t: i for i, t in enumerate(vocab)}
    width = max(len(s) for s in seqs)
    table = torch.zeros(len(seqs), width, dtype=torch.long)
    for i, s in enumerate(seqs):
        table[i, width - len(s) :] = torch.tensor([index[t] for t in s], dtype=torch.long)
    return table, vocab


class LSTMTime(RelationEncoder):
    """Last hidden state of an LSTM over ``[r, tokens(tau)]`` (TA-DistMult, TA-TransE).

    Paper: García-Durán et al. 2018, https://arxiv.org/abs/1809.03202
    """

    temporal = True

    def __init__(
        self, *, num_relations: int, time_labels: Sequence[str], dim: int, init_scale: float
    ) -> None:
        super().__init__()
        table, vocab = time_tokens(time_labels)
        self.register_buffer("tokens", table)
        self.rel = embedding(num_relations, dim, init_scale)
        self.token = embedding(len(vocab), dim, init_scale)
        self.lstm = nn.LSTM(dim, dim, batch_first=True)

    def forward(self, r: LongTensor, tau: LongTensor | None) -> FloatTensor:
        assert tau is not None, "a temporal model needs a time column"
        seq = torch.cat(
            [self.rel(r).unsqueeze(1), self.token(self.tokens[tau])], dim=1
        )  # (B, 1 + L, d)
        _, (h_n, _) = self.lstm(seq)
        return h_n[-1]
