"""Graphs built from a linked collection: the **union** a joint teacher is pre-trained on, and a **target** view
(one graph plus its linked subgraph) a small student is re-trained on.

Both are ordinary :class:`~kgdistill.data.KG` objects (static, with train / valid / test), so every model, loss,
teacher and the evaluator work on them unchanged. They carry three extra things:

* ``aliases``: further labels of an entity (the tied copies of an aligned entity in the union), so a teacher
  pre-trained on the union answers a target graph's labels (see :class:`~kgdistill.distill.KGETeacher`);
* ``links``: ``(m, 2)`` aligned entity pairs inside this graph (the union with untied entities), for the
  ``alignment`` loss;
* ``anchors``: ``(E,)`` entities aligned with another graph (feature distillation reads them);

Every graph of a collection is split once by :func:`~kgdistill.multi.split.split_triples` with the same seed,
so the union teacher trains on exactly the train triples of every graph and never sees a target's valid or test
triple.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from kgdistill.data.kg import KG
from kgdistill.data.time import TimeSpec
from kgdistill.errors import ConfigError
from kgdistill.multi.linked import LinkedKGs
from kgdistill.multi.split import split_triples
from kgdistill.types import BoolTensor, LongTensor

__all__ = ["MultiKG", "build_target", "build_union", "linked_subgraph", "split_graphs"]

_SPLITS = ("train", "valid", "test")


@dataclass(frozen=True, repr=False)
class MultiKG(KG):
    """A :class:`KG` built from linked graphs (see the module docstring for the extra fields)."""

    aliases: Mapping[str, int] = field(default_factory=dict)
    links: LongTensor | None = None
    anchors: BoolTensor | None = None

    def id_maps(self) -> dict[str, Any]:
        maps: dict[str, Any] = super().id_maps()
        if self.aliases:
            maps["entity_aliases"] = dict(self.aliases)
        return maps


def split_graphs(
    linked: LinkedKGs, *, valid: float, test: float, seed: int
) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, Any]]:
    """Every graph's triples per split ``(n, 3)`` local ids, and the split report per graph."""
    out, report = {}, {}
    for name, g in linked.graphs.items():
        idx, rep = split_triples(g.triples, valid=valid, test=test, seed=seed)
        out[name] = {s: g.triples[idx[s]] for s in _SPLITS}
        report[name] = rep
    return out, report


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = np.arange(n)

    def find(self, x: int) -> int:
        root = x
        while self.parent[root] != root:
            root = int(self.parent[root])
        while self.parent[x] != root:
            self.parent[x], x = root, int(self.parent[x])
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(
                ra, rb
            )  # the earlier graph's entity represents the group


def _offsets(linked: LinkedKGs) -> dict[str, int]:
    out, n = {}, 0
    for name, g in linked.graphs.items():
        out[name] = n
        n += g.num_entities
    return out


def _groups(linked: LinkedKGs) -> tuple[np.ndarray, dict[str, int]]:
    """Representative global entity id of every global entity ``(N,)`` (smallest id of its aligned group)."""
    off = _offsets(linked)
    uf = _UnionFind(sum(g.num_entities for g in linked.graphs.values()))
    for (a, b), pairs in linked.links.items():
        for x, y in pairs.tolist():
            uf.union(off[a] + x, off[b] + y)
    return np.asarray([uf.find(i) for i in range(len(uf.parent))], dtype=np.int64), off


def _kg(
    name: str,
    entity_labels: list[str],
    relation_labels: list[str],
    splits: Mapping[str, np.ndarray],
    report: dict[str, Any],
    **extra: Any,
) -> MultiKG:
    facts = {
        s: torch.from_numpy(np.ascontiguousarray(v, dtype=np.int64)) for s, v in splits.items()
    }
    return MultiKG(
        name=name,
        entity_labels=tuple(entity_labels),
        relation_labels=tuple(relation_labels),
        time=TimeSpec(kind="none"),
        splits=facts,
        facts=facts,
        report=report,
        **extra,
    )


