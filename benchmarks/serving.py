"""What a shipped model costs: teacher vs students, PyTorch vs ONNX Runtime (fp32 / fp16 / int8), exact vs
approximate top-k, and a load test of ``kgdistill serve``.

Per model and variant (each measured in a fresh process, ``_serving_probe.py``, with ``--threads`` intra-op
threads, default 1: one serving core):

- single-query top-10 latency p50 / p99 over ``--queries`` real test queries (head and tail, by id), one at a
  time after 50 warm-up calls; batch throughput (queries/s at ``--batch`` queries a call);
- bytes on disk (PyTorch: the parameters as safetensors; ONNX: the top-10 graph file; ANN: the FAISS index plus
  the parameters, which compute the query vectors), peak and model resident memory of the process;
- test MRR under the run's own protocol: PyTorch's from the model, ONNX's from the exported all-scores graph of
  the same weights and dtype (``kgdistill export``'s report), ANN's (HNSW, inner-product models only) from the
  index's top-``--ann-candidates`` (answers it does not retrieve count as ranked last) with its recall@10
  against exact search;
- PyTorch on the GPU too when one is available.

The load test starts ``kgdistill serve NAME=RUN --threads 1`` for the student and the teacher on 127.0.0.1 and
runs Locust headless (``_locustfile.py``: keep-alive clients, no wait between requests, real test queries) at
every ``--concurrency``, each level bounded by ``--seconds`` and ``--max-requests``: requests, failures,
requests/s, p50 / p99 (Locust's percentiles, ms). Server and clients share the machine.

Goals (issue: ship students): a dim-32 student answers a top-10 query in < 1 ms p99 on one core, holds
>= 1,000 requests/s with zero errors on a 2-core machine, and is >= 8x smaller than its teacher.

Default models: the YAGO11k teacher (TNTComplEx, dim 256) and the TA-DistMult dim-32 student distilled from
it with FitNet, from ``benchmarks/work/temporal-kd`` (trained first when missing, as
``python benchmarks/temporal_kd.py --datasets yago11k --students ta_distmult --methods fitnet --seeds 0``).
Writes ``serving.json``, ``serving.md`` and ``serving.png`` (MRR against p99 latency and against bytes; ``--stem``
names them otherwise). ``--ann hnsw:EF`` / ``--ann ivf:NPROBE`` (repeatable) choose the approximate rows.

    python benchmarks/serving.py --data-root /path/to/data
    python benchmarks/serving.py --teacher runs/teacher --student small=runs/student --seconds 5
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import torch

from _common import (
    REPO,
    NothingFinished,
    filter_protocol,
    friendly_errors,
    markdown_table,
    setup_logging,
    write_script_result,
)
from kgdistill.checkpoint import load_checkpoint, load_model
from kgdistill.config import RunConfig
from kgdistill.data.batching import both_directions
from kgdistill.data.filters import filter_mode
from kgdistill.errors import ConfigError
from kgdistill.evaluate import evaluate
from kgdistill.export import ExportError, build_ann_index, export_run, recall_at_k
from kgdistill.export.ann import exact_topk
from kgdistill.io import write_json
from kgdistill.run import eval_kwargs, load_data
from kgdistill.runs import finished

log = logging.getLogger("serving")

HERE = Path(__file__).resolve().parent
WORK = REPO / "benchmarks" / "work" / "serving"
TKD_WORK = REPO / "benchmarks" / "work" / "temporal-kd"
#: the issue's goals: p99 of a top-10 query (ms, one core), requests/s with zero errors, teacher/student bytes
GOALS = {"p99_ms": 1.0, "rps": 1000.0, "smaller": 8.0}
DTYPES = ("fp32", "fp16", "int8")


def _default_runs(data_root: str | None, train: bool, work: Path) -> dict[str, Path]:
    base = TKD_WORK / "yago11k"
    runs = {"teacher": base / "teacher", "ta_distmult-fitnet": base / "ta_distmult-fitnet-s0"}
    if all(finished(p) for p in runs.values()):
        return runs
    if not train:
        raise NothingFinished(f"the default runs under {base} have not finished")
    from temporal_kd import run_temporal_kd

    run_temporal_kd(
        datasets=["yago11k"],
        students=["ta_distmult"],
        methods=["fitnet"],
        seeds=[0],
        work=TKD_WORK,
        out=work / "temporal-kd-tables",
        data_root=data_root,
    )
    return runs


def _shown(path: Path) -> str:
    """``path`` as results show it: relative to the repository when inside it (no machine paths)."""
    p = path.resolve()
    return str(p.relative_to(REPO)) if p.is_relative_to(REPO) else str(path)


def _named(value: str) -> tuple[str, Path]:
    name, _, path = value.rpartition("=")
    p = Path(path)
    return (name or p.name), p


class _Model:
    """What the benchmark needs of one run: its checkpoint, model, graph, protocol and test queries."""

    def __init__(self, role: str, name: str, path: Path, data_root: str | None, n: int) -> None:
        if not finished(path):
            raise ConfigError(f"{path} is not a finished run (no metrics.json)")
        self.role, self.name, self.path = role, name, path
        self.ckpt = load_checkpoint(path)
        self.model = load_model(self.ckpt).eval().requires_grad_(False)
        cfg = RunConfig.model_validate(self.ckpt.meta["config"])
        data = cfg.data.model_copy(update={"root": data_root}) if data_root else cfg.data
        self.kg = load_data(data)
        self.protocol = eval_kwargs(cfg.eval)
        #: the filter its MRR is measured under (named in the table's protocol line)
        self.filter_mode = (
            filter_mode(
                self.kg.time.kind, time_aware=cfg.eval.time_aware, time_filter=cfg.eval.time_filter
            )
            if cfg.eval.filtered
            else "none"
        )
        test = self.kg.splits["test"]
        g = torch.Generator().manual_seed(0)
        pick = torch.randperm(2 * len(test), generator=g)[:n]
        self.queries = both_directions(test, self.kg.num_relations)[pick]  # (n, 3|4)
        facts = torch.cat([test, test])[pick]
        self.bodies = [
            self._body(f, bool(i >= len(test))) for f, i in zip(facts, pick.tolist(), strict=True)
        ]

    @staticmethod
    def _body(fact: torch.Tensor, head_query: bool) -> dict[str, Any]:
        ids = fact.tolist()
        body: dict[str, Any] = {"relation_id": ids[1], "k": 10}
        body["tail_id" if head_query else "head_id"] = ids[2] if head_query else ids[0]
        if len(ids) > 3:
            body["time_id"] = ids[3]
        return body

    @property
    def dim(self) -> int:
        return int(self.ckpt.meta["model"]["kwargs"].get("dim", 0))


class _AnnScores:
    """A scorer whose scores are the ANN index's top-``k`` (exact inner products of the entities it finds) and
    the lowest float elsewhere: the project's evaluator then ranks an answer the index missed last (tied)."""

    def __init__(self, index: Any, k: int, num_entities: int) -> None:
        self.index, self.k, self.e = index, k, num_entities

    def score_all(self, queries: torch.Tensor) -> torch.Tensor:
        values, ids = self.index.topk(queries, self.k)
        out = torch.full((len(queries), self.e), torch.finfo(torch.float32).min)
        found = ids >= 0
        rows = torch.arange(len(queries)).unsqueeze(1).expand_as(ids)
        out[rows[found], ids[found]] = values[found]
        return out


