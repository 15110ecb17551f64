"""Date parsing, time bins and :class:`TimeSpec` (user times -> time ids, serialisation)."""

from __future__ import annotations

import bisect
import datetime as dt
import json
import re
from collections import Counter
from pathlib import Path

import pytest

from kgdistill.data import KG, build_kg, read_hyte
from kgdistill.data.time import (
    MAX_ABS_ORDINAL,
    UNKNOWN,
    TimeSpec,
    parse_ordinal,
    parse_point,
    parse_year,
    year_bins,
)
from kgdistill.errors import DataError, KGDistillError

FIXTURES = Path(__file__).parents[1] / "fixtures"

# -- parse_year -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "year", "quirk"),
    [
        ("1952-##-##", 1952, None),
        ("2014-05-13", 2014, None),
        ("2014-05-##", 2014, None),
        ("1946", 1946, None),
        (" 1990-##-## ", 1990, None),
        ("####-##-##", UNKNOWN, None),
        ("####", UNKNOWN, None),
        ("360-##-##", 360, "short_year"),
        ("99-##-##", 99, "short_year"),
        ("-405-##-##", -405, "bc_year"),
        ("19##-##-##", UNKNOWN, "masked_year"),
        ("16##-##-##", UNKNOWN, "masked_year"),
        ("199#-##-##", UNKNOWN, "masked_year"),
        # the two malformed YAGO11k train lines: only the year is used, the month/day are ignored
        ("307-13047-09", 307, "invalid_month_day"),
        ("1963-64-65", 1963, "invalid_month_day"),
        ("2001-00-01", 2001, "invalid_month_day"),
        ("2001-02-32", 2001, "invalid_month_day"),
    ],
)
def test_parse_year_quirks(text: str, year: int, quirk: str | None) -> None:
    assert parse_year(text) == (year, quirk)


@pytest.mark.parametrize("text", ["abcd-##-##", "19a0-##-##", "19a#-##-##", "", "-", "1-2-3-4"])
def test_parse_year_not_a_number_names_file_and_line(text: str) -> None:
    with pytest.raises(DataError, match=r"^data/train\.txt, line 7: cannot parse") as info:
        parse_year(text, path="data/train.txt", line=7)
    assert info.value.line == 7
    assert info.value.path == "data/train.txt"


@pytest.mark.parametrize(
    "text",
    [
        "19990-01-01",
        "123456789012345678901-##-##",
        "1" * 5000
        + "-##-##",  # int() refuses more than 4300 digits: this used to be a ValueError traceback
        "-10000-##-##",
        "1999##-##-##",
    ],
)
def test_parse_year_implausible_year_names_file_line_and_value(text: str) -> None:
    """A year of more than four digits is a typo; it used to be binned and stretch the model's time range."""
    with pytest.raises(DataError, match=r"^data/train\.txt, line 7: implausible year") as info:
        parse_year(text, path="data/train.txt", line=7)
    year = text.lstrip("-").split("-")[0]
    assert year[:40] in str(info.value)
    assert "9999" in str(info.value) and len(str(info.value)) < 300


@pytest.mark.parametrize(
    ("text", "year", "quirk"),
    [("9999-12-31", 9999, None), ("-9999-##-##", -9999, "bc_year"), ("01990-##-##", 1990, None)],
)
def test_parse_year_largest_plausible_years(text: str, year: int, quirk: str | None) -> None:
    assert parse_year(text) == (year, quirk)


def test_parse_year_huge_month_is_an_invalid_month_not_a_crash() -> None:
    assert parse_year("1963-" + "6" * 5000 + "-65") == (1963, "invalid_month_day")
    assert parse_year("1963-\u00b2-01") == (1963, "invalid_month_day")  # a digit int() refuses


def test_parse_year_error_is_a_kgdistill_error() -> None:
    with pytest.raises(KGDistillError, match="cannot parse year in date 'year-##-##'"):
        parse_year("year-##-##")


# -- parse_point ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", 0),
        ("132", 132),
        (" 364 ", 364),
        ("-3", -3),
        ("2014-01-01", dt.date(2014, 1, 1).toordinal()),
        ("2014-05-13", dt.date(2014, 5, 13).toordinal()),
        ("2014-05-13T12:30:00", dt.date(2014, 5, 13).toordinal()),
    ],
)
def test_parse_point(text: str, expected: int) -> None:
    assert parse_point(text) == expected


def test_parse_point_iso_dates_are_consecutive_days() -> None:
    assert parse_point("2015-01-01") - parse_point("2014-01-01") == 365
    assert parse_point("2016-03-01") - parse_point("2016-02-28") == 2  # leap year


