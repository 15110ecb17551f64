"""The pieces of a sampled-negatives training step on CPU: PyTorch's ops vs kgdistill's hand-written backwards.

At WN18RR's size (40,943 entities, batch 1000, 1 + 32 candidates per query, ``--dims``, default 200), median of
``--repeats`` alternating runs after a warm-up, forward + backward of:

- the candidate scores ``q (B, d), t (B, C, d) -> (B, C)``: autograd through ``torch.matmul(t, q)`` (a batched
  matrix-vector product; what the models ran before) vs :class:`kgdistill.models.interactions._CandidateDot`;
- the lookups of one step (heads ``(B,)`` and candidates ``(B, C)``): two ``F.embedding`` calls (PyTorch's dense
  embedding backward, one gradient table each, summed by autograd) vs one
  :meth:`~kgdistill.models.representations.EmbeddingTable.many` (one gradient table, ``index_add_``);
- the whole step of ``benchmarks/train_speed.py``'s kgdistill loop (DistMult, softplus ``negative_sampling`` loss,
  Adagrad), per-query negatives vs negatives shared by the batch.

The values and gradients of each pair are checked equal (up to float rounding) first.

    python benchmarks/sampled_step.py --threads 1 --out benchmarks/results
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
from kgdistill.models.interactions import _CandidateDot
from kgdistill.models.representations import embedding


def median_seconds(ways: dict[str, Callable[[], Any]], repeats: int) -> dict[str, float]:
    """Median wall seconds of each way, alternating, after one warm-up each."""
    for fn in ways.values():
        fn()
    times: dict[str, list[float]] = {w: [] for w in ways}
    for _ in range(repeats):
        for w, fn in ways.items():
            start = time.perf_counter()
            fn()
            times[w].append(time.perf_counter() - start)
    return {w: statistics.median(ts) for w, ts in times.items()}


def same(a: torch.Tensor, b: torch.Tensor, what: str) -> None:
    if not torch.allclose(a, b, rtol=1e-4, atol=1e-4 * float(b.abs().max())):
        sys.exit(f"MISMATCH: {what}")


def candidate_dot(batch: int, cands: int, dim: int, repeats: int) -> dict[str, Any]:
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(batch, dim, generator=gen).requires_grad_()
    t = torch.randn(batch, cands, dim, generator=gen).requires_grad_()
    w = torch.randn(batch, cands, generator=gen)

    def run(fn: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, ...]:
        q.grad = t.grad = None
        out = fn()
        (out * w).sum().backward()
        assert q.grad is not None and t.grad is not None
        return out, q.grad, t.grad

    ways = {
        "matmul (autograd)": lambda: run(lambda: torch.matmul(t, q.unsqueeze(-1)).squeeze(-1)),
        "_CandidateDot": lambda: run(lambda: _CandidateDot.apply(q, t)),
    }
    ref, mine = ways["matmul (autograd)"](), ways["_CandidateDot"]()
    for a, b, name in zip(ref, mine, ("scores", "grad q", "grad t"), strict=True):
        same(a.detach(), b.detach(), f"candidate dot {name}")
    return {"piece": "candidate scores", **median_seconds(ways, repeats)}


def lookups(entities: int, batch: int, cands: int, dim: int, repeats: int) -> dict[str, Any]:
    gen = torch.Generator().manual_seed(0)
    table = embedding(entities, dim, 0.1)
    heads = torch.randint(entities, (batch,), generator=gen)
    cand = torch.randint(entities, (batch, cands), generator=gen)
    gh, gc = torch.randn(batch, dim, generator=gen), torch.randn(batch, cands, dim, generator=gen)

    def run(pair: Callable[[], tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        table.weight.grad = None
        h, c = pair()
        ((h * gh).sum() + (c * gc).sum()).backward()
        assert table.weight.grad is not None
        return table.weight.grad

    w = table.weight
    ways = {
        "F.embedding x 2": lambda: run(lambda: (F.embedding(heads, w), F.embedding(cand, w))),
        "EmbeddingTable.many": lambda: run(lambda: table.many(heads, cand)),  # type: ignore[arg-type,return-value]
    }
    same(ways["F.embedding x 2"](), ways["EmbeddingTable.many"](), "lookup gradient")
    return {"piece": "lookups of heads and candidates", **median_seconds(ways, repeats)}


def whole_step(data_root: str, dim: int, repeats: int) -> dict[str, Any]:
    """Per-step seconds of ``train_speed.py``'s kgdistill loop on the real WN18RR, 32 negatives."""
    from kgdistill.data.datasets import load_kg
    from train_speed import KgdistillTrainer, Settings

    kg = load_kg("wn18rr", root=data_root)
    s = Settings(
        batch_size=1000,
        optimizer="adagrad",
        lr=0.1,
        seed=0,
        negatives=32,
        pykeen_model_defaults=False,
    )
    trainers = {
        "per-query negatives": KgdistillTrainer(kg, "distmult", dim, s, sampled=True),
        "shared negatives": KgdistillTrainer(kg, "distmult", dim, s, shared=True),
    }
    ways = {
        name: (lambda tr=tr: tr.train(lambda done: done >= 10)) for name, tr in trainers.items()
    }
    return {
        "piece": "whole step (WN18RR, 10 steps)",
        **{k: v / 10 for k, v in median_seconds(ways, repeats).items()},
    }


def markdown(doc: dict[str, Any]) -> str:
    rows = []
    for r in doc["rows"]:
        (old, a), (new, b) = [(k, v) for k, v in r.items() if k != "piece"]
        rows.append(
            {
                "piece": r["piece"],
                "PyTorch's way": f"{old}: {1e3 * a:.2f} ms",
                "kgdistill": f"{new}: {1e3 * b:.2f} ms",
                "ratio": f"{a / b:.2f}x",
            }
        )
    return "\n".join(
        [
            "# A sampled-negatives training step on CPU, piece by piece (forward + backward)",
            "",
            f"WN18RR's size: {doc['entities']} entities, batch {doc['batch']}, {doc['candidates']} candidates a "
            f"query, dim {doc['dim']}; medians of {doc['repeats']} alternating runs, torch threads "
            f"{doc['threads']}. Produced by `benchmarks/sampled_step.py`.",
            "",
            markdown_table(rows),
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--dim", type=int, default=200)
    p.add_argument("--entities", type=int, default=40943)
    p.add_argument("--batch", type=int, default=1000)
    p.add_argument("--candidates", type=int, default=33)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--threads", type=int)
    p.add_argument("--data-root", help="the datasets' folder: adds the whole-step row on WN18RR")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = [
        candidate_dot(args.batch, args.candidates, args.dim, args.repeats),
        lookups(args.entities, args.batch, args.candidates, args.dim, args.repeats),
    ]
    if args.data_root:
        rows.append(whole_step(args.data_root, args.dim, max(3, args.repeats // 4)))
    text = write_script_result(
        args.out,
        "sampled_step",
        "benchmarks/sampled_step.py",
        list(sys.argv[1:] if argv is None else argv),
        {
            "benchmark": "sampled-step",
            "entities": args.entities,
            "batch": args.batch,
            "candidates": args.candidates,
            "dim": args.dim,
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
