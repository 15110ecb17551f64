"""``kgdistill compare``: one table of real runs (a teacher and a student distilled from it), JSON, the plot, and
a missing or unfinished run folder as one line with exit status 2."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from kgdistill import api
from kgdistill.cli import cli
from kgdistill.compare import COLUMNS, comparison_table, read_runs
from kgdistill.config import parse_config

FIXTURES = Path(__file__).parent / "fixtures"
BASE = {
    "seed": 0,
    "data": {"name": str(FIXTURES / "yago11k-mini")},
    "train": {"batch_size": 2000, "optimizer": "adam", "lr": 0.01, "progress": False},
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A TA-DistMult-8 teacher (2 epochs) and a TTransE-4 student distilled from it (BKD, 2 epochs), on a real
    YAGO11k subset."""
    tmp = tmp_path_factory.mktemp("compare")
    teacher = api.train(
        parse_config(
            {**BASE, "model": {"name": "ta_distmult", "dim": 8}, "stages": [{"epochs": 2}]}
        ),
        out=tmp / "teacher",
    ).run_dir
    objective = [{"loss": "supervised_ce"}, {"loss": "kd_kl", "teacher": "kge"}]
    student = api.distill(
        parse_config(
            {
                **BASE,
                "model": {"name": "ttranse", "dim": 4},
                "teachers": {"kge": {"name": "checkpoint", "path": str(teacher)}},
                "stages": [{"epochs": 2, "objective": objective}],
            }
        ),
        out=tmp / "student",
    ).run_dir
    return teacher, student


def _invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["-q", *args], catch_exceptions=False)
    return result.exit_code, result.output


def _cells(md: str) -> list[list[str]]:
    return [
        [c.strip() for c in line.strip()[1:-1].split("|")]
        for line in md.splitlines()
        if line.startswith("|") and not set(line.strip()) <= set("|:-")
    ]


def test_the_table_shows_each_run(runs: tuple[Path, Path]) -> None:
    teacher, student = runs
    code, out = _invoke("compare", str(teacher), str(student))
    assert code == 0, out
    head, *rows = _cells(out)
    assert head == list(COLUMNS)
    table = {row[0]: dict(zip(head, row, strict=True)) for row in rows}
    assert list(table) == ["teacher", "student"]
    for name, run in (("teacher", teacher), ("student", student)):
        metrics = json.loads((run / "metrics.json").read_text())
        row = table[name]
        assert row["dataset"] == "yago11k-mini"
        assert row["params"] == f"{metrics['num_parameters']:,}"
        assert row["protocol"] == "test, time-aware (interval) filter, realistic ties"
        assert row["MRR"] == f"{metrics['sides']['both']['mrr'] * 100:.2f}"
        assert row["H@10"] == f"{metrics['sides']['both']['hits@10'] * 100:.2f}"
        assert row["train s"] == f"{metrics['train_seconds']:.1f}" and row["epochs"] == "2"
    assert table["teacher"]["model"] == "ta_distmult-8" and table["teacher"]["retention"] == "-"
    share = json.loads((student / "metrics.json").read_text())["retention"]["kge"]
    assert table["student"]["model"] == "ttranse-4"
    assert table["student"]["retention"] == (
        f"kge: {share['mrr_share']:.1%} of its MRR with {share['parameter_share']:.1%} of its parameters"
    )


def test_json_and_plot(runs: tuple[Path, Path], tmp_path: Path) -> None:
    teacher, student = runs
    plot = tmp_path / "cmp.png"
    result = CliRunner().invoke(
        cli, ["compare", str(teacher), str(student), "--json", "--plot", str(plot)]
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)  # the "wrote" line goes to stderr
    assert [d["name"] for d in doc] == ["teacher", "student"]
    metrics = json.loads((student / "metrics.json").read_text())
    assert doc[1]["mrr"] == metrics["sides"]["both"]["mrr"]
    assert doc[1]["retention"] == metrics["retention"] and doc[0]["retention"] == {}
    assert (
        doc[0]["num_parameters"]
        == json.loads((teacher / "metrics.json").read_text())["num_parameters"]
    )
    assert len(doc[0]["valid_curve"]) >= 1  # from log.jsonl
    assert plot.stat().st_size > 0 and f"wrote {plot}" in result.stderr


def test_plain_layout_without_tabulate(runs: tuple[Path, Path]) -> None:
    text = comparison_table(read_runs(runs), markdown=False)
    assert "|" not in text and "teacher" in text and "ttranse-4" in text


def test_missing_and_unfinished_runs_are_one_line(runs: tuple[Path, Path], tmp_path: Path) -> None:
    teacher, _ = runs
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    for name in ("config.yaml", "last.safetensors"):
        shutil.copy(teacher / name, unfinished / name)
    missing = tmp_path / "missing"
    code, out = _invoke("compare", str(teacher), str(missing), str(unfinished))
    assert code == 2 and len(out.strip().splitlines()) == 1 and "Traceback" not in out
    assert f"{missing} does not exist" in out
    assert f"{unfinished} has not finished (no metrics.json yet" in out


def test_compare_does_not_import_torch(runs: tuple[Path, Path]) -> None:
    code = (
        "import sys\n"
        "from kgdistill.cli import cli\n"
        f"cli(['compare', {str(runs[0])!r}, {str(runs[1])!r}], standalone_mode=False)\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr
    assert "| teacher " in out.stdout
