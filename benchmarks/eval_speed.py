"""Speed of filtered test evaluation: PyKEEN 1.11.1 vs kgdistill vs a plain matrix-product floor, per dimension.

Per dataset and dimension (``--dims``, default 16 32 200 1000), one model (``--model``: ``distmult``, default,
or ``complex``; PyKEEN's random initialisation, seed 0) is evaluated on the test split: head and tail queries,
filtered with train + valid + test, realistic ranks. With ``--train-epochs N`` the model is first trained by
PyKEEN's own sLCWA loop for ``N`` epochs (batch 1000, Adagrad lr 0.1, softplus loss, one uniform negative per
positive: a trained model, whose scores are spread like a real one's, not random init's); untrained otherwise.
Rows are kept per number of training epochs. Three timings:

1. ``pykeen_s``: ``RankBasedEvaluator().evaluate(...)`` on the PyKEEN model, whose ``TriplesFactory`` uses
   kgdistill's own ids, with an explicit ``--pykeen-batch-size`` (default 256; left to ``None`` PyKEEN uses 32 on
   CPU; 256 was the fastest of 32 / 256 / 512 on FB15k-237). Timed once, no warm-up: it takes minutes, so only
   at ``--pykeen-dims`` (default 32 and 200); ``None`` at the other dimensions.
2. ``kgdistill_s``: :func:`kgdistill.evaluate.evaluate` on a kgdistill model holding PyKEEN's weights (relation
   ``r`` copied to rows ``r`` and ``r + R``, conjugated for ComplEx: a tail query on the reciprocal relation
   then scores exactly like PyKEEN's head prediction). It includes building the
   :class:`~kgdistill.data.filters.FilterIndex`; ``index_s`` is that build alone.
3. ``floor_s``: what any evaluator must at least do: per chunk (kgdistill's chunk size), the query vectors, one
   matrix product with all entity vectors, the known answers (flat positions precomputed outside the timed
   region) set to ``-inf`` by one ``index_fill_``, and the realistic rank of the true answer from one in-place
   ``sign(score - true)`` pass and its row sum (the cheapest exact count we know; kgdistill counts the same way).

kgdistill and the floor get one warm-up run each, then ``--repeats`` timed runs, alternating kgdistill and floor
so that both see the same machine load (the medians are reported). The script exits with an error unless
kgdistill and the floor agree on MRR, MR and Hits@1/3/10 (relative 1e-6) and, where PyKEEN ran, the floor's ranks
equal PyKEEN's query by query up to near-ties (float rounding may make or break an exact tie, moving a rank by
0.5; at most 1% of them), PyKEEN's metrics (``both.realistic``; relative 1e-6, as PyKEEN aggregates in float32)
are those of its ranks, and, where no near-tie moved a rank, equal kgdistill's. With ``--max-test N`` only the
first N test triples are ranked; all test triples are still filtered.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pykeen
import torch
from pykeen.evaluation import RankBasedEvaluator
from pykeen.losses import SoftplusLoss
from pykeen.models import ComplEx, DistMult, ERModel
from pykeen.training import SLCWATrainingLoop
from pykeen.triples import TriplesFactory

from kgdistill.data.datasets import load_kg
from kgdistill.data.filters import FilterIndex
from kgdistill.data.kg import KG
from kgdistill.evaluate import Metrics, default_chunk, evaluate, score_width
from kgdistill.models import KGEModel, Vocab, build_model

# our metric name -> PyKEEN's (read as "both.realistic.<name>")
PYKEEN_KEYS = {
    "mrr": "inverse_harmonic_mean_rank",
    "mr": "arithmetic_mean_rank",
    "hits@1": "hits_at_1",
    "hits@3": "hits_at_3",
    "hits@10": "hits_at_10",
}
PYKEEN_MODELS: dict[str, type[ERModel]] = {"distmult": DistMult, "complex": ComplEx}
Combine = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def timed(fn: Callable[[], Any], device: torch.device) -> tuple[Any, float]:
    """``fn()`` and its wall time in seconds (the GPU is synchronised on both ends)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return out, time.perf_counter() - start


def summarize(ranks: torch.Tensor) -> dict[str, float]:
    ranks = ranks.double().cpu()
    out = {"mrr": float((1 / ranks).mean()), "mr": float(ranks.mean())}
    return out | {f"hits@{k}": float((ranks <= k).double().mean()) for k in (1, 3, 10)}


