"""End-to-end training on real data: train -> evaluate, run folder contents, early stopping, exact resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from kgdistill import api
from kgdistill.config import parse_config
from kgdistill.errors import KGDistillError

FIXTURES = Path(__file__).parent / "fixtures"


def _tiny_cfg(**over) -> dict:
    cfg = {
        "name": "tiny",
        "seed": 3,
        "data": {"name": str(FIXTURES / "wikidata12k-mini"), "time": {"granularity": "year"}},
        "model": {"name": "tntcomplex", "dim": 8},
        "stages": [
            {"epochs": 3, "objective": [{"loss": "supervised_ce"}, {"loss": "n3", "weight": 0.01}]},
            {
                "epochs": 3,
                "lr": 0.05,
                "objective": [{"loss": "supervised_ce", "label_smoothing": 0.1}],
            },
        ],
        "train": {
            "batch_size": 16,
            "optimizer": "adagrad",
            "lr": 0.1,
            "eval_every": 2,
            "patience": 0,
            "progress": False,
        },
    }
    for k, v in over.items():
        cfg[k] = v
    return cfg


@pytest.mark.slow
def test_train_evaluate_real_yago(tmp_path: Path) -> None:
    """A small TNTComplEx on the full bundled YAGO11k learns far above chance and writes a complete run folder."""
    cfg = parse_config(
        {
            "data": {"name": "yago11k"},
            "model": {"name": "tntcomplex", "dim": 16},
            "stages": [
                {
                    "epochs": 3,
                    "objective": [{"loss": "supervised_ce"}, {"loss": "n3", "weight": 0.01}],
                }
            ],
            "train": {"batch_size": 1000, "eval_every": 1, "progress": False},
        }
    )
    result = api.train(cfg, out=tmp_path / "run")
    run = result.run_dir
    for name in (
        "config.yaml",
        "log.jsonl",
        "metrics.json",
        "metrics.md",
        "best.safetensors",
        "last.safetensors",
        "curves.png",
    ):
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())
    # chance level is about 1 / 10623; a working 1-N teacher gets well above 5% within 3 epochs
    assert metrics["sides"]["both"]["mrr"] > 0.05
    assert metrics["protocol"]["filter"] == "time-aware"
    assert metrics["protocol"]["ties"] == "realistic"
    assert metrics["data_report"]["quirks"]["start_after_end_swapped"]["count"] == 70
    events = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in events if e["event"] == "epoch"] == [1, 2, 3]
    assert {"supervised_ce", "n3"} <= set(events[0])
    again = api.evaluate_run(run, split="test", progress=False)
    assert again.mrr == pytest.approx(result.metrics.mrr, abs=1e-12)


def test_the_run_records_its_time_filter(tmp_path: Path) -> None:
    """A run with ``eval.time_filter: timestamp`` validates and tests with it, and says so in ``metrics.json``
    and ``metrics.md``; ``kgdistill evaluate`` of the run uses it again."""
    cfg = parse_config(_tiny_cfg(stages=[{"epochs": 1}], eval={"time_filter": "timestamp"}))
    result = api.train(cfg, out=tmp_path / "run")
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    assert metrics["protocol"]["filter"] == "time-aware"
    assert metrics["protocol"]["filter_mode"] == "timestamp"
    assert "time-aware (timestamp) filter" in (result.run_dir / "metrics.md").read_text()
    again = api.evaluate_run(result.run_dir, progress=False)
    assert again.protocol["filter_mode"] == "timestamp"
    assert again.mrr == pytest.approx(result.metrics.mrr, abs=1e-12)


def test_early_stopping(tmp_path: Path) -> None:
    cfg = parse_config(
        _tiny_cfg(
            stages=[{"epochs": 10}],
            train={"lr": 1e-12, "eval_every": 1, "patience": 2, "progress": False},
        )
    )
    api.train(cfg, out=tmp_path / "run")
    events = [
        json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()
    ]
    stops = [e for e in events if e["event"] == "early_stop"]
    assert len(stops) == 1 and stops[0]["epoch"] == 3  # no gain at epochs 2 and 3
    assert max(e["epoch"] for e in events) == 3


@pytest.mark.parametrize("first_stops", [True, False])
def test_a_stage_without_early_stopping_runs_all_its_epochs(
    tmp_path: Path, first_stops: bool
) -> None:
    # lr 1e-12: no validation gains after the first, so patience 2 stops stage 0 at its third validation and
    # stage 1 (the best is already set) at its second
    cfg = parse_config(
        _tiny_cfg(
            stages=[{"epochs": 6, "early_stopping": first_stops}, {"epochs": 6}],
            train={"lr": 1e-12, "eval_every": 1, "patience": 2, "progress": False},
        )
    )
    api.train(cfg, out=tmp_path / "run")
    events = [
        json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()
    ]
    stops = [(e["stage"], e["epoch"]) for e in events if e["event"] == "early_stop"]
    epochs = [(e["stage"], e["epoch"]) for e in events if e["event"] == "epoch"]
    if first_stops:
        assert stops == [(0, 3), (1, 5)]
        assert len(epochs) == 5
    else:  # stage 0 runs its 6 epochs; the patience rule still stops stage 1
        assert stops == [(1, 8)]
        assert [ep for st, ep in epochs if st == 0] == [1, 2, 3, 4, 5, 6]
        assert len(epochs) == 8


def test_min_delta_stops_on_small_gains(tmp_path: Path) -> None:
    cfg = parse_config(
        _tiny_cfg(
            stages=[{"epochs": 10}],
            train={"eval_every": 1, "patience": 2, "min_delta": 1.0, "progress": False},
        )
    )
    api.train(cfg, out=tmp_path / "run")
    events = [
        json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()
    ]
    valid = [e for e in events if e["event"] == "valid"]
    assert [e["event"] for e in events].count("early_stop") == 1
    # the first validation sets the best; no later gain can exceed a whole MRR point: stop after two more
    assert len(valid) == 3


def test_divergence_is_reported_and_keeps_last_checkpoint(tmp_path: Path) -> None:
    cfg = parse_config(
        _tiny_cfg(stages=[{"epochs": 3}], train={"optimizer": "sgd", "lr": 1e38, "progress": False})
    )
    with pytest.raises(KGDistillError, match="diverged"):
        api.train(cfg, out=tmp_path / "run")


def _run_cli(*args: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "kgdistill", "-q", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **kw,
    )


def _epochs_logged(run: Path) -> int:
    log = run / "log.jsonl"
    if not log.exists():
        return 0
    return sum(1 for line in log.read_text().splitlines() if '"event": "epoch"' in line)


def _distill_cfg(teacher: Path) -> dict:
    """Two stages: BKD + FitNet (whose projection is trained and must resume exactly), then RKD."""
    cfg = _tiny_cfg(model={"name": "ta_distmult", "dim": 8})
    cfg["teachers"] = {"kge": {"name": "checkpoint", "path": str(teacher)}}
    cfg["stages"] = [
        {
            "epochs": 3,
            "objective": [
                {"loss": "supervised_ce"},
                {"loss": "kd_kl", "teacher": "kge"},
                {"loss": "fitnet", "teacher": "kge", "fields": ["h", "r", "t"]},
            ],
        },
        {
            "epochs": 3,
            "lr": 0.05,
            "optimizer": "adam",
            "objective": [
                {"loss": "supervised_ce"},
                {"loss": "rkd", "teacher": "kge", "max_samples": 8},
            ],
        },
    ]
    cfg["train"] = {**cfg["train"], "optimizer": "adam", "lr": 0.01}
    return cfg


@pytest.mark.slow
@pytest.mark.parametrize(
    ("verb", "kill_after"), [("train", 2), ("train", 4), ("distill", 4)]
)  # inside stage 0, inside stage 1, and a distillation run with a trained FitNet projection
def test_kill_9_and_resume_gives_identical_results(
    tmp_path: Path, verb: str, kill_after: int
) -> None:
    config = tmp_path / "tiny.yaml"
    import yaml

    if verb == "distill":
        teacher = api.train(
            parse_config(_tiny_cfg(stages=[{"epochs": 2}])), out=tmp_path / "teacher"
        ).run_dir
        config.write_text(yaml.safe_dump(_distill_cfg(teacher)))
    else:
        config.write_text(yaml.safe_dump(_tiny_cfg()))
    ref = _run_cli(verb, str(config), "--out", str(tmp_path / "ref"))
    assert ref.wait(timeout=300) == 0, ref.stderr.read().decode()

    run = tmp_path / "killed"
    proc = _run_cli(verb, str(config), "--out", str(run))
    deadline = time.time() + 300
    while _epochs_logged(run) < kill_after and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    if proc.poll() is not None:
        pytest.fail("the run finished before it could be killed: make the epochs slower")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (run / "metrics.json").exists()
    resumed = _run_cli(verb, "--resume", str(run))
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read().decode()

    a = json.loads((tmp_path / "ref" / "metrics.json").read_text())
    b = json.loads((run / "metrics.json").read_text())
    assert a["sides"] == b["sides"]
    assert a["best_epoch"] == b["best_epoch"]
    wa, wb = (
        load_file(str(tmp_path / "ref" / "last.safetensors")),
        load_file(str(run / "last.safetensors")),
    )
    for k in wa:
        if k.startswith(("model.", "optim.", "objective.")):
            assert torch.equal(wa[k], wb[k]), k
    log_a = [json.loads(x) for x in (tmp_path / "ref" / "log.jsonl").read_text().splitlines()]
    log_b = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    strip = [{k: v for k, v in e.items() if k != "seconds"} for e in log_a]
    assert strip == [{k: v for k, v in e.items() if k != "seconds"} for e in log_b]


def test_resume_needs_a_run_folder(tmp_path: Path) -> None:
    with pytest.raises(KGDistillError, match="cannot resume"):
        api.train(resume=tmp_path)