def _probe(spec: dict[str, Any]) -> dict[str, Any]:
    cmd = [sys.executable, str(HERE / "_serving_probe.py"), json.dumps(spec)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"probe {spec['variant']} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _variants(m: _Model, work: Path, args: dict[str, Any]) -> list[dict[str, Any]]:
    """Every variant of one model: exports, ANN, the probes' measurements."""
    from safetensors.torch import save_file

    folder = work / m.name
    folder.mkdir(parents=True, exist_ok=True)
    qfile = folder / "queries.pt"
    torch.save(m.queries, qfile)
    weights = folder / "model.safetensors"
    save_file({k: v.contiguous() for k, v in m.model.state_dict().items()}, str(weights))
    base = {
        "run": m.name,
        "role": m.role,
        "model": m.ckpt.meta["model"]["name"],
        "dim": m.dim,
        "parameters": m.model.num_parameters(),
        "path": _shown(m.path),
    }
    probe = {
        "run": str(m.path),
        "queries": str(qfile),
        "k": 10,
        "threads": args["threads"],
        "device": "cpu",
        "batch": args["batch"],
        "min_seconds": args["min_seconds"],
    }
    rows = []
    reports = {}
    for dtype in DTYPES:
        out = folder / f"top10-{dtype}.onnx"
        log.info("%s: exporting ONNX %s", m.name, dtype)
        reports[dtype] = export_run(
            m.path, out, format="onnx", dtype=dtype, topk=10, data_root=args["data_root"]
        )
    ref = reports["fp32"]["test"]["pytorch"]
    log.info("%s: PyTorch fp32", m.name)
    rows.append(
        {
            **base,
            "variant": "pytorch fp32",
            "device": "cpu",
            "bytes": weights.stat().st_size,
            "mrr": ref["mrr"],
            "hits@10": ref.get("hits@10"),
            **_probe({**probe, "variant": "pytorch"}),
        }
    )
    if torch.cuda.is_available():
        log.info("%s: PyTorch fp32 on the GPU", m.name)
        rows.append(
            {
                **base,
                "variant": "pytorch fp32",
                "device": "cuda",
                "bytes": weights.stat().st_size,
                "mrr": ref["mrr"],
                "hits@10": ref.get("hits@10"),
                **_probe({**probe, "variant": "pytorch", "device": "cuda"}),
            }
        )
    for dtype, report in reports.items():
        log.info("%s: ONNX Runtime %s", m.name, dtype)
        got = report["test"]["exported"]
        rows.append(
            {
                **base,
                "variant": f"onnx {dtype}",
                "device": "cpu",
                "bytes": report["bytes"],
                "mrr": got["mrr"],
                "hits@10": got.get("hits@10"),
                "top10_agree": report["check"].get("top10_agree_up_to_ties"),
                "max_abs_diff": report["check"].get("max_abs_diff"),
                **_probe({**probe, "variant": "onnx", "file": str(folder / report["file"])}),
            }
        )
    rows.extend(_ann_rows(m, base, probe, weights.stat().st_size, args))
    return rows


def _ann_setting(text: str) -> dict[str, Any]:
    """``hnsw:EF`` or ``ivf:NPROBE`` -> :func:`build_ann_index` arguments."""
    kind, _, value = text.partition(":")
    if kind not in ("hnsw", "ivf") or not value.isdigit() or int(value) < 1:
        raise ConfigError(f"--ann {text!r}: write hnsw:EF_SEARCH or ivf:NPROBE, e.g. hnsw:128")
    return {"kind": kind, ("ef_search" if kind == "hnsw" else "nprobe"): int(value)}


def _ann_rows(
    m: _Model, base: dict[str, Any], probe: dict[str, Any], weight_bytes: int, args: dict[str, Any]
) -> list[dict[str, Any]]:
    """One row per ``--ann`` setting (inner-product models only; none for distance models)."""
    import faiss

    faiss.omp_set_num_threads(args["threads"])
    exact = exact_topk(m.model, m.queries, 10)[1]
    rows, indexes = [], {}
    for text in args["ann"]:
        ann = _ann_setting(text)
        kind = ann["kind"]
        try:
            if kind not in indexes:
                indexes[kind] = build_ann_index(m.model, kind=kind, name=base["model"])
        except ExportError as e:
            log.info("%s: no ANN row (%s)", m.name, e)
            return []
        index = indexes[kind]
        index.set_search(ef_search=ann.get("ef_search"), nprobe=ann.get("nprobe"))
        variant = f"ann {kind} " + (
            f"ef{ann['ef_search']}" if kind == "hnsw" else f"np{ann['nprobe']}"
        )
        log.info("%s: %s", m.name, variant)
        recall = recall_at_k(index.topk(m.queries, 10)[1], exact)
        scorer = _AnnScores(index, args["ann_candidates"], m.kg.num_entities)
        metrics = evaluate(scorer, m.kg, "test", **m.protocol)
        measured = _probe({**probe, "variant": "ann", "ann": ann})
        rows.append(
            {
                **base,
                "variant": variant,
                "device": "cpu",
                "bytes": weight_bytes + measured["index_bytes"],
                "mrr": metrics.mrr,
                "hits@10": metrics.sides["both"].get("hits@10"),
                "recall@10": recall,
                **measured,
            }
        )
    return rows


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def _server(name: str, run: Path, workers: int, args: dict[str, Any]) -> Iterator[str]:
    """``kgdistill serve NAME=RUN`` on a free port of 127.0.0.1 until the block ends; yields its URL."""
    port = _free_port()
    cmd = [
        sys.executable, "-m", "kgdistill", "serve", f"{name}={run}", "--port", str(port),
        "--threads", "1", "--workers", str(workers),
    ]  # fmt: skip
    if args["data_root"]:
        cmd += ["--data-root", args["data_root"]]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"kgdistill serve exited: {proc.stderr.read()[-2000:]}")  # type: ignore[union-attr]
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(url + "/ready", timeout=2) as r,
            ):
                if r.status == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("kgdistill serve did not become ready in 120 s")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def _locust(
    url: str, name: str, bodies: Path, users: int, args: dict[str, Any], tmp: Path
) -> dict[str, Any]:
    stats = tmp / f"{name}-c{users}-stats.json"
    stats.unlink(missing_ok=True)
    env = {
        **os.environ,
        "LOAD_RUN": name,
        "LOAD_BODIES": str(bodies),
        "LOAD_MAX_REQUESTS": str(args["max_requests"]),
        "LOAD_STATS": str(stats),
    }
    cmd = [
        sys.executable, "-m", "locust", "-f", str(HERE / "_locustfile.py"), "--headless",
        "-u", str(users), "-r", str(users), "-t", f"{args['seconds']}s", "--host", url,
        "--only-summary", "--reset-stats", "--exit-code-on-error", "0",
        "--stop-timeout", "10", "--loglevel", "WARNING",
    ]  # fmt: skip
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0 or not stats.is_file():
        raise RuntimeError(
            f"locust failed (exit {done.returncode}, statistics written: {stats.is_file()}):\n"
            f"{done.stderr[-3000:]}"
        )
    return {
        "concurrency": users,
        **_load_level(stats, users, done.stderr),
        "wall_s": time.perf_counter() - t0,
    }


