"""Cached teachers: what is read back equals what the teacher said (top-k or full rows), clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from kgdistill.data.batching import both_directions
from kgdistill.distill.cache import CachedTeacher, write_cache
from kgdistill.distill.teachers import KGETeacher
from kgdistill.errors import CheckpointError, ConfigError


@pytest.fixture
def teacher(teacher_path: Path, tiny_tkg) -> KGETeacher:
    return KGETeacher(path=str(teacher_path), kg=tiny_tkg)


def test_full_rows_round_trip(tmp_path: Path, teacher: KGETeacher, tiny_tkg) -> None:
    path = write_cache(
        tmp_path / "full.safetensors", teacher, tiny_tkg, k=None, batch_size=64, progress=False
    )
    cached = CachedTeacher(path=str(path), kg=tiny_tkg)
    q = both_directions(tiny_tkg.splits["train"], tiny_tkg.num_relations)
    out, ref = cached(q), teacher(q)
    # every query cached, every score finite: no (B, E) mask for the terms to read
    assert out.mask is None
    torch.testing.assert_close(out.scores, ref.scores.half().float())
    cand = torch.randint(tiny_tkg.num_entities, (len(q), 7))
    torch.testing.assert_close(cached(q, cand).scores, ref.scores.gather(1, cand).half().float())
    assert out.h is None and out.t is None  # a cache holds scores only


def test_topk_round_trip(tmp_path: Path, teacher: KGETeacher, tiny_tkg) -> None:
    path = write_cache(tmp_path / "top.safetensors", teacher, tiny_tkg, k=5, progress=False)
    cached = CachedTeacher(path=str(path), kg=tiny_tkg)
    q = both_directions(tiny_tkg.splits["train"][:100], tiny_tkg.num_relations)
    sparse, ref = cached(q), teacher(q)
    assert (
        sparse.scores.shape == sparse.ids.shape == (len(q), 5)
    )  # 1-N steps get the top-k as it is
    out = sparse.dense(tiny_tkg.num_entities)
    assert out.ids is None and out.scores.shape == ref.scores.shape
    assert (out.mask.sum(1) == 5).all()
    top = torch.topk(ref.scores, 5, dim=1)
    assert torch.equal(sparse.ids.sort(1).values, top.indices.sort(1).values)
    assert torch.equal(
        out.mask.nonzero()[:, 1].view(-1, 5).sort(1).values, top.indices.sort(1).values
    )
    torch.testing.assert_close(out.scores.gather(1, top.indices), top.values)
    assert cached.meta["k"] == 5 and cached.meta["queries"] <= 2 * len(tiny_tkg.splits["train"])


def test_queries_not_in_the_cache_are_masked(tmp_path: Path, teacher: KGETeacher, tiny_tkg) -> None:
    path = write_cache(
        tmp_path / "c.safetensors", teacher, tiny_tkg, split="valid", k=3, progress=False
    )
    cached = CachedTeacher(path=str(path), kg=tiny_tkg)
    valid_q = both_directions(tiny_tkg.splits["valid"], tiny_tkg.num_relations)
    keys_valid = {tuple(r) for r in valid_q[:, [0, 1, 3]].tolist()}
    train_q = both_directions(tiny_tkg.splits["train"], tiny_tkg.num_relations)
    outside = torch.tensor([tuple(r) not in keys_valid for r in train_q[:, [0, 1, 3]].tolist()])
    out = cached(train_q).dense(tiny_tkg.num_entities)
    assert outside.any() and not out.mask[outside].any()
    assert out.mask[~outside].sum(1).eq(3).all()


def test_cache_errors(tmp_path: Path, teacher: KGETeacher, tiny_tkg, yago) -> None:
    with pytest.raises(ConfigError, match="teacher cache not found"):
        CachedTeacher(path=str(tmp_path / "none.safetensors"), kg=tiny_tkg)
    path = write_cache(tmp_path / "c.safetensors", teacher, tiny_tkg, k=2, progress=False)
    with pytest.raises(ConfigError, match="was written for 520 entities"):
        CachedTeacher(path=str(path), kg=yago)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="truncated or corrupt teacher cache"):
        CachedTeacher(path=str(path), kg=tiny_tkg)


def test_topk_kd_equals_the_masked_full_row_kd(
    tmp_path: Path, teacher: KGETeacher, tiny_tkg
) -> None:
    """kd_kl on a (B, k) top-k output gives the loss and gradient of the same rows expanded and masked."""
    from kgdistill.data.batching import Batch
    from kgdistill.losses.kd import BKD
    from kgdistill.models.base import ModelOutput

    path = write_cache(tmp_path / "top.safetensors", teacher, tiny_tkg, k=7, progress=False)
    cached = CachedTeacher(path=str(path), kg=tiny_tkg)
    q = both_directions(tiny_tkg.splits["train"][:50], tiny_tkg.num_relations)
    sparse = cached(q)
    full = sparse.dense(tiny_tkg.num_entities)
    grads, losses = [], []
    for t_out in (sparse, full):
        s = torch.randn(len(q), tiny_tkg.num_entities, generator=torch.Generator().manual_seed(0))
        s.requires_grad_(True)
        loss = BKD(temperature=2.0)(ModelOutput(scores=s), t_out, Batch(q, None))
        loss.backward()
        losses.append(loss.detach())
        grads.append(s.grad)
    torch.testing.assert_close(losses[0], losses[1])
    torch.testing.assert_close(grads[0], grads[1])
    assert float(losses[0]) > 0
