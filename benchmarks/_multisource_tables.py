"""Result files of the multi-source benchmark: JSON, markdown tables and time-to-MRR curves."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from _common import markdown_table
from _tables import fmt_or_dash as _f
from _tables import source_lines
from kgdistill.io import atomic_write_text

__all__ = ["multisource_table", "write_multisource"]


#: the columns of the table of students, in order
_COLUMNS = (
    "pair",
    "target",
    "method",
    "MRR",
    "H@1",
    "H@3",
    "H@10",
    "MR",
    "MRR / teacher's",
    "params",
    "train s",
    "cache s",
    "epochs to scratch best",
    "s to scratch best",
    "time / scratch's",
)
#: the columns of the teachers' table, in order
_TEACHER_COLUMNS = (
    "pair",
    "teacher",
    "params",
    "union test MRR",
    "H@10",
    "train s",
    "targets served",
    "teacher s per target",
    "mean s of an `all` student",
    "mean s of a scratch student",
)


def multisource_table(
    rows: list[dict[str, Any]], on_target: list[dict[str, Any]] | None = None
) -> str:
    """Markdown: one row per (pair, target, method): test MRR / Hits in percent, the share of the teacher's MRR
    on the target kept, and time to scratch's best; the teacher's own row on each target first."""
    lines: list[dict[str, str]] = []
    shown: set[tuple[str, str]] = set()
    for r in rows:
        key = (r["pair"], r["target"])
        t = next((t for t in on_target or [] if (t["pair"], t["target"]) == key), None)
        if t is not None and key not in shown:
            lines.append(_teacher_on_target_row(t))
        shown.add(key)
        lines.append(_student_row(r))
    return markdown_table(lines, _COLUMNS)


def _metrics(r: dict[str, Any]) -> dict[str, str]:
    """The pair, target, test MRR / Hits (in percent) and MR cells of a row of the table of students."""
    return {
        "pair": str(r["pair"]),
        "target": str(r["target"]),
        "MRR": f"{r['mrr']:.2f}",
        "H@1": f"{r['hits1']:.2f}",
        "H@3": f"{r['hits3']:.2f}",
        "H@10": f"{r['hits10']:.2f}",
        "MR": f"{r['mr']:.1f}",
    }


def _teacher_on_target_row(t: dict[str, Any]) -> dict[str, str]:
    """The joint teacher ranked on a target's test split: the other cells ``-``, its own share 1.00."""
    return (
        dict.fromkeys(_COLUMNS, "-")
        | _metrics(t)
        | {
            "method": "teacher (union)",
            "MRR / teacher's": "1.00",
        }
    )


def _student_row(r: dict[str, Any]) -> dict[str, str]:
    """A student's row of the table: its metrics, the share of the teacher's MRR kept, its cost."""
    return _metrics(r) | {
        "method": str(r["method"]),
        "MRR / teacher's": _f(r.get("teacher_retention")),
        "params": f"{r['params']:,}",
        "train s": _f(r["train_s"], "{:.0f}"),
        "cache s": _f(r.get("cache_s"), "{:.0f}"),
        "epochs to scratch best": _f(r.get("epochs_to_scratch_best"), "{}"),
        "s to scratch best": _f(r.get("seconds_to_scratch_best"), "{:.0f}"),
        "time / scratch's": _f(r.get("time_ratio"), "{:.2f}"),
    }


def _teachers(doc: dict[str, Any]) -> str:
    """Markdown: one row per pair's joint teacher: its quality, one-off cost and the targets it served."""
    teacher = str(doc["protocol"]["teacher"])
    lines = [
        _teacher_row(t, u, teacher)
        for t, u in zip(doc["teachers"], doc["teacher_reuse"], strict=True)
    ]
    return markdown_table(lines, _TEACHER_COLUMNS)


