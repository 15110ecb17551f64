"""Subnormal floats in a CPU training step: a TA-DistMult whose LSTM saturated, stepped with them kept and flushed.

Trains TA-DistMult (dim 256, YAGO11k, Adam at lr 0.1: the temporal-kd-capacity spec's student at its largest grid
learning rate) for ``--epochs`` epochs, in this process with subnormals flushed (``kgdistill``'s default; the run
folder in ``--work`` is reused when finished). Then each probe is a fresh process that sets the mode before any
tensor work and steps the model: weights ``init`` (the untrained model, seed 0) or ``trained`` (the run's last
checkpoint), subnormals ``kept`` (the CPU's default) or ``flushed`` (:func:`kgdistill.runs.flush_denormals`). A
probe takes real training batches (``--batch-size`` tail queries of the train split, shuffled with seed 0),
1-N cross-entropy as the trainer computes it, Adam at the run's lr: one warm-up step, then ``--steps`` timed
training steps and as many forward passes (all-entity scores, no gradient). It counts the subnormal entries of the
batch's relation vectors (the LSTM's last states) and of the gradients, and checks that the setting reached every
thread of the pool (the share of a large product of subnormals that comes out 0). Writes ``subnormal_step.json``
and ``subnormal_step.md``.

    python benchmarks/subnormal_step.py --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from _common import REPO, markdown_table, setup_logging, write_script_result
from kgdistill.api import ensure_run
from kgdistill.runs import JsonlLog, flush_denormals

PROBE = r"""
import json, sys, time, torch
from kgdistill.runs import flush_denormals
mode, weights, path, steps, batch_size = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
if mode == "flushed":
    flush_denormals()
pool = torch.full((1 << 22,), 1e-39) * 1.0  # every thread's share of a large product: 0 where flushed
flushed_share = float((pool == 0).float().mean())
from kgdistill.checkpoint import load_checkpoint, load_model
from kgdistill.config import RunConfig
from kgdistill.data.batching import Batch
from kgdistill.models import build_model
from kgdistill.objective import Objective
from kgdistill.run import load_data
ckpt = load_checkpoint(path)
cfg = RunConfig.model_validate(ckpt.meta["config"])
torch.manual_seed(0)
if weights == "trained":
    model = load_model(ckpt)
else:
    spec = ckpt.meta["model"]
    model = build_model({"name": spec["name"], **spec["kwargs"]}, ckpt.vocab)
train = load_data(cfg).splits["train"]
order = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))
batches = [train[order[i * batch_size:(i + 1) * batch_size]] for i in range(steps + 1)]
objective = Objective.build([{"loss": "supervised_ce"}])
optimizer = torch.optim.Adam(model.parameters(), lr=cfg.train.lr)
tiny = torch.finfo(torch.float32).tiny
def subnormal(t):
    t = t.detach().abs()
    return int(((t > 0) & (t < tiny)).sum())
def step(q):
    loss, _ = objective(model(q), {}, Batch(q))
    optimizer.zero_grad(); loss.backward(); optimizer.step()
    return loss.item()
with torch.no_grad():
    r = model.encode(batches[0])[1]
r_sub, r_n = subnormal(r), r.numel()
step(batches[0])
g_sub = sum(subnormal(p.grad) for p in model.parameters() if p.grad is not None)
g_n = sum(p.grad.numel() for p in model.parameters() if p.grad is not None)
times, fwd = [], []
for q in batches[1:]:
    t = time.perf_counter(); loss = step(q); times.append(time.perf_counter() - t)
    with torch.no_grad():
        t = time.perf_counter(); model.score_all(q); fwd.append(time.perf_counter() - t)
print(json.dumps({"mode": mode, "weights": weights, "threads": torch.get_num_threads(),
    "flushed_share": flushed_share, "step_s": times, "forward_s": fwd, "loss": loss,
    "relation_subnormal": r_sub, "relation_entries": r_n, "grad_subnormal": g_sub, "grad_entries": g_n}))
