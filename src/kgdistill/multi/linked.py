"""Several knowledge graphs linked by entity alignment, as read from disk.

Two formats are read:

* **DBP15K** (JAPE / GCN-Align layout): a pair folder (``zh_en``) with ``ent_ids_1``, ``ent_ids_2``
  (``id <TAB> URI``), ``triples_1``, ``triples_2`` (``head <TAB> relation <TAB> tail`` ids) and ``ref_ent_ids``
  (``KG1 id <TAB> KG2 id``). Entity and relation ids of the two graphs share one id space with disjoint sets. The
  graphs are named after the folder: ``zh_en`` holds ``zh`` (KG1) and ``en`` (KG2). No relation names are shipped,
  so relations are labelled by id.
* **Generic**: a folder with one sub-folder per graph, each holding ``triples.tsv`` (``head <TAB> relation <TAB>
  tail`` labels), and ``links.tsv`` at the top (``graph_a <TAB> entity_a <TAB> graph_b <TAB> entity_b``).

Labels are namespaced by graph (``zh:http://zh.dbpedia.org/resource/...``, ``en:rel/1234``), so two graphs may
use the same local names without clashing. Links are checked: a link naming an unknown entity, the same link twice,
or one entity linked to two different entities of the same other graph is an error naming the file and line.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kgdistill.catalog import LINKED_INFO
from kgdistill.data.datasets import data_root
from kgdistill.data.raw import open_text, resolve_file
from kgdistill.errors import DataError

__all__ = [
    "LINKED",
    "Graph",
    "LinkedKGs",
    "load_linked",
    "read_dbp15k",
    "read_linked",
]


@dataclass(frozen=True)
class Graph:
    """One graph of a collection.

    Attributes:
        name: the graph's name inside the collection (``zh``).
        entity_labels / relation_labels: namespaced labels (``zh:...``), id -> label.
        triples: ``(n, 3)`` local ids ``(h, r, t)``, in file order.
        lines: ``(n,)`` 1-based line numbers of the triples in ``path``.
        path: the triples file.
    """

    name: str
    entity_labels: tuple[str, ...]
    relation_labels: tuple[str, ...]
    triples: np.ndarray
    lines: np.ndarray
    path: str

    @property
    def num_entities(self) -> int:
        return len(self.entity_labels)


@dataclass(frozen=True)
class LinkedKGs:
    """Graphs plus alignment links between them.

    Attributes:
        name: collection name (``dbp15k_zh_en``).
        graphs: graph name -> :class:`Graph`, in file order.
        links: ``(graph_a, graph_b)`` -> ``(m, 2)`` local entity ids ``[a, b]`` (``graph_a`` comes first in
            ``graphs``).
        source: where the collection was read from.
    """

    name: str
    graphs: Mapping[str, Graph]
    links: Mapping[tuple[str, str], np.ndarray]
    source: str
    report: Mapping[str, object] = field(default_factory=dict)

    def aligned(self, graph: str) -> np.ndarray:
        """Local ids of ``graph``'s entities that have a link to some other graph: ``(k,)`` sorted."""
        ids = [
            pairs[:, 0 if a == graph else 1]
            for (a, b), pairs in self.links.items()
            if graph in (a, b)
        ]
        return np.unique(np.concatenate(ids)) if ids else np.zeros(0, dtype=np.int64)

    def __repr__(self) -> str:
        gs = ", ".join(
            f"{g.name}: {g.num_entities} entities, {len(g.triples)} triples"
            for g in self.graphs.values()
        )
        ls = ", ".join(f"{a}-{b}: {len(p)}" for (a, b), p in self.links.items())
        return f"LinkedKGs({self.name!r}; {gs}; links {ls})"


def _rows(path: Path, ncols: int) -> list[tuple[int, list[str]]]:
    """Non-empty lines of a tab-separated file as ``(line number, fields)``; a wrong column count is an error."""
    out = []
    for i, line in enumerate(open_text(path), start=1):
        text = line.rstrip("\n").rstrip("\r")
        if not text.strip():
            continue
        parts = text.split("\t")
        if len(parts) != ncols:
            raise DataError(
                f"expected {ncols} tab-separated columns, found {len(parts)}", path=path, line=i
            )
        out.append((i, parts))
    return out


def _int(value: str, path: Path, line: int) -> int:
    try:
        return int(value)
    except ValueError:
        raise DataError(f"'{value}' is not an integer id", path=path, line=line) from None


