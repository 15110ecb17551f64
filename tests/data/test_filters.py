"""``FilterIndex.known`` against a naive implementation, hand-checked filters, and the batching helpers."""

from __future__ import annotations

import bisect
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch

from kgdistill.data import KG, build_kg, read_raw
from kgdistill.data.batching import Batch, both_directions, sample_candidates
from kgdistill.data.filters import FilterIndex
from kgdistill.data.raw import RawKG, RawSplit
from kgdistill.data.time import UNKNOWN, UNKNOWN_ANCHOR
from kgdistill.errors import ConfigError

FIXTURES = Path(__file__).parents[1] / "fixtures"
SPLITS = ("train", "valid", "test")
U = UNKNOWN
Pairs = set[tuple[int, int]]


# -- the naive reference: loop over queries, sets ----------------------------------------------------------


def naive_known(
    raw: RawKG,
    kg: KG,
    queries: torch.Tensor,
    *,
    mode: str,
    splits: tuple[str, ...] = SPLITS,
) -> Pairs:
    """Known answers computed from the raw arrays: same day (point), bin inside the interval (interval)."""
    R = len(raw.relation_labels)
    bounds = list(kg.time.boundaries)

    def to_bin(y: int, open_value: float) -> float:
        return open_value if y == UNKNOWN else max(bisect.bisect_right(bounds, y) - 1, 0)

    qs = queries.tolist()
    wanted = {(q[0], q[1]) for q in qs}  # only these keys are looked up
    index: dict[tuple[int, int], list[tuple[int, float, float]]] = defaultdict(list)
    for s in splits:
        sp = raw.splits[s]
        starts = sp.start.tolist() if sp.start is not None else [0] * len(sp)
        ends = sp.end.tolist() if sp.end is not None else [0] * len(sp)
        for (h, r, t), a, b in zip(sp.triples.tolist(), starts, ends, strict=True):
            if mode == "interval":
                lo, hi = to_bin(a, -np.inf), to_bin(b, np.inf)
            else:
                lo, hi = a, b
            if (h, r) in wanted:
                index[(h, r)].append((t, lo, hi))
            if (t, r + R) in wanted:
                index[(t, r + R)].append((h, lo, hi))
    out: Pairs = set()
    for i, q in enumerate(qs):
        at = kg.time.anchors[q[3]] if mode != "static" else None
        for ans, lo, hi in index.get((q[0], q[1]), []):
            if mode == "static" or (mode == "interval" and at == UNKNOWN_ANCHOR) or lo <= at <= hi:
                out.add((i, ans))
    return out


def known(index: FilterIndex, queries: torch.Tensor) -> Pairs:
    rows, cols = index.known(queries)
    assert rows.shape == cols.shape and rows.dtype == cols.dtype == torch.long
    if len(rows):
        assert int(rows.min()) >= 0 and int(rows.max()) < len(queries)
    return set(zip(rows.tolist(), cols.tolist(), strict=True))


def _queries(kg: KG, split: str, n: int | None = None) -> torch.Tensor:
    facts = kg.splits[split] if n is None else kg.splits[split][:n]
    return both_directions(facts, kg.num_relations)


# -- real data -----------------------------------------------------------------------------------------------


def test_static_tiny_kg(tiny_kg: KG) -> None:
    from kgdistill.data import read_static_names

    raw = read_static_names(FIXTURES / "fb15k237-mini")
    index = FilterIndex.build(tiny_kg)
    assert index.mode == "static" and index.lo is None
    q = torch.cat(
        [_queries(tiny_kg, "test"), _queries(tiny_kg, "valid"), _queries(tiny_kg, "train", 200)]
    )
    got = known(index, q)
    assert got == naive_known(raw, tiny_kg, q, mode="static")
    # every query's own answer is known
    assert {(i, int(t)) for i, t in enumerate(q[:, 2].tolist())} <= got
    # train-only filter
    train_only = FilterIndex.build(tiny_kg, ("train",))
    assert known(train_only, q) == naive_known(raw, tiny_kg, q, mode="static", splits=("train",))


