"""The context store: one JSONL file, one record per key, append-only, safe against ``kill -9`` at any moment.

Layout::

    {"kgdistill_contexts": 1, "dataset": "yago11k"}                        <- header (line 1)
    {"kind": "entity", "key": "<Al_Gore>", "status": "ok", "text": ..., ...}
    {"kind": "triple", "key": ["<Al_Gore>", "<wasBornIn>", "<Washington,_D.C.>"], ...}

A record's identity is its ``kind`` and ``key`` (:func:`record_id`). Writers append whole batches of lines and
``fsync`` after each batch, so after a kill the file ends with complete records and perhaps one torn line; the
next writer drops the torn line (truncates the file after the last newline) and skips every id already present:
a rerun ends with every key exactly once. A malformed line *before* the last one is not a kill's trace but a
damaged file: a :class:`~kgdistill.errors.DataError` naming file and line. One writer per store at a time: an
exclusive ``flock`` on ``.<name>.lock`` beside it (released by the kernel when its process dies).

Rewriting a store (import ``--replace``, retrying rejected records) goes through a temporary file and a rename
(:func:`kgdistill.io.atomic_write_text`): a kill leaves the old or the new file, never a mix.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from kgdistill.errors import ConfigError, DataError, KGDistillError

__all__ = [
    "FORMAT",
    "ContextStore",
    "StoreContents",
    "StoreWriter",
    "read_store",
    "record_id",
]

FORMAT = 1
_HEADER_KEY = "kgdistill_contexts"
KINDS = ("entity", "triple")


def record_id(kind: str, key: Any) -> str:
    """The identity of a record: ``entity\\t<label>`` or ``triple\\t<h>\\t<r>\\t<t>``."""
    if kind == "entity" and isinstance(key, str):
        return f"entity\t{key}"
    if kind == "triple" and isinstance(key, list | tuple) and len(key) == 3:
        return "triple\t" + "\t".join(str(k) for k in key)
    raise ValueError(f"not a {kind} key: {key!r}")


def describe_id(rid: str) -> str:
    """A record id for messages: ``entity <Al_Gore>`` or ``triple (<Al_Gore>, <wasBornIn>, <X>)``."""
    kind, _, rest = rid.partition("\t")
    return f"entity {rest}" if kind == "entity" else f"triple ({', '.join(rest.split(chr(9)))})"


@dataclass
class StoreContents:
    """What :func:`read_store` found.

    Attributes:
        dataset: the dataset named in the header (``None`` for an empty or new store).
        records: id -> record (a later record of an id replaces an earlier one).
        good_bytes: length of the file up to its last complete line.
        torn: a torn last line was found (and is not part of ``records``).
        duplicates: ids found more than once.
    """

    dataset: str | None = None
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    good_bytes: int = 0
    torn: bool = False
    duplicates: int = 0

    def ok(self) -> dict[str, dict[str, Any]]:
        """The accepted records (``status == "ok"``)."""
        return {k: r for k, r in self.records.items() if r.get("status") == "ok"}


def _check_record(rec: Any, path: Path, line: int) -> str:
    if not isinstance(rec, dict) or rec.get("kind") not in KINDS or "key" not in rec:
        raise DataError("not a context record (needs 'kind' and 'key')", path=path, line=line)
    try:
        return record_id(rec["kind"], rec["key"])
    except ValueError as e:
        raise DataError(str(e), path=path, line=line) from None


def read_store(path: str | os.PathLike[str]) -> StoreContents:
    """Read a store (missing file: empty). A torn last line is left out; a bad earlier line is a DataError."""
    path = Path(path)
    out = StoreContents()
    if not path.is_file():
        return out
    data = path.read_bytes()
    lines = data.split(b"\n")
    tail = lines.pop()  # after the last newline: b"" for a complete file, else a torn line
    out.torn = bool(tail)
    out.good_bytes = len(data) - len(tail)
    for i, raw in enumerate(lines, start=1):
        try:
            rec = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            if i > 1:
                raise DataError(
                    f"line is not JSON ({raw[:80]!r}); the store is damaged", path=path, line=i
                ) from None
            rec = None
        if i == 1:
            if not isinstance(rec, dict) or rec.get(_HEADER_KEY) != FORMAT:
                raise DataError(
                    f"not a kgdistill context store (line 1 must be the header "
                    f'{{"{_HEADER_KEY}": {FORMAT}, "dataset": ...}})',
                    path=path,
                    line=1,
                )
            out.dataset = rec.get("dataset")
            continue
        rid = _check_record(rec, path, i)
        out.duplicates += rid in out.records
        out.records[rid] = rec
    return out


def _lock(path: Path) -> int | None:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - no flock on this platform
        return None
    lock = path.with_name(f".{path.name}.lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise KGDistillError(
            f"{path}: another process is writing this context store (lock {lock})"
        ) from None
    return fd


def _line(rec: dict[str, Any]) -> str:
    return json.dumps(rec, ensure_ascii=False, separators=(",", ":")) + "\n"


class StoreWriter:
    """The one writer of a store: a context manager that locks it, repairs a torn end and appends batches.

    Args:
        path: the JSONL file (created with its header when missing).
        dataset: the dataset the records belong to; a store of another dataset is refused.

    Attributes:
        contents: what the store held when opened (plus what this writer appended).
    """

    def __init__(self, path: str | os.PathLike[str], *, dataset: str) -> None:
        self.path = Path(path)
        self.dataset = dataset
        self.contents = StoreContents()
        self.repaired = False
        self._fd: int | None = None
        self._fh: Any = None

    def __enter__(self) -> StoreWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = _lock(self.path)
        try:
            self._open()
        except BaseException:
            self.close()
            raise
        return self

    def _open(self) -> None:
        from kgdistill.io import atomic_write_text

        self.contents = read_store(self.path)
        if self.contents.dataset is None and self.path.is_file() and self.path.stat().st_size:
            # the header is written atomically, so a store never lacks it: this file is something else
            raise DataError(
                "not a kgdistill context store (no header line)", path=self.path, line=1
            )
        if self.contents.dataset is None:  # a new store
            header = {_HEADER_KEY: FORMAT, "dataset": self.dataset}
            atomic_write_text(self.path, _line(header))
            self.contents = read_store(self.path)
        elif self.contents.dataset != self.dataset:
            raise ConfigError(
                f"{self.path} holds contexts of dataset '{self.contents.dataset}', not "
                f"'{self.dataset}': give another store"
            )
        if self.contents.torn:  # a kill's torn last line: cut it off
            with open(self.path, "r+b") as fh:
                fh.truncate(self.contents.good_bytes)
                os.fsync(fh.fileno())
            self.repaired, self.contents.torn = True, False
        self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def done(self, rid: str) -> bool:
        return rid in self.contents.records

    def append(self, records: Iterable[dict[str, Any]]) -> int:
        """Append records (each id must be new), then flush and ``fsync``; returns how many."""
        batch = list(records)
        for rec in batch:
            rid = record_id(rec["kind"], rec["key"])
            if rid in self.contents.records:
                raise ValueError(f"{describe_id(rid)} is already in {self.path}")
            self.contents.records[rid] = rec
        if batch:
            self._fh.write("".join(_line(r) for r in batch))
            self._fh.flush()
            os.fsync(self._fh.fileno())
        return len(batch)

    def rewrite(self, records: Iterable[dict[str, Any]]) -> None:
        """Replace the whole store by ``records`` (temporary file, ``fsync``, rename)."""
        from kgdistill.io import atomic_write_text

        recs = list(records)
        header = {_HEADER_KEY: FORMAT, "dataset": self.dataset}
        self._fh.close()
        atomic_write_text(self.path, "".join(_line(r) for r in [header, *recs]))
        self.contents = read_store(self.path)
        self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        if self._fd is not None:
            os.close(self._fd)  # releases the flock
            self._fd = None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class ContextStore:
    """Read access to a finished store: accepted texts by entity label and by triple.

    Args:
        path: the JSONL store.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise DataError("no such context store", path=self.path)
        contents = read_store(self.path)
        self.dataset = contents.dataset
        self.records = contents.records
        self.entities: dict[str, str] = {}
        self.triples: dict[tuple[str, str, str], str] = {}
        for rec in contents.ok().values():
            if rec["kind"] == "entity":
                self.entities[rec["key"]] = rec["text"]
            else:
                h, r, t = rec["key"]
                self.triples[(h, r, t)] = rec["text"]

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.records.values())

    def entity(self, label: str) -> str | None:
        """The context of entity ``label`` (``None`` when it has none)."""
        return self.entities.get(label)

    def triple(self, head: str, relation: str, tail: str, *, compose: bool = True) -> str | None:
        """The context of a triple: its own (T->TD) where the store has one, else (``compose``) the head's and
        the tail's entity contexts joined (T->ED, :func:`compose_entities`); ``None`` when there is nothing."""
        own = self.triples.get((head, relation, tail))
        if own is not None or not compose:
            return own
        return compose_entities(self.entity(head), self.entity(tail))


def compose_entities(head: str | None, tail: str | None, *, sep: str = "\n") -> str | None:
    """A triple's T->ED context: the head's and the tail's entity contexts joined by ``sep`` (one of them when
    the other is missing, ``None`` when both are; the same text once when head and tail are one entity)."""
    parts = [p for p in (head, tail) if p]
    if len(parts) == 2 and parts[0] == parts[1]:
        parts = parts[:1]
    return sep.join(parts) if parts else None
