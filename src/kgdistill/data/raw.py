"""What every reader returns: ids, raw times and line numbers, before any time protocol is applied."""

from __future__ import annotations

import gzip
import logging
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

    def to_dict(self) -> dict[str, object]:
        return {
            k: {"count": n, "examples": self.examples.get(k, [])}
            for k, n in sorted(self.counts.items())
        }

    def log(self, name: str) -> None:
        """One warning line listing every kind of irregular row that was handled."""
        if self.counts:
            parts = [
                f"{k} x{n} (e.g. {', '.join(self.examples.get(k, [])[:2])})"
                for k, n in sorted(self.counts.items())
            ]
            log.warning("%s: irregular rows handled: %s", name, "; ".join(parts))


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


def resolve_file(folder: Path, name: str) -> Path:
    """``folder/name``, or its ``.gz`` twin; a clear error when neither exists."""
    for cand in (folder / name, folder / (name + ".gz")):
        if cand.is_file():
            return cand
    raise DataError(f"missing file '{name}' in {folder}")


def open_text(path: Path) -> Iterator[str]:
    """Lines of a UTF-8 text file, transparently gunzipped; no trailing newlines."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8-sig", newline="") as fh:  # type: ignore[operator]
            for line in fh:
                yield line.rstrip("\r\n")
    except UnicodeDecodeError as e:
        raise DataError(f"not UTF-8 text ({e})", path=path) from None
    except OSError as e:
        raise DataError(f"cannot read file ({e})", path=path) from None


def read_rows(
    path: Path,
    *,
    ncols: int | tuple[int, ...],
    sep: str | None = "\t",
    skip_first: bool = False,
    at_least: bool = False,
) -> Iterator[tuple[int, list[str]]]:
    """Yield ``(line_number, fields)`` for every non-blank line; a wrong column count is an error.

    Args:
        ncols: accepted number(s) of columns (with ``at_least``: the least number).
        sep: field separator; ``None`` splits on any whitespace.
        skip_first: skip the first line (a count line in OpenKE files).
    """
    allowed = (ncols,) if isinstance(ncols, int) else ncols
    for i, line in enumerate(open_text(path), start=1):
        if (skip_first and i == 1) or not line.strip():
            continue
        fields = line.split(sep) if sep is not None else line.split()
        if (len(fields) < allowed[0]) if at_least else (len(fields) not in allowed):
            want = f"at least {allowed[0]}" if at_least else " or ".join(map(str, allowed))
            raise DataError(
                f"expected {want} columns, found {len(fields)}: {line[:120]!r}", path=path, line=i
            )
        yield i, fields
