"""The per-graph split, the union for joint pre-training, and target views with their linked subgraph."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pytest
import torch

from kgdistill.errors import ConfigError
from kgdistill.multi import (
    LinkedKGs,
    MultiKG,
    build_target,
    build_union,
    linked_subgraph,
    load_linked,
    read_dbp15k,
    read_linked,
    split_triples,
)

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "dbp15k-mini" / "zh_en"
SPLITS = ("train", "valid", "test")


@pytest.fixture(scope="module")
def mini() -> LinkedKGs:
    return read_dbp15k(FIXTURE)


def _write(root: Path, graphs: dict[str, list[str]], links: list[str]) -> Path:
    """A generic-layout collection: ``<graph>/triples.tsv`` rows ``"h r t"`` and ``links.tsv``."""
    for g, rows in graphs.items():
        (root / g).mkdir(parents=True)
        (root / g / "triples.tsv").write_text("".join("\t".join(r.split()) + "\n" for r in rows))
    (root / "links.tsv").write_text("".join("\t".join(r.split()) + "\n" for r in links))
    return root


def _labelled(kg: MultiKG, split: str) -> set[tuple[str, str, str]]:
    """A split's triples as label triples."""
    e, r = kg.entity_labels, kg.relation_labels
    return {(e[h], r[p], e[t]) for h, p, t in kg.splits[split].tolist()}


def _graph_split(
    linked: LinkedKGs, name: str, split: str, seed: int = 0, **frac: float
) -> set[tuple[str, str, str]]:
    """One graph's split by :func:`split_triples`, as label triples in that graph's own labels."""
    g = linked.graphs[name]
    idx, _ = split_triples(g.triples, seed=seed, **frac)
    e, r = g.entity_labels, g.relation_labels
    return {(e[h], r[p], e[t]) for h, p, t in g.triples[idx[split]].tolist()}


def _covered(triples: np.ndarray, idx: dict[str, np.ndarray]) -> None:
    """Every entity and relation of valid / test occurs in train."""
    train = triples[idx["train"]]
    ents, rels = set(train[:, [0, 2]].ravel().tolist()), set(train[:, 1].tolist())
    for s in ("valid", "test"):
        held = triples[idx[s]]
        assert set(held[:, [0, 2]].ravel().tolist()) <= ents
        assert set(held[:, 1].tolist()) <= rels


def _partition(n: int, idx: dict[str, np.ndarray], dropped: Iterable[int] = ()) -> None:
    """The splits are sorted, disjoint and cover every row but the dropped ones."""
    for s in SPLITS:
        assert np.all(np.diff(idx[s]) > 0)
    allrows = np.concatenate([idx[s] for s in SPLITS])
    assert len(np.unique(allrows)) == len(allrows)
    assert sorted(allrows.tolist()) == sorted(set(range(n)) - set(dropped))


# --------------------------------------------------------------------------------------------------------------
# split_triples
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("graph", ["zh", "en"])
def test_split_on_the_fixture(mini: LinkedKGs, graph: str) -> None:
    triples = mini.graphs[graph].triples
    n = len(triples)
    idx, report = split_triples(triples, valid=0.05, test=0.05, seed=0)
    assert set(idx) == set(SPLITS)
    # the fixture is dense enough for the exact sizes
    assert len(idx["test"]) == len(idx["valid"]) == round(0.05 * n)
    assert len(idx["train"]) == n - 2 * round(0.05 * n)
    assert report["duplicates"] == 0 and report["seed"] == 0
    assert report["requested"] == {"test": round(0.05 * n), "valid": round(0.05 * n)}
    assert {s: report[s] for s in SPLITS} == {s: len(idx[s]) for s in SPLITS}
    _partition(n, idx)
    _covered(triples, idx)


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_split_keeps_coverage_when_asking_for_a_lot(mini: LinkedKGs, seed: int) -> None:
    """Large fractions on a sparse graph: the split shrinks rather than leave an entity out of train."""
    triples = mini.graphs["zh"].triples
    idx, report = split_triples(triples, valid=0.45, test=0.45, seed=seed)
    _partition(len(triples), idx)
    _covered(triples, idx)
    assert (
        report["test"] + report["valid"]
        < report["requested"]["test"] + report["requested"]["valid"]
    )
    assert report["test"] <= report["requested"]["test"]
    assert report["valid"] <= report["requested"]["valid"]


