"""LM -> KG: the language model scores candidate triples; confident ones augment the graph, the KGE retrains.

The steps, each measurable on its own:

1. :func:`hold_out` removes a stated share of the training facts on purpose (each removed fact's entities and
   relation keep at least one other training fact, so the vocabulary, and with it the test protocol, stays the
   same): the ground truth for the precision of what is added;
2. :func:`propose`: the KGE's filtered top-``k`` tails for training queries ``(h, r)`` are the candidates; any
   candidate that is a fact of the augmented graph or a valid or test fact is dropped, so nothing evaluated is
   ever added (the leak rule); held-out training facts may come back; :func:`propose_symmetric` proposes
   from the graph instead: the missing reverse ``(t, r, h)`` of each fact of a relation that the graph itself
   shows symmetric;
3. :func:`lm_confidence`: the relation classifier's probability of the candidate's relation for its entity pair
   (candidates whose relation is not one of its labels get none, counted);
4. :func:`select` keeps those at or above a threshold (or the ``top`` most confident), and :func:`precision`
   says how many are held-out facts;
5. :func:`write_static_graph` writes the graph with the added facts as a dataset folder that a KGE run reads
   (hard facts); or :func:`soft_label_cache` writes them with their confidences as a top-k teacher cache that the
   ``soft_labels`` term of the KGE's objective reads (soft labels: weighted positives).
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from dataclasses import replace
from pathlib import Path

import torch

from kgdistill.data.filters import FilterIndex
from kgdistill.data.kg import KG
from kgdistill.errors import ConfigError
from kgdistill.io import atomic_write_text
from kgdistill.types import LongTensor

__all__ = [
    "candidate_confidence",
    "hold_out",
    "kge_confidence",
    "lm_confidence",
    "lm_confidence_and_rank",
    "precision",
    "propose",
    "propose_symmetric",
    "select",
    "selected_rows",
    "soft_label_cache",
    "symmetric_relations",
    "write_static_graph",
]

log = logging.getLogger(__name__)


def hold_out(kg: KG, rate: float, *, seed: int = 0) -> tuple[LongTensor, LongTensor]:
    """Remove ``rate`` of ``kg``'s training facts at random, never the last training fact of an entity or a
    relation. Returns the kept and the removed facts, ``(N', 3)`` and ``(M, 3)``.

    Raises:
        ConfigError: ``rate`` is not in ``[0, 1)``.
    """
    if not 0 <= rate < 1:
        raise ConfigError(f"config key 'hold_out': {rate} is not in [0, 1)")
    train = kg.splits["train"][:, :3]
    uses = Counter(train[:, 0].tolist()) + Counter(train[:, 2].tolist())
    rel_uses = Counter(train[:, 1].tolist())
    want = round(rate * len(train))
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed)).tolist()
    removed = torch.zeros(len(train), dtype=torch.bool)
    taken = 0
    for i in order:
        if taken == want:
            break
        h, r, t = train[i].tolist()
        need = 2 if h == t else 1
        if uses[h] > need and uses[t] > need and rel_uses[r] > 1:
            uses[h] -= 1
            uses[t] -= 1
            rel_uses[r] -= 1
            removed[i] = True
            taken += 1
    return train[~removed], train[removed]


def propose(
    model: torch.nn.Module,
    kg: KG,
    train: LongTensor,
    *,
    k: int = 5,
    max_queries: int | None = None,
    seed: int = 0,
) -> LongTensor:
    """The KGE's top-``k`` tails of the training queries ``(h, r)`` of ``train (N, 3)`` (tail direction),
    filtered against the facts of ``train`` (the graph being augmented) and ``kg``'s valid and test facts:
    candidate facts ``(C, 3)``. ``kg``'s own training facts are not filtered: the ones held out of ``train`` may
    come back (what :func:`precision` counts).

    ``max_queries`` caps the distinct queries (a ``seed``-ed random draw of them, in id order)."""
    queries = torch.unique(train[:, :2], dim=0)
    if max_queries is not None and max_queries < len(queries):
        g = torch.Generator().manual_seed(seed)
        queries = queries[torch.randperm(len(queries), generator=g)[:max_queries].sort().values]
    graph = replace(kg, splits={**kg.splits, "train": train}, facts={**kg.facts, "train": train})
    known = FilterIndex.build(graph, ("train", "valid", "test"), time_aware=False)
    out = []
    model.eval()
    with torch.no_grad():
        for chunk in queries.split(256):
            q = torch.cat([chunk, torch.zeros(len(chunk), 1, dtype=torch.long)], dim=1)
            scores = model.score_all(q).float()
            rows, cols = known.known(q)
            scores[rows, cols] = float("-inf")
            top = scores.topk(min(k, scores.shape[1]), dim=1)
            for (h, r), ts, vs in zip(
                chunk.tolist(), top.indices.tolist(), top.values.tolist(), strict=True
            ):
                out.extend((h, r, t) for t, v in zip(ts, vs, strict=True) if v > float("-inf"))
    return torch.tensor(out, dtype=torch.long).view(-1, 3)


def symmetric_relations(
    train: LongTensor, *, min_share: float = 0.5, min_facts: int = 10
) -> dict[int, float]:
    """The relations that ``train (N, 3)`` itself shows symmetric: at least ``min_facts`` facts ``(h, r, t)``
    with ``h != t``, of which a share of at least ``min_share`` have their reverse ``(t, r, h)`` in ``train``
    too. Returns relation id -> that share.

    Raises:
        ConfigError: ``min_share`` is not in ``(0, 1]``.
    """
    if not 0 < min_share <= 1:
        raise ConfigError(f"config key 'symmetric_share': {min_share} is not in (0, 1]")
    facts = train[train[:, 0] != train[:, 2], :3]
    have = {tuple(f) for f in facts.tolist()}
    total: Counter[int] = Counter()
    both: Counter[int] = Counter()
    for h, r, t in facts.tolist():
        total[r] += 1
        both[r] += (t, r, h) in have
    return {
        r: both[r] / n
        for r, n in sorted(total.items())
        if n >= min_facts and both[r] / n >= min_share
    }


def propose_symmetric(
    kg: KG, train: LongTensor, *, min_share: float = 0.5, min_facts: int = 10
) -> LongTensor:
    """Candidates from the graph's own symmetry: the reverse ``(t, r, h)`` of every fact ``(h, r, t)`` of
    ``train (N, 3)`` whose relation :func:`symmetric_relations` finds symmetric in ``train``, where that reverse is
    not a fact of ``train`` nor a valid or test fact of ``kg`` (the leak rule): ``(C, 3)``, sorted, unique.
    No language model and no KGE is asked: a rule, whose precision :func:`precision` measures."""
    relations = symmetric_relations(train, min_share=min_share, min_facts=min_facts)
    log.info(
        "symmetric by the graph: %s",
        ", ".join(f"{kg.relation_labels[r]} ({share:.0%})" for r, share in relations.items())
        or "none",
    )
    known = {tuple(f) for f in train[:, :3].tolist()}
    known |= {tuple(f) for s in ("valid", "test") for f in kg.splits[s][:, :3].tolist()}
    out = {
        (t, r, h)
        for h, r, t in train[:, :3].tolist()
        if r in relations and h != t and (t, r, h) not in known
    }
    return torch.tensor(sorted(out), dtype=torch.long).view(-1, 3)


def lm_confidence(
    classifier: torch.nn.Module, relations: list[int], facts: LongTensor
) -> torch.Tensor:
    """The classifier's probability of each fact's relation for its pair ``(C,)``; NaN where the relation is
    not one of its labels (``relations``: the graph's relation of each label)."""
    return lm_confidence_and_rank(classifier, relations, facts)[0]


def lm_confidence_and_rank(
    classifier: torch.nn.Module, relations: list[int], facts: LongTensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The classifier's probability of each fact's relation for its pair ``(C,)`` and that relation's rank among
    its labels for the pair ``(C,)`` (1: the most probable; 1 + the number of labels strictly more probable, so a
    pair that holds two relations can have both near the top when neither gets half the mass); both NaN where the
    relation is not one of its labels (``relations``: the graph's relation of each label)."""
    label = {r: i for i, r in enumerate(relations)}
    idx = torch.tensor([label.get(r, -1) for r in facts[:, 1].tolist()], dtype=torch.long)
    conf = torch.full((len(facts),), float("nan"))
    rank = torch.full((len(facts),), float("nan"))
    scored = (idx >= 0).nonzero()[:, 0]
    classifier.eval()
    device = next(classifier.parameters()).device
    with torch.no_grad():
        for rows in scored.split(256):
            probs = classifier(facts[rows][:, [0, 2]].to(device)).float().softmax(-1).cpu()
            own = probs[torch.arange(len(rows)), idx[rows]]
            conf[rows] = own
            rank[rows] = 1.0 + (probs > own[:, None]).sum(-1).float()
    return conf, rank


def selected_rows(
    confidence: torch.Tensor, *, threshold: float | None = 0.5, top: int | None = None
) -> LongTensor:
    """Rows with ``confidence >= threshold``, the ``top`` most confident of them when given (NaN never)."""
    ok = ~confidence.isnan()
    if threshold is not None:
        ok &= confidence >= threshold
    rows = ok.nonzero()[:, 0]
    if top is not None:
        rows = rows[confidence[rows].argsort(descending=True, stable=True)[:top]]
    return rows


def select(
    facts: LongTensor,
    confidence: torch.Tensor,
    *,
    threshold: float | None = 0.5,
    top: int | None = None,
) -> LongTensor:
    """The facts of :func:`selected_rows`."""
    return facts[selected_rows(confidence, threshold=threshold, top=top)]


def kge_confidence(model: torch.nn.Module, facts: LongTensor) -> torch.Tensor:
    """The KGE's own softmax probability of each fact's tail among all entities ``(C,)``: the self-training
    control of LM -> KG (the same selection without the language model)."""
    model.eval()
    out = torch.empty(len(facts))
    with torch.no_grad():
        for rows in torch.arange(len(facts)).split(256):
            f = facts[rows]
            q = torch.cat([f, torch.zeros(len(f), 1, dtype=torch.long)], dim=1)
            probs = model.score_all(q).float().softmax(-1)
            out[rows] = probs[torch.arange(len(f)), f[:, 2]].cpu()
    return out


def candidate_confidence(
    select_by: str,
    classifier: torch.nn.Module | None,
    relations: list[int],
    kge: torch.nn.Module,
    facts: LongTensor,
) -> torch.Tensor:
    """``(C,)`` confidences of the candidate ``facts (C, 3)``: ``lm`` (:func:`lm_confidence`), ``kge``
    (:func:`kge_confidence`) or ``both`` (their product; NaN where the classifier has no label for the
    relation)."""
    if select_by == "kge":
        return kge_confidence(kge, facts)
    if classifier is None:
        raise ValueError(f"select_by '{select_by}' needs the language model")
    conf = lm_confidence(classifier, relations, facts)
    return conf * kge_confidence(kge, facts) if select_by == "both" else conf


def soft_label_cache(
    path: str | os.PathLike[str], kg: KG, facts: LongTensor, confidence: torch.Tensor
) -> Path:
    """Write ``facts (A, 3)`` with their ``confidence (A,)`` as a top-k teacher cache over ``kg``'s ids, in both
    directions (``(h, r) -> t`` and ``(t, r + R) -> h``, as the 1-N training queries are): what the
    ``soft_labels`` term reads (``teachers: {soft: {name: cache, path: ...}}``).

    The term sees a query's soft answers each time one of ``kg``'s training facts asks that query, so each
    weight is the confidence divided by that count: over an epoch a soft fact weighs its confidence, as a hard
    fact weighs 1. A query no training fact asks is never read (counted in the log).

    Raises:
        ConfigError: a fact is a valid or test fact (the leak rule), or a confidence is outside [0, 1].
    """
    from kgdistill.distill.cache import save_topk

    _check_leaks(kg, facts)
    conf = confidence.float()
    if len(conf) != len(facts) or bool(((conf < 0) | (conf > 1) | conf.isnan()).any()):
        raise ConfigError("soft labels: every confidence must be a number in [0, 1], one per fact")
    h, r, t = facts[:, 0], facts[:, 1], facts[:, 2]
    nr = kg.num_relations
    queries = torch.cat([torch.stack([h, r], 1), torch.stack([t, r + nr], 1)])
    answers, weights = torch.cat([t, h]), torch.cat([conf, conf])
    uniq, inverse = torch.unique(queries, dim=0, return_inverse=True)
    # how often the training queries ask each of these queries (both directions)
    train = kg.splits["train"][:, :3]
    asked = torch.cat([train[:, 0] * 2 * nr + train[:, 1], train[:, 2] * 2 * nr + train[:, 1] + nr])
    keys = uniq[:, 0] * 2 * nr + uniq[:, 1]
    values, counts = torch.unique(asked, return_counts=True)
    pos = torch.searchsorted(values, keys).clamp_max(max(len(values) - 1, 0))
    times = (
        torch.where(values[pos] == keys, counts[pos], torch.zeros_like(keys))
        if len(values)
        else keys * 0
    )
    log.info(
        "soft labels: %d facts, %d of their %d queries asked by no training fact (never read)",
        len(facts),
        int((times == 0).sum()),
        len(uniq),
    )
    weights = weights / times[inverse].clamp_min(1).float()
    width = max(int(torch.bincount(inverse).max()) if len(inverse) else 0, 1)
    ids = torch.zeros(len(uniq), width, dtype=torch.long)
    scores = torch.full((len(uniq), width), float("-inf"))
    order = torch.argsort(inverse, stable=True)
    row = inverse[order]
    start = torch.searchsorted(row, row, right=False)
    col = torch.arange(len(row)) - start
    ids[row, col] = answers[order]
    scores[row, col] = weights[order]
    full = torch.cat([uniq, torch.zeros(len(uniq), 1, dtype=torch.long)], dim=1)
    return save_topk(path, kg, full, ids, scores, source="kgdistill.kglm soft labels")


def _check_leaks(kg: KG, added: LongTensor) -> None:
    evaluated = {tuple(f) for s in ("valid", "test") for f in kg.splits[s][:, :3].tolist()}
    leaked = [f for f in added.tolist() if tuple(f) in evaluated]
    if leaked:
        raise ConfigError(f"{len(leaked)} added facts are valid or test facts (first: {leaked[0]})")


def precision(added: LongTensor, held: LongTensor) -> float:
    """Share of ``added (A, 3)`` that are held-out facts ``held (M, 3)`` (NaN when nothing is added)."""
    if not len(added):
        return float("nan")
    truth = {tuple(f) for f in held.tolist()}
    return sum(tuple(f) in truth for f in added.tolist()) / len(added)


def write_static_graph(
    folder: str | os.PathLike[str], kg: KG, train: LongTensor, added: LongTensor | None = None
) -> Path:
    """Write ``train (N, 3)`` plus ``added (A, 3)`` as ``train.txt`` and ``kg``'s valid and test facts as they
    are, by label, tab-separated: a folder :func:`kgdistill.data.read_static_names` reads (``data.name``).

    Raises:
        ConfigError: ``added`` holds a valid or test fact (the leak rule).
    """
    facts = train if added is None else torch.cat([train, added])
    if added is not None and len(added):
        _check_leaks(kg, added)
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    ent, rel = kg.entity_labels, kg.relation_labels

    def lines(rows: LongTensor) -> str:
        return "".join(f"{ent[h]}\t{rel[r]}\t{ent[t]}\n" for h, r, t in rows.tolist())

    atomic_write_text(out / "train.txt", lines(facts))
    for split in ("valid", "test"):
        atomic_write_text(out / f"{split}.txt", lines(kg.splits[split][:, :3]))
    return out
