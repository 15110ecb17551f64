"""The multi-source benchmark: joint pre-training once, local re-training for every target.

For every linked collection (DBP15K pair): one teacher is pre-trained on the union of its graphs (run folder
``<work>/<pair>/teacher``), then for each graph as the target a small student is trained from scratch on the
target alone, and re-trained on the target plus its linked subgraph without a teacher (``subgraph``), with each
distillation level alone (``feature``, ``network``, ``prediction``) and with all three (``all``). Every run is an
ordinary run folder, reused when finished and resumed when interrupted.

Time-to-quality is read from each student's ``log.jsonl`` (validation after every epoch): the epochs and training
seconds (the sum of the epochs' wall times, validation excluded, teacher forward passes included) until the
validation MRR first reaches the from-scratch student's best validation MRR. Results:
``multisource.{json,md,png}`` in ``--out``.

    python benchmarks/multisource.py                                    # all pairs, both targets, all methods
    python benchmarks/multisource.py --pairs dbp15k_zh_en --targets zh --epochs 10 --teacher-epochs 10
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
import yaml

from _common import (
    REPO,
    NothingFinished,
    driver_options,
    earlier_results,
    friendly_errors,
    machine_info,
    run_command,
    setup_logging,
)
from _multisource_tables import multisource_table, write_multisource
from kgdistill.api import ensure_run
from kgdistill.checkpoint import load_checkpoint
from kgdistill.errors import ConfigError
from kgdistill.io import atomic_write_text, read_safetensors_header
from kgdistill.multi.linked import LINKED
from kgdistill.runs import finished

__all__ = ["curve", "run_multisource", "time_to"]

log = logging.getLogger(__name__)
#: the default spec, run folders and result folder
SPEC = REPO / "benchmarks" / "specs" / "multisource.yaml"
WORK = REPO / "benchmarks" / "work" / "multisource"
OUT = REPO / "benchmarks" / "results"
_METRICS = {"mrr": "mrr", "mr": "mr", "hits1": "hits@1", "hits3": "hits@3", "hits10": "hits@10"}


def _spec(path: str | Path | None) -> dict[str, Any]:
    return yaml.safe_load(Path(path or SPEC).read_text())  # type: ignore[no-any-return]


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


def _teacher_kinds(sp: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The spec's ``teachers``: name -> ``{kind: checkpoint}`` or ``{kind: cache, k: int}``."""
    kinds = sp.get("teachers", {"joint": {"kind": "checkpoint"}})
    for name, t in kinds.items():
        if t.get("kind") not in ("checkpoint", "cache"):
            raise ConfigError(f"spec teachers.{name}.kind must be 'checkpoint' or 'cache'")
    return dict(kinds)


def _cache_path(teacher_dir: Path, target: str, name: str) -> Path:
    """A target's cache of teacher ``name``, next to the teacher's run folder."""
    return teacher_dir.parent / f"{target}-{name}.safetensors"


def _percent(both: dict[str, float]) -> dict[str, float]:
    """Metrics of the ``both`` side as rows report them: MRR and Hits in percent, MR as it is."""
    return {k: (both[v] * 100 if k != "mr" else both[v]) for k, v in _METRICS.items()}


def _used(sp: dict[str, Any], method: str) -> list[str]:
    return sorted({t["teacher"] for t in sp["methods"][method]["objective"] if "teacher" in t})


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
    kinds = _teacher_kinds(sp)
    teachers: dict[str, Any] = {}
    for n in _used(sp, method):
        teachers[n] = (
            {"name": "checkpoint", "path": str(teacher_dir)}
            if kinds[n]["kind"] == "checkpoint"
            else {
                "name": "cache",
                "path": str(_cache_path(teacher_dir, target, n)),
            }
        )
    if teachers:
        cfg["teachers"] = teachers
    return cfg


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _ensure_cache(
    teacher_dir: Path, path: Path, k: int, student_cfg: dict[str, Any]
) -> dict[str, Any]:
    """Write (once) the teacher's top-``k`` scores for every training query of the student's graph; returns
    ``{seconds, k, queries}`` from the sidecar ``<cache>.json``. A cache of another teacher checkpoint is
    rewritten."""
    from kgdistill import api
    from kgdistill.config import parse_config

    info_path = path.with_suffix(".json")
    teacher_sha = _digest(teacher_dir / "best.safetensors")
    if path.is_file() and info_path.is_file():
        info = json.loads(info_path.read_text())
        if info.get("teacher_sha256") == teacher_sha and info.get("k") == k:
            return dict(info)
    log.info("caching the teacher's top-%d for %s", k, path)
    t0 = time.perf_counter()
    api.cache(teacher_dir, path, k=k, data=parse_config(student_cfg), progress=False)
    seconds = time.perf_counter() - t0
    header = json.loads(read_safetensors_header(path, "teacher cache")["kgdistill"])
    info = {"seconds": round(seconds, 3), "k": k, "queries": header["queries"]}
    atomic_write_text(info_path, json.dumps({**info, "teacher_sha256": teacher_sha}, indent=2))
    return info