def test_split_is_deterministic(mini: LinkedKGs) -> None:
    triples = mini.graphs["en"].triples
    a, _ = split_triples(triples, seed=3)
    b, _ = split_triples(triples.copy(), seed=3)
    c, _ = split_triples(triples, seed=4)
    for s in SPLITS:
        np.testing.assert_array_equal(a[s], b[s])
    assert not np.array_equal(a["test"], c["test"])
    assert len(a["test"]) == len(c["test"])
    # the default seed is 0
    d, _ = split_triples(triples)
    e, _ = split_triples(triples, seed=0)
    np.testing.assert_array_equal(d["test"], e["test"])


def _dense(n_ent: int = 12, n_rel: int = 3) -> np.ndarray:
    """Every ordered pair of ``n_ent`` entities, relations cycling: dense enough for any split."""
    rows = [(h, (h + t) % n_rel, t) for h in range(n_ent) for t in range(n_ent) if h != t]
    return np.asarray(rows, dtype=np.int64)


def test_split_exact_sizes_on_a_dense_hand_case() -> None:
    triples = _dense()  # 132 triples
    idx, report = split_triples(triples, valid=0.1, test=0.2, seed=5)
    assert (len(idx["test"]), len(idx["valid"])) == (round(0.2 * 132), round(0.1 * 132))
    assert len(idx["train"]) == 132 - 26 - 13
    _partition(132, idx)
    _covered(triples, idx)
    assert report["requested"] == {"test": 26, "valid": 13}
    none, _ = split_triples(triples, valid=0, test=0)
    assert len(none["train"]) == 132 and len(none["valid"]) == len(none["test"]) == 0


def test_split_drops_duplicates_and_reports_them() -> None:
    base = _dense(8, 2)  # 56 distinct triples
    triples = np.concatenate([base, base[:5], base[10:11], base[10:11]])
    idx, report = split_triples(triples, valid=0.1, test=0.1, seed=0)
    assert report["duplicates"] == 7
    n_unique = len(base)
    assert sum(len(idx[s]) for s in SPLITS) == n_unique
    assert report["requested"] == {"test": round(0.1 * n_unique), "valid": round(0.1 * n_unique)}
    # the first occurrence is kept; later copies are in no split
    _partition(len(triples), idx, dropped=range(n_unique, len(triples)))
    kept = triples[np.concatenate([idx[s] for s in SPLITS])]
    assert len(np.unique(kept, axis=0)) == len(kept)


def test_split_star_holds_out_nothing() -> None:
    """Every leaf of a star occurs once: holding out any triple would remove a leaf from train."""
    star = np.asarray([(0, 0, leaf) for leaf in range(1, 9)], dtype=np.int64)
    for seed in range(5):
        idx, report = split_triples(star, valid=0.2, test=0.2, seed=seed)
        assert len(idx["test"]) == len(idx["valid"]) == 0
        np.testing.assert_array_equal(idx["train"], np.arange(8))
        assert report["requested"] == {"test": 2, "valid": 2}


def test_split_chain_holds_out_one_inner_edge() -> None:
    """Chain 0-1-2-3-4: end edges would drop an end entity; once one inner edge is out, the other would
    drop entity 2 (its last occurrence) and must stay."""
    chain = np.asarray([(i, 0, i + 1) for i in range(4)], dtype=np.int64)
    for seed in range(10):
        idx, _ = split_triples(chain, valid=0.4, test=0.4, seed=seed)
        held = np.concatenate([idx["test"], idx["valid"]])
        assert len(held) == 1 and int(held[0]) in (1, 2)
        assert len(idx["test"]) == 1  # test is filled first
        _covered(chain, idx)


