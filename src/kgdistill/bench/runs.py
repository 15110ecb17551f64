"""Benchmark runs that survive a kill: reuse a finished run, resume an interrupted one, else train."""

from __future__ import annotations

import datetime as dt
import json
import logging
import platform
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import yaml

from kgdistill import api
from kgdistill.checkpoint import atomic_write_text
from kgdistill.config import parse_config
from kgdistill.errors import ConfigError

__all__ = ["earlier_results", "ensure_run", "finished", "machine_info", "run_command"]

log = logging.getLogger(__name__)


def finished(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds a finished run (its test metrics are written)."""
    return (run_dir / "metrics.json").is_file()


def ensure_run(cfg_raw: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """Train (fresh, resumed or reused) the run of ``cfg_raw`` in ``run_dir``; returns its ``metrics.json``.

    A folder holding a run of a different config is an error (never silently reused).
    """
    cfg = parse_config(cfg_raw)
    stored = run_dir / "config.yaml"
    # the stored config read through the current schema: a field added since (with its default) is no change
    if stored.is_file() and parse_config(yaml.safe_load(stored.read_text())) != cfg:
        raise ConfigError(
            f"{run_dir} holds a run of another config; remove it or use another --work folder"
        )
    if (run_dir / "metrics.json").is_file():
        log.info("reusing %s", run_dir)
    elif (run_dir / "last.safetensors").is_file():
        log.info("resuming %s", run_dir)
        api.train(resume=run_dir)
    else:
        log.info("training %s", run_dir)
        api.train(cfg, out=run_dir)
    return json.loads((run_dir / "metrics.json").read_text())  # type: ignore[no-any-return]


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
    """The command line that is running (``kgdistill benchmark ...`` when run through the CLI)."""
    if sys.argv and "kgdistill" in sys.argv[0]:
        return "kgdistill " + " ".join(sys.argv[1:])
    return " ".join(sys.argv)


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
