"""Collectives with gradients, and the 1-N cross-entropy over an entity table split by rows.

Every function here is called by every rank with tensors of the same dtype and width (the rows may differ):
the collectives are PyTorch's own (:mod:`torch.distributed`: ``all_gather_into_tensor``,
``reduce_scatter_tensor``, ``all_reduce``), available on gloo (CPU) and NCCL (GPU).

Gradient convention: the global loss ``L`` is replicated (every rank computes its value), and a rank's backward
gives the gradient of ``L`` with respect to the tensors it holds *through the parts of the graph it computed*:

* :func:`gather_rows` (the query vectors of the global batch): rank ``r`` scores every query against its own
  columns, so the gradient of a query is the sum over the ranks of their partial gradients, reduce-scattered
  back to the query's rank;
* :func:`fetch_rows` (entity rows from their owners): the gradient of a fetched row goes back to its owner;
* :func:`global_sum` (a term each rank computed over its own queries): identity backward, each rank's part is
  its own;
* :func:`sharded_cross_entropy`: ``dL/dS_r`` of the rank's own score columns, local.

Gradients of replicated tensors (relation and time tables) are therefore partial sums, summed over the ranks
once a step (:meth:`kgdistill.shard.step.ShardedStep.reduce_gradients`).

The arithmetic of the loss and of the rank counts is in plain functions (:func:`block_stats`,
:func:`loss_from_stats`, :func:`block_grad`), so that a test splits a score matrix by hand and checks them in
one process.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as tdist
from torch.autograd.function import once_differentiable

from kgdistill.types import FloatTensor, LongTensor

__all__ = [
    "block_grad",
    "block_stats",
    "fetch_rows",
    "gather_rows",
    "global_sum",
    "loss_from_stats",
    "pad_rows",
    "sharded_cross_entropy",
]


def _world() -> tuple[int, int]:
    return tdist.get_rank(), tdist.get_world_size()


def pad_rows(x: torch.Tensor, rows: int) -> torch.Tensor:
    """``x (n, *)`` padded with zeros to ``(rows, *)`` (``rows >= n``), contiguous."""
    if len(x) == rows:
        return x.contiguous()
    out = x.new_zeros((rows, *x.shape[1:]))
    out[: len(x)] = x
    return out


def _sizes(n: int, device: torch.device) -> list[int]:
    """Every rank's row count ``n`` (one all-gather of a scalar)."""
    _, size = _world()
    mine = torch.tensor([n], dtype=torch.long, device=device)
    out = torch.empty(size, dtype=torch.long, device=device)
    tdist.all_gather_into_tensor(out, mine)
    return [int(v) for v in out.tolist()]


def _all_gather_padded(x: torch.Tensor, width: int) -> torch.Tensor:
    """``x (n, *)`` of every rank, each padded to ``width`` rows: ``(size * width, *)``, rank-major."""
    _, size = _world()
    out = x.new_empty((size * width, *x.shape[1:]))
    tdist.all_gather_into_tensor(out, pad_rows(x, width))
    return out


class _GatherRows(torch.autograd.Function):
    """All-gather of ``(n_r, w)`` rows into ``(size * m, w)`` (``m = max n_r``, zero padding); backward:
    reduce-scatter of the gradient, each rank keeping the sum for its own rows."""

    @staticmethod
    def forward(ctx: Any, x: FloatTensor, width: int) -> FloatTensor:  # type: ignore[override]
        ctx.n, ctx.width = len(x), width
        return _all_gather_padded(x, width)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: FloatTensor) -> tuple[FloatTensor, None]:  # type: ignore[override]
        mine = grad.new_empty((ctx.width, *grad.shape[1:]))
        tdist.reduce_scatter_tensor(mine, grad.contiguous())
        return mine[: ctx.n], None


def gather_rows(x: FloatTensor, width: int | None = None) -> tuple[FloatTensor, list[int], int]:
    """Every rank's rows ``x (n_r, w)``, in rank order, each block padded to the longest: ``(size * m, w)``.

    Returns:
        the gathered rows (differentiable: the gradient of a rank's rows is the sum of every rank's gradient of
        them), the ranks' row counts ``n_r`` and the block height ``m``.
    """
    sizes = _sizes(len(x), x.device)
    m = max(sizes) if width is None else width
    return _GatherRows.apply(x, m), sizes, m


