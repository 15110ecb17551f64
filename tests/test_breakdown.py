"""Metrics by relation and relation category: the categories against a per-relation count, each relation's
metrics against an evaluation of that relation's facts alone, the same through re-ranking, and the tables."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace

import pytest
import torch

from kgdistill.breakdown import CATEGORIES, breakdown, relation_stats
from kgdistill.data import KG
from kgdistill.data.filters import FilterIndex
from kgdistill.evaluate import evaluate, evaluate_rerank
from kgdistill.models import KGEModel, Vocab, build_model
from kgdistill.report import breakdown_tables


def _model(kg: KG, name: str) -> KGEModel:
    torch.manual_seed(0)
    return build_model(
        {"name": name, "dim": 8}, Vocab(kg.num_entities, kg.num_relations, tuple(kg.time.labels))
    )


@pytest.mark.parametrize("kg_name", ["tiny_kg", "tiny_tkg"])
def test_categories_match_a_per_relation_count(
    request: pytest.FixtureRequest, kg_name: str
) -> None:
    kg: KG = request.getfixturevalue(kg_name)
    tails: dict[tuple[int, int], set[int]] = defaultdict(set)
    heads: dict[tuple[int, int], set[int]] = defaultdict(set)
    facts: dict[int, set[tuple[int, int]]] = defaultdict(set)
    for split in kg.facts.values():
        for h, r, t in split[:, :3].tolist():
            tails[(h, r)].add(t)
            heads[(r, t)].add(h)
            facts[r].add((h, t))
    category, tph, hpt = relation_stats(kg)
    seen = set()
    for r, pairs in facts.items():
        want_tph = len(pairs) / sum(1 for (_, rr) in tails if rr == r)
        want_hpt = len(pairs) / sum(1 for (rr, _) in heads if rr == r)
        assert float(tph[r]) == pytest.approx(want_tph)
        assert float(hpt[r]) == pytest.approx(want_hpt)
        want = ("N" if want_hpt >= 1.5 else "1") + "-" + ("N" if want_tph >= 1.5 else "1")
        assert CATEGORIES[int(category[r])] == want
        seen.add(want)
    assert len(seen) >= 2  # the real subsets have relations of several kinds


@pytest.mark.parametrize(
    ("kg_name", "model"), [("tiny_kg", "complex"), ("tiny_tkg", "ta_distmult")]
)
def test_each_relation_equals_evaluating_its_facts_alone(
    request: pytest.FixtureRequest, kg_name: str, model: str
) -> None:
    kg: KG = request.getfixturevalue(kg_name)
    m = _model(kg, model)
    index = FilterIndex.build(kg)
    full = evaluate(m, kg, "test", filter_index=index, by_relation=True)
    assert full.breakdown is not None
    test = kg.splits["test"]
    rels = full.breakdown["relations"]
    assert sum(g["facts"] for g in rels.values()) == len(test)
    assert sum(g["facts"] for g in full.breakdown["categories"].values()) == len(test)
    for rel in torch.unique(test[:, 1]).tolist()[:6]:
        alone = replace(kg, splits={**kg.splits, "test": test[test[:, 1] == rel]})
        want = evaluate(m, alone, "test", filter_index=index).sides
        got = rels[kg.relation_labels[rel]]
        for side in ("both", "tail", "head"):
            assert got[side] == pytest.approx(want[side], rel=1e-12)
    # the facts-weighted mean of the categories' MRR is the overall MRR
    cats = full.breakdown["categories"].values()
    weighted = sum(g["both"]["mrr"] * g["facts"] for g in cats) / len(test)
    assert weighted == pytest.approx(full.mrr, rel=1e-12)


def test_no_breakdown_unless_asked(tiny_kg: KG) -> None:
    metrics = evaluate(_model(tiny_kg, "distmult"), tiny_kg, "test")
    assert metrics.breakdown is None
    assert "breakdown" not in metrics.to_dict()


def test_max_queries_breaks_down_only_the_facts_ranked(tiny_kg: KG) -> None:
    metrics = evaluate(
        _model(tiny_kg, "distmult"), tiny_kg, "test", max_queries=7, by_relation=True
    )
    assert metrics.breakdown is not None
    assert sum(g["facts"] for g in metrics.breakdown["relations"].values()) == 7


def test_rerank_breakdown_equals_the_plain_one(tiny_kg: KG) -> None:
    m = _model(tiny_kg, "complex")
    plain = evaluate(m, tiny_kg, "test", by_relation=True)
    reranked = evaluate_rerank(m, m, tiny_kg, "test", k=tiny_kg.num_entities, by_relation=True)
    assert reranked.breakdown == plain.breakdown


def test_rank_count_must_be_two_per_fact(tiny_kg: KG) -> None:
    with pytest.raises(ValueError, match="two per fact"):
        breakdown(torch.ones(5), torch.zeros(3, dtype=torch.long), tiny_kg)


def test_tables_list_categories_then_relations_by_fact_count(tiny_kg: KG) -> None:
    metrics = evaluate(_model(tiny_kg, "distmult"), tiny_kg, "test", by_relation=True)
    assert metrics.breakdown is not None
    text = breakdown_tables(metrics.breakdown, title="t")
    lines = [ln for ln in text.splitlines() if ln.startswith("| ")]
    header = lines[0]
    assert header.split("|")[1].strip() == "category"
    assert "tail MRR" in header and "H@10" in header
    rel_header = next(i for i, ln in enumerate(lines) if ln.split("|")[1].strip() == "relation")
    facts_col = [c.strip() for c in lines[rel_header].split("|")].index("facts")
    counts = [int(ln.split("|")[facts_col]) for ln in lines[rel_header + 1 :]]
    assert counts == sorted(counts, reverse=True)
    assert len(counts) == len(metrics.breakdown["relations"])
