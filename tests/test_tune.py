"""kgdistill tune: spec checks, trial configs, a real search on a small real graph, resume after a kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from kgdistill.cli import cli
from kgdistill.errors import ConfigError
from kgdistill.tune import load_spec, run_key, trial_config, tune

FIXTURES = Path(__file__).parent / "fixtures"

BASE = {
    "name": "tiny",
    "seed": 0,
    "data": {"name": str(FIXTURES / "fb15k237-mini")},
    "model": {"name": "complex", "dim": 8, "init_scale": 0.1},
    "stages": [
        {"epochs": 2, "objective": [{"loss": "supervised_ce"}, {"loss": "n3", "weight": 0.01}]}
    ],
    "train": {"batch_size": 64, "optimizer": "adagrad", "lr": 0.1, "eval_every": 1},
    "eval": {"split": "test", "ties": "realistic"},
}


def R(total: int) -> dict[str, object]:
    """A parameter's remainder: the second stage runs ``total`` minus its value."""
    return {"path": "stages.1.epochs", "total": total}


def _spec(tmp_path: Path, **over: object) -> Path:
    spec = {
        "config": BASE,
        "set": {"train.patience": 5},
        "space": {
            "dim": {"path": "model.dim", "choices": [4, 8]},
            "n3": {"path": "stages.0.objective.1.weight", "low": 0.001, "high": 0.1, "log": True},
            "batch": {"path": "train.batch_size", "low": 32, "high": 96, "step": 32},
        },
        "trials": 2,
        "sampler": {"name": "tpe", "seed": 0, "startup_trials": 8},
        "pruner": {"name": "none"},
        "final": {"seeds": [0, 1]},
        **over,
    }
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_trial_config_applies_set_and_values_and_forces_valid(tmp_path: Path) -> None:
    spec, base = load_spec(_spec(tmp_path))
    raw = trial_config(base, spec, {"dim": 4, "n3": 0.05, "batch": 64})
    assert raw["model"]["dim"] == 4
    assert raw["stages"][0]["objective"][1]["weight"] == 0.05
    assert raw["train"]["batch_size"] == 64 and raw["train"]["patience"] == 5
    assert raw["eval"]["split"] == "valid"
    final = trial_config(base, spec, {"dim": 4, "n3": 0.05, "batch": 64}, seed=2, search=False)
    assert final["eval"]["split"] == "test" and final["seed"] == 2
    assert base["model"]["dim"] == 8  # the base is not changed
    assert spec.space["batch"].integer and not spec.space["n3"].integer