def _teacher_on_target(teacher_dir: Path, student_cfg: dict[str, Any]) -> dict[str, float]:
    """The teacher ranked on the target's own test split (in the target's ids): what a student can keep."""
    from kgdistill.api import load_data
    from kgdistill.config import parse_config
    from kgdistill.distill.teachers import KGETeacher
    from kgdistill.evaluate import evaluate

    cfg = parse_config(student_cfg)
    kg = load_data(cfg)
    teacher = KGETeacher(path=str(teacher_dir), kg=kg)
    m = evaluate(teacher, kg, "test", ties=cfg.eval.ties, ks=cfg.eval.ks)
    return _percent(m.sides["both"])


def _row(
    pair: str, target: str, method: str, metrics: dict[str, Any], run_dir: Path
) -> dict[str, Any]:
    both = metrics["sides"]["both"]
    ckpt = load_checkpoint(run_dir / "best.safetensors")
    return {
        "pair": pair,
        "target": target,
        "method": method,
        **_percent(both),
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
    work: str | Path = WORK,
    out: str | Path = OUT,
    data_root: str | None = None,
    train: bool = True,
) -> dict[str, Any]:
    """Run the benchmark and write its result files; returns the JSON document written.

    Args:
        spec: a YAML benchmark spec (default: ``benchmarks/specs/multisource.yaml``).
        pairs / targets / methods: subsets (targets are graph names such as ``zh`` and ``en``).
        epochs / teacher_epochs: override the students' / teacher's epochs (quick runs).
        work: folder of the run folders. out: folder of the result files (defaults: under ``benchmarks/``).
        train: ``False``: train nothing, tabulate the runs that have finished (e.g. while the benchmark runs).
    """
    sp = _spec(spec)
    pairs = list(pairs or sp["pairs"])
    methods = list(methods or sp["methods"])
    unknown = [m for m in methods if m not in sp["methods"]]
    if unknown:
        raise ConfigError(f"unknown method(s) {unknown}; the spec has {list(sp['methods'])}")
    kinds = _teacher_kinds(sp)
    for m in methods:
        missing = [n for n in _used(sp, m) if n not in kinds]
        if missing:
            raise ConfigError(
                f"spec methods.{m} uses teacher '{missing[0]}', not in the spec's teachers ({list(kinds)})"
            )
    # scratch always runs, first: time-to-quality is measured against it
    methods = ["scratch", *(m for m in methods if m != "scratch")]
    work, out = Path(work), Path(out)
    teachers: list[dict[str, Any]] = []
    on_target: list[dict[str, Any]] = []  # the teacher ranked on each target's test split
    rows: list[dict[str, Any]] = []
    sources: dict[str, dict[str, Any]] = {}
    lists = ("teachers", "teacher_on_target", "rows")

    def write() -> dict[str, Any]:
        # the other pairs' results already in --out are kept: a call for one pair adds to the file
        prev = earlier_results(out / "multisource.json", "pair", pairs, lists)
        doc = _document(
            sp,
            prev["teachers"] + teachers,
            prev["teacher_on_target"] + on_target,
            prev["rows"] + rows,
            {**prev["sources"], **sources},
        )
        if doc["teachers"]:  # (a --finished-only call may find nothing finished)
            write_multisource(doc, out)
        return doc

    for pair in pairs:
        graphs = _graphs(pair, data_root)
        chosen = [g for g in graphs if not targets or g in targets]
        if not chosen:
            raise ConfigError(
                f"none of the targets {list(targets or [])} is a graph of {pair} ({graphs})"
            )
        t_dir = work / Path(pair).name / "teacher"
        if not train and not finished(t_dir):
            log.info("%s: the teacher has not finished; nothing to tabulate", pair)
            continue
        t_metrics = ensure_run(_teacher_config(sp, pair, data_root, teacher_epochs), t_dir)
        sources[pair] = {"command": run_command(), **machine_info()}
        teachers.append({**_row(pair, "union", "teacher", t_metrics, t_dir), "curve": curve(t_dir)})
        for target in chosen:
            ev_cfg = _student_config(sp, pair, target, "scratch", data_root, t_dir, epochs)
            ev_cfg["data"] = _data(sp, pair, data_root, target, sp.get("hops", 0))
            on_target.append({"pair": pair, "target": target, **_teacher_on_target(t_dir, ev_cfg)})
            caches: dict[str, dict[str, Any]] = {}
            for method in methods:
                cfg = _student_config(sp, pair, target, method, data_root, t_dir, epochs)
                run_dir = work / Path(pair).name / f"{target}-{method}"
                if not train and not finished(run_dir):
                    continue
                cache_s = 0.0
                for n in _used(sp, method):
                    if kinds[n]["kind"] == "cache":
                        if n not in caches:
                            caches[n] = _ensure_cache(
                                t_dir, _cache_path(t_dir, target, n), int(kinds[n]["k"]), cfg
                            )
                        cache_s += caches[n]["seconds"]
                row = _row(pair, target, method, ensure_run(cfg, run_dir), run_dir)
                # the cache is written for this target before the student's first step: its seconds count
                pts = [(e, round(sec + cache_s, 3), m) for e, sec, m in curve(run_dir)]
                rows.append({**row, "cache_s": cache_s or None, "curve": pts})
                sources[pair] = {"command": run_command(), **machine_info()}
                write()
    return write()


