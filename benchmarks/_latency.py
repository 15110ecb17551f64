"""Size and single-query latency of a model: what a shipped student costs."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch

from kgdistill.models.base import KGEModel

__all__ = ["rerank_latency_ms", "single_query_latency_ms"]


def _median_ms(
    answer: Callable[[], object], *, warmup: int, repeats: int, threads: int, cuda: bool
) -> float:
    """Median wall time (ms) of ``answer()`` after ``warmup`` calls, with ``threads`` intra-op threads."""
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for _ in range(warmup):
            answer()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            answer()
            if cuda:
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
        return statistics.median(times) * 1000
    finally:
        torch.set_num_threads(old)


@torch.inference_mode()
def single_query_latency_ms(
    model: KGEModel, query: torch.Tensor, *, k: int = 10, repeats: int = 200, threads: int = 1
) -> float:
    """Median wall time (ms) of answering one query ``(1, 3|4)``: score all entities, take the top ``k``.

    Measured on the model's device with ``threads`` intra-op threads (1: a serving process per core).
    """
    model.eval()
    return _median_ms(
        lambda: torch.topk(model.score_all(query), k),
        warmup=10,
        repeats=repeats,
        threads=threads,
        cuda=query.is_cuda,
    )


@torch.inference_mode()
def rerank_latency_ms(
    retriever: KGEModel,
    reranker: torch.nn.Module,
    query: torch.Tensor,
    *,
    k: int,
    repeats: int = 5,
    threads: int = 1,
) -> float:
    """Median wall time (ms) of answering one query ``(1, 3|4)`` in two stages: the retriever scores all
    entities and takes its top ``k``, the reranker rescores them (``score_candidates``) and reorders them.

    The models are loaded and the retriever's entity vectors encoded before the clock starts (once per
    process, not per query); measured with ``threads`` intra-op threads.
    """
    retriever.eval()
    reranker.eval()

    def answer() -> torch.Tensor:
        candidates = torch.topk(retriever.score_all(query), k).indices
        rescored = reranker.score_candidates(query, candidates)  # type: ignore[operator]
        return candidates.gather(1, rescored.argsort(dim=1, descending=True))

    return _median_ms(answer, warmup=1, repeats=repeats, threads=threads, cuda=query.is_cuda)