def test_split_keeps_a_relation_that_occurs_once() -> None:
    """Entities well connected, but relation 1 appears in a single triple: it must stay in train."""
    triples = _dense(6, 1)
    triples = np.concatenate([triples, [[0, 1, 3]]])  # the only use of relation 1
    last = len(triples) - 1
    for seed in range(10):
        idx, _ = split_triples(triples, valid=0.3, test=0.3, seed=seed)
        assert last in idx["train"]
        _covered(triples, idx)


def test_split_self_loops() -> None:
    # entity 0 occurs in a self-loop and in one other triple: the loop may go (0 stays in train through
    # (0, 0, 1)), (0, 0, 1) may not (entity 1 would vanish)
    triples = np.asarray([(0, 0, 0), (0, 0, 1)], dtype=np.int64)
    for seed in range(5):
        idx, _ = split_triples(triples, valid=0.0, test=0.49, seed=seed)
        assert idx["test"].tolist() == [0] and idx["train"].tolist() == [1]
    # entity 5 occurs only in its self-loop: holding it out would remove 5 from train
    triples = np.asarray([(5, 0, 5), (1, 0, 2), (2, 0, 1), (1, 0, 1)], dtype=np.int64)
    for seed in range(10):
        idx, _ = split_triples(triples, valid=0.3, test=0.3, seed=seed)
        assert 0 in idx["train"]
        _covered(triples, idx)
    # a self-loop whose entity has no other triple, and a relation used twice elsewhere
    lone = np.asarray([(3, 0, 3), (1, 0, 2), (2, 0, 1)], dtype=np.int64)
    idx, _ = split_triples(lone, valid=0.0, test=0.49, seed=0)
    assert 0 in idx["train"]


@pytest.mark.parametrize(("valid", "test"), [(0.5, 0.05), (0.05, 0.6), (-0.1, 0.05)])
def test_split_refuses_bad_fractions(valid: float, test: float) -> None:
    with pytest.raises(ConfigError, match=r"data\.multi"):
        split_triples(_dense(), valid=valid, test=test)


# --------------------------------------------------------------------------------------------------------------
# build_union
# --------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shared(mini: LinkedKGs) -> MultiKG:
    return build_union(mini, tie="shared")


@pytest.fixture(scope="module")
def separate(mini: LinkedKGs) -> MultiKG:
    return build_union(mini, tie="separate")


def _partner_labels(linked: LinkedKGs) -> dict[str, str]:
    """en label -> zh label of its link."""
    zh, en = linked.graphs["zh"], linked.graphs["en"]
    return {en.entity_labels[b]: zh.entity_labels[a] for a, b in linked.links["zh", "en"].tolist()}


def test_union_shared_entities_and_aliases(mini: LinkedKGs, shared: MultiKG) -> None:
    zh, en = mini.graphs["zh"], mini.graphs["en"]
    n_links = len(mini.links["zh", "en"])
    assert isinstance(shared, MultiKG) and not shared.temporal
    assert shared.num_entities == zh.num_entities + en.num_entities - n_links == 1100
    assert shared.num_relations == len(zh.relation_labels) + len(en.relation_labels)
    assert len(set(shared.entity_labels)) == shared.num_entities
    # every zh entity is kept under its own label (KG1 is the earlier graph, so it represents the group)
    assert set(zh.entity_labels) <= set(shared.entity_labels)
    partner = _partner_labels(mini)
    unaligned_en = set(en.entity_labels) - set(partner)
    assert set(shared.entity_labels) == set(zh.entity_labels) | unaligned_en
    # aliases: exactly the aligned en labels, each to the id of its zh partner
    assert set(shared.aliases) == set(partner)
    for en_label, zh_label in partner.items():
        assert shared.aliases[en_label] == shared.entity_ids[zh_label]
    assert shared.links is None
    maps = shared.id_maps()
    assert maps["entity"] == list(shared.entity_labels)
    assert maps["entity_aliases"] == dict(shared.aliases)
    assert shared.report["merged_entities"] == n_links and shared.report["tie"] == "shared"
    # anchors: the merged entities
    assert shared.anchors is not None and shared.anchors.dtype == torch.bool
    assert int(shared.anchors.sum()) == n_links
    assert {shared.entity_labels[i] for i in torch.nonzero(shared.anchors).ravel().tolist()} == set(
        partner.values()
    )