def check(
    where: str, name: str, got: dict[str, float], ref_name: str, ref: dict[str, float]
) -> None:
    for m in PYKEEN_KEYS:
        if not math.isclose(got[m], ref[m], rel_tol=1e-6, abs_tol=1e-9):
            sys.exit(f"MISMATCH on {where}: {name} {m} = {got[m]!r}, {ref_name} {m} = {ref[m]!r}")


# ------------------------------------------------------------------------------------------ the floor
def floor_known_positions(
    kg: KG, queries: torch.Tensor, chunk: int, device: torch.device
) -> list[torch.Tensor]:
    """Per chunk of queries, the flat positions ``row * E + entity`` of every known answer (true one
    included) in the chunk's row-major ``(B, E)`` scores."""
    answers: dict[tuple[int, int], list[int]] = {}
    for split in ("train", "valid", "test"):
        for h, r, t in kg.facts[split].tolist():
            answers.setdefault((h, r), []).append(t)
            answers.setdefault((t, r + kg.num_relations), []).append(h)
    positions = []
    for s in range(0, len(queries), chunk):
        flat: list[int] = []
        for i, (h, r) in enumerate(queries[s : s + chunk, :2].tolist()):
            flat += [i * kg.num_entities + t for t in answers[h, r]]
        positions.append(torch.tensor(flat, dtype=torch.long, device=device))
    return positions


@torch.inference_mode()
def floor_ranks(
    ent: torch.Tensor,
    rel: torch.Tensor,
    combine: Combine,
    queries: torch.Tensor,
    positions: list[torch.Tensor],
    chunk: int,
) -> torch.Tensor:
    """Realistic filtered rank of each query ``(h, r, t)``; ``rel`` holds the reciprocal relations too.

    Every known answer (the true one included) is set to ``-inf``; ``b = sum(sign(score - true))`` over the
    ``E`` columns is ``#greater - #less``, so the realistic rank ``1 + #greater + #equal / 2`` is
    ``1 + (E + b) / 2``.
    """
    ranks = torch.empty(len(queries), dtype=torch.float64, device=queries.device)
    n = ent.shape[0]
    for i, s in enumerate(range(0, len(queries), chunk)):
        q = queries[s : s + chunk]
        scores = combine(ent[q[:, 0]], rel[q[:, 1]]) @ ent.T
        true = scores.gather(1, q[:, 2:3])
        # every known answer, the true one too
        scores.view(-1).index_fill_(0, positions[i], -math.inf)
        balance = scores.sub_(true).sign_().sum(1)
        ranks[s : s + len(q)] = 1 + (n + balance.double()) / 2
    return ranks


# ------------------------------------------------------------------------------ PyKEEN and kgdistill
def pykeen_model(
    kg: KG, name: str, dim: int, device: torch.device, epochs: int = 0
) -> tuple[ERModel, float]:
    """PyKEEN's model (seed 0), trained for ``epochs`` sLCWA epochs, and the training seconds."""
    factory = TriplesFactory(kg.splits["train"], kg.entity_ids, kg.relation_ids)
    cls = PYKEEN_MODELS[name]
    model = cls(triples_factory=factory, embedding_dim=dim, loss=SoftplusLoss(), random_seed=0).to(
        device
    )
    if epochs <= 0:
        return model, 0.0
    loop = SLCWATrainingLoop(
        model=model,
        triples_factory=factory,
        optimizer="adagrad",
        optimizer_kwargs={"lr": 0.1},
        negative_sampler="basic",
        negative_sampler_kwargs={"num_negs_per_pos": 1},
    )
    start = time.perf_counter()
    losses = loop.train(
        triples_factory=factory,
        num_epochs=epochs,
        batch_size=1000,
        use_tqdm=False,
        use_tqdm_batch=False,
        pin_memory=False,
    )
    seconds = time.perf_counter() - start
    print(
        f"  trained {epochs} sLCWA epochs in {seconds:.1f} s, last loss {losses[-1]:.4f}",
        flush=True,
    )
    return model.eval(), seconds


def as_real(x: torch.Tensor) -> torch.Tensor:
    """PyKEEN's complex vectors ``(n, d)`` as kgdistill's ``[re | im]`` ``(n, 2d)``; real ones unchanged."""
    return torch.cat([x.real, x.imag], dim=-1) if x.is_complex() else x


def copy_to_kgdistill(pk: ERModel, kg: KG, name: str, dim: int, device: torch.device) -> KGEModel:
    """A kgdistill model with PyKEEN's entity vectors and relation vectors (on r and, conjugated, r + R)."""
    model = build_model({"name": name, "dim": dim}, Vocab(kg.num_entities, kg.num_relations))
    with torch.no_grad():
        rel = pk.relation_representations[0](indices=None)
        model.entities.weight.copy_(as_real(pk.entity_representations[0](indices=None)))
        reciprocal = as_real(rel.conj().resolve_conj())
        model.relations.rel.weight.copy_(torch.cat([as_real(rel), reciprocal]))  # type: ignore[union-attr]
    return model.to(device).eval()


