"""Known answers per query, for filtered ranking (static and time-aware), as immutable CSR tensors.

The index is built once from the original facts of the filter splits in both directions (``(h, r) -> t`` and
``(t, r + R) -> h``) and answers a batch of queries without a Python loop: sorted keys are looked up with
:func:`torch.searchsorted`, the segments gathered with :func:`torch.repeat_interleave`.

* static: key ``(h, r)``;
* time-aware, point times (ICEWS): key ``(h, r, tau)``, answers true on the same day (tkbc);
* time-aware, intervals: key ``(h, r)`` plus each answer's validity ``[lo, hi]`` in bins; an answer is removed
  when the query's bin lies inside it (open bounds for unknown years, see :mod:`kgdistill.data.time`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from kgdistill.data.kg import KG
from kgdistill.data.time import UNKNOWN_ANCHOR
from kgdistill.types import HEAD, REL, TIME, LongTensor

__all__ = ["FILTER_BLOCK", "FilterIndex"]

#: queries looked up at once by :meth:`FilterIndex.known_chunks` (at least one chunk): a lookup costs a dozen
#: small tensor operations whatever its size, so small evaluation chunks share one.
FILTER_BLOCK = 512


@dataclass(frozen=True)
class FilterIndex:
    """CSR map from query keys to known answers (plus validity intervals for interval data).

    Attributes:
        keys: ``(K,)`` sorted unique query keys.
        offsets: ``(K + 1,)`` segment starts in ``answers``.
        answers: ``(N,)`` answer entity ids.
        lo / hi: ``(N,)`` validity bounds of each answer (interval mode), else ``None``.
        anchors: ``(T,)`` the bin / ordinal of each time id (interval mode), else ``None``.
        mode: ``static``, ``point`` or ``interval``.
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
        cls, kg: KG, splits: Sequence[str] = ("train", "valid", "test"), *, time_aware: bool = True
    ) -> FilterIndex:
        """Index the facts of ``splits``; ``time_aware=False`` on a temporal KG gives the static filter."""
        facts = torch.cat([kg.facts[s] for s in splits])
        R2 = 2 * kg.num_relations
        h = torch.cat([facts[:, 0], facts[:, 2]])
        r = torch.cat([facts[:, 1], facts[:, 1] + kg.num_relations])
        t = torch.cat([facts[:, 2], facts[:, 0]])
        key = h * R2 + r
        mode = "static"
        lo = hi = anchors = None
        if time_aware and kg.temporal:
            assert kg.validity is not None
            val = torch.cat([kg.validity[s] for s in splits]).repeat(2, 1)
            if kg.time.kind == "point":
                mode = "point"
                ordinals = torch.tensor(kg.time.anchors, dtype=torch.long)
                key = key * kg.num_times + torch.searchsorted(ordinals, val[:, 0].contiguous())
            else:
                mode = "interval"
                lo, hi = val[:, 0], val[:, 1]
                anchors = torch.tensor(kg.time.anchors, dtype=torch.long)
        key, order = torch.sort(key, stable=True)
        t = t.index_select(0, order)  # index_select: a 1-D gather ~3x faster than t[order]
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
        key = queries[:, HEAD] * (2 * self.num_relations) + queries[:, REL]
        if self.mode == "point":
            key = key * self.num_times + queries[:, TIME]
        pos = torch.searchsorted(self.keys, key).clamp_max_(len(self.keys) - 1)
        # index_select throughout: 1-D gathers ~3x faster than advanced indexing (x[idx])
        start = self.offsets.index_select(0, pos)
        found = self.keys.index_select(0, pos) == key
        length = (self.offsets.index_select(0, pos + 1) - start).mul_(found)  # 0 if not found
        rows = torch.repeat_interleave(length)  # query i repeated length[i] times
        # pair j of query i reads answers[start[i] + j - (pairs before query i)]
        shift = start.sub_(length.cumsum(0)).add_(length)
        idx = shift.index_select(0, rows).add_(torch.arange(len(rows), device=key.device))
        cols = self.answers.index_select(0, idx)
        if self.mode == "interval":
            assert self.lo is not None and self.hi is not None and self.anchors is not None
            at = self.anchors.index_select(0, queries[:, TIME]).index_select(0, rows)
            lo, hi = self.lo.index_select(0, idx), self.hi.index_select(0, idx)
            keep = ((lo <= at) & (at <= hi)) | (at == UNKNOWN_ANCHOR)
            rows, cols = rows[keep], cols[keep]
        return rows, cols

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