def build_union(
    linked: LinkedKGs,
    *,
    tie: Literal["shared", "separate"] = "shared",
    valid: float = 0.05,
    test: float = 0.05,
    seed: int = 0,
) -> MultiKG:
    """The union of every graph's splits, for joint pre-training.

    Args:
        tie: ``shared`` merges every aligned group into one entity (one embedding; the other labels become
            aliases); ``separate`` keeps one entity per graph and lists the aligned pairs in ``links`` (to be
            pulled together by the ``alignment`` loss).
        valid / test / seed: the per-graph split (see :func:`split_triples`).
    """
    if tie not in ("shared", "separate"):
        raise ConfigError(f"config key 'data.multi.tie': {tie!r} is not one of shared, separate")
    parts, split_report = split_graphs(linked, valid=valid, test=test, seed=seed)
    rep, off = _groups(linked)
    n_global = len(rep)
    labels_global = [lab for g in linked.graphs.values() for lab in g.entity_labels]
    if tie == "shared":
        reps = np.unique(rep)
        new_of_rep = np.full(n_global, -1, dtype=np.int64)
        new_of_rep[reps] = np.arange(len(reps))
        ent_map = new_of_rep[rep]
        entity_labels = [labels_global[i] for i in reps.tolist()]
        aliases = {labels_global[i]: int(ent_map[i]) for i in range(n_global) if rep[i] != i}
    else:
        ent_map = np.arange(n_global)
        entity_labels = labels_global
        aliases = {}
    relation_labels: list[str] = []
    rel_off: dict[str, int] = {}
    for name, g in linked.graphs.items():
        rel_off[name] = len(relation_labels)
        relation_labels += list(g.relation_labels)
    splits = {}
    for s in _SPLITS:
        chunks = []
        for name, per in parts.items():
            tr = per[s]
            chunks.append(
                np.column_stack(
                    [
                        ent_map[off[name] + tr[:, 0]],
                        rel_off[name] + tr[:, 1],
                        ent_map[off[name] + tr[:, 2]],
                    ]
                )
            )
        splits[s] = np.concatenate(chunks).reshape(-1, 3)
    pairs = np.asarray(
        [
            (ent_map[off[a] + x], ent_map[off[b] + y])
            for (a, b), p in linked.links.items()
            for x, y in p.tolist()
        ],
        dtype=np.int64,
    ).reshape(-1, 2)
    anchors = np.zeros(len(entity_labels), dtype=bool)
    anchors[pairs.ravel()] = True
    report = {
        "source": linked.source,
        "view": "union",
        "tie": tie,
        "graphs": {
            n: {"entities": g.num_entities, "triples": len(g.triples)}
            for n, g in linked.graphs.items()
        },
        "links": {f"{a}-{b}": len(p) for (a, b), p in linked.links.items()},
        "split": split_report,
        "entities": len(entity_labels),
        "merged_entities": len(aliases),
        "lines": {s: len(v) for s, v in splits.items()},
    }
    return _kg(
        linked.name,
        entity_labels,
        relation_labels,
        splits,
        report,
        aliases=aliases,
        links=torch.from_numpy(pairs) if tie == "separate" else None,
        anchors=torch.from_numpy(anchors),
    )


