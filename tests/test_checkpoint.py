"""Checkpoints: exact round trips (model, optimiser), atomic writes, clear errors for bad files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from kgdistill.checkpoint import load_checkpoint, load_model, save_checkpoint
from kgdistill.errors import CheckpointError
from kgdistill.models import Vocab, build_model


def _vocab(kg) -> Vocab:
    return Vocab(kg.num_entities, kg.num_relations, kg.time.labels)


def _meta(name: str, kwargs: dict, kg) -> dict:
    return {
        "model": {"name": name, "kwargs": kwargs},
        "id_maps": kg.id_maps(),
        "time": kg.time.to_dict(),
    }


@pytest.mark.parametrize("opt", ["adam", "adagrad"])
def test_round_trip_with_optimizer(tmp_path: Path, tiny_tkg, opt: str) -> None:
    model = build_model({"name": "tntcomplex", "dim": 8}, _vocab(tiny_tkg))
    optim = {"adam": torch.optim.Adam, "adagrad": torch.optim.Adagrad}[opt](
        model.parameters(), lr=0.1
    )
    q = tiny_tkg.splits["train"][:32]
    for _ in range(2):
        optim.zero_grad()
        torch.nn.functional.cross_entropy(model(q).scores, q[:, 2]).backward()
        optim.step()
    path = tmp_path / "ck.safetensors"
    save_checkpoint(
        path, model=model, optimizer=optim, meta=_meta("tntcomplex", {"dim": 8}, tiny_tkg), rng=True
    )
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")], (
        "temporary file left behind"
    )
    ckpt = load_checkpoint(path)
    clone = load_model(ckpt)
    torch.testing.assert_close(clone.score_all(q), model.score_all(q), rtol=0, atol=0)
    optim2 = type(optim)(clone.parameters(), lr=0.1)
    optim2.load_state_dict(ckpt.optimizer_state())
    for a, b in zip(
        optim.state_dict()["state"].values(), optim2.state_dict()["state"].values(), strict=True
    ):
        for k in a:
            torch.testing.assert_close(torch.as_tensor(a[k]), torch.as_tensor(b[k]), rtol=0, atol=0)
    assert ckpt.vocab == _vocab(tiny_tkg)
    assert ckpt.time.labels == tiny_tkg.time.labels


def test_truncated_checkpoint(tmp_path: Path, tiny_kg) -> None:
    model = build_model({"name": "distmult", "dim": 8}, _vocab(tiny_kg))
    path = tmp_path / "best.safetensors"
    save_checkpoint(path, model=model, meta=_meta("distmult", {"dim": 8}, tiny_kg))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(path)
    path.write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(tmp_path)  # a run folder resolves to best.safetensors


def test_foreign_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "nope.safetensors")
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(CheckpointError, match="not a kgdistill checkpoint"):
        load_checkpoint(foreign)


def test_checkpoint_from_another_model(tmp_path: Path, tiny_kg) -> None:
    path = tmp_path / "ck.safetensors"
    model = build_model({"name": "distmult", "dim": 8}, _vocab(tiny_kg))
    save_checkpoint(path, model=model, meta=_meta("distmult", {"dim": 8}, tiny_kg))
    other = build_model({"name": "complex", "dim": 8}, _vocab(tiny_kg))
    with pytest.raises(CheckpointError, match=r"holds a 'distmult' model .* does not fit"):
        load_model(load_checkpoint(path), other)
    wider = build_model({"name": "distmult", "dim": 16}, _vocab(tiny_kg))
    with pytest.raises(CheckpointError, match="does not fit"):
        load_model(load_checkpoint(path), wider)
