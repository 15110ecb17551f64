"""Checking an export against its PyTorch model: score differences, top-10 agreement, test MRR."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from kgdistill.types import FloatTensor, LongTensor

__all__ = ["compare_scores", "compare_topk"]

#: queries scored per call while comparing
_CHUNK = 256


def _agree_up_to_ties(
    ref: FloatTensor, ids: LongTensor, ref_values: FloatTensor, rtol: float
) -> torch.Tensor:
    """``(B,)``: the reference's scores of ``ids (B, k)`` equal its own top-k ``ref_values (B, k)`` (so ``ids``
    is a reference top-k, up to ties within ``rtol`` of the row's largest magnitude)."""
    tol = rtol * (1.0 + ref.abs().amax(dim=1, keepdim=True))
    return ((ref.gather(1, ids) - ref_values).abs() <= tol).all(dim=1)


@torch.no_grad()
def compare_scores(
    reference: Callable[[LongTensor], FloatTensor],
    exported: Callable[[LongTensor], FloatTensor],
    queries: LongTensor,
    *,
    k: int = 10,
    rtol: float = 1e-5,
) -> dict[str, Any]:
    """Score ``queries (n, 3|4)`` with both scorers (``(B, 3|4) -> (B, E)``) and compare.

    Returns:
        ``max_abs_diff`` (over every score), ``top{k}_identical`` (share of queries whose top-k ids are the same,
        in the same order), ``top{k}_agree_up_to_ties`` (share whose exported top-k is a top-k of the reference
        once scores within ``rtol`` are taken as ties) and ``queries``.
    """
    diff, same, agree = 0.0, 0, 0
    for s in range(0, len(queries), _CHUNK):
        q = queries[s : s + _CHUNK]
        ref, out = reference(q).float(), exported(q).float()
        diff = max(diff, float((ref - out).abs().max()))
        kk = min(k, ref.shape[1])
        ref_top, out_ids = torch.topk(ref, kk, dim=1), torch.topk(out, kk, dim=1).indices
        same += int((ref_top.indices == out_ids).all(dim=1).sum())
        agree += int(_agree_up_to_ties(ref, out_ids, ref_top.values, rtol).sum())
    n = max(len(queries), 1)
    return {
        "queries": len(queries),
        "max_abs_diff": diff,
        f"top{k}_identical": same / n,
        f"top{k}_agree_up_to_ties": agree / n,
    }


@torch.no_grad()
def compare_topk(
    reference: Callable[[LongTensor], FloatTensor],
    exported: Callable[[LongTensor], tuple[FloatTensor, LongTensor]],
    queries: LongTensor,
    *,
    k: int = 10,
    rtol: float = 1e-5,
) -> dict[str, Any]:
    """Like :func:`compare_scores` for a top-k graph (``(B, 3|4) -> (values (B, K), ids (B, K))``): the
    differences of its values and the agreement of its first ``min(k, K)`` ids with the reference."""
    diff, same, agree = 0.0, 0, 0
    for s in range(0, len(queries), _CHUNK):
        q = queries[s : s + _CHUNK]
        ref = reference(q).float()
        values, ids = exported(q)
        ref_top = torch.topk(ref, values.shape[1], dim=1)
        diff = max(diff, float((ref_top.values - values.float()).abs().max()))
        kk = min(k, values.shape[1])
        same += int((ref_top.indices[:, :kk] == ids[:, :kk]).all(dim=1).sum())
        agree += int(_agree_up_to_ties(ref, ids[:, :kk], ref_top.values[:, :kk], rtol).sum())
    n = max(len(queries), 1)
    return {
        "queries": len(queries),
        "max_abs_diff": diff,
        f"top{k}_identical": same / n,
        f"top{k}_agree_up_to_ties": agree / n,
    }