def linked_subgraph(
    linked: LinkedKGs, target: str, train: Mapping[str, np.ndarray], hops: int
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The source triples that bridge ``target`` with the other graphs.

    For every other graph: its ``train`` triples whose head and tail both lie within ``hops`` hops (over its
    own train triples, in either direction) of an entity aligned with ``target``. ``hops = 0`` keeps the triples
    between aligned entities only, which add facts but no entity.

    Returns:
        source graph -> (``(n, 3)`` its local triples, ``(k,)`` its local entities within reach), sorted.
    """
    if hops < 0:
        raise ConfigError(f"config key 'data.multi.hops': must be >= 0, got {hops}")
    rep, off = _groups(linked)
    tgt = linked.graphs[target]
    tgt_groups = np.unique(rep[off[target] : off[target] + tgt.num_entities])
    out = {}
    for name, g in linked.graphs.items():
        if name == target:
            continue
        reach = np.isin(rep[off[name] : off[name] + g.num_entities], tgt_groups)
        tr = train[name]
        for _ in range(hops):
            touch = reach[tr[:, 0]] | reach[tr[:, 2]]
            reach = reach.copy()
            reach[tr[touch][:, [0, 2]].ravel()] = True
        keep = reach[tr[:, 0]] & reach[tr[:, 2]]
        out[name] = (tr[keep], np.unique(tr[keep][:, [0, 2]]))
    return out


def build_target(
    linked: LinkedKGs,
    target: str,
    *,
    hops: int | None = None,
    valid: float = 0.05,
    test: float = 0.05,
    seed: int = 0,
) -> MultiKG:
    """One graph of the collection as a target, with its linked subgraph when ``hops`` is given.

    The target's entities and relations keep their ids (``0 .. n-1``, in file order). With ``hops``, the
    subgraph's triples (:func:`linked_subgraph`) join the target's **train** split: an aligned source entity is
    the target entity it is aligned with, other source entities and every source relation are appended after the
    target's own. Valid and test are the target's own, so MRRs with and without the subgraph are comparable.
    """
    if target not in linked.graphs:
        raise ConfigError(
            f"config key 'data.multi.view': '{target}' is not a graph of {linked.name} "
            f"(graphs: {', '.join(linked.graphs)}; or 'union')"
        )
    parts, split_report = split_graphs(linked, valid=valid, test=test, seed=seed)
    tgt = linked.graphs[target]
    aligned = linked.aligned(target)
    if len(aligned) == 0:
        raise ConfigError(
            f"graph '{target}' of {linked.name} shares no entity with the other graphs (no link names it)"
        )
    entity_labels = list(tgt.entity_labels)
    relation_labels = list(tgt.relation_labels)
    train = [parts[target]["train"]]
    sub_report: dict[str, Any] = {}
    if hops is not None:
        rep, off = _groups(linked)
        group_to_target = {int(rep[off[target] + i]): i for i in range(tgt.num_entities)}
        for name, (triples, reach) in linked_subgraph(
            linked, target, {n: p["train"] for n, p in parts.items()}, hops
        ).items():
            g = linked.graphs[name]
            ent_map = np.full(g.num_entities, -1, dtype=np.int64)
            for e in reach.tolist():
                mapped = group_to_target.get(int(rep[off[name] + e]))
                if mapped is None:
                    mapped = len(entity_labels)
                    entity_labels.append(g.entity_labels[e])
                ent_map[e] = mapped
            used_rel = np.unique(triples[:, 1])
            rel_map = np.full(len(g.relation_labels), -1, dtype=np.int64)
            rel_map[used_rel] = np.arange(
                len(relation_labels), len(relation_labels) + len(used_rel)
            )
            relation_labels += [g.relation_labels[r] for r in used_rel.tolist()]
            train.append(
                np.column_stack(
                    [ent_map[triples[:, 0]], rel_map[triples[:, 1]], ent_map[triples[:, 2]]]
                )
            )
            sub_report[name] = {
                "triples": len(triples),
                "new_entities": int((ent_map >= tgt.num_entities).sum()),
                "relations": len(used_rel),
            }
    anchors = np.zeros(len(entity_labels), dtype=bool)
    anchors[aligned] = True
    splits = {
        "train": np.concatenate(train).reshape(-1, 3),
        "valid": parts[target]["valid"],
        "test": parts[target]["test"],
    }
    report = {
        "source": linked.source,
        "view": target,
        "hops": hops,
        "split": split_report[target],
        "aligned_entities": len(aligned),
        "linked_subgraph": sub_report,
        "entities": len(entity_labels),
        "lines": {s: len(v) for s, v in splits.items()},
    }
    return _kg(
        f"{linked.name}:{target}",
        entity_labels,
        relation_labels,
        splits,
        report,
        anchors=torch.from_numpy(anchors),
    )
