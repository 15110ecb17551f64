"""Readers of the benchmark formats. Each returns a :class:`RawKG` (ids + raw times + line numbers).

* :func:`read_static_names` - ``head<TAB>relation<TAB>tail`` with names (FB15k-237, WN18RR). Names are kept as
  strings, so WN18RR's ``00260881`` keeps its leading zeros. The vocabulary is the sorted set of names over all
  splits (as PyKEEN does), so ids do not depend on file order.
* :func:`read_hyte` - HyTE interval ids ``h r t start end`` with ``entity2id.txt`` / ``relation2id.txt``
  (YAGO11k, Wikidata12k). Date quirks are handled as documented in :mod:`kgdistill.data.time`.
* :func:`read_point_ids` - point-time ids ``h r t time [extra]`` (ICEWS14: day index; ICEWS14_forecasting:
  hours, divided by 24 to days, 5th column ignored).
* :func:`read_openke` - OpenKE / KG-S2S ``*2id.txt`` files: a count line, then ``h t r`` (FB15k-237N).
* :func:`read_table` - any CSV/TSV with a column mapping and optional time columns, for users' own graphs
  (read with :mod:`csv`: quoted fields may hold the separator).

Every reader refuses an empty name or id, an unparsable or implausible time, and a wrong column count with a
:class:`~kgdistill.errors.DataError` naming the file and line. Blank lines and rows repeated within a split are
kept as before (blank lines skipped, repeated rows kept) but counted in the :class:`~kgdistill.data.raw.Quirks`
that end up in the KG's report.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from kgdistill.data.raw import Quirks, RawKG, RawSplit, read_rows, resolve_file
from kgdistill.data.time import UNKNOWN, parse_ordinal, parse_point, parse_year
from kgdistill.errors import DataError

__all__ = [
    "SPLITS",
    "read_hyte",
    "read_openke",
    "read_point_ids",
    "read_static_names",
    "read_table",
]

SPLITS = ("train", "valid", "test")
_ROLES = ("head", "relation", "tail")


def _show(value: str, limit: int = 40) -> str:
    """A field for a message, cut to ``limit`` characters."""
    return value if len(value) <= limit else f"{value[:limit]}... ({len(value)} characters)"


def _name(value: str, role: str, column: int, path: Path, line: int) -> str:
    """``value``, unless it is empty (or only blanks): then a :class:`DataError` naming file, line and column.

    Args:
        role: what the field holds, for the message (``head``, ``relation``, ``tail``; ``""`` for a vocabulary).
        column: 0-based index of the field in the row.
    """
    if not value.strip():
        what = f"{role} name" if role else "name"
        raise DataError(f"empty {what} in column {column + 1}", path=path, line=line)
    return value


def _vocab_file(
    path: Path,
    *,
    skip_first: bool = False,
    ncols: tuple[int, ...] = (2,),
    sep: str | None = "\t",
    quirks: Quirks | None = None,
) -> list[str]:
    """Read ``name<TAB>id[...]`` lines into a list indexed by id; ids must be exactly 0..n-1."""
    pairs: dict[int, str] = {}
    for ln, f in read_rows(path, ncols=ncols, sep=sep, skip_first=skip_first, quirks=quirks):
        try:
            idx = int(f[1])
        except ValueError:
            what = (
                "empty id in column 2"
                if not f[1].strip()
                else f"id '{_show(f[1])}' is not an integer"
            )
            raise DataError(what, path=path, line=ln) from None
        _name(f[0], "", 0, path, ln)
        if idx in pairs:
            raise DataError(f"id {idx} is given twice", path=path, line=ln)
        pairs[idx] = f[0]
    n = len(pairs)
    if n == 0:
        raise DataError("vocabulary file is empty", path=path)
    if set(pairs) != set(range(n)):
        missing = sorted(set(range(n)) - set(pairs))[:5]
        raise DataError(f"ids are not 0..{n - 1} (missing e.g. {missing})", path=path)
    return [pairs[i] for i in range(n)]


def _ids(
    fields: Sequence[str], limits: Sequence[int], kinds: Sequence[str], path: Path, line: int
) -> list[int]:
    out = []
    for column, (value, limit, kind) in enumerate(zip(fields, limits, kinds, strict=True)):
        try:
            idx = int(value)
        except ValueError:
            what = (
                f"empty {kind} id in column {column + 1}"
                if not value.strip()
                else f"{kind} id '{_show(value)}' is not an integer"
            )
            raise DataError(what, path=path, line=line) from None
        if not 0 <= idx < limit:
            raise DataError(
                f"{kind} id {idx} is outside the vocabulary (0..{limit - 1})", path=path, line=line
            )
        out.append(idx)
    return out


def _interval(start: str, end: str, path: Path, line: int, quirks: Quirks) -> tuple[int, int]:
    """Parse a ``[start, end]`` pair of dates; quirks are counted, a start after the end is swapped."""
    where = f"{path.name}:{line}"
    s, qs = parse_year(start, path=path, line=line)
    e, qe = parse_year(end, path=path, line=line)
    for q in (qs, qe):
        if q:
            quirks.add(q, where)
    if s != UNKNOWN and e != UNKNOWN and s > e:
        quirks.add("start_after_end_swapped", where)
        s, e = e, s
    if s == UNKNOWN and e == UNKNOWN:
        quirks.add("no_known_year", where)
    return s, e


def _split(
    rows: list[list[int]],
    lines: list[int],
    path: Path,
    start: list[int] | None = None,
    end: list[int] | None = None,
) -> RawSplit:
    if not rows:
        raise DataError("split is empty", path=path)
    return RawSplit(
        triples=np.asarray(rows, dtype=np.int64).reshape(-1, 3),
        lines=np.asarray(lines, dtype=np.int64),
        path=str(path),
        start=None if start is None else np.asarray(start, dtype=np.int64),
        end=None if end is None else np.asarray(end, dtype=np.int64),
    )


def read_static_names(
    folder: Path, *, name: str = "", files: Mapping[str, str] | None = None, sep: str | None = "\t"
) -> RawKG:
    """Read a name-based triple dataset (``head relation tail`` per line); an empty name is an error."""
    files = dict(files or {s: f"{s}.txt" for s in SPLITS})
    raw: dict[str, list[tuple[int, list[str]]]] = {}
    paths = {}
    quirks = Quirks()
    for split, fname in files.items():
        paths[split] = resolve_file(folder, fname)
        raw[split] = list(read_rows(paths[split], ncols=3, sep=sep, quirks=quirks))
    ents = sorted({f[i] for rows in raw.values() for _, f in rows for i in (0, 2)})
    rels = sorted({f[1] for rows in raw.values() for _, f in rows})
    if any(not x.strip() for x in (*ents, *rels)):
        # rare: find the first row with an empty name, for the message
        for split, rows in raw.items():
            for ln, f in rows:
                for i, role in enumerate(_ROLES):
                    _name(f[i], role, i, paths[split], ln)
    e_id = {e: i for i, e in enumerate(ents)}
    r_id = {r: i for i, r in enumerate(rels)}
    splits = {
        s: _split(
            [[e_id[f[0]], r_id[f[1]], e_id[f[2]]] for _, f in rows],
            [ln for ln, _ in rows],
            paths[s],
        )
        for s, rows in raw.items()
    }
    return RawKG(
        name=name or folder.name,
        kind="none",
        entity_labels=ents,
        relation_labels=rels,
        splits=splits,
        quirks=quirks,
        source=str(folder),
    )


def _id_splits(
    folder: Path,
    ents: list[str],
    rels: list[str],
    ncols: tuple[int, ...],
    times: Callable[[list[str], Path, int], tuple[int, int]],
    quirks: Quirks,
) -> dict[str, RawSplit]:
    """Read ``{train,valid,test}.txt`` of id rows ``h r t <time columns>``; ``times`` parses one row's time."""
    limits = (len(ents), len(rels), len(ents))
    splits = {}
    for split in SPLITS:
        path = resolve_file(folder, f"{split}.txt")
        rows, lines, starts, ends = [], [], [], []
        for ln, f in read_rows(path, ncols=ncols, quirks=quirks):
            rows.append(_ids(f[:3], limits, ("entity", "relation", "entity"), path, ln))
            s, e = times(f, path, ln)
            lines.append(ln)
            starts.append(s)
            ends.append(e)
        splits[split] = _split(rows, lines, path, starts, ends)
    return splits


