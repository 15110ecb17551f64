"""Plumbing shared by the benchmark scripts: the machine, command and date behind their numbers, and results
already written by earlier calls.

The scripts run as ``python benchmarks/NAME.py`` from the repository root, so this folder is on the import path
(``from _common import ...``); the tests put it there too.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import platform
import shlex
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
import torch

from kgdistill.errors import KGDistillError
from kgdistill.io import atomic_write_text

__all__ = [
    "REPO",
    "earlier_results",
    "friendly_errors",
    "machine_info",
    "run_command",
    "setup_logging",
    "write_script_result",
]

log = logging.getLogger(__name__)

#: The repository root: the scripts' default ``--work`` and ``--out`` folders are relative to it.
REPO = Path(__file__).resolve().parents[1]


def machine_info() -> dict[str, Any]:
    """What a benchmark ran on (written next to its numbers), with the date."""
    return {
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


def write_script_result(
    out: Path,
    stem: str,
    script: str,
    argv: Sequence[str],
    fields: dict[str, Any],
    markdown: Callable[[dict[str, Any]], str],
) -> str:
    """Write a benchmark script's ``<stem>.json`` and ``<stem>.md`` in ``out`` (the document with its command,
    machine and date ahead of ``fields``); returns the Markdown."""
    doc = {
        "command": shlex.join(["python", script, *argv]),
        "machine": machine_info(),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        **fields,
    }
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / f"{stem}.json", json.dumps(doc, indent=2) + "\n")
    text = markdown(doc)
    atomic_write_text(out / f"{stem}.md", text)
    return text


def run_command() -> str:
    """The command line that is running (``python benchmarks/NAME.py ...`` for a benchmark script)."""
    argv = list(sys.argv) or [""]
    if argv[0].endswith(".py"):
        return shlex.join(["python", *argv])
    return shlex.join(argv)


def earlier_results(
    path: Path, key: str, current: Sequence[str], lists: Sequence[str]
) -> dict[str, Any]:
    """What an earlier result file holds for the ``key`` values (datasets, pairs) this call does not run.

    A benchmark called for some datasets only keeps the other datasets' results already in ``path``: for each
    name in ``lists``, the entries whose ``key`` is not in ``current``, and the ``sources`` (command, machine,
    date) they came from (a file written before ``sources`` existed: its one command and machine).
    """
    kept: dict[str, Any] = {name: [] for name in lists} | {"sources": {}}
    if not path.is_file():
        return kept
    try:
        old = json.loads(path.read_text())
    except json.JSONDecodeError:
        log.warning("%s is not valid JSON; its results are not kept", path)
        return kept
    if not isinstance(old, dict):
        return kept
    for name in lists:
        entries = old.get(name)
        if isinstance(entries, list):
            kept[name] = [e for e in entries if isinstance(e, dict) and e.get(key) not in current]
    present = {e[key] for name in lists for e in kept[name]}
    sources = old.get("sources")
    if not isinstance(sources, dict):
        sources = {k: {"command": old.get("command"), **old.get("machine", {})} for k in present}
    kept["sources"] = {k: v for k, v in sources.items() if k in present}
    return kept


def setup_logging(verbose: bool = False, quiet: bool = False) -> None:
    """Log to stderr: INFO (every run reused, resumed or trained), DEBUG with ``verbose``, WARNING with ``quiet``."""
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


@contextmanager
def friendly_errors() -> Iterator[None]:
    """An input error prints one line and exits with status 2; an interrupt says how to go on (status 130)."""
    try:
        yield
    except KGDistillError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo(
            "interrupted: finished runs are kept and an interrupted one resumes; run the same command again",
            err=True,
        )
        sys.exit(130)
