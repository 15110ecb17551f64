"""The LLM scorer: a light trainable head over frozen text encodings of entities, relations and times.

The text of every entity, relation (and its reciprocal) and time is encoded once by a language-model encoder
(:mod:`kgdistill.llm`) and kept frozen as buffers. A small head maps a query ``(h, r, tau)`` to a vector and
scores every candidate entity by a dot product with its projected encoding plus a learned per-entity bias::

    c_e = W_c x_e                                        (E, dim)   candidate vectors
    q   = W_o gelu(W_h c_h + W_r x_r + W_t x_tau + b)   (B, dim)   query vectors
    s   = q @ c^T + bias                                 (B, E)

so 1-N scoring is one matrix product, and the model is an ordinary :class:`~kgdistill.models.KGEModel`:
it trains with the normal loop, evaluates with the normal evaluator and serves as a ``checkpoint`` teacher
(its softmax gives the LLM soft targets of the LLM-guided two-stage distillation). The bias is carried as the
last column of the entity vectors (and a constant 1 in the query), so the interaction stays a plain dot
product.
"""

from __future__ import annotations

import torch
from torch import nn

from kgdistill.features import TextFeatures
from kgdistill.models.base import KGEModel
from kgdistill.models.interactions import Interaction
from kgdistill.models.representations import EntityRepresentation, RelationEncoder
from kgdistill.types import FloatTensor, LongTensor

__all__ = ["LLMScorer", "MLPDot", "TextEntities", "TextRelations"]


class _Cached(nn.Module):
    """Caches a projected table while the module is frozen (eval mode, no grad); cleared by train / load."""

    def __init__(self) -> None:
        super().__init__()
        self._table: FloatTensor | None = None
        self.register_load_state_dict_post_hook(lambda module, _: module._clear())

    def _clear(self) -> None:
        self._table = None

    def train(self, mode: bool = True) -> _Cached:
        self._clear()
        return super().train(mode)

    def _compute(self) -> FloatTensor:
        raise NotImplementedError

    def table(self) -> FloatTensor:
        if self.training or torch.is_grad_enabled():
            return self._compute()
        if self._table is None or self._table.device != self._device():
            self._table = self._compute()
        return self._table

    def _device(self) -> torch.device:
        return next(self.parameters()).device


class TextEntities(_Cached, EntityRepresentation):
    """Frozen entity encodings ``x (E, D)`` -> entity vectors ``[W_c x | bias]`` of width ``dim + 1``."""

    def __init__(self, text: FloatTensor, dim: int, bias: bool = True) -> None:
        super().__init__()
        self.register_buffer("text", text)
        self.proj = nn.Linear(text.shape[1], dim)
        self.bias = nn.Parameter(torch.zeros(text.shape[0])) if bias else None

    def _rows(self, x: FloatTensor, ids: LongTensor | None) -> FloatTensor:
        b = (
            torch.zeros(x.shape[0], device=x.device)
            if self.bias is None
            else (self.bias if ids is None else self.bias[ids])
        )
        return torch.cat([self.proj(x), b.unsqueeze(-1)], dim=-1)

    def _compute(self) -> FloatTensor:
        """All entity vectors ``(E, dim + 1)`` (what scoring against all entities uses)."""
        return self._rows(self.text, None)

    def forward(self, ids: LongTensor) -> FloatTensor:
        """``ids (*B)`` -> ``(*B, dim + 1)``."""
        return self._rows(self.text[ids], ids)


class TextRelations(RelationEncoder):
    """Frozen relation encodings ``(2R, D)`` (reciprocals included) and time encodings ``(T, D)``.

    ``forward`` gives ``W_r x_r + W_t x_tau`` ``(B, hidden)``; a static graph has no time encodings.
    """

    def __init__(self, rel_text: FloatTensor, time_text: FloatTensor | None, hidden: int) -> None:
        super().__init__()
        self.register_buffer("rel_text", rel_text)
        self.rel_proj = nn.Linear(rel_text.shape[1], hidden)
        self.temporal = time_text is not None and time_text.shape[0] > 0
        if self.temporal:
            assert time_text is not None
            self.register_buffer("time_text", time_text)
            self.time_proj = nn.Linear(time_text.shape[1], hidden, bias=False)

    def forward(self, r: LongTensor, tau: LongTensor | None) -> FloatTensor:
        out = self.rel_proj(self.rel_text[r])
        if self.temporal:
            assert tau is not None, "a temporal model needs a time column"
            out = out + self.time_proj(self.time_text[tau])
        return out

    def time_table(self) -> FloatTensor | None:
        return self.time_proj(self.time_text) if self.temporal else None


class MLPDot(Interaction):
    """``q = [W_o gelu(W_h c_h + rel) | 1]``, scored by a dot product with ``[c_t | bias_t]``."""

    def __init__(self, dim: int, hidden: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.head = nn.Linear(dim, hidden, bias=False)
        self.out = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(dropout)

    def combine(self, h: FloatTensor, r: FloatTensor) -> FloatTensor:
        x = self.drop(nn.functional.gelu(self.head(h[:, :-1]) + r))
        q = self.out(x)
        return torch.cat([q, torch.ones_like(q[:, :1])], dim=-1)


class LLMScorer(KGEModel):
    """A :class:`KGEModel` whose representations are frozen text encodings (see the module docstring).

    Args:
        features: the frozen encodings (computed before the model, :func:`kgdistill.features.text_features`;
            zeros of the right shape when the weights come from a checkpoint).
        dim: width of the projected entity and query vectors.
        hidden: width of the query MLP.
    """

    def __init__(
        self,
        *,
        features: TextFeatures,
        dim: int,
        hidden: int,
        entity_bias: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(
            entities=TextEntities(features.entities.clone(), dim, bias=entity_bias),
            relations=TextRelations(
                features.relations.clone(),
                None if features.times is None else features.times.clone(),
                hidden,
            ),
            interaction=MLPDot(dim, hidden, dropout),
        )

    @property
    def text_dim(self) -> int:
        """Width of the frozen encodings (what a checkpoint needs to rebuild the model)."""
        return int(self.entities.text.shape[1])  # type: ignore[union-attr]

    def num_text_bytes(self) -> int:
        """Bytes of the frozen text encodings (buffers, not parameters)."""
        return sum(b.numel() * b.element_size() for b in self.buffers())
