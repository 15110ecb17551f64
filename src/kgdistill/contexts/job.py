"""The generation job: every key of a prompt path through a generator into a context store, restartable.

:func:`generate_contexts` reads the store, skips every key already in it, and generates the rest in batches of
the generator's ``batch_size``. Each text goes through the quality filters (:mod:`.filters`); rejected texts are
generated again up to ``retries`` times - sampled (``retry_temperature``, a new seed per attempt), since greedy
decoding would repeat the same text - and a key still rejected after that is recorded as ``rejected`` with its
reason, so no rerun asks for it again (``retry_rejected=True`` gives rejected keys a new chance). A batch is
written (and ``fsync``-ed) before the next one starts: a kill loses at most the batch in flight.

Its dry run is :func:`kgdistill.contexts.plan.plan_contexts`.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from kgdistill.contexts.filters import QualityFilter
from kgdistill.contexts.prompts import Templates, WorkItem, read_keys, work_items
from kgdistill.contexts.store import StoreWriter

if TYPE_CHECKING:
    from kgdistill.data.kg import KG
    from kgdistill.llm.generators import Generation, Generator, Prompt, Sampling

__all__ = ["JobReport", "generate_contexts", "prompt_of", "select_items"]

log = logging.getLogger(__name__)


@dataclass
class JobReport:
    """What a run of :func:`generate_contexts` did.

    Attributes:
        selected: keys of the path (after ``keys`` and ``limit``).
        already: of those, keys found in the store (not asked again).
        written: records written by this run: ``accepted + rejected``.
        rejections: filter verdicts over all attempts, by reason.
        retried: keys generated more than once.
        truncated: texts whose prompt lost tokens to fit the context window.
        tokens_in / tokens_out: over all attempts (tokens a server did not report are not counted).
        seconds: wall time of the generation (reading and writing included).
        repaired: a torn last line (a killed run's) was cut off the store.
    """

    store: str
    dataset: str
    path: str
    model: str
    selected: int = 0
    already: int = 0
    written: int = 0
    accepted: int = 0
    rejected: int = 0
    rejections: dict[str, int] = field(default_factory=dict)
    retried: int = 0
    truncated: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    seconds: float = 0.0
    repaired: bool = False

    @property
    def records_per_s(self) -> float:
        return self.written / self.seconds if self.seconds else 0.0

    @property
    def tokens_per_s(self) -> float:
        return self.tokens_out / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["records_per_s"] = round(self.records_per_s, 3)
        out["tokens_per_s"] = round(self.tokens_per_s, 1)
        out["seconds"] = round(self.seconds, 2)
        return out


def select_items(
    kg: KG,
    path: str,
    templates: Templates | None = None,
    *,
    keys: str | os.PathLike[str] | None = None,
    limit: int | None = None,
) -> list[WorkItem]:
    """The work of a job: the path's items, restricted to a keys file, then to the first ``limit``."""
    items = work_items(kg, path, templates)
    if keys is not None:
        wanted = read_keys(keys, items)
        items = [it for it in items if it.rid in wanted]
    return items[:limit] if limit is not None else items


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def prompt_of(item: WorkItem, templates: Templates) -> Prompt:
    """What the generator gets for ``item``: its prompt, after the system message when there is one."""
    if templates.system is None:
        return item.prompt
    return [
        {"role": "system", "content": templates.system},
        {"role": "user", "content": item.prompt},
    ]


def _attempt_sampling(sampling: Sampling, attempt: int, retry_temperature: float) -> Sampling:
    if attempt == 1:
        return sampling
    return sampling.model_copy(
        update={
            "temperature": sampling.temperature or retry_temperature,
            "seed": (sampling.seed or 0) + attempt - 1,
        }
    )


class _Progress:
    """A tqdm bar on a terminal; one INFO line per written batch otherwise."""

    def __init__(self, total: int, enabled: bool) -> None:
        from tqdm.auto import tqdm

        self.total, self.done, self.tokens = total, 0, 0
        self.t0 = time.perf_counter()
        self.tty = enabled and sys.stderr.isatty()
        self.enabled = enabled
        self.bar = tqdm(total=total, unit="rec", desc="contexts", disable=not self.tty)

    def update(self, n: int, tokens: int, rejected: int) -> None:
        self.done += n
        self.tokens += tokens
        elapsed = max(time.perf_counter() - self.t0, 1e-9)
        rate = self.done / elapsed
        self.bar.update(n)
        self.bar.set_postfix(tok_s=f"{self.tokens / elapsed:.0f}", rejected=rejected)
        if self.enabled and not self.tty:
            left = (self.total - self.done) / rate if rate else float("inf")
            eta = str(dt.timedelta(seconds=round(left))) if left != float("inf") else "?"
            log.info(
                "contexts %d/%d (%.1f%%) | %.2f records/s, %.0f tokens/s | ETA %s | rejected %d",
                self.done,
                self.total,
                100 * self.done / max(self.total, 1),
                rate,
                self.tokens / elapsed,
                eta,
                rejected,
            )

    def close(self) -> None:
        self.bar.close()


def _record(
    item: WorkItem,
    gen: Generation,
    *,
    model: str,
    sampling: Sampling,
    attempts: int,
    seconds: float,
    reasons: list[str],
    rejected: bool,
) -> dict[str, Any]:
    return {
        "kind": item.kind,
        "key": item.key if item.kind == "entity" else list(item.key),
        "status": "rejected" if rejected else "ok",
        "reason": reasons[-1] if rejected else None,
        "text": gen.text,
        "prompt": item.prompt,
        "model": model,
        "sampling": sampling.model_dump(mode="json"),
        "tokens_in": gen.tokens_in,
        "tokens_out": gen.tokens_out,
        "finish_reason": gen.finish_reason,
        "truncated": gen.truncated,
        "seconds": round(seconds, 4),
        "attempts": attempts,
        "rejections": reasons,
        "source": "generate",
        "created": _now(),
    }


def _run_batch(
    batch: Sequence[WorkItem],
    generator: Generator,
    sampling: Sampling,
    templates: Templates,
    filters: QualityFilter,
    retries: int,
    retry_temperature: float,
    report: JobReport,
) -> list[dict[str, Any]]:
    """Generate, filter and retry one batch; its records (accepted and finally rejected), in batch order."""
    reasons: dict[int, list[str]] = {i: [] for i in range(len(batch))}
    seconds: Counter[int] = Counter()
    records: dict[int, dict[str, Any]] = {}
    todo = list(range(len(batch)))
    for attempt in range(1, retries + 2):
        s = _attempt_sampling(sampling, attempt, retry_temperature)
        gens = generator.generate(
            [prompt_of(batch[i], templates) for i in todo],
            s,
            keys=[batch[i].describe() for i in todo],
        )
        again = []
        for i, gen in zip(todo, gens, strict=True):
            seconds[i] += gen.seconds
            report.tokens_in += gen.tokens_in or 0
            report.tokens_out += gen.tokens_out or 0
            report.truncated += bool(gen.truncated)
            reason = filters.check(gen.text, batch[i].prompt, batch[i].kind)
            if reason is not None:
                reasons[i].append(reason)
                report.rejections[reason] = report.rejections.get(reason, 0) + 1
            final = reason is None or attempt == retries + 1
            if final:
                records[i] = _record(
                    batch[i],
                    gen,
                    model=generator.key,
                    sampling=s,
                    attempts=attempt,
                    seconds=seconds[i],
                    reasons=reasons[i],
                    rejected=reason is not None,
                )
            else:
                again.append(i)
        report.retried += len(again) if attempt == 1 else 0
        todo = again
        if not todo:
            break
    return [records[i] for i in range(len(batch))]


def generate_contexts(
    kg: KG,
    store: str | os.PathLike[str],
    generator: Generator,
    *,
    path: str = "ed+td",
    templates: Templates | None = None,
    sampling: Sampling | None = None,
    filters: QualityFilter | None = None,
    retries: int = 2,
    retry_temperature: float = 0.7,
    keys: str | os.PathLike[str] | None = None,
    limit: int | None = None,
    retry_rejected: bool = False,
    progress: bool = True,
) -> JobReport:
    """Generate the contexts of prompt ``path`` for ``kg`` into the JSONL ``store`` (see the module docstring).

    Args:
        generator: a :data:`~kgdistill.llm.GENERATORS` backend.
        templates: the prompts (default :class:`Templates`).
        sampling: decoding settings (default greedy, 256 new tokens).
        filters: the quality filters (default :class:`QualityFilter`).
        retries: new attempts for a rejected text.
        retry_temperature: the temperature of retries when ``sampling`` is greedy.
        keys: a file of the keys to do (see :func:`~kgdistill.contexts.prompts.read_keys`).
        limit: only the first ``limit`` keys (after ``keys``).
        retry_rejected: generate keys recorded as rejected again (the store is rewritten without them first).
        progress: a progress bar on a terminal, one INFO line per written batch otherwise.

    Raises:
        GenerationError: the generator failed (the records of finished batches are kept).
    """
    from kgdistill.llm.generators import Sampling

    templates = templates or Templates()
    sampling = sampling or Sampling()
    filters = filters or QualityFilter()
    items = select_items(kg, path, templates, keys=keys, limit=limit)
    report = JobReport(str(store), kg.name, path, generator.key, selected=len(items))
    t0 = time.perf_counter()
    with StoreWriter(store, dataset=kg.name) as writer:
        report.repaired = writer.repaired
        if retry_rejected:
            records = writer.contents.records
            wanted = {it.rid for it in items}
            stale = {r for r in wanted if records.get(r, {}).get("status") == "rejected"}
            if stale:
                writer.rewrite(rec for rid, rec in records.items() if rid not in stale)
        todo = [it for it in items if not writer.done(it.rid)]
        report.already = len(items) - len(todo)
        bar = _Progress(len(todo), progress)
        try:
            step = max(1, int(generator.batch_size))
            for start in range(0, len(todo), step):
                batch = todo[start : start + step]
                before = report.tokens_out
                records = _run_batch(
                    batch,
                    generator,
                    sampling,
                    templates,
                    filters,
                    retries,
                    retry_temperature,
                    report,
                )
                writer.append(records)
                rejected = sum(r["status"] == "rejected" for r in records)
                report.written += len(records)
                report.rejected += rejected
                report.accepted += len(records) - rejected
                bar.update(len(records), report.tokens_out - before, report.rejected)
        finally:
            bar.close()
            report.seconds = time.perf_counter() - t0
    return report
