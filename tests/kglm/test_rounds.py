"""Alternating KG -> LM -> KG rounds on the FB15k-237 subset with a tiny DistMult and the tiny local encoder:
one record per round, facts added only from candidates (never an evaluated fact), the stopping rule, and a rerun
that reuses the finished rounds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kgdistill.data import build_kg, read_static_names
from kgdistill.errors import ConfigError
from kgdistill.kglm.rounds import RoundsConfig, run_rounds

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def _cfg(encoder: Path, **extra: object) -> RoundsConfig:
    return RoundsConfig(
        data=str(FIXTURES / "fb15k237-mini"),
        hold_out=0.2,
        kge={
            "model": {"name": "distmult", "dim": 16, "init_scale": 0.1},
            "stages": [{"epochs": 2}],
            "train": {"optimizer": "adam", "lr": 0.02, "batch_size": 500, "progress": False},
        },
        lm={
            "encoder": str(encoder),
            "max_length": 24,
            "num_labels": 6,
            "test_entities": 0.2,
            "epochs": 1,
            "batch_size": 64,
            "lr": 1e-3,
            "head_lr": 1e-2,
        },
        k=3,
        max_queries=150,
        threshold=None,
        top=25,
        **extra,
    )


@pytest.mark.slow
def test_rounds_add_facts_stop_and_resume(tiny_encoder_folder: Path, tmp_path: Path) -> None:
    records = run_rounds(_cfg(tiny_encoder_folder, max_rounds=2), tmp_path)
    assert [r["round"] for r in records] == [0, 1][: len(records)] and len(records) >= 1
    first = records[0]
    assert first["added"] == 25 and 0 <= first["precision"] <= 1
    assert 0 <= first["lm"]["test"]["accuracy"] <= 1 and first["kge"]["valid_mrr"] > 0
    kg = build_kg(read_static_names(FIXTURES / "fb15k237-mini"))
    evaluated = {tuple(f) for s in ("valid", "test") for f in kg.splits[s][:, :3].tolist()}
    added = {tuple(f) for f in records[-1]["added_total"]}
    assert not added & evaluated
    graph = build_kg(read_static_names(tmp_path / "graph-1"))
    assert len(graph.splits["train"]) == first["graph_facts"] + 25
    # a rerun reuses every finished round
    stamp = {p: p.stat().st_mtime for p in tmp_path.rglob("round.json")}
    again = run_rounds(_cfg(tiny_encoder_folder, max_rounds=2), tmp_path)
    assert [r["added"] for r in again] == [r["added"] for r in records]
    assert stamp == {p: p.stat().st_mtime for p in tmp_path.rglob("round.json")}
    assert json.loads((tmp_path / "rounds-config.json").read_text())["hold_out"] == 0.2


def test_a_dataset_whose_ids_do_not_follow_the_labels_is_one_error(
    tiny_encoder_folder: Path, tmp_path: Path
) -> None:
    cfg = _cfg(tiny_encoder_folder)
    cfg.data = str(FIXTURES / "fb15k237n-mini")  # OpenKE ids, not in label order
    with pytest.raises(ConfigError, match="labelled triples"):
        run_rounds(cfg, tmp_path)
