"""The temporal KD benchmark: teacher -> small temporal students, without KD and with BKD / FitNet / RKD.

For every dataset: train (or reuse) one high-capacity teacher, then every student family x method x seed, each
with the dataset's one data protocol. Every run is a normal run folder under ``--work``; a finished run is reused
when its stored config equals the one asked for, an interrupted one is resumed, so the benchmark itself survives
a kill. Results: ``temporal_kd.{json,csv,md,png}`` in ``--out`` (the seed's table layout: MRR, MR, Hits@1/3/10 in
percent for each dataset; plus parameters, bytes and single-query latency of every model).

    python benchmarks/temporal_kd.py --seeds 0                      # one seed, both datasets
    python benchmarks/temporal_kd.py --seeds 0 --seeds 1 --seeds 2  # reuses seed 0, adds 1 and 2
    python benchmarks/temporal_kd.py --datasets yago11k --epochs 5 --teacher-epochs 5 --work /tmp/q --out /tmp/q

The same driver runs static distillation with ``--spec benchmarks/specs/static-kd.yaml`` (its ``benchmark:
static-kd`` names the result files ``static_kd.*`` and the default run folders ``benchmarks/work/static-kd``;
its ``published`` figures join the goals). A spec may start from another with ``extends: OTHER.yaml``
(``static-kd-cpu.yaml``: the static spec with a teacher a CPU trains; see :func:`_kd_spec._spec`).
"""

from __future__ import annotations

import copy
import logging
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
import torch

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
from _jobs import run_side_by_side
from _kd_sources import TEACHERS, check_teacher, earlier_cells
from _kd_spec import (
    _configs,
    _for_dataset,
    _for_student,
    _search_row,
    _searched,
    _spec,
    _stages,
    _stem,
    _teacher_config,
)
from _latency import single_query_latency_ms
from _tables import seed_table, write_temporal_kd
from kgdistill.api import ensure_run
from kgdistill.checkpoint import load_checkpoint, load_model
from kgdistill.errors import ConfigError
from kgdistill.runs import finished, flush_denormals

__all__ = ["run_temporal_kd"]

log = logging.getLogger(__name__)
#: the default run folders and result folder
WORK = REPO / "benchmarks" / "work" / "temporal-kd"
OUT = REPO / "benchmarks" / "results"
#: row key -> key of the evaluator's metrics
_METRICS = {"mrr": "mrr", "mr": "mr", "hits1": "hits@1", "hits3": "hits@3", "hits10": "hits@10"}


