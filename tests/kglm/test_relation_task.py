"""The text task of the KG -> LM direction on the FB15k-237 subset: relation classification of entity pairs with
a held-out entity split (no test entity read in training), sequences whose mention marks cover exactly the head
and tail tokens, macro-F1 by hand, and fine-tuning with and without injected DistMult vectors."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch

from kgdistill.data import KG
from kgdistill.errors import ConfigError
from kgdistill.kglm import (
    RelationClassifier,
    align_table,
    evaluate_task,
    fit_task,
    macro_f1,
    relation_task,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def test_held_out_entities_never_occur_in_training_pairs(fb_mini: KG) -> None:
    task = relation_task(fb_mini, num_labels=8, test_entities=0.2, seed=3)
    held = task.held_out
    assert not held[task.pairs["train"]].any() and not held[task.pairs["valid"]].any()
    assert held[task.pairs["test"]].any(1).all()
    assert task.num_labels == 8 and all(0 <= int(x) < 8 for x in task.labels["train"])
    # every example is a fact of the graph with its label's relation (or a more frequent one of the pair)
    facts = {
        tuple(f) for f in torch.cat([fb_mini.splits[s][:, :3] for s in fb_mini.splits]).tolist()
    }
    for (h, t), y in zip(task.pairs["test"].tolist(), task.labels["test"].tolist(), strict=True):
        assert (h, task.relations[y], t) in facts
    again = relation_task(fb_mini, num_labels=8, test_entities=0.2, seed=3)
    assert torch.equal(again.pairs["test"], task.pairs["test"])
    with pytest.raises(ConfigError, match="no test example"):
        relation_task(fb_mini, test_entities=0.0)


@pytest.mark.parametrize("with_test_facts", [False, True])
def test_no_relation_pairs_are_unlinked_and_type_plausible(
    fb_mini: KG, with_test_facts: bool
) -> None:
    """``negatives``: per example that many pairs labelled "no relation" (one more class), each unlinked by any
    fact in either direction (held-out test facts included), its other entity from the relation's range (or
    domain), the held-out split rule kept; the positives are the task without negatives."""
    from kgdistill.kglm import hold_out

    graph, test_facts = fb_mini, None
    if with_test_facts:
        kept, test_facts = hold_out(fb_mini, 0.3, seed=0)
        graph = replace(fb_mini, splits={**fb_mini.splits, "train": kept})
    splits = ("train",) if with_test_facts else ("train", "valid", "test")
    args: dict[str, Any] = dict(num_labels=8, test_entities=0.2, seed=3, splits=splits)
    plain = relation_task(graph, **args, test_facts=test_facts)
    task = relation_task(graph, **args, test_facts=test_facts, negatives=2)
    assert task.none_label and task.num_labels == 9 and task.report["negatives"] == 2
    facts = torch.cat([graph.splits[s][:, :3] for s in splits])
    every = facts if test_facts is None else torch.cat([facts, test_facts])
    linked = {(h, t) for h, _, t in every.tolist()} | {(t, h) for h, _, t in every.tolist()}
    heads = {r: set(every[every[:, 1] == r, 0].tolist()) for r in task.relations}
    tails = {r: set(every[every[:, 1] == r, 2].tolist()) for r in task.relations}
    for split in ("train", "valid", "test"):
        n = len(plain.pairs[split])
        assert torch.equal(task.pairs[split][:n], plain.pairs[split])
        negs, none = task.pairs[split][n:], task.labels[split][n:]
        assert (none == 8).all() and 0 < len(negs) <= 2 * n
        assert len(set(map(tuple, negs.tolist()))) == len(negs)  # no pair twice
        held = task.held_out[negs]
        assert held.any(1).all() if split == "test" else not held.any()
        plausible = set().union(*heads.values()) | set().union(*tails.values())
        for h, t in negs.tolist():
            assert (h, t) not in linked and h != t and h in plausible and t in plausible
    # every training negative keeps the head of an example and takes a tail of its relation
    pos = {h: set() for h, _ in plain.pairs["train"].tolist()}
    for (h, _), y in zip(
        plain.pairs["train"].tolist(), plain.labels["train"].tolist(), strict=True
    ):
        pos[h].add(plain.relations[y])
    n = len(plain.pairs["train"])
    for h, t in task.pairs["train"][n:].tolist():
        assert any(t in tails[r] for r in pos[h])
    with pytest.raises(ConfigError, match="'negatives'"):
        relation_task(graph, **args, test_facts=test_facts, negatives=-1)


def test_test_pairs_from_facts_no_training_fact_links(fb_mini: KG) -> None:
    """The rounds' LM test pairs come from the held-out facts: a held-out entity each, and no training fact
    between the two entities (so neither the LM nor an injected KGE has read the pair)."""
    from kgdistill.kglm import hold_out

    kept, held = hold_out(fb_mini, 0.3, seed=0)
    graph = replace(fb_mini, splits={**fb_mini.splits, "train": kept})
    task = relation_task(graph, num_labels=8, test_entities=0.3, splits=("train",), test_facts=held)
    linked = {(h, t) for h, _, t in kept.tolist()} | {(t, h) for h, _, t in kept.tolist()}
    by_pair = {(h, t): r for h, r, t in held.tolist()}
    test = task.pairs["test"]
    assert len(test) > 0 and "outside the training facts" in task.report["split"]
    for (h, t), label in zip(test.tolist(), task.labels["test"].tolist(), strict=True):
        assert (h, t) not in linked and (task.held_out[h] or task.held_out[t])
        assert (h, t) in by_pair and task.relations[label] in {
            r for hh, r, tt in held.tolist() if (hh, tt) == (h, t)
        }
    for split in ("train", "valid"):
        assert not task.held_out[task.pairs[split]].any()


def test_macro_f1_by_hand() -> None:
    gold = torch.tensor([0, 0, 1, 1, 2])
    pred = torch.tensor([0, 1, 1, 1, 0])
    # label 0: tp 1, pred 2, true 2 -> 0.5; label 1: tp 2, pred 3, true 2 -> 0.8; label 2: 0
    assert macro_f1(pred, gold, 4) == pytest.approx((0.5 + 0.8 + 0.0) / 3)


def test_mentions_mark_the_head_and_tail_tokens(fb_mini: KG, tiny_plm: Callable[..., Any]) -> None:
    features = tiny_plm(fb_mini, max_length=24)
    known = torch.ones(fb_mini.num_entities, dtype=torch.bool)
    known[5] = False
    torch.manual_seed(0)
    model = RelationClassifier(
        features, 4, entity_table=torch.randn(fb_mini.num_entities, 8), known=known
    )
    pairs = torch.tensor([[1, 2], [5, 7]])
    ids, mask, mentions, side = model.sequences(pairs)
    lengths = features.entities.lengths
    for row, (h, t) in enumerate(pairs.tolist()):
        n_h, n_t = int((mentions[row] == h).sum()), int((mentions[row] == t).sum())
        expect_h = 0 if h == 5 else min(int(lengths[h]), 21 - min(int(lengths[t]), 10))
        assert n_t == min(int(lengths[t]), max(10, 21 - int(lengths[h])))
        if h != 5:
            assert n_h == expect_h
            first = ids[row][mentions[row] == h].tolist()
            assert first == features.entities.ids[h, :n_h].tolist()
        else:
            assert n_h == 0  # the KGE does not know entity 5: its tokens are not injected
    assert (mentions[~mask] == -1).all()
    # side marks the head's and the tail's tokens whether the KGE knows them or not
    assert torch.equal((side == 1), (mentions == pairs[:, 1:2]))
    assert int((side[1] == 0).sum()) == min(int(lengths[5]), 21 - min(int(lengths[7]), 10))


@pytest.mark.parametrize("inject", [False, True])
def test_fine_tuning_lowers_the_loss(
    fb_mini: KG, tiny_plm: Callable[..., Any], inject: bool
) -> None:
    task = relation_task(fb_mini, num_labels=5, test_entities=0.2)
    features = tiny_plm(fb_mini, max_length=24)
    table, known = align_table(
        list(fb_mini.entity_labels),
        list(fb_mini.entity_labels),
        torch.randn(fb_mini.num_entities, 8),
    )
    torch.manual_seed(0)
    model = RelationClassifier(
        features, task.num_labels, entity_table=table if inject else None, known=known
    )
    history = fit_task(model, task, epochs=3, batch_size=64, lr=1e-3, head_lr=1e-2)
    assert history[-1]["loss"] < history[0]["loss"]
    metrics = evaluate_task(model, task, "test")
    assert metrics["examples"] == len(task.labels["test"]) and 0 <= metrics["accuracy"] <= 1


@pytest.mark.parametrize("loss", ["fitnet", "rkd"])
def test_the_distillation_form_pulls_entity_states_to_the_kge(
    fb_mini: KG, tiny_plm: Callable[..., Any], loss: str
) -> None:
    """A plain language model (no injection) with the engine's FitNet / RKD term towards the KGE vectors: the
    term is logged and falls; without the KGE table it is one error."""
    task = relation_task(fb_mini, num_labels=5, test_entities=0.2)
    features = tiny_plm(fb_mini, max_length=24)
    g = torch.Generator().manual_seed(1)
    table = torch.randn(fb_mini.num_entities, 8, generator=g)
    torch.manual_seed(0)
    model = RelationClassifier(features, task.num_labels)
    history = fit_task(
        model,
        task,
        epochs=3,
        batch_size=64,
        lr=1e-3,
        head_lr=1e-2,
        distill={"loss": loss, "weight": 1.0},
        teacher_table=table,
    )
    assert all("distill" in h for h in history)
    assert history[-1]["distill"] < history[0]["distill"]
    with pytest.raises(ConfigError, match="teacher_table"):
        fit_task(model, task, epochs=1, distill={"loss": "fitnet"})
    with pytest.raises(ConfigError, match="not fitnet or rkd"):
        fit_task(model, task, epochs=1, distill={"loss": "kd_kl"}, teacher_table=table)
