"""LM -> KG on the FB15k-237 subset: the held-out facts keep the vocabulary, candidates from a trained DistMult
never include a known fact of any split (the leak test), the classifier's confidence picks the added facts,
precision is counted against the held-out facts, and the augmented graph is a dataset folder a run reads."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from kgdistill import api
from kgdistill.config import parse_config
from kgdistill.data import KG, build_kg, read_static_names
from kgdistill.errors import ConfigError
from kgdistill.kglm import (
    RelationClassifier,
    candidate_confidence,
    hold_out,
    kge_confidence,
    lm_confidence,
    lm_confidence_and_rank,
    precision,
    propose,
    propose_symmetric,
    relation_task,
    select,
    soft_label_cache,
    write_static_graph,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def _distmult(data: str | Path, out: Path) -> Any:
    cfg = {
        "seed": 0,
        "data": {"name": str(data)},
        "model": {"name": "distmult", "dim": 16, "init_scale": 0.1},
        "stages": [{"epochs": 3}],
        "train": {"optimizer": "adam", "lr": 0.02, "batch_size": 500, "progress": False},
    }
    return api.train(parse_config(cfg), out=out)


def test_hold_out_keeps_every_entity_and_relation(fb_mini: KG) -> None:
    kept, held = hold_out(fb_mini, 0.2, seed=1)
    train = fb_mini.splits["train"][:, :3]
    assert len(kept) + len(held) == len(train)
    assert abs(len(held) - round(0.2 * len(train))) <= 0.05 * len(train)

    def entities(facts: torch.Tensor) -> set[int]:
        return set(facts[:, 0].tolist()) | set(facts[:, 2].tolist())

    assert entities(kept) == entities(train)
    assert set(kept[:, 1].tolist()) == set(train[:, 1].tolist())
    with pytest.raises(ConfigError, match="hold_out"):
        hold_out(fb_mini, 1.0)


def test_symmetric_relations_are_read_off_the_graph() -> None:
    from kgdistill.kglm.augment import symmetric_relations

    # relation 0: 4 facts off the diagonal, 2 with their reverse (a share of 1/2); a self-loop is not counted;
    # relation 1: 3 facts, none reversed; relation 2: 2 facts, both reversed but under min_facts
    rel0 = [[0, 0, 1], [1, 0, 0], [2, 0, 3], [4, 0, 5], [6, 0, 6]]
    train = torch.tensor([*rel0, [0, 1, 2], [1, 1, 3], [2, 1, 4], [7, 2, 8], [8, 2, 7]])
    assert symmetric_relations(train, min_share=0.5, min_facts=3) == {0: 0.5}
    assert symmetric_relations(train, min_share=0.6, min_facts=3) == {}
    assert symmetric_relations(train, min_share=0.5, min_facts=2) == {0: 0.5, 2: 1.0}
    for bad in (0.0, 1.5):
        with pytest.raises(ConfigError, match="symmetric_share"):
            symmetric_relations(train, min_share=bad)


def test_the_symmetry_rule_proposes_missing_reverses_only(fb_mini: KG) -> None:
    from kgdistill.kglm.augment import symmetric_relations

    kept, held = hold_out(fb_mini, 0.2, seed=0)
    relations = symmetric_relations(kept)
    assert relations  # the subset's award and sibling relations, among others
    candidates = propose_symmetric(fb_mini, kept)
    have = {tuple(f) for f in kept.tolist()}
    evaluated = {tuple(f) for s in ("valid", "test") for f in fb_mini.splits[s][:, :3].tolist()}
    got = {tuple(f) for f in candidates.tolist()}
    assert len(got) == len(candidates) > 0
    for h, r, t in got:  # each is the missing reverse of a kept fact of a symmetric relation
        assert r in relations and (t, r, h) in have
        assert (h, r, t) not in have and (h, r, t) not in evaluated
    # and every such reverse is proposed: the held-out ones come back
    back = {
        (h, r, t) for h, r, t in held.tolist() if r in relations and (t, r, h) in have and h != t
    }
    assert back and back <= got
    assert precision(candidates, held) == pytest.approx(len(back) / len(got))


def test_augmentation_never_adds_a_known_or_evaluated_fact(
    fb_mini: KG, tiny_plm: Callable[..., Any], tmp_path: Path
) -> None:
    kept, held = hold_out(fb_mini, 0.2, seed=1)
    reduced = write_static_graph(tmp_path / "reduced", fb_mini, kept)
    model = _distmult(reduced, tmp_path / "kge").model
    candidates = propose(model, fb_mini, kept, k=5, max_queries=200)
    assert len(candidates) > 0
    known = {
        tuple(f) for s in ("train", "valid", "test") for f in fb_mini.splits[s][:, :3].tolist()
    }
    held_set = {tuple(f) for f in held.tolist()}
    # the filter removes every known fact: held-out facts are the only "true" candidates left, and some come back
    assert not any(tuple(f) in known - held_set for f in candidates.tolist())
    assert any(tuple(f) in held_set for f in candidates.tolist())
    task = relation_task(fb_mini, num_labels=8, test_entities=0.2)
    torch.manual_seed(0)
    classifier = RelationClassifier(tiny_plm(fb_mini, max_length=24), task.num_labels)
    conf = lm_confidence(classifier, task.relations, candidates)
    scored = ~conf.isnan()
    labelled = torch.tensor([r in task.relations for r in candidates[:, 1].tolist()])
    assert torch.equal(scored, labelled) and ((conf[scored] >= 0) & (conf[scored] <= 1)).all()
    # select_by: both, the product of the two models' probabilities
    both = candidate_confidence("both", classifier, task.relations, model, candidates)
    kge = kge_confidence(model, candidates)
    assert torch.equal(both.isnan(), conf.isnan())
    torch.testing.assert_close(both[scored], conf[scored] * kge[scored])
    assert torch.equal(
        candidate_confidence("lm", classifier, task.relations, model, candidates).isnan(), ~scored
    )
    assert torch.equal(candidate_confidence("kge", None, [], model, candidates), kge)
    added = select(candidates, conf, threshold=None, top=20)
    assert len(added) == min(20, int(scored.sum()))
    assert conf[scored].sort(descending=True).values[: len(added)].min() >= 0
    p = precision(added, held)
    assert 0 <= p <= 1
    folder = write_static_graph(tmp_path / "augmented", fb_mini, kept, added)
    graph = build_kg(read_static_names(folder))
    assert graph.entity_labels == fb_mini.entity_labels
    assert len(graph.splits["train"]) == len(kept) + len(added)
    assert torch.equal(graph.splits["test"][:, :3], fb_mini.splits["test"][:, :3])
    leak = fb_mini.splits["test"][:3, :3]
    with pytest.raises(ConfigError, match="valid or test facts"):
        write_static_graph(tmp_path / "bad", fb_mini, kept, leak)
    assert precision(held[:4], held) == 1.0 and precision(added[:0], held) != precision(
        added[:0], held
    )


def test_soft_labels_are_a_cache_the_teacher_reads_in_both_directions(
    fb_mini: KG, tmp_path: Path
) -> None:
    from kgdistill.distill.cache import CachedTeacher

    kept, held = hold_out(fb_mini, 0.2, seed=1)
    facts = held[:30]
    conf = torch.linspace(0.05, 1.0, len(facts))
    path = soft_label_cache(tmp_path / "soft.safetensors", fb_mini, facts, conf)
    teacher = CachedTeacher(path=str(path), kg=fb_mini)
    r = fb_mini.num_relations
    zero = torch.zeros(len(facts), 1, dtype=torch.long)
    train = fb_mini.splits["train"][:, :3].tolist()
    for q, answer in (
        (torch.cat([facts[:, :2], zero], 1), facts[:, 2]),
        (torch.stack([facts[:, 2], facts[:, 1] + r, zero[:, 0]], 1), facts[:, 0]),
    ):
        out = teacher(q)
        assert out.ids is not None and out.mask is not None
        hit = (out.ids == answer[:, None]) & out.mask
        assert hit.sum(1).eq(1).all()  # each fact's answer once under its query
        # each confidence divided by how often the training facts ask the query (an epoch weighs it once)
        asked = torch.tensor(
            [
                sum((a, b) == (hh, rr) for hh, rr, _ in train)
                + sum((a, b - r) == (tt, rr) and b >= r for _, rr, tt in train)
                for a, b in q[:, :2].tolist()
            ]
        )
        assert torch.allclose(out.scores[hit], conf / asked.clamp_min(1))
    # queries of no soft fact come back fully masked
    other = kept[~torch.isin(kept[:, 0], facts[:, 0])][:5]
    assert not teacher(torch.cat([other[:, :2], torch.zeros(5, 1, dtype=torch.long)], 1)).mask.any()
    with pytest.raises(ConfigError, match="valid or test facts"):
        soft_label_cache(
            tmp_path / "bad.safetensors", fb_mini, fb_mini.splits["valid"][:2, :3], conf[:2]
        )
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        soft_label_cache(tmp_path / "bad.safetensors", fb_mini, facts[:2], torch.tensor([0.5, 1.5]))


def test_the_kge_confidence_is_its_softmax_probability(fb_mini: KG, tmp_path: Path) -> None:
    model = _distmult(FIXTURES / "fb15k237-mini", tmp_path / "kge").model
    facts = fb_mini.splits["train"][:7, :3]
    conf = kge_confidence(model, facts)
    q = torch.cat([facts, torch.zeros(7, 1, dtype=torch.long)], 1)
    with torch.no_grad():
        want = model.score_all(q).softmax(-1)[torch.arange(7), facts[:, 2]]
    assert torch.allclose(conf, want, atol=1e-6)


class _FixedClassifier(torch.nn.Module):
    """Logits per head entity (the pair's first id): a stand-in whose probabilities are known."""

    def __init__(self, logits: dict[int, list[float]]) -> None:
        super().__init__()
        self.table = torch.nn.Parameter(torch.zeros(10, 3), requires_grad=False)
        for head, row in logits.items():
            self.table.data[head] = torch.tensor(row)

    def forward(self, pairs: torch.Tensor) -> torch.Tensor:
        return self.table[pairs[:, 0]]


def test_lm_rank_counts_the_labels_more_probable() -> None:
    """The rank of a fact's relation among the labels for its pair (1 + those strictly more probable; ties
    share the better rank), with the probability lm_confidence gives; NaN for a relation outside the labels."""
    labels = [5, 7, 9]  # the graph's relation of each label
    classifier = _FixedClassifier({0: [2.0, 1.0, 0.0], 1: [0.0, 0.0, 3.0]})
    facts = torch.tensor(
        [[0, 5, 3], [0, 7, 3], [0, 9, 3], [1, 5, 4], [1, 7, 4], [1, 9, 4], [0, 8, 3]]
    )
    conf, rank = lm_confidence_and_rank(classifier, labels, facts)
    assert rank[:6].tolist() == [1.0, 2.0, 3.0, 2.0, 2.0, 1.0]
    assert rank[6].isnan() and conf[6].isnan()
    p0 = torch.tensor([2.0, 1.0, 0.0]).softmax(-1)
    torch.testing.assert_close(conf[:3], p0)
    torch.testing.assert_close(conf, lm_confidence(classifier, labels, facts), equal_nan=True)
