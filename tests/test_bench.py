"""The temporal KD benchmark (benchmarks/temporal_kd.py) end to end on a real subset: runs, reuse, resume-safety
and result files."""

from __future__ import annotations

import contextlib
import copy
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from click.testing import CliRunner

from _common import markdown_table
from _kd_spec import _for_dataset
from _tables import source_lines
from kgdistill.errors import ConfigError
from kgdistill.runs import finished
from temporal_kd import run_temporal_kd

FIXTURES = Path(__file__).parent / "fixtures"
REPO_ROOT = Path(__file__).resolve().parents[1]


def table_cells(md: str) -> list[list[str]]:
    """The cells of every Markdown table line in ``md`` (alignment lines aside), without their padding."""
    return [
        [c.strip() for c in line.strip()[1:-1].split("|")]
        for line in md.splitlines()
        if line.startswith("|") and not set(line.strip()) <= set("|:-")
    ]


def test_markdown_table_keeps_cell_texts() -> None:
    """Cells are written as given (no number parsing), ``-`` for None; number columns are right-aligned."""
    rows = [
        {"method": "bkd", "MRR": "14.62 ± 0.10", "params": "1,234", "ratio": "0.500", "s": None},
        {"method": "none", "MRR": "9.00", "params": "56", "ratio": "1.000", "s": "12"},
    ]
    md = markdown_table(rows, ["method", "MRR", "params", "ratio", "s"])
    assert table_cells(md) == [
        ["method", "MRR", "params", "ratio", "s"],
        ["bkd", "14.62 ± 0.10", "1,234", "0.500", "-"],
        ["none", "9.00", "56", "1.000", "12"],
    ]
    align = [c.strip() for c in md.splitlines()[1].strip("|").split("|")]
    assert [a.startswith(":") for a in align] == [True, False, False, False, False]
    assert all(a.endswith(":") for a in align[1:]) and md.endswith(" |\n")
    empty = markdown_table([], ["a", "b"])
    assert table_cells(empty) == [["a", "b"]] and len(empty.splitlines()) == 2


def _spec(tmp_path: Path) -> Path:
    spec = {
        "datasets": [str(FIXTURES / "wikidata12k-mini")],
        "seeds": [0, 1],
        "data": {"time": {"granularity": "year"}},
        "eval": {"split": "test", "ties": "realistic", "time_aware": True},
        "teacher": {
            "model": {"name": "tntcomplex", "dim": 8},
            "stages": [{"epochs": 2, "objective": [{"loss": "supervised_ce"}]}],
            "train": {"batch_size": 256},
        },
        "students": {
            "ttranse": {
                "model": {"name": "ttranse", "dim": 4},
                "epochs": 1,
                "train": {"batch_size": 256, "optimizer": "adam", "lr": 0.01},
            }
        },
        "supervised": [{"loss": "supervised_ce"}],
        "methods": {
            "none": [],
            "bkd": [{"loss": "kd_kl", "teacher": "kge", "temperature": 4.0}],
            "fitnet": [{"loss": "fitnet", "teacher": "kge", "fields": ["h", "r", "t"]}],
            "rkd": [{"loss": "rkd", "teacher": "kge", "field": "h"}],
        },
    }
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.mark.slow  # trains real runs end to end
def test_benchmark_writes_every_result_file(tmp_path: Path) -> None:
    spec, work, out = _spec(tmp_path), tmp_path / "work", tmp_path / "out"
    doc = run_temporal_kd(spec=spec, work=work, out=out)
    ds = str(FIXTURES / "wikidata12k-mini")
    assert len(doc["runs"]) == 1 + 4 * 2  # the teacher, then 4 methods x 2 seeds
    rows = {(r["student"], r["method"]): r for r in doc["rows"]}
    assert set(rows) == {
        ("tntcomplex", "teacher"),
        *(("ttranse", m) for m in ("none", "bkd", "fitnet", "rkd")),
    }
    schema = {"dataset", "student", "method", "mrr", "mr", "hits1", "hits3", "hits10"}
    schema |= {"params", "bytes", "latency_ms", "seeds"}
    teacher = rows[("tntcomplex", "teacher")]
    for r in doc["rows"]:
        assert schema <= set(r)
        assert 0 <= r["hits1"] <= r["hits3"] <= r["hits10"] <= 100
        runs = [
            x for x in doc["runs"] if (x["student"], x["method"]) == (r["student"], r["method"])
        ]
        assert r["mrr"] == pytest.approx(sum(x["mrr"] for x in runs) / len(runs))
        if r["method"] != "teacher":
            assert r["seeds"] == [0, 1] and r["mrr_std"] is not None
            assert r["params"] < teacher["params"] and r["latency_ms"] > 0
    metrics = json.loads(
        (work / "wikidata12k-mini" / "ttranse-bkd-s1" / "metrics.json").read_text()
    )
    run = next(x for x in doc["runs"] if (x["method"], x["seed"]) == ("bkd", 1))
    assert run["hits10"] == pytest.approx(metrics["sides"]["both"]["hits@10"] * 100)
    row = rows[("ttranse", "bkd")]
    assert (
        row["best_epoch"][1] == metrics["best_epoch"] and row["epochs_run"][1] == metrics["epochs"]
    )
    goals = doc["goals"][ds]
    assert set(goals["students"]["ttranse"]["kd_beats_no_kd"]) == {"bkd", "fitnet", "rkd"}
    # each distilled run records its teacher's test MRR: here the teacher row's own run, so no note
    for x in doc["runs"]:
        if x["method"] in ("bkd", "fitnet", "rkd"):
            assert x["teacher_mrr"] == pytest.approx(teacher["mrr"])
        elif x["method"] == "none":
            assert x["teacher_mrr"] is None
    assert goals["other_teacher_runs"] == []
    assert {r["filter_mode"] for r in doc["rows"]} == {"interval"}  # as each run recorded it
    md = (out / "temporal_kd.md").read_text()
    assert (
        f"time-aware `interval` filter on {ds} (removes the answers whose validity interval" in md
    )
    cells = table_cells(md)
    assert ["teacher (tntcomplex, dim 8)", "teacher"] in [c[:2] for c in cells]
    assert " ± " in md and "## Goals" in md
    table = [c[1] for c in cells if c[0] == "ttranse"]
    assert table[0] == "none"  # the baseline row comes first
    best = f"{metrics['best_epoch']}/{metrics['epochs']}"
    size_rows = [c for c in cells if c[:3] == [ds, "ttranse", "bkd"]]
    assert len(size_rows) == 1 and size_rows[0][-1].endswith(f", {best}")  # seed 0's, then seed 1's
    rows = list(csv.DictReader((out / "temporal_kd.csv").open()))
    assert len(rows) == 5 and {"mrr", "mrr_std", "params", "bytes", "latency_ms"} <= set(rows[0])
    assert json.loads((out / "temporal_kd.json").read_text())["benchmark"] == "temporal-kd"
    assert (out / "temporal_kd.png").stat().st_size > 0
    # a second call reuses every finished run: same numbers, nothing retrained
    metrics = work / "wikidata12k-mini" / "ttranse-none-s0" / "metrics.json"
    stamp = metrics.stat().st_mtime_ns
    again = run_temporal_kd(spec=spec, work=work, out=out, methods=["none"], seeds=[0])
    first = next(r for r in doc["runs"] if (r["method"], r["seed"]) == ("none", 0))
    remade = next(r for r in again["runs"] if (r["method"], r["seed"]) == ("none", 0))
    assert remade["mrr"] == first["mrr"]
    # the cells this call did not ask for stay in the table, each run once
    assert len(again["runs"]) == len(doc["runs"])
    assert {(r["method"], r["seed"]) for r in again["runs"]} == {
        (r["method"], r["seed"]) for r in doc["runs"]
    }
    assert metrics.stat().st_mtime_ns == stamp
    assert not (FIXTURES / "wikidata12k-mini" / "teacher").exists()  # runs stay under --work


