"""One 1-N step's softmax cross-entropy: ``log_softmax`` + ``nll_loss`` vs ``F.cross_entropy`` vs the fused loss.

At WN18RR's size (40,943 entities, batch 1000), the forward and backward of ``CE(q @ E^T)`` for random query and
entity vectors (``--dims``, default 32 and 200), median of ``--repeats`` after a warm-up, the three ways
alternating in the same process. The value and the gradients of the three are checked equal first.

    python benchmarks/ce_step.py --out benchmarks/results
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from _common import markdown_table, write_script_result
from kgdistill.losses.fused import fused_cross_entropy

WAYS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "log_softmax + nll_loss": lambda s, t: F.nll_loss(torch.log_softmax(s, -1), t),
    "F.cross_entropy": F.cross_entropy,
    "fused": fused_cross_entropy,
}


def measure(entities: int, batch: int, dim: int, repeats: int) -> dict[str, Any]:
    gen = torch.Generator().manual_seed(0)
    table = torch.nn.Parameter(torch.randn(entities, dim, generator=gen) * 0.1)
    q = torch.nn.Parameter(torch.randn(batch, dim, generator=gen) * 0.1)
    targets = torch.randint(entities, (batch,), generator=gen)

    def step(way: str) -> tuple[float, torch.Tensor, torch.Tensor]:
        table.grad = q.grad = None
        loss = WAYS[way](q @ table.T, targets)
        loss.backward()
        assert table.grad is not None and q.grad is not None
        return float(loss), table.grad, q.grad

    ref = step("log_softmax + nll_loss")
    for way in WAYS:
        value, g_table, g_q = step(way)
        if not (
            abs(value - ref[0]) <= 1e-5 * abs(ref[0])
            and torch.allclose(g_table, ref[1], rtol=1e-4, atol=1e-9)
            and torch.allclose(g_q, ref[2], rtol=1e-4, atol=1e-9)
        ):
            sys.exit(f"MISMATCH: {way} differs from log_softmax + nll_loss at dim {dim}")
    times: dict[str, list[float]] = {way: [] for way in WAYS}
    for _ in range(repeats):
        for way in WAYS:
            start = time.perf_counter()
            step(way)
            times[way].append(time.perf_counter() - start)
    row: dict[str, Any] = {"entities": entities, "batch": batch, "dim": dim}
    for way, ts in times.items():
        row[f"{way} s"] = statistics.median(ts)
    row["speedup"] = row["log_softmax + nll_loss s"] / row["fused s"]
    return row


def markdown(doc: dict[str, Any]) -> str:
    rows = [
        {
            **{k: (f"{v:.3f}" if k.endswith(" s") else v) for k, v in r.items()},
            "speedup": f"{r['speedup']:.2f}x",
        }
        for r in doc["rows"]
    ]
    return "\n".join(
        [
            "# 1-N cross-entropy step (forward + backward of CE(q @ E^T))",
            "",
            f"Median seconds of {doc['repeats']} alternating runs, torch threads {doc['threads']}. "
            "Produced by `benchmarks/ce_step.py`.",
            "",
            markdown_table(rows),
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--dims", type=int, nargs="+", default=[32, 200])
    p.add_argument("--entities", type=int, default=40943)
    p.add_argument("--batch", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=8)
    p.add_argument("--threads", type=int)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = [measure(args.entities, args.batch, d, args.repeats) for d in args.dims]
    text = write_script_result(
        args.out,
        "ce_step",
        "benchmarks/ce_step.py",
        list(sys.argv[1:] if argv is None else argv),
        {
            "benchmark": "ce-step",
            "repeats": args.repeats,
            "threads": torch.get_num_threads(),
            "rows": rows,
        },
        markdown,
    )
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
