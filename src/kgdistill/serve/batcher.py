"""A micro-batcher: concurrent top-k requests for one run answered by one ``score_all`` call.

Requests put their id rows on an asyncio queue. One collector task takes the first waiting request, waits up to
``max_wait`` seconds for more, takes what has queued up (at most ``max_queries`` rows in all), and runs the
batch in its own worker thread: one :meth:`Predictor.topk_batch <kgdistill.predict.Predictor.topk_batch>` at the
largest ``k`` asked, every request then cut to its own ``k`` and filtering. While the model computes one batch,
the next one queues up, so under load batches fill by themselves; a lone client (the last batch held one
request and nothing else is queued) is answered at once, without waiting ``max_wait``.

With ``max_queries=1`` nothing is batched: every request runs on its own in a thread pool (the baseline the
batcher is measured against, ``docs/serve.md``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import torch

from kgdistill.predict import Answer, Predictor, TopK

__all__ = ["MicroBatcher"]

log = logging.getLogger(__name__)


@dataclass
class _Job:
    rows: torch.Tensor  # (n, 3|4) query ids
    k: int
    exclude_known: bool
    future: asyncio.Future[list[list[Answer]]] = field(repr=False)


class MicroBatcher:
    """Batches the top-k requests of one :class:`~kgdistill.predict.Predictor` (see the module docstring).

    Args:
        predictor: the run's predictor.
        max_wait: seconds to wait for more requests after the first of a batch.
        max_queries: the most query rows in one model call (a single larger request runs alone); 1 = no batching.
        on_batch: called with ``(queries, requests)`` after each model call (metrics).
    """

    def __init__(
        self,
        predictor: Predictor,
        *,
        max_wait: float = 0.002,
        max_queries: int = 256,
        on_batch: Callable[[int, int], None] | None = None,
    ) -> None:
        self.predictor = predictor
        self.max_wait = max_wait
        self.max_queries = max(1, max_queries)
        self.on_batch = on_batch
        self._queue: asyncio.Queue[_Job | None] | None = None
        self._task: asyncio.Task[None] | None = None
        workers = 1 if self.batching else 8
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kgdistill-model")

    @property
    def batching(self) -> bool:
        return self.max_queries > 1

    def start(self) -> None:
        """Start the collector task (inside the running event loop)."""
        if self.batching:
            self._queue = asyncio.Queue()
            self._task = asyncio.get_running_loop().create_task(self._collect())

    async def close(self) -> None:
        """Answer every request already queued, then stop."""
        if self._queue is not None and self._task is not None:
            await self._queue.put(None)
            await self._task
        self._pool.shutdown(wait=True)

    async def topk(
        self, rows: torch.Tensor, k: int, *, exclude_known: bool = False
    ) -> list[list[Answer]]:
        """The answers of ``rows (n, 3|4)``: ``n`` lists of at most ``k`` answers, best first."""
        loop = asyncio.get_running_loop()
        job = _Job(rows, k, exclude_known, loop.create_future())
        if self._queue is None:  # no batching: one model call per request, in the pool
            return await loop.run_in_executor(self._pool, self._answer_one, job)
        await self._queue.put(job)
        return await job.future

    def _answer_one(self, job: _Job) -> list[list[Answer]]:
        out = self._answer([job])[0]
        if isinstance(out, BaseException):
            raise out
        return out

    async def _collect(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        # a job that would have overflowed the last batch starts the next one
        carry: _Job | None = None
        crowd = False  # the last batch answered several requests
        stop = False
        while not stop or carry is not None:
            first = carry if carry is not None else await self._queue.get()
            carry = None
            if first is None:
                break
            jobs, n = [first], len(first.rows)
            # wait for company only when the last batch had some or more requests are queued already: a lone
            # client (concurrency 1) pays no max_wait
            if (
                self.max_wait > 0
                and n < self.max_queries
                and not stop
                and (crowd or not self._queue.empty())
            ):
                await asyncio.sleep(self.max_wait)
            while n < self.max_queries and not stop and not self._queue.empty():
                job = self._queue.get_nowait()
                if job is None:
                    stop = True
                elif n + len(job.rows) > self.max_queries:
                    carry = job
                    break
                else:
                    jobs.append(job)
                    n += len(job.rows)
            crowd = len(jobs) > 1
            results = await loop.run_in_executor(self._pool, self._answer, jobs)
            for job, result in zip(jobs, results, strict=True):
                if job.future.done():  # the client went away
                    continue
                if isinstance(result, BaseException):
                    job.future.set_exception(result)
                else:
                    job.future.set_result(result)

    def _answer(self, jobs: list[_Job]) -> list[list[list[Answer]] | BaseException]:
        """One model call for ``jobs`` (in the worker thread); a failing batch is retried job by job, so one
        bad request cannot fail the others."""
        p = self.predictor
        try:
            rows = torch.cat([j.rows for j in jobs])
            exclude = torch.cat(
                [torch.full((len(j.rows),), j.exclude_known, dtype=torch.bool) for j in jobs]
            )
            top = p.topk_batch(rows, max(j.k for j in jobs), exclude_known=exclude)
        except Exception as e:
            if len(jobs) == 1:
                return [e]
            return [r for j in jobs for r in self._answer([j])]
        if self.on_batch is not None:
            self.on_batch(len(rows), len(jobs))
        out: list[list[list[Answer]] | BaseException] = []
        start = 0
        for j in jobs:
            part = TopK(
                top.scores[start : start + len(j.rows), : j.k],
                top.ids[start : start + len(j.rows), : j.k],
                None if top.known is None else top.known[start : start + len(j.rows), : j.k],
            )
            out.append(
                [p.answers(part, i, exclude_known=j.exclude_known) for i in range(len(j.rows))]
            )
            start += len(j.rows)
        return out
