"""Tables and plots of a run: ``metrics.md`` (the paper layout, percent) and ``curves.png``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["metrics_table", "plot_curves"]


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


def plot_curves(records: Sequence[Mapping[str, Any]], path: Path) -> None:
    """Training loss and validation MRR against epochs, from ``log.jsonl`` records."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r for r in records if r.get("event") == "epoch"]
    valid = [r for r in records if r.get("event") == "valid"]
    fig, ax1 = plt.subplots(figsize=(6, 3.5))
    ax1.plot(
        [r["epoch"] for r in epochs],
        [r["loss"] for r in epochs],
        color="tab:blue",
        label="train loss",
    )
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("train loss", color="tab:blue")
    if valid:
        ax2 = ax1.twinx()
        ax2.plot(
            [r["epoch"] for r in valid], [r["mrr"] * 100 for r in valid], "o-", color="tab:red"
        )
        ax2.set_ylabel("valid MRR (%)", color="tab:red")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
