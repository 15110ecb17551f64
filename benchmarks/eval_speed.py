"""Speed of filtered test evaluation: PyKEEN 1.11.1 vs kgdistill vs a plain matrix-product floor.

Per dataset, one DistMult model (``--dim``, PyKEEN's random initialisation, seed 0) is evaluated on the test
split: head and tail queries, filtered with train + valid + test, realistic ranks. Three timings:

1. ``pykeen_s``: ``RankBasedEvaluator().evaluate(...)`` on a PyKEEN ``DistMult`` whose ``TriplesFactory`` uses
   kgdistill's own ids, with an explicit ``--pykeen-batch-size`` (default 256; left to ``None`` PyKEEN uses 32 on
   CPU; 256 was the fastest of 32 / 256 / 512 on FB15k-237). Timed once, no warm-up: it takes minutes.
2. ``kgdistill_s``: :func:`kgdistill.evaluate.evaluate` on a kgdistill ``distmult`` holding PyKEEN's weights
   (relation ``r`` copied to rows ``r`` and ``r + R``: DistMult is symmetric in h and t, so a tail query on the
   reciprocal relation scores exactly like PyKEEN's head prediction). It includes building the
   :class:`~kgdistill.data.filters.FilterIndex`; ``index_s`` is that build alone.
3. ``floor_s``: what any evaluator must at least do: one chunked matrix product of the query vectors with all
   entity vectors, the known answers (index pairs precomputed outside the timed region) set to ``-inf``, and
   the realistic rank of the true answer.

kgdistill and the floor get one warm-up run, then ``--repeats`` timed runs (the median is reported). The script
exits with an error unless all three agree on MRR, MR and Hits@1/3/10 (PyKEEN's ``both.realistic``; relative
1e-6, as PyKEEN aggregates in float32) and the floor's ranks equal PyKEEN's query by query up to near-ties
(float rounding may make or break an exact tie, moving a rank by 0.5; at most 1% of them). With
``--max-test N`` only the first N test triples are ranked; all test triples are still filtered.
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
from pykeen.models import DistMult
from pykeen.triples import TriplesFactory

from kgdistill.data.datasets import load_kg
from kgdistill.data.filters import FilterIndex
from kgdistill.data.kg import KG
from kgdistill.evaluate import Metrics, default_chunk, evaluate
from kgdistill.models import KGEModel, Vocab, build_model

# our metric name -> PyKEEN's (read as "both.realistic.<name>")
PYKEEN_KEYS = {
    "mrr": "inverse_harmonic_mean_rank",
    "mr": "arithmetic_mean_rank",
    "hits@1": "hits_at_1",
    "hits@3": "hits_at_3",
    "hits@10": "hits_at_10",
}
Pairs = list[tuple[torch.Tensor, torch.Tensor]]


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
    dataset: str, name: str, got: dict[str, float], ref_name: str, ref: dict[str, float]
) -> None:
    for m in PYKEEN_KEYS:
        if not math.isclose(got[m], ref[m], rel_tol=1e-6, abs_tol=1e-9):
            sys.exit(f"MISMATCH on {dataset}: {name} {m} = {got[m]!r}, {ref_name} {m} = {ref[m]!r}")


# ------------------------------------------------------------------------------------------ the floor
def floor_known_pairs(kg: KG, queries: torch.Tensor, chunk: int, device: torch.device) -> Pairs:
    """Per chunk of queries, the ``(row, entity)`` pairs of every known answer (true one included)."""
    answers: dict[tuple[int, int], list[int]] = {}
    for split in ("train", "valid", "test"):
        for h, r, t in kg.facts[split].tolist():
            answers.setdefault((h, r), []).append(t)
            answers.setdefault((t, r + kg.num_relations), []).append(h)
    pairs = []
    for s in range(0, len(queries), chunk):
        rows: list[int] = []
        cols: list[int] = []
        for i, (h, r) in enumerate(queries[s : s + chunk, :2].tolist()):
            rows += [i] * len(answers[h, r])
            cols += answers[h, r]
        pairs.append((torch.tensor(rows, device=device), torch.tensor(cols, device=device)))
    return pairs


@torch.inference_mode()
def floor_ranks(
    ent: torch.Tensor, rel: torch.Tensor, queries: torch.Tensor, pairs: Pairs, chunk: int
) -> torch.Tensor:
    """Realistic filtered rank of each query ``(h, r, t)``; ``rel`` holds the reciprocal relations too."""
    ranks = torch.empty(len(queries), dtype=torch.float64, device=queries.device)
    for i, s in enumerate(range(0, len(queries), chunk)):
        q = queries[s : s + chunk]
        scores = (ent[q[:, 0]] * rel[q[:, 1]]) @ ent.T
        true = scores.gather(1, q[:, 2:3])
        rows, cols = pairs[i]
        scores[rows, cols] = -math.inf  # every known answer, the true one included
        greater = (scores > true).sum(1)
        equal = (scores == true).sum(1)
        ranks[s : s + len(q)] = 1 + greater + equal.double() / 2
    return ranks


# ------------------------------------------------------------------------------ PyKEEN and kgdistill
def pykeen_model(kg: KG, dim: int, device: torch.device) -> DistMult:
    factory = TriplesFactory(kg.splits["train"], kg.entity_ids, kg.relation_ids)
    return DistMult(triples_factory=factory, embedding_dim=dim, random_seed=0).to(device)


def copy_to_kgdistill(pk: DistMult, kg: KG, dim: int, device: torch.device) -> KGEModel:
    """A kgdistill distmult with PyKEEN's entity vectors and relation vectors (on r and r + R)."""
    model = build_model({"name": "distmult", "dim": dim}, Vocab(kg.num_entities, kg.num_relations))
    with torch.no_grad():
        rel = pk.relation_representations[0](indices=None)
        model.entities.weight.copy_(pk.entity_representations[0](indices=None))
        model.relations.rel.weight.copy_(torch.cat([rel, rel]))  # type: ignore[union-attr]
    return model.to(device).eval()