@pytest.mark.parametrize(
    ("over", "needle"),
    [
        ({"space": {"d": {"path": "model.dimm", "choices": [4]}}}, "space.d (model.dimm"),
        ({"space": {"d": {"path": "model.dim", "choices": [4, -1]}}}, "space.d (model.dim = -1)"),
        ({"space": {"lr": {"path": "train.lr", "low": 0.0, "high": 1.0, "log": True}}}, "low > 0"),
        ({"space": {"lr": {"path": "train.lr", "low": 1.0, "high": 0.1}}}, "must be below"),
        ({"space": {"lr": {"path": "train.lr", "choices": [1], "low": 0.1}}}, "not both"),
        ({"space": {}}, "nothing to search"),
        ({"set": {"model.dim": 4}, "space": {"d": {"path": "model.dim", "choices": [4]}}}, "both"),
        ({"trails": 3}, "trails"),
        (
            {
                "space": {
                    "a": {"path": ["train.lr", "model.dim"], "low": 1, "high": 4},
                    "b": {"path": "train.lr", "choices": [0.1]},
                }
            },
            "train.lr is searched by more than one parameter",
        ),
        (
            {"start": [{"dim": 4, "n3": 0.01}]},
            "start.0: give every searched name once; missing ['batch']",
        ),
        ({"start": [{"dim": 4, "n3": 0.01, "batch": 64, "lr": 0.1}]}, "not searched ['lr']"),
        ({"start": [{"dim": 6, "n3": 0.01, "batch": 64}]}, "start.0.dim: 6 is outside space.dim"),
        ({"start": [{"dim": 4, "n3": 0.5, "batch": 64}]}, "start.0.n3: 0.5 is outside space.n3"),
        ({"start": [{"dim": 4, "n3": 0.01, "batch": 50}]}, "start.0.batch: 50 is outside"),
        ({"start": [{"dim": 4, "n3": "x", "batch": 64}]}, "start.0.n3: 'x' is outside"),
        (
            {"space": {"e": {"path": "train.eval_every", "choices": [1, 3], "remainder": R(2)}}},
            "remainder.total (2) is below the largest value (3)",
        ),
        (
            {"space": {"e": {"path": "stages.1.epochs", "low": 1, "high": 2, "remainder": R(3)}}},
            "also the parameter's own key",
        ),
        (
            {"space": {"e": {"path": "train.eval_every", "choices": ["a"], "remainder": R(3)}}},
            "a remainder needs numeric values",
        ),
        (
            {"space": {"e": {"path": "train.eval_every", "choices": [1, 2], "remainder": R(3)}}},
            "space.e (train.eval_every, stages.1.epochs = 1)",  # the base has one stage
        ),
    ],
)
def test_bad_specs_name_the_key(tmp_path: Path, over: dict, needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_spec(_spec(tmp_path, **over))
    assert needle in str(err.value), str(err.value)


def test_a_distillation_spec_searches_its_terms(tmp_path: Path) -> None:
    """A base config with teachers: its terms' keys (temperature, weight) are searchable, and a term that names
    a teacher the config lacks is refused before anything trains."""
    base = {
        **BASE,
        "teachers": {"kge": {"name": "checkpoint", "path": "runs/teacher"}},
        "stages": [
            {
                "epochs": 2,
                "objective": [
                    {"loss": "supervised_ce"},
                    {"loss": "kd_kl", "teacher": "kge", "temperature": 2.0},
                ],
            }
        ],
    }
    space = {
        "T": {"path": "stages.0.objective.1.temperature", "low": 0.5, "high": 4.0, "log": True},
        "w": {"path": "stages.0.objective.1.weight", "low": 0.1, "high": 2.0},
    }
    spec, _ = load_spec(_spec(tmp_path, config=base, space=space))
    assert set(spec.space) == {"T", "w"}
    # one value for several keys: the same term's temperature in two stages
    two = {**base, "stages": [base["stages"][0], base["stages"][0]]}
    paths = [f"stages.{i}.objective.1.temperature" for i in (0, 1)]
    tied = {"T": {"path": paths, "low": 0.5, "high": 4.0}}
    spec2, raw2 = load_spec(_spec(tmp_path, config=two, space=tied))
    cfg = trial_config(raw2, spec2, {"T": 1.5})
    assert [st["objective"][1]["temperature"] for st in cfg["stages"]] == [1.5, 1.5]
    bad = {**space, "who": {"path": "stages.0.objective.1.teacher", "choices": ["kge", "llm"]}}
    with pytest.raises(ConfigError, match=r"space\.who .*no teacher named 'llm'"):
        load_spec(_spec(tmp_path, config=base, space=bad))


def test_a_remainder_splits_a_fixed_budget_between_two_stages(tmp_path: Path) -> None:
    """A stage length searched with a remainder: the last stage runs the rest, so every value trains the same
    number of epochs in all; a search without any remainder keeps the identity it had before the key existed
    (its folder resumes), one with it is another search."""
    from kgdistill.tune.search import _identity

    two = {**BASE, "stages": [BASE["stages"][0], {**BASE["stages"][0], "epochs": 1}]}
    space = {"s1": {"path": "stages.0.epochs", "choices": [1, 2, 3], "remainder": R(4)}}
    spec, raw = load_spec(_spec(tmp_path, config=two, space=space))
    for first in (1, 2, 3):
        cfg = trial_config(raw, spec, {"s1": first})
        assert [st["epochs"] for st in cfg["stages"]] == [first, 4 - first]
    assert spec.space["s1"].all_paths == ["stages.0.epochs", "stages.1.epochs"]
    assert '"remainder": {"path": "stages.1.epochs", "total": 4}' in _identity(spec, raw)
    plain, base = load_spec(_spec(tmp_path))
    assert "remainder" not in _identity(plain, base)
    # the rest is a searched key: it cannot be set as well
    with pytest.raises(ConfigError, match=r"stages\.1\.epochs is both in set and searched"):
        load_spec(_spec(tmp_path, config=two, space=space, set={"stages.1.epochs": 2}))


def test_missing_base_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(
        yaml.safe_dump({"base": "nope.yaml", "space": {"d": {"path": "model.dim", "choices": [4]}}})
    )
    with pytest.raises(ConfigError, match=r"base config not found: nope\.yaml"):
        load_spec(path)


def test_search_ranks_on_valid_and_final_runs_on_test(tmp_path: Path) -> None:
    out = tmp_path / "search"
    doc = tune(_spec(tmp_path), out)
    trials = doc["trials"]
    assert len(trials) == 2 and all(t["state"] == "complete" for t in trials)
    for t in trials:  # each trial is a run folder ranked on validation, never evaluated on test
        metrics = json.loads((out / "trials" / t["run"] / "metrics.json").read_text())
        assert metrics["protocol"]["split"] == "valid"
        assert t["valid_mrr"] == pytest.approx(metrics["best_valid_mrr"])
        assert t["run"] == run_key(t["params"])
    assert doc["best"]["valid_mrr"] == max(t["valid_mrr"] for t in trials)
    best = yaml.safe_load((out / "best.yaml").read_text())
    assert best["model"]["dim"] == doc["best"]["params"]["dim"]
    assert best["eval"]["split"] == "test"
    assert [r["seed"] for r in doc["final"]] == [0, 1]
    assert all(r["split"] == "test" for r in doc["final"])
    assert (
        doc["final"][0]["metrics"]["mrr"] != doc["final"][1]["metrics"]["mrr"]
    )  # two seeds, two runs
    text = (out / "tune.md").read_text()
    assert "Mean ± std over 2 seeds" in text and (out / "tune.png").is_file()
    # a larger budget extends the same study: the first two trials are reused, one more is trained
    more = tune(_spec(tmp_path), out, trials=3, final=False)
    assert [t["number"] for t in more["trials"]][:2] == [t["number"] for t in trials]
    assert len(more["trials"]) == 3
    # the continued search draws new values, not the first call's draws again
    assert len({json.dumps(t["params"], sort_keys=True) for t in more["trials"]}) == 3


def test_start_values_are_the_first_trials_and_are_not_queued_again(tmp_path: Path) -> None:
    """``start`` warm-starts a search: its values are trial 0 (in the budget); a continued search does not
    queue them again, and a search made with start values refuses a spec without them."""
    start = [{"dim": 4, "n3": 0.002, "batch": 96}]
    out = tmp_path / "search"
    spec = _spec(tmp_path, trials=2, final={"seeds": []}, start=start)
    doc = tune(spec, out)
    assert doc["trials"][0]["params"] == start[0] and doc["start"] == start
    assert len(doc["trials"]) == 2 and doc["trials"][1]["params"] != start[0]
    assert (
        "The first 1 trial(s) took the spec's start values: batch=96, dim=4, n3=0.002"
        in (out / "tune.md").read_text()
    )
    more = tune(spec, out, trials=3)
    assert [t["params"] for t in more["trials"]].count(start[0]) == 1 and len(more["trials"]) == 3
    with pytest.raises(ConfigError, match="holds a search of another spec"):
        tune(_spec(tmp_path, trials=3, final={"seeds": []}), out)


def test_another_spec_in_the_same_folder_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "search"
    tune(_spec(tmp_path, trials=1, final={"seeds": []}), out)
    other = _spec(tmp_path, sampler={"name": "random", "seed": 1, "startup_trials": 1})
    with pytest.raises(ConfigError, match="holds a search of another spec"):
        tune(other, out)


def test_diverged_trial_is_recorded_and_the_search_goes_on(tmp_path: Path) -> None:
    space = {"lr": {"path": "train.lr", "choices": [1.0e30, 0.1]}}
    sampler = {"name": "random", "seed": 0, "startup_trials": 1}
    doc = tune(
        _spec(tmp_path, space=space, trials=6, sampler=sampler, final={"seeds": []}), tmp_path / "s"
    )
    states = {t["params"]["lr"]: t["state"] for t in doc["trials"]}
    assert states == {1.0e30: "diverged", 0.1: "complete"}
    assert doc["best"]["params"]["lr"] == 0.1


def test_trials_below_the_median_are_pruned(tmp_path: Path) -> None:
    """A learning rate too small to learn anything falls below the median of the earlier trials at its
    first validation and stops there; its run folder keeps a checkpoint (resumable) and no metrics."""
    space = {  # n3 varies, so every trial is a new run (the same values would reuse a finished one)
        "lr": {"path": "train.lr", "choices": [1.0e-7, 0.1]},
        "n3": {"path": "stages.0.objective.1.weight", "low": 0.001, "high": 0.01},
    }
    sampler = {"name": "random", "seed": 0, "startup_trials": 1}
    pruner = {"name": "median", "startup_trials": 2, "warmup_epochs": 0}
    spec = _spec(
        tmp_path, space=space, trials=6, sampler=sampler, pruner=pruner, final={"seeds": []}
    )
    doc = tune(spec, tmp_path / "s")
    pruned = [t for t in doc["trials"] if t["state"] == "pruned"]
    # the useless learning rate stops at its first validation (a good trial a little under the median of
    # good ones may be pruned too: that is the median rule)
    assert any(t["params"]["lr"] == 1.0e-7 and t["last_epoch"] == 1 for t in pruned)
    assert all(t["valid_mrr"] is None and t["best_valid_so_far"] is not None for t in pruned)
    for t in pruned:
        run = tmp_path / "s" / "trials" / t["run"]
        assert (run / "last.safetensors").is_file() and not (run / "metrics.json").is_file()
    assert doc["best"]["params"]["lr"] == 0.1
    assert "pruned" in (tmp_path / "s" / "tune.md").read_text()


def test_cli_reports_and_bad_spec_exits_2(tmp_path: Path) -> None:
    runner = CliRunner()
    spec = _spec(tmp_path, trials=1, final={"seeds": [0]})
    results = tmp_path / "results"
    args = ["tune", str(spec), "--out", str(tmp_path / "s"), "--results", str(results)]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "best: trial 0" in result.output and "test over 1 seeds: MRR" in result.output
    doc = json.loads((results / "tune-spec.json").read_text())
    assert doc["command"].startswith("kgdistill") and doc["machine"]["threads"] >= 1
    assert (results / "tune-spec.md").read_text() == (tmp_path / "s" / "tune.md").read_text()
    bad = _spec(tmp_path, space={"d": {"path": "model.dim", "choices": [0]}})
    result = runner.invoke(cli, ["tune", str(bad), "--out", str(tmp_path / "t")])
    assert result.exit_code == 2 and "space.d (model.dim = 0)" in result.output


@pytest.mark.slow
def test_killed_search_resumes_the_interrupted_trial(tmp_path: Path) -> None:
    """kill -9 during a trial; the same command runs the interrupted trial's values again (its run resumes
    from its last checkpoint) and the study ends with the budget of finished trials."""
    # no early stop: a trial lasts its 150 epochs (seconds), longer than the wait before the kill
    base = {**BASE, "stages": [{**BASE["stages"][0], "epochs": 150}]}
    spec = _spec(tmp_path, config=base, set={"train.patience": 1000}, trials=2, final={"seeds": []})
    out = tmp_path / "s"
    cmd = [sys.executable, "-m", "kgdistill", "tune", str(spec), "--out", str(out)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, env=env, start_new_session=True)
    deadline = time.time() + 120
    while not list(out.glob("trials/*/last.safetensors")) and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    interrupted = next(out.glob("trials/*/last.safetensors")).parent
    assert not (interrupted / "metrics.json").is_file()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "was interrupted: its values run again" in done.stderr
    doc = json.loads((out / "tune.json").read_text())
    assert len(doc["trials"]) == 2
    assert interrupted.name in {t["run"] for t in doc["trials"]}
    assert f"resuming {interrupted}" in done.stderr  # from its last checkpoint, not from the start
    assert (interrupted / "metrics.json").is_file()


@pytest.mark.parametrize(
    "spec",
    sorted((Path(__file__).resolve().parents[1] / "benchmarks" / "specs").glob("tune-*.yaml")),
    ids=lambda p: p.stem,
)
def test_shipped_specs_load_and_search_on_validation(spec: Path) -> None:
    """Every shipped search spec checks out (its base config, keys and ranges) and never ranks on test."""
    loaded, base = load_spec(spec)
    params = {n: p.extremes()[0] for n, p in loaded.space.items()}
    assert trial_config(base, loaded, params)["eval"]["split"] == "valid"
    assert loaded.final.seeds  # the chosen config is then run on the test split
