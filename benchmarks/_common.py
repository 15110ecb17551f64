"""Plumbing shared by the benchmark scripts: the machine, command and date behind their numbers, results
already written by earlier calls, their Markdown tables and the filter their protocol lines name.

The scripts run as ``python benchmarks/NAME.py`` from the repository root, so this folder is on the import path
(``from _common import ...``); the tests put it there too.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import shlex
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
import pandas as pd

from kgdistill.catalog import DATASET_INFO
from kgdistill.data.filters import FILTER_MODES, filter_mode
from kgdistill.errors import KGDistillError
from kgdistill.io import atomic_write_text
from kgdistill.runs import machine_info as runs_machine_info

__all__ = [
    "REPO",
    "NothingFinished",
    "dataset_folders",
    "earlier_results",
    "filter_modes",
    "filter_protocol",
    "friendly_errors",
    "machine_info",
    "markdown_table",
    "run_command",
    "setup_logging",
    "write_script_result",
]

log = logging.getLogger(__name__)

#: The repository root: the scripts' default ``--work`` and ``--out`` folders are relative to it.
REPO = Path(__file__).resolve().parents[1]


def machine_info() -> dict[str, Any]:
    """What a benchmark ran on (written next to its numbers), with the date (:func:`kgdistill.runs.machine_info`)."""
    return runs_machine_info()


class NothingFinished(KGDistillError):
    """A benchmark call with no finished row to report: it writes nothing and says so (exit status 1 through
    :func:`friendly_errors`), instead of an empty table and "results written"."""

    def __init__(self, why: str) -> None:
        super().__init__(f"nothing finished: {why}; no results written")


def write_script_result(
    out: Path,
    stem: str,
    script: str,
    argv: Sequence[str],
    fields: dict[str, Any],
    markdown: Callable[[dict[str, Any]], str],
    *,
    why: str | None = None,
) -> str:
    """Write a benchmark script's ``<stem>.json`` and ``<stem>.md`` in ``out`` (the document with its command,
    machine and date ahead of ``fields``); returns the Markdown.

    Raises:
        NothingFinished: ``fields["rows"]`` is empty (``why``: what the script looked for); nothing is written.
    """
    if "rows" in fields and not fields["rows"]:
        raise NothingFinished(why or f"{script} has no row to report")
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


#: a cell that reads as a number: ``12``, ``1,234``, ``-0.5``, ``1e-05``, ``inf``, ``14.62 ± 0.10``
_NUMBER = re.compile(r"[-+]?(?:[\d,]*\.?\d+(?:e[-+]?\d+)?|inf|nan)(?: ± [\d.]+)?")


def _text(value: object) -> str:
    """A table cell's text: ``-`` for a missing value (``None``, or NaN in a frame), else ``str(value)``."""
    return "-" if pd.api.types.is_scalar(value) and pd.isna(value) else str(value)


def _alignment(cells: Sequence[str]) -> str:
    """``right`` for a column of numbers (``-`` cells aside), else ``left``."""
    values = [c for c in cells if c != "-"]
    return "right" if values and all(_NUMBER.fullmatch(c) for c in values) else "left"


def markdown_table(
    rows: Sequence[Mapping[str, object]] | pd.DataFrame, columns: Sequence[str] | None = None
) -> str:
    """A Markdown (pipe) table of ``rows`` by ``DataFrame.to_markdown``, ending with a newline.

    ``columns``: the column titles in order, each a key of every row (default: the first row's keys, or the
    frame's columns). Cells are written as given (``-`` for ``None`` or NaN): numbers are not parsed, so ``0.500`` and
    ``1,234`` stay as they are; columns of numbers are right-aligned.
    """
    if isinstance(rows, pd.DataFrame):
        titles = list(rows.columns if columns is None else columns)
        values = rows.loc[:, titles].to_numpy().tolist()
    else:
        titles = list(columns if columns is not None else (rows[0] if rows else []))
        values = [[row[c] for c in titles] for row in rows]
    cells = [[_text(v) for v in row] for row in values]
    frame = pd.DataFrame(cells, columns=titles, dtype=object)
    align = [_alignment([row[i] for row in cells]) for i in range(len(titles))]
    return frame.to_markdown(index=False, disable_numparse=True, colalign=align) + "\n"


