"""The temporal KD benchmark's validation searches (a spec with ``search``): each (student, method) cell's values
chosen by ``kgdistill tune`` on the validation split, then run on test once per seed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from _kd_spec import _configs, _space, _start
from kgdistill.errors import ConfigError
from temporal_kd import run_temporal_kd
from test_bench import _spec as base_spec

FIXTURES = Path(__file__).parent / "fixtures"
DATA = str(FIXTURES / "wikidata12k-mini")


def _spec(tmp_path: Path) -> dict[str, Any]:
    """The benchmark tests' spec (one TTransE student on the Wikidata12k fixture) with searches: the student's
    learning rate, BKD's temperature, and a two-stage method's stage-1 share and BKD weight."""
    bkd = {"loss": "kd_kl", "teacher": "kge", "weight": 1.0, "temperature": 4.0}
    fit = {"loss": "fitnet", "teacher": "kge", "weight": 1.0, "fields": ["h", "r", "t"]}
    spec = yaml.safe_load(base_spec(tmp_path).read_text())
    spec["benchmark"] = "temporal-kd-tuned"
    spec["search"] = {
        "trials": 2,
        "sampler": {"name": "random", "seed": 0, "startup_trials": 1},
        "pruner": {"name": "none"},
    }
    spec["students"]["ttranse"].update(
        epochs=4,
        supervised=[{"loss": "supervised_ce"}, {"loss": "n3", "weight": 0.01}],
        space={"lr": {"path": "train.lr", "low": 0.001, "high": 0.05, "log": True}},
    )
    spec["methods"] = {
        "none": [],
        "bkd": {
            "objective": [bkd],
            "space": {"T": {"term": "kd_kl", "key": "temperature", "low": 0.5, "high": 4.0}},
        },
        "two": {
            "stages": [
                {"share": 0.5, "objective": [fit, bkd]},
                {"share": 0.5, "objective": [fit, bkd]},
            ],
            "space": {
                "first": {"share": 0, "choices": [0.25, 0.75]},
                "w": {"term": "kd_kl", "key": "weight", "low": 0.1, "high": 2.0},
            },
        },
    }
    return spec


def test_space_names_terms_in_every_stage_and_shares_as_epochs(tmp_path: Path) -> None:
    """A ``term`` parameter writes every stage's term of that loss (after the student's own supervised terms);
    a ``share`` parameter searches a stage's epochs as shares of the student's epochs, the last stage running
    the rest."""
    sp = _spec(tmp_path)
    teachers = {"kge": Path("t")}
    cfg = _configs(sp, DATA, None, teachers, "ttranse", "two", 0, None)
    assert [t["loss"] for t in cfg["stages"][1]["objective"]] == [
        "supervised_ce",
        "n3",
        "fitnet",
        "kd_kl",
    ]
    space = _space(sp, "ttranse", "two", cfg)
    assert space["w"]["path"] == ["stages.0.objective.3.weight", "stages.1.objective.3.weight"]
    # the last stage runs the rest, so every share trains the student's 4 epochs
    rest = {"path": "stages.1.epochs", "total": 4}
    assert space["first"] == {"path": "stages.0.epochs", "choices": [1, 3], "remainder": rest}
    # with three stages the middle one keeps its length; a searched last stage has no remainder
    fit, bkd = sp["methods"]["two"]["stages"][0]["objective"]
    sp["methods"]["three"] = {
        "stages": [{"share": s, "objective": [fit, bkd]} for s in (0.25, 0.25, 0.5)],
        "space": {"first": {"share": 0, "choices": [0.25, 0.5]}},
    }
    cfg3 = _configs(sp, DATA, None, teachers, "ttranse", "three", 0, None)
    assert [st["epochs"] for st in cfg3["stages"]] == [1, 1, 2]
    rest3 = {"path": "stages.2.epochs", "total": 3}
    assert _space(sp, "ttranse", "three", cfg3)["first"]["remainder"] == rest3
    sp["methods"]["three"]["space"] = {"last": {"share": 2, "choices": [0.25, 0.5]}}
    assert "remainder" not in _space(sp, "ttranse", "three", cfg3)["last"]
    assert space["lr"]["path"] == "train.lr"  # the student's space joins every method's
    assert set(
        _space(
            sp, "ttranse", "none", _configs(sp, DATA, None, teachers, "ttranse", "none", 0, None)
        )
    ) == {"lr"}
    sp["methods"]["bkd"]["space"]["T"]["term"] = "rkd"
    with pytest.raises(ConfigError, match=r"space\.T: no .rkd. term in bkd"):
        _space(sp, "ttranse", "bkd", _configs(sp, DATA, None, teachers, "ttranse", "bkd", 0, None))


def test_start_values_for_every_student_or_per_student(tmp_path: Path) -> None:
    """A method's ``start`` is one list for every student, or a mapping student -> list (a student it does not
    name starts at the sampler's values); a stage share becomes the student's epochs; a student the spec does not
    have, or another form, is refused naming the key."""
    sp = _spec(tmp_path)
    sp["students"]["tnt"] = {**sp["students"]["ttranse"], "epochs": 8}
    values = {"lr": 0.02, "first": 0.75, "w": 0.5}
    sp["methods"]["two"]["start"] = [values]
    assert _start(sp, "ttranse", "two") == [{**values, "first": 3}]
    assert _start(sp, "tnt", "two") == [{**values, "first": 6}]
    assert _start(sp, "ttranse", "bkd") == []
    sp["methods"]["two"]["start"] = {"tnt": [values, {**values, "w": 1.5}]}
    assert _start(sp, "tnt", "two") == [{**values, "first": 6}, {**values, "first": 6, "w": 1.5}]
    assert _start(sp, "ttranse", "two") == []
    sp["methods"]["two"]["start"] = {"tnt": [values], "transe": [values]}
    with pytest.raises(
        ConfigError, match=r"methods\.two\.start.: unknown student\(s\) \['transe'\]"
    ):
        _start(sp, "tnt", "two")
    sp["methods"]["two"]["start"] = {"tnt": values}
    with pytest.raises(ConfigError, match=r"methods\.two\.start\.tnt.: a list of name -> value"):
        _start(sp, "tnt", "two")
    sp["methods"]["two"]["start"] = "lr=0.02"
    with pytest.raises(ConfigError, match=r"methods\.two\.start.: a list of name -> value"):
        _start(sp, "tnt", "two")


@pytest.mark.slow  # searches and trains real runs end to end
def test_searched_cells_run_the_chosen_values_on_test(tmp_path: Path) -> None:
    spec, work, out = tmp_path / "spec.yaml", tmp_path / "work", tmp_path / "out"
    sp = _spec(tmp_path)
    # the dataset's "two" search starts at given values (the share as a share of the student's epochs)
    start = {"lr": 0.02, "first": 0.75, "w": 0.5}
    sp["per_dataset"] = {DATA: {"methods": {"two": {"start": [start]}}}}
    spec.write_text(yaml.safe_dump(sp))
    doc = run_temporal_kd(spec=spec, work=work, out=out, methods=["none", "bkd", "two"])
    cells = {(s["student"], s["method"]): s for s in doc["searches"]}
    assert set(cells) == {("ttranse", m) for m in ("none", "bkd", "two")}
    for (student, method), s in cells.items():
        folder = work / "wikidata12k-mini" / f"{student}-{method}-search"
        report = json.loads((folder / "tune.json").read_text())
        assert s["budget"] == 2 and s["complete"] + s["pruned"] + s["diverged"] == 2
        assert s["params"] == report["best"]["params"]
        for t in report["trials"]:  # the search never evaluated the test split
            trial_cfg = yaml.safe_load((folder / "trials" / t["run"] / "config.yaml").read_text())
            assert trial_cfg["eval"]["split"] == "valid"
        for seed in (0, 1):
            run_cfg = yaml.safe_load(
                (
                    work / "wikidata12k-mini" / f"{student}-{method}-s{seed}" / "config.yaml"
                ).read_text()
            )
            assert run_cfg["seed"] == seed and run_cfg["eval"]["split"] == "test"
            assert run_cfg["train"]["lr"] == pytest.approx(s["params"]["lr"])
    two = yaml.safe_load((work / "wikidata12k-mini" / "ttranse-two-s0" / "config.yaml").read_text())
    chosen = cells[("ttranse", "two")]["params"]
    assert [st["epochs"] for st in two["stages"]] == [chosen["first"], 4 - chosen["first"]]
    assert [st["objective"][3]["weight"] for st in two["stages"]] == [
        pytest.approx(chosen["w"])
    ] * 2
    first = json.loads((work / "wikidata12k-mini" / "ttranse-two-search" / "tune.json").read_text())
    assert first["trials"][0]["params"] == {**start, "first": 3}
    md = (out / "temporal_kd_tuned.md").read_text()
    assert "## Searches on validation" in md and "2 trials on the validation split" in md
    assert f"The search of {DATA} ttranse two started at given values" in md
    # a second call reuses the searches and the runs; --finished-only tabulates them, searches included
    again = run_temporal_kd(spec=spec, work=work, out=out, methods=["none", "bkd", "two"])
    assert again["searches"] == doc["searches"]
    listed = run_temporal_kd(spec=spec, work=work, out=tmp_path / "o2", train=False)
    assert len(listed["searches"]) == 3 and len(listed["runs"]) == len(doc["runs"])


def test_a_table_under_the_seed_protocol_says_it_is_not_the_standard_split() -> None:
    """The same document with ``data.resplit`` in its protocol gets the seed-protocol line instead of the
    standard one, naming the split's settings."""
    from _tables import temporal_kd_markdown

    results = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
    doc = json.loads((results / "temporal_kd.json").read_text())
    assert "not the standard split" not in temporal_kd_markdown(doc)
    doc["protocol"]["data"] = {
        "time": {"granularity": "year"},
        "resplit": {"expand": "year", "valid": 0.1, "test": 0.1, "seed": 0},
    }
    md = temporal_kd_markdown(doc)
    assert "**not the standard split.**" in md and "(0.1 valid, 0.1 test, seed 0)" in md
    assert "The seed paper's own numbers" not in md