@pytest.mark.slow  # trains real runs end to end
def test_static_spec_writes_static_kd_files_with_published_goals(tmp_path: Path) -> None:
    """The same driver on a static graph: ``benchmark: static-kd`` names the files, the per-dataset teacher
    settings apply, and each student's best method is set against the published figure at its size."""
    ds = str(FIXTURES / "fb15k237-mini")
    spec = {
        "benchmark": "static-kd",
        "datasets": [ds],
        "seeds": [0],
        "eval": {"split": "test", "ties": "realistic"},
        "teacher": {
            "model": {"name": "complex", "dim": 16},
            "stages": [{"epochs": 2, "objective": [{"loss": "supervised_ce"}]}],
            "train": {"batch_size": 256, "optimizer": "adagrad", "lr": 0.1},
        },
        "per_dataset": {ds: {"teacher": {"train.batch_size": 128}}},
        "students": {
            "complex-4": {
                "model": {"name": "complex", "dim": 4},
                "epochs": 1,
                "train": {"batch_size": 256, "optimizer": "adagrad", "lr": 0.1},
            }
        },
        "supervised": [{"loss": "supervised_ce"}],
        "methods": {"none": [], "bkd": [{"loss": "kd_kl", "teacher": "kge", "temperature": 1.0}]},
        "published": {
            ds: [
                {"model": "complex", "dim": 2, "mrr": 0.0, "source": "a floor"},
                {"model": "complex", "dim": 8, "mrr": 99.0, "source": "too large a size"},
            ]
        },
    }
    path = tmp_path / "static.yaml"
    path.write_text(yaml.safe_dump(spec))
    out = tmp_path / "out"
    doc = run_temporal_kd(spec=path, work=tmp_path / "work", out=out)
    assert doc["benchmark"] == "static-kd"
    teacher_cfg = yaml.safe_load(
        (tmp_path / "work" / "fb15k237-mini" / "teacher" / "config.yaml").read_text()
    )
    assert teacher_cfg["train"]["batch_size"] == 128  # per_dataset
    (p,) = doc["goals"][ds]["published"]
    assert p["published"]["dim"] == 2 and p["beats_published"]  # the size not above the student's
    best = max((r for r in doc["rows"] if r["method"] != "teacher"), key=lambda r: r["mrr"])
    assert (p["method"], p["mrr"]) == (best["method"], best["mrr"])
    md = (out / "static_kd.md").read_text()
    assert md.startswith("# Static KD benchmark") and "published for a floor: beats it" in md
    assert {f.name for f in out.iterdir()} == {
        f"static_kd.{x}" for x in ("json", "csv", "md", "png")
    }


@pytest.mark.slow  # trains real runs end to end
def test_a_folder_of_another_config_is_refused(tmp_path: Path) -> None:
    spec, work = _spec(tmp_path), tmp_path / "work"
    run_temporal_kd(spec=spec, work=work, out=tmp_path / "o", methods=["none"], seeds=[0])
    with pytest.raises(ConfigError, match="holds a run of another config"):
        run_temporal_kd(
            spec=spec, work=work, out=tmp_path / "o", methods=["none"], seeds=[0], epochs=2
        )
    with pytest.raises(ConfigError, match=r"unknown method\(s\) \['kd'\]"):
        run_temporal_kd(spec=spec, work=work, out=tmp_path / "o", methods=["kd"])


@pytest.mark.slow  # trains real runs end to end
def test_two_stage_method_and_llm_scorer_rows(tmp_path: Path) -> None:
    """The LLM scorer is trained once per dataset and both teachers feed the two-stage 'ours' method."""
    spec = yaml.safe_load(_spec(tmp_path).read_text())
    spec["seeds"] = [0]
    spec["llm_teacher"] = {
        "model": {
            "name": "llm_scorer",
            "dim": 16,
            "hidden": 32,
            "cache_dir": str(tmp_path / "emb"),
        },
        "stages": [{"epochs": 2, "objective": [{"loss": "supervised_ce"}]}],
        "train": {"batch_size": 256, "optimizer": "adam", "lr": 0.01},
    }
    spec["students"]["ttranse"]["epochs"] = 2
    spec["methods"]["ours"] = {
        "stages": [
            {"share": 0.5, "objective": spec["methods"]["bkd"]},
            {
                "share": 0.5,
                "objective": [
                    *spec["methods"]["bkd"],
                    {"loss": "huber", "teacher": "llm", "compare": "probs"},
                    {"loss": "mse", "teacher": "llm", "compare": "probs"},
                ],
            },
        ]
    }
    path = tmp_path / "spec2.yaml"
    path.write_text(yaml.safe_dump(spec))
    doc = run_temporal_kd(
        spec=path,
        work=tmp_path / "work",
        out=tmp_path / "out",
        methods=["bkd", "ours", "llm-scorer"],
    )
    assert [(r["student"], r["method"]) for r in doc["rows"]] == [
        ("tntcomplex", "teacher"),
        ("llm_scorer", "llm-scorer"),
        ("ttranse", "bkd"),
        ("ttranse", "ours"),
    ]
    ours = tmp_path / "work" / "wikidata12k-mini" / "ttranse-ours-s0"
    cfg = yaml.safe_load((ours / "config.yaml").read_text())
    assert [s["epochs"] for s in cfg["stages"]] == [1, 1] and set(cfg["teachers"]) == {"kge", "llm"}
    student = doc["goals"][str(FIXTURES / "wikidata12k-mini")]["students"]["ttranse"]
    assert set(student["ours_beats_best_baseline"]) == {"mrr", "hits1"}
    cells = table_cells((tmp_path / "out" / "temporal_kd.md").read_text())
    assert ["LLM scorer (text head)", "llm-scorer"] in [c[:2] for c in cells]


@pytest.mark.slow  # trains real runs end to end
def test_a_folder_written_before_a_config_field_existed_is_reused(tmp_path: Path) -> None:
    """A stored config.yaml lacking a field added to the schema since (at its default) is the same config."""
    from kgdistill.api import ensure_run

    spec, work = _spec(tmp_path), tmp_path / "work"
    run_temporal_kd(spec=spec, work=work, out=tmp_path / "o", methods=["none"], seeds=[0])
    run = work / "wikidata12k-mini" / "teacher"
    stored = yaml.safe_load((run / "config.yaml").read_text())
    assert stored["data"].pop("multi") is None  # as written before data.multi existed
    (run / "config.yaml").write_text(yaml.safe_dump(stored))
    stamp = (run / "metrics.json").stat().st_mtime_ns
    assert ensure_run(stored, run)["sides"]
    assert (run / "metrics.json").stat().st_mtime_ns == stamp


@pytest.mark.slow  # trains real runs end to end
def test_a_call_for_one_dataset_keeps_the_others(tmp_path: Path) -> None:
    """Datasets run by separate calls (or machines) end up in one table; a dataset run again is replaced."""
    raw = yaml.safe_load(_spec(tmp_path).read_text())
    wiki, yago = str(FIXTURES / "wikidata12k-mini"), str(FIXTURES / "yago11k-mini")
    raw["datasets"] = [yago, wiki]
    spec = tmp_path / "two.yaml"
    spec.write_text(yaml.safe_dump(raw))
    out, work = tmp_path / "out", tmp_path / "work"
    kw = {"spec": spec, "work": work, "out": out, "methods": ["none"], "seeds": [0]}
    run_temporal_kd(datasets=[wiki], **kw)
    doc = run_temporal_kd(datasets=[yago], **kw)
    assert [r["dataset"] for r in doc["rows"]] == [yago, yago, wiki, wiki]  # the spec's order
    assert set(doc["sources"]) == {yago, wiki} and set(doc["goals"]) == {yago, wiki}
    md = (out / "temporal_kd.md").read_text()
    assert f"- {wiki}: `" in md and f"- {yago}: `" in md
    again = run_temporal_kd(datasets=[wiki], **kw)  # reused runs replace, never duplicate, its rows
    assert len(again["runs"]) == 4
    key = ("dataset", "student", "method", "mrr", "hits1", "params")
    assert [[r[k] for k in key] for r in again["rows"]] == [
        [r[k] for k in key] for r in doc["rows"]
    ]


