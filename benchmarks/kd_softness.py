"""How soft are the score distributions the temporal-kd students are asked to match?

For every finished run of ``benchmarks/temporal_kd.py`` under ``--work`` (the teacher, the LLM scorer and
the seed-0 students of ``--methods``), this script scores a fixed sample of training queries (``--queries``
tail queries, drawn with seed 0; the same sample for every model of a dataset) against all entities and reports,
at each temperature T of ``--temperatures``, the mean over queries of

- ``entropy``: the entropy of softmax(scores / T) in nats, and ``entropy_share``: it divided by log(#entities),
  the entropy of the uniform distribution (1.0 = flat);
- ``p_true``: the probability softmax(scores / T) gives the query's true tail;
- ``p_max``: the largest probability;

and, independent of T, ``score_std``: the standard deviation of a query's scores over the entities.

BKD matches the student's softmax(s / T) to the teacher's with weight T^2: where the teacher's distribution at the
benchmark's T is near-uniform, the term mostly asks the student to shrink the spread of its scores. Writes
``kd_softness.json`` and ``kd_softness.md`` in ``--out``.

    python benchmarks/kd_softness.py --work benchmarks/work/temporal-kd --out benchmarks/results
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

import torch

from _common import dataset_folders, friendly_errors, markdown_table, write_script_result
from kgdistill.api import load_data
from kgdistill.checkpoint import load_checkpoint, load_model
from kgdistill.config import load_config
from kgdistill.runs import finished

TAIL = 2
#: the columns of the table, in order
_COLUMNS = (
    "dataset",
    "run",
    "T",
    "entropy (nats)",
    "entropy share",
    "p(true)",
    "p(max)",
    "score std",
)


def softness(scores: torch.Tensor, answers: torch.Tensor, temperature: float) -> dict[str, float]:
    """``scores (B, E)``, ``answers (B,)`` -> mean entropy, its share of log E, p(true), p(max) at ``temperature``."""
    logp = torch.log_softmax(scores / temperature, dim=-1)
    p = logp.exp()
    entropy = -(p * logp).sum(-1).mean().item()
    return {
        "entropy": entropy,
        "entropy_share": entropy / math.log(scores.shape[1]),
        "p_true": p.gather(1, answers[:, None]).mean().item(),
        "p_max": p.max(-1).values.mean().item(),
    }


def measure_dataset(
    ds_dir: Path, methods: list[str], n_queries: int, temperatures: list[float]
) -> list[dict[str, Any]]:
    """One row per (model, temperature) for the finished runs of one dataset folder."""

    def method(run: Path) -> str:  # <student>-<method>-s0, the student's key has no "-"
        return run.name.removesuffix("-s0").split("-", 1)[1]

    students = sorted(p for p in ds_dir.glob("*-s0") if method(p) in methods)
    runs = [r for r in (ds_dir / "teacher", ds_dir / "llm_scorer", *students) if finished(r)]
    if not runs:
        return []
    cfg, _ = load_config(runs[0] / "config.yaml")
    kg = load_data(cfg)
    train = kg.splits["train"]
    pick = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:n_queries]
    queries = train[pick]
    rows = []
    for run in runs:
        model = load_model(load_checkpoint(run / "best.safetensors")).eval()
        with torch.no_grad():
            scores = model(queries).scores
        for t in temperatures:
            rows.append(
                {
                    "dataset": ds_dir.name,
                    "run": run.name,
                    "temperature": t,
                    **softness(scores, queries[:, TAIL], t),
                    "score_std": scores.std(-1).mean().item(),
                    "entities": scores.shape[1],
                    "queries": len(queries),
                }
            )
    return rows


def markdown(doc: dict[str, Any]) -> str:
    lines = [
        "# Softness of the score distributions in the temporal KD benchmark",
        "",
        f"`{doc['command']}` on {doc['machine']}, {doc['date']}.",
        "",
        f"{doc['rows'][0]['queries'] if doc['rows'] else 0} training tail queries per dataset (seed 0), scored "
        "against all entities. entropy share: mean entropy of softmax(scores / T) over log(#entities) (1 = flat); "
        "p(true), p(max): mean probability of the true tail and of the top entity; score std: mean spread of a "
        "query's scores.",
        "",
        _table(doc["rows"]),
    ]
    return "\n".join(lines)


def _table(rows: list[dict[str, Any]]) -> str:
    """Markdown: one row per (dataset, run, temperature) with the softness measures of its scores."""
    return markdown_table(
        [
            {
                "dataset": str(r["dataset"]),
                "run": str(r["run"]),
                "T": f"{r['temperature']:g}",
                "entropy (nats)": f"{r['entropy']:.2f}",
                "entropy share": f"{r['entropy_share']:.3f}",
                "p(true)": f"{r['p_true']:.4f}",
                "p(max)": f"{r['p_max']:.4f}",
                "score std": f"{r['score_std']:.2f}",
            }
            for r in rows
        ],
        _COLUMNS,
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, default=Path("benchmarks/work/temporal-kd"))
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    ap.add_argument("--datasets", nargs="+", default=["yago11k", "wikidata12k"])
    ap.add_argument("--methods", nargs="+", default=["none", "bkd", "ours"])
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--temperatures", type=float, nargs="+", default=[1.0, 2.0, 4.0])
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    for folder in dataset_folders(args.work, args.datasets):
        rows += measure_dataset(folder, args.methods, args.queries, args.temperatures)
    with friendly_errors():
        text = write_script_result(
            args.out,
            "kd_softness",
            "benchmarks/kd_softness.py",
            argv or sys.argv[1:],
            {"benchmark": "kd-softness", "rows": rows},
            markdown,
            why=f"no finished run of the methods {args.methods} under {args.work}",
        )
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
