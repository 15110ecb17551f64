"""The JSONL context store: torn last lines repaired, damaged files refused with file and line, one writer at a
time, a store belongs to one dataset; reading back with T->ED composition."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kgdistill.contexts import ContextStore, StoreWriter, compose_entities, read_store
from kgdistill.errors import ConfigError, DataError, KGDistillError


def rec(key: str, text: str = "some text", status: str = "ok") -> dict[str, object]:
    return {"kind": "entity", "key": key, "status": status, "text": text}


def triple(h: str, r: str, t: str, text: str) -> dict[str, object]:
    return {"kind": "triple", "key": [h, r, t], "status": "ok", "text": text}


def test_append_read_and_compose(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    with StoreWriter(path, dataset="d") as w:
        assert w.append([rec("a", "A is a city."), rec("b", "B is a river.")]) == 2
        w.append([triple("a", "r", "b", "A lies on B."), rec("c", "bad", status="rejected")])
        with pytest.raises(ValueError, match="entity a is already in"):
            w.append([rec("a")])
    lines = path.read_text(encoding="utf-8").splitlines()
    assert json.loads(lines[0]) == {"kgdistill_contexts": 1, "dataset": "d"} and len(lines) == 5
    store = ContextStore(path)
    assert store.dataset == "d" and len(store) == 4
    assert store.entity("a") == "A is a city." and store.entity("c") is None  # rejected: no context
    assert store.triple("a", "r", "b") == "A lies on B."  # its own (T->TD)
    assert store.triple("b", "r", "a") == "B is a river.\nA is a city."  # composed (T->ED)
    assert store.triple("b", "r", "a", compose=False) is None
    assert store.triple("a", "r", "zzz") == "A is a city."
    assert store.triple("x", "r", "y") is None
    assert compose_entities("same", "same") == "same" and compose_entities(None, None) is None


def test_torn_last_line_is_cut_off(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    with StoreWriter(path, dataset="d") as w:
        w.append([rec("a"), rec("b")])
    good = path.read_bytes()
    path.write_bytes(
        good + b'{"kind": "entity", "key": "c", "sta'
    )  # a kill in the middle of a write
    contents = read_store(path)
    assert contents.torn and set(contents.records) == {"entity\ta", "entity\tb"}
    with StoreWriter(path, dataset="d") as w:
        assert w.repaired and not w.done("entity\tc")
        w.append([rec("c")])
    assert path.read_bytes() == good + (json.dumps(rec("c"), separators=(",", ":")) + "\n").encode()


def test_damaged_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    with StoreWriter(path, dataset="d") as w:
        w.append([rec("a"), rec("b")])
    lines = path.read_text().splitlines()
    lines[1] = lines[1][:10]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=rf"{path}, line 2: line is not JSON"):
        read_store(path)
    path.write_text('{"kgdistill_contexts": 1, "dataset": "d"}\n{"kind": "event", "key": 1}\n')
    with pytest.raises(DataError, match="line 2: not a context record"):
        read_store(path)


def test_other_files_and_datasets_are_refused(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes, no newline")
    with pytest.raises(DataError, match="not a kgdistill context store"):
        StoreWriter(notes, dataset="d").__enter__()
    assert notes.read_text() == "my notes, no newline"  # untouched
    notes.write_text("a\tb\n")
    with pytest.raises(DataError, match="line 1: not a kgdistill context store"):
        read_store(notes)
    path = tmp_path / "s.jsonl"
    with StoreWriter(path, dataset="yago11k") as w:
        w.append([rec("a")])
    with pytest.raises(ConfigError, match="holds contexts of dataset 'yago11k', not 'wn18rr'"):
        StoreWriter(path, dataset="wn18rr").__enter__()


def test_one_writer_at_a_time(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    with (
        StoreWriter(path, dataset="d"),
        pytest.raises(KGDistillError, match="another process is writing"),
    ):
        StoreWriter(path, dataset="d").__enter__()
    with StoreWriter(path, dataset="d") as w:  # released on exit
        w.append([rec("a")])


def test_rewrite_is_atomic_and_keeps_the_header(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    with StoreWriter(path, dataset="d") as w:
        w.append([rec("a"), rec("b")])
        w.rewrite([rec("b", "new")])
        w.append([rec("c")])
    assert [r["text"] for r in read_store(path).records.values()] == ["new", "some text"]
    assert not list(tmp_path.glob(".*.tmp"))
