"""What every reader returns: ids, raw times and line numbers, before any time protocol is applied."""

from __future__ import annotations

import csv
import gzip
import logging
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from kgdistill.errors import DataError

__all__ = ["Quirks", "RawKG", "RawSplit", "open_text", "read_rows", "resolve_file"]

log = logging.getLogger(__name__)


@dataclass
class Quirks:
    """Irregular rows that were handled rather than rejected: counts per kind, plus a few examples."""

    counts: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def add(self, kind: str, where: str) -> None:
        self.counts[kind] += 1
        ex = self.examples.setdefault(kind, [])
        if len(ex) < 3 and where not in ex:
            ex.append(where)

    def copy(self) -> Quirks:
        """An independent copy (so that adding to it leaves the original untouched)."""
        return Quirks(Counter(self.counts), {k: list(v) for k, v in self.examples.items()})

    def to_dict(self) -> dict[str, object]:
        return {
            k: {"count": n, "examples": self.examples.get(k, [])}
            for k, n in sorted(self.counts.items())
        }

    def summary(self) -> str:
        """The counts per kind on one line, e.g. ``masked_year 16, start_after_end_swapped 70``."""
        return ", ".join(f"{k} {n}" for k, n in sorted(self.counts.items()))

    def log(self, name: str) -> None:
        """One short INFO line with the count of every kind of irregular row handled (examples are in
        :meth:`to_dict`, which goes into the run's ``metrics.json``)."""
        if self.counts:
            log.info(
                "%s: handled irregular rows: %s (details in the run's metrics.json data_report)",
                name,
                self.summary(),
            )


@dataclass
class RawSplit:
    """One split as read from disk.

    Attributes:
        triples: ``(n, 3)`` head, relation, tail ids.
        start: ``(n,)`` start year (interval) or ordinal (point), :data:`~kgdistill.data.time.UNKNOWN` if unknown.
        end: ``(n,)`` end year / ordinal (equal to ``start`` for point data).
        lines: ``(n,)`` 1-based line numbers in ``path``, for error messages.
        path: the file the split was read from.
    """

    triples: np.ndarray
    lines: np.ndarray
    path: str
    start: np.ndarray | None = None
    end: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.triples.shape[0])


@dataclass
class RawKG:
    """A dataset read from disk: vocabularies, id-encoded splits with raw times, and the quirks met."""

    name: str
    kind: Literal["none", "point", "interval"]
    entity_labels: list[str]
    relation_labels: list[str]
    splits: dict[str, RawSplit]
    quirks: Quirks = field(default_factory=Quirks)
    origin: str | None = None
    source: str = ""
    #: how the splits were derived from the files (e.g. :func:`kgdistill.data.resplit.resplit`'s counts)
    derivation: dict[str, object] | None = None


def resolve_file(folder: Path, name: str) -> Path:
    """``folder/name``, or its ``.gz`` twin; a clear error when neither exists."""
    for cand in (folder / name, folder / (name + ".gz")):
        if cand.is_file():
            return cand
    raise DataError(f"missing file '{name}' in {folder}")


def open_text(path: Path, *, keep_ends: bool = False) -> Iterator[str]:
    """Lines of a UTF-8 text file, transparently gunzipped; one item per physical line.

    Args:
        keep_ends: keep each line's ``\\n`` / ``\\r\\n`` (what :mod:`csv` needs for quoted line breaks).

    Raises:
        DataError: the file cannot be read, or holds bytes that are not UTF-8 (names the line and the byte).
    """
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(  # type: ignore[operator]
            path, "rt", encoding="utf-8-sig", errors="surrogateescape", newline=""
        ) as fh:
            for i, line in enumerate(fh, start=1):
                if not line.isascii():
                    _check_utf8(line, path, i)
                yield line if keep_ends else line.rstrip("\r\n")
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"cannot read file ({e})", path=path) from None


