"""Result files of the temporal KD benchmark: JSON, CSV, markdown in the seed's layout, and a size plot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from _common import filter_modes, filter_protocol, markdown_table
from kgdistill.catalog import DATASET_INFO
from kgdistill.io import atomic_write_text

__all__ = ["seed_table", "source_lines", "temporal_kd_markdown", "write_temporal_kd"]

_SHORT = {"yago11k": "YAGO", "wikidata12k": "WIKI", "fb15k237": "FB", "wn18rr": "WN"}
_COLS = (("mrr", "MRR"), ("mr", "MR"), ("hits1", "H@1"), ("hits3", "H@3"), ("hits10", "H@10"))
#: the columns of the size table, in order
_SIZE_COLUMNS = (
    "dataset",
    "model",
    "method",
    "dim",
    "parameters",
    "bytes",
    "latency (ms)",
    "size / teacher",
    "MRR / teacher",
    "train s",
    "best / trained epochs",
)
#: table order of the methods that are not students
_TEACHER_ORDER = {"teacher": 0, "llm-scorer": 1}


def _cell(row: dict[str, Any] | None, key: str) -> str:
    if row is None or row.get(key) is None:
        return "-"
    value, std = row[key], row.get(key + "_std") or 0.0
    return f"{value:.2f} ± {std:.2f}" if len(row["seeds"]) > 1 else f"{value:.2f}"


def _label(row: dict[str, Any]) -> str:
    if row["method"] == "teacher":
        return f"teacher ({row['family']}, dim {row['dim']})"
    if row["method"] == "llm-scorer":
        return "LLM scorer (text head)"
    return str(row["student"])


def seed_table(rows: list[dict[str, Any]], datasets: list[str]) -> str:
    """Markdown table: one row per (model, method), MRR / MR / Hits in percent for each dataset (rows of
    different datasets with the same label and method share a line: the teachers' dims may differ)."""
    keys: list[tuple[str, str]] = []
    for r in rows:
        if (_label(r), r["method"]) not in keys:
            keys.append((_label(r), r["method"]))
    labels = list(dict.fromkeys(k for k, _ in keys))
    # teachers first, then each student with its no-KD baseline first
    keys.sort(key=lambda k: (_TEACHER_ORDER.get(k[1], 2), labels.index(k[0]), k[1] != "none"))
    index = {(r["dataset"], _label(r), r["method"]): r for r in rows}
    head = ["student", "method"] + [
        f"{_SHORT.get(d, d)} {label}" for d in datasets for _, label in _COLS
    ]
    cells = [
        [label, method]
        + [_cell(index.get((d, label, method)), k) for d in datasets for k, _ in _COLS]
        for label, method in keys
    ]
    return markdown_table([dict(zip(head, row, strict=True)) for row in cells], head)


def _size_table(rows: list[dict[str, Any]]) -> str:
    """Markdown table: size, latency and training cost of every row, against its dataset's teacher."""
    return markdown_table([_size_row(r, rows) for r in rows], _SIZE_COLUMNS)


def _size_row(r: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, str]:
    """One line of the size table: ``r`` and its size and MRR as shares of the teacher's in ``rows``."""
    t = next(x for x in rows if x["dataset"] == r["dataset"] and x["method"] == "teacher")
    return {
        "dataset": r["dataset"],
        "model": r["student"],
        "method": r["method"],
        "dim": str(r["dim"]),
        "parameters": f"{r['params']:,}",
        "bytes": f"{r['bytes']:,}",
        "latency (ms)": f"{r['latency_ms']:.3f}",
        "size / teacher": f"{r['params'] / t['params']:.3f}",
        "MRR / teacher": f"{r['mrr'] / t['mrr']:.3f}",
        "train s": fmt_or_dash(r.get("train_s"), "{:.0f}"),
        "best / trained epochs": _epochs(r),
    }


def fmt_or_dash(value: float | None, fmt: str = "{:.2f}") -> str:
    """``value`` formatted with ``fmt``, or ``-`` where it is missing."""
    return "-" if value is None else fmt.format(value)


def _epochs(r: dict[str, Any]) -> str:
    """``best/trained`` per seed, e.g. ``5/15``; ``-`` for rows written before these were recorded."""
    pairs = zip(r.get("best_epoch") or [], r.get("epochs_run") or [], strict=False)
    return ", ".join(f"{b}/{e}" for b, e in pairs if b is not None) or "-"


def _with_gains(methods: list[str], gain: dict[str, float]) -> str:
    """``bkd (+0.42), rkd (-0.10)``: the methods with their MRR gain over no KD, where recorded."""
    return ", ".join(f"{m} ({gain[m]:+.2f})" if m in gain else m for m in methods)


def _goals(goals: dict[str, Any]) -> str:
    out = []
    for ds, g in goals.items():
        for p in g.get("published", []):
            ref = p["published"]
            plain = "" if p["no_kd_mrr"] is None else f" (without KD {p['no_kd_mrr']:.2f})"
            out.append(
                f"- {ds}, {p['student']} (dim {p['dim']}): best {p['method']} MRR {p['mrr']:.2f}{plain} "
                f"against {ref['mrr']:.2f} published for {ref['source']}: "
                f"{'beats it' if p['beats_published'] else 'below it'}"
            )
        for student, d in g["students"].items():
            beats = d.get("kd_beats_no_kd", {})
            gain = d.get("kd_gain", {})  # (results written before the margins were recorded: none)
            ok = [m for m, v in beats.items() if v]
            bad = [m for m, v in beats.items() if not v]
            if not beats:  # only the no-KD row (or only KD rows) so far: nothing to compare yet
                out.append(f"- {ds}, {student}: KD vs no-KD not compared yet (one side has no row)")
            else:
                out.append(
                    f"- {ds}, {student}: KD beats no-KD with {_with_gains(ok, gain) or 'no method'}"
                    + (f"; not with {_with_gains(bad, gain)}" if bad else "")
                )
            if "ours_beats_best_baseline" in d:
                o, margin = d["ours_beats_best_baseline"], d.get("ours_margin", {})
                said = {
                    k: ("better" if o[k] else "not better")
                    + (f" ({margin[k]:+.2f})" if k in margin else "")
                    for k in ("mrr", "hits1")
                }
                out.append(
                    f"- {ds}, {student}: ours vs the best of BKD / FitNet / RKD: MRR {said['mrr']}, "
                    f"Hits@1 {said['hits1']}"
                )
        b = g["best_small_student"]
        if b:
            verdict = "meets" if b["retained"] >= 0.9 else "misses"
            out.append(
                f"- {ds}: best student at <= 1/8 of the teacher's parameters: {b['student']} + {b['method']}, "
                f"MRR {b['mrr']:.2f} = {b['retained']:.1%} of the teacher's {g['teacher_mrr']:.2f} "
                f"at {b['size_ratio']:.3f} of its size ({verdict} the 90% goal)"
            )
    return "\n".join(out) + "\n"


#: marker per method, colour per model: one look tells the student and the method of a point
_MARKERS = {
    "teacher": "*",
    "llm-scorer": "X",
    "none": "o",
    "bkd": "s",
    "bkd-t1": "p",
    "fitnet": "^",
    "rkd": "D",
    "ours": "P",
    "ours-no-stage1": "v",
    "ours-no-l2": "<",
    "ours-no-l3": ">",
}


def _plot(rows: list[dict[str, Any]], datasets: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    models = list(dict.fromkeys(_label(r) for r in rows))
    colours = {m: f"C{i % 10}" for i, m in enumerate(models)}
    fig, axes = plt.subplots(
        1, len(datasets), figsize=(5.5 * len(datasets) + 2.5, 4.2), squeeze=False
    )
    handles: dict[str, Any] = {}
    for ax, ds in zip(axes[0], datasets, strict=True):
        for r in (r for r in rows if r["dataset"] == ds):
            label = _label(r) if r["method"] in _TEACHER_ORDER else f"{r['student']} {r['method']}"
            handles[label] = ax.errorbar(
                r["params"],
                r["mrr"],
                yerr=r["mrr_std"] or 0,
                marker=_MARKERS.get(r["method"], "x"),
                color=colours[_label(r)],
                markersize=13 if r["method"] == "teacher" else 7,
                alpha=0.85,
                linestyle="none",
            )
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("parameters (log scale)")
        ax.set_ylabel("test MRR (%)")
        ax.set_title(ds)
        ax.grid(alpha=0.3)
    fig.legend(list(handles.values()), list(handles), fontsize=7, loc="center right", frameon=False)
    fig.tight_layout(rect=(0, 0, 1 - 2.3 / fig.get_figwidth(), 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def source_lines(doc: dict[str, Any]) -> list[str]:
    """The command, machine and date behind each dataset's (pair's) rows: calls for one add to the file."""
    out = []
    for ds, src in doc.get("sources", {}).items():
        machine = {k: v for k, v in src.items() if k not in ("command", "date", "earlier")}
        out.append(f"- {ds}: `{src['command']}` on {machine}, {src['date']}")
        # rows kept from other calls (another student or method, another machine)
        for e in src.get("earlier", []):
            where = {
                k: v for k, v in e.items() if k not in ("command", "date", "students", "cells")
            }
            out.append(
                f"  - {_cells_named(doc, ds, e)} rows: `{e['command']}` on {where}, {e['date']}"
            )
    return out or [f"Command: `{doc['command']}`  ", f"Machine: {doc['machine']}"]


def _cells_named(doc: dict[str, Any], dataset: str, entry: dict[str, Any]) -> str:
    """An earlier call's runs, e.g. ``ttranse, ta_distmult (none, bkd seed 1)``: a student alone when the call
    made all of its rows in the table (or the entry does not say which), a method alone when it made all of that
    row's seeds (``cells``: student -> method -> seeds, or student -> methods from before seeds were recorded)."""
    names = []
    for st in entry["students"]:
        cells = entry.get("cells", {}).get(st)
        if not cells:
            names.append(st)
            continue
        made = cells if isinstance(cells, dict) else dict.fromkeys(cells)
        shown = {
            r["method"]: r.get("seeds")
            for r in doc.get("rows", [])
            if r.get("dataset") == dataset
            and r.get("student") == st
            and r.get("method") not in _TEACHER_ORDER
        }
        parts = [
            m
            if ss is None or shown.get(m) is None or sorted(shown[m]) == sorted(ss)
            else f"{m} seed{'s' * (len(ss) > 1)} {', '.join(map(str, ss))}"
            for m, ss in made.items()
        ]
        whole = set(made) == set(shown) and parts == list(made)
        names.append(st if not shown or whole else f"{st} ({', '.join(parts)})")
    return ", ".join(names)


def temporal_kd_markdown(doc: dict[str, Any]) -> str:
    """``temporal_kd.md`` (or ``static_kd.md``) of a result document (what :func:`write_temporal_kd` writes;
    rewritable from the JSON)."""
    datasets = list(dict.fromkeys(r["dataset"] for r in doc["rows"]))
    filters = filter_protocol(filter_modes(doc["rows"], doc["protocol"].get("eval")))
    # a static benchmark (static-kd.yaml and the specs that extend it): every dataset a static graph
    kinds = {d: DATASET_INFO[d].kind if d in DATASET_INFO else None for d in datasets}
    static = doc.get("benchmark") == "static-kd" or set(kinds.values()) == {"static"}
    md = [
        "# Static KD benchmark: teacher -> small students, no KD vs BKD / FitNet / RKD"
        if static
        else "# Temporal KD benchmark: teacher -> small students, no KD vs BKD / FitNet / RKD / LLM-guided "
        "two-stage",
        "",
        *source_lines(doc),
        "",
        "Protocol: test split, filtered ranking (the standard filter: every known answer of train, valid and "
        "test removed); realistic ties, head and tail queries. MRR and Hits in percent, mean ± std over the "
        "seeds listed in the JSON."
        if static
        else _seed_protocol(doc, filters)
        if (doc["protocol"].get("data") or {}).get("resplit")
        else f"Protocol: test split, filtered ranking with the time-aware {filters}; realistic ties, head and "
        f"tail queries; intervals: {doc['protocol']['data']}. MRR and Hits in percent, mean ± std over the seeds "
        "listed in the JSON. The seed paper's own numbers (e.g. TA-DistMult + BKD, YAGO MRR 61.90) come from an "
        "unstated protocol far from the literature's (published TA-DistMult on YAGO11k: 15.5-16.1): compare "
        "methods within this table, not with those numbers.",
        "",
        seed_table(doc["rows"], datasets),
        *_other_teachers(doc),
        "## Size and speed",
        "",
        "Latency: one query scored against all entities plus top-10, CPU, 1 thread, median of 200, timed by the "
        "call that made the row's first seed; `train s`: the mean over the row's seeds of each run's training "
        "seconds (its epochs' times summed, over every try of a resumed run), on the machines of the calls "
        "listed above: rows made on different machines compare only roughly.",
        "",
        _size_table(doc["rows"]),
        *_searches(doc),
        "## Goals",
        "",
        _goals(doc["goals"]),
    ]
    return "\n".join(md)


def _other_teachers(doc: dict[str, Any]) -> list[str]:
    """A note under the table naming the runs distilled from another run of the teacher's config than the
    teacher row (their teacher's test MRR then, the row's now)."""
    lines = []
    for ds, g in doc["goals"].items():
        runs = g.get("other_teacher_runs") or []
        if runs:
            named = ", ".join(
                f"{r['student']} {r['method']} seed {r['seed']} ({r['teacher_mrr']:.2f})"
                for r in runs
            )
            lines.append(
                f"- {ds}: distilled from another run of the teacher's config (its test MRR then): {named}; "
                f"the teacher row: {g['teacher_mrr']:.2f}"
            )
    return [*lines, ""] if lines else []


def _searches(doc: dict[str, Any]) -> list[str]:
    """The validation searches that chose each cell's values (a spec with ``search``), as a section."""
    rows = doc.get("searches") or []
    if not rows:
        return []
    s = doc.get("search") or {}
    frame = pd.DataFrame(
        [
            {
                "dataset": r["dataset"],
                "student": r["student"],
                "method": r["method"],
                "trials (complete / pruned / diverged)": f"{r['complete']} / {r['pruned']} / "
                f"{r['diverged']}",
                "best valid MRR": round(r["best_valid_mrr"], 2),
                "chosen": ", ".join(
                    f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                    for k, v in r["params"].items()
                ),
                "search s": round(r["seconds"]),
            }
            for r in rows
        ]
    )
    return [
        "## Searches on validation",
        "",
        f"Each cell's values were chosen by an Optuna search of {s.get('trials')} trials on the validation "
        f"split (sampler {s.get('sampler')}, pruner {s.get('pruner')}); the test split was evaluated only by "
        "the runs of the tables above, once per seed. A stage's epochs are the chosen share of the student's "
        "epochs."
        + "".join(
            f" The search of {r['dataset']} {r['student']} {r['method']} started at given values (spec "
            f"`start`, {len(r['start'])} of its trials); its best is trial {r['best_trial']}"
            f"{' (a start)' if r['best_trial'] < len(r['start']) else ''}."
            for r in rows
            if r.get("start")
        ),
        "",
        frame.to_markdown(index=False),
        "",
    ]


def _seed_protocol(doc: dict[str, Any], filters: str) -> str:
    """The protocol line of a table under the seed-like protocol (``data.resplit``), never the standard one."""
    r = doc["protocol"]["data"]["resplit"]
    return (
        "Protocol: **not the standard split.** The seed paper does not state its protocol; this table uses the "
        "closest setting that can be inferred (`data.resplit`): the facts of train, valid and test pooled, "
        f"every interval expanded into one fact per year (expand: {r.get('expand', 'year')}), then a random "
        f"split ({r.get('valid', 0.1):g} valid, {r.get('test', 0.1):g} test, seed {r.get('seed', 0)}), so the "
        "neighbouring years of a test fact sit in train. Test split, filtered ranking with the time-aware "
        f"{filters}; realistic ties, head and tail queries; data: {doc['protocol']['data']}. MRR and Hits in "
        "percent, mean ± std over the seeds listed in the JSON. Its numbers are comparable with the seed's "
        "table (e.g. TA-DistMult + BKD, YAGO MRR 61.90), never with the standard table "
        "(`temporal_kd.md`)."
    )


def write_temporal_kd(doc: dict[str, Any], out: Path) -> None:
    """``<benchmark>.json`` / ``.csv`` / ``.md`` / ``.png`` in ``out`` (``temporal_kd.*``, ``static_kd.*``)."""
    out.mkdir(parents=True, exist_ok=True)
    stem = str(doc.get("benchmark", "temporal-kd")).replace("-", "_")
    datasets = list(dict.fromkeys(r["dataset"] for r in doc["rows"]))
    atomic_write_text(out / f"{stem}.json", json.dumps(doc, indent=2) + "\n")
    atomic_write_text(out / f"{stem}.csv", pd.DataFrame(doc["rows"]).to_csv(index=False))
    atomic_write_text(out / f"{stem}.md", temporal_kd_markdown(doc))
    _plot(doc["rows"], datasets, out / f"{stem}.png")
