"""Size and single-query latency of a model: what a shipped student costs."""

from __future__ import annotations

import statistics
import time

import torch

from kgdistill.models.base import KGEModel

__all__ = ["single_query_latency_ms"]


@torch.inference_mode()
def single_query_latency_ms(
    model: KGEModel, query: torch.Tensor, *, k: int = 10, repeats: int = 200, threads: int = 1
) -> float:
    """Median wall time (ms) of answering one query ``(1, 3|4)``: score all entities, take the top ``k``.

    Measured on the model's device with ``threads`` intra-op threads (1: a serving process per core).
    """
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        model.eval()
        for _ in range(10):
            torch.topk(model.score_all(query), k)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            torch.topk(model.score_all(query), k)
            if query.is_cuda:
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
        return statistics.median(times) * 1000
    finally:
        torch.set_num_threads(old)