def _teacher_row(t: dict[str, Any], u: dict[str, Any], teacher: str) -> dict[str, str]:
    """A pair's teacher ``t`` (model ``teacher``) and its reuse ``u``: a row of the teachers' table."""
    return {
        "pair": str(t["pair"]),
        "teacher": teacher,
        "params": f"{t['params']:,}",
        "union test MRR": f"{t['mrr']:.2f}",
        "H@10": f"{t['hits10']:.2f}",
        "train s": _f(t["train_s"], "{:.0f}"),
        "targets served": ", ".join(u["targets_served"]) or "-",
        "teacher s per target": _f(u["teacher_s_per_target"], "{:.0f}"),
        "mean s of an `all` student": _f(u["all_student_train_s_mean"], "{:.0f}"),
        "mean s of a scratch student": _f(u["scratch_train_s_mean"], "{:.0f}"),
    }


def _goals(goals: dict[str, Any]) -> str:
    out = []
    for key, g in goals.items():
        ratio = g["time_ratio"]
        out.append(
            f"- {key}: all three levels {'beat' if g['all_beats_scratch'] else 'do not beat'} from-scratch in test "
            f"MRR ({g['all_mrr']:.2f} vs {g['scratch_mrr']:.2f}); "
            + (
                "never reach scratch's best validation MRR"
                if ratio is None
                else f"reach scratch's best validation MRR in {ratio:.2f} of scratch's time "
                + (
                    f"(epoch {g['epochs']} against scratch's {g['scratch_epochs']}; "
                    if g.get("epochs") is not None
                    else "("
                )
                + f"{'meets' if g['reaches_scratch_best_in_half_the_time'] else 'misses'} the < 0.5 goal)"
            )
        )
    return "\n".join(out) + "\n"


def _plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = list(dict.fromkeys((r["pair"], r["target"]) for r in rows))
    if not panels:
        return
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.8), squeeze=False)
    for ax, (pair, target) in zip(axes[0], panels, strict=True):
        for r in (r for r in rows if (r["pair"], r["target"]) == (pair, target)):
            if r["curve"]:
                _, secs, mrr = zip(*r["curve"], strict=True)
                ax.plot(secs, [m * 100 for m in mrr], marker=".", label=r["method"])
            if r["method"] == "scratch" and r.get("scratch_best_valid_mrr"):
                ax.axhline(
                    r["scratch_best_valid_mrr"] * 100, color="grey", linestyle=":", linewidth=1
                )
        ax.set_xlabel("training seconds")
        ax.set_ylabel("valid MRR (%)")
        ax.set_title(f"{pair}: target {target}")
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_multisource(doc: dict[str, Any], out: Path) -> None:
    """``multisource.json`` / ``.md`` / ``.png`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "multisource.json", json.dumps(doc, indent=2) + "\n")
    p = doc["protocol"]
    md = [
        "# Multi-source benchmark: joint pre-training once, local re-training per target",
        "",
        *source_lines(doc),
        "",
        f"Protocol: every graph split {p['split']} (kgdistill.multi.split: valid/test entities and relations occur "
        f"in train); filtered ranking on the target's own test split, realistic ties, head and tail queries; MRR "
        f"and Hits in percent. Teacher {p['teacher']} on the union (aligned entities tied); students {p['student']}. "
        f"`scratch`: the target alone; the other methods add the linked subgraph (source triples within "
        f"{p['hops']} hops of aligned entities). Time to scratch's best: training seconds (validation excluded, "
        "teacher forward passes included) until the validation MRR first reaches the from-scratch student's best; "
        "a student that reads a cache of the teacher's top-k scores (`cache s`, written once per target) starts "
        "its clock with the cache's seconds. `teacher (union)`: the joint teacher ranked on the target's test "
        "split; `MRR / teacher's`: the share of it a student keeps.",
        "",
        multisource_table(doc["rows"], doc.get("teacher_on_target")),
        "## Teacher: one-off cost and reuse",
        "",
        _teachers(doc),
        "## Goals",
        "",
        _goals(doc["goals"]),
    ]
    atomic_write_text(out / "multisource.md", "\n".join(md))
    _plot(doc["rows"], out / "multisource.png")