def _load_level(path: Path, users: int, log_tail: str = "") -> dict[str, Any]:
    """One load level's numbers from the statistics ``_locustfile.py`` writes at exit (``LOAD_STATS``)."""
    total = json.loads(path.read_text())
    if int(total["requests"]) == 0:
        raise RuntimeError(f"locust sent no request at {users} clients:\n{log_tail[-3000:]}")
    return {
        "requests": int(total["requests"]),
        "errors": int(total["failures"]),
        "rps": float(total["rps"]),
        "p50_ms": float(total["p50_ms"]),
        "p99_ms": float(total["p99_ms"]),
    }


def _load_rows(m: _Model, work: Path, args: dict[str, Any]) -> list[dict[str, Any]]:
    if importlib.util.find_spec("locust") is None:
        raise ConfigError("the load test needs Locust: pip install -e '.[bench]'")
    bodies = work / m.name / "bodies.json"
    write_json(bodies, m.bodies)
    rows = []
    for workers in args["workers"]:
        with _server(m.name, m.path, workers, args) as url:
            for users in args["concurrency"]:
                log.info("%s: load test, %d workers, %d clients", m.name, workers, users)
                r = _locust(url, m.name, bodies, users, args, work / m.name)
                rows.append({"run": m.name, "role": m.role, "workers": workers, **r})
    return rows


