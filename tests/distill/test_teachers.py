"""Checkpoint teachers: identical outputs without alignment, label alignment, coverage refusal, masks."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from kgdistill.checkpoint import load_checkpoint, load_model
from kgdistill.data import build_kg, read_hyte
from kgdistill.data.batching import both_directions
from kgdistill.distill.teachers import KGETeacher, align
from kgdistill.errors import ConfigError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def test_align() -> None:
    assert align(["a", "b", "z"], ["b", "a", "c"]).tolist() == [1, 0, -1]


def test_identity_teacher_matches_its_model(teacher_path: Path, tiny_tkg) -> None:
    teacher = KGETeacher(path=str(teacher_path), kg=tiny_tkg)
    model = load_model(load_checkpoint(teacher_path))
    q = both_directions(tiny_tkg.splits["train"][:20], tiny_tkg.num_relations)
    out = teacher(q)
    ref = model(q)
    assert teacher.identity and out.mask is None
    torch.testing.assert_close(out.scores, ref.scores)
    torch.testing.assert_close(out.h, ref.h)
    torch.testing.assert_close(out.r, ref.r)
    cand = torch.stack([q[:, 2], q[:, 0]], dim=1)
    torch.testing.assert_close(teacher(q, cand).scores, model(q, cand).scores)
    only_h = teacher(q, None, frozenset({"h"}))
    assert only_h.scores.numel() == 0 and only_h.t is None and only_h.h is not None
    assert not any(p.requires_grad for p in teacher.parameters())


def _permuted(kg_raw, seed: int = 0):
    """The same real graph with entities and relations listed in another order (another tool's ids)."""
    g = torch.Generator().manual_seed(seed)
    pe = torch.randperm(len(kg_raw.entity_labels), generator=g).numpy()
    pr = torch.randperm(len(kg_raw.relation_labels), generator=g).numpy()
    ents = [kg_raw.entity_labels[i] for i in pe]  # new id j holds old entity pe[j]
    rels = [kg_raw.relation_labels[i] for i in pr]
    inv_e, inv_r = pe.argsort(), pr.argsort()
    splits = {}
    for s, sp in kg_raw.splits.items():
        t = sp.triples.copy()
        t[:, 0], t[:, 2], t[:, 1] = inv_e[t[:, 0]], inv_e[t[:, 2]], inv_r[t[:, 1]]
        splits[s] = replace(sp, triples=t)
    return replace(kg_raw, entity_labels=ents, relation_labels=rels, splits=splits)


def test_alignment_by_labels_gives_the_teachers_scores(
    tmp_path: Path, tiny_tkg, save_teacher
) -> None:
    raw = read_hyte(FIXTURES / "wikidata12k-mini")
    other = build_kg(_permuted(raw))  # the teacher's graph: same facts, other ids
    path = save_teacher(tmp_path / "t.safetensors", other)
    teacher = KGETeacher(path=str(path), kg=tiny_tkg)
    assert not teacher.identity
    assert teacher.coverage == {"entities": 1.0, "relations": 1.0, "times": 1.0}
    model = load_model(load_checkpoint(path))
    q = both_directions(tiny_tkg.splits["test"], tiny_tkg.num_relations)
    out = teacher(q)
    # the same queries written in the teacher's ids
    e_map = torch.tensor([other.entity_ids[lab] for lab in tiny_tkg.entity_labels])
    r_map = torch.tensor([other.relation_ids[lab] for lab in tiny_tkg.relation_labels])
    r_map = torch.cat([r_map, r_map + other.num_relations])
    tq = q.clone()
    tq[:, 0], tq[:, 2], tq[:, 1] = e_map[q[:, 0]], e_map[q[:, 2]], r_map[q[:, 1]]
    ref = model.score_all(tq)[:, e_map]  # columns in the student's entity order
    torch.testing.assert_close(out.scores, ref)
    assert out.mask is None  # the teacher knows every entity: no mask to carry
    torch.testing.assert_close(out.h, model.encode(tq)[0])


def test_partial_coverage_masks_unknown_entities(tmp_path: Path, tiny_tkg, save_teacher) -> None:
    raw = read_hyte(FIXTURES / "wikidata12k-mini")
    renamed = list(raw.entity_labels)
    for i in range(0, len(renamed), 20):  # 5% of the entities are unknown to the teacher
        renamed[i] = renamed[i] + "_elsewhere"
    path = save_teacher(tmp_path / "t.safetensors", build_kg(replace(raw, entity_labels=renamed)))
    teacher = KGETeacher(path=str(path), kg=tiny_tkg, min_coverage=0.9)
    assert teacher.coverage["entities"] == pytest.approx(
        1 - len(range(0, len(renamed), 20)) / len(renamed)
    )
    q = both_directions(tiny_tkg.splits["train"][:50], tiny_tkg.num_relations)
    out = teacher(q)
    unknown = torch.zeros(tiny_tkg.num_entities, dtype=torch.bool)
    unknown[::20] = True
    head_unknown = unknown[q[:, 0]]
    assert not out.mask[
        head_unknown
    ].any()  # the teacher cannot answer a query about an unknown head
    assert (out.mask[~head_unknown] == ~unknown).all()  # and never proposes an unknown entity
    with pytest.raises(ConfigError, match=r"knows only 95\.\d% of the 520 entities"):
        KGETeacher(path=str(path), kg=tiny_tkg, min_coverage=0.99)


def test_teacher_of_another_graph_is_refused(teacher_path: Path, yago) -> None:
    with pytest.raises(ConfigError, match=r"knows only 0\.0% .* trained on another graph"):
        KGETeacher(path=str(teacher_path), kg=yago)


def test_static_teacher_for_a_temporal_student(tmp_path: Path, tiny_tkg, save_teacher) -> None:
    path = save_teacher(tmp_path / "s.safetensors", tiny_tkg, name="complex", dim=8)
    teacher = KGETeacher(path=str(path), kg=tiny_tkg)
    model = load_model(load_checkpoint(path))
    q = both_directions(tiny_tkg.splits["valid"], tiny_tkg.num_relations)
    torch.testing.assert_close(teacher(q).scores, model.score_all(q[:, :3]))


def test_temporal_teacher_for_a_static_student_is_refused(teacher_path: Path, tiny_tkg) -> None:
    static = replace(
        tiny_tkg,
        time=replace(tiny_tkg.time, kind="none", labels=()),
        validity=None,
        splits={s: v[:, :3] for s, v in tiny_tkg.splits.items()},
    )
    with pytest.raises(ConfigError, match="is temporal but the student's dataset"):
        KGETeacher(path=str(teacher_path), kg=static)