@pytest.mark.parametrize("text", ["yesterday", "2014-13-01", "2014-02-30", "12.5", ""])
def test_parse_point_error_names_file_and_line(text: str) -> None:
    with pytest.raises(DataError, match=r"^x\.csv, line 3: cannot parse time"):
        parse_point(text, path="x.csv", line=3)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("19990-01-01", "implausible year 19990 in date '19990-01-01'"),
        ("123456789-05-13", "implausible year 123456789"),
        ("2014-05-139", "cannot parse time '2014-05-139'"),  # used to be read as 2014-05-13
        ("9" * 25, "time '" + "9" * 25 + "' is out of range"),
        ("-" + "9" * 25, "is out of range"),
        ("1" * 5000, "time '" + "1" * 40 + "... (5000 characters)' is out of range"),
    ],
)
def test_parse_point_implausible_times(text: str, message: str) -> None:
    with pytest.raises(DataError, match=r"^x\.csv, line 3: .*" + re.escape(message)):
        parse_point(text, path="x.csv", line=3)


def test_parse_point_largest_integer_time() -> None:
    assert parse_point(str(MAX_ABS_ORDINAL)) == MAX_ABS_ORDINAL
    assert parse_point(str(-MAX_ABS_ORDINAL)) == -MAX_ABS_ORDINAL
    assert MAX_ABS_ORDINAL < 2**63 - 1  # fits the int64 arrays times are stored in
    with pytest.raises(DataError, match="out of range"):
        parse_point(str(MAX_ABS_ORDINAL + 1))
    assert parse_ordinal(" 132 ") == 132
    with pytest.raises(DataError, match=r"^f, line 2: time is empty"):
        parse_ordinal(" ", path="f", line=2)


# -- year_bins --------------------------------------------------------------------------------------------


def test_year_bins_year_granularity_is_sorted_distinct_years() -> None:
    years = [2005, 1990, 2005, -405, 360, 1990, 2020]
    assert year_bins(years, granularity="year", min_bin_size=300) == [-405, 360, 1990, 2005, 2020]


def test_year_bins_merges_until_min_size_by_hand() -> None:
    years = [2000] * 3 + [2001] + [2002] * 2 + [2005] * 5 + [2007]
    # 2000 (3 dates) fills a bin; 2001+2002 (3) the next; 2005 (5) the next; 2007 is a short last bin
    assert year_bins(years, granularity="bins", min_bin_size=3) == [2000, 2001, 2005, 2007]
    assert year_bins(years, granularity="bins", min_bin_size=4) == [2000, 2002, 2007]
    assert year_bins(years, granularity="bins", min_bin_size=100) == [2000]
    assert year_bins(years, granularity="bins", min_bin_size=1) == [2000, 2001, 2002, 2005, 2007]


def test_year_bins_empty_is_an_error() -> None:
    with pytest.raises(DataError, match="no known year in the training split"):
        year_bins([], granularity="bins", min_bin_size=300)


def _train_years(kg_name: str = "yago11k") -> list[int]:
    from kgdistill.data import read_raw

    tr = read_raw(kg_name).splits["train"]
    assert tr.start is not None and tr.end is not None
    return [int(y) for y in [*tr.start.tolist(), *tr.end.tolist()] if y != UNKNOWN]


def test_year_bins_hyte_style_on_yago11k() -> None:
    """HyTE-style classes: every bin but the last holds >= 300 train dates, and needs its last year to do so."""
    years = _train_years()
    counts = Counter(years)
    starts = year_bins(years, granularity="bins", min_bin_size=300)
    assert 55 <= len(starts) <= 65  # HyTE reports 61 classes on YAGO11k
    assert starts == sorted(set(starts)) and starts[0] == min(years)
    distinct = sorted(counts)
    for b, lo in enumerate(starts):
        hi = starts[b + 1] if b + 1 < len(starts) else max(years) + 1
        in_bin = [y for y in distinct if lo <= y < hi]
        size = sum(counts[y] for y in in_bin)
        assert size == sum(1 for y in years if lo <= y < hi)
        if b + 1 < len(starts):
            assert size >= 300, (lo, size)
            assert size - counts[in_bin[-1]] < 300, (lo, size)  # greedy: no smaller bin would do
    assert sum(
        sum(counts[y] for y in distinct if lo <= y < hi)
        for lo, hi in zip(starts, [*starts[1:], max(years) + 1], strict=True)
    ) == len(years)
    assert year_bins(years, granularity="year", min_bin_size=300) == distinct


# -- TimeSpec ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def yago_split() -> KG:
    from kgdistill.data import read_raw

    return build_kg(read_raw("yago11k"), interval_mode="split")


def _bin_label(spec: TimeSpec, year: int) -> str:
    b = max(bisect.bisect_right(list(spec.boundaries), year) - 1, 0)
    lo = spec.boundaries[b]
    hi = spec.boundaries[b + 1] - 1 if b + 1 < len(spec.boundaries) else spec.max_year
    return str(lo) if hi == lo else f"{lo}..{hi}"