def read_hyte(folder: Path, *, name: str = "") -> RawKG:
    """Read a HyTE interval dataset (YAGO11k, Wikidata12k): ``h r t start end`` ids, tab-separated."""
    quirks = Quirks()
    ents = _vocab_file(resolve_file(folder, "entity2id.txt"), ncols=(2, 4), quirks=quirks)
    rels = _vocab_file(resolve_file(folder, "relation2id.txt"), quirks=quirks)
    splits = _id_splits(
        folder,
        ents,
        rels,
        (5,),
        lambda f, path, ln: _interval(f[3], f[4], path, ln, quirks),
        quirks,
    )
    return RawKG(
        name=name or folder.name,
        kind="interval",
        entity_labels=ents,
        relation_labels=rels,
        splits=splits,
        quirks=quirks,
        source=str(folder),
    )


def read_point_ids(
    folder: Path, *, name: str = "", origin: str | None = None, divisor: int = 1
) -> RawKG:
    """Read a point-time id dataset (ICEWS14): ``h r t time`` (an optional 5th column is ignored).

    Args:
        origin: ISO date of time 0 (labels become dates).
        divisor: the raw time is divided by it (24 turns ICEWS14_forecasting's hours into days).
    """
    quirks = Quirks()
    ents = _vocab_file(resolve_file(folder, "entity2id.txt"), quirks=quirks)
    rels = _vocab_file(resolve_file(folder, "relation2id.txt"), quirks=quirks)

    def point(f: list[str], path: Path, ln: int) -> tuple[int, int]:
        t = parse_ordinal(f[3], path=path, line=ln)
        if t < 0 or t % divisor:
            raise DataError(
                f"impossible time {t} (expected a non-negative multiple of {divisor})",
                path=path,
                line=ln,
            )
        return t // divisor, t // divisor

    splits = _id_splits(folder, ents, rels, (4, 5), point, quirks)
    return RawKG(
        name=name or folder.name,
        kind="point",
        entity_labels=ents,
        relation_labels=rels,
        splits=splits,
        quirks=quirks,
        origin=origin,
        source=str(folder),
    )