@pytest.mark.slow
def test_static_wn18rr(data_root: Path) -> None:
    raw = read_raw("wn18rr", root=data_root)
    kg = build_kg(raw)
    index = FilterIndex.build(kg)
    q = torch.cat([_queries(kg, "test", 200), _queries(kg, "valid", 100)])
    got = known(index, q)
    assert got == naive_known(raw, kg, q, mode="static")
    assert len(got) > len(q)  # some queries do have other known answers


def test_point_tiny(tiny_point_kg: KG) -> None:
    from kgdistill.data import read_point_ids

    raw = read_point_ids(FIXTURES / "icews14-mini", origin="2014-01-01")
    kg = tiny_point_kg
    index = FilterIndex.build(kg)
    assert index.mode == "point"
    q = torch.cat([_queries(kg, "test"), _queries(kg, "valid"), _queries(kg, "train", 300)])
    got = known(index, q)
    assert got == naive_known(raw, kg, q, mode="point")
    # the same queries on other days: answers of that day only
    shifted = q.clone()
    shifted[:, 3] = (q[:, 3] + 1) % kg.num_times
    assert known(index, shifted) == naive_known(raw, kg, shifted, mode="point")
    # the static filter on a point KG ignores the time and knows at least as much
    static = FilterIndex.build(kg, time_aware=False)
    assert static.mode == "static"
    got_static = known(static, q)
    assert got_static == naive_known(raw, kg, q, mode="static")
    assert got < got_static


@pytest.fixture(scope="module")
def raw_yago() -> RawKG:
    return read_raw("yago11k")