def _check_utf8(line: str, path: Path, number: int) -> None:
    """Raise a :class:`DataError` naming the line and byte when ``line`` holds undecodable bytes.

    The file is decoded with ``errors="surrogateescape"``, so every byte that is not UTF-8 shows up as a lone
    surrogate, which the strict encoder refuses.
    """
    try:
        line.encode("utf-8")
    except UnicodeEncodeError as e:
        byte = ord(line[e.start]) - 0xDC00
        offset = len(line[: e.start].encode("utf-8", "surrogateescape")) + 1
        raise DataError(
            f"not UTF-8 text: byte 0x{byte:02x} at byte {offset} of the line "
            "(re-save the file as UTF-8)",
            path=path,
            line=number,
        ) from None


def read_rows(
    path: Path,
    *,
    ncols: int | tuple[int, ...],
    sep: str | None = "\t",
    skip_first: bool = False,
    at_least: bool = False,
    quoted: bool = False,
    quirks: Quirks | None = None,
) -> Iterator[tuple[int, list[str]]]:
    """Yield ``(line_number, fields)`` for every non-blank line; a wrong column count is an error.

    Args:
        ncols: accepted number(s) of columns (with ``at_least``: the least number).
        sep: field separator; ``None`` splits on any whitespace.
        skip_first: skip the first line (a header, or a count line in OpenKE files).
        quoted: read with :mod:`csv` (``"..."`` quotes a field that holds ``sep``, a quote or a line break);
            ``sep`` must then be one character. Line numbers stay those of the file: a record that spans
            lines has the number of its first line.
        quirks: when given, blank lines (``blank_line``) and rows that repeat an earlier row of the same file
            field for field (``duplicate_row``) are counted there; both are skipped / kept as before.
    """
    allowed = (ncols,) if isinstance(ncols, int) else ncols
    records = _csv_records(path, sep) if quoted and sep is not None else _split_records(path, sep)
    first_seen: dict[object, int] = {}
    for i, fields, key in records:
        if skip_first and i == 1:
            continue
        if key is None:
            if quirks is not None:
                quirks.add("blank_line", f"{path.name}:{i}")
            continue
        if (len(fields) < allowed[0]) if at_least else (len(fields) not in allowed):
            want = f"at least {allowed[0]}" if at_least else " or ".join(map(str, allowed))
            text = (sep or " ").join(fields)
            raise DataError(
                f"expected {want} columns, found {len(fields)}: {text[:120]!r}", path=path, line=i
            )
        if quirks is not None:
            first = first_seen.setdefault(key, i)
            if first != i:
                quirks.add("duplicate_row", f"{path.name}:{i} (= line {first})")
        yield i, fields


def _split_records(path: Path, sep: str | None) -> Iterator[tuple[int, list[str], object]]:
    """``(line number, fields, key)`` of every line, split on ``sep`` (any whitespace when ``None``).

    ``key`` is ``None`` for a blank line, else a value that is equal for two lines exactly when their fields are.
    """
    for i, line in enumerate(open_text(path), start=1):
        if not line.strip():
            yield i, [], None
        elif sep is None:
            fields = line.split()
            yield i, fields, " ".join(fields)
        else:
            yield i, line.split(sep), line


def _csv_records(path: Path, sep: str) -> Iterator[tuple[int, list[str], object]]:
    """``(number of the first line, fields, key)`` of every CSV record, as in :func:`_split_records` (a record is
    blank when it is one line of nothing but whitespace); malformed quoting is a :class:`DataError`."""
    if len(sep) != 1:
        raise DataError(f"a quoted (CSV) file needs a one-character separator, got {sep!r}")
    last: list[str] = [""]

    def lines() -> Iterator[str]:
        for line in open_text(path, keep_ends=True):
            last[0] = line
            yield line

    reader = csv.reader(lines(), delimiter=sep, strict=True)
    start = 1
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            raise DataError(f"malformed CSV record ({e})", path=path, line=start) from None
        blank = reader.line_num == start and not last[0].strip()
        yield start, fields, None if blank else tuple(fields)
        start = reader.line_num + 1
