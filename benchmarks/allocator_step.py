"""The cost of glibc unmapping freed score matrices: one 1-N training step with and without
:func:`kgdistill.runs.keep_freed_memory`, each in a fresh process, alternating.

A DistMult step on WN18RR's size (40,943 entities, 11 relations, random queries) allocates and frees
``batch x entities`` score matrices; by default glibc returns such large blocks to the OS and page-faults them in
again on the next step. Each measurement runs in its own process (the setting is process-wide), after warm-up
steps; the losses of both settings are compared (they must be equal).

    python benchmarks/allocator_step.py --repeats 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from _common import markdown_table, write_script_result

STEP = r"""
import json, sys, time, torch
from kgdistill.runs import keep_freed_memory
torch.set_num_threads(int(sys.argv[2]))
kept = keep_freed_memory() if sys.argv[1] == "kept" else False
from kgdistill.data.batching import Batch
from kgdistill.models import Vocab, build_model
from kgdistill.objective import Objective
torch.manual_seed(0)
E, R, B, steps = 40943, 11, int(sys.argv[3]), int(sys.argv[4])
model = build_model({"name": "distmult", "dim": int(sys.argv[5])}, Vocab(E, R))
objective = Objective.build([{"loss": "supervised_ce"}])
optimizer = torch.optim.Adagrad(model.parameters(), lr=0.1)
q = torch.stack([torch.randint(E, (B,)), torch.randint(2 * R, (B,)), torch.randint(E, (B,))], 1)
def step():
    loss, _ = objective(model(q), {}, Batch(q))
    optimizer.zero_grad(); loss.backward(); optimizer.step()
    return loss.item()
for _ in range(3):
    step()
t = time.perf_counter()
for _ in range(steps):
    loss = step()
print(json.dumps({"kept": kept, "seconds": (time.perf_counter() - t) / steps, "loss": loss}))
"""


def measure(mode: str, args: argparse.Namespace) -> dict[str, Any]:
    argv = [mode, str(args.threads), str(args.batch_size), str(args.steps), str(args.dim)]
    out = subprocess.run(
        [sys.executable, "-c", STEP, *argv], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def markdown(doc: dict[str, Any]) -> str:
    rows = [
        {
            "setting": r["setting"],
            "s per step (median)": f"{r['median_s']:.3f}",
            "runs": ", ".join(f"{x:.3f}" for x in r["seconds"]),
            "loss": f"{r['loss']:.8f}",
        }
        for r in doc["rows"]
    ]
    return "\n".join(
        [
            "# One 1-N training step, glibc unmapping freed blocks vs keeping them",
            "",
            f"DistMult-{doc['dim']}, {doc['entities']:,} entities, batch {doc['batch_size']}, "
            f"{doc['threads']} thread(s); each run a fresh process, settings alternating. Speed-up "
            f"{doc['speedup']:.2f}x; losses equal: {doc['losses_equal']}.",
            "",
            markdown_table(rows),
            f"Command: `{doc['command']}`  ",
            f"Machine: {doc['machine']}",
            "",
        ]
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=1000)
    p.add_argument("--dim", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = p.parse_args()
    runs: dict[str, list[dict[str, Any]]] = {"default": [], "kept": []}
    for _ in range(args.repeats):
        for mode in ("default", "kept"):
            runs[mode].append(measure(mode, args))
    rows = [
        {
            "setting": "glibc default (unmap freed blocks)"
            if mode == "default"
            else "keep_freed_memory",
            "seconds": [r["seconds"] for r in rs],
            "median_s": statistics.median(r["seconds"] for r in rs),
            "loss": rs[0]["loss"],
        }
        for mode, rs in runs.items()
    ]
    fields = {
        "rows": rows,
        "dim": args.dim,
        "entities": 40943,
        "batch_size": args.batch_size,
        "threads": args.threads,
        "speedup": rows[0]["median_s"] / rows[1]["median_s"],
        "losses_equal": len({r["loss"] for rs in runs.values() for r in rs}) == 1,
    }
    print(
        write_script_result(
            args.out,
            "allocator_step",
            "benchmarks/allocator_step.py",
            sys.argv[1:],
            fields,
            markdown,
        )
    )


if __name__ == "__main__":
    main()
