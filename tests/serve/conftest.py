"""Tiny real runs (TA-DistMult on a real YAGO11k subset, DistMult on a real FB15k-237 subset, 2 epochs each) and
``kgdistill serve``'s app on a real uvicorn server on 127.0.0.1 (a free port, in a thread)."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kgdistill import api
from kgdistill.config import parse_config
from kgdistill.predict import Predictor

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def _train(data: str, model: str, out: Path) -> Path:
    cfg = parse_config(
        {
            "data": {"name": str(FIXTURES / data)},
            "model": {"name": model, "dim": 8},
            "stages": [{"epochs": 2}],
            "train": {"optimizer": "adam", "lr": 0.01, "batch_size": 1000, "progress": False},
        }
    )
    return api.train(cfg, out=out).run_dir


@pytest.fixture(scope="session")
def temporal_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """TA-DistMult-8, 2 epochs on a real YAGO11k subset (interval times, year bins)."""
    return _train("yago11k-mini", "ta_distmult", tmp_path_factory.mktemp("serve") / "yago")


@pytest.fixture(scope="session")
def static_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """DistMult-8, 2 epochs on a real FB15k-237 subset."""
    return _train("fb15k237-mini", "distmult", tmp_path_factory.mktemp("serve") / "fb")


@pytest.fixture(scope="session")
def predictors(temporal_run: Path, static_run: Path) -> dict[str, Predictor]:
    return {
        "yago": Predictor.load(temporal_run, device="cpu"),
        "fb": Predictor.load(static_run, device="cpu"),
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """An ASGI app served by uvicorn on 127.0.0.1 in a background thread; a context manager."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "server did not start"
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def call(
    url: str,
    body: object = None,
    *,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
    method: str | None = None,
) -> tuple[int, Any]:
    """One HTTP request (stdlib): ``(status, parsed JSON or text)``; a JSON ``body`` or ``raw`` bytes."""
    data = raw if raw is not None else None if body is None else json.dumps(body).encode()
    hdrs = {"content-type": "application/json"} if data is not None else {}
    hdrs.update(headers or {})
    req = urllib.request.Request(url, data=data, headers=hdrs, method=method)
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            status, text, kind = resp.status, resp.read().decode(), resp.headers["content-type"]
    except urllib.error.HTTPError as e:
        status, text, kind = e.code, e.read().decode(), e.headers["content-type"]
    return status, json.loads(text) if kind and "json" in kind else text


@pytest.fixture(scope="session")
def server(predictors: dict[str, Predictor]) -> Iterator[Server]:
    """Both runs served under ``yago`` and ``fb``, batching on."""
    from kgdistill.serve.app import create_app

    with Server(create_app(predictors, max_wait=0.002)) as s:
        yield s