class _Fetch(torch.autograd.Function):
    """Rows ``ids (n,)`` of a table split by rows, from their owners (see :func:`fetch_rows`)."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, block: FloatTensor, ids: LongTensor, lo: int, hi: int
    ) -> FloatTensor:
        sizes = _sizes(len(ids), ids.device)
        m = max(sizes)
        wanted = _all_gather_padded(ids, m)  # (size * m,) every rank's ids
        valid = torch.zeros(len(wanted), dtype=torch.bool, device=ids.device)
        for r, n in enumerate(sizes):
            valid[r * m : r * m + n] = True
        mine = valid & (wanted >= lo) & (wanted < hi)  # the requests this rank answers
        where = mine.nonzero().squeeze(1)
        send = block.new_zeros((len(wanted), block.shape[1]))
        send[where] = block[wanted[where] - lo]
        # one owner per row, zeros from the others: the sum is the row itself, exactly
        out = block.new_empty((m, block.shape[1]))
        tdist.reduce_scatter_tensor(out, send)
        ctx.save_for_backward(wanted, where)
        ctx.m, ctx.n, ctx.lo, ctx.rows = m, len(ids), lo, block.shape[0]
        return out[: len(ids)]

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: FloatTensor) -> tuple[FloatTensor, None, None, None]:  # type: ignore[override]
        wanted, where = ctx.saved_tensors
        every = _all_gather_padded(grad.contiguous(), ctx.m)  # every rank's row gradients
        out = grad.new_zeros((ctx.rows, grad.shape[1]))
        out.index_add_(0, wanted[where] - ctx.lo, every[where])
        return out, None, None, None


def fetch_rows(block: FloatTensor, ids: LongTensor, lo: int, hi: int) -> FloatTensor:
    """Rows ``ids (n,)`` (global ids) of a table of which this rank holds ``block = table[lo:hi] (hi - lo, w)``.

    Collective: every rank calls it with its own ids. The ids are all-gathered, every owner fills the rows it
    holds, and a reduce-scatter hands each rank its rows (one owner per row, zeros from the others: exact).
    Each distinct id is sent once. Backward: the rows' gradients are all-gathered and each owner adds those of
    its rows into its block's gradient.

    Returns:
        ``(n, w)`` the rows, differentiable with respect to ``block``.
    """
    unique, inverse = ids.unique(return_inverse=True)
    return _Fetch.apply(block, unique, lo, hi)[inverse]  # type: ignore[no-any-return]


class _GlobalSum(torch.autograd.Function):
    """All-reduce (sum) whose backward is the identity: each rank's addend is its own part of the loss."""

    @staticmethod
    def forward(ctx: Any, x: FloatTensor) -> FloatTensor:  # type: ignore[override]
        out = x.clone()
        tdist.all_reduce(out, op=tdist.ReduceOp.SUM)
        return out

    @staticmethod
    def backward(ctx: Any, grad: FloatTensor) -> FloatTensor:  # type: ignore[override]
        return grad


def global_sum(x: FloatTensor) -> FloatTensor:
    """``sum over ranks of x`` on every rank; the gradient flows to each rank's own ``x`` (see the module)."""
    return _GlobalSum.apply(x)  # type: ignore[no-any-return]


# --------------------------------------------------------------------------------- cross-entropy arithmetic
def block_stats(
    scores: FloatTensor, top: FloatTensor, targets: LongTensor, lo: int, smoothing: bool
) -> tuple[FloatTensor, FloatTensor]:
    """One block's share of the cross-entropy statistics.

    Args:
        scores: ``(B, C_r)`` the scores of the block's entities ``[lo, lo + C_r)``.
        top: ``(B,)`` the row-wise maximum over *all* blocks.
        targets: ``(B,)`` global ids of the true entities.
        smoothing: also sum the block's scores (label smoothing needs the mean over all entities).

    Returns:
        ``exp (B, C_r) = exp(scores - top)`` (kept for the backward) and ``stats (3, B)``: the sums of ``exp``,
        the true score where this block holds the true entity (0 elsewhere) and the sums of the scores (0
        without smoothing). Summed over the blocks, ``stats`` is the row's total.
    """
    exp = torch.sub(scores, top.unsqueeze(1)).exp_()
    local = targets - lo
    inside = (local >= 0) & (local < scores.shape[1])
    true = scores.gather(1, local.clamp(0, max(scores.shape[1] - 1, 0)).unsqueeze(1)).squeeze(1)
    rowsum = scores.sum(1) if smoothing else torch.zeros_like(top)
    return exp, torch.stack([exp.sum(1), torch.where(inside, true, 0.0), rowsum])


