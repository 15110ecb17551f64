"""The FastAPI app of ``kgdistill serve`` (endpoints: ``docs/serve.md``).

:func:`create_app` builds it around predictors already loaded (the command, a test, a notebook);
:func:`app_from_env` is the factory each uvicorn worker process calls with ``--workers N``.

Every problem with a request is answered with a 4xx whose body names the field at fault
(``{"error": {"status", "type", "message", "field", "suggestions"}}``): a malformed or non-UTF-8 body (400), a
body that is not JSON (415), too large (413), a wrong or missing API key (401), an unknown run (404), an
unknown entity with close labels, a time the model never saw, ``k`` out of ``1..E`` (422). Anything else is a
500 carrying an error id that is also logged with the traceback; the server keeps serving.
"""

from __future__ import annotations

import asyncio
import difflib
import hmac
import json
import logging
import os
import uuid
from collections.abc import Callable, Coroutine, Mapping
from contextlib import asynccontextmanager
from typing import Any

import torch
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.routing import APIRoute
from fastapi.security import APIKeyHeader
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from kgdistill.predict import Answer, Predictor
from kgdistill.serve.batcher import MicroBatcher
from kgdistill.serve.metrics import CONTENT_TYPE, Metrics, MetricsMiddleware
from kgdistill.serve.resolve import ApiError, query_out, resolve_query, resolve_triple
from kgdistill.serve.schemas import (
    AnswerOut,
    BatchRequest,
    BatchResponse,
    ErrorOut,
    RunInfo,
    ScoreOut,
    ScoreRequest,
    ScoreResponse,
    TopKRequest,
    TopKResponse,
)

__all__ = ["ENV_CONFIG", "app_from_env", "create_app"]

log = logging.getLogger(__name__)

#: The environment variable through which ``kgdistill serve --workers N`` hands its options to each worker.
ENV_CONFIG = "KGDISTILL_SERVE_CONFIG"
API_KEY_HEADER = "X-API-Key"
_ERRORS: dict[int | str, dict[str, Any]] = {
    s: {"model": ErrorOut} for s in (400, 401, 404, 413, 415, 422, 500)
}


def _error(e: ApiError) -> JSONResponse:
    return JSONResponse(status_code=e.status, content=e.body())


def _json(body: BaseModel) -> Response:
    """``body`` serialised once (a model built here is valid: FastAPI's second validation of a returned
    model is skipped; the route's ``response_model`` still documents it)."""
    return Response(content=body.model_dump_json(), media_type="application/json")


def _answers(answers: list[Answer]) -> list[AnswerOut]:
    return [
        AnswerOut(rank=a.rank, entity=a.entity, id=a.id, score=a.score, known=a.known)
        for a in answers
    ]


def _info(name: str, p: Predictor) -> RunInfo:
    labels = p.time.labels
    return RunInfo(
        name=name,
        model=p.model_name,
        temporal=p.temporal,
        entities=len(p.entities),
        relations=len(p.relations),
        times=len(labels),
        time_range=[labels[0], labels[-1]] if labels else None,
        known_facts=p.known is not None,
        parameters=p.model.num_parameters(),
    )


def _body_check(max_body: int) -> Callable[[Request], Coroutine[Any, Any, ApiError | None]]:
    """Reads and checks a JSON body once (size, content type, UTF-8, JSON syntax), leaving it parsed for
    FastAPI; an :class:`ApiError` naming ``body`` when it is bad."""

    async def check(request: Request) -> ApiError | None:
        size = request.headers.get("content-length")
        if size is not None and size.isdigit() and int(size) > max_body:
            return ApiError(413, f"over {max_body} bytes", field="body")
        kind = request.headers.get("content-type", "application/json").split(";")[0].strip()
        if kind != "application/json" and not kind.endswith("+json"):
            return ApiError(
                415, f"send JSON (Content-Type: application/json), not '{kind}'", field="body"
            )
        raw = await request.body()
        if len(raw) > max_body:
            return ApiError(413, f"over {max_body} bytes", field="body")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            byte = raw[e.start : e.start + 1].hex()
            return ApiError(
                400,
                f"not valid UTF-8 (byte 0x{byte} at offset {e.start})",
                field="body",
            )
        if text.strip():
            try:
                request._json = json.loads(text)  # FastAPI reads it from here
            except json.JSONDecodeError as e:
                return ApiError(
                    400,
                    f"malformed JSON: {e.msg} (line {e.lineno}, column {e.colno})",
                    field="body",
                )
        return None

    return check


