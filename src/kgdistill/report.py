"""Tables and plots of a run: ``metrics.md`` (the paper layout, percent) and ``curves.png``."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["breakdown_tables", "metrics_table", "plot_curves"]


def metrics_table(sides: Mapping[str, Mapping[str, float]], *, title: str = "") -> str:
    """Markdown table (pandas) with MRR and Hits@k in percent and MR as is, one row per side."""
    import pandas as pd

    df = pd.DataFrame.from_dict({k: dict(v) for k, v in sides.items()}, orient="index")
    hits = [k for k in df.columns if k.startswith("hits@")]
    table = pd.DataFrame(
        {
            "MRR": df["mrr"] * 100,
            "MR": df["mr"],
            **{k.replace("hits@", "H@"): df[k] * 100 for k in hits},
        }
    )
    table.index.name = "side"
    body = table.to_markdown(floatfmt=".2f")
    return "\n".join(([f"### {title}", ""] if title else []) + [body]) + "\n"


def _breakdown_frame(groups: Mapping[str, Mapping[str, Any]], first: Sequence[str]) -> Any:
    """One row per group: its descriptive columns ``first``, then MRR / Hits@k of both sides (percent) and
    the tail and head MRR."""
    import pandas as pd

    rows = {}
    for name, g in groups.items():
        both = g["both"]
        row: dict[str, Any] = {c: g[c] for c in first}
        row["facts"] = g["facts"]
        row["MRR"] = both["mrr"] * 100
        row.update({k.replace("hits@", "H@"): v * 100 for k, v in both.items() if "@" in k})
        row["tail MRR"] = g["tail"]["mrr"] * 100
        row["head MRR"] = g["head"]["mrr"] * 100
        rows[name] = row
    df = pd.DataFrame.from_dict(rows, orient="index")
    counts = [c for c in ("relations", "facts") if c in df.columns]
    return df.astype({c: int for c in counts})


def breakdown_tables(breakdown: Mapping[str, Any], *, title: str = "") -> str:
    """Markdown tables of :func:`kgdistill.breakdown.breakdown`: one row per relation category, then one per
    relation (most facts first); MRR and Hits@k of both directions in percent, tail and head MRR."""
    cats = _breakdown_frame(breakdown["categories"], ["relations"])
    cats.index.name = "category"
    rels = _breakdown_frame(breakdown["relations"], ["category", "tph", "hpt"])
    rels = rels.sort_values("facts", ascending=False, kind="stable")
    rels.index.name = "relation"
    parts = [f"### {title}", ""] if title else []
    parts += [cats.to_markdown(floatfmt=".2f"), "", rels.to_markdown(floatfmt=".2f")]
    return "\n".join(parts) + "\n"


def plot_curves(records: Sequence[Mapping[str, Any]], path: Path, *, title: str = "") -> None:
    """Training loss and validation MRR against epochs, from ``log.jsonl`` records.

    The MRR axis starts at 0 (so noise of a few hundredths of a point does not look like swings), the best
    validation is marked and labelled, and stage boundaries are drawn.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r for r in records if r.get("event") == "epoch"]
    valid = [r for r in records if r.get("event") == "valid"]
    fig, ax1 = plt.subplots(figsize=(6.5, 3.8))
    ax1.plot([r["epoch"] for r in epochs], [r["loss"] for r in epochs], color="tab:blue")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("train loss", color="tab:blue")
    for prev, cur in itertools.pairwise(epochs):
        if cur.get("stage") != prev.get("stage"):
            ax1.axvline(prev["epoch"] + 0.5, color="grey", linestyle=":", linewidth=1)
    if valid:
        ax2 = ax1.twinx()
        xs, ys = [r["epoch"] for r in valid], [r["mrr"] * 100 for r in valid]
        ax2.plot(xs, ys, "o-", color="tab:red")
        best = max(range(len(ys)), key=lambda i: ys[i])
        ax2.plot([xs[best]], [ys[best]], marker="*", markersize=16, color="gold", zorder=5)
        ax2.annotate(
            f"best {ys[best]:.2f} (epoch {xs[best]})",
            (xs[best], ys[best]),
            textcoords="offset points",
            xytext=(0, -16),
            ha="center",
            fontsize=8,
        )
        ax2.set_ylim(0, max(max(ys) * 1.15, 1.0))
        ax2.set_ylabel("valid MRR (%)", color="tab:red")
    ax1.set_title(title or "training loss and validation MRR", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
