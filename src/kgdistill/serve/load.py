"""A small load generator for ``kgdistill serve``: ``concurrency`` client threads, each on its own keep-alive
connection, send random top-k queries (by id) for ``seconds``; requests per second and latency percentiles.

``python -m kgdistill.serve.load http://127.0.0.1:8000 RUN [-c 32] [-s 10] [-k 10]`` prints one JSON line.
Start the server with ``--max-batch 1`` to measure without the micro-batcher.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import threading
import time
from typing import Any
from urllib.parse import urlsplit

__all__ = ["hammer", "random_queries"]


def _conn(url: str) -> http.client.HTTPConnection:
    u = urlsplit(url)
    return http.client.HTTPConnection(u.hostname or "127.0.0.1", u.port or 80, timeout=60)


def _request(
    conn: http.client.HTTPConnection,
    method: str,
    path: str,
    body: Any = None,
    key: str | None = None,
) -> tuple[int, Any]:
    headers = {"content-type": "application/json"} | ({"X-API-Key": key} if key else {})
    conn.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
    resp = conn.getresponse()
    return resp.status, json.loads(resp.read())


def random_queries(
    url: str, run: str, n: int, k: int = 10, *, seed: int = 0, key: str | None = None
) -> list[dict[str, Any]]:
    """``n`` random tail or head queries by id for ``run`` (its sizes read from ``/v1/runs/RUN``)."""
    status, info = _request(_conn(url), "GET", f"/v1/runs/{run}", key=key)
    if status != 200:
        raise RuntimeError(f"GET /v1/runs/{run}: {status} {info}")
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        q: dict[str, Any] = {"relation_id": rng.randrange(info["relations"]), "k": k}
        q["head_id" if rng.random() < 0.5 else "tail_id"] = rng.randrange(info["entities"])
        if info["temporal"]:
            q["time_id"] = rng.randrange(info["times"])
        out.append(q)
    return out


def hammer(
    url: str,
    run: str,
    bodies: list[dict[str, Any]],
    *,
    concurrency: int = 32,
    seconds: float = 10.0,
    key: str | None = None,
) -> dict[str, float]:
    """Send ``bodies`` round-robin to ``/v1/runs/RUN/topk`` from ``concurrency`` threads for ``seconds``.

    Returns:
        ``requests``, ``errors``, ``seconds``, ``rps`` and latency percentiles ``p50_ms``, ``p99_ms``.
    """
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop = time.perf_counter() + seconds
    path = f"/v1/runs/{run}/topk"

    def client(i: int) -> None:
        conn, mine, bad, j = _conn(url), [], 0, i
        while time.perf_counter() < stop:
            t = time.perf_counter()
            status, _ = _request(conn, "POST", path, bodies[j % len(bodies)], key)
            mine.append(time.perf_counter() - t)
            bad += status != 200
            j += concurrency
        conn.close()
        with lock:
            latencies.extend(mine)
            errors[0] += bad

    start = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    latencies.sort()
    n = len(latencies)
    return {
        "requests": n,
        "errors": errors[0],
        "seconds": round(elapsed, 2),
        "rps": round(n / elapsed, 1),
        "p50_ms": round(1000 * latencies[n // 2], 2) if n else float("nan"),
        "p99_ms": round(1000 * latencies[min(n - 1, int(n * 0.99))], 2) if n else float("nan"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("url")
    ap.add_argument("run")
    ap.add_argument("-c", "--concurrency", type=int, default=32)
    ap.add_argument("-s", "--seconds", type=float, default=10.0)
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--key", default=None, help="The X-API-Key to send.")
    a = ap.parse_args()
    bodies = random_queries(a.url, a.run, 1000, a.k, key=a.key)
    result = hammer(a.url, a.run, bodies, concurrency=a.concurrency, seconds=a.seconds, key=a.key)
    print(json.dumps({"concurrency": a.concurrency, "k": a.k, **result}))  # noqa: T201


if __name__ == "__main__":
    main()