def test_union_train_is_every_graphs_train_split(mini: LinkedKGs, shared: MultiKG) -> None:
    partner = _partner_labels(mini)

    def canon(triples: set[tuple[str, str, str]]) -> set[tuple[str, str, str]]:
        return {(partner.get(h, h), r, partner.get(t, t)) for h, r, t in triples}

    for s in SPLITS:
        want = {name: _graph_split(mini, name, s) for name in mini.graphs}
        assert len(shared.splits[s]) == sum(len(v) for v in want.values())
        assert _labelled(shared, s) == canon(want["zh"]) | canon(want["en"])
        assert shared.facts[s] is shared.splits[s] or torch.equal(shared.facts[s], shared.splits[s])
    sizes = {s: len(shared.splits[s]) for s in SPLITS}
    rep = shared.report["split"]
    assert sizes == {s: rep["zh"][s] + rep["en"][s] for s in SPLITS}
    assert shared.report["lines"] == sizes


@pytest.mark.parametrize("tie", ["shared", "separate"])
def test_union_train_has_no_valid_or_test_triple(mini: LinkedKGs, tie: str) -> None:
    union = build_union(mini, tie=tie)
    train = {tuple(r) for r in union.splits["train"].tolist()}
    for s in ("valid", "test"):
        held = {tuple(r) for r in union.splits[s].tolist()}
        assert held and not (held & train)
    # nor does any of them involve an entity or relation that train lacks
    ents = {e for h, _, t in train for e in (h, t)}
    rels = {r for _, r, _ in train}
    for s in ("valid", "test"):
        for h, r, t in union.splits[s].tolist():
            assert h in ents and t in ents and r in rels


def test_union_separate_links(mini: LinkedKGs, separate: MultiKG, shared: MultiKG) -> None:
    zh, en = mini.graphs["zh"], mini.graphs["en"]
    assert separate.num_entities == zh.num_entities + en.num_entities
    assert separate.entity_labels == zh.entity_labels + en.entity_labels
    assert separate.aliases == {} and "entity_aliases" not in separate.id_maps()
    links = separate.links
    assert links is not None and links.dtype == torch.long
    assert links.shape == (len(mini.links["zh", "en"]), 2)
    # every pair joins the two URIs of one line of ref_ent_ids
    uri = {}
    for k in (1, 2):
        for line in (FIXTURE / f"ent_ids_{k}").read_text(encoding="utf-8").splitlines():
            i, u = line.split("\t")
            uri[u] = int(i)
    ref = {
        tuple(int(x) for x in line.split("\t"))
        for line in (FIXTURE / "ref_ent_ids").read_text(encoding="utf-8").splitlines()
    }
    got = set()
    for a, b in links.tolist():
        la, lb = separate.entity_labels[a], separate.entity_labels[b]
        assert la.startswith("zh:") and lb.startswith("en:")
        got.add((uri[la[3:]], uri[lb[3:]]))
    assert got == ref
    assert int(separate.anchors.sum()) == 2 * len(ref)
    # the same triples as the shared union, just with the en copies kept apart
    for s in SPLITS:
        assert len(separate.splits[s]) == len(shared.splits[s])
    assert separate.report["merged_entities"] == 0


def test_union_refuses_an_unknown_tie(mini: LinkedKGs) -> None:
    with pytest.raises(ConfigError, match=r"data\.multi\.tie"):
        build_union(mini, tie="glued")  # type: ignore[arg-type]


