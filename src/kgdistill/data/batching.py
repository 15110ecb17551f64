"""Queries and batches: every fact gives a tail query and a head query (a tail query on the reciprocal)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from kgdistill.types import HEAD, REL, TAIL, LongTensor

__all__ = ["Batch", "both_directions", "sample_candidates"]


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
    """

    queries: LongTensor
    candidates: LongTensor | None = None

    @property
    def targets(self) -> LongTensor:
        """``(B,)`` index of the true answer in the score row (entity id for 1-N, 0 for sampled candidates)."""
        if self.candidates is None:
            return self.queries[:, TAIL]
        return torch.zeros(len(self.queries), dtype=torch.long, device=self.queries.device)

    def to(self, device: torch.device | str) -> Batch:
        return Batch(
            self.queries.to(device), None if self.candidates is None else self.candidates.to(device)
        )


def sample_candidates(
    queries: LongTensor, num_entities: int, num_negatives: int, generator: torch.Generator
) -> LongTensor:
    """``(B, 1 + k)`` candidates: the true tail then ``k`` uniformly drawn entities (corrupted tails)."""
    neg = torch.randint(num_entities, (len(queries), num_negatives), generator=generator).to(
        queries.device
    )
    return torch.cat([queries[:, TAIL : TAIL + 1], neg], dim=1)
