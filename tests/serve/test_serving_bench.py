"""The serving benchmark (benchmarks/serving.py): its approximate-top-k scorer plugs into the project's evaluator
(an answer the index misses is ranked last), its goals read the rows right, and end to end it measures every
variant of a teacher and a student and load-tests a real ``kgdistill serve`` with Locust."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

pytest.importorskip("faiss")
pytest.importorskip("onnxruntime")

from click.testing import CliRunner

from kgdistill.checkpoint import load_checkpoint, load_model
from kgdistill.config import RunConfig
from kgdistill.evaluate import evaluate
from kgdistill.export.ann import exact_topk
from kgdistill.run import eval_kwargs, load_data
from serving import GOALS, _AnnScores, _goals, _load_level, _locust, main

from .conftest import _train


class _ExactIndex:
    """An "index" that finds the true top-k (the ANN scorer's contract, without approximation)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model

    def topk(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        return exact_topk(self.model, queries, k)  # type: ignore[arg-type]


def test_ann_scores_equal_exact_when_all_are_found_and_rank_misses_last(static_run: Path) -> None:
    ckpt = load_checkpoint(static_run)
    model = load_model(ckpt).eval().requires_grad_(False)
    cfg = RunConfig.model_validate(ckpt.meta["config"])
    kg, protocol = load_data(cfg.data), eval_kwargs(cfg.eval)
    exact = evaluate(model, kg, "test", **protocol)
    every = evaluate(
        _AnnScores(_ExactIndex(model), kg.num_entities, kg.num_entities), kg, "test", **protocol
    )
    assert every.mrr == pytest.approx(exact.mrr, abs=1e-6)
    assert every.sides["both"]["hits@10"] == pytest.approx(exact.sides["both"]["hits@10"])
    one = evaluate(_AnnScores(_ExactIndex(model), 1, kg.num_entities), kg, "test", **protocol)
    # an answer outside the single candidate is tied last: Hits@10 can only count top-1 answers now
    assert one.sides["both"]["hits@10"] == pytest.approx(one.sides["both"]["hits@1"])
    assert one.sides["both"]["hits@1"] <= exact.sides["both"]["hits@1"] + 1e-9
    assert one.mrr < exact.mrr


def _row(run: str, role: str, variant: str, p99: float, size: int) -> dict[str, object]:
    return {"run": run, "role": role, "variant": variant, "dim": 32 if role == "student" else 256,
            "device": "cpu", "p99_ms": p99, "bytes": size}  # fmt: skip


def test_goals_read_every_student_variant_and_the_load_levels() -> None:
    rows = [
        _row("t", "teacher", "pytorch fp32", 3.0, 8_000),
        _row("s", "student", "pytorch fp32", 0.4, 1_000),
        _row("s", "student", "onnx int8", 1.2, 300),
    ]
    load = [
        {"run": "s", "workers": 1, "concurrency": 8, "rps": 800.0, "errors": 0},
        {"run": "s", "workers": 2, "concurrency": 64, "rps": 1200.0, "errors": 0},
    ]
    g = _goals(rows, load)["s"]
    assert g["p99_ms"]["pytorch fp32"]["met"] and not g["p99_ms"]["onnx int8"]["met"]
    assert g["smaller"] == {"value": 8.0, "met": True}
    assert g["rps"]["met"] and (g["rps"]["workers"], g["rps"]["concurrency"]) == (2, 64)
    load[0]["errors"] = 3  # an error at any level misses the goal, however fast the best level
    assert not _goals(rows, load)["s"]["rps"]["met"]
    assert GOALS["rps"] == 1000.0


def test_load_level_reads_the_final_statistics_and_refuses_an_empty_level(tmp_path: Path) -> None:
    path = tmp_path / "stats.json"
    path.write_text(
        json.dumps({"requests": 150, "failures": 2, "rps": 812.5, "p50_ms": 3, "p99_ms": 11})
    )
    level = _load_level(path, 4)
    assert level == {"requests": 150, "errors": 2, "rps": 812.5, "p50_ms": 3.0, "p99_ms": 11.0}
    path.write_text(
        json.dumps({"requests": 0, "failures": 0, "rps": 0.0, "p50_ms": None, "p99_ms": None})
    )
    with pytest.raises(RuntimeError, match="locust sent no request at 4 clients"):
        _load_level(path, 4, "the log's tail")


class _TopK(BaseHTTPRequestHandler):
    """A stand-in server for the load test's client: 200 to any POST, after reading its body."""

    def do_POST(self) -> None:  # http.server calls do_<METHOD>
        self.rfile.read(int(self.headers["content-length"]))
        self.send_response(200)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *_: object) -> None:
        pass


@pytest.mark.slow  # starts Locust twice in a fresh process
def test_a_short_load_level_still_has_its_statistics(tmp_path: Path) -> None:
    """Locust's ``--csv`` files come from a periodic writer (every second, flushed every 5 s), so a level that ends
    sooner after the reset (or on a busy machine) came back empty; the totals written at exit count every request
    after the reset. (With the ``--csv`` reading, the 3-client level here had no request.)"""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _TopK)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        bodies = tmp_path / "bodies.json"
        bodies.write_text(json.dumps([{"query": [0, 0, 0]}, {"query": [1, 0, 2]}]))
        for users, budget in ((1, 20), (3, 40)):
            args = {"max_requests": budget, "seconds": 20}
            level = _locust(url, "run", bodies, users, args, tmp_path)
            assert 0 < level["requests"] <= budget + users and level["errors"] == 0
            assert level["rps"] > 0 and 0 <= level["p50_ms"] <= level["p99_ms"]
            # the request budget, not the 20 s limit, ended the level
            assert level["wall_s"] < 20
    finally:
        server.shutdown()


