"""Speed of filtered test evaluation: PyKEEN 1.11.1 vs kgdistill vs a plain matrix-product floor.

For each dataset (WN18RR, FB15k-237) one DistMult model (``--dim``, PyKEEN's random initialisation, seed 0) is
evaluated on the test split, filtered with train + valid + test, head and tail queries, realistic ranks:

1. ``pykeen_s``: ``RankBasedEvaluator().evaluate(...)`` on a PyKEEN ``DistMult`` whose ``TriplesFactory`` uses
   kgdistill's own ids, with an explicit ``--pykeen-batch-size`` (PyKEEN's default on CPU is 32). Timed once,
   without a warm-up: it takes minutes.
2. ``kgdistill_s``: :func:`kgdistill.evaluate.evaluate` on a kgdistill ``distmult`` holding PyKEEN's weights
   (relation ``r`` copied to rows ``r`` and ``r + R``: DistMult is symmetric in h and t, so a head query on the
   reciprocal relation scores exactly like PyKEEN's head prediction). The time includes building the
   :class:`~kgdistill.data.filters.FilterIndex`; ``index_s`` is that build alone.
3. ``floor_s``: what any evaluator must at least do: one chunked matrix product of the query vectors with all
   entity vectors, the known answers (index pairs precomputed outside the timed region) set to ``-inf``, and
   the realistic rank of the true answer.

kgdistill and the floor get one warm-up run, then ``--repeats`` timed runs (the median is reported). All three
must agree on MRR, MR and Hits@1/3/10 (``both.realistic`` in PyKEEN) or the script exits with an error.
With ``--max-test N`` only the first N test triples are ranked; all test triples are still filtered.
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
from kgdistill.evaluate import evaluate
from kgdistill.models import KGEModel, Vocab, build_model

METRICS = ("mrr", "mr", "hits@1", "hits@3", "hits@10")
PYKEEN_KEYS = {
    "mrr": "inverse_harmonic_mean_rank",
    "mr": "arithmetic_mean_rank",
    "hits@1": "hits_at_1",
    "hits@3": "hits_at_3",
    "hits@10": "hits_at_10",
}
TOL = 1e-6


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> tuple[Any, float]:
    sync(device)
    start = time.perf_counter()
    out = fn()
    sync(device)
    return out, time.perf_counter() - start


def summarize(ranks: torch.Tensor) -> dict[str, float]:
    ranks = ranks.double().cpu()
    out = {"mrr": float((1 / ranks).mean()), "mr": float(ranks.mean())}
    out.update({f"hits@{k}": float((ranks <= k).double().mean()) for k in (1, 3, 10)})
    return out


# ---------------------------------------------------------------------------------------------- the floor
def floor_chunk_size(num_entities: int) -> int:
    """The same chunking as kgdistill's default: about 2^25 scores per chunk."""
    return max(16, min(4096, (1 << 25) // num_entities))


def floor_queries(facts: torch.Tensor, num_relations: int) -> torch.Tensor:
    """Tail queries ``(h, r, t)`` then head queries as ``(t, r + R, h)``."""
    h, r, t = facts.unbind(1)
    return torch.cat([facts, torch.stack([t, r + num_relations, h], 1)])


def floor_known_pairs(
    kg: KG, queries: torch.Tensor, chunk: int, device: torch.device
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per chunk, the ``(row, entity)`` pairs of every known answer (true answer included), plain Python."""
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
    entities: torch.Tensor,
    relations: torch.Tensor,
    queries: torch.Tensor,
    pairs: list[tuple[torch.Tensor, torch.Tensor]],
    chunk: int,
) -> torch.Tensor:
    ranks = torch.empty(len(queries), dtype=torch.float64, device=queries.device)
    for i, s in enumerate(range(0, len(queries), chunk)):
        q = queries[s : s + chunk]
        scores = (entities[q[:, 0]] * relations[q[:, 1]]) @ entities.T
        true = scores.gather(1, q[:, 2:3])
        rows, cols = pairs[i]
        scores[rows, cols] = -math.inf  # every known answer, the true one included
        greater = (scores > true).sum(1)
        equal = (scores == true).sum(1)
        ranks[s : s + len(q)] = 1 + greater + equal / 2
    return ranks


# ------------------------------------------------------------------------------------- the three tools
def pykeen_model(kg: KG, dim: int, device: torch.device) -> DistMult:
    factory = TriplesFactory(
        mapped_triples=kg.splits["train"],
        entity_to_id=kg.entity_ids,
        relation_to_id=kg.relation_ids,
    )
    return DistMult(triples_factory=factory, embedding_dim=dim, random_seed=0).to(device)


def copy_to_kgdistill(pk: DistMult, kg: KG, dim: int, device: torch.device) -> KGEModel:
    """A kgdistill distmult with PyKEEN's entity vectors and relation vectors (on r and r + R)."""
    model = build_model({"name": "distmult", "dim": dim}, Vocab(kg.num_entities, kg.num_relations))
    with torch.no_grad():
        ent = pk.entity_representations[0](indices=None)
        rel = pk.relation_representations[0](indices=None)
        model.entities.weight.copy_(ent)
        model.relations.rel.weight.copy_(torch.cat([rel, rel]))  # type: ignore[union-attr]
    return model.to(device).eval()


def run_pykeen(
    pk: DistMult, kg: KG, test: torch.Tensor, batch_size: int
) -> tuple[dict[str, float], torch.Tensor, float]:
    """PyKEEN's metrics, its per-query realistic ranks (tail queries, then head queries) and seconds."""
    filters = [kg.facts["train"], kg.facts["valid"], kg.facts["test"][len(test) :]]
    evaluator = RankBasedEvaluator(clear_on_finalize=False)  # keep the ranks for the check
    result, seconds = timed(
        lambda: evaluator.evaluate(
            pk,
            mapped_triples=test,
            additional_filter_triples=filters,
            batch_size=batch_size,
            use_tqdm=False,
        ),
        pk.device,
    )
    metrics = {m: float(result.get_metric(f"both.realistic.{PYKEEN_KEYS[m]}")) for m in METRICS}
    ranks = [
        torch.from_numpy(r) for side in ("tail", "head") for r in evaluator.ranks[side, "realistic"]
    ]
    return metrics, torch.cat(ranks).double(), seconds


def check(
    dataset: str, name: str, got: dict[str, float], ref_name: str, ref: dict[str, float]
) -> None:
    """Fail loudly unless ``got`` equals ``ref`` (PyKEEN aggregates in float32: relative 1e-6, absolute 1e-9)."""
    for m in METRICS:
        if not math.isclose(got[m], ref[m], rel_tol=TOL, abs_tol=1e-9):
            sys.exit(f"MISMATCH on {dataset}: {name} {m} = {got[m]!r}, {ref_name} {m} = {ref[m]!r}")


def bench_dataset(name: str, args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    kg = load_kg(name, root=args.data_root)
    if kg.temporal:
        sys.exit(f"{name} is temporal; this benchmark is for static graphs")
    test = kg.splits["test"][: args.max_test] if args.max_test else kg.splits["test"]
    print(f"\n== {kg!r}, ranking {len(test)} test triples x 2 directions on {device}")
    pk = pykeen_model(kg, args.dim, device)
    model = copy_to_kgdistill(pk, kg, args.dim, device)

    print(
        f"PyKEEN (batch size {args.pykeen_batch_size}, timed once, no warm-up; takes minutes) ..."
    )
    pk_metrics, pk_ranks, pykeen_s = run_pykeen(pk, kg, test.to(device), args.pykeen_batch_size)
    print(f"  {pykeen_s:.2f} s  MRR {pk_metrics['mrr']:.6f}")

    _, index_s = timed(lambda: FilterIndex.build(kg), device)

    def run_kgd() -> Any:
        return evaluate(model, kg, "test", max_queries=args.max_test or None)

    kgd = run_kgd()  # warm-up
    kgd_times = [timed(run_kgd, device)[1] for _ in range(args.repeats)]
    kgd_metrics = {m: kgd.sides["both"][m] for m in METRICS}
    print(f"kgdistill: {statistics.median(kgd_times):.3f} s (index build {index_s:.3f} s)")

    chunk = floor_chunk_size(kg.num_entities)
    queries = floor_queries(test, kg.num_relations).to(device)
    pairs = floor_known_pairs(kg, queries.cpu(), chunk, device)
    ent, rel = model.entities.weight.detach(), model.relations.rel.weight.detach()  # type: ignore[union-attr]

    def run_floor() -> torch.Tensor:
        return floor_ranks(ent, rel, queries, pairs, chunk)

    ranks = run_floor().cpu()  # warm-up
    floor_metrics = summarize(ranks)
    # the floor's ranks against PyKEEN's, query by query (float rounding may flip a near-tie)
    differ = int((ranks != pk_ranks).sum())
    floor_times = [timed(run_floor, device)[1] for _ in range(args.repeats)]
    print(f"floor: {statistics.median(floor_times):.3f} s; {differ} ranks differ from PyKEEN's")

    check(name, "kgdistill", kgd_metrics, "PyKEEN", pk_metrics)
    check(name, "floor", floor_metrics, "PyKEEN", pk_metrics)
    check(name, "kgdistill", kgd_metrics, "floor", floor_metrics)
    kgdistill_s, floor_s = statistics.median(kgd_times), statistics.median(floor_times)
    return {
        "dataset": name,
        "device": device.type,
        "num_entities": kg.num_entities,
        "num_test_triples": len(test),
        "num_queries": 2 * len(test),
        "dim": args.dim,
        "pykeen_s": pykeen_s,
        "kgdistill_s": kgdistill_s,
        "floor_s": floor_s,
        "index_s": index_s,
        "kgdistill_runs_s": kgd_times,
        "floor_runs_s": floor_times,
        "speedup_vs_pykeen": pykeen_s / kgdistill_s,
        "ratio_to_floor": kgdistill_s / floor_s,
        "pykeen_batch_size": args.pykeen_batch_size,
        "eval_chunk": chunk,
        "mrr_pykeen": pk_metrics["mrr"],
        "mrr_kgdistill": kgd_metrics["mrr"],
        "mrr_floor": floor_metrics["mrr"],
        "floor_ranks_differing_from_pykeen": differ,
        "metrics_pykeen": pk_metrics,
        "metrics_kgdistill": kgd_metrics,
    }


# ------------------------------------------------------------------------------------------ reporting
def machine(device: torch.device) -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        names = [ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    info: dict[str, Any] = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "pykeen": pykeen.get_version(),
        "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def write_results(rows: list[dict[str, Any]], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    path = out / "eval_speed.json"
    old = json.loads(path.read_text()) if path.exists() else []
    new_keys = {(r["dataset"], r["device"]) for r in rows}
    merged = [r for r in old if (r["dataset"], r["device"]) not in new_keys] + rows
    merged.sort(key=lambda r: (r["device"], r["dataset"]))
    path.write_text(json.dumps(merged, indent=2) + "\n")
    lines = [
        "# Filtered test evaluation speed (DistMult)",
        "",
        "Seconds for all head + tail test queries, filtered with train + valid + test, realistic ranks. "
        "kgdistill includes building its filter index (shown separately); kgdistill and the floor: median "
        "after one warm-up; PyKEEN: one run, no warm-up.",
        "",
        "| dataset | device | queries | PyKEEN s | kgdistill s | (index s) | floor s "
        "| speedup vs PyKEEN | ratio to floor | MRR PyKEEN / kgdistill / floor |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    for r in merged:
        lines.append(
            f"| {r['dataset']} | {r['device']} | {r['num_queries']} | {r['pykeen_s']:.1f} "
            f"| {r['kgdistill_s']:.3f} | {r['index_s']:.3f} | {r['floor_s']:.3f} "
            f"| {r['speedup_vs_pykeen']:.0f}x | {r['ratio_to_floor']:.2f} "
            f"| {r['mrr_pykeen']:.6f} / {r['mrr_kgdistill']:.6f} / {r['mrr_floor']:.6f} |"
        )
    lines += ["", "## Runs", ""]
    for device in sorted({r["device"] for r in merged}):
        r = next(x for x in merged if x["device"] == device)
        m = r["machine"]
        gpu = f", GPU {m['gpu']}" if "gpu" in m else ""
        lines += [
            f"- **{device}** ({m['date']}): {m['cpu']}, {m['cores']} cores, "
            f"torch threads {m['torch_threads']}{gpu}; torch {m['torch']}, PyKEEN {m['pykeen']}, "
            f"PyKEEN batch size {r['pykeen_batch_size']}",
            f"  `{r['command']}`",
        ]
    (out / "eval_speed.md").write_text("\n".join(lines) + "\n")
    print(f"\nwrote {path} and {out / 'eval_speed.md'}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", nargs="+", default=["wn18rr", "fb15k237"])
    p.add_argument("--data-root", default=os.environ.get("KGDISTILL_DATA"))
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--dim", type=int, default=200)
    p.add_argument("--max-test", type=int, default=None, help="rank only the first N test triples")
    p.add_argument("--pykeen-batch-size", type=int, default=256)
    p.add_argument("--repeats", type=int, default=3, help="timed runs of kgdistill and the floor")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = p.parse_args()
    if args.data_root is None:
        p.error("pass --data-root or set KGDISTILL_DATA")
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda but no CUDA device is available")
    device = torch.device(args.device)
    torch.manual_seed(0)
    command = shlex.join([Path(sys.executable).name, *sys.argv])
    info = machine(device)
    print(json.dumps(info))
    rows = [
        {**bench_dataset(name, args, device), "machine": info, "command": command}
        for name in args.datasets
    ]
    write_results(rows, args.out)


if __name__ == "__main__":
    main()
