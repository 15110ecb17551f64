"""The Predictor: a run loaded once, label indexes, batched top-k, answers known in training marked or hidden."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner

from kgdistill import api
from kgdistill.cli import cli
from kgdistill.config import parse_config
from kgdistill.errors import KGDistillError
from kgdistill.predict import LabelIndex, Predictor

FIXTURES = Path(__file__).parent / "fixtures"
YAGO_MINI = str(FIXTURES / "yago11k-mini")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """TA-DistMult-8, 2 epochs on a real YAGO11k subset."""
    cfg = parse_config(
        {
            "data": {"name": YAGO_MINI},
            "model": {"name": "ta_distmult", "dim": 8},
            "stages": [{"epochs": 2}],
            "train": {"optimizer": "adam", "lr": 0.01, "batch_size": 1000, "progress": False},
        }
    )
    return api.train(cfg, out=tmp_path_factory.mktemp("predict") / "run").run_dir


def test_label_index_exact_normalised_ambiguous_and_close() -> None:
    index = LabelIndex(["<Paris>", "<Paris,_Texas>", "<New_York>", "new york"], "entity")
    assert index.id("<Paris>") == 0
    assert index.id("paris") == 0  # case, <> and _ ignored
    assert index.id("Paris, Texas") == 1
    with pytest.raises(KGDistillError, match="ambiguous"):
        index.id("New York")
    with pytest.raises(KGDistillError, match=r"unknown entity 'Pariss' \(close: <Paris>"):
        index.id("Pariss")


def test_topk_matches_the_model_and_marks_known_answers(run_dir: Path) -> None:
    p = Predictor.load(run_dir)
    kg = api.load_data(parse_config({"data": {"name": YAGO_MINI}, "model": {"name": "ttranse"}}))
    facts = kg.splits["train"][:16]
    scores, ids = p.topk_ids(facts, k=kg.num_entities)
    with torch.no_grad():
        ref = p.model.score_all(facts)
    torch.testing.assert_close(scores, ref.sort(dim=1, descending=True).values)
    known = p.is_known(facts, ids)
    assert known is not None
    rank_of_true = (ids == facts[:, 2:3]).float().argmax(dim=1)
    assert bool(
        known[torch.arange(16), rank_of_true].all()
    )  # each training fact's own answer is known
    _, kept = p.topk_ids(facts, k=kg.num_entities, exclude_known=True)
    hidden = p.is_known(facts, kept)
    assert hidden is not None
    # known answers sink to -inf: the best answers are never known ones
    assert not bool(hidden[:, 0].any())


def test_query_by_label_with_time_echo(run_dir: Path) -> None:
    p = Predictor.load(run_dir)
    q = p.query("wasBornIn", head="<Xavi_Moro>", time="1990")
    assert q.direction == "tail" and q.anchor == "<Xavi_Moro>" and q.time in p.time.labels
    answers = p.topk(q, 3)
    assert [a.rank for a in answers] == [1, 2, 3]
    assert answers[0].score >= answers[1].score >= answers[2].score
    assert all(a.known is not None for a in answers)
    reverse = p.query("<wasBornIn>", tail="Paris", time="1990")
    assert reverse.row[1] == p.relations.id("wasBornIn") + len(p.relations)
    with pytest.raises(KGDistillError, match="temporal: give a time"):
        p.query("wasBornIn", head="<Xavi_Moro>")
    with pytest.raises(KGDistillError, match="exactly one of head and tail"):
        p.query("wasBornIn", head="<Xavi_Moro>", tail="Paris", time="1990")


def test_without_training_data_answers_are_unmarked(run_dir: Path, tmp_path: Path) -> None:
    p = Predictor.load(run_dir, known_facts=False)
    answers = p.topk(p.query("wasBornIn", head="<Xavi_Moro>", time="1990"), 2)
    assert all(a.known is None for a in answers)
    with pytest.raises(KGDistillError, match="cannot leave out known answers"):
        p.topk(p.query("wasBornIn", head="<Xavi_Moro>", time="1990"), 2, exclude_known=True)


def test_cli_hide_known(run_dir: Path) -> None:
    args = ["-q", "predict", str(run_dir), "--head", "<Xavi_Moro>", "-r", "wasBornIn"]
    out = CliRunner().invoke(cli, [*args, "--time", "1990", "-k", "1000"], catch_exceptions=False)
    assert out.exit_code == 0, out.output
    rows = [ln.split() for ln in out.output.splitlines()[2:]]
    assert any(r[2] == "*" for r in rows if len(r) == 4)  # Paris, known in training, is marked
    hidden = CliRunner().invoke(
        cli, [*args, "--time", "1990", "-k", "1000", "--hide-known"], catch_exceptions=False
    )
    assert hidden.exit_code == 0 and "known answers hidden" in hidden.output
    assert all(len(ln.split()) == 3 for ln in hidden.output.splitlines()[2:])  # no mark column
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert cfg["data"]["name"] == YAGO_MINI