def run_pykeen(
    pk: ERModel, kg: KG, test: torch.Tensor, batch_size: int
) -> tuple[dict[str, float], torch.Tensor, float]:
    """PyKEEN's metrics, its realistic ranks (tail queries, then head queries) and seconds."""
    rest = kg.facts["test"][len(test) :]  # with --max-test: unranked test triples, still filtered
    filters = [f.to(test.device) for f in (kg.facts["train"], kg.facts["valid"], rest)]
    evaluator = RankBasedEvaluator(clear_on_finalize=False)  # keeps the ranks for the check
    result, seconds = timed(
        lambda: evaluator.evaluate(
            pk, test, additional_filter_triples=filters, batch_size=batch_size, use_tqdm=False
        ),
        test.device,
    )
    metrics = {m: float(result.get_metric(f"both.realistic.{k}")) for m, k in PYKEEN_KEYS.items()}
    ranks = [
        torch.from_numpy(r) for side in ("tail", "head") for r in evaluator.ranks[side, "realistic"]
    ]
    return metrics, torch.cat(ranks).double(), seconds


def bench_dim(
    kg: KG, name: str, dim: int, args: argparse.Namespace, device: torch.device
) -> dict[str, Any]:
    """One row: PyKEEN (at ``--pykeen-dims``), kgdistill and the floor on one model of width ``dim``."""
    where = f"{name} {args.model} dim {dim}"
    test = kg.splits["test"][: args.max_test] if args.max_test else kg.splits["test"]
    pk, train_s = pykeen_model(kg, args.model, dim, device, args.train_epochs)
    model = copy_to_kgdistill(pk, kg, args.model, dim, device)
    chunk = args.chunk or default_chunk(kg.num_entities, device, score_width(model))
    print(f"-- {where}: chunk {chunk} queries", flush=True)

    pk_metrics = pk_ranks = pykeen_s = None
    if dim in args.pykeen_dims:
        print(f"PyKEEN, batch size {args.pykeen_batch_size}, timed once without warm-up ...")
        pk_metrics, pk_ranks, pykeen_s = run_pykeen(pk, kg, test.to(device), args.pykeen_batch_size)
        print(f"  PyKEEN    {pykeen_s:9.3f} s  MRR {pk_metrics['mrr']:.8f}", flush=True)
    del pk

    _, index_s = timed(lambda: FilterIndex.build(kg), device)

    def run_kgdistill() -> Metrics:
        return evaluate(model, kg, "test", max_queries=args.max_test, batch_size=args.chunk)

    h, r, t = test.unbind(1)
    queries = torch.cat([test, torch.stack([t, r + kg.num_relations, h], 1)])  # tails, then heads
    positions = floor_known_positions(kg, queries, chunk, device)
    queries = queries.to(device)
    ent, rel = model.entities.weight.detach(), model.relations.rel.weight.detach()  # type: ignore[union-attr]
    combine = model.interaction.combine

    def run_floor() -> torch.Tensor:
        return floor_ranks(ent, rel, combine, queries, positions, chunk)

    kgd_metrics = {m: run_kgdistill().sides["both"][m] for m in PYKEEN_KEYS}  # + warm-up
    ranks = run_floor().cpu()  # + warm-up
    floor_metrics = summarize(ranks)
    kgd_times, floor_times = [], []
    for _ in range(args.repeats):  # alternating: both see the same load
        kgd_times.append(timed(run_kgdistill, device)[1])
        floor_times.append(timed(run_floor, device)[1])
    kgdistill_s, floor_s = statistics.median(kgd_times), statistics.median(floor_times)
    print(
        f"  kgdistill {kgdistill_s:9.3f} s  MRR {kgd_metrics['mrr']:.8f}  (index build {index_s:.3f} s)\n"
        f"  floor     {floor_s:9.3f} s  MRR {floor_metrics['mrr']:.8f}",
        flush=True,
    )
    check(where, "kgdistill", kgd_metrics, "floor", floor_metrics)
    differ = None
    if pk_metrics is not None and pk_ranks is not None and pykeen_s is not None:
        differ = int((ranks != pk_ranks).sum())
        if differ > max(10, len(ranks) // 100) or float((ranks - pk_ranks).abs().max()) > 1:
            sys.exit(
                f"MISMATCH on {where}: {differ} floor ranks differ from PyKEEN's, not just near-ties"
            )
        print(f"  ({differ} of {len(ranks)} floor ranks differ from PyKEEN's by a near-tie)")
        # PyKEEN's metrics are those of its ranks; they equal ours where no near-tie moved a rank (a rank of
        # 40 vs 40.5 alone moves the MRR of 40932 queries by 1e-3 relative at MRR ~7e-4)
        check(where, "PyKEEN", pk_metrics, "PyKEEN's own ranks", summarize(pk_ranks))
        if differ == 0:
            check(where, "kgdistill", kgd_metrics, "PyKEEN", pk_metrics)
    return {
        "dataset": name,
        "device": device.type,
        "model": args.model,
        "dim": dim,
        "train_epochs": args.train_epochs,
        "train_s": train_s,
        "width": score_width(model),
        "num_entities": kg.num_entities,
        "num_queries": len(queries),
        "pykeen_s": pykeen_s,
        "kgdistill_s": kgdistill_s,
        "floor_s": floor_s,
        "index_s": index_s,
        "speedup_vs_pykeen": pykeen_s / kgdistill_s if pykeen_s is not None else None,
        "ratio_to_floor": kgdistill_s / floor_s,
        "mrr_pykeen": pk_metrics["mrr"] if pk_metrics is not None else None,
        "mrr_kgdistill": kgd_metrics["mrr"],
        "mrr_floor": floor_metrics["mrr"],
        "metrics": {"pykeen": pk_metrics, "kgdistill": kgd_metrics, "floor": floor_metrics},
        "ranks_differing_by_near_tie": differ,
        "mrr_gap_from_near_ties": (
            floor_metrics["mrr"] - summarize(pk_ranks)["mrr"] if pk_ranks is not None else None
        ),
        "kgdistill_runs_s": kgd_times,
        "floor_runs_s": floor_times,
        "pykeen_batch_size": args.pykeen_batch_size,
        "chunk": chunk,
        "load_average_after": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def bench_dataset(
    name: str, args: argparse.Namespace, device: torch.device
) -> list[dict[str, Any]]:
    kg = load_kg(name, root=args.data_root)
    if kg.temporal:
        sys.exit(f"{name} is temporal; this benchmark is for static graphs")
    n = min(args.max_test or len(kg.splits["test"]), len(kg.splits["test"]))
    print(f"\n== {kg!r}: ranking {n} test triples x 2 directions on {device}", flush=True)
    return [bench_dim(kg, name, dim, args, device) for dim in args.dims]


# ---------------------------------------------------------------------------------------- reporting
def machine(device: torch.device) -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    names = [ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")]
    return {
        "cpu": names[0] if names else platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "torch": torch.__version__,
        "pykeen": pykeen.get_version(),
        "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def row_key(r: dict[str, Any]) -> tuple[str, str, str, int, int]:
    """Rows are merged by dataset, device, model, dimension and training epochs (rows from before ``model``
    are DistMult, from before ``train_epochs`` untrained)."""
    return (
        r["dataset"],
        r["device"],
        r.get("model", "distmult"),
        r["dim"],
        r.get("train_epochs", 0),
    )


def fmt(x: float | None, spec: str, missing: str = "not timed") -> str:
    return missing if x is None else format(x, spec)


def table_line(r: dict[str, Any]) -> str:
    mrrs = " / ".join(fmt(r[k], ".6f", "-") for k in ("mrr_pykeen", "mrr_kgdistill", "mrr_floor"))
    speedup = fmt(r["speedup_vs_pykeen"], ".0f")
    return (
        f"| {r['dataset']} | {r.get('model', 'distmult')} | {r['dim']} | {r.get('train_epochs', 0)} "
        f"| {r['device']} "
        f"| {r['num_queries']} | {r.get('chunk', '-')} | {fmt(r['pykeen_s'], '.1f')} "
        f"| {r['kgdistill_s']:.3f} | {r['index_s']:.3f} | {r['floor_s']:.3f} "
        f"| {speedup}{'' if r['speedup_vs_pykeen'] is None else 'x'} | {r['ratio_to_floor']:.2f} "
        f"| {mrrs} |"
    )


def write_results(rows: list[dict[str, Any]], out: Path) -> None:
    """Merge ``rows`` into ``eval_speed.json`` by (dataset, device, model, dim); rewrite ``eval_speed.md``."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "eval_speed.json"
    new = {row_key(r) for r in rows}
    old = json.loads(path.read_text()) if path.exists() else []
    rows = sorted(
        [r for r in old if row_key(r) not in new] + rows,
        key=lambda r: (
            r["device"],
            r["dataset"],
            r.get("model", "distmult"),
            r.get("train_epochs", 0),
            r["dim"],
        ),
    )
    path.write_text(json.dumps(rows, indent=2) + "\n")
    md = [
        "# Filtered test evaluation speed per embedding dimension",
        "",
        "Seconds to rank all head and tail test queries, filtered with train + valid + test, realistic ranks, "
        "with PyKEEN's model (random initialisation, seed 0), untrained or trained for `epochs` epochs by "
        "PyKEEN's sLCWA loop (batch 1000, Adagrad lr 0.1, softplus, one negative). kgdistill includes building its "
        "filter index (also shown alone); kgdistill and the floor: median of alternating runs after a warm-up; "
        "PyKEEN: a single run, timed only at some dimensions (`not timed` elsewhere: it takes minutes). "
        "`chunk`: queries per chunk (kgdistill's default for the dimension, also used by the floor). "
        "Produced by `benchmarks/eval_speed.py`.",
        "",
        "| dataset | model | dim | epochs | device | queries | chunk | PyKEEN s | kgdistill s | index s "
        "| floor s | speedup vs PyKEEN | kgdistill / floor | MRR PyKEEN / kgdistill / floor |",
        "|---|---|--:|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    md += [table_line(r) for r in rows]
    ties = [r for r in rows if r.get("ranks_differing_by_near_tie")]
    if ties:
        md += [
            "",
            "kgdistill and the floor agree exactly; PyKEEN's ranks differ from theirs only by near-ties (float "
            "rounding made or broke an exact tie, moving a rank by 0.5), which moves its MRR in the last digits: "
            + "; ".join(
                f"{r['dataset']} dim {r['dim']}: {r['ranks_differing_by_near_tie']} of {r['num_queries']} ranks, "
                f"MRR {r['mrr_gap_from_near_ties']:+.1e}"
                for r in ties
                if r.get("mrr_gap_from_near_ties") is not None
            )
            + ".",
        ]
    md += ["", "Runs:", ""]
    for r in {(r["command"], r["machine"]["date"]): r for r in rows}.values():
        m = r["machine"]
        gpu = f", GPU {m['gpu']}" if m.get("gpu") else ""
        load = m.get("load_average")
        load_txt = (
            f"; load average at start {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}" if load else ""
        )
        md += [
            f"- {r['device']}, {m['date']}: CPU {m['cpu']}, {m['cores']} cores, torch threads "
            f"{m['torch_threads']}{gpu}; torch {m['torch']}, PyKEEN {m['pykeen']} "
            f"(batch size {r['pykeen_batch_size']}){load_txt}",
            f"  `{r['command']}`",
        ]
    (out / "eval_speed.md").write_text("\n".join(md) + "\n")
    print(f"\nwrote {path} and {out / 'eval_speed.md'}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", nargs="+", default=["wn18rr", "fb15k237"])
    p.add_argument(
        "--data-root", default=os.environ.get("KGDISTILL_DATA"), help="default: $KGDISTILL_DATA"
    )
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--model", choices=sorted(PYKEEN_MODELS), default="distmult")
    p.add_argument("--dims", type=int, nargs="+", default=[16, 32, 200, 1000])
    p.add_argument(
        "--pykeen-dims",
        type=int,
        nargs="*",
        default=[32, 200],
        help="dimensions at which PyKEEN is timed too (minutes each); none: `--pykeen-dims`",
    )
    p.add_argument(
        "--train-epochs",
        type=int,
        default=0,
        help="train PyKEEN's model for N sLCWA epochs before timing (default 0: untrained)",
    )
    p.add_argument("--max-test", type=int, help="rank only the first N test triples (quick check)")
    p.add_argument("--pykeen-batch-size", type=int, default=256)
    p.add_argument("--repeats", type=int, default=3, help="timed runs of kgdistill and the floor")
    p.add_argument(
        "--chunk", type=int, help="queries per chunk (default: kgdistill's for the dimension)"
    )
    p.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = p.parse_args()
    if args.data_root is None:
        p.error("pass --data-root or set KGDISTILL_DATA")
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda, but torch sees no CUDA device")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    command = shlex.join(["python", *sys.argv])
    info = machine(device)
    print(json.dumps(info), "\n", command, sep="")
    rows = [
        row | {"machine": info, "command": command}
        for name in args.datasets
        for row in bench_dataset(name, args, device)
    ]
    write_results(rows, args.out)


if __name__ == "__main__":
    main()