def _check_links(
    pairs: list[tuple[int, int, int]],
    path: Path,
    names: tuple[str, str],
    labels: tuple[Graph, Graph],
) -> np.ndarray:
    """``(line, a, b)`` -> ``(m, 2)``; duplicates and one-to-many links are errors."""
    seen: dict[tuple[int, int], int] = {}
    first_a: dict[int, tuple[int, int]] = {}
    first_b: dict[int, tuple[int, int]] = {}
    for line, a, b in pairs:
        if (a, b) in seen:
            raise DataError(
                f"duplicate link {labels[0].entity_labels[a]} = {labels[1].entity_labels[b]} "
                f"(first on line {seen[(a, b)]})",
                path=path,
                line=line,
            )
        seen[(a, b)] = line
        for x, y, first, graph, other in (
            (a, b, first_a, names[0], labels[1]),
            (b, a, first_b, names[1], labels[0]),
        ):
            if x in first and first[x][1] != y:
                raise DataError(
                    f"conflicting links: entity {x} of '{graph}' is linked to both "
                    f"{other.entity_labels[first[x][1]]} (line {first[x][0]}) and "
                    f"{other.entity_labels[y]}",
                    path=path,
                    line=line,
                )
            first.setdefault(x, (line, y))
    return np.asarray([(a, b) for _, a, b in pairs], dtype=np.int64).reshape(-1, 2)


def _check_transitive(
    per_pair: Mapping[tuple[str, str], list[tuple[int, int, int]]],
    graphs: Mapping[str, Graph],
    path: Path,
) -> None:
    """With three or more graphs, links chain (a-b, b-c, a-c): a chain that joins two different entities of one
    graph is a conflict, reported at the link that closes it."""
    parent: dict[tuple[str, int], tuple[str, int]] = {}
    members: dict[tuple[str, int], dict[str, int]] = {}

    def find(x: tuple[str, int]) -> tuple[str, int]:
        while parent.get(x, x) != x:
            x = parent[x]
        return x

    events = sorted(
        (line, (ga, a), (gb, b)) for (ga, gb), pairs in per_pair.items() for line, a, b in pairs
    )
    for line, x, y in events:
        rx, ry = find(x), find(y)
        if rx == ry:
            continue
        mx, my = members.get(rx, {rx[0]: rx[1]}), members.get(ry, {ry[0]: ry[1]})
        mx = {**mx, x[0]: x[1]} if x[0] not in mx else mx
        my = {**my, y[0]: y[1]} if y[0] not in my else my
        for g in mx.keys() & my.keys():
            if mx[g] != my[g]:
                labels = graphs[g].entity_labels
                raise DataError(
                    f"conflicting links: this link joins {labels[mx[g]]} and {labels[my[g]]}, two "
                    f"entities of graph '{g}', through a chain of links",
                    path=path,
                    line=line,
                )
        parent[ry] = rx
        members[rx] = {**my, **mx}
        members.pop(ry, None)


def read_dbp15k(folder: str | os.PathLike[str], *, name: str | None = None) -> LinkedKGs:
    """Read one DBP15K pair folder (``zh_en``, ``ja_en``, ``fr_en`` or a folder of the same layout)."""
    folder = Path(folder)
    pair = folder.name
    g1, _, g2 = pair.partition("_")
    if not g2:
        g1, g2 = "kg1", "kg2"
    graphs: list[Graph] = []
    global_ids: list[dict[int, int]] = []
    for k, gname in ((1, g1), (2, g2)):
        ent_path = resolve_file(folder, f"ent_ids_{k}")
        ids: dict[int, int] = {}
        labels: list[str] = []
        for line, (gid, uri) in _rows(ent_path, 2):
            g = _int(gid, ent_path, line)
            if g in ids:
                raise DataError(f"entity id {g} listed twice", path=ent_path, line=line)
            ids[g] = len(labels)
            labels.append(f"{gname}:{uri}")
        tri_path = resolve_file(folder, f"triples_{k}")
        rel_ids: dict[int, int] = {}
        trip, lines = [], []
        for line, parts in _rows(tri_path, 3):
            h, r, t = (_int(x, tri_path, line) for x in parts)
            for e in (h, t):
                if e not in ids:
                    raise DataError(
                        f"entity id {e} is not in {ent_path.name} of graph '{gname}'",
                        path=tri_path,
                        line=line,
                    )
            trip.append((ids[h], rel_ids.setdefault(r, len(rel_ids)), ids[t]))
            lines.append(line)
        graphs.append(
            Graph(
                name=gname,
                entity_labels=tuple(labels),
                relation_labels=tuple(f"{gname}:rel/{r}" for r in rel_ids),
                triples=np.asarray(trip, dtype=np.int64).reshape(-1, 3),
                lines=np.asarray(lines, dtype=np.int64),
                path=str(tri_path),
            )
        )
        global_ids.append(ids)
    link_path = resolve_file(folder, "ref_ent_ids")
    pairs = []
    for line, (a, b) in _rows(link_path, 2):
        ga, gb = _int(a, link_path, line), _int(b, link_path, line)
        for g, ids, gname in ((ga, global_ids[0], g1), (gb, global_ids[1], g2)):
            if g not in ids:
                raise DataError(
                    f"link names entity id {g}, which is not an entity of graph '{gname}'",
                    path=link_path,
                    line=line,
                )
        pairs.append((line, global_ids[0][ga], global_ids[1][gb]))
    links = _check_links(pairs, link_path, (g1, g2), (graphs[0], graphs[1]))
    return LinkedKGs(
        name=name or f"dbp15k_{pair}",
        graphs={g.name: g for g in graphs},
        links={(g1, g2): links},
        source=str(folder),
    )