def _route_class(max_body: int) -> type[APIRoute]:
    check = _body_check(max_body)

    class Route(APIRoute):
        """Checks the body before FastAPI parses it; answers :class:`ApiError` s; turns any other exception
        into a logged 500 with an error id."""

        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()
            has_body = self.body_field is not None

            async def route(request: Request) -> Response:
                try:
                    if has_body and (bad := await check(request)) is not None:
                        return _error(bad)
                    return await handler(request)
                except ApiError as e:
                    return _error(e)
                except (StarletteHTTPException, RequestValidationError):
                    raise  # answered by the app's handlers below
                except Exception:
                    eid = uuid.uuid4().hex[:12]
                    log.exception("error %s answering %s %s", eid, request.method, request.url.path)
                    e = ApiError(500, f"internal error (id {eid})", kind="internal_error")
                    body = e.body()
                    body["error"]["id"] = eid
                    return JSONResponse(status_code=500, content=body)

            return route

    return Route


def _validation_error(exc: RequestValidationError) -> ApiError:
    """FastAPI's validation errors as one :class:`ApiError` naming the first field (``queries.3.head``)."""
    found = []
    for err in exc.errors():
        loc = [str(x) for x in err.get("loc", ())]
        if loc[:1] in (["body"], ["path"], ["query"], ["header"]):
            loc = loc[1:]
        found.append((".".join(loc) or "body", str(err.get("msg")), err.get("type")))
    if not found:
        return ApiError(422, "invalid request", field="body")
    status = 400 if any(kind == "json_invalid" for _, _, kind in found) else 422
    message = "; ".join([found[0][1], *(f"{f}: {m}" for f, m, _ in found[1:])])
    return ApiError(status, message, field=found[0][0])


