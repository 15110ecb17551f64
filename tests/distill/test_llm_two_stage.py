"""The LLM scorer and the LLM-guided two-stage distillation, end to end on a real YAGO11k subset.

The LLM scorer encodes the subset's real entity names, relation phrases and time phrases with the packaged
all-MiniLM-L6-v2 (offline), fits its head on the training facts and is evaluated like any model; then a
TA-DistMult student is distilled in two stages (TNTComplEx teacher, then the LLM scorer's distributions).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from kgdistill import api
from kgdistill.checkpoint import load_checkpoint, load_model
from kgdistill.config import parse_config
from kgdistill.distill.teachers import KGETeacher
from kgdistill.models.text import LLMScorer

pytestmark = pytest.mark.slow  # end to end: real training runs


@pytest.fixture(scope="module")
def embedding_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("embeddings")


@pytest.fixture(scope="module")
def llm_run(yago_mini: dict[str, Any], embedding_cache: Path, tmp_path_factory) -> Path:
    cfg = parse_config(
        {
            "seed": 0,
            **yago_mini,
            "model": {
                "name": "llm_scorer",
                "dim": 64,
                "hidden": 128,
                "cache_dir": str(embedding_cache),
            },
            "stages": [{"epochs": 15, "objective": [{"loss": "supervised_ce"}]}],
            "train": {"batch_size": 500, "optimizer": "adam", "lr": 0.003, "progress": False},
        }
    )
    return api.train(cfg, out=tmp_path_factory.mktemp("llm") / "llm_scorer").run_dir


def test_llm_scorer_learns_from_real_text(llm_run: Path) -> None:
    metrics = json.loads((llm_run / "metrics.json").read_text())
    # 1,000 candidates: a random ranking has MRR about 0.007
    assert metrics["sides"]["both"]["mrr"] > 0.05
    text = metrics["text"]
    assert text["encoder"].startswith("sentence_transformers") and text["dim"] == 384
    assert text["texts"]["entities"]["coverage"] == 1.0  # YAGO names are readable
    assert metrics["model"] == "llm_scorer"


def test_llm_scorer_checkpoint_loads_without_the_encoder(llm_run: Path, yago_mini) -> None:
    ckpt = load_checkpoint(llm_run / "best.safetensors")
    assert ckpt.meta["model"]["features"]["text"]["dim"] == 384
    model = load_model(ckpt).eval()
    assert isinstance(model, LLMScorer)
    assert model.entities.text.abs().sum() > 0  # the frozen encodings travel in the checkpoint
    kg = api.load_data(parse_config({**yago_mini, "model": {"name": "ttranse"}}))
    q = kg.splits["test"][:8]
    with torch.no_grad():
        scores = model.score_all(q)
        again = model.score_all(q)  # the cached entity table gives the same scores
    assert scores.shape == (8, kg.num_entities) and torch.equal(scores, again)
    teacher = KGETeacher(path=str(llm_run), kg=kg)
    assert teacher.identity and torch.equal(teacher(q).scores, scores)


def test_second_run_reads_every_vector_from_the_cache(
    llm_run: Path, embedding_cache: Path, yago_mini
) -> None:
    shards = sorted(embedding_cache.rglob("*.safetensors"))
    assert shards
    stamps = [p.stat().st_mtime_ns for p in shards]
    out = api.encode(
        yago_mini["data"]["name"],
        time=yago_mini["data"]["time"],
        cache_dir=str(embedding_cache),
        progress=False,
    )
    assert out["dim"] == 384
    assert sorted(embedding_cache.rglob("*.safetensors")) == shards  # nothing new encoded
    assert [p.stat().st_mtime_ns for p in shards] == stamps


def test_two_stage_distillation_from_kge_and_llm_teachers(
    yago_teacher: Path, llm_run: Path, yago_mini, tmp_path: Path
) -> None:
    l1 = [
        {"loss": "supervised_ce"},
        {"loss": "fitnet", "teacher": "kge", "fields": ["h", "r", "t"]},
        {"loss": "kd_kl", "teacher": "kge", "temperature": 4.0},
    ]
    cfg = parse_config(
        {
            "seed": 0,
            **yago_mini,
            "model": {"name": "ta_distmult", "dim": 8},
            "teachers": {
                "kge": {"name": "checkpoint", "path": str(yago_teacher)},
                "llm": {"name": "checkpoint", "path": str(llm_run)},
            },
            "stages": [
                {"name": "teacher", "epochs": 3, "objective": l1},
                {
                    "name": "llm",
                    "epochs": 3,
                    "objective": [
                        *l1,
                        {"loss": "huber", "teacher": "llm", "weight": 1.0, "compare": "probs"},
                        {"loss": "mse", "teacher": "llm", "weight": 1.0, "compare": "probs"},
                    ],
                },
            ],
            "train": {"batch_size": 500, "optimizer": "adam", "lr": 0.01, "progress": False},
        }
    )
    result = api.distill(cfg, out=tmp_path / "ours")
    events = [json.loads(x) for x in (result.run_dir / "log.jsonl").read_text().splitlines()]
    epochs = [e for e in events if e["event"] == "epoch"]
    assert [e["stage"] for e in epochs] == [0, 0, 0, 1, 1, 1]
    assert all("huber[llm]" not in e and "fitnet[kge]" in e for e in epochs[:3])
    assert all(e["huber[llm]"] > 0 and e["mse[llm]"] > 0 for e in epochs[3:])
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    assert metrics["teachers"]["llm"]["model"] == "llm_scorer"
    assert metrics["sides"]["both"]["mrr"] > 0.02