def run_pykeen(
    pk: DistMult, kg: KG, test: torch.Tensor, batch_size: int
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


def bench_dataset(name: str, args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    kg = load_kg(name, root=args.data_root)
    if kg.temporal:
        sys.exit(f"{name} is temporal; this benchmark is for static graphs")
    test = kg.splits["test"][: args.max_test] if args.max_test else kg.splits["test"]
    print(f"\n== {kg!r}: ranking {len(test)} test triples x 2 directions on {device}")
    pk = pykeen_model(kg, args.dim, device)
    model = copy_to_kgdistill(pk, kg, args.dim, device)

    print(f"PyKEEN, batch size {args.pykeen_batch_size}, timed once without warm-up (minutes) ...")
    pk_metrics, pk_ranks, pykeen_s = run_pykeen(pk, kg, test.to(device), args.pykeen_batch_size)
    print(f"  PyKEEN    {pykeen_s:9.3f} s  MRR {pk_metrics['mrr']:.8f}")

    _, index_s = timed(lambda: FilterIndex.build(kg), device)

    def run_kgdistill() -> Metrics:
        return evaluate(model, kg, "test", max_queries=args.max_test, batch_size=args.chunk)

    kgd_metrics = {m: run_kgdistill().sides["both"][m] for m in PYKEEN_KEYS}  # + warm-up
    kgd_times = [timed(run_kgdistill, device)[1] for _ in range(args.repeats)]
    print(
        f"  kgdistill {statistics.median(kgd_times):9.3f} s  MRR {kgd_metrics['mrr']:.8f}  "
        f"(index build {index_s:.3f} s)"
    )

    chunk = args.chunk or default_chunk(kg.num_entities, device)  # kgdistill's default
    h, r, t = test.unbind(1)
    queries = torch.cat([test, torch.stack([t, r + kg.num_relations, h], 1)])  # tails, then heads
    pairs = floor_known_pairs(kg, queries, chunk, device)
    queries = queries.to(device)
    ent, rel = model.entities.weight.detach(), model.relations.rel.weight.detach()  # type: ignore[union-attr]

    def run_floor() -> torch.Tensor:
        return floor_ranks(ent, rel, queries, pairs, chunk)

    ranks = run_floor().cpu()  # + warm-up
    floor_metrics = summarize(ranks)
    floor_times = [timed(run_floor, device)[1] for _ in range(args.repeats)]
    differ = int((ranks != pk_ranks).sum())
    if differ > max(10, len(ranks) // 100) or float((ranks - pk_ranks).abs().max()) > 1:
        sys.exit(
            f"MISMATCH on {name}: {differ} floor ranks differ from PyKEEN's, not just near-ties"
        )
    print(
        f"  floor     {statistics.median(floor_times):9.3f} s  MRR {floor_metrics['mrr']:.8f}  "
        f"({differ} of {len(ranks)} ranks differ from PyKEEN's by a near-tie)"
    )
    check(name, "kgdistill", kgd_metrics, "PyKEEN", pk_metrics)
    check(name, "floor", floor_metrics, "PyKEEN", pk_metrics)
    check(name, "kgdistill", kgd_metrics, "floor", floor_metrics)
    kgdistill_s, floor_s = statistics.median(kgd_times), statistics.median(floor_times)
    return {
        "dataset": name,
        "device": device.type,
        "num_entities": kg.num_entities,
        "num_queries": len(queries),
        "dim": args.dim,
        "pykeen_s": pykeen_s,
        "kgdistill_s": kgdistill_s,
        "floor_s": floor_s,
        "index_s": index_s,
        "speedup_vs_pykeen": pykeen_s / kgdistill_s,
        "ratio_to_floor": kgdistill_s / floor_s,
        "mrr_pykeen": pk_metrics["mrr"],
        "mrr_kgdistill": kgd_metrics["mrr"],
        "mrr_floor": floor_metrics["mrr"],
        "metrics": {"pykeen": pk_metrics, "kgdistill": kgd_metrics, "floor": floor_metrics},
        "ranks_differing_by_near_tie": differ,
        "kgdistill_runs_s": kgd_times,
        "floor_runs_s": floor_times,
        "pykeen_batch_size": args.pykeen_batch_size,
        "chunk": chunk,
    }


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
    }


def write_results(rows: list[dict[str, Any]], out: Path) -> None:
    """Merge ``rows`` into ``eval_speed.json`` by (dataset, device) and rewrite ``eval_speed.md``."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "eval_speed.json"
    new = {(r["dataset"], r["device"]) for r in rows}
    old = json.loads(path.read_text()) if path.exists() else []
    rows = sorted(
        [r for r in old if (r["dataset"], r["device"]) not in new] + rows,
        key=lambda r: (r["device"], r["dataset"]),
    )
    path.write_text(json.dumps(rows, indent=2) + "\n")
    md = [
        "# Filtered test evaluation speed, DistMult",
        "",
        "Seconds to rank all head and tail test queries, filtered with train + valid + test, realistic ranks. "
        "kgdistill includes building its filter index (also shown alone); kgdistill and the floor: median "
        "after a warm-up; PyKEEN: a single run. Produced by `benchmarks/eval_speed.py`.",
        "",
        "| dataset | device | queries | PyKEEN s | kgdistill s | index s | floor s | speedup vs PyKEEN "
        "| kgdistill / floor | MRR PyKEEN / kgdistill / floor |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    md += [
        f"| {r['dataset']} | {r['device']} | {r['num_queries']} | {r['pykeen_s']:.1f} "
        f"| {r['kgdistill_s']:.3f} | {r['index_s']:.3f} | {r['floor_s']:.3f} "
        f"| {r['speedup_vs_pykeen']:.0f}x | {r['ratio_to_floor']:.2f} "
        f"| {r['mrr_pykeen']:.6f} / {r['mrr_kgdistill']:.6f} / {r['mrr_floor']:.6f} |"
        for r in rows
    ]
    md += ["", "Runs:", ""]
    for r in {(r["command"], r["machine"]["date"]): r for r in rows}.values():
        m = r["machine"]
        gpu = f", GPU {m['gpu']}" if m.get("gpu") else ""
        md += [
            f"- {r['device']}, {m['date']}: CPU {m['cpu']}, {m['cores']} cores, torch threads "
            f"{m['torch_threads']}{gpu}; torch {m['torch']}, PyKEEN {m['pykeen']} "
            f"(batch size {r['pykeen_batch_size']}), dim {r['dim']}",
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
    p.add_argument("--dim", type=int, default=200)
    p.add_argument("--max-test", type=int, help="rank only the first N test triples (quick check)")
    p.add_argument("--pykeen-batch-size", type=int, default=256)
    p.add_argument("--repeats", type=int, default=3, help="timed runs of kgdistill and the floor")
    p.add_argument(
        "--chunk", type=int, help="queries per chunk (default: kgdistill's, ~2^22 scores on CPU)"
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
        bench_dataset(name, args, device) | {"machine": info, "command": command}
        for name in args.datasets
    ]
    write_results(rows, args.out)


if __name__ == "__main__":
    main()