def run_temporal_kd(
    *,
    spec: str | Path | None = None,
    datasets: Sequence[str] | None = None,
    students: Sequence[str] | None = None,
    methods: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
    epochs: int | None = None,
    teacher_epochs: int | None = None,
    work: str | Path = WORK,
    out: str | Path = OUT,
    data_root: str | None = None,
    train: bool = True,
    teacher_score_cache: bool | None = None,
    jobs: int = 1,
) -> dict[str, Any]:
    """Run the benchmark and write its tables; returns the JSON document written.

    Args:
        spec: a YAML benchmark spec (default: ``benchmarks/specs/temporal-kd.yaml``).
        datasets / students / methods / seeds: subsets of the spec's lists.
        epochs / teacher_epochs: override the students' / teacher's epochs (quick runs).
        work: folder of the run folders. out: folder of the result files (defaults: under ``benchmarks/``).
        train: ``False``: train nothing, tabulate the runs that have finished (e.g. while the benchmark runs).
        teacher_score_cache: set the spec's ``teacher_score_cache`` (students read the teachers' score rows
            from a file written once; see :func:`_kd_spec._teacher_entry`).
        jobs: the students' runs of a dataset that train side by side, in worker processes (1: one after
            another; see :mod:`_jobs`). Their rows join the table once all of them have finished (a killed
            call leaves finished run folders: ``train=False`` tabulates them).
    """
    sp = _spec(spec)
    if teacher_score_cache is not None:
        sp["teacher_score_cache"] = teacher_score_cache
    datasets = list(datasets or sp["datasets"])
    students = list(students or sp["students"])
    methods = list(methods or [*sp["methods"], *(["llm-scorer"] if "llm_teacher" in sp else [])])
    seeds = list(seeds if seeds is not None else sp["seeds"])
    for name, chosen, known in (
        ("student", students, sp["students"]),
        ("method", methods, [*sp["methods"], *(["llm-scorer"] if "llm_teacher" in sp else [])]),
    ):
        unknown = [x for x in chosen if x not in known]
        if unknown:
            raise ConfigError(f"unknown {name}(s) {unknown}; the spec has {list(known)}")
    # each dataset's view of the spec, made before anything trains (a wrong per-dataset student entry stops here)
    views = {ds: _for_dataset(sp, ds) for ds in datasets}
    cells = {(ds, st): _for_student(views[ds], st) for ds in datasets for st in students}
    if Path(work) == WORK and sp.get("benchmark", "temporal-kd") != "temporal-kd":
        work = WORK.parent / str(sp["benchmark"])  # the default folder of another benchmark's runs
    work, out = Path(work), Path(out)
    stem = _stem(sp)
    runs: list[dict[str, Any]] = []
    searches: list[dict[str, Any]] = []
    sources: dict[str, dict[str, Any]] = {}

    def write() -> dict[str, Any]:
        # results already in --out outside this call are kept: a call for one dataset, student or method adds
        # to the table (a cell this call makes again replaces its earlier rows)
        prev = earlier_cells(
            out / f"{stem}.json", datasets, students, methods, runs, sources, seeds
        )
        doc = _document(prev["runs"] + runs, sp, prev["sources"], prev["searches"] + searches)
        if doc["rows"]:  # (a --finished-only call may find nothing finished)
            write_temporal_kd(doc, out)
        return doc

    # the datasets whose teacher row the result file holds already
    tabulated = {
        r.get("dataset")
        for r in earlier_results(out / f"{stem}.json", "dataset", [], ["runs"])["runs"]
        if r.get("method") == "teacher"
    }
    for ds in datasets:
        teacher_dirs = {"kge": work / Path(ds).name / "teacher"}
        todo: list[tuple[tuple[str, str, int], tuple[dict[str, Any], Path]]] = []
        read = "llm-scorer" in methods or any(
            _teachers_read(cells[ds, st], methods) for st in students
        )
        if not read and not finished(teacher_dirs["kge"]) and ds in tabulated:
            # students without KD train without it, and the result file keeps its earlier teacher row
            log.info(
                "%s: no method here reads the teacher, which has not finished: not trained", ds
            )
        elif not train and not finished(teacher_dirs["kge"]):
            log.info("%s: the teacher has not finished; nothing to tabulate", ds)
            continue
        else:
            t_cfg = _teacher_config(sp, "teacher", ds, data_root, teacher_epochs)
            metrics = ensure_run(t_cfg, teacher_dirs["kge"])
            runs.append(_row(ds, "teacher", "teacher", 0, metrics, teacher_dirs["kge"]))
            check_teacher(out / f"{stem}.json", runs[-1], students, methods)
            sources[ds] = {"command": run_command(), **machine_info()}
            write()
        if "llm_teacher" in sp and (
            "llm" in _teachers_read(sp, methods) or "llm-scorer" in methods
        ):
            teacher_dirs["llm"] = work / Path(ds).name / "llm_scorer"
            l_cfg = _teacher_config(sp, "llm_teacher", ds, data_root, teacher_epochs)
            if train or finished(teacher_dirs["llm"]):
                metrics = ensure_run(l_cfg, teacher_dirs["llm"])
                runs.append(_row(ds, "llm_scorer", "llm-scorer", 0, metrics, teacher_dirs["llm"]))
                write()
        for student in students:
            dsp = cells[ds, student]
            for method in (m for m in methods if m != "llm-scorer"):
                # with a ``search`` section: the cell's values chosen on validation first (seed 0)
                base = _configs(dsp, ds, data_root, teacher_dirs, student, method, 0, epochs)
                chosen, report = _searched(
                    dsp,
                    base,
                    student,
                    method,
                    work / Path(ds).name / f"{student}-{method}-search",
                    data_root,
                    train,
                )
                if report is not None:
                    searches.append(_search_row(ds, student, method, report))
                for seed in seeds:
                    cfg = _configs(dsp, ds, data_root, teacher_dirs, student, method, seed, epochs)
                    if chosen is not None:
                        cfg = {**copy.deepcopy(chosen), "seed": seed}
                    run_dir = work / Path(ds).name / f"{student}-{method}-s{seed}"
                    if not train and not finished(run_dir):
                        continue
                    if jobs > 1 and not finished(run_dir):  # after every search: side by side below
                        todo.append(((student, method, seed), (cfg, run_dir)))
                        continue
                    runs.append(_row(ds, student, method, seed, ensure_run(cfg, run_dir), run_dir))
                    # results so far, after every run: a long benchmark stopped midway still leaves its table
                    sources[ds] = {"command": run_command(), **machine_info()}
                    write()
        if todo:
            results = run_side_by_side([job for _, job in todo], jobs)
            # the rows in order, each latency timed with no run beside it; a failed run's error after them
            for ((student, method, seed), (_, run_dir)), res in zip(todo, results, strict=True):
                if not isinstance(res, Exception):
                    runs.append(_row(ds, student, method, seed, res, run_dir))
            sources[ds] = {"command": run_command(), **machine_info()}
            write()
            failed = [res for res in results if isinstance(res, Exception)]
            if failed:
                raise failed[0]
    return write()