def _goals(rows: list[dict[str, Any]], load: list[dict[str, Any]]) -> dict[str, Any]:
    teacher = next(r for r in rows if r["role"] == "teacher" and r["variant"] == "pytorch fp32")
    out: dict[str, Any] = {}
    for r in rows:
        if r["role"] != "student" or r["dim"] > 32 or r["device"] != "cpu":
            continue
        g = out.setdefault(r["run"], {"p99_ms": {}, "smaller": None, "rps": None})
        g["p99_ms"][r["variant"]] = {"value": r["p99_ms"], "met": r["p99_ms"] < GOALS["p99_ms"]}
        if r["variant"] == "pytorch fp32":
            ratio = teacher["bytes"] / r["bytes"]
            g["smaller"] = {"value": ratio, "met": ratio >= GOALS["smaller"]}
    for run, g in out.items():
        mine = [x for x in load if x["run"] == run]
        if mine:
            best = max(mine, key=lambda x: x["rps"])
            clean = all(x["errors"] == 0 for x in mine)
            g["rps"] = {
                "value": best["rps"],
                "concurrency": best["concurrency"],
                "workers": best["workers"],
                "errors": sum(x["errors"] for x in mine),
                "met": best["rps"] >= GOALS["rps"] and clean,
            }
    return out