def test_union_of_three_graphs_merges_transitively(tmp_path: Path) -> None:
    linked = read_linked(
        _write(
            tmp_path / "three",
            {"a": ["x1 r x2", "x2 r x1"], "b": ["y1 s y2", "y2 s y1"], "c": ["z1 t z2", "z2 t z1"]},
            ["a x1 b y1", "b y1 c z1", "c z2 b y2"],
        )
    )
    union = build_union(linked, valid=0, test=0)
    # x1 = y1 = z1 and y2 = z2: 6 labels, 3 merged away
    assert union.entity_labels == ("a:x1", "a:x2", "b:y2")
    assert union.aliases == {"b:y1": 0, "c:z1": 0, "c:z2": 2}
    assert sorted(_labelled(union, "train")) == sorted(
        {
            ("a:x1", "a:r", "a:x2"),
            ("a:x2", "a:r", "a:x1"),
            ("a:x1", "b:s", "b:y2"),
            ("b:y2", "b:s", "a:x1"),
            ("a:x1", "c:t", "b:y2"),
            ("b:y2", "c:t", "a:x1"),
        }
    )


@pytest.mark.slow
def test_union_on_the_full_data(data_root: Path) -> None:
    linked = load_linked("dbp15k_zh_en", root=data_root)
    union = build_union(linked)
    assert union.num_entities == 19388 + 19572 - 15000
    assert union.num_relations == 1701 + 1323
    assert len(union.aliases) == 15000
    assert sum(len(union.splits[s]) for s in SPLITS) == 70414 + 95142
    for g in ("zh", "en"):
        rep = union.report["split"][g]
        assert (rep["test"], rep["valid"]) == (rep["requested"]["test"], rep["requested"]["valid"])


# --------------------------------------------------------------------------------------------------------------
# build_target and linked_subgraph on the fixture
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["zh", "en"])
def test_target_alone(mini: LinkedKGs, target: str) -> None:
    g = mini.graphs[target]
    kg = build_target(mini, target)
    assert kg.name == f"dbp15k_zh_en:{target}"
    assert kg.entity_labels == g.entity_labels and kg.relation_labels == g.relation_labels
    idx, _ = split_triples(g.triples, valid=0.05, test=0.05, seed=0)
    for s in SPLITS:
        np.testing.assert_array_equal(kg.splits[s].numpy(), g.triples[idx[s]])
    assert kg.aliases == {} and kg.links is None
    np.testing.assert_array_equal(torch.nonzero(kg.anchors).ravel().numpy(), mini.aligned(target))
    assert kg.report["aligned_entities"] == 700 and kg.report["linked_subgraph"] == {}


@pytest.mark.parametrize("target", ["zh", "en"])
def test_target_hops_0_adds_facts_between_aligned_entities(mini: LinkedKGs, target: str) -> None:
    other = "en" if target == "zh" else "zh"
    alone = build_target(mini, target)
    kg = build_target(mini, target, hops=0)
    n_own = len(alone.splits["train"])
    assert kg.entity_labels == alone.entity_labels  # no new entity
    assert kg.relation_labels[: alone.num_relations] == alone.relation_labels
    assert all(r.startswith(f"{other}:rel/") for r in kg.relation_labels[alone.num_relations :])
    torch.testing.assert_close(kg.splits["train"][:n_own], alone.splits["train"])
    added = kg.splits["train"][n_own:]
    assert len(added) > 0
    assert bool(kg.anchors[added[:, 0]].all() and kg.anchors[added[:, 2]].all())
    assert bool((added[:, 1] >= alone.num_relations).all())
    # exactly the other graph's train triples between aligned entities, translated through the links
    pairs = mini.links["zh", "en"].tolist()
    to_target = {(b if target == "zh" else a): (a if target == "zh" else b) for a, b in pairs}
    src = mini.graphs[other]
    want = {
        (to_target[h], src.relation_labels[r], to_target[t])
        for h, r, t in src.triples[split_triples(src.triples)[0]["train"]].tolist()
        if h in to_target and t in to_target
    }
    got = [(h, kg.relation_labels[r], t) for h, r, t in added.tolist()]
    assert len(got) == len(set(got)) == len(want)
    assert set(got) == want
    assert kg.report["linked_subgraph"][other] == {
        "triples": len(want),
        "new_entities": 0,
        "relations": kg.num_relations - alone.num_relations,
    }


