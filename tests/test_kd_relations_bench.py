"""benchmarks/kd_relations.py: the reverse share against a pandas count, the runs it picks, its numbers against
``kgdistill evaluate --by-relation``, and the committed table against its JSON."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from kgdistill.api import evaluate_run
from kgdistill.cli import cli
from kgdistill.data import KG, build_kg, read_static_names

FIXTURES = Path(__file__).parent / "fixtures"
RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


@pytest.mark.parametrize("name", ["wn18rr-mini", "fb15k237-mini"])
def test_reverse_share_matches_a_pandas_self_join(name: str) -> None:
    from kd_relations import reverse_share

    kg: KG = build_kg(read_static_names(FIXTURES / name))
    facts = pd.concat(
        [pd.DataFrame(f[:, :3].numpy(), columns=["h", "r", "t"]) for f in kg.facts.values()]
    ).drop_duplicates()
    rev = facts.rename(columns={"h": "t", "t": "h"})
    joined = facts.merge(rev, on=["h", "r", "t"], how="left", indicator=True)
    want = (joined["_merge"] == "both").groupby(joined["r"]).mean()
    got = reverse_share(kg)
    assert got == pytest.approx({kg.relation_labels[r]: v for r, v in want.items()})
    if name == "wn18rr-mini":  # WordNet has both kinds
        assert got["_hypernym"] == 0.0 and got["_derivationally_related_form"] > 0.5


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A benchmark work folder on the WN18RR subset: a teacher, and one student run under seeds 2 and 1."""
    work = tmp_path_factory.mktemp("kdrel") / "w"
    cfg = work.parent / "c.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "data": {"name": str(FIXTURES / "wn18rr-mini")},
                "model": {"name": "distmult", "dim": 8},
                "stages": [{"epochs": 1}],
                "train": {"optimizer": "adam", "lr": 0.01, "batch_size": 512, "progress": False},
            }
        )
    )
    ds = work / "wn18rr-mini"
    for run in ("teacher", "distmult-32-none-s2"):
        result = CliRunner().invoke(cli, ["-q", "train", str(cfg), "--out", str(ds / run)])
        assert result.exit_code == 0, result.output
    shutil.copytree(ds / "distmult-32-none-s2", ds / "distmult-32-none-s1")
    (ds / "distmult-32-bkd-s0").mkdir()  # unfinished: left out
    return work


def test_rows_are_the_teacher_and_each_cells_lowest_finished_seed(work: Path) -> None:
    from kd_relations import main

    out = work.parent / "out"
    args = ["--work", str(work), "--out", str(out), "--datasets", "wn18rr-mini"]
    assert main([*args, "--students", "distmult-32", "--methods", "none", "bkd"]) == 0
    doc = json.loads((out / "kd_relations.json").read_text())
    (ds,) = doc["rows"]
    assert ds["runs"] == ["teacher", "distmult-32-none-s1"]
    want = evaluate_run(work / "wn18rr-mini" / "teacher" / "best.safetensors", by_relation=True)
    assert want.breakdown is not None
    for name, g in want.breakdown["relations"].items():
        got = ds["relations"][name]
        assert got["facts"] == g["facts"] and got["category"] == g["category"]
        assert got["runs"]["teacher"]["hits@1"] == pytest.approx(100 * g["both"]["hits@1"])
        assert got["runs"]["teacher"]["mrr"] == pytest.approx(100 * g["both"]["mrr"])
    md = (out / "kd_relations.md").read_text()
    assert "## wn18rr-mini: Hits@1 (%)" in md and "| distmult-32-none-s1 |" in md.replace("  ", "")


def test_nothing_finished_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from kd_relations import main

    (tmp_path / "w" / "wn18rr").mkdir(parents=True)
    with pytest.raises(SystemExit) as exit_:
        main(["--work", str(tmp_path / "w"), "--out", str(tmp_path / "out")])
    assert exit_.value.code == 1
    assert "nothing finished" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_committed_table_is_the_render_of_its_json() -> None:
    from kd_relations import markdown

    doc = json.loads((RESULTS / "kd_relations.json").read_text())
    assert (RESULTS / "kd_relations.md").read_text() == markdown(doc)
    assert doc["rows"] and "teacher" in doc["rows"][0]["runs"]


def test_a_missing_dataset_folder_is_named(tmp_path: Path) -> None:
    from kd_relations import main

    with pytest.raises(SystemExit, match="w/fb15k237: no such run folder"):
        main(
            ["--work", str(tmp_path / "w"), "--datasets", "fb15k237", "--out", str(tmp_path / "o")]
        )
    assert not (tmp_path / "o").exists()
