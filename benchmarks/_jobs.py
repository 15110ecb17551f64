"""A KD benchmark's student runs side by side: independent runs in worker processes on one machine.

Small students use a GPU (or a many-core CPU) lightly: ComplEx-32 on FB15k-237 trained 20 epochs in 81 s on an
H200 (the static KD table), about 7 ms a step with its evaluations. ``jobs`` worker processes (spawned: each its
own CUDA context) each train one run at a time through :func:`kgdistill.api.ensure_run`, so a killed call resumes
run by run as a sequential one does. On a CPU each worker gets an equal share of this process's intra-op threads.
The workers log at this process's level, each line naming its run's folder. On Linux a worker ends when this
process ends, however it ends (``kill -9`` included): an orphaned worker would train on and keep its run folder
locked, so the call run again would find its runs "in use by another process".

A run whose teacher writes a score cache that does not exist yet runs first, alone in this process (one writer
per cache file); the rest then read it side by side.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
import sys
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import torch

from kgdistill.api import ensure_run

__all__ = ["run_side_by_side"]

log = logging.getLogger(__name__)

Job = tuple[dict[str, Any], Path]  # (run config, run folder)


def _missing_caches(cfg: dict[str, Any]) -> set[str]:
    """The score-cache files that ``cfg``'s teachers name and that do not exist yet."""
    return {
        str(t["score_cache"])
        for t in (cfg.get("teachers") or {}).values()
        if isinstance(t, dict) and t.get("score_cache") and not Path(t["score_cache"]).is_file()
    }


def _die_with_parent(parent: int) -> None:
    """Have the kernel send this process SIGTERM when its parent ``parent`` ends (Linux ``prctl``; elsewhere
    nothing). A parent that ended before the call makes this process exit at once."""
    if not sys.platform.startswith("linux"):
        return
    pr_set_pdeathsig = 1  # <sys/prctl.h>
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:  # the parent ended before prctl: no signal will come
        os._exit(1)


def _worker_init(threads: int, parent: int) -> None:
    """A fresh worker process: it ends with its parent ``parent`` (the calling process), subnormals flushed before
    any tensor work, its share of the threads."""
    from kgdistill.runs import flush_denormals

    _die_with_parent(parent)
    flush_denormals()
    torch.set_num_threads(threads)


def _ensure(cfg: dict[str, Any], run_dir: str, level: int) -> dict[str, Any]:
    """One run in a worker, its log lines (progress, epochs) on stderr at the caller's ``level``, each naming
    the run's folder (the workers' lines interleave)."""
    logging.basicConfig(
        level=level,
        format=f"%(levelname)s [{Path(run_dir).name}] %(name)s: %(message)s",
        force=True,
    )
    return ensure_run(cfg, run_dir)


def run_side_by_side(jobs: Sequence[Job], workers: int) -> list[dict[str, Any] | Exception]:
    """Train (resume, reuse) every ``(config, run folder)`` of ``jobs``, ``workers`` at a time.

    Args:
        jobs: the runs; each is independent of the others.
        workers: how many run at once (1: one after another in this process).

    Returns:
        Per job, in order: its ``metrics.json``, or the error that stopped it (the other runs go on).
    """
    out: list[dict[str, Any] | Exception] = [RuntimeError("not run")] * len(jobs)
    first: list[int] = []  # the runs that write a missing score cache: alone, before the others
    writing: set[str] = set()
    for i, (cfg, _) in enumerate(jobs):
        caches = _missing_caches(cfg)
        if caches - writing:
            first.append(i)
            writing |= caches
    rest = [i for i in range(len(jobs)) if i not in first]
    # one run left (or none): it trains in this process, on every thread
    workers = min(workers, len(rest))
    for i in first + (rest if workers <= 1 else []):
        out[i] = _guarded(*jobs[i])
    if workers <= 1:
        return out
    threads = max(1, torch.get_num_threads() // workers)
    log.info("%d runs, %d side by side (%d thread(s) each)", len(rest), workers, threads)
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        workers, mp_context=ctx, initializer=_worker_init, initargs=(threads, os.getpid())
    ) as pool:
        level = logging.getLogger().getEffectiveLevel()
        futures = {pool.submit(_ensure, jobs[i][0], str(jobs[i][1]), level): i for i in rest}
        for fut in as_completed(futures):
            i = futures[fut]
            try:
                out[i] = fut.result()
            except Exception as err:
                log.error("%s failed: %s", jobs[i][1], err)
                out[i] = err
    return out


def _guarded(cfg: dict[str, Any], run_dir: Path) -> dict[str, Any] | Exception:
    """One run in this process: its metrics, or the error that stopped it (logged)."""
    try:
        return ensure_run(cfg, run_dir)
    except Exception as err:
        log.error("%s failed: %s", run_dir, err)
        return err