def create_app(
    runs: Mapping[str, Predictor],
    *,
    api_key: str | None = None,
    max_wait: float = 0.002,
    max_batch: int = 256,
    max_queries: int = 1000,
    max_body: int = 8 * 2**20,
) -> FastAPI:
    """The app serving ``runs`` (name -> loaded predictor).

    Args:
        api_key: when set, ``/v1/*`` and ``/metrics`` need it in the ``X-API-Key`` header.
        max_wait: seconds the micro-batcher waits for more requests (:class:`MicroBatcher`).
        max_batch: the most query rows in one model call; 1 = no batching.
        max_queries: the most queries (or triples) in one request.
        max_body: the largest request body, in bytes.
    """
    metrics = Metrics()
    batchers = {
        name: MicroBatcher(
            p,
            max_wait=max_wait,
            max_queries=max_batch,
            on_batch=lambda q, r, name=name: metrics.observe_batch(name, q, r),
        )
        for name, p in runs.items()
    }
    state = {"ready": False}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        for b in batchers.values():
            b.start()
        metrics.runs_loaded = len(runs)
        state["ready"] = True
        log.info("serving %s", ", ".join(runs))
        try:
            yield
        finally:
            state["ready"] = False
            await asyncio.gather(*(b.close() for b in batchers.values()))

    app = FastAPI(
        title="kgdistill serve",
        summary="Top-k answers and scores of link-prediction queries on trained kgdistill runs.",
        lifespan=lifespan,
        strict_content_type=False,
    )
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    route_class = _route_class(max_body)
    key_header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False)

    async def authorised(key: str | None = Depends(key_header)) -> None:
        if api_key is None:
            return
        if key is None:
            raise ApiError(401, f"missing {API_KEY_HEADER} header", field=API_KEY_HEADER)
        if not hmac.compare_digest(key.encode(), api_key.encode()):
            raise ApiError(401, "wrong API key", field=API_KEY_HEADER)

    public = APIRouter(route_class=route_class)
    # without a key there is nothing to check: no dependency to solve on every request
    private = APIRouter(
        route_class=route_class,
        dependencies=[Depends(authorised)] if api_key is not None else [],
    )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(_validation_error(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(ApiError(exc.status_code, str(exc.detail), kind="http_error"))

    def served(run: str) -> tuple[Predictor, MicroBatcher]:
        if run not in runs:
            close = difflib.get_close_matches(run, list(runs), n=3)
            raise ApiError(
                404,
                f"no run named '{run}' is served here; served: {', '.join(runs)}",
                field="run",
                suggestions=close,
                kind="not_found",
            )
        return runs[run], batchers[run]

    def check_k(p: Predictor, k: int) -> None:
        if not 1 <= k <= len(p.entities):
            raise ApiError(
                422, f"k must be in 1..{len(p.entities)} (the run's entities)", field="k"
            )

    def check_exclude(p: Predictor, exclude: bool) -> None:
        if exclude and p.known is None:
            raise ApiError(
                422,
                "this run's training facts are not loaded: known answers cannot be left out",
                field="exclude_known",
            )

    def check_count(n: int, field: str) -> None:
        if n > max_queries:
            raise ApiError(422, f"at most {max_queries} per request, got {n}", field=field)

    @public.get("/health", summary="The process is up.")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @public.get("/ready", summary="Every run is loaded and the batchers run (503 otherwise).")
    async def ready() -> JSONResponse:
        body = {"ready": state["ready"], "runs": list(runs)}
        return JSONResponse(status_code=200 if state["ready"] else 503, content=body)

    @private.get("/metrics", response_class=PlainTextResponse, summary="Prometheus metrics.")
    async def metrics_text() -> PlainTextResponse:
        return PlainTextResponse(metrics.render(), media_type=CONTENT_TYPE)

    @private.get("/v1/runs", summary="The served runs.")
    async def list_runs() -> list[RunInfo]:
        return [_info(name, p) for name, p in runs.items()]

    @private.get("/v1/runs/{run}", responses=_ERRORS, summary="One served run.")
    async def run_info(run: str) -> RunInfo:
        return _info(run, served(run)[0])

    @private.post(
        "/v1/runs/{run}/topk",
        response_model=TopKResponse,
        responses=_ERRORS,
        summary="Top-k answers of one query.",
    )
    async def topk(run: str, body: TopKRequest) -> Response:
        p, batcher = served(run)
        check_k(p, body.k)
        check_exclude(p, body.exclude_known)
        q = resolve_query(p, body)
        rows = torch.tensor([q.row], dtype=torch.long)
        answers = await batcher.topk(rows, body.k, exclude_known=body.exclude_known)
        out = TopKResponse(run=run, query=query_out(p, q), answers=_answers(answers[0]))
        return _json(out)

    @private.post(
        "/v1/runs/{run}/topk/batch",
        response_model=BatchResponse,
        responses=_ERRORS,
        summary="Top-k answers of many queries.",
    )
    async def topk_batch(run: str, body: BatchRequest) -> Response:
        p, batcher = served(run)
        check_count(len(body.queries), "queries")
        check_k(p, body.k)
        check_exclude(p, body.exclude_known)
        qs = [resolve_query(p, q, f"queries.{i}.") for i, q in enumerate(body.queries)]
        rows = torch.tensor([q.row for q in qs], dtype=torch.long)
        answers = await batcher.topk(rows, body.k, exclude_known=body.exclude_known)
        results = [
            {"query": query_out(p, q), "answers": _answers(a)}
            for q, a in zip(qs, answers, strict=True)
        ]
        return _json(BatchResponse.model_validate({"run": run, "results": results}))

    @private.post("/v1/runs/{run}/score", responses=_ERRORS, summary="Scores of given facts.")
    async def score(run: str, body: ScoreRequest) -> ScoreResponse:
        p, _ = served(run)
        check_count(len(body.triples), "triples")
        rows = [resolve_triple(p, t, f"triples.{i}.") for i, t in enumerate(body.triples)]
        scores, known = await asyncio.to_thread(
            p.score_triples, torch.tensor(rows, dtype=torch.long)
        )
        out = []
        for i, row in enumerate(rows):
            tid = row[3] if len(row) > 3 else None
            out.append(
                ScoreOut(
                    head=p.entities.labels[row[0]],
                    head_id=row[0],
                    relation=p.relations.labels[row[1]],
                    relation_id=row[1],
                    tail=p.entities.labels[row[2]],
                    tail_id=row[2],
                    time=None if tid is None else p.time.labels[tid],
                    time_id=tid,
                    score=float(scores[i]),
                    known=None if known is None else bool(known[i]),
                )
            )
        return ScoreResponse(run=run, scores=out)

    app.include_router(public)
    app.include_router(private)
    return app


def app_from_env() -> FastAPI:
    """The app of one uvicorn worker process, configured by ``$KGDISTILL_SERVE_CONFIG`` (JSON written by
    ``kgdistill serve --workers N``: runs, device, threads, batching, the API key's variable name)."""
    from kgdistill.runs import flush_denormals
    from kgdistill.serve.runs import RunSpec, load_runs

    flush_denormals()  # a fresh process: before any tensor work, as the kgdistill command does
    cfg = json.loads(os.environ[ENV_CONFIG])
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg["threads"]))
    specs = [RunSpec(name, path) for name, path in cfg["runs"]]
    runs = load_runs(
        specs,
        device=cfg.get("device", "auto"),
        known_facts=cfg.get("known_facts", True),
        data_root=cfg.get("data_root"),
    )
    key_env = cfg.get("api_key_env")
    return create_app(
        runs,
        api_key=os.environ[key_env] if key_env else None,
        max_wait=cfg.get("max_wait", 0.002),
        max_batch=cfg.get("max_batch", 256),
        max_queries=cfg.get("max_queries", 1000),
    )
