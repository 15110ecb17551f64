"""``kgdistill benchmark multisource``: joint pre-training once, local re-training for every target.

For every linked collection (DBP15K pair): one teacher is pre-trained on the union of its graphs (run folder
``<work>/<pair>/teacher``), then for each graph as the target a small student is trained from scratch on the
target alone, and re-trained on the target plus its linked subgraph without a teacher (``subgraph``), with each
distillation level alone (``feature``, ``network``, ``prediction``) and with all three (``all``). Every run is an
ordinary run folder, reused when finished and resumed when interrupted.

Time-to-quality is read from each student's ``log.jsonl`` (validation after every epoch): the epochs and training
seconds (the sum of the epochs' wall times, validation excluded, teacher forward passes included) until the
validation MRR first reaches the from-scratch student's best validation MRR. Results:
``multisource.{json,md,png}`` in ``--out``.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Sequence
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml

from kgdistill.bench.runs import ensure_run, machine_info, run_command
from kgdistill.checkpoint import load_checkpoint
from kgdistill.errors import ConfigError
from kgdistill.multi.linked import LINKED

__all__ = ["curve", "run_multisource", "time_to"]

log = logging.getLogger(__name__)
_METRICS = {"mrr": "mrr", "mr": "mr", "hits1": "hits@1", "hits3": "hits@3", "hits10": "hits@10"}


def _spec(path: str | Path | None) -> dict[str, Any]:
    text = (
        Path(path).read_text()
        if path
        else (files("kgdistill") / "configs/bench/multisource.yaml").read_text()
    )
    return yaml.safe_load(text)


def curve(run_dir: Path) -> list[tuple[int, float, float]]:
    """``(epoch, training seconds so far, validation MRR)`` at every validation of a run's ``log.jsonl``."""
    seconds, out = 0.0, []
    for line in (run_dir / "log.jsonl").read_text().splitlines():
        event = json.loads(line)
        if event["event"] == "epoch":
            seconds += event["seconds"]
        elif event["event"] == "valid":
            out.append((event["epoch"], round(seconds, 3), event["mrr"]))
    return out


def time_to(
    points: list[tuple[int, float, float]], target: float
) -> tuple[int | None, float | None]:
    """Epoch and seconds at which validation MRR first reaches ``target`` (``None`` when never)."""
    for epoch, seconds, mrr in points:
        if mrr >= target:
            return epoch, seconds
    return None, None


def _graphs(pair: str, data_root: str | None) -> list[str]:
    key = pair.lower()
    if key in LINKED:
        a, b = key.removeprefix("dbp15k_").split("_")
        return [a, b]
    from kgdistill.multi import load_linked

    return list(load_linked(pair, root=data_root).graphs)


def _data(
    sp: dict[str, Any], pair: str, data_root: str | None, view: str, hops: Any
) -> dict[str, Any]:
    multi = {"view": view, **sp["split"]}
    if view == "union":
        multi["tie"] = sp["teacher"].get("tie", "shared")
    elif hops is not None:
        multi["hops"] = hops
    return {"name": pair, "root": data_root, "multi": multi}


def _teacher_config(
    sp: dict[str, Any], pair: str, data_root: str | None, epochs: int | None
) -> dict[str, Any]:
    t = copy.deepcopy(sp["teacher"])
    cfg = {
        "name": f"joint-{t['model']['name']}-{pair}",
        "seed": sp.get("seed", 0),
        "data": _data(sp, pair, data_root, "union", None),
        "model": t["model"],
        "stages": t["stages"],
        "train": {**t["train"], "progress": False},
        "eval": sp.get("eval", {}),
    }
    if epochs is not None:
        cfg["stages"][0]["epochs"] = epochs
    return cfg


def _student_config(
    sp: dict[str, Any],
    pair: str,
    target: str,
    method: str,
    data_root: str | None,
    teacher_dir: Path,
    epochs: int | None,
) -> dict[str, Any]:
    st, m = sp["student"], sp["methods"][method]
    objective = copy.deepcopy(sp["supervised"]) + copy.deepcopy(m["objective"])
    cfg: dict[str, Any] = {
        "name": f"{method}-{st['model']['name']}-{pair}-{target}",
        "seed": sp.get("seed", 0),
        "data": _data(sp, pair, data_root, target, sp.get("hops", 0) if m.get("linked") else None),
        "model": st["model"],
        "stages": [
            {"epochs": epochs if epochs is not None else st["epochs"], "objective": objective}
        ],
        "train": {**st["train"], "progress": False},
        "eval": sp.get("eval", {}),
    }
    used = {t["teacher"] for t in objective if "teacher" in t}
    if used:
        cfg["teachers"] = {
            n: {"name": "checkpoint", "path": str(teacher_dir)} for n in sorted(used)
        }
    return cfg


def _row(
    pair: str, target: str, method: str, metrics: dict[str, Any], run_dir: Path
) -> dict[str, Any]:
    both = metrics["sides"]["both"]
    ckpt = load_checkpoint(run_dir / "best.safetensors")
    return {
        "pair": pair,
        "target": target,
        "method": method,
        **{k: (both[v] * 100 if k != "mr" else both[v]) for k, v in _METRICS.items()},
        "params": ckpt.meta["num_parameters"],
        "train_s": metrics.get("train_seconds"),
        "best_epoch": metrics.get("best_epoch"),
        "run": str(run_dir),
    }


