"""``build_kg``: the interval protocol (start / expand / split), point time ids, unseen-entity policy."""

from __future__ import annotations

import bisect
import datetime as dt
import logging
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from kgdistill.data import KG, build_kg, read_hyte, read_point_ids, read_raw, read_static_names
from kgdistill.data.raw import RawKG, RawSplit
from kgdistill.data.time import OPEN_HI, OPEN_LO, UNKNOWN, UNKNOWN_ANCHOR
from kgdistill.errors import DataError, KGDistillError

FIXTURES = Path(__file__).parents[1] / "fixtures"
SPLITS = ("train", "valid", "test")
Quad = tuple[int, int, int, str]


@pytest.fixture(scope="module")
def raw_tkg() -> RawKG:
    return read_hyte(FIXTURES / "wikidata12k-mini")


@pytest.fixture(scope="module")
def raw_yago() -> RawKG:
    return read_raw("yago11k")


# -- an independent implementation of the interval protocol ------------------------------------------------


class Bins:
    """Bins of the training years, computed the plain way."""

    def __init__(self, raw: RawKG, granularity: str, min_bin_size: int) -> None:
        tr = raw.splits["train"]
        years = [y for y in [*tr.start.tolist(), *tr.end.tolist()] if y != UNKNOWN]  # type: ignore[union-attr]
        counts = Counter(years)
        self.starts: list[int] = []
        acc = None
        for y in sorted(counts):
            if acc is None or (granularity == "year" or acc >= min_bin_size):
                self.starts.append(y)
                acc = 0
            acc += counts[y]
        self.max_year = max(years)

    def of(self, year: int) -> int:
        return max(bisect.bisect_right(self.starts, year) - 1, 0)

    def label(self, year: int) -> str:
        b = self.of(year)
        lo = self.starts[b]
        hi = self.starts[b + 1] - 1 if b + 1 < len(self.starts) else self.max_year
        return str(lo) if lo == hi else f"{lo}..{hi}"


def _expected(raw: RawKG, split: str, mode: str, bins: Bins) -> list[Quad]:
    sp = raw.splits[split]
    out: list[Quad] = []
    for (h, r, t), s, e in zip(
        sp.triples.tolist(), sp.start.tolist(), sp.end.tolist(), strict=True
    ):  # type: ignore[union-attr]
        ks, ke = s != UNKNOWN, e != UNKNOWN
        if not ks and not ke:
            out.append((h, r, t, "unknown"))
        elif mode == "start" or (mode == "expand" and split != "train"):
            out.append((h, r, t, bins.label(s if ks else e)))
        elif mode == "expand":
            lo, hi = bins.of(s if ks else e), bins.of(e if ke else s)
            for b in range(lo, hi + 1):
                out.append((h, r, t, bins.label(bins.starts[b])))
        else:
            if ks:
                out.append((h, r, t, "since " + bins.label(s)))
            if ke:
                out.append((h, r, t, "until " + bins.label(e)))
    return out


def _quads(kg: KG, split: str) -> list[Quad]:
    return [(h, r, t, kg.time.labels[tau]) for h, r, t, tau in kg.splits[split].tolist()]


def _expected_count(raw: RawKG, split: str, mode: str, bins: Bins) -> int:
    """The number of modelled quadruples, counted with numpy from the raw arrays."""
    sp = raw.splits[split]
    ks, ke = sp.start != UNKNOWN, sp.end != UNKNOWN  # type: ignore[operator]
    if mode == "start" or (mode == "expand" and split != "train"):
        return len(sp)
    if mode == "split":
        return int(ks.sum() + ke.sum() + (~ks & ~ke).sum())
    b = np.asarray(bins.starts)
    sb = np.searchsorted(b, sp.start, side="right") - 1
    eb = np.searchsorted(b, sp.end, side="right") - 1
    n = np.where(ks & ke, eb - sb + 1, 1)
    return int(n.sum())


PROTOCOLS = [
    ("year", 300),
    ("bins", 40),
    ("bins", 300),
]