@pytest.mark.parametrize("target", ["zh", "en"])
def test_target_valid_test_and_anchors_do_not_depend_on_hops(mini: LinkedKGs, target: str) -> None:
    views = {h: build_target(mini, target, hops=h) for h in (None, 0, 1, 2)}
    n = mini.graphs[target].num_entities
    sizes = []
    for kg in views.values():
        for s in ("valid", "test"):
            torch.testing.assert_close(kg.splits[s], views[None].splits[s])
        # anchors: exactly the aligned target entities; appended source entities never are
        assert kg.anchors.shape == (kg.num_entities,)
        np.testing.assert_array_equal(
            torch.nonzero(kg.anchors).ravel().numpy(), mini.aligned(target)
        )
        assert kg.entity_labels[:n] == mini.graphs[target].entity_labels
        sizes.append((len(kg.splits["train"]), kg.num_entities))
    assert sizes == sorted(sizes)  # more hops, more facts and entities
    # hops 1 reaches unaligned source entities, which are appended under their own labels
    one = views[1]
    assert one.num_entities > n
    other = "en" if target == "zh" else "zh"
    assert all(lab.startswith(f"{other}:") for lab in one.entity_labels[n:])
    assert one.report["linked_subgraph"][other]["new_entities"] == one.num_entities - n