def _grid(kg: KG, n_pairs: int) -> torch.Tensor:
    """``n_pairs`` (h, r) of test queries, each asked at every time id."""
    base = _queries(kg, "test")[:: max(1, 2 * len(kg.splits["test"]) // n_pairs)][:n_pairs]
    T = kg.num_times
    grid = base.repeat_interleave(T, dim=0)
    grid[:, 3] = torch.arange(T).repeat(len(base))
    return grid


@pytest.mark.parametrize("mode", ["start", "split"])
def test_interval_yago(raw_yago: RawKG, yago: KG, mode: str) -> None:
    kg = yago if mode == "start" else build_kg(raw_yago, interval_mode="split")
    index = FilterIndex.build(kg)
    assert index.mode == "interval"
    assert "unknown" in kg.time.labels
    q = torch.cat([_queries(kg, "test"), _queries(kg, "valid", 300), _grid(kg, 24)])
    got = known(index, q)
    ref = naive_known(raw_yago, kg, q, mode="interval")
    assert got == ref
    # unknown time -> the static filter
    unk = q.clone()
    unk[:, 3] = kg.time.labels.index("unknown")
    assert known(index, unk) == naive_known(raw_yago, kg, unk, mode="static")
    static = known(FilterIndex.build(kg, time_aware=False), q)
    assert got < static


@pytest.mark.parametrize("mode", ["start", "expand", "split"])
def test_interval_tiny_tkg(mode: str) -> None:
    from kgdistill.data import read_hyte

    raw = read_hyte(FIXTURES / "wikidata12k-mini")
    kg = build_kg(raw, granularity="year", interval_mode=mode)  # type: ignore[arg-type]
    index = FilterIndex.build(kg)
    q = torch.cat([_queries(kg, "test"), _queries(kg, "valid"), _grid(kg, 20)])
    assert known(index, q) == naive_known(raw, kg, q, mode="interval")


# -- hand-built graphs ----------------------------------------------------------------------------------------


def _split(rows: list[tuple[int, int, int, int, int]] | list[tuple[int, int, int]]) -> RawSplit:
    arr = np.asarray(rows, dtype=np.int64)
    return RawSplit(
        triples=arr[:, :3].copy(),
        lines=np.arange(1, len(rows) + 1),
        path="mem.txt",
        start=arr[:, 3].copy() if arr.shape[1] > 3 else None,
        end=arr[:, 4].copy()
        if arr.shape[1] > 4
        else (arr[:, 3].copy() if arr.shape[1] > 3 else None),
    )


R_HAND = 2  # relations 0, 1; reciprocals 2, 3


@pytest.fixture(scope="module")
def hand_interval() -> RawKG:
    """Entities 0..4, relations 0..1; train years 2000, 2001, 2003, 2005, 2010 -> five bins (granularity year):
    ``2000``, ``2001..2002``, ``2003..2004``, ``2005..2009``, ``2010``."""
    return RawKG(
        name="hand-interval",
        kind="interval",
        entity_labels=["a", "b", "c", "d", "e"],
        relation_labels=["r0", "r1"],
        splits={
            "train": _split(
                [
                    (0, 0, 1, 2000, 2005),  # [2000, 2009] in bins
                    (0, 0, 2, 2003, U),  # since 2003, still true
                    (0, 0, 3, U, U),  # always true
                    (0, 0, 4, U, 2001),  # true until 2001..2002
                    (1, 1, 2, 2010, 2010),
                ]
            ),
            "valid": _split([(0, 0, 1, 2008, 2009)]),
            "test": _split([(2, 1, 3, 2001, 2001)]),
        },
    )


INTERVAL_CASES = [
    # (h, r, year or "unknown", expected answers)
    (0, 0, "2000", {1, 3, 4}),
    (0, 0, "2002", {1, 3, 4}),
    (0, 0, "2003", {1, 2, 3}),
    (0, 0, "2007", {1, 2, 3}),
    (0, 0, "2010", {2, 3}),
    (0, 0, "unknown", {1, 2, 3, 4}),
    (1, 0 + R_HAND, "2007", {0}),
    (1, 0 + R_HAND, "2010", set()),
    (2, 0 + R_HAND, "2001", set()),
    (2, 0 + R_HAND, "2004", {0}),
    (2, 1, "2001", {3}),
    (2, 1, "2010", set()),
    (2, 1 + R_HAND, "2010", {1}),
    (2, 1 + R_HAND, "2005", set()),
    (3, 1 + R_HAND, "2002", {2}),
    (3, 0 + R_HAND, "2000", {0}),
    (4, 0 + R_HAND, "2000", {0}),
    (4, 0 + R_HAND, "2005", set()),
    (3, 1, "2001", set()),
]


def _hand_queries(
    kg: KG, cases: list[tuple[int, int, str, set[int]]], prefix: str = ""
) -> torch.Tensor:
    def tid(text: str) -> int:
        if text == "unknown":
            return kg.time.labels.index("unknown")
        return kg.time.time_id(prefix + text)

    return torch.tensor([[h, r, 0, tid(t)] for h, r, t, _ in cases], dtype=torch.long)


def _by_row(pairs: Pairs, n: int) -> list[set[int]]:
    out: list[set[int]] = [set() for _ in range(n)]
    for i, a in pairs:
        out[i].add(a)
    return out


def test_hand_interval_bins_and_validity(hand_interval: RawKG) -> None:
    kg = build_kg(hand_interval, granularity="year")
    assert kg.time.boundaries == (2000, 2001, 2003, 2005, 2010)
    assert set(kg.time.labels) == {
        "2000",
        "2001..2002",
        "2003..2004",
        "2005..2009",
        "2010",
        "unknown",
    }
    assert kg.validity is not None
    lo, hi = -(2**61), 2**61
    assert kg.validity["train"].tolist() == [[0, 3], [2, hi], [lo, hi], [lo, 1], [4, 4]]
    assert kg.validity["valid"].tolist() == [[3, 3]]
    assert kg.validity["test"].tolist() == [[1, 1]]


@pytest.mark.parametrize(
    ("mode", "prefix"), [("start", ""), ("split", "since "), ("split", "until ")]
)
def test_hand_interval_filter(hand_interval: RawKG, mode: str, prefix: str) -> None:
    kg = build_kg(hand_interval, granularity="year", interval_mode=mode)  # type: ignore[arg-type]
    cases = INTERVAL_CASES
    if mode == "split":  # only the times this model saw with that modifier
        seen = {lab for lab in kg.time.labels}
        cases = [
            c
            for c in INTERVAL_CASES
            if c[2] == "unknown" or kg.time.key(prefix.strip(), kg.time.bin_of(int(c[2]))) in seen
        ]
        assert len(cases) >= 6
    q = _hand_queries(kg, cases, prefix)
    got = _by_row(known(FilterIndex.build(kg), q), len(q))
    assert got == [c[3] for c in cases]


def test_hand_interval_filter_splits_and_static(hand_interval: RawKG) -> None:
    kg = build_kg(hand_interval, granularity="year")
    q = _hand_queries(kg, INTERVAL_CASES)
    got = _by_row(known(FilterIndex.build(kg, ("train",)), q), len(q))
    # without valid/test: (0, 0, 1) is not known at 2007 through the valid fact, but the train fact covers it;
    # (2, 1, 3) at 2001 is a test fact only
    assert got[3] == {1, 2, 3}
    assert got[10] == set()
    static = _by_row(known(FilterIndex.build(kg, time_aware=False), q), len(q))
    answers = {
        (0, 0): {1, 2, 3, 4},
        (1, 2): {0},
        (2, 2): {0},
        (2, 1): {3},
        (2, 3): {1},
        (3, 3): {2},
    }
    answers |= {(3, 2): {0}, (4, 2): {0}, (3, 1): set()}
    assert static == [answers[(h, r)] for h, r, _, _ in INTERVAL_CASES]


@pytest.fixture(scope="module")
def hand_point() -> RawKG:
    return RawKG(
        name="hand-point",
        kind="point",
        entity_labels=["a", "b", "c", "d"],
        relation_labels=["r"],
        splits={
            "train": _split([(0, 0, 1, 5, 5), (0, 0, 2, 6, 6), (0, 0, 3, 5, 5)]),
            "valid": _split([(1, 0, 2, 5, 5)]),
            "test": _split([(0, 0, 2, 7, 7)]),
        },
    )


def test_hand_point_filter(hand_point: RawKG) -> None:
    kg = build_kg(hand_point)
    assert kg.time.labels == ("5", "6", "7") and kg.time.anchors == (5, 6, 7)
    cases = [
        (0, 0, "5", {1, 3}),
        (0, 0, "6", {2}),
        (0, 0, "7", {2}),
        (2, 1, "5", {1}),
        (2, 1, "6", {0}),
        (2, 1, "7", {0}),
        (1, 1, "5", {0}),
        (1, 1, "6", set()),
        (1, 0, "5", {2}),
        (3, 1, "6", set()),
    ]
    q = torch.tensor([[h, r, 0, kg.time.time_id(t)] for h, r, t, _ in cases])
    assert _by_row(known(FilterIndex.build(kg), q), len(q)) == [c[3] for c in cases]
    static = _by_row(known(FilterIndex.build(kg, time_aware=False), q), len(q))
    assert static[:3] == [{1, 2, 3}] * 3 and static[8] == {2}


# -- the timestamp filter: the same time id (tkbc / TeRo) --------------------------------------------------------

#: INTERVAL_CASES' queries under the timestamp filter (start mode): only facts modelled at the query's time id,
#: i.e. at their start bin (end bin when the start is unknown; ``unknown`` when no year is known)
TIMESTAMP_CASES = [
    (
        0,
        0,
        "2000",
        {1},
    ),  # (0, 0, 1) starts in 2000; (0, 0, 3) and (0, 0, 4) are true then but elsewhere
    (
        0,
        0,
        "2002",
        {4},
    ),  # (0, 0, 4) is modelled at its end, 2001..2002; (0, 0, 1) covers it, starts earlier
    (0, 0, "2003", {2}),
    (0, 0, "2007", {1}),  # the valid fact (0, 0, 1) starts in 2005..2009
    (0, 0, "2010", set()),
    (0, 0, "unknown", {3}),  # only the fact with no known year, not the static filter
    (1, 0 + R_HAND, "2007", {0}),
    (1, 0 + R_HAND, "2010", set()),
    (2, 0 + R_HAND, "2001", set()),
    (2, 0 + R_HAND, "2004", {0}),
    (2, 1, "2001", {3}),
    (2, 1, "2010", set()),
    (2, 1 + R_HAND, "2010", {1}),
    (2, 1 + R_HAND, "2005", set()),
    (3, 1 + R_HAND, "2002", {2}),
    (3, 0 + R_HAND, "2000", set()),
    (3, 0 + R_HAND, "unknown", {0}),
    (4, 0 + R_HAND, "2000", set()),
    (4, 0 + R_HAND, "2002", {0}),
    (4, 0 + R_HAND, "2005", set()),
    (3, 1, "2001", set()),
]

#: the split protocol: ``since`` / ``until`` time ids, the modifier part of the id
TIMESTAMP_SPLIT_CASES = [
    (0, 0, "since 2000", {1}),
    (0, 0, "since 2002", set()),  # (0, 0, 4) is "until 2001..2002" only
    (0, 0, "until 2002", {4}),
    (0, 0, "since 2003", {2}),
    (0, 0, "since 2007", {1}),  # the valid fact
    (0, 0, "until 2007", {1}),  # the train fact ends and the valid fact starts and ends there
    (0, 0, "unknown", {3}),
    (1, 0 + R_HAND, "since 2000", {0}),
    (1, 0 + R_HAND, "since 2010", set()),
    (2, 1 + R_HAND, "since 2010", {1}),
    (2, 1 + R_HAND, "until 2010", {1}),
    (3, 1 + R_HAND, "since 2001", {2}),
    (3, 1 + R_HAND, "until 2001", {2}),
]


@pytest.mark.parametrize(
    ("mode", "cases"), [("start", TIMESTAMP_CASES), ("split", TIMESTAMP_SPLIT_CASES)]
)
def test_hand_timestamp_filter(
    hand_interval: RawKG, mode: str, cases: list[tuple[int, int, str, set[int]]]
) -> None:
    kg = build_kg(hand_interval, granularity="year", interval_mode=mode)  # type: ignore[arg-type]
    q = _hand_queries(kg, cases)
    index = FilterIndex.build(kg, time_filter="timestamp")
    assert index.mode == "timestamp" and index.lo is None
    timestamp = _by_row(known(index, q), len(q))
    assert timestamp == [c[3] for c in cases]
    interval = _by_row(known(FilterIndex.build(kg), q), len(q))
    assert all(t <= i for t, i in zip(timestamp, interval, strict=True))
    assert timestamp != interval  # the cases tell the two filters apart


def test_hand_timestamp_filter_differs_from_interval_where_an_interval_covers_the_query(
    hand_interval: RawKG,
) -> None:
    """(0, 0, 1) holds from 2000 to 2005: the interval filter removes answer 1 at 2002, the timestamp filter
    only at 2000 (its start bin) and 2007 (the valid fact's)."""
    kg = build_kg(hand_interval, granularity="year")
    q = _hand_queries(kg, [(0, 0, "2002", set())])
    assert _by_row(known(FilterIndex.build(kg), q), 1) == [{1, 3, 4}]
    assert _by_row(known(FilterIndex.build(kg, time_filter="timestamp"), q), 1) == [{4}]


def naive_same_time(kg: KG, queries: torch.Tensor, splits: tuple[str, ...] = SPLITS) -> Pairs:
    """Known answers by the timestamp rule, from a dict: ``(i, a)`` when ``(h, r, a, tau)`` of query ``i`` is a
    quadruple of ``splits`` as modelled, either direction."""
    answers: dict[tuple[int, int, int], set[int]] = defaultdict(set)
    for s in splits:
        for h, r, a, tau in both_directions(kg.splits[s], kg.num_relations).tolist():
            answers[(h, r, tau)].add(a)
    return {
        (i, a) for i, (h, r, _, tau) in enumerate(queries.tolist()) for a in answers[(h, r, tau)]
    }


@pytest.mark.parametrize("mode", ["start", "split"])
def test_timestamp_yago(raw_yago: RawKG, yago: KG, mode: str) -> None:
    """On the real YAGO11k: every answer the timestamp filter removes is a known quadruple with the query's time
    id, and every such quadruple is removed; each query's own answer is among them (the ranking keeps it, see
    tests/test_evaluate.py); the interval filter removes at least as much."""
    kg = yago if mode == "start" else build_kg(raw_yago, interval_mode="split")
    index = FilterIndex.build(kg, time_filter="timestamp")
    # train: the first 1100 facts include two with no known year (masked years), at the time id "unknown"
    own = torch.cat([_queries(kg, "test"), _queries(kg, "valid", 300), _queries(kg, "train", 1100)])
    assert (own[:, 3] == kg.time.labels.index("unknown")).any()
    q = torch.cat([own, _grid(kg, 24)])
    got = known(index, q)
    assert got == naive_same_time(kg, q)
    assert {(i, int(t)) for i, t in enumerate(own[:, 2].tolist())} <= got
    assert got < known(FilterIndex.build(kg), q)
    train_only = known(FilterIndex.build(kg, ("train",), time_filter="timestamp"), q)
    assert train_only == naive_same_time(kg, q, ("train",))


@pytest.mark.parametrize("mode", ["start", "expand", "split"])
def test_timestamp_tiny_tkg(mode: str) -> None:
    """A real Wikidata12k subset: facts with an unknown start are modelled at their end bin; ``expand`` repeats
    a training fact at every bin of its interval."""
    from kgdistill.data import read_hyte

    raw = read_hyte(FIXTURES / "wikidata12k-mini")
    kg = build_kg(raw, granularity="year", interval_mode=mode)  # type: ignore[arg-type]
    q = torch.cat(
        [_queries(kg, "test"), _queries(kg, "valid"), _queries(kg, "train"), _grid(kg, 20)]
    )
    got = known(FilterIndex.build(kg, time_filter="timestamp"), q)
    assert got == naive_same_time(kg, q)
    assert got < known(FilterIndex.build(kg), q)


def test_timestamp_is_the_point_filter_on_point_data(tiny_point_kg: KG) -> None:
    q = torch.cat([_queries(tiny_point_kg, "test"), _queries(tiny_point_kg, "train", 300)])
    index = FilterIndex.build(tiny_point_kg, time_filter="timestamp")
    assert index.mode == "timestamp"
    assert known(index, q) == known(FilterIndex.build(tiny_point_kg), q)
    static = FilterIndex.build(tiny_point_kg, time_aware=False, time_filter="timestamp")
    assert static.mode == "static"


def test_timestamp_on_a_static_graph_is_the_static_filter(tiny_kg: KG) -> None:
    assert FilterIndex.build(tiny_kg, time_filter="timestamp").mode == "static"


def test_unknown_time_filter_names_the_key(tiny_tkg: KG) -> None:
    with pytest.raises(ConfigError, match=r"config key 'eval\.time_filter': 'bins' is not one of"):
        FilterIndex.build(tiny_tkg, time_filter="bins")  # type: ignore[arg-type]


def test_filter_index_to_and_empty_queries(hand_point: RawKG) -> None:
    kg = build_kg(hand_point)
    index = FilterIndex.build(kg)
    moved = index.to("cpu")
    assert torch.equal(moved.keys, index.keys) and moved.mode == index.mode
    rows, cols = index.known(torch.zeros((0, 4), dtype=torch.long))
    assert rows.numel() == cols.numel() == 0
    # a query whose key lies beyond every indexed key finds nothing
    rows, _ = index.known(torch.tensor([[3, 1, 0, 2]]))
    assert rows.numel() == 0


# -- known_chunks: one lookup per block, sliced per evaluation chunk -------------------------------------------------


@pytest.mark.parametrize("kg_name", ["tiny_kg", "tiny_point_kg", "tiny_tkg", "yago"])
@pytest.mark.parametrize(("chunk", "block"), [(1, 1), (7, 20), (16, 512), (50, 10), (10_000, 512)])
def test_known_chunks_equals_known_per_chunk(
    request: pytest.FixtureRequest, kg_name: str, chunk: int, block: int
) -> None:
    kg: KG = request.getfixturevalue(kg_name)
    index = FilterIndex.build(kg)
    q = torch.cat([_queries(kg, "test", 150), _queries(kg, "valid", 50)])
    got = list(index.known_chunks(q, chunk, block))
    starts = range(0, len(q), chunk)
    assert len(got) == len(starts)
    flat = list(index.known_flat_chunks(q, chunk, kg.num_entities, block))
    assert len(got) == len(flat) == len(starts)
    for (rows, cols), positions, s in zip(got, flat, starts, strict=True):
        want_rows, want_cols = index.known(q[s : s + chunk])
        assert torch.equal(rows, want_rows) and torch.equal(cols, want_cols)
        assert torch.equal(positions, want_rows * kg.num_entities + want_cols)
    assert sum(len(r) for r, _ in got) == len(index.known(q)[0]) > len(q)


def test_known_rows_ascending(yago: KG) -> None:
    """``known_chunks`` slices a block's pairs by row, so ``known`` must list them query by query."""
    index = FilterIndex.build(yago)
    rows, _ = index.known(_queries(yago, "test", 300))
    assert (rows[1:] >= rows[:-1]).all()


def test_known_chunks_empty(hand_point: RawKG) -> None:
    index = FilterIndex.build(build_kg(hand_point))
    assert list(index.known_chunks(torch.zeros((0, 4), dtype=torch.long), 8)) == []
    assert list(index.known_flat_chunks(torch.zeros((0, 4), dtype=torch.long), 8, 4)) == []
    # a chunk whose queries know nothing yields empty pairs
    ((rows, cols),) = index.known_chunks(torch.tensor([[3, 1, 0, 2]]), 8)
    assert rows.numel() == cols.numel() == 0


# -- batching ---------------------------------------------------------------------------------------------------


def test_both_directions(tiny_tkg: KG) -> None:
    facts = tiny_tkg.splits["valid"]
    before = facts.clone()
    R = tiny_tkg.num_relations
    q = both_directions(facts, R)
    n = len(facts)
    assert q.shape == (2 * n, 4) and q.dtype == torch.long
    assert torch.equal(q[:n], facts)
    assert torch.equal(q[n:, 0], facts[:, 2])
    assert torch.equal(q[n:, 1], facts[:, 1] + R)
    assert torch.equal(q[n:, 2], facts[:, 0])
    assert torch.equal(q[n:, 3], facts[:, 3])
    assert torch.equal(facts, before)  # input untouched
    static = both_directions(torch.tensor([[0, 1, 2]]), 5)
    assert static.tolist() == [[0, 1, 2], [2, 6, 0]]


def test_sample_candidates() -> None:
    q = torch.tensor([[0, 1, 7, 3], [4, 2, 9, 0], [5, 0, 1, 1]])
    g = torch.Generator().manual_seed(123)
    c = sample_candidates(q, 50, 16, g)
    assert c.shape == (3, 17) and c.dtype == torch.long
    assert c[:, 0].tolist() == [7, 9, 1]
    assert int(c[:, 1:].min()) >= 0 and int(c[:, 1:].max()) < 50
    again = sample_candidates(q, 50, 16, torch.Generator().manual_seed(123))
    assert torch.equal(c, again)
    other = sample_candidates(q, 50, 16, torch.Generator().manual_seed(124))
    assert not torch.equal(c, other)
    many = sample_candidates(q[:1].repeat(2000, 1), 5, 10, g)[:, 1:]
    counts = torch.bincount(many.flatten(), minlength=5)
    assert counts.min() > 3000  # roughly uniform over the 5 entities (4000 expected each)


def test_batch_targets() -> None:
    q = torch.tensor([[0, 1, 7], [4, 2, 9]])
    assert Batch(q).targets.tolist() == [7, 9]
    cands = sample_candidates(q, 20, 3, torch.Generator().manual_seed(0))
    b = Batch(q, cands)
    assert b.targets.tolist() == [0, 0]
    assert torch.equal(b.candidates[torch.arange(2), b.targets], q[:, 2])  # type: ignore[index]
    moved = b.to("cpu")
    assert torch.equal(moved.queries, q) and moved.candidates is not None
    assert Batch(q).to("cpu").candidates is None