@pytest.mark.parametrize("mode", ["start", "expand", "split"])
@pytest.mark.parametrize(("granularity", "min_bin_size"), PROTOCOLS)
def test_interval_modes_tiny_tkg(
    raw_tkg: RawKG, mode: str, granularity: str, min_bin_size: int
) -> None:
    kg = build_kg(raw_tkg, granularity=granularity, min_bin_size=min_bin_size, interval_mode=mode)  # type: ignore[arg-type]
    bins = Bins(raw_tkg, granularity, min_bin_size)
    assert list(kg.time.boundaries) == bins.starts and kg.time.max_year == bins.max_year
    assert kg.time.mode == mode and kg.report["time_protocol"]["bins"] == len(bins.starts)
    for s in SPLITS:
        assert len(kg.splits[s]) == _expected_count(raw_tkg, s, mode, bins)
        assert _quads(kg, s) == _expected(raw_tkg, s, mode, bins)
        assert torch.equal(kg.facts[s], torch.from_numpy(raw_tkg.splits[s].triples))
    # labels are distinct and exactly the ones used
    used = {lab for s in SPLITS for *_, lab in _quads(kg, s)}
    assert set(kg.time.labels) == used and len(kg.time.labels) == len(used)
    assert kg.num_times == len(used) == kg.report["num_times"]


def test_expand_repeats_training_facts(raw_tkg: RawKG) -> None:
    kg = build_kg(raw_tkg, granularity="year", interval_mode="expand")
    start = build_kg(raw_tkg, granularity="year", interval_mode="start")
    assert len(kg.splits["train"]) > len(start.splits["train"])
    assert _quads(kg, "valid") == _quads(start, "valid")
    # the fact with the longest interval is repeated at every year seen in train within it
    tr = raw_tkg.splits["train"]
    st, en = tr.start.tolist(), tr.end.tolist()  # type: ignore[union-attr]
    known = [i for i in range(len(tr)) if UNKNOWN not in (st[i], en[i])]
    i = max(known, key=lambda j: en[j] - st[j])
    years = [y for y in kg.time.boundaries if st[i] <= y <= en[i]]
    assert len(years) >= 3
    fact = tuple(tr.triples[i].tolist())
    got = [lab for *hrt, lab in _quads(kg, "train") if tuple(hrt) == fact]
    bins = Bins(raw_tkg, "year", 300)
    want = [bins.label(y) for y in years]
    assert want[0].startswith(f"{st[i]}") and want[-1].startswith(f"{years[-1]}")
    assert set(got) >= set(want)
    anchors = sorted(kg.time.anchors[kg.time.labels.index(lab)] for lab in want)
    assert anchors == list(range(anchors[0], anchors[0] + len(years)))


def test_split_mode_labels(raw_tkg: RawKG) -> None:
    kg = build_kg(raw_tkg, granularity="year", interval_mode="split")
    assert all(
        lab.startswith(("since ", "until ")) for lab in kg.time.labels
    )  # no fact without any year
    tr = raw_tkg.splits["train"]
    # line 1 of the fixture: start unknown, end 2015 -> a single "until 2015" quadruple
    assert tr.start[0] == UNKNOWN and tr.end[0] == 2015  # type: ignore[index]
    first = _quads(kg, "train")[0]
    assert first == (*tr.triples[0].tolist(), "until 2015")
    for tid, lab in enumerate(kg.time.labels):
        year = int(lab.split(" ")[1].split("..")[0])
        assert kg.time.anchors[tid] == list(kg.time.boundaries).index(year)


def test_validity_bounds(raw_tkg: RawKG) -> None:
    kg = build_kg(raw_tkg, granularity="bins", min_bin_size=40)
    bins = Bins(raw_tkg, "bins", 40)
    assert kg.validity is not None
    for s in SPLITS:
        sp = raw_tkg.splits[s]
        exp = [
            [OPEN_LO if a == UNKNOWN else bins.of(a), OPEN_HI if b == UNKNOWN else bins.of(b)]
            for a, b in zip(sp.start.tolist(), sp.end.tolist(), strict=True)  # type: ignore[union-attr]
        ]
        assert kg.validity[s].tolist() == exp
        assert (kg.validity[s][:, 0] <= kg.validity[s][:, 1]).all()
    # some facts have an open start, some an open end (Wikidata12k quirks)
    v = kg.validity["train"]
    assert (v[:, 0] == OPEN_LO).any() and (v[:, 1] == OPEN_HI).any()


