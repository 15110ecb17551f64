"""``kgdistill serve RUN...``: the HTTP service (see :mod:`kgdistill.serve` and ``docs/serve.md``).

Importing this module loads only click; PyTorch, FastAPI and the runs load when the command runs. Every run is
checked before the server starts: a missing or unfinished run folder, or a checkpoint of another format
version, is one error and exit status 2.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import click

from kgdistill.clickutil import friendly
from kgdistill.errors import KGDistillError

__all__ = ["serve"]

log = logging.getLogger(__name__)

_LOOPBACK = {"127.0.0.1", "localhost", "::1", "ip6-localhost"}


def _api_key(host: str, api_key_env: str | None, insecure: bool) -> str | None:
    """The API key from ``$api_key_env``; refuses a non-loopback ``host`` without one (unless ``insecure``)."""
    if api_key_env:
        key = os.environ.get(api_key_env, "")
        if not key:
            raise KGDistillError(f"--api-key-env {api_key_env}: the variable is not set or empty")
        return key
    if host not in _LOOPBACK and not host.startswith("127.") and not insecure:
        raise KGDistillError(
            f"--host {host} is reachable from other machines: give --api-key-env NAME (clients send the "
            "key in the X-API-Key header) or --insecure to serve without a key"
        )
    return None


@click.command(name="serve")
@click.argument("runs", nargs=-1, required=True)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="Worker processes (each loads every run).",
)
@click.option(
    "--api-key-env",
    default=None,
    metavar="NAME",
    help="Environment variable holding the API key clients must send as X-API-Key.",
)
@click.option("--insecure", is_flag=True, help="Allow a non-loopback --host without an API key.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1, ...")
@click.option(
    "--threads",
    default=None,
    type=click.IntRange(min=1),
    help="PyTorch CPU threads per worker (torch.set_num_threads; default: PyTorch's).",
)
@click.option(
    "--max-wait",
    default=0.002,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Seconds the micro-batcher waits for more requests after the first of a batch.",
)
@click.option(
    "--max-batch",
    default=256,
    show_default=True,
    type=click.IntRange(min=1),
    help="Most query rows per model call; 1 turns batching off.",
)
@click.option(
    "--max-queries",
    default=1000,
    show_default=True,
    type=click.IntRange(min=1),
    help="Most queries or triples in one request.",
)
@click.option(
    "--no-known",
    is_flag=True,
    help="Do not read the runs' training data (answers are not marked known; no exclude_known).",
)
@click.option(
    "--data-root", default=None, help="Folder holding the datasets (default: $KGDISTILL_DATA)."
)
@click.option("--access-log", is_flag=True, help="Log every request (uvicorn's access log).")
@friendly("server stopped")
def serve(
    runs: tuple[str, ...],
    host: str,
    port: int,
    workers: int,
    api_key_env: str | None,
    insecure: bool,
    device: str,
    threads: int | None,
    max_wait: float,
    max_batch: int,
    max_queries: int,
    no_known: bool,
    data_root: str | None,
    access_log: bool,
) -> None:
    """Serve top-k answers and scores of the trained RUN folders over HTTP (RUN: PATH or NAME=PATH).

    Endpoints: /v1/runs, /v1/runs/NAME/topk, /v1/runs/NAME/topk/batch, /v1/runs/NAME/score, /health,
    /ready, /metrics; the API documentation is at /docs.
    """
    from kgdistill.serve.runs import check_run, parse_runs

    specs = parse_runs(runs)
    key = _api_key(host, api_key_env, insecure)
    if workers > 1:  # a single worker checks the runs as it loads them
        for spec in specs:
            check_run(spec)
    try:
        import fastapi  # noqa: F401
        import uvicorn
    except ImportError as e:
        raise KGDistillError(
            f"kgdistill serve needs {e.name}: pip install 'kgdistill[serve]'"
        ) from None
    options: dict[str, Any] = {
        "runs": [[s.name, s.path] for s in specs],
        "device": device,
        "threads": threads,
        "known_facts": not no_known,
        "data_root": data_root,
        "api_key_env": api_key_env,
        "max_wait": max_wait,
        "max_batch": max_batch,
        "max_queries": max_queries,
    }
    click.echo(
        f"serving {', '.join(s.name for s in specs)} on http://{host}:{port} "
        f"({workers} worker{'s' if workers > 1 else ''}; API docs at /docs)",
        err=True,
    )
    # uvicorn logs at kgdistill's level (-q: warnings only, -v: debug)
    level = logging.getLevelName(logging.getLogger().getEffectiveLevel()).lower()
    server = {"host": host, "port": port, "log_level": level, "access_log": access_log}
    if workers > 1:  # each worker process builds its own app from the options
        from kgdistill.serve.app import ENV_CONFIG

        os.environ[ENV_CONFIG] = json.dumps(options)
        uvicorn.run(
            "kgdistill.serve.app:app_from_env",
            factory=True,
            workers=workers,
            **server,
        )
        return
    import torch

    from kgdistill.serve.app import create_app
    from kgdistill.serve.runs import load_runs

    if threads:
        torch.set_num_threads(threads)
    predictors = load_runs(specs, device=device, known_facts=not no_known, data_root=data_root)
    app = create_app(
        predictors, api_key=key, max_wait=max_wait, max_batch=max_batch, max_queries=max_queries
    )
    uvicorn.run(app, **server)