def read_openke(folder: Path, *, name: str = "") -> RawKG:
    """Read OpenKE / KG-S2S id files: ``entity2id.txt`` and ``relation2id.txt`` (count line, ``name id``),
    ``{train,valid,test}2id.txt`` (count line, ``h t r``, space-separated)."""
    ent_path, rel_path = (
        resolve_file(folder, "entity2id.txt"),
        resolve_file(folder, "relation2id.txt"),
    )
    quirks = Quirks()
    ents = _vocab_file(ent_path, skip_first=True, sep=None, quirks=quirks)
    rels = _vocab_file(rel_path, skip_first=True, sep=None, quirks=quirks)
    for path, vocab in ((ent_path, ents), (rel_path, rels)):
        _check_count(path, len(vocab))
    limits = (len(ents), len(ents), len(rels))
    splits = {}
    for split in SPLITS:
        path = resolve_file(folder, f"{split}2id.txt")
        rows, lines = [], []
        for ln, f in read_rows(path, ncols=3, sep=None, skip_first=True, quirks=quirks):
            h, t, r = _ids(f, limits, ("entity", "entity", "relation"), path, ln)
            rows.append([h, r, t])
            lines.append(ln)
        _check_count(path, len(rows))
        splits[split] = _split(rows, lines, path)
    return RawKG(
        name=name or folder.name,
        kind="none",
        entity_labels=ents,
        relation_labels=rels,
        splits=splits,
        quirks=quirks,
        source=str(folder),
    )


def _check_count(path: Path, n: int) -> None:
    from kgdistill.data.raw import open_text

    first = next(iter(open_text(path)), "").strip()
    if not first.isdigit() or int(first) != n:
        raise DataError(
            f"count line says '{first}' but the file holds {n} records", path=path, line=1
        )


