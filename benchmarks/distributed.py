"""Data-parallel scaling under torchrun: training throughput by process count, and a memory model checked on real
graphs.

**Throughput.** Per configuration (``--configs``: dataset, model, dim, batch, negatives) and layout, one
``torchrun`` (``python -m torch.distributed.run``) of this script's worker trains ``--epochs`` epochs with
:func:`kgdistill.train.fit` (validation only at the end, on 100 facts). Training queries per second come from
the epochs' own seconds in ``log.jsonl`` (training only: no validation, no checkpoint), the median of the epochs
after the first (the first warms up). CPU layouts: 1 process x 1 thread, 1 process x ``--cores`` threads (the
honest single-process baseline on this machine), and ``P`` processes x 1 thread for ``P`` in 2..``--cores``
(gloo); for 1-N configurations also ``P`` processes with the entity table sharded by rows
(``train.shard_entities``, :mod:`kgdistill.shard`), each rank recording the entity rows and bytes it holds.
With CUDA devices, GPU rows are added: ``P`` processes for ``P`` in 1..the device count (NCCL). Each
rank records its peak resident memory (and on GPU its peak allocated CUDA memory). The load average before each
run is recorded: on a small machine the other processes compete for the same cores.

**Memory model.** The bytes of a 1-N KGE model's trained state, per rank, on paper: entity table ``E x w`` (``w``
real numbers a row: ``dim`` for DistMult, ``2 dim`` for ComplEx-like models), its gradient, the optimiser state
(Adagrad: 1 table, Adam: 2), DDP's gradient buckets (a second copy of the gradients) and the 1-N score
activations (``b x E`` floats a few times over, ``b`` the rank's rows of a batch), replicated on every rank
(data parallel) or divided by ``N`` (row-wise sharded entity table, ``docs/distributed.md``). Tabled for a
Wikidata5M-size graph (4,594,485 entities), and checked on the graphs here: the tensor bytes of the checkpoint
(parameters, optimiser state) against the model, and each rank's measured peak memory over its memory before
training against the predicted training overhead.

    python benchmarks/distributed.py --data-root /path/to/data
    python benchmarks/distributed.py --configs yago11k-tntcomplex-32 --epochs 2 --out /tmp/dist_check
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from _common import REPO, markdown_table, write_script_result

#: configurations: dataset, model, dim, global batch, sampled negatives (0: 1-N), optimiser
CONFIGS: dict[str, dict[str, Any]] = {
    "yago11k-tntcomplex-32": {
        "data": "yago11k",
        "model": "tntcomplex",
        "dim": 32,
        "batch": 1000,
        "negatives": 0,
        "optimizer": "adagrad",
    },
    "fb15k237-distmult-32-neg32": {
        "data": "fb15k237",
        "model": "distmult",
        "dim": 32,
        "batch": 1000,
        "negatives": 32,
        "optimizer": "adam",
    },
}

WIKIDATA5M_ENTITIES = 4_594_485
#: ``rows x E`` float32 matrices alive in a 1-N step (fitted to the YAGO11k run: 3 in theory, 5-6 measured)
ACTIVATION_COPIES = 5
_GIB = 1 << 30


# ------------------------------------------------------------------------------------------- worker
def _rss_bytes() -> int:
    """This process's current resident memory."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def worker(spec: dict[str, Any], out: Path) -> None:
    """One rank of a throughput run (started by torchrun): train, then write ``rank<r>.json``."""
    from kgdistill import dist
    from kgdistill.config import parse_config
    from kgdistill.run import Run
    from kgdistill.runs import keep_freed_memory, seed_everything

    torch.set_num_threads(spec["threads"])
    ranks = dist.init_from_env()
    cfg = parse_config(
        {
            "seed": 0,
            "data": {"name": spec["data"], "root": spec.get("root")},
            "model": {"name": spec["model"], "dim": spec["dim"]},
            "stages": [{"epochs": spec["epochs"]}],
            "train": {
                "batch_size": spec["batch"],
                "negatives": spec["negatives"],
                "optimizer": spec["optimizer"],
                "lr": 0.01 if spec["optimizer"] == "adam" else 0.1,
                "eval_every": spec["epochs"],
                "eval_max_queries": 100,
                "patience": 0,
                "progress": False,
                "device": spec["device"],
                "shard_entities": spec.get("sharded", False),
            },
        }
    )
    seed_everything(cfg.seed)
    keep_freed_memory()
    run = Run.build(cfg, progress=False)
    run_dir = Path(dist.broadcast(tempfile.mkdtemp(prefix="kgdistill-dist-bench-")))
    if run.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(run.device)
    before = _rss_bytes()
    run.fit(run_dir)
    block = run.model.entities.weight  # the rank's rows when the table is sharded
    record: dict[str, Any] = {
        "rank": ranks.rank,
        "entity_rows": int(block.shape[0]),
        "entity_bytes": int(block.numel() * block.element_size()),
        "rss_before": before,
        "rss_peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "cuda_peak": torch.cuda.max_memory_allocated(run.device)
        if run.device.type == "cuda"
        else None,
    }
    if dist.is_main():
        log = [json.loads(x) for x in (run_dir / "log.jsonl").read_text().splitlines()]
        record["epoch_seconds"] = [e["seconds"] for e in log if e["event"] == "epoch"]
        record["queries"] = 2 * len(run.kg.splits["train"])
        record["entities"] = run.kg.num_entities
        record["width"] = int(run.model.entities.weight.shape[1])
        from safetensors.torch import load_file

        tensors = load_file(str(run_dir / "last.safetensors"))
        record["param_bytes"] = sum(
            t.numel() * t.element_size() for k, t in tensors.items() if k.startswith("model.")
        )
        record["optim_bytes"] = sum(
            t.numel() * t.element_size() for k, t in tensors.items() if k.startswith("optim.")
        )
        record["table_bytes"] = int(tensors["model.entities.weight"].numel() * 4)
    (out / f"rank{ranks.rank}.json").write_text(json.dumps(record))
    dist.barrier()
    if dist.is_main():
        shutil.rmtree(run_dir, ignore_errors=True)