def test_target_errors(mini: LinkedKGs, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'fr' is not a graph of dbp15k_zh_en") as exc:
        build_target(mini, "fr")
    assert "zh, en" in str(exc.value) and "data.multi.view" in str(exc.value)
    with pytest.raises(ConfigError, match=r"data\.multi\.hops"):
        build_target(mini, "zh", hops=-1)
    # a third graph that no link names
    linked = read_linked(
        _write(
            tmp_path / "lonely",
            {"a": ["x1 r x2", "x2 r x1"], "b": ["y1 r y2", "y2 r y1"], "c": ["z1 r z2", "z2 r z1"]},
            ["a x1 b y1"],
        )
    )
    with pytest.raises(ConfigError, match="shares no entity") as exc:
        build_target(linked, "c", valid=0, test=0)
    assert "'c'" in str(exc.value)
    build_target(linked, "a", valid=0, test=0)  # the linked graphs are fine
    assert build_union(linked, valid=0, test=0).num_entities == 5


# --------------------------------------------------------------------------------------------------------------
# linked_subgraph: a hand-checked case
# --------------------------------------------------------------------------------------------------------------
#
#   target a:  x1 -p-> x2 -p-> x3 -q-> x1            links: x1 = y1, x2 = y2
#   source b:  y5 -s-> y1 -s-> y2 -s-> y3 -u-> y4,   y6 -u-> y7
#
#   hops 0: reach {y1, y2}            -> y1 s y2
#   hops 1: reach {y1, y2, y3, y5}    -> + y2 s y3, y5 s y1          (new: y3, y5)
#   hops 2: reach + {y4}              -> + y3 u y4                   (new: y4; relation u)
#   never:  y6 u y7 (not connected to an aligned entity)

HAND_A = ["x1 p x2", "x2 p x3", "x3 q x1"]
HAND_B = ["y1 s y2", "y2 s y3", "y3 u y4", "y5 s y1", "y6 u y7"]


@pytest.fixture
def hand(tmp_path: Path) -> LinkedKGs:
    return read_linked(
        _write(tmp_path / "hand", {"a": HAND_A, "b": HAND_B}, ["a x1 b y1", "b y2 a x2"])
    )


def test_hand_linked_subgraph(hand: LinkedKGs) -> None:
    b = hand.graphs["b"]
    assert b.entity_labels == ("b:y1", "b:y2", "b:y3", "b:y4", "b:y5", "b:y6", "b:y7")
    train = {name: g.triples for name, g in hand.graphs.items()}
    expect = {
        0: ([0], [0, 1]),
        1: ([0, 1, 3], [0, 1, 2, 4]),
        2: ([0, 1, 2, 3], [0, 1, 2, 3, 4]),
        5: ([0, 1, 2, 3], [0, 1, 2, 3, 4]),
    }
    for hops, (rows, ents) in expect.items():
        out = linked_subgraph(hand, "a", train, hops)
        assert list(out) == ["b"]
        triples, reach = out["b"]
        np.testing.assert_array_equal(triples, b.triples[rows])
        np.testing.assert_array_equal(reach, ents)
    # the other direction: a's triples between aligned entities (x1 p x2); x3 is reached at one hop
    triples, reach = linked_subgraph(hand, "b", train, 0)["a"]
    np.testing.assert_array_equal(triples, [[0, 0, 1]])
    np.testing.assert_array_equal(reach, [0, 1])
    triples, reach = linked_subgraph(hand, "b", train, 1)["a"]
    np.testing.assert_array_equal(triples, hand.graphs["a"].triples)
    np.testing.assert_array_equal(reach, [0, 1, 2])


def _train_labels(kg: MultiKG) -> list[tuple[str, str, str]]:
    e, r = kg.entity_labels, kg.relation_labels
    return [(e[h], r[p], e[t]) for h, p, t in kg.splits["train"].tolist()]


def test_hand_target_views(hand: LinkedKGs) -> None:
    own = [("a:x1", "a:p", "a:x2"), ("a:x2", "a:p", "a:x3"), ("a:x3", "a:q", "a:x1")]
    alone = build_target(hand, "a", valid=0, test=0)
    assert _train_labels(alone) == own
    zero = build_target(hand, "a", hops=0, valid=0, test=0)
    assert zero.entity_labels == ("a:x1", "a:x2", "a:x3")
    assert zero.relation_labels == ("a:p", "a:q", "b:s")
    assert _train_labels(zero) == [*own, ("a:x1", "b:s", "a:x2")]
    assert zero.splits["train"].tolist()[3] == [0, 2, 1]

    one = build_target(hand, "a", hops=1, valid=0, test=0)
    assert one.entity_labels == ("a:x1", "a:x2", "a:x3", "b:y3", "b:y5")
    assert one.relation_labels == ("a:p", "a:q", "b:s")
    assert one.splits["train"].tolist()[3:] == [[0, 2, 1], [1, 2, 3], [4, 2, 0]]
    assert one.anchors.tolist() == [True, True, False, False, False]
    assert one.report["linked_subgraph"]["b"] == {"triples": 3, "new_entities": 2, "relations": 1}

    two = build_target(hand, "a", hops=2, valid=0, test=0)
    assert two.entity_labels == ("a:x1", "a:x2", "a:x3", "b:y3", "b:y4", "b:y5")
    assert two.relation_labels == ("a:p", "a:q", "b:s", "b:u")
    assert _train_labels(two)[3:] == [
        ("a:x1", "b:s", "a:x2"),
        ("a:x2", "b:s", "b:y3"),
        ("b:y3", "b:u", "b:y4"),
        ("b:y5", "b:s", "a:x1"),
    ]
    # the source graph as target: aligned a entities become b's own ids
    rev = build_target(hand, "b", hops=0, valid=0, test=0)
    assert rev.entity_labels == hand.graphs["b"].entity_labels
    assert _train_labels(rev)[5:] == [("b:y1", "a:p", "b:y2")]


def test_hand_target_reaches_through_a_third_graph(tmp_path: Path) -> None:
    """c's z1 is linked to b's y1 only, and y1 to a's x1: x1 counts as aligned with c (same group)."""
    linked = read_linked(
        _write(
            tmp_path / "three",
            {"a": ["x1 p x2", "x1 p x3"], "b": ["y1 s y2"], "c": ["z1 t z2", "z2 t z1"]},
            ["a x1 b y1", "b y1 c z1", "a x2 c z2"],
        )
    )
    kg = build_target(linked, "c", hops=0, valid=0, test=0)
    assert kg.entity_labels == ("c:z1", "c:z2")
    assert set(_train_labels(kg)[2:]) == {("c:z1", "a:p", "c:z2")}
    one = build_target(linked, "c", hops=1, valid=0, test=0)
    assert one.entity_labels == ("c:z1", "c:z2", "a:x3", "b:y2")
    assert set(_train_labels(one)[2:]) == {
        ("c:z1", "a:p", "c:z2"),
        ("c:z1", "a:p", "a:x3"),
        ("c:z1", "b:s", "b:y2"),
    }
