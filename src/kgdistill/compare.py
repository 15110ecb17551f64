"""Several finished runs side by side: ``kgdistill compare RUN...``.

Each run folder is read as a run leaves it (``metrics.json``, ``config.yaml``, ``log.jsonl``; nothing is loaded
into a model, so no PyTorch import): its dataset, model and size, the protocol its numbers were measured under
(split, filter, ties), test MRR and Hits@1 / Hits@10, training time and epochs, and for a distillation run the
student's share of each teacher's MRR and parameters (``metrics.json`` ``retention``). :func:`comparison_table`
prints one table (MRR and Hits in percent, as every kgdistill table), :func:`plot_comparison` draws the test MRR
per run and the validation MRR against training time from each ``log.jsonl``.

>>> runs = read_runs(["runs/teacher", "runs/student"])   # doctest: +SKIP
>>> print(comparison_table(runs))                         # doctest: +SKIP
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kgdistill.errors import KGDistillError

__all__ = [
    "COLUMNS",
    "RunSummary",
    "comparison_frame",
    "comparison_table",
    "filter_label",
    "plot_comparison",
    "read_run",
    "read_runs",
]

#: the table's columns, in order
COLUMNS = (
    "run",
    "dataset",
    "model",
    "params",
    "protocol",
    "MRR",
    "H@1",
    "H@10",
    "train s",
    "epochs",
    "retention",
)


def filter_label(protocol: Mapping[str, Any]) -> str:
    """The filter of a metrics protocol in a few words: ``static``, ``none``, or ``time-aware (MODE)`` naming the
    :attr:`~kgdistill.data.filters.FilterIndex.mode` (``point``, ``interval``, ``timestamp``) of a temporal one."""
    kind, mode = str(protocol.get("filter", "?")), protocol.get("filter_mode")
    return f"{kind} ({mode})" if kind == "time-aware" and mode else kind


@dataclass(frozen=True)
class RunSummary:
    """What the comparison shows of one finished run (metrics as fractions, as in ``metrics.json``).

    Attributes:
        name: the folder's name (its path when two runs share a name). path: the folder as given.
        split / filter / ties: the protocol of ``mrr``, ``hits1`` and ``hits10`` (both directions).
        retention: teacher name -> the student's ``mrr_share`` and ``parameter_share`` (distillation runs).
        valid_curve: ``(training seconds so far, validation MRR)`` at each validation of ``log.jsonl``.
    """

    name: str
    path: str
    dataset: str
    model: str
    dim: int | None
    num_parameters: int | None
    split: str
    filter: str
    ties: str
    mrr: float
    hits1: float | None
    hits10: float | None
    train_seconds: float | None
    epochs: int | None
    best_epoch: int | None
    retention: dict[str, dict[str, float]] = field(default_factory=dict)
    valid_curve: list[tuple[float, float]] = field(default_factory=list)

    @property
    def model_label(self) -> str:
        """``tntcomplex-64`` (the model and its ``dim``)."""
        return f"{self.model}-{self.dim}" if self.dim is not None else self.model

    def to_dict(self) -> dict[str, Any]:
        """The summary as JSON-ready data (the validation curve as ``[seconds, mrr]`` pairs)."""
        out = asdict(self)
        out["valid_curve"] = [list(p) for p in self.valid_curve]
        return out


def _problem(run: Path) -> str | None:
    """Why ``run`` cannot be compared (``None``: it holds a finished run)."""
    if not run.exists():
        return f"{run} does not exist"
    if not run.is_dir():
        return f"{run} is not a run folder (a file)"
    if (run / "metrics.json").is_file():
        return None
    if (run / "last.safetensors").is_file():
        return f"{run} has not finished (no metrics.json yet; continue it with kgdistill train --resume {run})"
    if (run / "config.yaml").is_file():
        return f"{run} has not finished (no checkpoint and no metrics.json)"
    return f"{run} is not a run folder (no metrics.json or config.yaml)"


def _valid_curve(log: Path) -> list[tuple[float, float]]:
    """``(training seconds so far, validation MRR)`` at each validation of a ``log.jsonl``."""
    if not log.is_file():
        return []
    seconds, curve = 0.0, []
    for line in log.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by a kill: the run resumed past it
        if record.get("event") == "epoch":
            seconds += float(record.get("seconds") or 0.0)
        elif record.get("event") == "valid" and "mrr" in record:
            curve.append((round(seconds, 3), float(record["mrr"])))
    return curve


def read_run(run: str | Path, name: str | None = None) -> RunSummary:
    """The summary of one finished run folder.

    Raises:
        KGDistillError: the folder does not exist, has not finished, or its ``metrics.json`` is unreadable.
    """
    path = Path(run)
    problem = _problem(path)
    if problem is not None:
        raise KGDistillError(problem)
    try:
        metrics = json.loads((path / "metrics.json").read_text(encoding="utf-8"))
        both = metrics["sides"]["both"]
        protocol = metrics["protocol"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise KGDistillError(
            f"{path / 'metrics.json'}: not a kgdistill metrics file ({e})"
        ) from None
    cfg_path = path / "config.yaml"
    cfg = yaml.safe_load(cfg_path.read_text(encoding="utf-8")) if cfg_path.is_file() else {}
    model_cfg = (cfg or {}).get("model") or {}
    return RunSummary(
        name=name or path.name,
        path=str(run),
        dataset=str(metrics.get("dataset", "?")),
        model=str(metrics.get("model") or model_cfg.get("name", "?")),
        dim=model_cfg.get("dim"),
        num_parameters=metrics.get("num_parameters"),
        split=str(protocol.get("split", "?")),
        filter=filter_label(protocol),
        ties=str(protocol.get("ties", "?")),
        mrr=float(both["mrr"]),
        hits1=both.get("hits@1"),
        hits10=both.get("hits@10"),
        train_seconds=metrics.get("train_seconds"),
        epochs=metrics.get("epochs"),
        best_epoch=metrics.get("best_epoch"),
        retention=dict(metrics.get("retention") or {}),
        valid_curve=_valid_curve(path / "log.jsonl"),
    )


def read_runs(runs: Sequence[str | Path]) -> list[RunSummary]:
    """The summaries of several run folders, in the order given.

    Raises:
        KGDistillError: one message naming every folder that does not exist or has not finished.
    """
    if not runs:
        raise KGDistillError("give at least one run folder")
    problems = [p for p in (_problem(Path(r)) for r in runs) if p is not None]
    if problems:
        raise KGDistillError("cannot compare: " + "; ".join(problems))
    names = [Path(r).name for r in runs]
    return [read_run(r, name=str(r) if names.count(Path(r).name) > 1 else None) for r in runs]


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.2f}"


def _retention(r: RunSummary) -> str:
    """``kge: 86.1% of its MRR with 6.0% of its parameters`` per teacher, ``-`` for a run without teachers."""
    parts = [
        f"{name}: {v['mrr_share']:.1%} of its MRR with {v['parameter_share']:.1%} of its parameters"
        for name, v in r.retention.items()
    ]
    return "; ".join(parts) or "-"


def comparison_frame(runs: Sequence[RunSummary]) -> Any:
    """The comparison as a :class:`pandas.DataFrame` of display texts, one row per run (:data:`COLUMNS`)."""
    import pandas as pd

    rows = [
        {
            "run": r.name,
            "dataset": r.dataset,
            "model": r.model_label,
            "params": "-" if r.num_parameters is None else f"{r.num_parameters:,}",
            "protocol": f"{r.split}, {r.filter} filter, {r.ties} ties",
            "MRR": _percent(r.mrr),
            "H@1": _percent(r.hits1),
            "H@10": _percent(r.hits10),
            "train s": "-" if r.train_seconds is None else f"{r.train_seconds:.1f}",
            "epochs": "-" if r.epochs is None else str(r.epochs),
            "retention": _retention(r),
        }
        for r in runs
    ]
    return pd.DataFrame(rows, columns=list(COLUMNS), dtype=object)


def comparison_table(runs: Sequence[RunSummary], *, markdown: bool | None = None) -> str:
    """The comparison as text: a Markdown table (``tabulate``) or, without ``tabulate``, pandas' plain layout.

    Args:
        markdown: force (``True``) or avoid (``False``) the Markdown layout; default: Markdown when
            ``tabulate`` is installed.
    """
    frame = comparison_frame(runs)
    if markdown is None:
        markdown = importlib.util.find_spec("tabulate") is not None
    if markdown:
        numbers = {"params", "MRR", "H@1", "H@10", "train s", "epochs"}
        align = ["right" if c in numbers else "left" for c in frame.columns]
        return str(frame.to_markdown(index=False, disable_numparse=True, colalign=align)) + "\n"
    return str(frame.to_string(index=False)) + "\n"


def plot_comparison(runs: Sequence[RunSummary], path: str | Path) -> Path:
    """Draw the runs into ``path`` (any format matplotlib writes: png, pdf, svg): test MRR per run (bars) and,
    beside it, validation MRR against training seconds from each ``log.jsonl``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    fig, (bars, curves) = plt.subplots(1, 2, figsize=(11, 4))
    names = [r.name for r in runs]
    values = [r.mrr * 100 for r in runs]
    bars.bar(range(len(runs)), values, color="tab:blue")
    bars.set_xticks(range(len(runs)), names, rotation=30, ha="right", fontsize=8)
    for i, v in enumerate(values):
        bars.annotate(f"{v:.2f}", (i, v), textcoords="offset points", xytext=(0, 2), ha="center")
    bars.set_ylabel("MRR (%)")
    splits = sorted({r.split for r in runs})
    bars.set_title(f"{'/'.join(splits)} MRR per run", fontsize=10)
    bars.set_ylim(0, max([*values, 1.0]) * 1.15)
    for r in runs:
        if r.valid_curve:
            xs, ys = zip(*r.valid_curve, strict=True)
            curves.plot(xs, [y * 100 for y in ys], "o-", label=r.name, markersize=3)
    curves.set_xlabel("training seconds")
    curves.set_ylabel("valid MRR (%)")
    curves.set_ylim(bottom=0)
    curves.set_title("validation MRR over training time", fontsize=10)
    if any(r.valid_curve for r in runs):
        curves.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
