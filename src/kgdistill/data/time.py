"""Time: parsing the dates of benchmark files and mapping them to time ids.

Two kinds of temporal data exist in the benchmarks:

* **point** (ICEWS14): every fact has one timestamp, an ordinal (a day index, or an ISO date turned into a day).
  Time ids are the distinct ordinals in sorted order; a query's time is compared for equality.
* **interval** (YAGO11k, Wikidata12k, HyTE format): every fact has ``[start, end]`` years, either of which may be
  unknown (``####``). Only the year is used (the standard for these datasets).

Interval protocol (``TimeConfig``), one per table, identical for every model compared:

* Years are grouped into **bins**. ``granularity="year"`` puts a boundary at every distinct year seen in train;
  ``granularity="bins"`` merges consecutive years until each bin holds at least ``min_bin_size`` train dates
  (HyTE's year classes: 61 bins on YAGO11k and 77 on Wikidata12k with the default 300). Years before the first
  boundary fall in the first bin, years after the last in the last bin. Bins come from train only.
* ``interval_mode`` decides which time a fact is modelled at:
  - ``start``: one quadruple at the bin of the start year (the end year when the start is unknown);
  - ``expand``: training facts are repeated once per bin their known interval covers (HyTE); valid and test facts
    are queried at their start (as ``start``);
  - ``split``: every fact becomes ``since <start bin>`` and ``until <end bin>`` quadruples (TA-DistMult's
    modifiers, TeRo's split), one per known bound; the modifier is part of the time id.
  A fact with both bounds unknown is modelled at the time id ``unknown``.
* **Time-aware filter**: an answer is filtered out of a query at bin ``b`` when it is a known fact whose interval
  contains ``b``. Unknown bounds are open: an unknown end means "still true", an unknown start "true since always",
  so a fact with no known year counts as true at every time. A query at ``unknown`` uses the static filter.

Date quirks (never a crash, never a silent drop; each is counted in the KG's report and logged once):
``####`` is unknown; a partially masked year such as ``19##`` or ``199#`` is unknown (as in HyTE); years with fewer
than four digits and negative (BC) years are kept as numbers; an impossible month or day (``1963-64-65``,
``307-13047-09``) is ignored because only the year is used; a start after the end is swapped. A year that is not
a number at all, or an implausible one (more than :data:`MAX_ABS_YEAR`, such as ``19990-01-01``), is an error that
names the file and line.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from kgdistill.errors import DataError

__all__ = [
    "MAX_ABS_ORDINAL",
    "MAX_ABS_YEAR",
    "OPEN_HI",
    "OPEN_LO",
    "UNKNOWN",
    "UNKNOWN_ANCHOR",
    "TimeSpec",
    "parse_ordinal",
    "parse_point",
    "parse_year",
    "year_bins",
]

#: Sentinel for an unknown year / ordinal in raw arrays.
UNKNOWN = -(2**62)
#: Anchor of the ``unknown`` time id: queries at it use the static filter.
UNKNOWN_ANCHOR = -(2**62)
#: Open interval bounds in bin space.
OPEN_LO, OPEN_HI = -(2**61), 2**61
#: The largest ``|year|`` accepted in a date; anything beyond is a typo (``19990``), not a year.
MAX_ABS_YEAR = 9999
#: The largest ``|time|`` of an integer point time: beyond it a time would meet the sentinels above (and then the
#: end of ``int64``, in which times are stored).
MAX_ABS_ORDINAL = OPEN_HI - 1


def _show(text: str, limit: int = 40) -> str:
    """``text`` for a message, cut to ``limit`` characters (a runaway field must not flood the terminal)."""
    text = text.strip()
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _check_year_digits(digits: str, text: str, *, path: object, line: int | None) -> None:
    """Refuse a year of more than four significant digits before it is turned into an ``int``."""
    if len(digits.lstrip("0")) > len(str(MAX_ABS_YEAR)):
        raise DataError(
            f"implausible year {_show(digits)} in date '{_show(text)}' "
            f"(|year| must be at most {MAX_ABS_YEAR})",
            path=path,
            line=line,
        )


def parse_year(
    text: str, *, path: object = None, line: int | None = None
) -> tuple[int, str | None]:
    """Parse the year of a HyTE date such as ``1952-##-##``, ``-405-##-##`` or ``####``.

    Returns:
        ``(year, quirk)``: ``year`` is :data:`UNKNOWN` when unknown; ``quirk`` names an irregularity that was
        handled (``masked_year``, ``short_year``, ``bc_year``, ``invalid_month_day``) or is ``None``.

    Raises:
        DataError: the year is not a number, or ``|year|`` exceeds :data:`MAX_ABS_YEAR` (names the file and line).
    """
    s = text.strip()
    if not s:
        raise DataError(
            "cannot parse an empty date (expected YYYY-MM-DD, '#' for unknown)",
            path=path,
            line=line,
        )
    sign = 1
    if s.startswith("-"):
        sign, s = -1, s[1:]
    parts = s.split("-")
    ystr = parts[0]
    if len(parts) > 3 or not ystr:
        raise DataError(
            f"cannot parse date '{_show(text)}' (expected YYYY-MM-DD, '#' for unknown)",
            path=path,
            line=line,
        )
    if set(ystr) == {"#"}:
        return UNKNOWN, None
    if "#" in ystr:
        if not ystr.replace("#", "").isdecimal() and ystr.replace("#", ""):
            raise DataError(f"cannot parse year in date '{_show(text)}'", path=path, line=line)
        _check_year_digits(ystr, text, path=path, line=line)
        return UNKNOWN, "masked_year"
    if not ystr.isdecimal():
        raise DataError(f"cannot parse year in date '{_show(text)}'", path=path, line=line)
    _check_year_digits(ystr, text, path=path, line=line)
    year = sign * int(ystr)
    quirk = "bc_year" if sign < 0 else ("short_year" if len(ystr) < 4 else None)
    if len(parts) > 1:
        day = parts[2] if len(parts) > 2 else "##"
        if not (_valid_part(parts[1], 12) and _valid_part(day, 31)):
            quirk = "invalid_month_day"
    return year, quirk


def _valid_part(text: str, top: int) -> bool:
    """Whether a month / day is masked (``##``) or a number in ``1..top`` (at most two significant digits)."""
    if text.strip("#") == "":
        return True
    return text.isdecimal() and len(text.lstrip("0")) <= 2 and 1 <= int(text) <= top


def parse_point(text: str, *, path: object = None, line: int | None = None) -> int:
    """Parse a point time: an integer ordinal (``132``) or an ISO date (``2014-05-13`` -> its day ordinal).

    An ISO date may carry a time of day (``2014-05-13T12:30:00``), which is ignored.

    Raises:
        DataError: not an integer nor a date, an integer beyond :data:`MAX_ABS_ORDINAL`, or a date whose year is
            implausible (names the file and line).
    """
    s = text.strip()
    unsigned = s[1:] if s.startswith("-") else s
    if unsigned.isdecimal():
        return parse_ordinal(s, path=path, line=line)
    year = unsigned.split("-")[0]
    if year.isdecimal():
        _check_year_digits(year, text, path=path, line=line)
    try:
        day = (
            None if s[10:11].isdigit() else dt.date.fromisoformat(s[:10])
        )  # "2014-05-139" is no date
    except ValueError:
        day = None
    if day is None:
        raise DataError(
            f"cannot parse time '{_show(text)}' (expected an integer or YYYY-MM-DD)",
            path=path,
            line=line,
        )
    return day.toordinal()


def parse_ordinal(text: str, *, path: object = None, line: int | None = None) -> int:
    """Parse an integer point time (a day or hour index such as ICEWS14's ``132``).

    Raises:
        DataError: empty, not an integer, or beyond :data:`MAX_ABS_ORDINAL` (names the file and line).
    """
    s = text.strip()
    unsigned = s[1:] if s.startswith("-") else s
    if not unsigned.isdecimal():
        what = "is empty" if not s else f"'{_show(text)}' is not an integer"
        raise DataError(f"time {what}", path=path, line=line)
    # compare the digits first: int() of thousands of digits is slow, or refused
    if len(unsigned.lstrip("0")) > len(str(MAX_ABS_ORDINAL)) or abs(int(s)) > MAX_ABS_ORDINAL:
        raise DataError(
            f"time '{_show(text)}' is out of range (|time| must be at most {MAX_ABS_ORDINAL})",
            path=path,
            line=line,
        )
    return int(s)


def year_bins(years: Sequence[int], *, granularity: str, min_bin_size: int) -> list[int]:
    """First year of every bin, sorted (see the module docstring).

    Args:
        years: every known year of the training facts (starts and ends), with repetitions.
        granularity: ``"year"`` or ``"bins"``.
        min_bin_size: for ``"bins"``, the least number of dates in a bin (the last bin may hold fewer).
    """
    if not years:
        raise DataError("no known year in the training split: cannot build time bins")
    counts: dict[int, int] = {}
    for y in years:
        counts[y] = counts.get(y, 0) + 1
    distinct = sorted(counts)
    if granularity == "year":
        return distinct
    starts, acc = [distinct[0]], 0
    for y in distinct:
        if acc >= min_bin_size:
            starts.append(y)
            acc = 0
        acc += counts[y]
    return starts


@dataclass(frozen=True)
class TimeSpec:
    """How raw times map to time ids; stored in every checkpoint so ``predict --time`` works without the data.

    Attributes:
        kind: ``none`` (static), ``point`` or ``interval``.
        labels: time id -> readable label (``"1990..1993"``, ``"since 1990"``, ``"2014-01-01"``).
        anchors: time id -> the bin (interval) or ordinal (point) a query at that id is filtered at.
        boundaries: interval only: first year of every bin.
        mode: interval only: ``start``, ``expand`` or ``split``.
        origin: point only: ISO date of ordinal 0 when ordinals are day offsets (ICEWS14: 2014-01-01).
    """

    kind: Literal["none", "point", "interval"]
    labels: tuple[str, ...] = ()
    anchors: tuple[int, ...] = ()
    boundaries: tuple[int, ...] = ()
    mode: str = "start"
    origin: str | None = None
    max_year: int | None = None
    _index: dict[str, int] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._index.update({lab: i for i, lab in enumerate(self.labels)})

    @property
    def num_times(self) -> int:
        return len(self.labels)

    # -- bins ---------------------------------------------------------------------------------------------
    def bin_of(self, year: int) -> int:
        """Bin index of ``year``; years outside the seen range are clipped to the first / last bin."""
        return max(bisect.bisect_right(self.boundaries, year) - 1, 0)

    def bin_label(self, b: int) -> str:
        lo = self.boundaries[b]
        hi = self.boundaries[b + 1] - 1 if b + 1 < len(self.boundaries) else self.max_year
        return str(lo) if hi is None or hi == lo else f"{lo}..{hi}"

    # -- user input -----------------------------------------------------------------------------------------
    def time_id(self, raw: str) -> int:
        """Time id of a user's time (``2000``, ``since 2000``, ``2014-05-13`` or a label); clear error if unseen."""
        from kgdistill.errors import KGDistillError

        text = raw.strip()
        if text in self._index:
            return self._index[text]
        if self.kind == "none":
            raise KGDistillError("this model is static: it takes no --time")
        if self.kind == "point":
            ordinal = parse_point(text)
            if self.origin is not None and not text.lstrip("-").isdigit():
                ordinal -= dt.date.fromisoformat(self.origin).toordinal()
            label = self._point_label(ordinal)
            if label not in self._index:
                raise KGDistillError(
                    f"time '{raw}' was never seen by this model "
                    f"(seen: {self.labels[0]} .. {self.labels[-1]})"
                )
            return self._index[label]
        modifier = ""
        for m in ("since", "until"):
            if text.startswith(m + " "):
                modifier, text = m, text[len(m) + 1 :]
        year, _ = parse_year(text)
        if (
            year == UNKNOWN
            or self.max_year is None
            or not (self.boundaries[0] <= year <= self.max_year)
        ):
            raise KGDistillError(
                f"time '{raw}' is outside the years this model saw "
                f"({self.boundaries[0]}..{self.max_year})"
            )
        if self.mode != "split":
            modifier = ""  # only the split protocol has since/until time ids
        elif not modifier:
            modifier = "since"
        key = self.key(modifier, self.bin_of(year))
        if key not in self._index:
            raise KGDistillError(f"time '{raw}' maps to '{key}', a time this model never saw")
        return self._index[key]

    def key(self, modifier: str, b: int) -> str:
        """Label of the time id for bin ``b`` with an optional ``since`` / ``until`` modifier."""
        return f"{modifier} {self.bin_label(b)}" if modifier else self.bin_label(b)

    def _point_label(self, ordinal: int) -> str:
        if self.origin is None:
            return str(ordinal)
        return (dt.date.fromisoformat(self.origin) + dt.timedelta(days=ordinal)).isoformat()

    # -- serialisation ------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "labels": list(self.labels),
            "anchors": list(self.anchors),
            "boundaries": list(self.boundaries),
            "mode": self.mode,
            "origin": self.origin,
            "max_year": self.max_year,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TimeSpec:
        return cls(
            kind=d["kind"],
            labels=tuple(d["labels"]),
            anchors=tuple(d["anchors"]),
            boundaries=tuple(d["boundaries"]),
            mode=d["mode"],
            origin=d["origin"],
            max_year=d["max_year"],
        )