def test_yago_modes(raw_yago: RawKG) -> None:
    bins = Bins(raw_yago, "bins", 300)
    for mode in ("start", "split"):
        kg = build_kg(raw_yago, interval_mode=mode)  # type: ignore[arg-type]
        assert list(kg.time.boundaries) == bins.starts
        for s in SPLITS:
            assert len(kg.splits[s]) == _expected_count(raw_yago, s, mode, bins)
        assert _quads(kg, "train") == _expected(raw_yago, "train", mode, bins)
        assert "unknown" in kg.time.labels  # 13 facts with no known year
        assert kg.time.anchors[kg.time.labels.index("unknown")] == UNKNOWN_ANCHOR
    kg = build_kg(raw_yago, interval_mode="expand")
    assert len(kg.splits["train"]) == _expected_count(raw_yago, "train", "expand", bins)
    # the 13 facts with no known year: start mode puts them at "unknown", validity fully open
    kg = build_kg(raw_yago)
    tr = raw_yago.splits["train"]
    none = np.flatnonzero((tr.start == UNKNOWN) & (tr.end == UNKNOWN))  # type: ignore[operator]
    assert len(none) == 13
    unk = kg.time.labels.index("unknown")
    assert (kg.splits["train"][:, 3] == unk).sum() == 13
    assert kg.splits["train"][none, 3].tolist() == [unk] * 13
    assert kg.validity is not None
    assert kg.validity["train"][none].tolist() == [[OPEN_LO, OPEN_HI]] * 13
    assert kg.report["quirks"]["no_known_year"]["count"] == 13
    assert kg.report["quirks"]["start_after_end_swapped"]["count"] == 70


def test_unknown_years_anchor_on_known_bound(raw_tkg: RawKG) -> None:
    """Start mode: a fact with an unknown start is modelled at its end bin."""
    kg = build_kg(raw_tkg, granularity="year")
    tr = raw_tkg.splits["train"]
    idx = np.flatnonzero(tr.start == UNKNOWN)  # type: ignore[operator]
    assert len(idx) >= 15
    for i in idx.tolist():
        assert kg.time.labels[int(kg.splits["train"][i, 3])] == str(tr.end[i])  # type: ignore[index]


def _unseen_mask(raw: RawKG, split: str) -> np.ndarray:
    tr = raw.splits["train"].triples
    seen = set(tr[:, 0].tolist()) | set(tr[:, 2].tolist())
    return np.array([h in seen and t in seen for h, _, t in raw.splits[split].triples.tolist()])


@pytest.mark.parametrize("name", ["tiny_tkg", "tiny_kg"])
def test_unseen_entity_policy(raw_tkg: RawKG, name: str) -> None:
    raw = raw_tkg if name == "tiny_tkg" else read_static_names(FIXTURES / "fb15k237-mini")
    keep = build_kg(raw, unseen="keep")
    drop = build_kg(raw, unseen="drop")
    for kg, policy in ((keep, "keep"), (drop, "drop")):
        assert kg.report["unseen_policy"] == policy
        assert kg.report["lines"] == {s: len(raw.splits[s]) for s in SPLITS}
        for s in ("valid", "test"):
            assert kg.report["unseen_entity_facts"][s] == int((~_unseen_mask(raw, s)).sum())
    assert sum(keep.report["unseen_entity_facts"].values()) > 0  # the fixtures do have some
    for s in SPLITS:
        ok = _unseen_mask(raw, s) if s != "train" else np.ones(len(raw.splits[s]), dtype=bool)
        assert keep.facts[s].tolist() == raw.splits[s].triples.tolist()
        assert drop.facts[s].tolist() == raw.splits[s].triples[ok].tolist()
        if not drop.temporal:
            assert drop.splits[s].tolist() == drop.facts[s].tolist()
        if drop.validity is not None and keep.validity is not None:
            assert len(drop.validity[s]) == len(drop.facts[s])
            rows = keep.validity[s].tolist()
            assert drop.validity[s].tolist() == [v for v, k in zip(rows, ok, strict=True) if k]
            kept_quads = [q for q, k in zip(_quads(keep, s), ok, strict=True) if k]
            assert _quads(drop, s) == kept_quads  # start mode: one quadruple per fact


def test_unseen_drop_to_empty_is_an_error() -> None:
    raw = _hand_raw(valid=[[3, 0, 4]])
    with pytest.raises(
        DataError, match="split 'valid' of hand is empty after dropping unseen entities"
    ):
        build_kg(raw, unseen="drop")
    assert build_kg(raw, unseen="keep").report["unseen_entity_facts"] == {"valid": 1, "test": 0}


