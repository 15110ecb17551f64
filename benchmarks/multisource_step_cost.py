"""Per-step training cost of the multi-source students, timed side by side in one process.

``benchmarks/multisource.py`` reports wall seconds to reach the from-scratch student's best validation MRR.
Those seconds depend on what else the machine ran at the time (two 1-thread runs on two cores share memory
bandwidth: the same epoch can take 1.5x longer). This script removes that noise: for every finished run of a
pair's target under ``--work`` it rebuilds the run's student, teachers and objective from its ``config.yaml`` and
times ``--steps`` real training steps (forward, teacher outputs, loss, backward, optimiser step) on random
training queries, in ``--rounds`` rounds that cycle through the methods, so every method sees the same machine
state. It then reports per method

- ``ms_step``: the median milliseconds of a step; ``s_epoch``: ``ms_step`` times the steps of one epoch;
- ``epochs_to_scratch_best``: read from the benchmark's ``multisource.json`` (validation MRR per epoch does not
  depend on the machine);
- ``est_s_to_scratch_best``: ``epochs_to_scratch_best * s_epoch`` plus the teacher cache's recorded seconds, and
  ``est_time_ratio``: that over scratch's own ``epochs_to_scratch_best * s_epoch``.

Writes ``multisource_step_cost.json`` and ``.md`` in ``--out``, keeping the rows of other pairs already there
(the header line shows the last command).

    python benchmarks/multisource_step_cost.py --pair dbp15k_ja_en --targets ja en
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from _common import markdown_table, write_script_result
from kgdistill.config import RunConfig
from kgdistill.data.batching import Batch, both_directions
from kgdistill.run import Run
from kgdistill.runs import finished
from kgdistill.train import build_objectives, make_optimizer

METHODS = ["scratch", "subgraph", "feature", "network", "prediction", "all"]


class Setup:
    """One run's student, teachers, objective and optimiser, rebuilt from its ``config.yaml``."""

    def __init__(self, run_dir: Path) -> None:
        cfg = RunConfig.model_validate(yaml.safe_load((run_dir / "config.yaml").read_text()))
        torch.manual_seed(cfg.seed)
        run = Run.build(
            cfg.model_copy(update={"train": cfg.train.model_copy(update={"device": "cpu"})})
        )
        self.kg, self.model, self.teachers = run.kg, run.model, run.teachers
        self.queries = both_directions(self.kg.splits["train"], self.kg.num_relations)
        stage = cfg.stages[0]
        self.objective = build_objectives(
            self.model, [stage], self.teachers, self.queries[:2], candidates=False, kg=self.kg
        )[0]
        self.optimizer = make_optimizer(
            [*self.model.parameters(), *self.objective.parameters()],
            stage.optimizer or cfg.train.optimizer,
            stage.lr or cfg.train.lr,
            cfg.train.weight_decay,
        )
        self.used = {t: self.objective.reads(t) for t in {t for t in self.objective.teachers if t}}
        self.batch_size = cfg.train.batch_size
        self.gen = torch.Generator().manual_seed(0)
        self.times: list[float] = []

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.queries) / self.batch_size)

    def step(self) -> float:
        """One training step on ``batch_size`` random training queries; its seconds."""
        idx = torch.randint(len(self.queries), (self.batch_size,), generator=self.gen)
        q = self.queries[idx]
        t0 = time.perf_counter()
        out = self.model(q)
        with torch.no_grad():
            t_outs = {n: self.teachers[n](q, None, need) for n, need in self.used.items()}
        loss, _ = self.objective(out, t_outs, Batch(q, None))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return time.perf_counter() - t0


