"""Short real runs of the PLM models with the packaged all-MiniLM-L6-v2 on the WN18RR subset, with the dataset's
names and definitions (kg-bert files of the full dataset: without them the subset's texts are synset offsets,
which no text model can rank by): each ranks every entity far better than random after a few dozen steps (a
random rank among E entities has an expected reciprocal of H_E / E). The generative model is left out here:
ranking every entity with SmolLM2-135M costs one LM pass per entity and query, minutes on a CPU even for a few
queries (tests/plm/test_generative.py trains it)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from kgdistill import api
from kgdistill.config import parse_config

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"


def _random_mrr(num_entities: int) -> float:
    return sum(1 / k for k in range(1, num_entities + 1)) / num_entities


def _config(name: str, **train: Any) -> dict[str, Any]:
    cfg = yaml.safe_load((REPO / "configs" / "plm" / f"{name}-wn18rr.yaml").read_text())
    cfg["data"] = {"name": str(FIXTURES / "wn18rr-mini")}
    cfg["model"] |= {"max_length": 24}
    cfg["stages"][0]["epochs"] = 1
    cfg["train"] |= {
        "scheduler": {"name": "constant", "warmup": 0},
        "amp": False,
        "progress": False,
        "device": "cpu",
        "eval_every": 1,
        "patience": 0,
        "eval_max_queries": 10,
        **train,
    }
    return cfg


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "train", "queries"),
    [
        # 20 steps: the shipped config's self-negatives slow the first steps (after 10: MRR 0.026, 5x chance;
        # after 20: 0.10, 20x)
        ("bi_encoder", {"batch_size": 32, "epoch_queries": 640}, 50),
        (
            "cross_encoder",
            {
                "batch_size": 8,
                "negatives": 7,
                "epoch_queries": 320,
                "eval_max_queries": 2,
                "param_groups": [{"match": ["encoder.*"], "lr": 1.0e-4}],
            },
            4,
        ),
    ],
)
def test_a_short_run_beats_random_ranking_by_far(
    name: str, train: dict[str, Any], queries: int, tmp_path: Path, data_root: Path
) -> None:
    cfg = _config(name, **train)
    cfg["eval"] |= {"max_queries": queries, "batch_size": 4}
    result = api.train(parse_config(cfg), out=tmp_path / name)
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    entities = metrics["plm"]["texts"]["entities"]
    assert entities["sources"] == {"kg-bert": entities["total"]}, (
        "the dataset's texts were not found"
    )
    chance = _random_mrr(result.model.entities.tokens.shape[0])
    assert metrics["protocol"]["queries"] == 2 * queries
    assert metrics["sides"]["both"]["mrr"] > 10 * chance, (metrics["sides"]["both"], chance)
