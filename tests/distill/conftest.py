"""Fixtures for distillation tests: teacher checkpoints made from real graphs."""

from __future__ import annotations

from pathlib import Path

import pytest

from kgdistill.checkpoint import save_checkpoint
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