"""


def run_config(args: argparse.Namespace) -> dict[str, Any]:
    """The TA-DistMult run whose LSTM saturates (the capacity spec's student at lr 0.1, ``--epochs`` epochs)."""
    return {
        "seed": 0,
        "name": "subnormal-ta_distmult-256",
        "data": {
            "name": args.dataset,
            "time": {"granularity": "bins", "min_bin_size": 300, "interval_mode": "start"},
        },
        "model": {"name": "ta_distmult", "dim": args.dim, "init_scale": 0.1},
        "stages": [{"epochs": args.epochs, "objective": [{"loss": "supervised_ce"}]}],
        "train": {
            "batch_size": args.batch_size,
            "optimizer": "adam",
            "lr": args.lr,
            "eval_every": args.epochs,
        },
        "eval": {"time_aware": True},
    }


def probe(mode: str, weights: str, ckpt: Path, args: argparse.Namespace) -> dict[str, Any]:
    argv = [mode, weights, str(ckpt), str(args.steps), str(args.batch_size)]
    out = subprocess.run(
        [sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, check=True
    )
    row: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    row["step_median_s"] = statistics.median(row["step_s"])
    row["forward_median_s"] = statistics.median(row["forward_s"])
    return row


def markdown(doc: dict[str, Any]) -> str:
    rows = [
        {
            "weights": r["weights"],
            "subnormals": r["mode"],
            "step ms (median)": f"{1000 * r['step_median_s']:.0f}",
            "forward ms (median)": f"{1000 * r['forward_median_s']:.0f}",
            "subnormal relation entries": f"{r['relation_subnormal']:,} of {r['relation_entries']:,}",
            "subnormal gradient entries": f"{r['grad_subnormal']:,} of {r['grad_entries']:,}",
            "threads flushing": f"{r['flushed_share']:.2f}",
            "loss after": f"{r['loss']:.4f}",
        }
        for r in doc["rows"]
    ]
    ratios = ", ".join(
        f"{w}: step {v['step']:.1f}x, forward {v['forward']:.1f}x"
        for w, v in doc["kept_over_flushed"].items()
    )
    equal = ", ".join(f"{w}: {eq}" for w, eq in doc["losses_equal"].items())
    return "\n".join(
        [
            "# Subnormal floats in a CPU training step (saturated TA-DistMult LSTM)",
            "",
            f"TA-DistMult-{doc['dim']} on {doc['dataset']}, Adam lr {doc['lr']}, trained {doc['epochs']} epoch(s) "
            f"(valid MRR {100 * doc['valid_mrr']:.2f} after them); batch {doc['batch_size']} of real training "
            f"queries, 1-N cross-entropy; {doc['steps']} timed steps per probe, each probe a fresh process. "
            f"Time with subnormals kept / flushed: {ratios}. Losses after the steps equal, kept and flushed: "
            f"{equal}. "
            '"threads flushing": the share of a large product '
            "of subnormals that came out 0 (1.00: the setting reached every thread of the pool).",
            "",
            markdown_table(rows),
            f"Command: `{doc['command']}`  ",
            f"Machine: {doc['machine']}",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="yago11k")
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=1000)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--work", type=Path, default=REPO / "benchmarks/work/subnormal_step")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = p.parse_args(argv)
    setup_logging()
    run_dir = args.work / f"ta_distmult-{args.dim}-{args.dataset}-lr{args.lr:g}-e{args.epochs}"
    ensure_run(run_config(args), run_dir)
    rows = [
        probe(mode, weights, run_dir / "last.safetensors", args)
        for weights in ("init", "trained")
        for mode in ("kept", "flushed")
    ]
    by = {(r["weights"], r["mode"]): r for r in rows}
    ratios = {
        w: {
            k: by[(w, "kept")][f"{k}_median_s"] / by[(w, "flushed")][f"{k}_median_s"]
            for k in ("step", "forward")
        }
        for w in ("init", "trained")
    }
    # the same weights and batches with and without flushing: the losses after the steps, compared exactly
    losses_equal = {
        w: by[(w, "kept")]["loss"] == by[(w, "flushed")]["loss"] for w in ("init", "trained")
    }
    valid = [r for r in JsonlLog(run_dir / "log.jsonl").records() if r.get("event") == "valid"][-1]
    fields = {
        "rows": rows,
        "kept_over_flushed": ratios,
        "losses_equal": losses_equal,
        "dataset": args.dataset,
        "dim": args.dim,
        "lr": args.lr,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "steps": args.steps,
        "valid_mrr": valid["mrr"],
    }
    print(
        write_script_result(
            args.out,
            "subnormal_step",
            "benchmarks/subnormal_step.py",
            sys.argv[1:] if argv is None else argv,
            fields,
            markdown,
        )
    )


if __name__ == "__main__":
    flush_denormals()  # before any tensor work: the training run flushes on every thread
    main()
