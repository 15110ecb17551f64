"""One serving variant measured in a process of its own (``benchmarks/serving.py`` runs it): load the model the
way a service would, answer top-10 queries one at a time and in batches, and report latency, throughput and
the process's memory.

    python benchmarks/_serving_probe.py SPEC_JSON

``SPEC_JSON`` holds ``run`` (a run folder), ``variant`` (``pytorch``, ``onnx`` or ``ann``), ``file`` (the ONNX
top-k graph), ``ann`` (index options), ``queries`` (a ``.pt`` file of query rows ``(N, 3|4)``), ``k``,
``threads``, ``device``, ``batch`` and ``min_seconds``. Prints one JSON line.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch


def _status(field: str) -> float:
    """A memory field of ``/proc/self/status`` (Linux), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def rss_mb() -> float:
    """The process's resident memory now (``VmRSS``), in MiB."""
    return _status("VmRSS")


def peak_mb() -> float:
    """The process's peak resident memory (``VmHWM``: this program's own, where ``ru_maxrss`` would also
    count the forked parent's memory from before ``exec``), in MiB."""
    return _status("VmHWM")


def answerer(spec: dict[str, Any]) -> tuple[Callable[[torch.Tensor], Any], dict[str, Any]]:
    """``answer(queries (B, C)) -> (scores, ids)`` of the variant, and facts about what was loaded."""
    from kgdistill.checkpoint import load_checkpoint, load_model

    variant, k, device = spec["variant"], spec["k"], torch.device(spec["device"])
    info: dict[str, Any] = {}
    started = time.perf_counter()
    if variant == "onnx":
        from kgdistill.export import OnnxScorer

        scorer = OnnxScorer(spec["file"], threads=spec["threads"])
        info["load_s"] = time.perf_counter() - started
        return scorer.topk, info
    model = load_model(load_checkpoint(spec["run"])).to(device).eval().requires_grad_(False)
    if spec.get("half"):
        model = model.half()
    if variant == "pytorch":

        def answer(q: torch.Tensor) -> Any:
            with torch.inference_mode():
                top = torch.topk(model.score_all(q.to(device)), k, dim=1)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                return top

        info["load_s"] = time.perf_counter() - started
        return answer, info
    if variant == "ann":
        import faiss

        from kgdistill.export import build_ann_index

        faiss.omp_set_num_threads(spec["threads"])
        index = build_ann_index(model, **spec["ann"])
        info["load_s"] = time.perf_counter() - started
        info["index_bytes"] = int(faiss.serialize_index(index.index).nbytes)
        return lambda q: index.topk(q, k), info
    raise SystemExit(f"unknown variant {variant!r}")


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    torch.set_num_threads(spec["threads"])
    baseline = rss_mb()
    answer, info = answerer(spec)
    loaded = rss_mb()
    queries: torch.Tensor = torch.load(spec["queries"], weights_only=True)
    singles = [queries[i : i + 1] for i in range(len(queries))]
    for q in singles[:50]:  # warm-up: first calls allocate and pick kernels
        answer(q)
    times = []
    for q in singles:
        t0 = time.perf_counter()
        answer(q)
        times.append(time.perf_counter() - t0)
    times.sort()
    n = len(times)
    batch = spec["batch"]
    chunks = [queries[i : i + batch] for i in range(0, len(queries), batch)]
    answer(chunks[0])
    done, t0 = 0, time.perf_counter()
    while True:
        for c in chunks:
            answer(c)
            done += len(c)
        elapsed = time.perf_counter() - t0
        if elapsed >= spec["min_seconds"]:
            break
    return {
        **info,
        "queries": n,
        "p50_ms": 1000 * times[n // 2],
        "p99_ms": 1000 * times[min(n - 1, int(n * 0.99))],
        "mean_ms": 1000 * statistics.fmean(times),
        "batch": batch,
        "batch_qps": done / elapsed,
        "rss_baseline_mb": baseline,
        "rss_loaded_mb": loaded,
        "peak_rss_mb": peak_mb(),
    }


if __name__ == "__main__":
    print(json.dumps(measure(json.loads(sys.argv[1]))))