def filter_modes(
    rows: Sequence[Mapping[str, Any]], eval_section: Mapping[str, Any] | None
) -> dict[str, str]:
    """Dataset -> the :attr:`~kgdistill.data.filters.FilterIndex.mode` its rows were ranked under: the row's
    ``filter_mode`` as its run recorded it, else (rows written before it was recorded) the mode the table's
    ``eval`` section gives the dataset's kind in the catalog (``?`` for a dataset not in it)."""
    ev = eval_section or {}
    out: dict[str, str] = {}
    for row in rows:
        ds = str(row["dataset"])
        info = DATASET_INFO.get(ds)
        derived = (
            filter_mode(
                info.kind,
                time_aware=ev.get("time_aware", True),
                time_filter=ev.get("time_filter", "validity"),
            )
            if info is not None
            else "?"
        )
        out.setdefault(ds, str(row.get("filter_mode") or derived))
    return out


def filter_protocol(modes: Mapping[str, str]) -> str:
    """The filters behind a table, for its protocol line: datasets grouped by filter mode, each mode with what it
    removes, e.g. "`interval` filter on yago11k, wikidata12k (removes the answers whose validity interval ...)";
    with interval data, the note that the tkbc / TeRo line of papers filters by timestamp instead."""
    groups: dict[str, list[str]] = {}
    for ds, mode in modes.items():
        groups.setdefault(mode, []).append(ds)
    text = "; ".join(
        f"`{mode}` filter on {', '.join(names)} (removes {FILTER_MODES.get(mode, 'an unknown set')})"
        for mode, names in groups.items()
    )
    if "interval" in groups:
        text += (
            ", not the tkbc / TeRo line's `timestamp` filter (`eval.time_filter: timestamp`, which removes fewer "
            "answers: numbers under the two are not comparable)"
        )
    return text


def run_command() -> str:
    """The command line that is running (``python benchmarks/NAME.py ...`` for a benchmark script: a script of
    this checkout by its path from the checkout's root, however it was started, e.g. by ``kgdistill benchmark``
    with an absolute path, so that no machine's folders reach a result file)."""
    argv = list(sys.argv) or [""]
    if argv[0].endswith(".py"):
        script = Path(argv[0]).resolve()
        if Path(argv[0]).is_absolute() and script.is_relative_to(REPO):
            argv[0] = script.relative_to(REPO).as_posix()
        return shlex.join(["python", *argv])
    return shlex.join(argv)


def dataset_folders(work: Path, datasets: Sequence[str]) -> list[Path]:
    """``work / dataset`` for each dataset; exits with one message naming the first that is missing (a
    script that reads the runs of ``benchmarks/temporal_kd.py``)."""
    for ds in datasets:
        if not (work / ds).is_dir():
            sys.exit(
                f"{work / ds}: no such run folder (run `python benchmarks/temporal_kd.py` first)"
            )
    return [work / ds for ds in datasets]


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
    """Log to stderr: INFO (every run reused, resumed or trained), DEBUG with ``verbose``, WARNING with ``quiet``.
    The level applies also when logging was set up before (``kgdistill benchmark`` configures it first)."""
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(level)


@contextmanager
def friendly_errors() -> Iterator[None]:
    """An input error prints one line and exits with status 2; a call with nothing finished says so (status 1);
    an interrupt says how to go on (status 130)."""
    try:
        yield
    except NothingFinished as e:
        click.echo(str(e), err=True)
        sys.exit(1)
    except KGDistillError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo(
            "interrupted: finished runs are kept and an interrupted one resumes; run the same command again",
            err=True,
        )
        sys.exit(130)


def driver_options(work: Path) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The options every benchmark driver shares: ``--epochs``, ``--teacher-epochs``, ``--work`` (default
    ``work``), ``--out``, ``--finished-only``, ``--data-root``, ``-v`` and ``-q``."""
    shared = [
        click.option("--epochs", default=None, type=int, help="Override the students' epochs."),
        click.option(
            "--teacher-epochs", default=None, type=int, help="Override the teacher's epochs."
        ),
        click.option(
            "--work",
            default=str(work),
            help=f"Run folders (default: {work.relative_to(REPO)} in the repository).",
        ),
        click.option(
            "--out",
            default=str(REPO / "benchmarks" / "results"),
            help="Result files (default: benchmarks/results in the repository).",
        ),
        click.option(
            "--finished-only",
            is_flag=True,
            help="Train nothing: tabulate the runs under --work that have finished (e.g. while a run goes "
            "on).",
        ),
        click.option(
            "--data-root",
            default=None,
            help="Folder holding the datasets (default: $KGDISTILL_DATA).",
        ),
        click.option("-v", "--verbose", is_flag=True, help="Debug logging."),
        click.option("-q", "--quiet", is_flag=True, help="Warnings only."),
    ]

    def apply(fn: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(shared):
            fn = option(fn)
        return fn

    return apply
