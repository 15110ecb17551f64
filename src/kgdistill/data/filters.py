"""Known answers per query, for filtered ranking (static and time-aware), as immutable CSR tensors.

The index is built once from the facts of the filter splits in both directions (``(h, r) -> t`` and
``(t, r + R) -> h``) and answers a batch of queries without a Python loop: sorted keys are looked up with
:func:`torch.searchsorted`, the segments gathered with :func:`torch.repeat_interleave`.

Modes (:attr:`FilterIndex.mode`), chosen by :meth:`FilterIndex.build` from the graph and two options,
``time_aware`` and ``time_filter`` (the config's ``eval.time_aware`` / ``eval.time_filter``):

* ``static`` (a static graph, or ``time_aware=False``): key ``(h, r)`` over the original facts, times ignored.
* ``time_filter="validity"`` (default): an answer is removed when it is *true at the query's time*:

  - ``point`` (point times, ICEWS): key ``(h, r, tau)``, answers true on the same day (tkbc);
  - ``interval`` (YAGO11k, Wikidata12k): key ``(h, r)`` over the original facts plus each answer's validity
    ``[lo, hi]`` in bins; an answer is removed when the query's bin lies inside it (open bounds for unknown
    years, see :mod:`kgdistill.data.time`). A query at the ``unknown`` time id uses the static filter.

* ``timestamp`` (``time_filter="timestamp"``, the protocol of the tkbc / TeRo line of papers): key
  ``(h, r, tau)`` over the quadruples *as modelled* (``kg.splits``, the rows the queries are built from, not
  the original facts): an answer ``a`` of a query ``(h, r, ?, tau)`` is removed exactly when a quadruple
  ``(h, r, a, tau)`` (or ``(a, r, h, tau)`` for a head query) of the filter splits carries the **same time
  id** ``tau``. Nothing else about time is compared. On point data this is the ``point`` filter. On interval
  data the time id is the one the fact is modelled at (``data.time.interval_mode``):

  - ``start``: the bin of its start year (of its end year when the start is unknown), so a fact removes
    answers only of queries in that one bin, even where its interval covers the query's bin;
  - ``split``: its ``since <start bin>`` and ``until <end bin>`` time ids; the modifier is part of the id, so a
    ``since`` query is filtered by ``since`` quadruples of the same bin only (TeRo's split);
  - ``expand``: a training fact at every bin of its known interval, a valid / test fact at its start bin;
  - a fact with no known year is modelled at the time id ``unknown`` and filters (and is filtered by) queries
    at ``unknown`` only.

  Use it to compare with papers that filter this way. On interval data every time id a fact is modelled at lies
  inside its validity, so the ``validity`` filter removes every answer ``timestamp`` removes and usually more
  (every answer still true at the query's time): MRR under the two is not comparable.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import get_args

import torch

from kgdistill.config import TimeFilter
from kgdistill.data.batching import both_directions
from kgdistill.data.kg import KG
from kgdistill.data.time import UNKNOWN_ANCHOR
from kgdistill.errors import ConfigError
from kgdistill.types import HEAD, REL, TAIL, TIME, LongTensor

__all__ = ["FILTER_BLOCK", "FILTER_MODES", "TIME_FILTERS", "FilterIndex", "filter_mode"]

#: queries looked up at once by :meth:`FilterIndex.known_chunks` (at least one chunk): a lookup costs a dozen
#: small tensor operations whatever its size, so small evaluation chunks share one.
FILTER_BLOCK = 512
#: the values of ``time_filter`` (``eval.time_filter``)
TIME_FILTERS: tuple[str, ...] = get_args(TimeFilter)
#: every :attr:`FilterIndex.mode` and what it removes from a query's ranking (for protocol lines and docs)
FILTER_MODES = {
    "static": "every known answer of (h, r), times ignored",
    "point": "the answers known on the query's day",
    "interval": "the answers whose validity interval contains the query's time bin, unknown bounds open",
    "timestamp": "the answers of known quadruples with the query's own time id, as tkbc / TeRo",
}
#: the modes whose key holds the query's time id
_TIMED_KEY = ("point", "timestamp")


def filter_mode(time_kind: str, *, time_aware: bool = True, time_filter: str = "validity") -> str:
    """The :attr:`FilterIndex.mode` of a graph whose times are ``time_kind`` under the options (see the module
    docstring).

    Args:
        time_kind: ``KG.time.kind`` (``none``, ``point``, ``interval``) or a catalog kind (``static``, ...).
        time_aware / time_filter: as :meth:`FilterIndex.build`.

    Raises:
        ConfigError: ``time_filter`` is not one of :data:`TIME_FILTERS` (names ``eval.time_filter``).
    """
    if time_filter not in TIME_FILTERS:
        raise ConfigError(
            f"config key 'eval.time_filter': {time_filter!r} is not one of {', '.join(TIME_FILTERS)}"
        )
    if not time_aware or time_kind not in ("point", "interval"):
        return "static"
    return "timestamp" if time_filter == "timestamp" else time_kind


@dataclass(frozen=True)
class FilterIndex:
    """CSR map from query keys to known answers (plus validity intervals for interval data).

    Attributes:
        keys: ``(K,)`` sorted unique query keys.
        offsets: ``(K + 1,)`` segment starts in ``answers``.
        answers: ``(N,)`` answer entity ids.
        lo / hi: ``(N,)`` validity bounds of each answer (interval mode), else ``None``.
        anchors: ``(T,)`` the bin / ordinal of each time id (interval mode), else ``None``.
        mode: ``static``, ``point``, ``interval`` or ``timestamp`` (see :data:`FILTER_MODES`).
    """

    keys: LongTensor
    offsets: LongTensor
    answers: LongTensor
    num_relations: int
    num_times: int
    mode: str
    lo: LongTensor | None = None
    hi: LongTensor | None = None
    anchors: LongTensor | None = None

    @classmethod
    def build(
        cls,
        kg: KG,
        splits: Sequence[str] = ("train", "valid", "test"),
        *,
        time_aware: bool = True,
        time_filter: TimeFilter = "validity",
        mode: str | None = None,
    ) -> FilterIndex:
        """Index the facts of ``splits``.

        Args:
            time_aware: ``False`` on a temporal KG gives the static filter.
            time_filter: ``validity`` (default: ``point`` or ``interval`` by the graph's time kind) or
                ``timestamp`` (see the module docstring); ignored on a static graph or with ``time_aware=False``.
            mode: ``interval`` on any temporal graph (points are intervals ``[t, t]``), instead of the mode of
                the options: key ``(h, r)`` with every answer's validity, what :meth:`gaps` reads.

        Raises:
            ConfigError: an unknown ``time_filter``.
        """
        if mode is None:
            mode = filter_mode(kg.time.kind, time_aware=time_aware, time_filter=time_filter)
        elif mode != "interval" or kg.validity is None:
            raise ConfigError(
                f"an index of mode {mode!r} needs a temporal graph and mode 'interval'"
            )
        # a timed key reads the time ids of the quadruples as modelled; the others the original facts
        rows = torch.cat([(kg.splits if mode in _TIMED_KEY else kg.facts)[s] for s in splits])
        queries = both_directions(rows, kg.num_relations)  # (2n, 3|4)
        key = cls._key(queries, 2 * kg.num_relations, kg.num_times, mode)
        lo = hi = anchors = None
        if mode == "interval":
            assert kg.validity is not None
            val = torch.cat([kg.validity[s] for s in splits]).repeat(2, 1)
            lo, hi = val[:, 0], val[:, 1]
            anchors = torch.tensor(kg.time.anchors, dtype=torch.long)
        key, order = torch.sort(key, stable=True)
        # index_select: a 1-D gather ~3x faster than t[order]
        t = queries[:, TAIL].index_select(0, order)
        if lo is not None and hi is not None:
            lo, hi = lo.index_select(0, order), hi.index_select(0, order)
        keys, counts = torch.unique_consecutive(key, return_counts=True)
        offsets = torch.zeros(len(keys) + 1, dtype=torch.long)
        offsets[1:] = counts.cumsum(0)
        return cls(
            keys=keys,
            offsets=offsets,
            answers=t,
            num_relations=kg.num_relations,
            num_times=kg.num_times,
            mode=mode,
            lo=lo,
            hi=hi,
            anchors=anchors,
        )

    @staticmethod
    def _key(queries: LongTensor, num_directed: int, num_times: int, mode: str) -> LongTensor:
        """``(B,)`` lookup keys of ``queries (B, 3|4)``: ``(h, r)``, with the time id in a timed mode.

        Args:
            num_directed: relations counting reciprocals (``2R``).
        """
        key = queries[:, HEAD] * num_directed + queries[:, REL]
        if mode in _TIMED_KEY:
            key = key * num_times + queries[:, TIME]
        return key

    @property
    def time_aware(self) -> bool:
        """Whether the filter reads the queries' time (every mode but ``static``)."""
        return self.mode != "static"

    def to(self, device: torch.device | str) -> FilterIndex:
        """A copy with every tensor on ``device``."""

        def mv(x: LongTensor | None) -> LongTensor | None:
            return None if x is None else x.to(device)

        return FilterIndex(
            keys=mv(self.keys),
            offsets=mv(self.offsets),
            answers=mv(self.answers),  # type: ignore[arg-type]
            num_relations=self.num_relations,
            num_times=self.num_times,
            mode=self.mode,
            lo=mv(self.lo),
            hi=mv(self.hi),
            anchors=mv(self.anchors),
        )

    def known(self, queries: LongTensor) -> tuple[LongTensor, LongTensor]:
        """Known answers of ``queries (B, 3|4)`` (relations may be reciprocal).

        Returns:
            ``(rows, cols)``: index pairs into a ``(B, E)`` score matrix, one per known answer, ``rows``
            ascending (the answers of query 0 first).
        """
        rows, idx = self._pairs(queries)
        cols = self.answers.index_select(0, idx)
        if self.mode == "interval":
            assert self.lo is not None and self.hi is not None and self.anchors is not None
            at = self.anchors.index_select(0, queries[:, TIME]).index_select(0, rows)
            lo, hi = self.lo.index_select(0, idx), self.hi.index_select(0, idx)
            keep = ((lo <= at) & (at <= hi)) | (at == UNKNOWN_ANCHOR)
            rows, cols = rows[keep], cols[keep]
        return rows, cols

    def gaps(self, queries: LongTensor) -> tuple[LongTensor, LongTensor, LongTensor]:
        """Every indexed answer of ``queries (B, 4)`` with its distance in time (an ``interval`` index).

        Returns:
            ``(rows, cols, gap)``: index pairs into a ``(B, E)`` score matrix, ``rows`` ascending, and ``(N,)``
            how many bins (ordinals) the answer's validity lies from the query's time: 0 inside it, ``-1`` for
            a query at the unknown time.
        """
        if self.mode != "interval":
            raise ValueError(f"gaps() reads an 'interval' index, not {self.mode!r}")
        assert self.lo is not None and self.hi is not None and self.anchors is not None
        rows, idx = self._pairs(queries)
        at = self.anchors.index_select(0, queries[:, TIME]).index_select(0, rows)
        lo, hi = self.lo.index_select(0, idx), self.hi.index_select(0, idx)
        gap = torch.maximum(lo - at, at - hi).clamp_min_(0)
        gap = torch.where(at == UNKNOWN_ANCHOR, torch.full_like(gap, -1), gap)
        return rows, self.answers.index_select(0, idx), gap

    def _pairs(self, queries: LongTensor) -> tuple[LongTensor, LongTensor]:
        """``(rows, idx)``: for every indexed answer of ``queries (B, 3|4)``, its query (ascending) and its
        position in :attr:`answers`."""
        key = self._key(queries, 2 * self.num_relations, self.num_times, self.mode)
        pos = torch.searchsorted(self.keys, key).clamp_max_(len(self.keys) - 1)
        # index_select throughout: 1-D gathers ~3x faster than advanced indexing (x[idx])
        start = self.offsets.index_select(0, pos)
        found = self.keys.index_select(0, pos) == key
        length = (self.offsets.index_select(0, pos + 1) - start).mul_(found)  # 0 if not found
        rows = torch.repeat_interleave(length)  # query i repeated length[i] times
        # pair j of query i reads answers[start[i] + j - (pairs before query i)]
        shift = start.sub_(length.cumsum(0)).add_(length)
        idx = shift.index_select(0, rows).add_(torch.arange(len(rows), device=key.device))
        return rows, idx

    def known_chunks(
        self, queries: LongTensor, chunk: int, block: int = FILTER_BLOCK
    ) -> Iterator[tuple[LongTensor, LongTensor]]:
        """The known answers of ``queries (Q, 3|4)`` chunk by chunk, :meth:`known` run once per block.

        Args:
            queries: all queries, in the order they are scored.
            chunk: queries per chunk; the ``i``-th pair belongs to ``queries[i * chunk : (i + 1) * chunk]``.
            block: about how many queries one lookup covers (rounded up to whole chunks).

        Yields:
            ``(rows, cols)`` per chunk, exactly :meth:`known` of that chunk (rows relative to the chunk).
        """
        for rows, cols, starts, bounds in self._blocks(queries, chunk, block):
            for i, s in enumerate(starts):
                lo, hi = bounds[i], bounds[i + 1]
                yield rows[lo:hi] - s, cols[lo:hi]

    def known_flat_chunks(
        self, queries: LongTensor, chunk: int, width: int, block: int = FILTER_BLOCK
    ) -> Iterator[LongTensor]:
        """As :meth:`known_chunks`, each pair as one flat position ``row * width + col``.

        Yields:
            ``(N,)`` per chunk: positions in the chunk's row-major ``(B, width)`` scores (``scores.view(-1)``),
            which one ``index_fill_`` masks faster than a ``scores[rows, cols]`` assignment.
        """
        for rows, cols, starts, bounds in self._blocks(queries, chunk, block):
            flat = rows.mul_(width).add_(cols)
            for i, s in enumerate(starts):
                yield flat[bounds[i] : bounds[i + 1]] - s * width

    def _blocks(
        self, queries: LongTensor, chunk: int, block: int
    ) -> Iterator[tuple[LongTensor, LongTensor, list[int], list[int]]]:
        """Per block of whole chunks: its pairs (rows relative to the block, ascending), the chunk starts in
        the block, and where each chunk's pairs start (one bound more than starts)."""
        block = chunk * max(1, -(-block // chunk))
        for b in range(0, len(queries), block):
            part = queries[b : b + block]
            rows, cols = self.known(part)
            starts = list(range(0, len(part), chunk))
            marks = torch.tensor([*starts, len(part)], device=rows.device)
            yield rows, cols, starts, torch.searchsorted(rows, marks).tolist()