def _teachers_read(view: dict[str, Any], methods: Sequence[str]) -> set[str]:
    """The teachers (``kge``, ``llm``) that a term of one of ``methods`` (their stages in the spec ``view``)
    reads."""
    return {
        term["teacher"]
        for m in methods
        if m in view["methods"]
        for stage in _stages(view, m, 1)
        for term in stage["objective"]
        if "teacher" in term
    }


def _row(
    dataset: str, model: str, method: str, seed: int, metrics: dict[str, Any], run_dir: Path
) -> dict[str, Any]:
    """One run: its test metrics (MRR and Hits in percent), size, latency and training time."""
    ckpt = load_checkpoint(run_dir / "best.safetensors")
    m = load_model(ckpt).cpu()
    spec = ckpt.meta["model"]
    query = torch.zeros((1, 4), dtype=torch.long)
    both = metrics["sides"]["both"]
    # a distilled run records its teacher's test MRR then (metrics.json's retention)
    kge = (metrics.get("retention") or {}).get("kge")
    return {
        "dataset": dataset,
        # the row's model: a student family key of the spec, or the teacher's family / the LLM scorer
        "student": spec["name"] if method == "teacher" else model,
        "method": method,
        "seed": seed,
        **{k: both[v] * (1 if k == "mr" else 100) for k, v in _METRICS.items()},
        "family": spec["name"],
        "dim": spec["kwargs"].get("dim"),
        "params": m.num_parameters(),
        "bytes": m.num_bytes(),
        "latency_ms": round(single_query_latency_ms(m, query), 4),
        "train_s": metrics.get("train_seconds"),
        "best_epoch": metrics.get("best_epoch"),
        "epochs_run": metrics.get("epochs"),
        "filter_mode": metrics["protocol"].get("filter_mode"),
        "teacher_mrr": None if kge is None else 100 * kge["teacher_mrr"],
        "run": _shown(run_dir),
    }