@pytest.mark.slow  # exports, probes in fresh processes and a Locust load test against a real server
def test_benchmark_end_to_end(temporal_run: Path, tmp_path: Path) -> None:
    teacher = _train("yago11k-mini", "tntcomplex", tmp_path / "teacher")
    out = tmp_path / "out"
    args = [
        "--teacher", str(teacher), "--student", f"small={temporal_run}", "--queries", "60",
        "--min-seconds", "0.2", "--concurrency", "1", "--concurrency", "4", "--workers", "1",
        "--seconds", "5", "--max-requests", "150", "--work", str(tmp_path / "work"), "--out", str(out),
    ]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "serving.json").read_text())
    assert (out / "serving.md").is_file() and (out / "serving.png").stat().st_size > 0
    for run in ("teacher", "small"):
        mine = {r["variant"]: r for r in doc["rows"] if r["run"] == run}
        assert set(mine) == {
            "pytorch fp32",
            "onnx fp32",
            "onnx fp16",
            "onnx int8",
            "ann hnsw ef128",
        }
        for r in mine.values():
            assert 0 < r["p50_ms"] <= r["p99_ms"] and r["batch_qps"] > 0 and r["bytes"] > 0
            assert r["peak_rss_mb"] >= r["rss_loaded_mb"] > 0
        # ONNX fp32 scores like PyTorch; the int8 graph is smaller
        assert mine["onnx fp32"]["mrr"] == pytest.approx(mine["pytorch fp32"]["mrr"], abs=1e-4)
        assert mine["onnx int8"]["bytes"] < mine["onnx fp32"]["bytes"]
        assert 0 <= mine["ann hnsw ef128"]["recall@10"] <= 1
        levels = [x for x in doc["load"] if x["run"] == run]
        assert [x["concurrency"] for x in levels] == [1, 4]
        for x in levels:  # bounded in count (150 requests) and time, and no request failed
            assert 0 < x["requests"] <= 150 + x["concurrency"] and x["errors"] == 0
    assert set(doc["goals"]) == {"small"}
    assert doc["filter_modes"] == {"yago11k-mini": "interval"}
    md = (out / "serving.md").read_text()
    assert "## Goals" in md and "`interval` filter on yago11k-mini (removes the answers whose" in md