# ------------------------------------------------------------------------------------------- driver
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _launch(spec: dict[str, Any], procs: int, backend: str | None) -> list[dict[str, Any]]:
    """One torchrun of the worker; every rank's record."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "OMP_NUM_THREADS": str(spec["threads"])}
        if backend:
            env["KGDISTILL_DIST_BACKEND"] = backend
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc-per-node",
            str(procs),
            "--master-addr",
            "127.0.0.1",
            "--master-port",
            str(_free_port()),
            str(Path(__file__).resolve()),
            "--worker",
            json.dumps(spec),
            tmp,
        ]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd[:6])}... failed:\n{done.stderr[-3000:]}")
        return [json.loads((Path(tmp) / f"rank{r}.json").read_text()) for r in range(procs)]


def _layouts(cores: int, one_n: bool) -> list[tuple[str, int, int, str | None, bool]]:
    """``(device, processes, threads per process, backend, sharded table)`` to measure; sharded layouts only for
    1-N training (``one_n``)."""
    out: list[tuple[str, int, int, str | None, bool]] = [("cpu", 1, 1, None, False)]
    if cores > 1:
        out.append(("cpu", 1, cores, None, False))
    out += [("cpu", p, 1, "gloo", False) for p in range(2, cores + 1)]
    if one_n:
        out += [("cpu", p, 1, "gloo", True) for p in range(2, cores + 1)]
    if torch.cuda.is_available():
        gpus = range(1, torch.cuda.device_count() + 1)
        out += [("cuda", p, 1, "nccl", False) for p in gpus]
        if one_n:
            out += [("cuda", p, 1, "nccl", True) for p in gpus if p > 1]
    return out


def throughput_row(
    name: str,
    spec: dict[str, Any],
    device: str,
    procs: int,
    threads: int,
    backend: str | None,
    sharded: bool = False,
) -> dict[str, Any]:
    """Measure one layout; the row (with the main rank's raw record under ``_record``, every rank's entity
    rows and bytes under ``_ranks``)."""
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    ranks = _launch(
        {**spec, "device": device, "threads": threads, "sharded": sharded}, procs, backend
    )
    main = ranks[0]
    seconds = main["epoch_seconds"][1:] or main["epoch_seconds"]
    per_epoch = statistics.median(seconds)
    return {
        "config": name,
        "device": device,
        "processes": procs,
        "threads": threads,
        "backend": backend or "-",
        "sharded": sharded,
        "queries_per_s": round(main["queries"] / per_epoch, 1),
        "epoch_s": round(per_epoch, 3),
        "peak_rss_gib": round(max(r["rss_peak"] for r in ranks) / _GIB, 3),
        "rss_before_gib": round(max(r["rss_before"] for r in ranks) / _GIB, 3),
        "cuda_peak_gib": round(max(r["cuda_peak"] for r in ranks) / _GIB, 3)
        if main["cuda_peak"] is not None
        else None,
        "load_avg_1m": round(load, 2),
        "wall_s": round(time.perf_counter() - t0, 1),
        "_record": main,
        "_ranks": [{"rows": r["entity_rows"], "bytes": r["entity_bytes"]} for r in ranks],
    }


# ------------------------------------------------------------------------------------------- memory model
def model_bytes(
    entities: int,
    width: int,
    *,
    precision: int = 4,
    optimizer: str = "adam",
    ranks: int = 1,
    sharded: bool = False,
    batch_rows: int = 0,
) -> dict[str, int]:
    """Bytes per rank of an entity table ``(entities, width)`` in training (see the module docstring).

    ``precision``: bytes a number (4 fp32, 2 bf16; parameters, gradients and optimiser state alike).
    ``sharded``: the table's rows divided over ``ranks`` (else replicated, with DDP's gradient buckets when
    ``ranks > 1``).
    ``batch_rows``: a rank's queries a step, for the 1-N activations: ``ACTIVATION_COPIES`` ``rows x E``
    float32 matrices (scores, log-softmax, their gradients, the allocator's spare; sharded: ``E / ranks``
    columns each).
    """
    rows = -(-entities // ranks) if sharded else entities
    table = rows * width * precision
    states = {"adam": 2, "adamw": 2, "adagrad": 1, "sgd": 0}[optimizer]
    out = {
        "table": table,
        "grad": table,
        "optimizer": states * table,
        "ddp_buckets": 0 if sharded or ranks == 1 else table,
        "activations": ACTIVATION_COPIES * batch_rows * rows * 4,
    }
    out["total"] = sum(out.values())
    return out


def paper_table(ranks: tuple[int, ...] = (2, 8)) -> list[dict[str, Any]]:
    """Per-rank GiB for a Wikidata5M-size table: dims x precision x optimiser; one process, data parallel
    (any number of ranks: each holds everything) and row-wise sharded over ``ranks``."""
    rows = []
    for width in (64, 128, 256, 512):
        for precision, pname in ((4, "fp32"), (2, "bf16")):
            for opt in ("adagrad", "adam"):
                row: dict[str, Any] = {
                    "width": width,
                    "precision": pname,
                    "optimizer": opt,
                    "table_gib": round(WIKIDATA5M_ENTITIES * width * precision / _GIB, 2),
                }
                for label, n in (("one_process", 1), ("ddp_any_n", 2)):
                    rep = model_bytes(
                        WIKIDATA5M_ENTITIES, width, precision=precision, optimizer=opt, ranks=n
                    )
                    row[f"{label}_gib"] = round(rep["total"] / _GIB, 2)
                for n in ranks:
                    sh = model_bytes(
                        WIKIDATA5M_ENTITIES,
                        width,
                        precision=precision,
                        optimizer=opt,
                        ranks=n,
                        sharded=True,
                    )
                    row[f"sharded_x{n}_gib"] = round(sh["total"] / _GIB, 2)
                rows.append(row)
    return rows


def check_row(row: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """The model against one measured run: tensor bytes (exact) and the training overhead (approximate)."""
    rec = row["_record"]
    procs = row["processes"]
    sharded = row["sharded"]
    # a sharded rank scores the whole global batch against its E / N columns; a replicated one its rows
    local = spec["batch"] if sharded else -(-spec["batch"] // procs)
    pred = model_bytes(
        rec["entities"],
        rec["width"],
        optimizer=spec["optimizer"],
        ranks=procs,
        sharded=sharded,
        batch_rows=0 if spec["negatives"] else local,
    )
    params = rec["param_bytes"]
    states = {"adam": 2, "adagrad": 1}[spec["optimizer"]]
    if sharded:  # the checkpoint holds the whole table; a rank trains its block (+ the small replicated rest)
        rest = params - rec["table_bytes"]
        mine = pred["table"] + rest
        overhead = mine * (1 + states) + pred["activations"]
    else:
        overhead = params + rec["optim_bytes"] + (params if procs > 1 else 0) + pred["activations"]
    return {
        "config": row["config"],
        "device": row["device"],
        "processes": procs,
        "threads": row["threads"],
        "sharded": sharded,
        "rank_table_mib_model": round(pred["table"] / 2**20, 3),
        "rank_table_mib_measured": round(max(r["bytes"] for r in row["_ranks"]) / 2**20, 3),
        "rank_rows": "/".join(str(r["rows"]) for r in row["_ranks"]),
        "table_mib_model": round(
            model_bytes(rec["entities"], rec["width"], optimizer=spec["optimizer"])["table"]
            / 2**20,
            2,
        ),
        "table_mib_checkpoint": round(rec["table_bytes"] / 2**20, 2),
        "optimizer_mib_model": round(params * states / 2**20, 2),
        "optimizer_mib_checkpoint": round(rec["optim_bytes"] / 2**20, 2),
        "train_overhead_mib_model": round(overhead / 2**20, 1),
        "train_overhead_mib_measured": round(
            (row["peak_rss_gib"] - row["rss_before_gib"]) * 1024, 1
        ),
    }


# ------------------------------------------------------------------------------------------- output
def _markdown(doc: dict[str, Any]) -> str:
    cols = [
        "config",
        "device",
        "processes",
        "threads",
        "backend",
        "sharded",
        "queries_per_s",
        "epoch_s",
        "peak_rss_gib",
        "cuda_peak_gib",
        "load_avg_1m",
        "queries_per_s_all",
    ]
    parts = [
        "# Data-parallel scaling (torchrun)\n",
        f"Machine: {doc['machine']['cpu']}, {doc['cores']} cores, torch {doc['machine']['torch']}, "
        f"CUDA: {doc['machine']['cuda'] or 'none'}. {doc['note']}\n",
        "## Training throughput\n",
        "Training queries (both directions) per second, median of the epochs after the first; seconds from "
        "the run's own log (no validation, no checkpoint); the fastest of the repeats (the layouts alternate; "
        "every repeat's value and load average are in the JSON). Peak RSS: the largest rank's.\n",
        markdown_table(doc["rows"], cols),
        "\n## Memory model, checked\n",
        "Tensor bytes of the entity table and the optimiser state: the model against the checkpoint; "
        "`rank_table`: the entity bytes one rank holds (sharded: its block of rows), model against measured "
        "(the largest rank). Training "
        "overhead: peak resident memory minus memory before training (largest rank), against gradients + "
        f"optimiser state + DDP buckets (several processes) + 1-N activations ({ACTIVATION_COPIES} x rows x E "
        "floats; none with sampled negatives), plus what the model leaves out (the allocator, the loss's "
        "other tensors): the model is a floor, read the gap as its error.\n",
        markdown_table(doc["checks"]),
        f"\n## Memory model on paper: a Wikidata5M-size entity table ({WIKIDATA5M_ENTITIES:,} entities)\n",
        "GiB per rank: table + gradient + optimiser state (+ DDP's gradient buckets when replicated), "
        "without activations. `width`: numbers per entity row (ComplEx of dim d: 2d). `one_process`: no "
        "DDP; `ddp_any_n`: data parallel over any number of ranks (each holds the table, its gradient, the "
        "optimiser state and DDP's gradient buckets); `sharded_xN`: the rows divided over N ranks "
        "(`train.shard_entities`, docs/distributed.md; the `rank_table` columns above check it on "
        "YAGO11k). bf16: parameters and state stored in bf16 "
        "(train.amp keeps fp32 parameters and only computes in bf16).\n",
        markdown_table(doc["paper"]),
        f"\nCommand: `{doc['command']}`\n",
    ]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "--worker":
        worker(json.loads(argv[1]), Path(argv[2]))
        return
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument(
        "--repeats", type=int, default=2, help="runs per layout; the fastest is reported"
    )
    p.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    p.add_argument("--data-root", default=os.environ.get("KGDISTILL_DATA"))
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = p.parse_args(argv)
    rows, checks = [], []
    for name in args.configs:
        spec = {**CONFIGS[name], "epochs": args.epochs, "root": args.data_root}
        layouts = _layouts(args.cores, one_n=not spec["negatives"])
        # the layouts alternate, repeat after repeat, so that a burst of load from elsewhere hits all of them
        tries = [
            [throughput_row(name, spec, *layout) for layout in layouts] for _ in range(args.repeats)
        ]
        for i in range(len(layouts)):
            runs = [t[i] for t in tries]
            row = max(runs, key=lambda r: r["queries_per_s"])  # the least disturbed run
            row["queries_per_s_all"] = [r["queries_per_s"] for r in runs]
            row["load_avg_all"] = [r["load_avg_1m"] for r in runs]
            print(json.dumps({k: v for k, v in row.items() if k[0] != "_"}), flush=True)
            checks.append(check_row(row, spec))
            rows.append({k: v for k, v in row.items() if k[0] != "_"})
    note = (
        f"This machine has {args.cores} cores: P processes compete with each other and with everything "
        "else running (see the load average), so CPU scaling here is a lower bound."
    )
    text = write_script_result(
        args.out,
        "distributed",
        "benchmarks/distributed.py",
        argv,
        {
            "benchmark": "distributed",
            "cores": args.cores,
            "note": note,
            "rows": rows,
            "checks": checks,
            "paper": paper_table(),
        },
        _markdown,
    )
    print(text)


if __name__ == "__main__":
    main()