def _shown(path: Path) -> str:
    """A run folder as the results name it: relative to the repository when inside it (no machine path)."""
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def _aggregate(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (dataset, model, method): the mean and std over its seeds."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault((r["dataset"], r["student"], r["method"]), []).append(r)
    rows = []
    for (ds, student, method), rs in groups.items():
        row: dict[str, Any] = {"dataset": ds, "student": student, "method": method}
        for k in (*_METRICS, "train_s"):
            vals = [r[k] for r in rs if r[k] is not None]
            row[k], row[k + "_std"] = _mean_std(vals) if vals else (None, None)
        row["seeds"] = [r["seed"] for r in rs]
        # where early stopping left each seed: the epoch of the kept checkpoint, of the epochs trained
        row["best_epoch"] = [r.get("best_epoch") for r in rs]
        row["epochs_run"] = [r.get("epochs_run") for r in rs]
        row.update({k: rs[0][k] for k in ("params", "bytes", "latency_ms", "family", "dim")})
        row["filter_mode"] = rs[0].get(
            "filter_mode"
        )  # (runs of results written before: not recorded)
        rows.append(row)
    return rows


def _other_teacher_runs(
    runs: list[dict[str, Any]], dataset: str, teacher_mrr: float
) -> list[dict[str, Any]]:
    """The runs of ``dataset`` distilled from another run of the teacher's config than the table's teacher row
    (its test MRR then differs by more than 0.01; e.g. a teacher trained again after its folder was lost). Rows
    written before the teacher's MRR was recorded per run are not known, and not listed."""
    return [
        {k: r[k] for k in ("student", "method", "seed", "teacher_mrr")}
        for r in runs
        if r["dataset"] == dataset
        and r.get("teacher_mrr") is not None
        and r["method"] not in TEACHERS
        and abs(r["teacher_mrr"] - teacher_mrr) > 0.01
    ]


def _student_goals(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per student family: which KD methods beat no KD, and whether ``ours`` beats the best baseline, with the
    margins in points (``kd_gain``, ``ours_margin``). A margin that rounds to 0.00, the tables' precision, is
    no win: "beats" needs at least +0.01 on the mean over the seeds."""
    per: dict[str, Any] = {}
    for r in (r for r in rows if r["method"] not in TEACHERS):
        d = per.setdefault(r["student"], {"methods": {}, "hits1": {}})
        d["methods"][r["method"]], d["hits1"][r["method"]] = r["mrr"], r["hits1"]
    for d in per.values():
        base = d["methods"].get("none")
        if base is not None:
            d["kd_gain"] = {m: round(v - base, 2) for m, v in d["methods"].items() if m != "none"}
            d["kd_beats_no_kd"] = {m: g > 0 for m, g in d["kd_gain"].items()}
        baselines = [m for m in ("bkd", "fitnet", "rkd") if m in d["methods"]]
        if "ours" in d["methods"] and baselines:
            margin = {
                "mrr": round(d["methods"]["ours"] - max(d["methods"][m] for m in baselines), 2),
                "hits1": round(d["hits1"]["ours"] - max(d["hits1"][m] for m in baselines), 2),
            }
            d["ours_margin"] = margin
            d["ours_beats_best_baseline"] = {k: g > 0 for k, g in margin.items()}
    return per


def _against_published(
    rows: list[dict[str, Any]], published: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Each student family and dim's best method against the published figure of the same family at the
    largest size not above it (e.g. ComplEx dim 32 against kbc's rank 25)."""
    out = []
    students = [r for r in rows if r["method"] not in TEACHERS]
    for family, dim in dict.fromkeys((r["family"], r["dim"]) for r in students):
        refs = [p for p in published if p["model"] == family and p["dim"] <= (dim or 0)]
        if not refs:
            continue
        ref = max(refs, key=lambda p: p["dim"])
        mine = [r for r in students if (r["family"], r["dim"]) == (family, dim)]
        best = max(mine, key=lambda r: r["mrr"])
        plain = next((r for r in mine if r["method"] == "none"), None)
        out.append(
            {
                "student": best["student"],
                "dim": dim,
                "method": best["method"],
                "mrr": best["mrr"],
                "no_kd_mrr": None if plain is None else plain["mrr"],
                "published": ref,
                "beats_published": best["mrr"] > ref["mrr"],
            }
        )
    return out


def _place(sp: dict[str, Any], datasets: list[str], r: dict[str, Any]) -> tuple[int, ...]:
    """Where run or search ``r`` goes in the tables: by dataset, the teachers first, then the spec's order of
    students and methods, then seed (whichever calls made the rows)."""
    students, methods = list(sp.get("students", {})), [*TEACHERS, *sp.get("methods", {})]

    def at(seq: list[str], x: Any) -> int:
        return seq.index(x) if x in seq else len(seq)

    teacher = r.get("method") in TEACHERS
    return (
        at(datasets, r.get("dataset")),
        0 if teacher else 1,
        -1 if teacher else at(students, r.get("student")),
        at(methods, r.get("method")),
        int(r.get("seed", 0)),
    )


def _document(
    runs: list[dict[str, Any]],
    sp: dict[str, Any],
    sources: dict[str, dict[str, Any]],
    searches: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The result document of ``runs``; ``sources``: dataset -> the command, machine and date of its runs;
    ``searches``: the validation searches that chose the runs' values (a spec with ``search``)."""
    order = list(sp["datasets"])
    datasets = sorted(sources, key=lambda d: order.index(d) if d in order else len(order))
    runs = sorted(runs, key=lambda r: _place(sp, datasets, r))
    searches = sorted(searches or [], key=lambda r: _place(sp, datasets, r))
    rows = _aggregate(runs)
    goals = {}
    for ds in datasets:
        here = [r for r in rows if r["dataset"] == ds]
        teacher = next(r for r in here if r["method"] == "teacher")
        small = [
            r for r in here if r["method"] not in TEACHERS and r["params"] * 8 <= teacher["params"]
        ]
        best = max(small, key=lambda r: r["mrr"], default=None)
        goals[ds] = {
            "published": _against_published(here, sp.get("published", {}).get(ds, [])),
            "teacher_mrr": teacher["mrr"],
            "teacher_params": teacher["params"],
            "other_teacher_runs": _other_teacher_runs(runs, ds, teacher["mrr"]),
            "students": _student_goals(here),
            "best_small_student": None
            if best is None
            else {
                "student": best["student"],
                "method": best["method"],
                "mrr": best["mrr"],
                "params": best["params"],
                "retained": best["mrr"] / teacher["mrr"],
                "size_ratio": best["params"] / teacher["params"],
            },
        }
    machine = machine_info()
    return {
        "benchmark": str(sp.get("benchmark", "temporal-kd")),
        "date": machine.pop("date"),
        "command": run_command(),
        "machine": machine,
        "protocol": {"data": sp.get("data"), "eval": sp.get("eval")},
        "published": sp.get("published", {}),
        "sources": {d: sources[d] for d in datasets},
        "units": "mrr and hits* in percent, mr as a rank; *_std over the seeds",
        "rows": rows,
        "runs": runs,
        "search": sp.get("search"),
        "searches": searches,
        "goals": goals,
    }


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--spec",
    default=None,
    type=click.Path(exists=True, dir_okay=False),
    help="Benchmark YAML (default: benchmarks/specs/temporal-kd.yaml).",
)
@click.option("--datasets", multiple=True, help="Subset of the spec's datasets (repeatable).")
@click.option("--students", multiple=True, help="Subset of the spec's students (repeatable).")
@click.option(
    "--methods",
    multiple=True,
    help=(
        "Subset of the spec's methods (none, bkd, bkd-t1, fitnet, rkd, ours, ours-no-stage1, ours-no-l2, "
        "ours-no-l3, llm-scorer; repeatable)."
    ),
)
@click.option("--seeds", multiple=True, type=int, help="Seeds (repeatable; default: the spec's).")
@click.option(
    "--teacher-score-cache/--no-teacher-score-cache",
    default=None,
    help=(
        "Students read the teachers' score rows over the training queries from a file written once into "
        "each teacher's folder (default: the spec's teacher_score_cache, else off)."
    ),
)
@click.option(
    "--jobs",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help=(
        "Student runs of a dataset trained side by side in worker processes (small students leave a GPU "
        "mostly idle); their rows join the table once all have finished."
    ),
)
@driver_options(WORK)
def main(
    spec: str | None,
    datasets: tuple[str, ...],
    students: tuple[str, ...],
    methods: tuple[str, ...],
    seeds: tuple[int, ...],
    teacher_score_cache: bool | None,
    jobs: int,
    epochs: int | None,
    teacher_epochs: int | None,
    work: str,
    out: str,
    finished_only: bool,
    data_root: str | None,
    verbose: bool,
    quiet: bool,
) -> None:
    """Teacher -> TTransE / TA-DistMult students without KD, with BKD, FitNet, RKD and the LLM-guided two-stage
    method and its ablations (resumable)."""
    setup_logging(verbose, quiet)
    with friendly_errors():
        doc = run_temporal_kd(
            spec=spec,
            datasets=datasets or None,
            students=students or None,
            methods=methods or None,
            seeds=seeds or None,
            epochs=epochs,
            teacher_epochs=teacher_epochs,
            work=work,
            out=out,
            data_root=data_root,
            train=not finished_only,
            teacher_score_cache=teacher_score_cache,
            jobs=jobs,
        )
        if not doc["rows"]:
            raise NothingFinished(
                f"no finished run under {work} (--finished-only trains nothing; each dataset's teacher "
                "must finish first)"
                if finished_only
                else f"no run finished under {work}"
            )
    click.echo(seed_table(doc["rows"], list(dict.fromkeys(r["dataset"] for r in doc["rows"]))))
    click.echo(f"results written to {out}/{doc['benchmark'].replace('-', '_')}.{{json,csv,md,png}}")


if __name__ == "__main__":
    flush_denormals()  # before any tensor work, so that every thread flushes (kgdistill.runs)
    main()