def _document(
    sp: dict[str, Any],
    teachers: list[dict[str, Any]],
    on_target: list[dict[str, Any]],
    rows: list[dict[str, Any]],
    sources: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    """The result document; ``sources``: pair -> the command, machine and date of its runs."""
    goals: dict[str, Any] = {}
    for row in rows:
        t = next(
            (t for t in on_target if (t["pair"], t["target"]) == (row["pair"], row["target"])), None
        )
        row["teacher_retention"] = row["mrr"] / t["mrr"] if t and t["mrr"] else None
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
        s_epochs, s_seconds = time_to(scratch["curve"], best)
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
                "epochs": row["epochs_to_scratch_best"],
                "scratch_epochs": s_epochs,
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
        "sources": sources,
        "protocol": {
            "split": sp["split"],
            "hops": sp.get("hops"),
            "eval": sp.get("eval"),
            "teacher": sp["teacher"]["model"],
            "student": sp["student"]["model"],
        },
        "teachers": teachers,
        "teacher_on_target": on_target,
        "rows": rows,
        "goals": goals,
        "teacher_reuse": reuse,
    }


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--spec",
    default=None,
    type=click.Path(exists=True, dir_okay=False),
    help="Benchmark YAML (default: benchmarks/specs/multisource.yaml).",
)
@click.option("--pairs", multiple=True, help="Subset of the spec's collections (repeatable).")
@click.option(
    "--targets", multiple=True, help="Target graphs, e.g. zh, en (repeatable; default: all)."
)
@click.option(
    "--methods",
    multiple=True,
    help="Subset of scratch, subgraph, feature, network, prediction, all (repeatable; scratch always runs).",
)
@driver_options(WORK)
def main(
    spec: str | None,
    pairs: tuple[str, ...],
    targets: tuple[str, ...],
    methods: tuple[str, ...],
    epochs: int | None,
    teacher_epochs: int | None,
    work: str,
    out: str,
    finished_only: bool,
    data_root: str | None,
    verbose: bool,
    quiet: bool,
) -> None:
    """Joint teacher on linked KGs (DBP15K pairs), then small students per target: from scratch vs feature,
    network, prediction distillation and all three; quality and time to the from-scratch best (resumable)."""
    setup_logging(verbose, quiet)
    with friendly_errors():
        doc = run_multisource(
            spec=spec,
            pairs=pairs or None,
            targets=targets or None,
            methods=methods or None,
            epochs=epochs,
            teacher_epochs=teacher_epochs,
            work=work,
            out=out,
            data_root=data_root,
            train=not finished_only,
        )
        if not doc["teachers"]:
            raise NothingFinished(
                f"no finished run under {work} (--finished-only trains nothing; each pair's joint "
                "teacher must finish first)"
                if finished_only
                else f"no run finished under {work}"
            )
    if doc["rows"]:
        click.echo(multisource_table(doc["rows"]))
    else:
        click.echo("only the joint teachers have finished: no student run to tabulate yet")
    click.echo(f"results written to {out}/multisource.{{json,md,png}}")


if __name__ == "__main__":
    main()
