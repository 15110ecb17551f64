"""Result files of the multi-source benchmark: JSON, markdown tables and time-to-MRR curves."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from _tables import fmt_or_dash as _f
from _tables import source_lines
from kgdistill.io import atomic_write_text

__all__ = ["multisource_table", "write_multisource"]


def multisource_table(
    rows: list[dict[str, Any]], on_target: list[dict[str, Any]] | None = None
) -> str:
    """Markdown: one row per (pair, target, method): test MRR / Hits in percent, the share of the teacher's MRR
    on the target kept, and time to scratch's best; the teacher's own row on each target first."""
    lines = [
        "| pair | target | method | MRR | H@1 | H@3 | H@10 | MR | MRR / teacher's | params | train s | cache s "
        "| epochs to scratch best | s to scratch best | time / scratch's |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    shown: set[tuple[str, str]] = set()
    for r in rows:
        key = (r["pair"], r["target"])
        t = next((t for t in on_target or [] if (t["pair"], t["target"]) == key), None)
        if t is not None and key not in shown:
            lines.append(
                f"| {t['pair']} | {t['target']} | teacher (union) | {t['mrr']:.2f} | {t['hits1']:.2f} | "
                f"{t['hits3']:.2f} | {t['hits10']:.2f} | {t['mr']:.1f} | 1.00 | - | - | - | - | - | - |"
            )
        shown.add(key)
        lines.append(
            f"| {r['pair']} | {r['target']} | {r['method']} | {r['mrr']:.2f} | {r['hits1']:.2f} | "
            f"{r['hits3']:.2f} | {r['hits10']:.2f} | {r['mr']:.1f} | {_f(r.get('teacher_retention'))} | "
            f"{r['params']:,} | {_f(r['train_s'], '{:.0f}')} | {_f(r.get('cache_s'), '{:.0f}')} | "
            f"{_f(r.get('epochs_to_scratch_best'), '{}')} | {_f(r.get('seconds_to_scratch_best'), '{:.0f}')} | "
            f"{_f(r.get('time_ratio'), '{:.2f}')} |"
        )
    return "\n".join(lines) + "\n"


def _teachers(doc: dict[str, Any]) -> str:
    lines = [
        "| pair | teacher | params | union test MRR | H@10 | train s | targets served | teacher s per target "
        "| mean s of an `all` student | mean s of a scratch student |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for t, u in zip(doc["teachers"], doc["teacher_reuse"], strict=True):
        lines.append(
            f"| {t['pair']} | {doc['protocol']['teacher']} | {t['params']:,} | {t['mrr']:.2f} | {t['hits10']:.2f} | "
            f"{_f(t['train_s'], '{:.0f}')} | {', '.join(u['targets_served']) or '-'} | "
            f"{_f(u['teacher_s_per_target'], '{:.0f}')} | {_f(u['all_student_train_s_mean'], '{:.0f}')} | "
            f"{_f(u['scratch_train_s_mean'], '{:.0f}')} |"
        )
    return "\n".join(lines) + "\n"


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