def test_no_train_split_is_an_error() -> None:
    raw = _hand_raw()
    del raw.splits["train"]
    with pytest.raises(DataError, match="dataset hand has no train split"):
        build_kg(raw)


def _hand_raw(valid: list[list[int]] | None = None) -> RawKG:
    def sp(rows: list[list[int]]) -> RawSplit:
        return RawSplit(
            triples=np.asarray(rows, dtype=np.int64).reshape(-1, 3),
            lines=np.arange(1, len(rows) + 1),
            path="mem",
        )

    return RawKG(
        name="hand",
        kind="none",
        entity_labels=list("abcde"),
        relation_labels=["r"],
        splits={
            "train": sp([[0, 0, 1], [1, 0, 2]]),
            "valid": sp(valid or [[0, 0, 2]]),
            "test": sp([[2, 0, 0]]),
        },
    )


# -- point time ----------------------------------------------------------------------------------------------


def test_point_kg_time_ids(tiny_point_kg: KG) -> None:
    raw = read_point_ids(FIXTURES / "icews14-mini", origin="2014-01-01")
    days = sorted({d for s in SPLITS for d in raw.splits[s].start.tolist()})  # type: ignore[union-attr]
    kg = tiny_point_kg
    assert kg.time.kind == "point" and kg.temporal
    assert list(kg.time.anchors) == days
    assert kg.time.labels == tuple(
        (dt.date(2014, 1, 1) + dt.timedelta(days=d)).isoformat() for d in days
    )
    assert kg.validity is not None
    train_days = set(raw.splits["train"].start.tolist())  # type: ignore[union-attr]
    for s in SPLITS:
        sp = raw.splits[s]
        q = kg.splits[s]
        assert q.shape == (len(sp), 4)
        assert q[:, :3].tolist() == sp.triples.tolist()
        assert [kg.time.anchors[t] for t in q[:, 3].tolist()] == sp.start.tolist()  # type: ignore[union-attr]
        assert kg.validity[s].tolist() == [[d, d] for d in sp.start.tolist()]  # type: ignore[union-attr]
        if s != "train":
            unseen = sum(d not in train_days for d in sp.start.tolist())  # type: ignore[union-attr]
            assert kg.report["unseen_time_facts"][s] == unseen
    assert kg.report["unseen_time_facts"]["valid"] > 0
    assert "time_protocol" not in kg.report


def test_point_kg_without_origin() -> None:
    raw = read_point_ids(FIXTURES / "icews14-mini")
    kg = build_kg(raw)
    assert kg.time.origin is None
    assert kg.time.labels == tuple(str(a) for a in kg.time.anchors)
    assert kg.time.time_id("132") == kg.time.labels.index("132")


def test_static_kg(tiny_kg: KG) -> None:
    raw = read_static_names(FIXTURES / "fb15k237-mini")
    assert not tiny_kg.temporal and tiny_kg.validity is None and tiny_kg.num_times == 0
    for s in SPLITS:
        assert tiny_kg.splits[s].shape == (len(raw.splits[s]), 3)
        assert tiny_kg.splits[s].tolist() == raw.splits[s].triples.tolist()
    assert tiny_kg.num_entities == len(raw.entity_labels)
    assert tiny_kg.num_relations == len(raw.relation_labels)
    e = raw.entity_labels[5]
    assert tiny_kg.entity_ids[e] == 5
    assert tiny_kg.relation_ids[raw.relation_labels[3]] == 3
    assert tiny_kg.id_maps() == {
        "entity": raw.entity_labels,
        "relation": raw.relation_labels,
        "time": [],
    }
    assert repr(tiny_kg).startswith(f"KG('fb15k237-mini', entities={len(raw.entity_labels)}")


def test_tiny_tkg_fixture_is_default_protocol(tiny_tkg: KG, raw_tkg: RawKG) -> None:
    bins = Bins(raw_tkg, "bins", 300)
    assert list(tiny_tkg.time.boundaries) == bins.starts
    assert _quads(tiny_tkg, "test") == _expected(raw_tkg, "test", "start", bins)
    assert tiny_tkg.id_maps()["time"] == list(tiny_tkg.time.labels)


