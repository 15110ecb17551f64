"""Fixtures for distillation tests: teacher checkpoints made from real graphs."""

from __future__ import annotations

from pathlib import Path

import pytest

from kgdistill import api
from kgdistill.checkpoint import save_checkpoint
from kgdistill.config import parse_config
from kgdistill.data import KG
from kgdistill.models import Vocab, build_model


def save_teacher(path: Path, kg: KG, name: str = "tntcomplex", dim: int = 12, **kwargs) -> Path:
    """A (randomly initialised) model over ``kg``'s vocabulary saved as a self-describing checkpoint."""
    model = build_model(
        {"name": name, "dim": dim, **kwargs},
        Vocab(kg.num_entities, kg.num_relations, kg.time.labels),
    )
    save_checkpoint(
        path,
        model=model,
        meta={
            "model": {"name": name, "kwargs": {"dim": dim, **kwargs}},
            "id_maps": kg.id_maps(),
            "time": kg.time.to_dict(),
            "config": {},
        },
    )
    return path


@pytest.fixture(name="save_teacher")
def _save_teacher_fixture():
    """The :func:`save_teacher` helper, for tests."""
    return save_teacher


@pytest.fixture
def teacher_path(tmp_path: Path, tiny_tkg: KG) -> Path:
    return save_teacher(tmp_path / "teacher.safetensors", tiny_tkg)


FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
YAGO_MINI = {
    "name": str(FIXTURES / "yago11k-mini"),
    "time": {"granularity": "bins", "min_bin_size": 100, "interval_mode": "start"},
}
YAGO_EVAL = {"split": "test", "ties": "realistic", "time_aware": True}


@pytest.fixture(name="yago_mini", scope="session")
def _yago_mini() -> dict:
    """``data`` and ``eval`` config sections for the YAGO11k subset (year bins of at least 100 facts)."""
    return {"data": YAGO_MINI, "eval": YAGO_EVAL}


@pytest.fixture(scope="session")
def yago_teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A TNTComplEx-64 teacher trained on the YAGO11k subset (test MRR about 0.09)."""
    cfg = parse_config(
        {
            "seed": 0,
            "data": YAGO_MINI,
            "model": {"name": "tntcomplex", "dim": 64},
            "stages": [
                {
                    "epochs": 20,
                    "objective": [{"loss": "supervised_ce"}, {"loss": "n3", "weight": 0.1}],
                }
            ],
            "train": {"batch_size": 500, "optimizer": "adagrad", "lr": 0.1, "progress": False},
            "eval": YAGO_EVAL,
        }
    )
    return api.train(cfg, out=tmp_path_factory.mktemp("yago") / "teacher").run_dir
