"""A text task that measures the language-model side: relation classification of an entity pair from its texts.

Built from a graph's own facts (no invented examples): each fact ``(h, r, t)`` whose relation is among the
``num_labels`` most frequent ones gives an example: the texts of ``h`` and ``t`` (names and descriptions, or any
:class:`~kgdistill.text.KGTexts`) in, ``r`` out. A pair linked by several of those relations keeps the most
frequent one, so every pair has one label.

**Split (documented, deterministic).** The entities are shuffled with ``seed`` and a share ``test_entities`` of
them is held out. Training examples have both entities outside the held-out set; test examples have at least one
held-out entity, so every test question is about an entity the model never read in training (the KGE may know
it: it was trained on the graph's training facts, which is the point of injecting it). Validation examples are a
seeded share of the training pairs.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import torch

from kgdistill.data.kg import KG
from kgdistill.errors import ConfigError
from kgdistill.types import LongTensor

__all__ = ["RelationTask", "macro_f1", "relation_task"]


@dataclass(frozen=True)
class RelationTask:
    """Examples of relation classification.

    Attributes:
        pairs: split -> ``(N, 2)`` entity ids ``(head, tail)``.
        labels: split -> ``(N,)`` label ids (``0 .. num_labels - 1``).
        relations: the graph's relation id of each label.
        held_out: ``(E,)`` entities held out of training.
        report: sizes and the split rule.
    """

    pairs: dict[str, LongTensor]
    labels: dict[str, LongTensor]
    relations: list[int]
    held_out: torch.Tensor
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def num_labels(self) -> int:
        return len(self.relations)


def relation_task(
    kg: KG,
    *,
    num_labels: int = 20,
    test_entities: float = 0.1,
    valid_share: float = 0.1,
    seed: int = 0,
    splits: tuple[str, ...] = ("train", "valid", "test"),
    max_examples: int | None = None,
    test_facts: LongTensor | None = None,
) -> RelationTask:
    """Relation classification examples from the facts of ``kg``'s ``splits`` (see the module docstring; the
    LM -> KG rounds take the training facts only, so the language model never reads an evaluated fact).
    ``max_examples`` caps each part of the split (a seeded draw, made after the split: the held-out entities
    and the rule stay the same).

    ``test_facts (M, 3)``: facts outside ``splits`` (the LM -> KG rounds' held-out facts, which no KGE of the
    rounds trains on) give the test pairs instead: those with a held-out entity and with no fact of ``splits``
    between the two entities (in either direction), so neither the language model nor a KGE injected into it
    has read anything about the pair itself.

    Raises:
        ConfigError: the graph has fewer than two relations, or the split leaves a part empty.
    """
    facts = torch.cat([kg.splits[s][:, :3] for s in splits])
    counts = Counter(facts[:, 1].tolist())
    if len(counts) < 2:
        raise ConfigError(f"dataset '{kg.name}' has fewer than two relations: nothing to classify")
    relations = [r for r, _ in counts.most_common(num_labels)]
    rank = {r: i for i, r in enumerate(relations)}

    def labelled(rows: LongTensor) -> dict[tuple[int, int], int]:
        out: dict[tuple[int, int], int] = {}
        for h, r, t in rows.tolist():
            if r in rank and h != t:
                out[(h, t)] = min(out.get((h, t), rank[r]), rank[r])
        return out

    label_of = labelled(facts)
    g = torch.Generator().manual_seed(seed)
    held = torch.zeros(kg.num_entities, dtype=torch.bool)
    held[torch.randperm(kg.num_entities, generator=g)[: round(test_entities * kg.num_entities)]] = (
        True
    )
    keys = sorted(label_of)
    pairs = torch.tensor(keys, dtype=torch.long).view(-1, 2)
    labels = torch.tensor([label_of[k] for k in keys], dtype=torch.long)
    unseen = held[pairs[:, 0]] | held[pairs[:, 1]]
    if test_facts is not None:  # test pairs: new pairs of the given facts, about a held-out entity
        linked = {(h, t) for h, _, t in facts.tolist()} | {(t, h) for h, _, t in facts.tolist()}
        extra = {
            k: v
            for k, v in labelled(test_facts[:, :3]).items()
            if k not in linked and (held[k[0]] or held[k[1]])
        }
        first = len(keys)
        keys += sorted(extra)
        pairs = torch.tensor(keys, dtype=torch.long).view(-1, 2)
        labels = torch.cat(
            [labels, torch.tensor([extra[k] for k in keys[first:]], dtype=torch.long)]
        )
        unseen = torch.cat([unseen, torch.ones(len(extra), dtype=torch.bool)])
        test_rows = torch.arange(first, len(keys))
    else:
        test_rows = unseen.nonzero()[:, 0]
    train_rows = (~unseen).nonzero()[:, 0]
    train_rows = train_rows[torch.randperm(len(train_rows), generator=g)]
    n_valid = round(valid_share * len(train_rows))
    rows = {
        "train": train_rows[n_valid:].sort().values,
        "valid": train_rows[:n_valid].sort().values,
        "test": test_rows,
    }
    if max_examples is not None:
        if max_examples < 1:
            raise ConfigError(f"config key 'max_examples': {max_examples} is not >= 1")
        rows = {
            s: r[torch.randperm(len(r), generator=g)[:max_examples].sort().values]
            for s, r in rows.items()
        }
    for split, r in rows.items():
        if not len(r):
            raise ConfigError(
                f"the relation task on '{kg.name}' has no {split} example (num_labels {num_labels}, "
                f"test_entities {test_entities}, valid_share {valid_share})"
            )
    task = RelationTask(
        pairs={s: pairs[r] for s, r in rows.items()},
        labels={s: labels[r] for s, r in rows.items()},
        relations=relations,
        held_out=held,
    )
    task.report.update(
        dataset=kg.name,
        num_labels=len(relations),
        examples={s: len(r) for s, r in rows.items()},
        max_examples=max_examples,
        held_out_entities=int(held.sum()),
        split="test pairs have at least one held-out entity; train and valid pairs none"
        + (
            "; test pairs come from facts outside the training facts, between entities no training fact links"
            if test_facts is not None
            else ""
        ),
        seed=seed,
    )
    return task


def macro_f1(predicted: LongTensor, gold: LongTensor, num_labels: int) -> float:
    """The mean over labels of F1 (labels absent from both ``predicted`` and ``gold`` left out)."""
    tp = torch.bincount(gold[predicted == gold], minlength=num_labels).double()
    pred = torch.bincount(predicted, minlength=num_labels).double()
    true = torch.bincount(gold, minlength=num_labels).double()
    present = (pred + true) > 0
    f1 = 2 * tp / (pred + true).clamp_min(1)
    return float(f1[present].mean()) if bool(present.any()) else 0.0