@pytest.mark.slow  # trains real runs end to end
def test_a_call_without_kd_trains_no_teacher_when_the_table_has_its_row(tmp_path: Path) -> None:
    """No method of a no-KD call reads the teacher: when the result file holds the teacher's row already (its
    run folder gone, e.g. on another machine), the call trains none, keeps that row and adds its seed; a call
    whose method reads the teacher trains it again."""
    spec, work, out = _spec(tmp_path), tmp_path / "work", tmp_path / "out"
    first = run_temporal_kd(spec=spec, work=work, out=out, methods=["none"], seeds=[0])
    teacher = work / "wikidata12k-mini" / "teacher"
    assert finished(teacher)  # a fresh result file: the teacher row is made
    shutil.rmtree(teacher)
    doc = run_temporal_kd(spec=spec, work=work, out=out, methods=["none"], seeds=[1])
    assert not teacher.exists()
    assert [(r["method"], r["seeds"]) for r in doc["rows"]] == [("teacher", [0]), ("none", [0, 1])]
    assert doc["rows"][0]["mrr"] == first["rows"][0]["mrr"]
    run_temporal_kd(spec=spec, work=work, out=out, methods=["bkd"], seeds=[0])
    assert finished(teacher)


@pytest.mark.slow  # trains real runs end to end
def test_runs_side_by_side_give_the_sequential_numbers(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """``jobs=2``: the students' runs train in two worker processes (one thread each), the first BKD run alone
    first (it writes the teacher's score cache), with the numbers and order of the same runs one after another on
    one thread; the workers log at the caller's level, each line naming its run. A run that fails leaves the
    others' results and its own error."""
    from _jobs import run_side_by_side

    caplog.set_level("INFO")

    spec = _spec(tmp_path)
    kw = {"spec": spec, "methods": ["none", "bkd"], "seeds": [0, 1], "teacher_score_cache": True}
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = run_temporal_kd(work=tmp_path / "w1", out=tmp_path / "o1", **kw)
        torch.set_num_threads(2)
        two = run_temporal_kd(work=tmp_path / "w2", out=tmp_path / "o2", jobs=2, **kw)
    finally:
        torch.set_num_threads(threads)

    def key(doc: dict[str, Any]) -> list[tuple[Any, ...]]:
        return [(r["student"], r["method"], r["seed"], r["mrr"], r["hits1"]) for r in doc["runs"]]

    assert key(two) == key(one) and len(key(one)) == 5
    assert {r["method"] for r in two["runs"]} == {"teacher", "none", "bkd"}
    assert (tmp_path / "w2" / "wikidata12k-mini" / "teacher" / "train-scores.safetensors").is_file()
    # the run that writes the score cache ran first, alone: three went to the workers
    assert "3 runs, 2 side by side (1 thread(s) each)" in caplog.text
    err = capfd.readouterr().err  # the workers' progress, each line naming its run
    assert "INFO [ttranse-none-s1] kgdistill.train: epoch 1 " in err
    run = tmp_path / "w2" / "wikidata12k-mini" / "ttranse-none-s0"
    good = yaml.safe_load((run / "config.yaml").read_text())
    bad = {**good, "model": {**good["model"], "dim": "four"}}
    results = run_side_by_side([(good, run), (bad, tmp_path / "bad")], 2)
    assert results[0]["sides"] == json.loads((run / "metrics.json").read_text())["sides"]
    assert isinstance(results[1], Exception) and "dim" in str(results[1])


def test_a_lone_run_left_for_the_workers_trains_here_on_every_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``jobs=2`` with one run to train: no worker process with half the threads, the run trains in this process
    on all of them."""
    import _jobs

    seen: list[tuple[int, int]] = []

    def fake(cfg: dict[str, Any], run_dir: Path) -> dict[str, Any]:
        seen.append((os.getpid(), torch.get_num_threads()))
        return {"run": str(run_dir)}

    monkeypatch.setattr(_jobs, "ensure_run", fake)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        out = _jobs.run_side_by_side([({"model": {}}, tmp_path / "a")], 2)
    finally:
        torch.set_num_threads(threads)
    assert out == [{"run": str(tmp_path / "a")}]
    assert seen == [(os.getpid(), 2)]


_ORPHAN_PARENT = """
import os, sys, time, multiprocessing
from concurrent.futures import ProcessPoolExecutor
sys.path.insert(0, sys.argv[1])
import _jobs
pool = ProcessPoolExecutor(
    1, mp_context=multiprocessing.get_context("spawn"), initializer=_jobs._worker_init,
    initargs=(1, os.getpid()),
)
print(pool.submit(os.getpid).result(), flush=True)
pool.submit(time.sleep, 300)
time.sleep(300)
"""


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (Linux ``/proc``)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl and /proc are Linux's")
def test_a_worker_ends_when_the_benchmark_process_is_killed(tmp_path: Path) -> None:
    """``kill -9`` of a ``--jobs`` call's process ends its workers too (they would otherwise train on, holding
    their run folders' locks, so that the call run again finds its runs in use)."""
    parent = subprocess.Popen(
        [sys.executable, "-c", _ORPHAN_PARENT, str(REPO_ROOT / "benchmarks")],
        stdout=subprocess.PIPE,
        text=True,
    )
    worker = 0
    try:
        assert parent.stdout is not None
        worker = int(parent.stdout.readline())
        assert _alive(worker)
        parent.kill()
        parent.wait(timeout=30)
        deadline = time.monotonic() + 30
        while _alive(worker) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(worker)
    finally:
        parent.kill()
        with contextlib.suppress(ProcessLookupError):
            if worker and _alive(worker):
                os.kill(worker, signal.SIGKILL)


@pytest.mark.slow  # trains real runs end to end
def test_finished_only_tabulates_without_training(tmp_path: Path) -> None:
    spec, work, out = _spec(tmp_path), tmp_path / "work", tmp_path / "out"
    nothing = run_temporal_kd(spec=spec, work=work, out=out, train=False)
    assert nothing["rows"] == [] and not out.exists() and not work.exists()
    run_temporal_kd(spec=spec, work=work, out=tmp_path / "o1", methods=["none", "bkd"], seeds=[0])
    doc = run_temporal_kd(spec=spec, work=work, out=out, train=False)  # all methods and seeds asked
    assert sorted((r["method"], r["seeds"]) for r in doc["rows"]) == [
        ("bkd", [0]),
        ("none", [0]),
        ("teacher", [0]),
    ]
    assert sorted(p.name for p in (work / "wikidata12k-mini").iterdir()) == [
        "teacher",
        "ttranse-bkd-s0",
        "ttranse-none-s0",
    ]


def test_filter_protocol_names_each_mode() -> None:
    from _common import filter_modes, filter_protocol

    rows = [
        {"dataset": "icews14"},
        {"dataset": "yago11k"},
        {"dataset": "wikidata12k", "filter_mode": "timestamp"},  # as its run recorded it
        {"dataset": "fb15k237"},
        {"dataset": "my-folder"},
    ]
    modes = filter_modes(rows, {"time_aware": True})
    assert modes == {
        "icews14": "point",
        "yago11k": "interval",
        "wikidata12k": "timestamp",
        "fb15k237": "static",
        "my-folder": "?",
    }
    assert filter_modes(rows[:2], {"time_filter": "timestamp"}) == {
        "icews14": "timestamp",
        "yago11k": "timestamp",
    }
    assert filter_modes(rows[:2], {"time_aware": False}) == {
        "icews14": "static",
        "yago11k": "static",
    }
    text = filter_protocol(modes)
    assert text.startswith(
        "`point` filter on icews14 (removes the answers known on the query's day); "
    )
    assert (
        "`timestamp` filter on wikidata12k (removes the answers of known quadruples with the query's own"
        in text
    )
    assert "not the tkbc / TeRo line's `timestamp` filter" in text  # interval data is ranked here
    assert "tkbc / TeRo line's" not in filter_protocol({"yago11k": "timestamp"})


@pytest.mark.parametrize("stem", ["temporal_kd", "teachers"])
def test_committed_temporal_tables_name_their_filter(stem: str) -> None:
    """The committed Markdown is what the driver makes of the committed JSON (no training), and its protocol
    line names the filter mode of every temporal dataset."""
    from _tables import temporal_kd_markdown
    from teachers import teachers_markdown

    results = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
    doc = json.loads((results / f"{stem}.json").read_text())
    md = (temporal_kd_markdown if stem == "temporal_kd" else teachers_markdown)(doc)
    assert (results / f"{stem}.md").read_text() == md
    assert "`interval` filter on " in md and "wikidata12k" in md and "yago11k" in md
    assert ("`point` filter on icews14" in md) == (stem == "teachers")


def test_write_script_result(tmp_path: Path) -> None:
    from _common import write_script_result

    text = write_script_result(
        tmp_path / "out",
        "demo",
        "benchmarks/demo.py",
        ["--steps", "2"],
        {"benchmark": "demo", "rows": [{"a": 1}]},
        lambda d: f"# {d['benchmark']}: {d['command']}\n",
    )
    doc = json.loads((tmp_path / "out" / "demo.json").read_text())
    assert doc["command"] == "python benchmarks/demo.py --steps 2" and doc["rows"] == [{"a": 1}]
    assert set(doc["machine"]) >= {"cpu", "threads", "torch"} and doc["date"]
    assert (tmp_path / "out" / "demo.md").read_text() == text == f"# demo: {doc['command']}\n"


def test_write_script_result_with_no_rows_writes_nothing(tmp_path: Path) -> None:
    from _common import NothingFinished, write_script_result

    with pytest.raises(
        NothingFinished, match="nothing finished: no run under w; no results written"
    ):
        write_script_result(
            tmp_path / "out",
            "demo",
            "benchmarks/demo.py",
            [],
            {"benchmark": "demo", "rows": []},
            lambda d: "# demo\n",
            why="no run under w",
        )
    assert not (tmp_path / "out").exists()


def _nothing_finished(result: Any, out: Path) -> None:
    """A driver call with nothing finished: one message, status 1, no table, no "results written", no files."""
    assert result.exit_code == 1, result.output
    assert "nothing finished: no finished run under" in result.output
    assert "--finished-only trains nothing" in result.output
    assert "results written to" not in result.output and "|" not in result.output
    assert "Traceback" not in result.output and not out.exists()


def test_temporal_kd_with_nothing_finished_says_so(tmp_path: Path) -> None:
    from temporal_kd import main

    out = tmp_path / "out"
    args = ["--spec", str(_spec(tmp_path)), "--work", str(tmp_path / "w"), "--out", str(out)]
    result = CliRunner().invoke(main, [*args, "--finished-only", "-q"])
    _nothing_finished(result, out)
    assert "each dataset's teacher must finish first" in result.output


def test_multisource_with_nothing_finished_says_so(tmp_path: Path) -> None:
    from multisource import main

    out = tmp_path / "out"
    args = ["--pairs", "dbp15k_zh_en", "--work", str(tmp_path / "w"), "--out", str(out)]
    result = CliRunner().invoke(main, [*args, "--finished-only", "-q"])
    _nothing_finished(result, out)


def test_kd_softness_with_nothing_finished_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from kd_softness import main

    (tmp_path / "w" / "yago11k").mkdir(parents=True)  # a benchmark folder without finished runs
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_:
        main(["--work", str(tmp_path / "w"), "--out", str(out), "--datasets", "yago11k"])
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    assert "nothing finished: no finished run of the methods" in err and "no results written" in err
    assert not out.exists()


def test_teachers_with_nothing_to_report_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import teachers

    out = tmp_path / "out"
    monkeypatch.setattr("sys.argv", ["teachers.py", "--out", str(out)])
    with pytest.raises(SystemExit, match="nothing finished: no teacher to report"):
        teachers.main()
    assert not out.exists()


def test_rows_distilled_from_another_teacher_run_are_named_under_the_table() -> None:
    """A student row whose teacher's test MRR then differs from the teacher row's (a teacher trained again) is
    named with both MRRs; rows that record none (no KD, or written before it was recorded) are not."""
    from _tables import _other_teachers
    from temporal_kd import _other_teacher_runs

    runs = [
        {**_run_row("complex", "teacher", 0, 47.46), "teacher_mrr": None},
        {**_run_row("complex-32", "bkd", 0, 46.0), "teacher_mrr": 47.49},
        {**_run_row("complex-32", "bkd", 1, 46.1), "teacher_mrr": 47.465},
        {**_run_row("complex-32", "none", 0, 41.2), "teacher_mrr": None},
        _run_row("distmult-32", "bkd", 0, 39.8),
    ]
    other = _other_teacher_runs(runs, "yago11k", 47.46)
    assert other == [{"student": "complex-32", "method": "bkd", "seed": 0, "teacher_mrr": 47.49}]
    assert _other_teacher_runs(runs, "wn18rr", 47.46) == []
    doc = {"goals": {"yago11k": {"teacher_mrr": 47.46, "other_teacher_runs": other}}}
    (line, blank) = _other_teachers(doc)
    assert line == (
        "- yago11k: distilled from another run of the teacher's config (its test MRR then): complex-32 bkd "
        "seed 0 (47.49); the teacher row: 47.46"
    )
    assert blank == "" and _other_teachers({"goals": {"yago11k": {"teacher_mrr": 1.0}}}) == []


def _run_row(student: str, method: str, seed: int, mrr: float) -> dict[str, Any]:
    return {"dataset": "yago11k", "student": student, "method": method, "seed": seed, "mrr": mrr}


def test_a_call_for_one_student_keeps_the_other_students_rows(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Cells outside a call's students x methods stay (with their call named, cell by cell: a call for one method
    of a student does not claim the student's other rows); cells it makes again are replaced; a re-made teacher
    with other metrics than the kept rows' is logged."""
    from _kd_sources import check_teacher, earlier_cells

    first = {"command": "first", "date": "d1", "cpu": "x86_64"}
    old_runs = [
        _run_row("tntcomplex", "teacher", 0, 19.69),
        _run_row("tntcomplex", "none", 0, 16.4),
        _run_row("tntcomplex", "ours", 0, 17.9),
        _run_row("ta_distmult", "none", 0, 10.0),
        _run_row("ta_distmult", "bkd", 0, 12.0),
    ]
    old_searches = [
        {"dataset": "yago11k", "student": s, "method": "none"}
        for s in ("tntcomplex", "ta_distmult")
    ]
    path = tmp_path / "t.json"
    path.write_text(
        json.dumps({"runs": old_runs, "searches": old_searches, "sources": {"yago11k": first}})
    )
    new_runs = [
        _run_row("tntcomplex", "teacher", 0, 19.69),
        _run_row("ta_distmult", "none", 0, 11.0),
    ]
    second = {"command": "second", "date": "d2", "cpu": "x86_64"}
    kept = earlier_cells(
        path, ["yago11k"], ["ta_distmult"], ["none", "ours"], new_runs, {"yago11k": second}
    )
    assert [(r["student"], r["method"]) for r in kept["runs"]] == [
        ("tntcomplex", "none"),
        ("tntcomplex", "ours"),
        ("ta_distmult", "bkd"),
    ]  # the teacher and ta_distmult/none are made again: only the new rows count
    assert [s["student"] for s in kept["searches"]] == ["tntcomplex"]
    src = kept["sources"]["yago11k"]
    assert src["command"] == "second"
    cells = {"tntcomplex": {"none": [0], "ours": [0]}, "ta_distmult": {"bkd": [0]}}
    assert src["earlier"] == [{**first, "students": ["tntcomplex", "ta_distmult"], "cells": cells}]
    rows = [{k: r[k] for k in ("dataset", "student", "method")} for r in kept["runs"] + new_runs]
    lines = "\n".join(source_lines({"sources": kept["sources"], "rows": rows}))
    assert "- yago11k: `second`" in lines
    assert "  - tntcomplex, ta_distmult (bkd) rows: `first`" in lines  # not ta_distmult's none row

    # a third call for tntcomplex again: the first call's line keeps only its row still in the table (ta_distmult bkd)
    path.write_text(
        json.dumps({"runs": kept["runs"] + new_runs, "searches": [], "sources": kept["sources"]})
    )
    again = earlier_cells(
        path, ["yago11k"], ["tntcomplex"], ["none", "ours"], [], {"yago11k": first}
    )
    assert [(r["student"], r["method"]) for r in again["runs"]] == [
        ("ta_distmult", "bkd"),
        ("tntcomplex", "teacher"),
        ("ta_distmult", "none"),
    ]
    assert again["sources"]["yago11k"]["earlier"] == [
        {**first, "students": ["ta_distmult"], "cells": {"ta_distmult": {"bkd": [0]}}},
        {**second, "students": ["ta_distmult"], "cells": {"ta_distmult": {"none": [0]}}},
    ]
    # an entry written before cells were recorded names all of its students' kept rows
    legacy = {**second, "students": ["ta_distmult", "tntcomplex"]}
    path.write_text(
        json.dumps(
            {
                "runs": kept["runs"] + new_runs,
                "searches": [],
                "sources": {"yago11k": {**first, "earlier": [legacy]}},
            }
        )
    )
    third = earlier_cells(path, ["yago11k"], ["tntcomplex"], ["ours"], [], {"yago11k": first})
    assert third["sources"]["yago11k"]["earlier"] == [
        {
            **legacy,
            "students": ["ta_distmult", "tntcomplex"],
            "cells": {"ta_distmult": {"bkd": [0], "none": [0]}, "tntcomplex": {"none": [0]}},
        }
    ]

    # another dataset's call keeps this one whole
    other = earlier_cells(path, ["wikidata12k"], ["tntcomplex"], ["none"], [], {})
    assert len(other["runs"]) == 5 and other["sources"]["yago11k"]["command"] == "first"

    # a teacher trained again to other test metrics: the kept students' rows came from the earlier one
    retrained = [_run_row("tntcomplex", "teacher", 0, 18.5)]
    with caplog.at_level("WARNING"):
        check_teacher(path, retrained[0], ["tntcomplex"], ["none"])
    assert "18.50 here, 19.69" in caplog.text and "ta_distmult" in caplog.text


def test_each_seed_of_a_cell_keeps_the_call_that_made_it(tmp_path: Path) -> None:
    """Seeds added to a cell one call at a time: every call stays named with the seeds it made (a later call for
    another seed of the same cell does not fold an earlier one into the first), and a call that made only some
    of a row's seeds is shown with them; an entry written before seeds were recorded names all kept seeds."""
    from _kd_sources import earlier_cells
    from _tables import source_lines

    calls = [{"command": f"call {i}", "date": f"d{i}", "cpu": "x86_64"} for i in range(3)]
    path = tmp_path / "t.json"
    runs = [_run_row("rotate-32", "none", 0, 42.3), _run_row("rotate-32", "bkd", 0, 42.5)]
    sources = {"yago11k": calls[0]}
    for i, mrr in ((1, 42.15), (2, 42.0)):  # a call with --methods none --seeds i
        path.write_text(json.dumps({"runs": runs, "searches": [], "sources": sources}))
        new = [_run_row("rotate-32", "none", i, mrr)]
        kept = earlier_cells(
            path, ["yago11k"], ["rotate-32"], ["none"], new, {"yago11k": calls[i]}, seeds=[i]
        )
        runs, sources = kept["runs"] + new, kept["sources"]
    assert [(r["method"], r["seed"]) for r in runs] == [
        ("none", 0),
        ("bkd", 0),
        ("none", 1),
        ("none", 2),
    ]
    src = sources["yago11k"]
    assert src["command"] == "call 2"
    assert [(e["command"], e["cells"]) for e in src["earlier"]] == [
        ("call 0", {"rotate-32": {"none": [0], "bkd": [0]}}),
        ("call 1", {"rotate-32": {"none": [1]}}),
    ]
    rows = [
        {"dataset": "yago11k", "student": "rotate-32", "method": "none", "seeds": [0, 1, 2]},
        {"dataset": "yago11k", "student": "rotate-32", "method": "bkd", "seeds": [0]},
    ]
    lines = source_lines({"sources": sources, "rows": rows})
    assert lines[1].startswith("  - rotate-32 (none seed 0, bkd) rows: `call 0`")
    assert lines[2].startswith("  - rotate-32 (none seed 1) rows: `call 1`")

    # a file written before seeds were recorded: its methods name every kept seed
    legacy = {**calls[0], "students": ["rotate-32"], "cells": {"rotate-32": ["none", "bkd"]}}
    path.write_text(
        json.dumps(
            {
                "runs": runs,
                "searches": [],
                "sources": {"yago11k": {**calls[2], "earlier": [legacy]}},
            }
        )
    )
    again = earlier_cells(
        path, ["yago11k"], ["rotate-32"], ["bkd"], [], {"yago11k": calls[1]}, seeds=[1]
    )
    assert again["sources"]["yago11k"]["earlier"] == [
        {**legacy, "cells": {"rotate-32": {"none": [0, 1, 2], "bkd": [0]}}}
    ]


def test_rows_of_several_calls_follow_the_spec_order() -> None:
    """Kept rows and a later call's rows interleave into one order: dataset, the teachers, then the spec's
    students and methods, then seed (not the order the calls came in)."""
    from temporal_kd import _place

    sp = {
        "students": {"ttranse": {}, "tntcomplex": {}},
        "methods": {"none": [], "bkd": [], "ours": []},
    }
    came = [
        _run_row("ttranse", "ours", 1, 0.0),
        {**_run_row("ttranse", "none", 0, 0.0), "dataset": "wikidata12k"},
        _run_row("tntcomplex", "none", 0, 0.0),
        _run_row("ttranse", "ours", 0, 0.0),
        _run_row("tntcomplex", "teacher", 0, 0.0),
        _run_row("ttranse", "bkd", 0, 0.0),
        _run_row("llm_scorer", "llm-scorer", 0, 0.0),
    ]
    order = sorted(came, key=lambda r: _place(sp, ["yago11k", "wikidata12k"], r))
    assert [(r["dataset"][0], r["student"], r["method"], r["seed"]) for r in order] == [
        ("y", "tntcomplex", "teacher", 0),
        ("y", "llm_scorer", "llm-scorer", 0),
        ("y", "ttranse", "bkd", 0),
        ("y", "ttranse", "ours", 0),
        ("y", "ttranse", "ours", 1),
        ("y", "tntcomplex", "none", 0),
        ("w", "ttranse", "none", 0),
    ]


@pytest.mark.parametrize(
    "name", sorted(p.name for p in (REPO_ROOT / "benchmarks" / "specs").glob("*-kd*.yaml"))
)
def test_every_kd_spec_makes_valid_run_configs(name: str) -> None:
    """Every teacher and every (student, method) cell of a committed KD spec is a config the library accepts
    (keys, names and values checked without reading data), so a typo fails here, not hours into a run."""
    from _kd_spec import _configs, _for_student, _spec, _teacher_config
    from kgdistill.config import parse_config
    from kgdistill.run import check

    sp = _spec(REPO_ROOT / "benchmarks" / "specs" / name)
    dirs = {"kge": Path("teacher"), "llm": Path("llm")}
    for ds in sp["datasets"]:
        sections = [s for s in ("teacher", "llm_teacher") if s in sp]
        cfgs = [_teacher_config(sp, s, ds, None, None) for s in sections]
        # each cell as the benchmark makes it: the dataset's and the student's entries merged in
        cfgs += [
            _configs(_for_student(_for_dataset(sp, ds), st), ds, None, dirs, st, m, 0, None)
            for st in sp["students"]
            for m in sp["methods"]
        ]
        for cfg in cfgs:
            parsed = parse_config(cfg)
            check(parsed, teacher_fields=dict.fromkeys(cfg.get("teachers", {})))


def test_the_capacity_spec_shares_the_tuned_teachers() -> None:
    """temporal-kd-capacity.yaml runs in temporal-kd-tuned's work folder to reuse its teachers: a run folder of
    another config is an error there, so the two specs must make the same teacher config on every dataset."""
    from _kd_spec import _spec, _teacher_config

    cap = _spec(REPO_ROOT / "benchmarks" / "specs" / "temporal-kd-capacity.yaml")
    tuned = _spec(REPO_ROOT / "benchmarks" / "specs" / "temporal-kd-tuned.yaml")
    assert cap["datasets"] == tuned["datasets"]
    for ds in cap["datasets"]:
        assert _teacher_config(cap, "teacher", ds, None, None) == _teacher_config(
            tuned, "teacher", ds, None, None
        ), ds
    # its students are the tuned spec's TTransE and TA-DistMult at 8x the dim, nothing else changed
    for name, st in cap["students"].items():
        small = tuned["students"][name.removesuffix("-256")]
        assert st["model"] == {**small["model"], "dim": 8 * small["model"]["dim"]}
        assert st["train"] == small["train"] and st["epochs"] == small["epochs"]


def test_a_method_stage_passes_its_other_keys_to_the_run_config() -> None:
    from _kd_spec import _configs, _spec
    from kgdistill.config import parse_config

    sp = _spec(REPO_ROOT / "benchmarks" / "specs" / "temporal-kd-tuned.yaml")
    sp["methods"]["ours"]["stages"][0]["early_stopping"] = False
    dirs = {"kge": Path("teacher"), "llm": Path("llm")}
    cfg = parse_config(_configs(sp, "yago11k", None, dirs, "ta_distmult", "ours", 0, 40))
    assert [(s.epochs, s.early_stopping) for s in cfg.stages] == [(20, False), (20, True)]
    sp["methods"]["ours"]["stages"][1]["early_stoping"] = False  # a typo: the run config refuses it
    with pytest.raises(ConfigError, match="early_stoping"):
        parse_config(_configs(sp, "yago11k", None, dirs, "ta_distmult", "ours", 0, 40))


def test_per_dataset_student_entries_merge_into_that_dataset_only() -> None:
    sp = yaml.safe_load((REPO_ROOT / "benchmarks/specs/static-kd.yaml").read_text())
    sp["per_dataset"]["fb15k237"] = {
        "students": {
            "complex-32": {
                "train": {"lr": 0.05},
                "supervised": [{"loss": "supervised_ce"}, {"loss": "n3", "weight": 0.04}],
            }
        }
    }
    fb, wn = _for_dataset(sp, "fb15k237"), _for_dataset(sp, "wn18rr")
    st = fb["students"]["complex-32"]
    assert st["train"]["lr"] == 0.05 and st["train"]["batch_size"] == 1000  # merged key by key
    assert st["supervised"][1]["weight"] == 0.04
    # another dataset: untouched
    assert wn["students"]["complex-32"] == sp["students"]["complex-32"]
    assert fb["students"]["distmult-32"] == sp["students"]["distmult-32"]
    assert "supervised" not in sp["students"]["complex-32"]  # the spec itself is not changed
    sp["per_dataset"]["fb15k237"]["students"]["complex-16"] = {"train": {"lr": 0.1}}
    with pytest.raises(ConfigError, match=r"per_dataset\.fb15k237\.students.*complex-16"):
        _for_dataset(sp, "fb15k237")


def test_spec_extends_another_spec(tmp_path: Path) -> None:
    """``extends``: the CPU static spec is static-kd.yaml with its own keys merged in at every depth (WN18RR's
    teacher keeps its N3 weight and batch size and gains its dim), lists and scalars replaced; a missing base, a
    loop or a base that is not a path is refused naming the spec."""
    from _kd_spec import _spec, _teacher_config

    specs = REPO_ROOT / "benchmarks" / "specs"
    base, cpu = _spec(specs / "static-kd.yaml"), _spec(specs / "static-kd-cpu.yaml")
    assert cpu["benchmark"] == "static-kd-cpu" and cpu["datasets"] == ["wn18rr"]
    assert "extends" not in cpu and cpu["teacher_score_cache"] is True
    assert cpu["students"] == base["students"] and cpu["methods"] == base["methods"]
    assert cpu["per_dataset"]["fb15k237"] == base["per_dataset"]["fb15k237"]
    assert cpu["per_dataset"]["wn18rr"]["teacher"] == {
        **base["per_dataset"]["wn18rr"]["teacher"],
        "model.dim": 256,
        "stages.0.epochs": 15,
    }
    t = _teacher_config(cpu, "teacher", "wn18rr", None, None)
    assert t["model"]["dim"] == 256 and t["stages"][0]["epochs"] == 15
    assert t["train"]["batch_size"] == 100 and t["stages"][0]["objective"][1]["weight"] == 0.1
    assert _teacher_config(base, "teacher", "wn18rr", None, None)["model"]["dim"] == 1000

    (tmp_path / "a.yaml").write_text(
        "benchmark: a\nseeds: [0, 1]\nteacher: {model: {name: complex, dim: 8}}\n"
    )
    (tmp_path / "b.yaml").write_text("extends: a.yaml\nseeds: [2]\nteacher: {model: {dim: 16}}\n")
    (tmp_path / "c.yaml").write_text("extends: b.yaml\nbenchmark: c\n")
    assert _spec(tmp_path / "c.yaml") == {
        "benchmark": "c",
        "seeds": [2],
        "teacher": {"model": {"name": "complex", "dim": 16}},
    }
    (tmp_path / "loop1.yaml").write_text("extends: loop2.yaml\n")
    (tmp_path / "loop2.yaml").write_text("extends: loop1.yaml\n")
    (tmp_path / "gone.yaml").write_text("extends: nowhere.yaml\n")
    (tmp_path / "num.yaml").write_text("extends: 3\n")
    (tmp_path / "list.yaml").write_text("- 1\n")
    for name, match in [
        ("loop1.yaml", r"loop1\.yaml: 'extends' loops back"),
        ("gone.yaml", r"gone\.yaml: key 'extends' names .*nowhere\.yaml, which is not a file"),
        ("num.yaml", r"num\.yaml: key 'extends' must be the path of another spec"),
        ("list.yaml", r"list\.yaml: expected a mapping"),
        ("absent.yaml", r"absent\.yaml: cannot read it"),
    ]:
        with pytest.raises(ConfigError, match=match):
            _spec(tmp_path / name)


def test_a_table_of_static_graphs_reads_as_static() -> None:
    """A benchmark of static graphs under another name (a spec extending static-kd.yaml) gets the static title
    and protocol line; temporal tables keep theirs."""
    from _tables import temporal_kd_markdown

    results = REPO_ROOT / "benchmarks" / "results"
    static = json.loads((results / "static_kd.json").read_text())
    for name in ("static-kd", "static-kd-cpu"):
        md = temporal_kd_markdown({**static, "benchmark": name})
        assert md.startswith("# Static KD benchmark") and "the standard filter" in md
        assert "time-aware" not in md
    temporal = json.loads((results / "temporal_kd.json").read_text())
    md = temporal_kd_markdown({**temporal, "benchmark": "static-kd-cpu"})
    assert md.startswith("# Temporal KD benchmark") and "time-aware" in md


def test_per_dataset_method_start_warm_starts_that_dataset_search_only() -> None:
    """The tuned spec's ``per_dataset.wikidata12k.methods.ours``: the Wikidata12k search of "ours" starts at the
    given values (the stage share as the student's epochs) over its own FitNet range, YAGO11k's is as before; a
    start outside the space, or an entry for a method the spec lacks, is refused naming it."""
    from _kd_spec import _configs, _tune_spec

    sp = yaml.safe_load((REPO_ROOT / "benchmarks/specs/temporal-kd-tuned.yaml").read_text())
    dirs = {"kge": Path("teacher"), "llm": Path("llm")}
    # TA-DistMult's Wikidata12k cell has its own entry (test_a_per_student_entry_changes_that_cell_only)
    del sp["per_dataset"]["wikidata12k"]["methods"]["ours"]["per_student"]

    def search(ds: str, spec: dict[str, Any] = sp, student: str = "tntcomplex") -> Any:
        view = _for_dataset(spec, ds)
        cfg = _configs(view, ds, None, dirs, student, "ours", 0, None)
        return _tune_spec(view, cfg, student, "ours")

    wiki, yago = search("wikidata12k"), search("yago11k")
    start = sp["per_dataset"]["wikidata12k"]["methods"]["ours"]["start"]["tntcomplex"][0]
    assert len(wiki.start) == 1 and yago.start == []
    # the starts are per student (TNTComplEx's N3 weight is not searched for TTransE): TTransE has its own
    # two, a student the spec does not name (TA-DistMult, whose own entry is removed here) starts at the
    # sampler's values
    tt = search("wikidata12k", student="ttranse").start
    assert [s["fitnet"] for s in tt] == [0.001, 0.10772863872729341] and "n3" not in tt[0]
    assert tt[0]["lr"] != start["lr"]
    assert search("wikidata12k", student="ta_distmult").start == []
    unnamed = yaml.safe_load(yaml.safe_dump(sp))
    del unnamed["per_dataset"]["wikidata12k"]["methods"]["ours"]["start"]["ttranse"]
    assert search("wikidata12k", unnamed, student="ttranse").start == []
    epochs = sp["students"]["tntcomplex"]["epochs"]
    assert wiki.start[0] == {**start, "stage1_share": round(start["stage1_share"] * epochs)}
    assert wiki.start[0]["stage1_share"] in wiki.space["stage1_share"].choices
    # stage 2 runs the rest of the student's epochs whatever stage 1's length: every trial trains as many
    from kgdistill.tune import trial_config

    values = dict(wiki.start[0])
    for first in wiki.space["stage1_share"].choices:
        cfg = trial_config(wiki.config, wiki, {**values, "stage1_share": first})
        assert [st["epochs"] for st in cfg["stages"]] == [first, epochs - first]
    # the dataset's space entry replaces that parameter only: FitNet's weight searched lower on Wikidata12k
    assert wiki.space["fitnet"].low == 0.001 and yago.space["fitnet"].low == 0.1
    assert {k: v for k, v in wiki.space.items() if k != "fitnet"} == {
        k: v for k, v in yago.space.items() if k != "fitnet"
    }
    bad = yaml.safe_load(yaml.safe_dump(sp))
    bad["per_dataset"]["wikidata12k"]["methods"]["ours"]["start"]["tntcomplex"][0]["bkd"] = 40.0
    with pytest.raises(ConfigError, match=r"tntcomplex, ours.*start\.0\.bkd: 40\.0 is outside"):
        search("wikidata12k", bad)
    bad["per_dataset"]["wikidata12k"]["methods"] = {"nonsense": {"start": []}}
    with pytest.raises(ConfigError, match=r"per_dataset\.wikidata12k\.methods.*nonsense"):
        search("wikidata12k", bad)


def test_a_per_student_entry_changes_that_cell_only() -> None:
    """``methods.ours.per_student.ta_distmult`` on Wikidata12k: that cell gets its own stages (stage 1 without
    early stopping, no FitNet term), a space with one value for BKD's keys, FitNet's parameter removed (``null``)
    and its own start (and, given one, its own number of trials); the other students' cells and searches on that
    dataset are exactly as without the entry (a finished search keeps its identity), and YAGO11k's TA-DistMult
    cell is untouched. A per-student entry naming a student the spec lacks, or not a mapping, is refused naming
    its key."""
    from _kd_spec import _configs, _for_student, _spec, _tune_spec
    from kgdistill.config import parse_config

    sp = _spec(REPO_ROOT / "benchmarks" / "specs" / "temporal-kd-tuned.yaml")
    without = copy.deepcopy(sp)
    del without["per_dataset"]["wikidata12k"]["methods"]["ours"]["per_student"]
    dirs = {"kge": Path("teacher"), "llm": Path("llm")}

    def cell(spec: dict[str, Any], ds: str, student: str) -> tuple[dict[str, Any], Any]:
        view = _for_student(_for_dataset(spec, ds), student)
        cfg = _configs(view, ds, None, dirs, student, "ours", 0, None)
        return cfg, _tune_spec(view, cfg, student, "ours")

    cfg, search = cell(sp, "wikidata12k", "ta_distmult")
    stages = parse_config(cfg).stages
    assert [(s.epochs, s.early_stopping) for s in stages] == [(25, False), (25, True)]
    assert [[t.loss for t in s.objective] for s in stages] == [
        ["supervised_ce", "kd_kl"],
        ["supervised_ce", "kd_kl", "huber", "mse"],
    ]
    # a cell's own budget (a method's `search` mapping), not part of the search's identity
    budget = copy.deepcopy(sp)
    budget["per_dataset"]["wikidata12k"]["methods"]["ours"]["per_student"]["ta_distmult"][
        "search"
    ] = {"trials": 3}
    assert search.trials == sp["search"]["trials"] == 8
    assert cell(budget, "wikidata12k", "ta_distmult")[1] == search.model_copy(update={"trials": 3})
    assert cell(budget, "wikidata12k", "ttranse")[1].trials == 8
    assert "fitnet" not in search.space and set(search.space) == {
        "lr",
        "temperature",
        "bkd",
        "alpha",
        "beta",
        "stage1_share",
    }
    assert [search.space[k].choices for k in ("lr", "bkd")] == [
        [0.016353416310722353],
        [3.2769006176185105],
    ]
    assert search.start == [
        {
            "lr": 0.016353416310722353,
            "temperature": 1.1809417851646629,
            "bkd": 3.2769006176185105,
            "alpha": 0.1,
            "beta": 0.1,
            "stage1_share": 25,
        }
    ]
    old_cfg, old_search = cell(without, "wikidata12k", "ta_distmult")
    assert "fitnet" in old_search.space and old_cfg != cfg
    for ds, student in [
        ("wikidata12k", "ttranse"),
        ("wikidata12k", "tntcomplex"),
        ("yago11k", "ta_distmult"),
    ]:
        assert cell(sp, ds, student) == cell(without, ds, student)
    assert (
        "per_student"
        not in _for_student(_for_dataset(sp, "wikidata12k"), "ttranse")["methods"]["ours"]
    )
    bad = copy.deepcopy(sp)
    bad["per_dataset"]["wikidata12k"]["methods"]["ours"]["per_student"]["ta_distmul"] = {}
    with pytest.raises(
        ConfigError, match=r"methods\.ours\.per_student.*unknown student.*ta_distmul"
    ):
        _for_student(_for_dataset(bad, "wikidata12k"), "ttranse")
    bad["per_dataset"]["wikidata12k"]["methods"]["ours"]["per_student"] = [1]
    with pytest.raises(ConfigError, match=r"methods\.ours\.per_student': a mapping student"):
        _for_student(_for_dataset(bad, "wikidata12k"), "ttranse")


def test_goals_state_margins_and_a_margin_of_zero_is_no_win() -> None:
    """The goal lines give each method's MRR gain over no KD and ours' margins over the best baseline; a margin
    that rounds to 0.00 (the tables' precision) is not a win."""
    from _tables import _goals
    from temporal_kd import _student_goals

    def row(method: str, mrr: float, hits1: float) -> dict[str, Any]:
        return {"student": "s", "method": method, "mrr": mrr, "hits1": hits1}

    rows = [
        row("teacher", 34.5, 25.7),
        row("none", 32.299, 23.2),
        row("bkd", 32.079, 23.98),
        row("rkd", 30.31, 21.64),
        row("ours", 32.302, 24.2),
    ]
    d = _student_goals(rows)["s"]
    assert d["kd_gain"] == {"bkd": -0.22, "rkd": -1.99, "ours": 0.0}
    assert d["kd_beats_no_kd"] == {"bkd": False, "rkd": False, "ours": False}
    assert d["ours_margin"] == {"mrr": 0.22, "hits1": 0.22}
    assert d["ours_beats_best_baseline"] == {"mrr": True, "hits1": True}
    text = _goals({"w": {"students": {"s": d}, "best_small_student": None}})
    assert "KD beats no-KD with no method; not with bkd (-0.22), rkd (-1.99), ours (+0.00)" in text
    assert "MRR better (+0.22), Hits@1 better (+0.22)" in text
    # results written before the margins were recorded still render
    old = {k: v for k, v in d.items() if k not in ("kd_gain", "ours_margin")}
    assert "not with bkd, rkd, ours" in _goals(
        {"w": {"students": {"s": old}, "best_small_student": None}}
    )
    # a student with its no-KD row only (its KD cells still to run) is not said to lose to no KD
    alone = _student_goals([row("teacher", 34.5, 25.7), row("none", 28.9, 19.9)])["s"]
    text = _goals({"w": {"students": {"s": alone}, "best_small_student": None}})
    assert "w, s: KD vs no-KD not compared yet" in text and "no method" not in text


def test_teacher_score_cache_spec_key(tmp_path: Path) -> None:
    """``teacher_score_cache: true`` gives every teacher entry a score cache inside the teacher's folder; the
    default and false leave the plain checkpoint; anything else is refused naming the key."""
    from _kd_spec import _configs
    from kgdistill.config import parse_config
    from kgdistill.run import check

    sp = yaml.safe_load(_spec(tmp_path).read_text())
    dirs = {"kge": tmp_path / "teacher"}
    plain = _configs(sp, "wikidata12k-mini", None, dirs, "ttranse", "bkd", 0, None)
    assert plain["teachers"] == {"kge": {"name": "checkpoint", "path": str(dirs["kge"])}}
    assert (
        _configs({**sp, "teacher_score_cache": False}, "w", None, dirs, "ttranse", "bkd", 0, None)[
            "teachers"
        ]
        == plain["teachers"]
    )
    cached = _configs(
        {**sp, "teacher_score_cache": True}, "w", None, dirs, "ttranse", "fitnet", 0, None
    )
    assert cached["teachers"]["kge"]["score_cache"] == str(dirs["kge"] / "train-scores.safetensors")
    check(parse_config(cached), teacher_fields=dict.fromkeys(cached["teachers"]))
    assert "teachers" not in _configs(
        {**sp, "teacher_score_cache": True}, "w", None, dirs, "ttranse", "none", 0, None
    )
    with pytest.raises(ConfigError, match="spec key 'teacher_score_cache'"):
        _configs({**sp, "teacher_score_cache": "yes"}, "w", None, dirs, "ttranse", "bkd", 0, None)


@pytest.mark.slow  # trains real runs end to end
def test_benchmark_with_teacher_score_cache(tmp_path: Path) -> None:
    spec, work, out = _spec(tmp_path), tmp_path / "work", tmp_path / "out"
    doc = run_temporal_kd(
        spec=spec,
        work=work,
        out=out,
        methods=["bkd", "fitnet"],
        seeds=[0],
        teacher_score_cache=True,
    )
    folder = work / "wikidata12k-mini"
    rows = folder / "teacher" / "train-scores.safetensors"
    assert rows.is_file()  # written once, by the first student that reads scores
    bkd = json.loads((folder / "ttranse-bkd-s0" / "metrics.json").read_text())
    assert bkd["teachers"]["kge"]["score_cache"]["queries"] > 0
    fitnet = json.loads((folder / "ttranse-fitnet-s0" / "metrics.json").read_text())
    assert "score_cache" in fitnet["teachers"]["kge"]  # read (checked), never needed for embeddings
    assert {r["method"] for r in doc["rows"]} == {"teacher", "bkd", "fitnet"}


def _searched_specs() -> list[str]:
    """The committed KD specs with a ``search`` section."""
    out = []
    for path in sorted((REPO_ROOT / "benchmarks" / "specs").glob("*.yaml")):
        doc = yaml.safe_load(path.read_text()) or {}
        if "search" in doc and "students" in doc:
            out.append(path.name)
    return out


SEARCHED_SPECS = _searched_specs()


@pytest.mark.parametrize("name", SEARCHED_SPECS)
def test_every_search_of_a_committed_spec_builds(name: str) -> None:
    """Every dataset x student x method cell of a committed spec with searches builds its search and its
    space names keys of the cell's config (``kgdistill tune``'s own check), before anything trains: a start
    naming a key one student does not search (TNTComplEx's N3 weight given to TA-DistMult) fails here, not an
    hour into a benchmark."""
    from _kd_spec import _configs, _spec, _tune_spec
    from kgdistill.tune import check_space

    spec = _spec(REPO_ROOT / "benchmarks" / "specs" / name)
    searched = 0
    for ds in spec["datasets"]:
        view = _for_dataset(spec, ds)
        for student in view["students"]:
            for method in view["methods"]:
                teachers = {"kge": Path("teacher"), "llm": Path("llm")}
                cfg = _configs(view, ds, None, teachers, student, method, 0, None)
                tspec = _tune_spec(view, cfg, student, method)
                # every cell searches the student's learning rate at least
                assert tspec is not None, (ds, student, method)
                check_space(f"{student}-{method}", tspec.config or {}, tspec)
                searched += 1
    assert searched == len(spec["datasets"]) * len(spec["students"]) * len(spec["methods"])


def test_a_search_row_keeps_every_trial_in_percent() -> None:
    """The results JSON carries each trial of a cell's search (values, state, validation MRR x100), not only the
    chosen one, so a reader can see how much the choice stood out."""
    from _kd_spec import _search_row

    trials = [
        {
            "number": 0,
            "state": "complete",
            "params": {"lr": 0.01},
            "valid_mrr": 0.2877,
            "best_valid_so_far": 0.2877,
            "last_epoch": 46,
            "seconds": 10.0,
        },
        {
            "number": 1,
            "state": "pruned",
            "params": {"lr": 0.002},
            "valid_mrr": None,
            "best_valid_so_far": 0.1594,
            "last_epoch": 6,
            "seconds": 2.5,
        },
        {
            "number": 2,
            "state": "diverged",
            "params": {"lr": 0.3},
            "valid_mrr": None,
            "best_valid_so_far": None,
            "last_epoch": None,
            "seconds": 1.0,
        },
    ]
    doc = {
        "budget": 3,
        "trials": trials,
        "best": {"number": 0, "params": {"lr": 0.01}, "valid_mrr": 0.2877},
    }
    row = _search_row("wikidata12k", "ttranse", "none", doc)
    assert (row["complete"], row["pruned"], row["diverged"], row["seconds"]) == (1, 1, 1, 13.5)
    assert [t["number"] for t in row["trials"]] == [0, 1, 2]
    assert row["trials"][0]["valid_mrr"] == pytest.approx(28.77)
    assert row["trials"][1]["valid_mrr"] is None
    assert row["trials"][1]["best_valid_so_far"] == pytest.approx(15.94)
    # a diverged trial: its values and state, no MRR; the seconds are summed, not listed
    assert row["trials"][2] == {k: v for k, v in trials[2].items() if k != "seconds"}
    json.dumps(row)  # the JSON writer takes it as it is