def measure(
    work: Path, pair: str, target: str, bench: dict[str, Any], steps: int, rounds: int
) -> list[dict[str, Any]]:
    """Rows for the finished runs ``<work>/<pair>/<target>-<method>``."""
    runs = [m for m in METHODS if finished(work / pair / f"{target}-{m}")]
    if "scratch" not in runs:
        return []
    setups = {m: Setup(work / pair / f"{target}-{m}") for m in runs}
    for s in setups.values():  # warm-up
        s.step()
    for _ in range(rounds):
        for s in setups.values():
            s.times += [s.step() for _ in range(steps)]
    recorded = {
        r["method"]: r for r in bench["rows"] if r["pair"] == pair and r["target"] == target
    }
    rows = []
    for m, s in setups.items():
        rec = recorded.get(m, {})
        ms = 1000 * statistics.median(s.times)
        s_epoch = ms * s.steps_per_epoch / 1000
        epochs = rec.get("epochs_to_scratch_best")
        est = None if epochs is None else epochs * s_epoch + (rec.get("cache_s") or 0.0)
        rows.append(
            {
                "pair": pair,
                "target": target,
                "method": m,
                "train_queries": len(s.queries),
                "steps_per_epoch": s.steps_per_epoch,
                "ms_step": round(ms, 1),
                "s_epoch": round(s_epoch, 1),
                "epochs_to_scratch_best": epochs,
                "cache_s": rec.get("cache_s"),
                "recorded_time_ratio": rec.get("time_ratio"),
                "est_s_to_scratch_best": None if est is None else round(est, 1),
            }
        )
    base = next(r for r in rows if r["method"] == "scratch")["est_s_to_scratch_best"]
    for r in rows:
        est = r["est_s_to_scratch_best"]
        r["est_time_ratio"] = None if est is None or not base else round(est / base, 3)
    return rows


def _cell(v: Any) -> str:
    return "-" if v is None else f"{v:g}" if isinstance(v, float) else str(v)


def markdown(doc: dict[str, Any]) -> str:
    keys = [
        "pair",
        "target",
        "method",
        "train_queries",
        "steps_per_epoch",
        "ms_step",
        "s_epoch",
        "epochs_to_scratch_best",
        "cache_s",
        "est_s_to_scratch_best",
        "est_time_ratio",
        "recorded_time_ratio",
    ]
    lines = [
        "# Multi-source students: per-step cost timed side by side",
        "",
        f"`{doc['command']}` on {doc['machine']}, {doc['date']}.",
        "",
        f"{doc['steps']} steps x {doc['rounds']} rounds per method, cycling through the methods; median step. "
        "est: epochs to scratch's best validation MRR (from multisource.json) x s/epoch + the teacher cache's "
        "recorded seconds; est ratio: that over scratch's. recorded: the ratio multisource.json measured in "
        "wall seconds during the benchmark.",
        "",
        markdown_table(
            [{k.replace("_", " "): _cell(r[k]) for k in keys} for r in doc["rows"]],
            [k.replace("_", " ") for k in keys],
        ),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pair", default="dbp15k_ja_en")
    ap.add_argument("--targets", nargs="+", default=["ja", "en"])
    ap.add_argument("--work", type=Path, default=Path("benchmarks/work/multisource"))
    ap.add_argument("--results", type=Path, default=Path("benchmarks/results/multisource.json"))
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=4)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    if not args.results.is_file():
        sys.exit(f"{args.results}: not found (run `python benchmarks/multisource.py` first)")
    bench = json.loads(args.results.read_text())
    rows = []
    for target in args.targets:
        got = measure(args.work, args.pair, target, bench, args.steps, args.rounds)
        if not got:
            sys.exit(f"{args.work / args.pair}: no finished '{target}-scratch' run")
        rows += got
    earlier = args.out / "multisource_step_cost.json"
    if earlier.is_file():  # the other pairs' rows already there are kept
        kept = [r for r in json.loads(earlier.read_text())["rows"] if r["pair"] != args.pair]
        rows = kept + rows
    text = write_script_result(
        args.out,
        "multisource_step_cost",
        "benchmarks/multisource_step_cost.py",
        argv or sys.argv[1:],
        {
            "benchmark": "multisource-step-cost",
            "steps": args.steps,
            "rounds": args.rounds,
            "rows": rows,
        },
        markdown,
    )
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