def run_multisource(
    *,
    spec: str | Path | None = None,
    pairs: Sequence[str] | None = None,
    targets: Sequence[str] | None = None,
    methods: Sequence[str] | None = None,
    epochs: int | None = None,
    teacher_epochs: int | None = None,
    work: str | Path = "benchmarks/work/multisource",
    out: str | Path = "benchmarks/results",
    data_root: str | None = None,
) -> dict[str, Any]:
    """Run the benchmark and write its result files; returns the JSON document written.

    Args:
        spec: a YAML benchmark spec (default: the packaged ``configs/bench/multisource.yaml``).
        pairs / targets / methods: subsets (targets are graph names such as ``zh`` and ``en``).
        epochs / teacher_epochs: override the students' / teacher's epochs (quick runs).
        work: folder of the run folders. out: folder of the result files.
    """
    from kgdistill.bench.multisource_tables import write_multisource

    sp = _spec(spec)
    pairs = list(pairs or sp["pairs"])
    methods = list(methods or sp["methods"])
    unknown = [m for m in methods if m not in sp["methods"]]
    if unknown:
        raise ConfigError(f"unknown method(s) {unknown}; the spec has {list(sp['methods'])}")
    if "scratch" not in methods:
        methods.insert(0, "scratch")  # time-to-quality is measured against it
    work, out = Path(work), Path(out)
    teachers: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    for pair in pairs:
        graphs = _graphs(pair, data_root)
        chosen = [g for g in graphs if not targets or g in targets]
        if not chosen:
            raise ConfigError(
                f"none of the targets {list(targets or [])} is a graph of {pair} ({graphs})"
            )
        t_dir = work / Path(pair).name / "teacher"
        t_metrics = ensure_run(_teacher_config(sp, pair, data_root, teacher_epochs), t_dir)
        teachers.append({**_row(pair, "union", "teacher", t_metrics, t_dir), "curve": curve(t_dir)})
        for target in chosen:
            for method in methods:
                cfg = _student_config(sp, pair, target, method, data_root, t_dir, epochs)
                run_dir = work / Path(pair).name / f"{target}-{method}"
                row = _row(pair, target, method, ensure_run(cfg, run_dir), run_dir)
                rows.append({**row, "curve": curve(run_dir)})
                write_multisource(_document(sp, teachers, rows), out)
    doc = _document(sp, teachers, rows)
    write_multisource(doc, out)
    return doc


def _document(
    sp: dict[str, Any], teachers: list[dict[str, Any]], rows: list[dict[str, Any]]
) -> dict[str, Any]:
    goals: dict[str, Any] = {}
    for row in rows:
        scratch = next(
            (
                r
                for r in rows
                if (r["pair"], r["target"], r["method"]) == (row["pair"], row["target"], "scratch")
            ),
            None,
        )
        if scratch is None or not scratch["curve"]:
            continue
        best = max(m for _, _, m in scratch["curve"])
        _, s_seconds = time_to(scratch["curve"], best)
        row["scratch_best_valid_mrr"] = best
        row["epochs_to_scratch_best"], row["seconds_to_scratch_best"] = time_to(row["curve"], best)
        row["time_ratio"] = (
            row["seconds_to_scratch_best"] / s_seconds
            if row["seconds_to_scratch_best"] is not None and s_seconds
            else None
        )
        if row["method"] == "all":
            goals[f"{row['pair']}:{row['target']}"] = {
                "all_mrr": row["mrr"],
                "scratch_mrr": scratch["mrr"],
                "all_beats_scratch": row["mrr"] > scratch["mrr"],
                "time_ratio": row["time_ratio"],
                "reaches_scratch_best_in_half_the_time": row["time_ratio"] is not None
                and row["time_ratio"] < 0.5,
            }
    reuse = []
    for t in teachers:
        served = [r for r in rows if r["pair"] == t["pair"] and r["method"] != "scratch"]
        targets = sorted({r["target"] for r in served})
        student_s = [r["train_s"] for r in served if r["method"] == "all" and r["train_s"]]
        scratch_s = [
            r["train_s"]
            for r in rows
            if r["pair"] == t["pair"] and r["method"] == "scratch" and r["train_s"]
        ]
        reuse.append(
            {
                "pair": t["pair"],
                "teacher_train_s": t["train_s"],
                "targets_served": targets,
                "teacher_s_per_target": t["train_s"] / len(targets)
                if targets and t["train_s"]
                else None,
                "all_student_train_s_mean": sum(student_s) / len(student_s) if student_s else None,
                "scratch_train_s_mean": sum(scratch_s) / len(scratch_s) if scratch_s else None,
            }
        )
    return {
        "benchmark": "multisource",
        "command": run_command(),
        "machine": machine_info(),
        "protocol": {
            "split": sp["split"],
            "hops": sp.get("hops"),
            "eval": sp.get("eval"),
            "teacher": sp["teacher"]["model"],
            "student": sp["student"]["model"],
        },
        "teachers": teachers,
        "rows": rows,
        "goals": goals,
        "teacher_reuse": reuse,
    }
