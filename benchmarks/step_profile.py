"""Where a training step's time goes: a ComplEx-N3 teacher step (the static-kd spec's WN18RR teacher: rank 1000,
batch 100, N3 0.1, Adagrad) timed alone, then one epoch under PyTorch's profiler sorted by device time.

Trains ``--epochs`` epochs of ``--queries`` training queries each (a new draw per epoch): epochs 1-2 are timed with
the device synchronised (the first includes warm-up), the third runs under the profiler. Writes
``step_profile.md`` (command, machine, epoch times, ms per step, the profiler's table) and ``step_profile.json``.
Meant for a GPU (the numbers of ``benchmarks/README.md``); on a CPU use a small ``--dim``.

    python benchmarks/step_profile.py --out benchmarks/results                # GPU
    python benchmarks/step_profile.py --dim 16 --out /tmp/step_profile_check   # CPU check
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

import kgdistill.train as train_module
from _common import machine_info, run_command
from kgdistill.api import train
from kgdistill.config import parse_config


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="wn18rr")
    ap.add_argument("--dim", type=int, default=1000)
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--n3", type=float, default=0.1)
    ap.add_argument("--queries", type=int, default=10000, help="training queries an epoch")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = ap.parse_args(argv)
    epochs: list[float] = []
    table: list[str] = []
    original = train_module._epoch

    def measured(*a, **k):  # type: ignore[no-untyped-def]
        if len(epochs) < 2:
            _sync()
            t = time.perf_counter()
            out = original(*a, **k)
            _sync()
            epochs.append(time.perf_counter() - t)
            return out
        acts = [ProfilerActivity.CPU] + (
            [ProfilerActivity.CUDA] if torch.cuda.is_available() else []
        )
        with profile(activities=acts) as prof:
            out = original(*a, **k)
        key = "self_cuda_time_total" if torch.cuda.is_available() else "self_cpu_time_total"
        table.append(prof.key_averages().table(sort_by=key, row_limit=30))
        return out

    train_module._epoch = measured
    cfg = {
        "name": "step-profile",
        "seed": 0,
        "data": {"name": args.dataset, "root": args.data_root},
        "model": {"name": "complex", "dim": args.dim, "init_scale": 0.001},
        "stages": [
            {
                "epochs": 3,
                "objective": [{"loss": "supervised_ce"}, {"loss": "n3", "weight": args.n3}],
            }
        ],
        "train": {
            "batch_size": args.batch_size,
            "optimizer": "adagrad",
            "lr": 0.1,
            "epoch_queries": args.queries,
            "progress": False,
            "device": args.device,
            "eval_every": 100,
        },
        "eval": {"split": "valid"},
    }
    try:
        with tempfile.TemporaryDirectory() as tmp:
            train(parse_config(cfg), out=tmp)
    finally:
        train_module._epoch = original
    steps = -(-args.queries // args.batch_size)
    doc = {
        "command": run_command(),
        "machine": machine_info(),
        "config": cfg,
        "steps_per_epoch": steps,
        "epoch_seconds": epochs,
        "ms_per_step": 1000 * epochs[-1] / steps,
        "profile": table[0],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "step_profile.json").write_text(json.dumps(doc, indent=2) + "\n")
    md = [
        "# Where a training step's time goes",
        "",
        f"`{doc['command']}` on {doc['machine']}",
        "",
        f"ComplEx-{args.dim} on {args.dataset}, batch {args.batch_size}, N3 {args.n3}, Adagrad; {steps} steps an "
        f"epoch. Epochs 1-2 (synchronised; the first warms up): {', '.join(f'{e:.3f} s' for e in epochs)}, "
        f"{doc['ms_per_step']:.2f} ms a step. Epoch 3 under the profiler:",
        "",
        "```",
        table[0],
        "```",
        "",
    ]
    (args.out / "step_profile.md").write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