_MARKERS = {"pytorch": "o", "onnx fp32": "s", "onnx fp16": "^", "onnx int8": "v", "ann": "D"}


def _marker(variant: str) -> str:
    return next((m for key, m in _MARKERS.items() if variant.startswith(key)), "o")


def _plot(rows: list[dict[str, Any]], path: Path) -> None:
    """MRR against p99 latency and against bytes: a colour per run, a marker per variant, the Pareto front."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    runs = list(dict.fromkeys(r["run"] for r in rows))
    colours = {run: f"C{i}" for i, run in enumerate(runs)}
    fig, axes = plt.subplots(1, 2, figsize=(12, 5))
    for ax, key, title in (
        (axes[0], "p99_ms", "p99 latency of one top-10 query, ms (log)"),
        (axes[1], "bytes", "bytes on disk (log)"),
    ):
        for r in rows:
            gpu = " (GPU)" if r["device"] == "cuda" else ""
            ax.scatter(
                r[key], 100 * r["mrr"], s=45, color=colours[r["run"]], marker=_marker(r["variant"]),
                facecolors="none" if gpu else None, label=f"{r['run']}: {r['variant']}{gpu}",
            )  # fmt: skip
        front, best = [], float("-inf")
        for x, y in sorted((r[key], 100 * r["mrr"]) for r in rows):
            if y > best:
                front.append((x, y))
                best = y
        xs, ys = zip(*front, strict=True)
        ax.step(xs, ys, where="post", color="grey", lw=1, ls="--", label="Pareto front")
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(title)
        ax.set_ylabel("test MRR (%)")
        ax.grid(alpha=0.3, which="both")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.suptitle("Shipped models: test MRR against latency and size (one CPU thread)")
    fig.tight_layout(rect=(0, 0.05 + 0.035 * ((len(labels) + 2) // 3), 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _markdown(doc: dict[str, Any]) -> str:
    fmt = lambda v, f="{:.3f}": "-" if v is None else f.format(v)  # noqa: E731
    table = [
        {
            "run": r["run"],
            "model": f"{r['model']} {r['dim']}",
            "parameters": f"{r['parameters']:,}",
            "variant": r["variant"] + (" (GPU)" if r["device"] == "cuda" else ""),
            "bytes": f"{r['bytes']:,}",
            "MRR": fmt(100 * r["mrr"], "{:.2f}"),
            "H@10": fmt(None if r.get("hits@10") is None else 100 * r["hits@10"], "{:.2f}"),
            "top-10 agree": fmt(r.get("top10_agree")),
            "recall@10": fmt(r.get("recall@10")),
            "p50 ms": fmt(r["p50_ms"]),
            "p99 ms": fmt(r["p99_ms"]),
            "batch q/s": f"{r['batch_qps']:,.0f}",
            "peak RSS MiB": f"{r['peak_rss_mb']:.0f}",
            "model RSS MiB": f"{r['rss_loaded_mb'] - r['rss_baseline_mb']:.0f}",
        }
        for r in doc["rows"]
    ]
    load = [
        {
            "run": r["run"],
            "workers": r["workers"],
            "clients": r["concurrency"],
            "requests": f"{r['requests']:,}",
            "errors": r["errors"],
            "requests/s": f"{r['rps']:,.0f}",
            "p50 ms": fmt(r["p50_ms"], "{:.0f}"),
            "p99 ms": fmt(r["p99_ms"], "{:.0f}"),
        }
        for r in doc["load"]
    ]
    a = doc["settings"]
    # (results written before the filter was recorded: the protocol alone)
    filters = f", {filter_protocol(doc['filter_modes'])}" if "filter_modes" in doc else ""
    lines = [
        "# Serving: latency, size and load of shipped models",
        "",
        f"- command: `{doc['command']}`",
        f"- machine: {doc['machine']}; load average at the start {doc['load_average']}",
        "",
        f"Single queries: top-10 of one test query (head or tail, by id) at a time, {a['queries']} real test "
        f"queries after 50 warm-up calls, {a['threads']} intra-op thread(s); batch: {a['batch']} queries a call. "
        "Each variant runs in a fresh process: peak RSS is that process's (Python, PyTorch or ONNX Runtime "
        "included), model RSS what loading the model added. Bytes: PyTorch, the parameters as safetensors; "
        "ONNX, the top-10 graph; ANN, the HNSW index plus the parameters. MRR: test split, the run's protocol "
        f"({doc['protocol']}){filters}; ONNX rows from the all-scores graph of the same weights and dtype; ANN "
        f"rows from the index's top-{a['ann_candidates']} (answers it misses ranked last), recall@10 against exact "
        "search. Top-10 agree: share of the export check's test queries whose ONNX top-10 is PyTorch's (up to ties).",
        "",
        markdown_table(table),
        "Load test: `kgdistill serve NAME=RUN --threads 1 --workers W` on 127.0.0.1 and Locust "
        f"{doc['versions'].get('locust', '?')} headless on the same machine (keep-alive clients, no wait, the "
        f"same test queries as JSON bodies), each level at most {a['seconds']} s and {a['max_requests']:,} "
        "requests, statistics reset once every client has started. Percentiles are Locust's (rounded).",
        "",
        markdown_table(load) if load else "(no load test)\n",
        "## Goals",
        "",
    ]
    for run, g in doc["goals"].items():
        p99 = ", ".join(
            f"{v}: {x['value']:.3f} ms ({'met' if x['met'] else 'MISSED'})"
            for v, x in g["p99_ms"].items()
        )
        lines.append(f"- {run}: p99 < {GOALS['p99_ms']} ms on one core: {p99}")
        if g["smaller"]:
            s = g["smaller"]
            lines.append(
                f"- {run}: >= {GOALS['smaller']:.0f}x smaller than the teacher: {s['value']:.1f}x "
                f"({'met' if s['met'] else 'MISSED'})"
            )
        if g["rps"]:
            r = g["rps"]
            lines.append(
                f"- {run}: >= {GOALS['rps']:,.0f} requests/s with zero errors: {r['value']:,.0f} requests/s at "
                f"{r['concurrency']} clients and {r['workers']} worker(s), {r['errors']} errors over all "
                f"levels ({'met' if r['met'] else 'MISSED'})"
            )
    lines += ["", f"![MRR against p99 latency and bytes]({doc.get('stem', 'serving')}.png)", ""]
    return "\n".join(lines)


@click.command(help=__doc__.split("\n\n")[0])
@click.option(
    "--teacher",
    default=None,
    help="The teacher's run folder (default: the YAGO11k temporal-kd teacher).",
)
@click.option(
    "--student",
    "students",
    multiple=True,
    help="A student's run folder, NAME=PATH or PATH (repeatable).",
)
@click.option(
    "--queries", default=2000, show_default=True, help="Test queries timed one at a time."
)
@click.option(
    "--batch", default=256, show_default=True, help="Queries a call for the batch throughput."
)
@click.option(
    "--min-seconds", default=2.0, show_default=True, help="Least time of the batch throughput loop."
)
@click.option("--threads", default=1, show_default=True, help="Intra-op threads of every variant.")
@click.option(
    "--ann-candidates",
    default=100,
    show_default=True,
    help="Answers the ANN index retrieves for its MRR.",
)
@click.option(
    "--concurrency",
    "concurrency",
    multiple=True,
    type=int,
    default=(1, 8, 32, 64, 128),
    show_default=True,
    help="Load-test clients (repeatable).",
)
@click.option(
    "--seconds", default=10, show_default=True, help="Most seconds of each load-test level."
)
@click.option(
    "--max-requests",
    default=50_000,
    show_default=True,
    help="Most requests of each load-test level.",
)
@click.option(
    "--workers",
    "workers",
    multiple=True,
    type=int,
    default=(1, 2),
    show_default=True,
    help="kgdistill serve --workers (repeatable: a load test each).",
)
@click.option(
    "--ann",
    "ann",
    multiple=True,
    default=("hnsw:128",),
    show_default=True,
    help="Approximate top-k rows: hnsw:EF_SEARCH or ivf:NPROBE (repeatable).",
)
@click.option("--stem", default="serving", show_default=True, help="Result file names.")
@click.option("--no-load", is_flag=True, help="Skip the load test.")
@click.option("--train/--no-train", default=True, help="Train the default runs when missing.")
@click.option("--work", default=str(WORK), show_default=True, help="Exports and query files.")
@click.option(
    "--out", default=str(REPO / "benchmarks" / "results"), show_default=True, help="Result files."
)
@click.option(
    "--data-root", default=None, help="Folder holding the datasets (default: $KGDISTILL_DATA)."
)
@click.option("-v", "--verbose", is_flag=True)
def main(**a: Any) -> None:
    setup_logging(a.pop("verbose"))
    with friendly_errors():
        run(a)


def run(a: dict[str, Any]) -> dict[str, Any]:
    work, out = Path(a["work"]), Path(a["out"])
    a["concurrency"] = sorted(set(a["concurrency"]))
    a["workers"] = sorted(set(a["workers"]))
    for text in a["ann"]:  # a mistake is reported before any work
        _ann_setting(text)
    if a["teacher"] is None and not a["students"]:
        named = _default_runs(a["data_root"], a["train"], work)
    elif a["teacher"] is None:
        raise ConfigError("--student needs --teacher (the size and MRR goals compare with it)")
    else:
        named = {"teacher": Path(a["teacher"])} | dict(_named(s) for s in a["students"])
    load_avg = [round(x, 2) for x in os.getloadavg()]
    models = [
        _Model("teacher" if i == 0 else "student", name, path, a["data_root"], a["queries"])
        for i, (name, path) in enumerate(named.items())
    ]
    rows: list[dict[str, Any]] = []
    for m in models:
        rows.extend(_variants(m, work, a))
    load: list[dict[str, Any]] = []
    if not a["no_load"]:
        for m in [*models[1:], models[0]]:
            load.extend(_load_rows(m, work, a))
    versions = {"torch": torch.__version__}
    for lib in ("onnxruntime", "faiss-cpu", "locust", "fastapi", "uvicorn"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[lib] = importlib.metadata.version(lib)  # (importing locust would monkey-patch)
    fields = {
        "stem": a["stem"],
        "settings": {
            k: a[k]
            for k in (
                "queries",
                "batch",
                "threads",
                "ann",
                "ann_candidates",
                "seconds",
                "max_requests",
                "workers",
                "concurrency",
            )
        },
        "load_average": load_avg,
        "protocol": models[0].protocol,
        "filter_modes": {m.kg.name: m.filter_mode for m in models},
        "versions": versions,
        "goals": _goals(rows, load),
        "rows": rows,
        "load": load,
    }
    out.mkdir(parents=True, exist_ok=True)
    _plot(rows, out / f"{a['stem']}.png")
    text = write_script_result(
        out, a["stem"], "benchmarks/serving.py", sys.argv[1:], fields, _markdown
    )
    click.echo(text)
    return fields


if __name__ == "__main__":
    main()
