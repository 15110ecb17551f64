"""Ranking metrics of a set of ranks: MRR, MR and Hits@k (:func:`summarize`)."""

from __future__ import annotations

from collections.abc import Sequence

from kgdistill.types import FloatTensor

__all__ = ["summarize"]


def summarize(ranks: FloatTensor, ks: Sequence[int] = (1, 3, 10)) -> dict[str, float]:
    """MRR, MR and Hits@k of ``ranks (N,)`` as fractions."""
    ranks = ranks.double()
    out = {"mrr": float((1 / ranks).mean()), "mr": float(ranks.mean())}
    for k in ks:
        out[f"hits@{k}"] = float((ranks <= k).double().mean())
    return out