def loss_from_stats(
    stats: FloatTensor, top: FloatTensor, weights: FloatTensor, num_entities: int, eps: float
) -> FloatTensor:
    """``sum_i weights_i [lse_i - (1 - eps) s_i[t_i] - eps mean_j s_ij]`` from the summed ``stats (3, B)`` of
    :func:`block_stats` and the global row maxima ``top (B,)`` (``weights (B,)``: ``1 / B`` on real rows, 0 on
    padding: the mean of ``F.cross_entropy(..., label_smoothing=eps)``)."""
    total, true, rowsum = stats
    lse = total.log() + top
    per = lse - true if not eps else lse - (1 - eps) * true - eps * rowsum / num_entities
    return (weights * per).sum()


def block_grad(
    exp: FloatTensor,
    total: FloatTensor,
    targets: LongTensor,
    weights: FloatTensor,
    lo: int,
    num_entities: int,
    eps: float,
    grad: FloatTensor,
) -> FloatTensor:
    """``dL/dS_r (B, C_r)`` of one block: ``g w_i (softmax_ij - (1 - eps) [j = t_i] - eps / E)``, computed in
    place in ``exp`` (:func:`block_stats`' first output; ``total (B,)`` its summed row totals)."""
    g = grad * weights  # (B,)
    out = exp.mul_((g / total).unsqueeze(1))
    if eps:
        out.sub_((g * eps / num_entities).unsqueeze(1))
    local = targets - lo
    rows = ((local >= 0) & (local < exp.shape[1])).nonzero().squeeze(1)
    out[rows, local[rows]] -= (1 - eps) * g[rows]
    return out


class _ShardedCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        scores: FloatTensor,
        targets: LongTensor,
        weights: FloatTensor,
        lo: int,
        num_entities: int,
        eps: float,
    ) -> FloatTensor:
        top = scores.amax(1)
        tdist.all_reduce(top, op=tdist.ReduceOp.MAX)
        exp, stats = block_stats(scores, top, targets, lo, bool(eps))
        tdist.all_reduce(stats, op=tdist.ReduceOp.SUM)
        ctx.save_for_backward(exp, stats[0], targets, weights)
        ctx.lo, ctx.num_entities, ctx.eps = lo, num_entities, eps
        return loss_from_stats(stats, top, weights, num_entities, eps)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: FloatTensor) -> tuple[Any, ...]:  # type: ignore[override]
        exp, total, targets, weights = ctx.saved_tensors
        d = block_grad(exp, total, targets, weights, ctx.lo, ctx.num_entities, ctx.eps, grad)
        return d, None, None, None, None, None


def sharded_cross_entropy(
    scores: FloatTensor,
    targets: LongTensor,
    weights: FloatTensor,
    lo: int,
    num_entities: int,
    label_smoothing: float = 0.0,
) -> FloatTensor:
    """The 1-N cross-entropy of the global batch when this rank holds the score columns ``[lo, lo + C_r)``.

    Args:
        scores: ``(B, C_r)`` float scores of every query of the global batch against this rank's entities.
        targets: ``(B,)`` global ids of the true entities. weights: ``(B,)`` each row's weight (``1 / B``).
        num_entities: ``E``, all blocks together. label_smoothing: as :class:`~kgdistill.losses.SupervisedCE`.

    Two all-reduces of ``(B,)`` and ``(3, B)``: the row maxima, then the sums of exponentials (a global
    log-sum-exp), the true scores and, with label smoothing, the score sums. The value is the same on every
    rank; the backward gives ``dL/dS_r`` locally (no communication).
    """
    return _ShardedCrossEntropy.apply(  # type: ignore[no-any-return]
        scores.float(), targets, weights, lo, num_entities, float(label_smoothing)
    )
