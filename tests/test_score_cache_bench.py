"""The score-cache speed benchmark (benchmarks/score_cache_speed.py) end to end on real subsets: both teacher
forms and the rows file alone train the same student (the KD losses agree), all are timed, and the rows' size is
reported."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from score_cache_speed import main

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.mark.slow  # trains a teacher and six students
@pytest.mark.parametrize("dataset", ["yago11k-mini", "wn18rr-mini"])
def test_both_teacher_forms_are_timed_and_agree(tmp_path: Path, dataset: str) -> None:
    args = ["--dataset", str(FIXTURES / dataset), "--epochs", "2", "--repeats", "1"]
    args += ["--teacher-epochs", "1", "--work", str(tmp_path / "w"), "--out", str(tmp_path / "o")]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "o" / f"score_cache_speed-{dataset}.json").read_text())
    modes = [r["teacher scores from"] for r in doc["rows"]]
    assert modes == ["checkpoint", "score cache", "cache file"]
    assert all(r["epochs timed"] == 2 and r["s / epoch (median)"] > 0 for r in doc["rows"])
    s = doc["summary"]
    assert s["kd_loss_max_rel_diff"] < 1e-3  # float16 rows: the same training, not a different one
    assert (
        s["speed_up"] > 0
        and s["speed_up_cache_file"] > 0
        and s["queries"] > 0
        and s["write_seconds"] >= 0
    )
    family = "tntcomplex" if dataset.startswith("yago") else "complex"
    assert doc["rows"][0]["teacher"].startswith(family)
    # a second call reuses the teacher and its rows, and times the students again
    rows = tmp_path / "w" / dataset / "train-scores.safetensors"
    stamp = rows.stat().st_mtime_ns
    assert CliRunner().invoke(main, args).exit_code == 0
    assert rows.stat().st_mtime_ns == stamp
