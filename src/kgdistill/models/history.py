"""A temporal model's memory of its training facts: the recurrence term of TimePlex (Jain et al. 2020).

An embedding scores ``(h, r, o)`` at time ``tau`` from vectors alone; it cannot tell that ``(h, r, o)`` is a
training fact *at another time*. Such a candidate is often wrong at ``tau`` (a player's former club, a spouse
before the marriage), yet the embedding, having memorised the triple, ranks it high; the time-aware filter does
not remove it, since the fact is not true at ``tau``. TimePlex adds features read from the training graph for
this ("recurrent facts"); its own repository reports YAGO11k 18.93 test MRR for the embedding alone and 23.28
with the features (2,000 dims).

:class:`HistoryTerm` adds, to the score of every candidate ``o`` of a query ``(h, r, ?, tau)`` such that
``(h, r, o)`` is a training fact valid ``g > 0`` bins away from ``tau`` (the nearest such interval)::

    a_r + b_r * exp(-(g / w_r) ** 2)

with ``a, b, w`` learned per relation (reciprocals included: ``6 R`` parameters, zero-initialised offsets and
amplitudes, so a new term changes nothing until training moves it). Training facts valid *at* ``tau`` get no term:
in training that is the query's own answer (the term would learn the label), in evaluation the filter removes
them. The facts are kept as buffers (an ``interval`` :class:`~kgdistill.data.filters.FilterIndex` of the train
split), so a checkpoint carries them. Switched on by the config key ``model.history: true``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from kgdistill.data.filters import FilterIndex
from kgdistill.data.kg import KG
from kgdistill.errors import ConfigError
from kgdistill.types import REL, FloatTensor, LongTensor

__all__ = [
    "HISTORY_OPTIONS",
    "HistoryTerm",
    "history_features",
    "history_meta",
    "history_placeholder",
]

#: the config key of the ``model`` section that switches the term on
HISTORY_OPTIONS = frozenset({"history"})
_FIELDS = ("keys", "offsets", "answers", "lo", "hi", "anchors")


def history_features(kg: KG) -> FilterIndex:
    """The training facts of ``kg`` with their validity, keyed ``(h, r)`` in both directions.

    Raises:
        ConfigError: ``kg`` has no times (names ``model.history``).
    """
    if not kg.temporal or kg.validity is None:
        raise ConfigError(
            f"config key 'model.history': dataset '{kg.name}' has no time column; the term reads the time "
            "of the training facts"
        )
    return FilterIndex.build(kg, ("train",), mode="interval")


def history_meta(index: FilterIndex) -> dict[str, Any]:
    """What rebuilding the term needs from a checkpoint: the buffers' lengths and the index's sizes."""
    return {
        "sizes": {f: len(getattr(index, f)) for f in _FIELDS},
        "num_relations": index.num_relations,
        "num_times": index.num_times,
    }


def history_placeholder(meta: dict[str, Any]) -> FilterIndex:
    """An index of the shapes in ``meta`` (:func:`history_meta`), to be filled by a checkpoint's state dict."""
    zeros = {f: torch.zeros(int(n), dtype=torch.long) for f, n in meta["sizes"].items()}
    return FilterIndex(
        **zeros,  # type: ignore[arg-type]
        num_relations=int(meta["num_relations"]),
        num_times=int(meta["num_times"]),
        mode="interval",
    )


