"""``kgdistill serve``'s app on a real uvicorn server: every endpoint, answers equal to direct
:class:`~kgdistill.predict.Predictor` calls, errors naming the field, metrics, API keys, server errors."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from kgdistill.errors import KGDistillError
from kgdistill.predict import Predictor
from kgdistill.serve.app import create_app

from .conftest import Server, call

Q = {"head": "<Xavi_Moro>", "relation": "wasBornIn", "time": 1990}


def same_answers(got: list[dict[str, Any]], want: list[Any]) -> None:
    """Equal ids, ranks and known marks; scores equal up to float rounding (another batch size)."""
    assert [a["id"] for a in got] == [a.id for a in want]
    assert [a["rank"] for a in got] == [a.rank for a in want]
    assert [a["known"] for a in got] == [a.known for a in want]
    for a, b in zip(got, want, strict=True):
        assert math.isclose(a["score"], b.score, rel_tol=1e-5, abs_tol=1e-7)


def test_health_ready_docs_and_runs(server: Server) -> None:
    assert call(server.url + "/health") == (200, {"status": "ok"})
    assert call(server.url + "/ready") == (200, {"ready": True, "runs": ["yago", "fb"]})
    status, spec = call(server.url + "/openapi.json")
    assert status == 200 and "/v1/runs/{run}/topk/batch" in spec["paths"]
    status, page = call(server.url + "/docs")
    assert status == 200 and "swagger" in page.lower()
    status, runs = call(server.url + "/v1/runs")
    assert status == 200 and [r["name"] for r in runs] == ["yago", "fb"]
    yago = runs[0]
    assert yago["temporal"] and yago["model"] == "ta_distmult" and yago["known_facts"]
    assert call(server.url + "/v1/runs/fb")[1]["temporal"] is False
    status, err = call(server.url + "/v1/runs/fbb")
    assert (
        status == 404 and err["error"]["field"] == "run" and err["error"]["suggestions"] == ["fb"]
    )


def test_topk_by_label_and_id_equals_the_predictor(
    server: Server, predictors: dict[str, Predictor]
) -> None:
    p = predictors["yago"]
    status, out = call(server.url + "/v1/runs/yago/topk", {**Q, "k": 5})
    assert status == 200
    q = p.query("wasBornIn", head="<Xavi_Moro>", time="1990")
    same_answers(out["answers"], p.topk(q, 5))
    assert out["query"]["time"] == q.time and out["query"]["direction"] == "tail"
    # the same query by ids, and with the time as a date in the same bin
    by_id = {
        "head_id": q.row[0],
        "relation_id": q.row[1],
        "time_id": q.row[3],
        "k": 5,
    }
    assert call(server.url + "/v1/runs/yago/topk", by_id)[1]["answers"] == out["answers"]
    dated = {**Q, "time": "1990-05-01", "k": 5}
    assert call(server.url + "/v1/runs/yago/topk", dated)[1]["query"]["time"] == q.time
    # head prediction, filtered
    body = {
        "tail": "Paris",
        "relation": "wasBornIn",
        "time": "1990",
        "k": 50,
        "exclude_known": True,
    }
    status, out = call(server.url + "/v1/runs/yago/topk", body)
    q = p.query("wasBornIn", tail="Paris", time="1990")
    same_answers(out["answers"], p.topk(q, 50, exclude_known=True))
    assert out["query"]["direction"] == "head" and not any(a["known"] for a in out["answers"])


def test_static_run_batch_and_scores(server: Server, predictors: dict[str, Predictor]) -> None:
    p = predictors["fb"]
    queries = [{"head_id": i, "relation_id": i % 7} for i in range(6)] + [
        {"tail_id": 9, "relation_id": 2}
    ]
    status, out = call(server.url + "/v1/runs/fb/topk/batch", {"queries": queries, "k": 4})
    assert status == 200 and len(out["results"]) == 7
    for body, res in zip(queries, out["results"], strict=True):
        q = p.query(body["relation_id"], head=body.get("head_id"), tail=body.get("tail_id"))
        same_answers(res["answers"], p.topk(q, 4))
    triples = [
        {"head_id": 3, "relation_id": 1, "tail_id": 57},
        {"head_id": 0, "relation_id": 0, "tail_id": 1},
    ]
    status, out = call(server.url + "/v1/runs/fb/score", {"triples": triples})
    assert status == 200
    want, known = p.score_triples(torch.tensor([[3, 1, 57], [0, 0, 1]]))
    assert known is not None
    for got, s, k in zip(out["scores"], want.tolist(), known.tolist(), strict=True):
        assert math.isclose(got["score"], s, rel_tol=1e-5, abs_tol=1e-7) and got["known"] == k
    # a fact's score is its tail's score among the answers of (h, r, ?)
    top = call(server.url + "/v1/runs/fb/topk", {"head_id": 3, "relation_id": 1, "k": 108})[1]
    tail = next(a for a in top["answers"] if a["id"] == 57)
    assert math.isclose(tail["score"], out["scores"][0]["score"], rel_tol=1e-5, abs_tol=1e-7)


@pytest.mark.parametrize(
    ("body", "status", "field", "words"),
    [
        ({**Q, "head": "<Xavi_Mor>"}, 422, "head", "unknown entity"),
        ({**Q, "relation": "wasBorn"}, 422, "relation", "unknown relation"),
        ({**Q, "time": "3000"}, 422, "time", "outside the years"),
        ({**Q, "time": "yesterday"}, 422, "time", "cannot parse"),
        ({**Q, "time": None}, 422, "time", "temporal: give a time"),
        ({**Q, "time": None, "time_id": 99}, 422, "time_id", "out of range"),
        ({**Q, "k": 0}, 422, "k", "greater than or equal to 1"),
        ({**Q, "k": 1001}, 422, "k", "1..1000"),
        ({**Q, "head": 5}, 422, "head", "valid string"),
        ({**Q, "haed": "x"}, 422, "haed", "Extra inputs"),
        ({**Q, "tail": "Paris"}, 422, "tail", "exactly one of head"),
        ({**Q, "head": None, "head_id": 5000}, 422, "head_id", "out of range"),
        ({"relation": "wasBornIn", "time": 1990}, 422, "head", "exactly one of head"),
    ],
)
def test_bad_queries_name_the_field(
    server: Server, body: dict[str, Any], status: int, field: str, words: str
) -> None:
    got, out = call(
        server.url + "/v1/runs/yago/topk", {k: v for k, v in body.items() if v is not None}
    )
    assert got == status, out
    assert out["error"]["field"] == field and words in out["error"]["message"], out


def test_unknown_labels_come_with_close_matches(server: Server) -> None:
    body = {"queries": [Q, {**Q, "head": "xavi moro"}, {**Q, "head": "<Xavi_Mor>"}]}
    status, out = call(server.url + "/v1/runs/yago/topk/batch", body)
    assert status == 422 and out["error"]["field"] == "queries.2.head"  # normalised labels resolve
    assert out["error"]["suggestions"][0] == "<Xavi_Moro>"
    status, out = call(
        server.url + "/v1/runs/fb/topk", {"head_id": 1, "relation_id": 1, "time": 1990}
    )
    assert status == 422 and out["error"]["field"] == "time" and "static" in out["error"]["message"]
    triples = [{"head": "<Xavi_Moro>", "relation": "wasBornIn", "tail": "Pariss", "time": 1990}]
    status, out = call(server.url + "/v1/runs/yago/score", {"triples": triples})
    assert status == 422 and out["error"]["field"] == "triples.0.tail"
    assert "<Paris>" in out["error"]["suggestions"]


def test_malformed_bodies(server: Server) -> None:
    url = server.url + "/v1/runs/yago/topk"
    cases = [
        (b'{"head": "\xff\xfe"}', 400, "UTF-8"),
        (b'{"head": ', 400, "malformed JSON"),
        (b"[1, 2]", 422, "valid dictionary"),
        (b"", 422, "Field required"),
    ]
    for raw, status, words in cases:
        got, out = call(url, raw=raw)
        assert (
            got == status and out["error"]["field"] == "body" and words in out["error"]["message"]
        ), out
    got, out = call(url, raw=b"head=x", headers={"content-type": "text/plain"})
    assert got == 415 and "application/json" in out["error"]["message"]
    got, out = call(server.url + "/v1/runs/yago/topk/batch", {"queries": []})
    assert got == 422 and out["error"]["field"] == "queries"
    assert call(server.url + "/health")[0] == 200  # still serving


def test_metrics_move(server: Server) -> None:
    def count(text: str, prefix: str) -> float:
        return sum(float(ln.rsplit(" ", 1)[1]) for ln in text.splitlines() if ln.startswith(prefix))

    before = call(server.url + "/metrics")[1]
    call(server.url + "/v1/runs/yago/topk", Q)
    call(server.url + "/v1/runs/yago/topk", {**Q, "k": 0})
    after = call(server.url + "/metrics")[1]
    ok = 'kgdistill_requests_total{endpoint="/v1/runs/{run}/topk",method="POST",status="200"}'
    bad = 'kgdistill_requests_total{endpoint="/v1/runs/{run}/topk",method="POST",status="422"}'
    assert count(after, ok) == count(before, ok) + 1
    assert count(after, bad) == count(before, bad) + 1
    batches = 'kgdistill_batch_queries_count{run="yago"}'
    assert count(after, batches) == count(before, batches) + 1
    assert (
        'kgdistill_request_duration_seconds_bucket{endpoint="/v1/runs/{run}/topk",le="+Inf"}'
        in after
    )
    assert (
        "# TYPE kgdistill_batch_queries histogram" in after and "kgdistill_runs_loaded 2" in after
    )


def test_api_key_required_and_accepted(predictors: dict[str, Predictor]) -> None:
    with Server(create_app({"yago": predictors["yago"]}, api_key="s3cret")) as s:
        url = s.url + "/v1/runs/yago/topk"
        status, out = call(url, Q)
        assert status == 401 and out["error"]["field"] == "X-API-Key"
        assert call(url, Q, headers={"X-API-Key": "wrong"})[0] == 401
        assert call(url, Q, headers={"X-API-Key": "s3cret"})[0] == 200
        assert call(s.url + "/metrics")[0] == 401
        assert call(s.url + "/health")[0] == 200 and call(s.url + "/ready")[0] == 200


def test_a_failing_model_is_a_500_with_an_id_and_the_server_lives_on(
    predictors: dict[str, Predictor], caplog: pytest.LogCaptureFixture
) -> None:
    broken = copy.copy(predictors["yago"])

    def fail(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    broken.topk_batch = fail  # type: ignore[method-assign]
    broken.score_triples = fail  # type: ignore[method-assign]
    app = create_app({"broken": broken, "yago": predictors["yago"]})
    with Server(app) as s:
        status, out = call(s.url + "/v1/runs/broken/topk", Q)
        assert (
            status == 500 and out["error"]["id"] and out["error"]["id"] in out["error"]["message"]
        )
        triple = {"head_id": 0, "relation_id": 0, "tail_id": 1, "time_id": 0}
        assert call(s.url + "/v1/runs/broken/score", {"triples": [triple]})[0] == 500
        assert call(s.url + "/v1/runs/yago/topk", Q)[0] == 200
    assert any(out["error"]["id"] in r.getMessage() for r in caplog.records)


def test_32_concurrent_clients_get_the_predictors_answers(
    server: Server, predictors: dict[str, Predictor]
) -> None:
    """32 threads at once, mixed runs, k and filtering: each answer is the direct Predictor call's, and the
    batcher put several requests into one model call."""
    from concurrent.futures import ThreadPoolExecutor

    p = predictors["yago"]
    heads = p.entities.labels[:64]
    times = ["1990", "2005", "1850-03-01", "since 1960"]
    bodies = [
        {
            "head": h,
            "relation": "wasBornIn",
            "time": times[i % 4],
            "k": 1 + i % 7,
            "exclude_known": i % 3 == 0,
        }
        for i, h in enumerate(heads)
    ]

    def metric(name: str) -> float:
        text = call(server.url + "/metrics")[1]
        return sum(float(ln.split()[-1]) for ln in text.splitlines() if ln.startswith(name))

    calls_before = metric('kgdistill_batch_requests_count{run="yago"}')
    with ThreadPoolExecutor(32) as pool:
        got = list(pool.map(lambda b: call(server.url + "/v1/runs/yago/topk", b), bodies * 2))
    calls = metric('kgdistill_batch_requests_count{run="yago"}') - calls_before
    for body, (status, out) in zip(bodies * 2, got, strict=True):
        assert status == 200, out
        q = p.query("wasBornIn", head=body["head"], time=body["time"])
        same_answers(out["answers"], p.topk(q, body["k"], exclude_known=body["exclude_known"]))
    assert calls < len(got)  # some model calls answered several requests


def test_an_onnx_export_serves_the_runs_answers(
    static_run: Path, predictors: dict[str, Predictor], tmp_path: Path
) -> None:
    """A run exported to ONNX is served through ONNX Runtime with the run's top-k; a top-k graph is refused."""
    pytest.importorskip("onnxruntime")
    from kgdistill.export.run import export_run
    from kgdistill.serve.app import create_app
    from kgdistill.serve.runs import RunSpec, check_run, load_runs

    onnx_file = tmp_path / "fb.onnx"
    export_run(static_run, onnx_file, format="onnx", max_queries=50)
    served = load_runs([RunSpec("fb", str(onnx_file))])
    p = predictors["fb"]
    h, r = 3, 1
    body = {"head_id": h, "relation_id": r, "k": 10}
    with Server(create_app(served, max_wait=0.002)) as s:
        status, out = call(s.url + "/v1/runs/fb/topk", body)
    assert status == 200
    expected = p.topk(p.query(r, head=h), 10)
    assert [a["id"] for a in out["answers"]] == [a.id for a in expected]
    top = tmp_path / "fb-top10.onnx"
    export_run(static_run, top, format="onnx", topk=10, max_queries=50)
    with pytest.raises(KGDistillError, match="top-k graph"):
        check_run(RunSpec("top", str(top)))
