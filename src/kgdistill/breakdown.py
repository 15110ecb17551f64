"""Ranking metrics broken down by relation and by relation category (1-1, 1-N, N-1, N-N).

A single MRR hides where a model loses: a distilled student may keep the teacher's quality on one-to-one
relations and lose it on the many-to-many ones. The categories follow Bordes et al. (2013) and Wang et al.
(TransH, 2014): over the graph's distinct ``(h, r, t)`` facts of all splits, ``tph`` is the mean number of tails
per ``(h, r)`` and ``hpt`` the mean number of heads per ``(r, t)``; a side is "N" when its mean is at least 1.5.
``1-N`` is one head to many tails, so its tail queries are the ones with many right answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from kgdistill.data.kg import KG
from kgdistill.summary import summarize
from kgdistill.types import FloatTensor, LongTensor

CATEGORIES = ("1-1", "1-N", "N-1", "N-N")
MANY = 1.5  # the threshold of Bordes et al. and Wang et al.


def relation_stats(kg: KG) -> tuple[LongTensor, FloatTensor, FloatTensor]:
    """Per relation: its category index into :data:`CATEGORIES` ``(R,)``, ``tph (R,)`` and ``hpt (R,)``.

    Counted over the distinct ``(h, r, t)`` of every split's original facts (time ignored); a relation with no
    fact is ``1-1`` with ``tph = hpt = 0``.
    """
    facts = torch.unique(torch.cat([f[:, :3] for f in kg.facts.values()]), dim=0)
    r = facts[:, 1]
    count = torch.bincount(r, minlength=kg.num_relations).double()
    heads = torch.bincount(torch.unique(facts[:, :2], dim=0)[:, 1], minlength=kg.num_relations)
    tails = torch.bincount(torch.unique(facts[:, 1:], dim=0)[:, 0], minlength=kg.num_relations)
    tph = torch.where(heads > 0, count / heads.clamp(min=1), 0.0)  # facts per distinct (h, r)
    hpt = torch.where(tails > 0, count / tails.clamp(min=1), 0.0)  # facts per distinct (r, t)
    category = (hpt >= MANY).long() * 2 + (tph >= MANY).long()  # 0 1-1, 1 1-N, 2 N-1, 3 N-N
    return category, tph, hpt


def _group(
    tail: torch.Tensor, head: torch.Tensor, ks: Sequence[int], **extra: Any
) -> dict[str, Any]:
    return {
        **extra,
        "facts": len(tail),
        "both": summarize(torch.cat([tail, head]), ks),
        "tail": summarize(tail, ks),
        "head": summarize(head, ks),
    }


def breakdown(
    ranks: torch.Tensor, relations: LongTensor, kg: KG, ks: Sequence[int] = (1, 3, 10)
) -> dict[str, Any]:
    """Metrics of each relation and each category (every group has at least one fact).

    Args:
        ranks: ``(2n,)`` the ranks of the ``n`` tail queries, then of the same facts' ``n`` head queries
            (the order of :func:`kgdistill.evaluate.evaluate`).
        relations: ``(n,)`` the relation id of each fact.

    Returns:
        ``{"relations": {label: {"category", "tph", "hpt", "facts", "both", "tail", "head"}},
        "categories": {category: {"relations", "facts", "both", "tail", "head"}}}``; relations without a fact in
        the split are left out, as are empty categories; each side maps to ``{"mrr", "mr", "hits@k"...}``.
    """
    ranks, relations = ranks.cpu().double(), relations.cpu()
    n = len(relations)
    if len(ranks) != 2 * n:
        raise ValueError(f"breakdown: {len(ranks)} ranks for {n} facts (want two per fact)")
    tail, head = ranks[:n], ranks[n:]
    category, tph, hpt = relation_stats(kg)
    per_relation: dict[str, Any] = {}
    for rel in torch.unique(relations).tolist():
        mask = relations == rel
        per_relation[kg.relation_labels[rel]] = _group(
            tail[mask],
            head[mask],
            ks,
            category=CATEGORIES[int(category[rel])],
            tph=round(float(tph[rel]), 3),
            hpt=round(float(hpt[rel]), 3),
        )
    per_category: dict[str, Any] = {}
    fact_category = category[relations]
    for c, name in enumerate(CATEGORIES):
        mask = fact_category == c
        if bool(mask.any()):
            used = torch.unique(relations[mask])
            per_category[name] = _group(tail[mask], head[mask], ks, relations=len(used))
    return {"relations": per_relation, "categories": per_category}
