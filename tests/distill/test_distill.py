"""Distillation end to end on real data: stages, per-term logs, cached teachers, checks before the first step."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from kgdistill import api
from kgdistill.cli import cli
from kgdistill.config import parse_config
from kgdistill.errors import ConfigError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
DATA = {"name": str(FIXTURES / "wikidata12k-mini"), "time": {"granularity": "year"}}


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A TNTComplEx teacher trained for a few epochs on the Wikidata12k subset."""
    cfg = parse_config(
        {
            "data": DATA,
            "model": {"name": "tntcomplex", "dim": 16},
            "stages": [{"epochs": 4, "objective": [{"loss": "supervised_ce"}]}],
            "train": {"batch_size": 64, "progress": False},
        }
    )
    return api.train(cfg, out=tmp_path_factory.mktemp("t") / "teacher").run_dir


def _student(teachers: dict, stages: list) -> dict:
    return {
        "data": DATA,
        "model": {"name": "ttranse", "dim": 8},
        "teachers": teachers,
        "stages": stages,
        "train": {
            "batch_size": 64,
            "optimizer": "adam",
            "lr": 0.01,
            "eval_every": 1,
            "progress": False,
        },
    }


def test_two_stage_distillation_logs_every_term(teacher_run: Path, tmp_path: Path) -> None:
    cache = api.cache(teacher_run, tmp_path / "cache.safetensors", k=32, progress=False)
    cfg = parse_config(
        _student(
            {
                "kge": {"name": "checkpoint", "path": str(teacher_run)},
                "llm": {"name": "cache", "path": str(cache)},
            },
            [
                {
                    "epochs": 2,
                    "objective": [
                        {"loss": "supervised_ce"},
                        {"loss": "kd_kl", "teacher": "kge", "weight": 0.5},
                        {"loss": "fitnet", "teacher": "kge", "fields": ["h", "t"]},
                    ],
                },
                {
                    "epochs": 1,
                    "objective": [
                        {"loss": "supervised_ce"},
                        {"loss": "huber", "teacher": "llm", "weight": 0.3},
                        {"loss": "kd_kl", "teacher": "llm", "temperature": 1.0},
                    ],
                },
            ],
        )
    )
    result = api.distill(cfg, out=tmp_path / "student")
    events = [json.loads(x) for x in (result.run_dir / "log.jsonl").read_text().splitlines()]
    epochs = [e for e in events if e["event"] == "epoch"]
    assert {"supervised_ce", "kd_kl[kge]", "fitnet[kge]"} <= set(epochs[0]) and epochs[0][
        "stage"
    ] == 0
    assert {"supervised_ce", "huber[llm]", "kd_kl[llm]"} <= set(epochs[2]) and epochs[2][
        "stage"
    ] == 1
    assert all(e["fitnet[kge]"] > 0 and e["kd_kl[kge]"] >= 0 for e in epochs[:2])
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    assert metrics["teachers"]["kge"]["coverage"]["entities"] == 1.0
    assert metrics["teachers"]["llm"]["k"] == 32
    assert metrics["sides"]["both"]["mrr"] > 0
    # what the student keeps of the checkpoint teacher (a cache has no model to rank with)
    kept = metrics["retention"]
    assert set(kept) == {"kge"}
    teacher_mrr = api.evaluate_run(teacher_run, progress=False).mrr
    assert kept["kge"]["teacher_mrr"] == pytest.approx(teacher_mrr)
    assert kept["kge"]["mrr_share"] == pytest.approx(metrics["sides"]["both"]["mrr"] / teacher_mrr)
    assert kept["kge"]["parameter_share"] == pytest.approx(
        metrics["num_parameters"] / metrics["teachers"]["kge"]["num_parameters"]
    )


@pytest.mark.parametrize("stage", [0, 1])
def test_embedding_term_on_a_cached_teacher_fails_before_training(
    teacher_run: Path, tmp_path: Path, stage: int
) -> None:
    cache = api.cache(teacher_run, tmp_path / "cache.safetensors", k=8, progress=False)
    stages = [{"epochs": 1, "objective": [{"loss": "supervised_ce"}]} for _ in range(2)]
    stages[stage]["objective"].append({"loss": "rkd", "teacher": "llm"})
    cfg = parse_config(_student({"llm": {"name": "cache", "path": str(cache)}}, stages))
    with pytest.raises(
        ConfigError, match=rf"stages\.{stage}\.objective\.1.*reads \['h'\] of teacher 'llm'"
    ):
        api.distill(cfg, out=tmp_path / "run")
    assert not (tmp_path / "run" / "last.safetensors").exists()  # not one step was taken


def test_config_errors(teacher_run: Path, tmp_path: Path) -> None:
    no_teacher = parse_config(
        _student({}, [{"epochs": 1, "objective": [{"loss": "supervised_ce"}]}])
    )
    with pytest.raises(ConfigError, match="distillation needs at least one teacher"):
        api.distill(no_teacher)
    typo = parse_config(
        _student(
            {"kge": {"name": "checkpoint", "path": str(teacher_run)}},
            [{"epochs": 1, "objective": [{"loss": "kd_kl", "teacher": "kg"}]}],
        )
    )
    with pytest.raises(ConfigError, match="no teacher named 'kg'"):
        api.distill(typo, out=tmp_path / "a")
    bad_key = parse_config(
        _student(
            {"kge": {"name": "checkpoint", "path": str(teacher_run), "coverage": 1}},
            [{"epochs": 1, "objective": [{"loss": "kd_kl", "teacher": "kge"}]}],
        )
    )
    with pytest.raises(ConfigError, match=r"teachers\.kge\.coverage"):
        api.distill(bad_key, out=tmp_path / "b")


def test_cli_cache_then_distill(teacher_run: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    cache = tmp_path / "c.safetensors"
    res = runner.invoke(cli, ["-q", "cache", str(teacher_run), "--out", str(cache), "-k", "16"])
    assert res.exit_code == 0, res.output
    cfg = tmp_path / "kd.yaml"
    cfg.write_text(
        yaml.safe_dump(
            _student(
                {"t": {"name": "cache", "path": str(cache)}},
                [
                    {
                        "epochs": 1,
                        "objective": [{"loss": "supervised_ce"}, {"loss": "kd_kl", "teacher": "t"}],
                    }
                ],
            )
        )
    )
    res = runner.invoke(cli, ["-q", "distill", str(cfg), "--out", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    assert "| both " in res.output
    failed = tmp_path / "failed"
    res = runner.invoke(
        cli,
        [
            *("-q", "distill", str(cfg), "--out", str(failed)),
            *("--set", "teachers.t.path=/nonexistent.safetensors"),
        ],
    )
    assert res.exit_code == 2, res.output
    assert "config key 'teachers.t.path': no teacher cache at" in res.output
    assert "kgdistill cache <teacher run> --out" in res.output  # the command that writes it
    assert not failed.exists()  # a run that fails before its first step leaves nothing