def read_table(
    files: Mapping[str, str | Path],
    *,
    columns: Mapping[str, int],
    sep: str = "\t",
    header: bool = False,
    name: str = "",
) -> RawKG:
    """Read users' own CSV/TSV files through a column mapping.

    Files are read with :mod:`csv` (when ``sep`` is one character): a field in double quotes may hold the
    separator, a line break or a doubled quote (``"Washington, D.C."``, ``"Dwayne ""The Rock"" Johnson"``). Line
    numbers in messages are those of the file (a record spanning lines has the number of its first line).

    Args:
        files: split name -> file (``train`` is required; ``valid`` / ``test`` optional but usually given).
        columns: ``head``, ``relation``, ``tail`` (0-based indices), and optionally ``time`` (a point time: an
            integer or an ISO date) or ``start`` and ``end`` (an interval of years, HyTE date syntax).
        sep: field separator (``","`` for CSV); a longer separator is split on as plain text, without quoting.
        header: skip the first line of every file.

    Raises:
        DataError: a missing file, a wrong number of columns, malformed quoting, an empty name or an
            unparsable / implausible time (names the file and line).
    """
    for need in _ROLES:
        if need not in columns:
            raise DataError(f"column mapping lacks '{need}' (given: {sorted(columns)})")
    if "train" not in files:
        raise DataError("read_table needs at least a 'train' file")
    if not sep:
        raise DataError("read_table needs a non-empty separator 'sep'")
    interval = "start" in columns or "end" in columns
    if interval and not ("start" in columns and "end" in columns):
        raise DataError("an interval needs both 'start' and 'end' columns")
    kind = "interval" if interval else ("point" if "time" in columns else "none")
    width = max(columns.values()) + 1
    quirks = Quirks()
    parsed: dict[str, tuple[Path, list[tuple[int, list[str]]], list[tuple[str, str, str]]]] = {}
    for split, f in files.items():
        path = Path(f)
        if not path.is_file():
            raise DataError("missing file", path=path)
        rows = list(
            read_rows(
                path,
                ncols=width,
                sep=sep,
                skip_first=header,
                at_least=True,
                quoted=len(sep) == 1,
                quirks=quirks,
            )
        )
        parsed[split] = (path, rows, [_table_names(r, columns, path, ln) for ln, r in rows])
    ents = sorted({n[i] for _, _, names in parsed.values() for n in names for i in (0, 2)})
    rels = sorted({n[1] for _, _, names in parsed.values() for n in names})
    e_id = {e: i for i, e in enumerate(ents)}
    r_id = {r: i for i, r in enumerate(rels)}
    splits = {}
    for split, (path, rows, names) in parsed.items():
        trip = [[e_id[h], r_id[r], e_id[t]] for h, r, t in names]
        lines = [ln for ln, _ in rows]
        start = end = None
        if kind == "point":
            start = [parse_point(r[columns["time"]], path=path, line=ln) for ln, r in rows]
            end = start
        elif kind == "interval":
            start, end = [], []
            for ln, r in rows:
                s, e = _interval(r[columns["start"]], r[columns["end"]], path, ln, quirks)
                start.append(s)
                end.append(e)
        splits[split] = _split(trip, lines, path, start, end)
    origin = None
    if kind == "point":
        origin = _shift_dates(splits, parsed["train"][1][0][1][columns["time"]])
    return RawKG(
        name=name or Path(files["train"]).parent.name,
        kind=kind,
        entity_labels=ents,
        relation_labels=rels,
        splits=splits,
        quirks=quirks,
        origin=origin,
        source=str(Path(files["train"]).parent),
    )


def _table_names(
    row: list[str], columns: Mapping[str, int], path: Path, line: int
) -> tuple[str, str, str]:
    """Head, relation and tail of a :func:`read_table` row, stripped; an empty one is an error."""
    h, r, t = (
        _name(row[columns[role]].strip(), role, columns[role], path, line) for role in _ROLES
    )
    return h, r, t


def _shift_dates(splits: Mapping[str, RawSplit], sample: str) -> str | None:
    """When point times are ISO dates (judged from ``sample``, the first train time), shift their day ordinals so
    that 0 is the first date, and return that date; integer times are left alone (``None``)."""
    import datetime as dt

    text = sample.strip()
    if (text[1:] if text.startswith("-") else text).isdecimal():
        return None
    first = min(int(s.start.min()) for s in splits.values())  # type: ignore[union-attr]
    for s in splits.values():
        s.start = s.start - first  # type: ignore[operator]
        s.end = s.start
    return dt.date.fromordinal(first).isoformat()
