"""The report of a search: ``tune.json`` (everything), ``tune.md`` (trials, best values, final runs) and
``tune.png`` (validation MRR by trial with the running best)."""

from __future__ import annotations

import json
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from kgdistill.io import atomic_write_text

__all__ = ["final_summary", "tune_markdown", "write_report"]

_KS = ("mrr", "hits@1", "hits@3", "hits@10")


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "-" if v is None else str(v)


def _stat(values: Sequence[float]) -> str:
    vals = [100 * v for v in values]
    if len(vals) == 1:
        return f"{vals[0]:.2f}"
    return f"{statistics.mean(vals):.2f} ± {statistics.stdev(vals):.2f}"


def _started(start: list[dict[str, Any]]) -> str:
    """The report's words on the values the first trials were given (none: an empty string)."""
    if not start:
        return ""
    values = "; ".join(format_values(s) for s in start)
    return f" The first {len(start)} trial(s) took the spec's start values: {values}."


def format_values(params: Mapping[str, Any]) -> str:
    """``name=value, ...`` of a trial's values (floats to 4 significant digits)."""
    return ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items()
    )


def _pruning(pruner: Mapping[str, Any] | None) -> str:
    if not pruner or pruner.get("name") == "none":
        return "no pruning"
    return (
        f"median pruning after {pruner['startup_trials']} trials and {pruner['warmup_epochs']} epochs of each "
        "(a trial below the earlier trials' median valid MRR at the same epoch stops there)"
    )


def _mrr(t: Mapping[str, Any]) -> str:
    """A trial's valid MRR x100; a pruned trial's best before it stopped, in parentheses."""
    if t["valid_mrr"] is not None:
        return f"{100 * t['valid_mrr']:.2f}"
    best = t.get("best_valid_so_far")
    return "-" if best is None else f"({100 * best:.2f})"


def final_summary(final: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """MRR and Hits of the final runs in percent, mean ± std over their seeds."""
    return {k: _stat([r["metrics"][k] for r in final]) for k in _KS}


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    import pandas as pd

    frame = pd.DataFrame([[_cell(v) for v in r] for r in rows], columns=list(header), dtype=object)
    return [frame.to_markdown(index=False, disable_numparse=True), ""]


def tune_markdown(doc: Mapping[str, Any]) -> str:
    """The search's Markdown report."""
    trials = doc["trials"]
    names = list(doc["space"])
    seconds = sum(t.get("seconds") or 0 for t in trials)
    best = doc["best"]
    m = doc.get("machine") or {}
    lines = [
        f"# Search: {doc['spec']} (base `{doc['base']}`)",
        "",
        *([f"`{doc['command']}`", ""] if doc.get("command") else []),
        *(
            [
                f"Machine: {m['cpu']}, {m['threads']} threads, CUDA {m['cuda'] or 'none'}, torch "
                f"{m['torch']}; {m['date']}.",
                "",
            ]
            if m
            else []
        ),
        f"Budget: {doc['budget']} trials ({sum(t['state'] == 'complete' for t in trials)} completed, "
        f"{sum(t['state'] == 'pruned' for t in trials)} pruned, "
        f"{sum(t['state'] == 'diverged' for t in trials)} diverged), {seconds / 60:.1f} min in "
        f"all (training, validation and evaluation); sampler {doc['sampler']['name']} (seed {doc['sampler']['seed']}, "
        f"{doc['sampler']['startup_trials']} random trials first); {_pruning(doc.get('pruner'))}. Trials are "
        "ranked by their best validation MRR; the test split is not evaluated during the search."
        + _started(doc.get("start") or []),
        "",
        "## Space",
        "",
        *_table(
            ["name", "config key", "range"],
            [
                [
                    n,
                    s["path"] if isinstance(s["path"], str) else ", ".join(s["path"]),
                    json.dumps({k: v for k, v in s.items() if k != "path"}),
                ]
                for n, s in doc["space"].items()
            ],
        ),
        "## Trials (valid MRR x100)",
        "",
        *_table(
            ["trial", *names, "valid MRR", "best / trained epochs", "seconds", "state"],
            [
                [
                    f"**{t['number']}**" if t["number"] == best["number"] else t["number"],
                    *[t["params"].get(n) for n in names],
                    _mrr(t),
                    f"{t.get('best_epoch')}/{t.get('epochs')}"
                    if t["state"] == "complete"
                    else f"stopped at {t.get('last_epoch')}",
                    "-" if t.get("seconds") is None else round(t["seconds"]),
                    t["state"],
                ]
                for t in trials
            ],
        ),
        f"Best: trial {best['number']}, valid MRR {100 * best['valid_mrr']:.2f}: "
        + ", ".join(f"`{n}` = {_cell(best['params'][n])}" for n in names),
        "",
    ]
    if doc.get("importances"):
        lines += [
            "Importance of each parameter for the validation MRR (fANOVA): "
            + ", ".join(f"{k} {v:.2f}" for k, v in doc["importances"].items()),
            "",
        ]
    final = doc.get("final") or []
    if final:
        split = final[0]["split"]
        protocol = final[0]["protocol"]
        lines += [
            f"## The best config on the {split} split",
            "",
            f"Protocol: filter `{protocol.get('filter_mode', protocol.get('filter'))}`, ties "
            f"`{protocol.get('ties')}`, {protocol.get('directions', '')}. Percent.",
            "",
            *_table(
                ["seed", "valid MRR", f"{split} MRR", "H@1", "H@3", "H@10", "epochs", "train s"],
                [
                    [
                        r["seed"],
                        f"{100 * r['best_valid_mrr']:.2f}",
                        *[f"{100 * r['metrics'][k]:.2f}" for k in _KS],
                        f"{r['best_epoch']}/{r['epochs']}",
                        round(r["train_seconds"] or 0),
                    ]
                    for r in final
                ],
            ),
        ]
        if len(final) > 1:
            s = final_summary(final)
            lines += [
                f"Mean ± std over {len(final)} seeds: MRR {s['mrr']}, H@1 {s['hits@1']}, "
                f"H@3 {s['hits@3']}, H@10 {s['hits@10']}.",
                "",
            ]
    return "\n".join(lines)


def _plot(doc: Mapping[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [t for t in doc["trials"] if t["valid_mrr"] is not None]
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    xs = [t["number"] for t in done]
    ys = [100 * t["valid_mrr"] for t in done]
    ax.plot(xs, ys, "o", color="tab:blue", label="trial")
    running, best = [], float("-inf")
    for y in ys:
        best = max(best, y)
        running.append(best)
    ax.step(xs, running, where="post", color="tab:red", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel("valid MRR (x100)")
    ax.set_title(f"{doc['spec']}", fontsize=10)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(out: Path, doc: Mapping[str, Any], stem: str = "tune") -> None:
    """Write ``<stem>.json``, ``<stem>.md`` and ``<stem>.png`` into ``out`` (atomic writes)."""
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / f"{stem}.json", json.dumps(doc, indent=2) + "\n")
    atomic_write_text(out / f"{stem}.md", tune_markdown(doc))
    if any(t["valid_mrr"] is not None for t in doc["trials"]):
        _plot(doc, out / f"{stem}.png")
