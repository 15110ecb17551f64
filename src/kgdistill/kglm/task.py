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

**"No relation" (``negatives``).** With ``negatives = n > 0`` every part of the split also gets ``n`` unrelated
pairs per example, labelled ``num_labels`` (one more class): the example's head with a tail drawn from the other
tails of its relation (the relation's range, so the pair is type-plausible) that no fact of the task, nor any of
``test_facts``, links to it in either direction. Training and validation negatives keep both entities outside the
held-out set; a test negative keeps the example's held-out entity and replaces the other one (a head of the
relation for a kept tail). A classifier
trained on them scores ``p(r | h, t)`` with the mass of "no relation" taken out: a verifier of candidate triples
(LM -> KG), not only a namer of the relation of a pair known to be linked.
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
        none_label: the task has the "no relation" class (label ``len(relations)``).
    """

    pairs: dict[str, LongTensor]
    labels: dict[str, LongTensor]
    relations: list[int]
    held_out: torch.Tensor
    report: dict[str, Any] = field(default_factory=dict)
    none_label: bool = False

    @property
    def num_labels(self) -> int:
        """The classes: the relations, and "no relation" when the task has it."""
        return len(self.relations) + int(self.none_label)


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
    negatives: int = 0,
) -> RelationTask:
    """Relation classification examples from the facts of ``kg``'s ``splits`` (see the module docstring; the
    LM -> KG rounds take the training facts only, so the language model never reads an evaluated fact).
    ``max_examples`` caps each part of the split (a seeded draw, made after the split: the held-out entities
    and the rule stay the same).

    ``test_facts (M, 3)``: facts outside ``splits`` (the LM -> KG rounds' held-out facts, which no KGE of the
    rounds trains on) give the test pairs instead: those with a held-out entity and with no fact of ``splits``
    between the two entities (in either direction), so neither the language model nor a KGE injected into it
    has read anything about the pair itself.

    ``negatives``: unrelated pairs per example, labelled "no relation" (see the module docstring).

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
    if negatives < 0:
        raise ConfigError(f"config key 'negatives': {negatives} is not >= 0")
    for split, r in rows.items():
        if not len(r):
            raise ConfigError(
                f"the relation task on '{kg.name}' has no {split} example (num_labels {num_labels}, "
                f"test_entities {test_entities}, valid_share {valid_share})"
            )
    out_pairs = {s: pairs[r] for s, r in rows.items()}
    out_labels = {s: labels[r] for s, r in rows.items()}
    if negatives:
        every = facts if test_facts is None else torch.cat([facts, test_facts[:, :3]])
        sampler = _Unrelated(every, relations, held, g)
        for s in out_pairs:
            neg = sampler.draw(out_pairs[s], out_labels[s], negatives, test=s == "test")
            out_pairs[s] = torch.cat([out_pairs[s], neg])
            out_labels[s] = torch.cat(
                [out_labels[s], torch.full((len(neg),), len(relations), dtype=torch.long)]
            )
    task = RelationTask(
        pairs=out_pairs,
        labels=out_labels,
        relations=relations,
        held_out=held,
        none_label=negatives > 0,
    )
    task.report.update(
        dataset=kg.name,
        num_labels=len(relations),
        examples={s: len(p) for s, p in out_pairs.items()},
        negatives=negatives,
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


class _Unrelated:
    """Draws "no relation" pairs: an example's head with another tail of the example's relation that no fact
    links to it; a test pair whose only held-out entity is its tail keeps the tail and gets another head of the
    relation (see the module docstring)."""

    def __init__(
        self, facts: LongTensor, relations: list[int], held: torch.Tensor, g: torch.Generator
    ) -> None:
        rows = facts.tolist()
        self.linked = {(h, t) for h, _, t in rows} | {(t, h) for h, _, t in rows}
        self.held, self.g = held, g
        # each label's relation: its heads (domain) and its tails (range)
        self.ends = [
            (torch.unique(facts[facts[:, 1] == r, 0]), torch.unique(facts[facts[:, 1] == r, 2]))
            for r in relations
        ]

    def draw(self, pairs: LongTensor, labels: LongTensor, n: int, *, test: bool) -> LongTensor:
        """``n`` unrelated pairs per row of ``pairs (N, 2)`` (fewer where a relation's range has none left)."""
        out: list[tuple[int, int]] = []
        seen = set(self.linked)
        for (h, t), label in zip(pairs.tolist(), labels.tolist(), strict=True):
            # the entity kept: the head, or the held-out tail of a test pair whose head is not held out
            keep_tail = test and not bool(self.held[h])
            anchor = t if keep_tail else h
            cands = self.ends[label][0 if keep_tail else 1]  # a head for a kept tail, else a tail
            if not test:  # training and validation pairs name no held-out entity
                cands = cands[~self.held[cands]]
            if not len(cands):
                continue
            picks = cands[torch.randint(len(cands), (8 * n,), generator=self.g)].tolist()
            got = 0
            for other in picks:
                pair = (other, anchor) if keep_tail else (anchor, other)
                if other == anchor or pair in seen:
                    continue
                seen.add(pair)
                out.append(pair)
                got += 1
                if got == n:
                    break
        return torch.tensor(out, dtype=torch.long).view(-1, 2)


def macro_f1(predicted: LongTensor, gold: LongTensor, num_labels: int) -> float:
    """The mean over labels of F1 (labels absent from both ``predicted`` and ``gold`` left out)."""
    tp = torch.bincount(gold[predicted == gold], minlength=num_labels).double()
    pred = torch.bincount(predicted, minlength=num_labels).double()
    true = torch.bincount(gold, minlength=num_labels).double()
    present = (pred + true) > 0
    f1 = 2 * tp / (pred + true).clamp_min(1)
    return float(f1[present].mean()) if bool(present.any()) else 0.0