@pytest.mark.parametrize(
    ("key", "value"), [("interval_mode", "expnad"), ("granularity", "yaer"), ("unseen", "dorp")]
)
def test_protocol_values_are_checked(raw_tkg: RawKG, key: str, value: str) -> None:
    """A misspelt protocol value must be an error, not a silently different protocol."""
    try:
        kg = build_kg(raw_tkg, **{key: value})  # type: ignore[arg-type]
    except KGDistillError as e:
        assert key in str(e) and value in str(e)
    else:
        pytest.fail(
            f"BUG: build_kg({key}={value!r}) was accepted (time mode {kg.time.mode!r}, "
            f"{len(kg.splits['train'])} train quadruples, {len(kg.time.boundaries)} bins, "
            f"unseen policy {kg.report['unseen_policy']!r}); it should raise a KGDistillError naming {key}"
        )


# -- quirks in the report, and how they are logged ------------------------------------------------------------


def _relations_only_outside_train(folder: Path) -> dict[str, list[int]]:
    """split -> line numbers whose relation (2nd column) never occurs in train.txt, the plain way."""

    def rows(split: str) -> list[list[str]]:
        return [ln.split("\t") for ln in (folder / f"{split}.txt").read_text().splitlines()]

    train = {r[1] for r in rows("train")}
    return {
        s: [i for i, r in enumerate(rows(s), 1) if r[1] not in train] for s in ("valid", "test")
    }


def test_relation_not_in_train_is_reported() -> None:
    """icews14-mini (real ICEWS14 rows) has valid/test facts whose relation train never shows."""
    folder = FIXTURES / "icews14-mini"
    raw = read_point_ids(folder, origin="2014-01-01")
    ref = _relations_only_outside_train(folder)
    assert sum(map(len, ref.values())) > 0
    kg = build_kg(raw)
    q = kg.report["quirks"]["relation_not_in_train"]
    assert q["count"] == sum(map(len, ref.values()))
    line = ref["valid"][0]
    rel = raw.relation_labels[int(raw.splits["valid"].triples[line - 1, 1])]
    assert q["examples"][0] == f"valid.txt:{line} ({rel})"
    # the facts are kept (and ranked), and the raw dataset is not changed: building twice counts once
    assert len(kg.splits["valid"]) == len(raw.splits["valid"])
    assert "relation_not_in_train" not in raw.quirks.counts
    assert build_kg(raw).report["quirks"] == kg.report["quirks"]


def test_relation_not_in_train_absent_when_train_has_all(tiny_kg: KG) -> None:
    assert "relation_not_in_train" not in tiny_kg.report["quirks"]


@pytest.mark.slow
def test_relation_not_in_train_full_icews14_forecasting(data_root: Path) -> None:
    """The chronological split has relations that first occur after the training period."""
    folder = data_root / "ICEWS14_forecasting"
    ref = _relations_only_outside_train(folder)
    kg = build_kg(read_raw("icews14_forecasting", root=data_root))
    assert kg.report["quirks"]["relation_not_in_train"]["count"] == sum(map(len, ref.values())) > 0


def test_quirks_log_is_one_short_info_line(
    raw_yago: RawKG, caplog: pytest.LogCaptureFixture
) -> None:
    """Known quirks of the bundled data are handled: one INFO line with counts, not a multi-part WARNING."""
    with caplog.at_level(logging.DEBUG, logger="kgdistill.data"):
        kg = build_kg(raw_yago)
    records = [r for r in caplog.records if "irregular rows" in r.getMessage()]
    assert len(records) == 1 and records[0].levelno == logging.INFO
    counts = Counter({k: v["count"] for k, v in kg.report["quirks"].items()})
    assert counts == raw_yago.quirks.counts and counts["start_after_end_swapped"] == 70
    parts = ", ".join(f"{k} {n}" for k, n in sorted(counts.items()))
    assert records[0].getMessage() == (
        f"yago11k: handled irregular rows: {parts} (details in the run's metrics.json data_report)"
    )
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    # the report keeps the examples
    assert kg.report["quirks"]["masked_year"]["examples"]
    assert all(len(v["examples"]) <= 3 for v in kg.report["quirks"].values())


def test_no_quirks_no_log_line(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="kgdistill.data"):
        build_kg(read_static_names(FIXTURES / "fb15k237-mini"))
    assert not [r for r in caplog.records if "irregular rows" in r.getMessage()]
