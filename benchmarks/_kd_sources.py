"""What a KD benchmark's result file keeps from earlier calls: the runs this call does not make again and the
command, machine and date behind each of them (``sources``), run by run."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _common import earlier_results

__all__ = ["TEACHERS", "check_teacher", "earlier_cells"]

log = logging.getLogger(__name__)

#: Methods of rows that are teachers, not students: the conventional teacher and the LLM scorer.
TEACHERS = ("teacher", "llm-scorer")
#: student -> method -> seeds: the runs an earlier call made
_Cells = dict[str, dict[str, list[int]]]


def earlier_cells(
    path: Path,
    datasets: Sequence[str],
    students: Sequence[str],
    methods: Sequence[str],
    runs: list[dict[str, Any]],
    sources: dict[str, dict[str, Any]],
    seeds: Sequence[int] | None = None,
) -> dict[str, Any]:
    """The runs, searches and sources of an earlier result file that this call does not make again.

    Kept: every cell (dataset, student, method) outside ``datasets`` x ``students`` x ``methods``, the runs of
    other ``seeds`` than this call's (``None``: all seeds are this call's) and, within this call's datasets, the
    teacher rows it has not (yet) made again. A dataset whose kept rows came from another call keeps that call's
    command, machine and date under its source's ``earlier``, with the runs kept (``cells``: student -> method ->
    seeds; ``students``: their students), so a call for one cell or one seed does not claim its student's other
    rows, and the call behind each seed of a cell stays named.
    """
    prev = earlier_results(path, "dataset", [], ["runs", "searches"])
    made = {(r["dataset"], r["student"], r["method"], r["seed"]) for r in runs}

    def outside(e: dict[str, Any]) -> bool:
        if e.get("dataset") not in datasets:
            return True
        return e.get("student") not in students or e.get("method") not in methods

    kept_runs = [
        r
        for r in prev["runs"]
        if (r.get("dataset"), r.get("student"), r.get("method"), r.get("seed")) not in made
        and (
            outside(r)
            or r.get("method") in TEACHERS
            or (seeds is not None and r.get("seed") not in seeds)
        )
    ]
    kept_searches = [s for s in prev["searches"] if outside(s)]
    merged: dict[str, dict[str, Any]] = {}
    for ds in dict.fromkeys([*prev["sources"], *sources]):
        old, new = prev["sources"].get(ds), sources.get(ds)
        kept: _Cells = {}  # student -> method -> seeds, in the kept rows' order
        for r in kept_runs:
            if r["dataset"] == ds and r["method"] not in TEACHERS:
                kept.setdefault(r["student"], {}).setdefault(r["method"], []).append(r["seed"])
        if new is None or old is None:
            merged[ds] = new or old  # type: ignore[assignment]
            continue
        merged[ds] = dict(new)
        if kept:  # rows of other calls stay beside this call's: name them all, run by run
            older = [_restricted(e, kept) for e in old.get("earlier", [])]
            older = [e for e in older if e["students"]]
            named = {
                (st, m, s)
                for e in older
                for st, ms in e["cells"].items()
                for m, ss in ms.items()
                for s in ss
            }
            own = _cells_without(kept, named)
            last = {k: v for k, v in old.items() if k != "earlier"}
            mine = [{**last, "students": list(own), "cells": own}] if own else []
            merged[ds]["earlier"] = [*older, *mine]
    kept_ds = {r["dataset"] for r in kept_runs} | {r["dataset"] for r in runs}
    return {
        "runs": kept_runs,
        "searches": kept_searches,
        "sources": {d: v for d, v in merged.items() if d in kept_ds and v is not None},
    }


def _cells_without(cells: _Cells, named: set[tuple[str, str, int]]) -> _Cells:
    """``cells`` less the (student, method, seed) runs in ``named``; emptied methods and students dropped."""
    out: _Cells = {}
    for st, ms in cells.items():
        for m, ss in ms.items():
            rest = [s for s in ss if (st, m, s) not in named]
            if rest:
                out.setdefault(st, {})[m] = rest
    return out


def _restricted(entry: dict[str, Any], kept: _Cells) -> dict[str, Any]:
    """An earlier call's source ``entry`` narrowed to the runs still ``kept``. An entry written before seeds were
    recorded (``cells``: student -> methods) names all kept seeds of its methods, one written before cells were
    (``students`` only) all kept runs of its students."""
    named = entry.get("cells") or {st: list(kept.get(st, {})) for st in entry.get("students", [])}
    cells: _Cells = {}
    for st, ms in named.items():
        have = kept.get(st, {})
        pairs = ms.items() if isinstance(ms, dict) else ((m, have.get(m, [])) for m in ms)
        for m, ss in pairs:
            ss = [s for s in ss if s in have.get(m, [])]
            if ss:
                cells.setdefault(st, {})[m] = ss
    return {**entry, "students": list(cells), "cells": cells}


def check_teacher(
    path: Path, teacher: dict[str, Any], students: Sequence[str], methods: Sequence[str]
) -> None:
    """Log when the ``teacher`` row made here has other test metrics (MRR by more than 0.01) than the teacher of
    the student rows an earlier result file keeps beside this call's: those rows were distilled from that run."""
    ds = teacher["dataset"]
    prev = [
        r for r in earlier_results(path, "dataset", [], ["runs"])["runs"] if r.get("dataset") == ds
    ]
    before = next((r for r in prev if r.get("method") == "teacher"), None)
    kept = sorted(
        {
            r["student"]
            for r in prev
            if r.get("method") not in TEACHERS
            and (r.get("student") not in students or r.get("method") not in methods)
        }
    )
    if before is not None and kept and abs(before["mrr"] - teacher["mrr"]) > 0.01:
        log.warning(
            "%s: the teacher's test MRR is %.2f here, %.2f in %s; the kept rows of %s were distilled from that "
            "earlier run",
            ds,
            teacher["mrr"],
            before["mrr"],
            path,
            ", ".join(kept),
        )