def test_time_id_interval_plain_year(yago: KG) -> None:
    spec = yago.time
    assert spec.kind == "interval" and spec.mode == "start"
    tid = spec.time_id("1990")
    assert spec.labels[tid] == _bin_label(spec, 1990)
    assert spec.time_id(spec.labels[tid]) == tid  # a label is accepted as such
    assert spec.time_id(" 1990-##-## ") == tid
    # every year of a bin maps to the same id
    lo, _, hi = spec.labels[tid].partition("..")
    assert spec.time_id(lo) == tid
    if hi:
        assert spec.time_id(hi) == tid
    assert spec.anchors[tid] == list(spec.boundaries).index(int(lo))


def test_time_id_interval_split_mode(yago_split: KG) -> None:
    spec = yago_split.time
    since = spec.time_id("since 1990")
    until = spec.time_id("until 1990")
    assert spec.labels[since] == "since " + _bin_label(spec, 1990)
    assert spec.labels[until] == "until " + _bin_label(spec, 1990)
    assert since != until and spec.anchors[since] == spec.anchors[until]
    assert spec.time_id("1990") == since  # a bare year means "since" in split mode
    assert spec.time_id(spec.labels[until]) == until


def test_time_id_interval_modifier_ignored_outside_split_mode(yago: KG) -> None:
    """Only the split protocol has since/until time ids; elsewhere the modifier is dropped."""
    spec = yago.time
    tid = spec.time_id("1990")
    assert spec.time_id("since 1990") == tid
    assert spec.time_id("until 1990") == tid
    assert not any(lab.startswith(("since ", "until ")) for lab in spec.labels)


@pytest.mark.parametrize("text", ["3000", "since 3000", "-5000", "####"])
def test_time_id_interval_outside_seen_years(yago_split: KG, text: str) -> None:
    spec = yago_split.time
    with pytest.raises(
        KGDistillError, match=rf"outside the years this model saw \({spec.boundaries[0]}"
    ):
        spec.time_id(text)


def test_time_id_interval_not_a_year(yago: KG) -> None:
    with pytest.raises(KGDistillError, match="cannot parse year"):
        yago.time.time_id("nineteen-ninety")


def test_time_id_point(tiny_point_kg: KG) -> None:
    spec = tiny_point_kg.time
    assert spec.kind == "point" and spec.origin == "2014-01-01"
    for tid in (0, 7, spec.num_times - 1):
        day = spec.anchors[tid]
        iso = (dt.date(2014, 1, 1) + dt.timedelta(days=day)).isoformat()
        assert spec.labels[tid] == iso
        assert spec.time_id(str(day)) == tid
        assert spec.time_id(iso) == tid
        assert spec.time_id(f" {iso} ") == tid


def test_time_id_point_unseen(tiny_point_kg: KG) -> None:
    spec = tiny_point_kg.time
    with pytest.raises(KGDistillError, match="never seen by this model"):
        spec.time_id("400")
    with pytest.raises(KGDistillError, match="never seen by this model"):
        spec.time_id("2015-06-01")
    with pytest.raises(DataError, match="cannot parse time"):
        spec.time_id("someday")


def test_time_id_point_without_origin() -> None:
    spec = TimeSpec(kind="point", labels=("3", "10", "42"), anchors=(3, 10, 42))
    assert spec.time_id("10") == 1
    with pytest.raises(KGDistillError, match="never seen"):
        spec.time_id("11")


def test_time_id_static(tiny_kg: KG) -> None:
    assert tiny_kg.time.kind == "none" and tiny_kg.num_times == 0
    with pytest.raises(KGDistillError, match="static"):
        tiny_kg.time.time_id("2000")


def _round_trip(spec: TimeSpec) -> TimeSpec:
    return TimeSpec.from_dict(json.loads(json.dumps(spec.to_dict())))


def test_timespec_round_trip_interval(yago_split: KG) -> None:
    spec = yago_split.time
    back = _round_trip(spec)
    assert back == spec
    assert back.to_dict() == spec.to_dict()
    for text in ("1990", "since 1800", "until 2005", spec.labels[-1]):
        assert back.time_id(text) == spec.time_id(text)


def test_timespec_round_trip_point_and_static(tiny_point_kg: KG, tiny_kg: KG) -> None:
    back = _round_trip(tiny_point_kg.time)
    assert back == tiny_point_kg.time and back.origin == "2014-01-01"
    assert back.time_id("2014-01-05") == tiny_point_kg.time.time_id("2014-01-05")
    static = _round_trip(tiny_kg.time)
    assert static == tiny_kg.time and static.kind == "none"


def test_timespec_round_trip_tiny_interval_expand() -> None:
    kg = build_kg(
        read_hyte(FIXTURES / "wikidata12k-mini"), granularity="year", interval_mode="expand"
    )
    back = _round_trip(kg.time)
    assert back == kg.time and back.mode == "expand"
    assert back.labels == kg.time.labels and back.boundaries == kg.time.boundaries