def read_linked(folder: str | os.PathLike[str], *, name: str | None = None) -> LinkedKGs:
    """Read the generic layout: ``<graph>/triples.tsv`` sub-folders plus a top-level ``links.tsv``."""
    folder = Path(folder)
    subs = sorted(p for p in folder.iterdir() if p.is_dir() and any(p.glob("triples.tsv*")))
    if len(subs) < 2:
        raise DataError(
            "a linked collection needs at least two sub-folders holding triples.tsv", path=folder
        )
    graphs: dict[str, Graph] = {}
    for sub in subs:
        path = resolve_file(sub, "triples.tsv")
        ents: dict[str, int] = {}
        rels: dict[str, int] = {}
        trip, lines = [], []
        for line, (h, r, t) in _rows(path, 3):
            trip.append(
                (
                    ents.setdefault(h, len(ents)),
                    rels.setdefault(r, len(rels)),
                    ents.setdefault(t, len(ents)),
                )
            )
            lines.append(line)
        if not trip:
            raise DataError("no triples", path=path)
        graphs[sub.name] = Graph(
            name=sub.name,
            entity_labels=tuple(f"{sub.name}:{e}" for e in ents),
            relation_labels=tuple(f"{sub.name}:{r}" for r in rels),
            triples=np.asarray(trip, dtype=np.int64),
            lines=np.asarray(lines, dtype=np.int64),
            path=str(path),
        )
    order = list(graphs)
    index = {g: {label: i for i, label in enumerate(gr.entity_labels)} for g, gr in graphs.items()}
    link_path = resolve_file(folder, "links.tsv")
    per_pair: dict[tuple[str, str], list[tuple[int, int, int]]] = {}
    for line, (ga, ea, gb, eb) in _rows(link_path, 4):
        for g in (ga, gb):
            if g not in graphs:
                raise DataError(
                    f"unknown graph '{g}' (graphs: {', '.join(order)})", path=link_path, line=line
                )
        if ga == gb:
            raise DataError(
                f"a link must join two different graphs, not '{ga}' to itself",
                path=link_path,
                line=line,
            )
        if order.index(ga) > order.index(gb):
            ga, ea, gb, eb = gb, eb, ga, ea
        ids = []
        for g, e in ((ga, ea), (gb, eb)):
            if f"{g}:{e}" not in index[g]:
                raise DataError(
                    f"link names entity '{e}', which does not occur in graph '{g}'",
                    path=link_path,
                    line=line,
                )
            ids.append(index[g][f"{g}:{e}"])
        per_pair.setdefault((ga, gb), []).append((line, ids[0], ids[1]))
    _check_transitive(per_pair, graphs, link_path)
    links = {
        key: _check_links(p, link_path, key, (graphs[key[0]], graphs[key[1]]))
        for key, p in per_pair.items()
    }
    if not links:
        raise DataError("no links", path=link_path)
    return LinkedKGs(name=name or folder.name, graphs=graphs, links=links, source=str(folder))


@dataclass(frozen=True)
class LinkedEntry:
    """A known linked collection: its folder under the data root and its reader."""

    folder: str
    description: str


#: the known collections (listed without PyTorch from :data:`kgdistill.catalog.LINKED_INFO`)
LINKED: dict[str, LinkedEntry] = {
    name: LinkedEntry(info.folder, info.description) for name, info in LINKED_INFO.items()
}


def load_linked(
    name_or_path: str | os.PathLike[str], *, root: str | os.PathLike[str] | None = None
) -> LinkedKGs:
    """Read a registered collection (``dbp15k_zh_en``, under the data root) or a collection folder."""
    text = str(name_or_path)
    key = text.strip().lower().replace("-", "_").replace("/", "_")
    if key in LINKED:
        base = data_root(root)
        if base is None:
            raise DataError(
                f"collection '{text}' needs a data root: pass --data-root or set KGDISTILL_DATA to the "
                f"folder that holds '{LINKED[key].folder}'"
            )
        folder = base / LINKED[key].folder
        if not folder.is_dir():
            raise DataError(f"collection '{text}' not found (looked in {folder})")
        return read_dbp15k(folder, name=key)
    folder = Path(text).expanduser()
    if not folder.is_dir():
        raise DataError(
            f"'{text}' is neither a known linked collection ({', '.join(LINKED)}) nor a folder"
        )
    if any((folder / f).is_file() for f in ("ref_ent_ids", "ref_ent_ids.gz")):
        return read_dbp15k(folder)
    return read_linked(folder)
