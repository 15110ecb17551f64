"""Queries and batches: every fact gives a tail query and a head query (a tail query on the reciprocal)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from kgdistill.types import HEAD, REL, TAIL, BoolTensor, LongTensor

__all__ = [
    "Batch",
    "both_directions",
    "in_batch_candidates",
    "sample_candidates",
    "shared_candidates",
    "shared_negatives",
]


def both_directions(facts: LongTensor, num_relations: int) -> LongTensor:
    """``(n, 3|4)`` facts -> ``(2n, 3|4)`` queries: first ``(h, r, t)``, then ``(t, r + R, h)``."""
    rev = facts.clone()
    rev[:, HEAD], rev[:, TAIL] = facts[:, TAIL], facts[:, HEAD]
    rev[:, REL] = facts[:, REL] + num_relations
    return torch.cat([facts, rev])


@dataclass
class Batch:
    """One training step's input.

    Attributes:
        queries: ``(B, 3|4)`` query ids ``(h, r, t, [tau])``; column ``t`` is the true answer.
        candidates: ``(B, C)`` entity ids to score, column 0 the true answer; ``None`` = all entities (1-N).
        candidate_mask: ``(B, C)`` valid candidates (in-batch negatives mask the query's own answer when another
            query shares it); ``None`` = all valid.
    """

    queries: LongTensor
    candidates: LongTensor | None = None
    candidate_mask: BoolTensor | None = None

    @property
    def targets(self) -> LongTensor:
        """``(B,)`` index of the true answer in the score row (entity id for 1-N, 0 for sampled candidates)."""
        if self.candidates is None:
            return self.queries[:, TAIL]
        return torch.zeros(len(self.queries), dtype=torch.long, device=self.queries.device)

    def to(self, device: torch.device | str) -> Batch:
        def mv(x: torch.Tensor | None) -> torch.Tensor | None:
            return None if x is None else x.to(device)

        return Batch(self.queries.to(device), mv(self.candidates), mv(self.candidate_mask))


def sample_candidates(
    queries: LongTensor, num_entities: int, num_negatives: int, generator: torch.Generator
) -> LongTensor:
    """``(B, 1 + k)`` candidates: the true tail then ``k`` uniformly drawn entities (corrupted tails)."""
    neg = torch.randint(num_entities, (len(queries), num_negatives), generator=generator).to(
        queries.device
    )
    return torch.cat([queries[:, TAIL : TAIL + 1], neg], dim=1)


def shared_candidates(
    queries: LongTensor, num_entities: int, num_negatives: int, generator: torch.Generator
) -> LongTensor:
    """``(B, 1 + k)`` candidates: the true tail then ``k`` uniformly drawn entities, the same ``k`` for every
    query of the batch (joint negative sampling, as in DGL-KE and PyTorch-BigGraph).

    A model scores them with one ``(B, d) x (d, k)`` product instead of ``B x k`` gathered vectors (see
    :func:`shared_negatives`): on WN18RR, DistMult dim 200, batch 1000, 32 negatives, one CPU thread, a whole
    step (forward, backward, Adagrad) took 12.5 ms against 24.7 ms with per-query negatives (the sampled-step
    benchmark, ``sampled_step.py --threads 1 --data-root DATA``); it needs more epochs to the same MRR, though
    (the training-speed benchmark).
    """
    neg = torch.randint(num_entities, (num_negatives,), generator=generator).to(queries.device)
    return torch.cat([queries[:, TAIL : TAIL + 1], neg.expand(len(queries), -1)], dim=1)


def shared_negatives(candidates: LongTensor) -> LongTensor | None:
    """``(k,)`` the candidates after column 0 when every row of ``candidates (B, 1 + k)`` has the same ones
    (:func:`shared_candidates`), else ``None`` (one row, or no negatives, counts as not shared).

    Scorers use it to score the shared columns once for the whole batch; the scores are the same up to float
    rounding either way. The check is one pass over the ``B x k`` ids.
    """
    if candidates.dim() != 2 or candidates.shape[0] < 2 or candidates.shape[1] < 2:
        return None
    neg = candidates[0, 1:]
    return neg if bool((candidates[1:, 1:] == neg).all()) else None


def in_batch_candidates(
    queries: LongTensor, max_negatives: int | None = None, self_negatives: bool = False
) -> tuple[LongTensor, BoolTensor]:
    """In-batch negatives: every query's candidates are its true tail, then the other queries' true tails.

    The other queries' answers cost no extra encoding (a text encoder embeds each batch's tails once), the
    standard negatives of bi-encoders (SimKGC). A candidate equal to the query's own answer is masked, not a
    negative.

    Args:
        queries: ``(B, 3|4)``; column ``t`` is the true answer.
        max_negatives: keep at most this many other queries' tails per row (the first ones after the row's own
            position, cyclically); ``None``: all ``B - 1``.
        self_negatives: one more last column, the query's own head (SimKGC's self-negatives; masked where the
            head is the answer): a text model whose query contains the head's text otherwise learns nothing
            against ranking the head itself first.

    Returns:
        ``candidates (B, 1 + k [+ 1])`` (column 0 the true tail) and ``mask`` of the same shape, the valid
        candidates.
    """
    tails = queries[:, TAIL]
    b = len(tails)
    k = b - 1 if max_negatives is None else min(max_negatives, b - 1)
    offsets = torch.arange(1, k + 1, device=tails.device)
    others = tails[(torch.arange(b, device=tails.device)[:, None] + offsets[None, :]) % b]  # (B, k)
    candidates = torch.cat([tails[:, None], others], dim=1)
    mask = torch.ones_like(candidates, dtype=torch.bool)
    mask[:, 1:] = others != tails[:, None]
    if self_negatives:
        heads = queries[:, HEAD]
        candidates = torch.cat([candidates, heads[:, None]], dim=1)
        mask = torch.cat([mask, (heads != tails)[:, None]], dim=1)
    return candidates, mask
