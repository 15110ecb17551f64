"""The PLM as a teacher: a trained bi-encoder (the tiny local encoder on the WN18RR subset) teaches a ComplEx
student through the distillation engine, alone and beside a ComplEx teacher; joint scorers are refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from kgdistill import api
from kgdistill.checkpoint import save_checkpoint
from kgdistill.config import parse_config
from kgdistill.data import KG
from kgdistill.distill.teachers import KGETeacher
from kgdistill.errors import ConfigError
from kgdistill.models import Vocab, build_model
from kgdistill.plm import plm_features

from .test_train_bi_encoder import FIXTURES, _config

TRAIN = {"batch_size": 256, "optimizer": "adam", "lr": 0.01, "progress": False, "device": "cpu"}


def _student(teachers: dict[str, Any], objective: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "name": "complex-student",
        "seed": 0,
        "data": {"name": str(FIXTURES / "wn18rr-mini")},
        "model": {"name": "complex", "dim": 16, "init_scale": 0.1},
        "teachers": teachers,
        "stages": [{"epochs": 2, "objective": objective}],
        "train": {**TRAIN, "eval_every": 2},
        "eval": {"split": "test", "ties": "realistic"},
    }


@pytest.mark.slow
def test_a_bi_encoder_teaches_a_complex_student(tiny_encoder_folder: Path, tmp_path: Path) -> None:
    plm = api.train(
        parse_config(_config(tiny_encoder_folder, epochs=1)), out=tmp_path / "bi"
    ).run_dir
    kge = api.train(
        parse_config(
            {
                **_student({}, [{"loss": "supervised_ce"}]),
                "name": "complex-teacher",
                "model": {"name": "complex", "dim": 32, "init_scale": 0.1},
            }
        ),
        out=tmp_path / "kge",
    ).run_dir
    teachers = {"plm": {"name": "checkpoint", "path": str(plm)}}
    objective = [
        {"loss": "supervised_ce"},
        {"loss": "kd_kl", "teacher": "plm", "temperature": 2.0, "weight": 0.5},
    ]
    one = api.distill(parse_config(_student(teachers, objective)), out=tmp_path / "one").run_dir
    both = api.distill(
        parse_config(
            _student(
                {**teachers, "kge": {"name": "checkpoint", "path": str(kge)}},
                [*objective, {"loss": "kd_kl", "teacher": "kge", "weight": 0.5}],
            )
        ),
        out=tmp_path / "both",
    ).run_dir
    for run, names in ((one, {"plm"}), (both, {"plm", "kge"})):
        metrics = json.loads((run / "metrics.json").read_text())
        assert set(metrics["teachers"]) == names
        assert metrics["teachers"]["plm"]["model"] == "bi_encoder"
        epochs = [
            json.loads(x)
            for x in (run / "log.jsonl").read_text().splitlines()
            if '"epoch"' in x and '"event": "epoch"' in x
        ]
        assert epochs and all(e["kd_kl[plm]"] > 0 for e in epochs)
        assert 0 < metrics["sides"]["both"]["mrr"] <= 1


def test_a_cross_encoder_is_no_teacher(
    wn_mini: KG, tiny_encoder_folder: Path, tmp_path: Path
) -> None:
    features = plm_features(wn_mini, encoder=str(tiny_encoder_folder), max_length=16)
    torch.manual_seed(0)
    model = build_model(
        {"name": "cross_encoder"},
        Vocab(wn_mini.num_entities, wn_mini.num_relations),
        {"plm": features},
    )
    meta = {
        "model": {"name": "cross_encoder", "kwargs": {}, "features": {"plm": features.meta()}},
        "id_maps": wn_mini.id_maps(),
        "time": wn_mini.time.to_dict(),
    }
    save_checkpoint(tmp_path / "x.safetensors", model=model, meta=meta)
    with pytest.raises(ConfigError, match=r"scores \(query, entity\) pairs jointly.*re-ranker"):
        KGETeacher(path=str(tmp_path / "x.safetensors"), kg=wn_mini)