class HistoryTerm(nn.Module):
    """The recurrence term (module docstring): ``queries (B, 4) -> (B, E)`` or, given candidates, ``(B, C)``."""

    def __init__(self, index: FilterIndex, num_entities: int) -> None:
        super().__init__()
        if index.mode != "interval":
            raise ValueError(f"a history term reads an 'interval' index, not {index.mode!r}")
        for f in _FIELDS:
            self.register_buffer(f, getattr(index, f).clone())
        self.num_entities = num_entities
        self.num_relations = index.num_relations
        self.num_times = index.num_times
        directed = 2 * index.num_relations
        self.offset = nn.Parameter(torch.zeros(directed))
        self.amplitude = nn.Parameter(torch.zeros(directed))
        # width in bins: exp(log_width), 2 bins to start with
        self.log_width = nn.Parameter(torch.full((directed,), math.log(2.0)))

    def index(self) -> FilterIndex:
        """The facts as an index (on the buffers' device)."""
        return FilterIndex(
            **{f: getattr(self, f) for f in _FIELDS},
            num_relations=self.num_relations,
            num_times=self.num_times,
            mode="interval",
        )

    def meta(self) -> dict[str, Any]:
        return history_meta(self.index())

    def _sparse(self, queries: LongTensor) -> tuple[LongTensor, FloatTensor]:
        """The entries that get a term: ``(flat, gap)``, ``(N,)`` positions ``row * E + entity`` of a ``(B, E)``
        matrix (ascending, unique) and how many bins from the query's time the nearest training fact
        ``(h, r, o)`` valid at another time lies (``> 0``)."""
        rows, cols, gap = self.index().gaps(queries)
        other = gap > 0
        flat = rows[other] * self.num_entities + cols[other]
        flat, inverse = torch.unique(flat, return_inverse=True)
        nearest = torch.full((len(flat),), math.inf, device=queries.device, dtype=torch.float32)
        nearest.scatter_reduce_(0, inverse, gap[other].float(), reduce="amin")
        return flat, nearest

    def _values(self, queries: LongTensor, flat: LongTensor, gap: FloatTensor) -> FloatTensor:
        """``(N,)`` the term ``a_r + b_r exp(-(g / w_r)^2)`` of the entries ``flat`` at distances ``gap``."""
        r = queries[:, REL].index_select(
            0, torch.div(flat, self.num_entities, rounding_mode="floor")
        )
        width = self.log_width.index_select(0, r).exp()
        return self.offset.index_select(0, r) + self.amplitude.index_select(0, r) * torch.exp(
            -((gap / width) ** 2)
        )

    def nearest(self, queries: LongTensor) -> FloatTensor:
        """``(B, E)``: how many bins from the query's time the nearest training fact ``(h, r, o)`` valid at
        another time lies, ``inf`` where there is none (or the query's time is unknown)."""
        flat, gap = self._sparse(queries)
        dense = torch.full(
            (len(queries), self.num_entities), math.inf, device=queries.device, dtype=torch.float32
        )
        dense.view(-1).index_copy_(0, flat, gap)
        return dense

    def add_to(
        self, queries: LongTensor, scores: FloatTensor, candidates: LongTensor | None = None
    ) -> FloatTensor:
        """``scores (B, E)`` of every entity, or ``(B, C)`` of ``candidates (B, C)``, plus the term.

        Only the few entries of training facts at other times are computed and added (no dense ``(B, E)``
        pass beyond the one copy of the sum), so the term costs little beside the embedding's scores."""
        flat, gap = self._sparse(queries)
        if candidates is None:
            values = self._values(queries, flat, gap).to(scores.dtype)
            return scores.reshape(-1).index_add(0, flat, values).view_as(scores)
        # the candidates' positions in the (B, E) matrix, found among the sorted entries
        rows = torch.arange(len(queries), device=queries.device).unsqueeze(1)
        wanted = (rows * self.num_entities + candidates).reshape(-1)
        if len(flat) == 0:
            return scores
        pos = torch.searchsorted(flat, wanted).clamp_max_(len(flat) - 1)
        found = flat.index_select(0, pos) == wanted
        pos, at = pos[found], torch.nonzero(found).squeeze(1)
        values = self._values(queries, flat.index_select(0, pos), gap.index_select(0, pos))
        return scores.reshape(-1).index_add(0, at, values.to(scores.dtype)).view_as(scores)

    def forward(self, queries: LongTensor, candidates: LongTensor | None = None) -> FloatTensor:
        """The term alone, of every entity ``(B, E)`` or of ``candidates (B, C)`` ids ``(B, C)`` (0 where
        there is none)."""
        shape = (len(queries), self.num_entities) if candidates is None else candidates.shape
        zeros = torch.zeros(shape, device=queries.device, dtype=self.offset.dtype)
        return self.add_to(queries, zeros, candidates)
