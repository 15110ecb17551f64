"""Readers of every benchmark format, on the committed fixtures and on the full datasets, plus bad input."""

from __future__ import annotations

import datetime as dt
import gzip
import re
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from kgdistill.data import (
    DATASETS,
    build_kg,
    read_hyte,
    read_openke,
    read_point_ids,
    read_raw,
    read_static_names,
    read_table,
)
from kgdistill.data.datasets import BUNDLED, detect_reader
from kgdistill.data.raw import RawKG
from kgdistill.data.readers import SPLITS
from kgdistill.data.time import UNKNOWN
from kgdistill.errors import DataError

FIXTURES = Path(__file__).parents[1] / "fixtures"
Row = tuple[str, ...]

# -- independent plain-Python readers (the reference the real readers are compared with) ---------------------


def _lines(path: Path) -> list[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:  # type: ignore[operator]
        return [ln.rstrip("\n") for ln in fh if ln.strip()]


def _file(folder: Path, name: str) -> Path:
    return folder / name if (folder / name).exists() else folder / (name + ".gz")


def _vocab(path: Path, *, skip_first: bool = False, sep: str | None = "\t") -> dict[str, str]:
    """id -> name."""
    lines = _lines(path)[1:] if skip_first else _lines(path)
    return {ln.split(sep)[1]: ln.split(sep)[0] for ln in lines}


def _year(date: str) -> int:
    """Year of a HyTE date, the simple way: anything with a '#' in the year is unknown."""
    neg = date.startswith("-")
    y = date[1:].split("-")[0] if neg else date.split("-")[0]
    if "#" in y:
        return UNKNOWN
    return -int(y) if neg else int(y)


def _hyte_rows(folder: Path, split: str) -> list[tuple[Row, int, int]]:
    """(labels, start, end) per line, with start/end swapped when the start is later."""
    ents, rels = _vocab(_file(folder, "entity2id.txt")), _vocab(_file(folder, "relation2id.txt"))
    out = []
    for ln in _lines(_file(folder, f"{split}.txt")):
        h, r, t, s, e = ln.split("\t")
        ys, ye = _year(s), _year(e)
        if UNKNOWN not in (ys, ye) and ys > ye:
            ys, ye = ye, ys
        out.append(((ents[h], rels[r], ents[t]), ys, ye))
    return out


def _labels(raw: RawKG, split: str) -> list[Row]:
    E, R = raw.entity_labels, raw.relation_labels
    return [(E[h], R[r], E[t]) for h, r, t in raw.splits[split].triples.tolist()]


def _check_hyte(raw: RawKG, folder: Path) -> None:
    assert raw.kind == "interval"
    for split in SPLITS:
        ref = _hyte_rows(folder, split)
        sp = raw.splits[split]
        assert _labels(raw, split) == [r for r, _, _ in ref]
        assert sp.start is not None and sp.end is not None
        assert sp.start.tolist() == [s for _, s, _ in ref]
        assert sp.end.tolist() == [e for _, _, e in ref]
        assert sp.lines.tolist() == list(range(1, len(ref) + 1))
        assert Path(sp.path).name.startswith(f"{split}.txt")


def _check_point(raw: RawKG, folder: Path, divisor: int = 1) -> None:
    assert raw.kind == "point"
    ents, rels = _vocab(folder / "entity2id.txt"), _vocab(folder / "relation2id.txt")
    assert raw.entity_labels == [ents[str(i)] for i in range(len(ents))]
    for split in SPLITS:
        rows = [ln.split("\t") for ln in _lines(folder / f"{split}.txt")]
        assert _labels(raw, split) == [(ents[f[0]], rels[f[1]], ents[f[2]]) for f in rows]
        sp = raw.splits[split]
        assert sp.start is not None and sp.end is not None
        assert sp.start.tolist() == [int(f[3]) // divisor for f in rows]
        assert np.array_equal(sp.start, sp.end)


def _check_names(raw: RawKG, folder: Path) -> None:
    assert raw.kind == "none"
    rows = {s: [tuple(ln.split("\t")) for ln in _lines(folder / f"{s}.txt")] for s in SPLITS}
    ents = {x for rs in rows.values() for r in rs for x in (r[0], r[2])}
    assert raw.entity_labels == sorted(ents)
    assert raw.relation_labels == sorted({r[1] for rs in rows.values() for r in rs})
    for s in SPLITS:
        assert _labels(raw, s) == rows[s]
        assert raw.splits[s].start is None


def _check_openke(raw: RawKG, folder: Path) -> None:
    assert raw.kind == "none"
    ents = _vocab(folder / "entity2id.txt", skip_first=True, sep=None)
    rels = _vocab(folder / "relation2id.txt", skip_first=True, sep=None)
    assert raw.entity_labels == [ents[str(i)] for i in range(len(ents))]
    assert raw.relation_labels == [rels[str(i)] for i in range(len(rels))]
    for s in SPLITS:
        lines = _lines(folder / f"{s}2id.txt")
        assert int(lines[0]) == len(raw.splits[s]) == len(lines) - 1
        ref = [(ents[h], rels[r], ents[t]) for h, t, r in (ln.split() for ln in lines[1:])]
        assert _labels(raw, s) == ref
        assert raw.splits[s].lines.tolist() == list(range(2, len(lines) + 1))


# -- committed fixtures ---------------------------------------------------------------------------------------


def test_read_hyte_fixture() -> None:
    folder = FIXTURES / "wikidata12k-mini"
    raw = read_hyte(folder)
    _check_hyte(raw, folder)
    assert raw.name == "wikidata12k-mini"
    assert len(raw.entity_labels) == 520 and len(raw.relation_labels) == 24
    assert [len(raw.splits[s]) for s in SPLITS] == [964, 135, 144]
    tr = raw.splits["train"]
    assert tr.start is not None and tr.end is not None
    # the fixture keeps rows with an unknown start: line 1 is "####-##-## 2015-##-##"
    assert (tr.start[0], tr.end[0]) == (UNKNOWN, 2015)
    assert (tr.start == UNKNOWN).sum() >= 15
    assert raw.quirks.counts == Counter({"start_after_end_swapped": 1})
    assert raw.quirks.examples["start_after_end_swapped"] == ["train.txt:486"]


def test_read_point_ids_fixture() -> None:
    folder = FIXTURES / "icews14-mini"
    raw = read_point_ids(folder, origin="2014-01-01")
    _check_point(raw, folder)
    assert raw.origin == "2014-01-01" and not raw.quirks.counts
    assert [len(raw.splits[s]) for s in SPLITS] == [2000, 200, 200]
    # first train line: 52 1 64 132
    assert raw.splits["train"].triples[0].tolist() == [52, 1, 64]
    assert raw.splits["train"].start[0] == 132  # type: ignore[index]


def test_read_point_ids_divisor_fixture(tmp_path: Path) -> None:
    """ICEWS14_forecasting layout: a 5th column (-1) and hours in steps of 24."""
    src = FIXTURES / "icews14-mini"
    for f in ("entity2id.txt", "relation2id.txt"):
        shutil.copy(src / f, tmp_path / f)
    for s in SPLITS:
        rows = [ln.split("\t") for ln in _lines(src / f"{s}.txt")]
        text = "".join(f"{h}\t{r}\t{t}\t{int(d) * 24}\t-1\n" for h, r, t, d in rows)
        (tmp_path / f"{s}.txt").write_text(text, encoding="utf-8")
    hours = read_point_ids(tmp_path, divisor=24)
    days = read_point_ids(src)
    for s in SPLITS:
        assert np.array_equal(hours.splits[s].triples, days.splits[s].triples)
        assert np.array_equal(hours.splits[s].start, days.splits[s].start)  # type: ignore[arg-type]
    _edit_line(tmp_path / "valid.txt", 6, "1\t2\t3\t25\t-1")
    with pytest.raises(DataError, match=r"valid\.txt, line 6: impossible time 25 .*multiple of 24"):
        read_point_ids(tmp_path, divisor=24)


def test_read_static_names_fixtures() -> None:
    for name in ("fb15k237-mini", "wn18rr-mini"):
        raw = read_static_names(FIXTURES / name)
        _check_names(raw, FIXTURES / name)
    wn = read_static_names(FIXTURES / "wn18rr-mini")
    assert all(len(e) == 8 and e.isdigit() for e in wn.entity_labels)
    assert any(e.startswith("00") for e in wn.entity_labels)  # leading zeros kept


def test_read_openke_fixture() -> None:
    folder = FIXTURES / "fb15k237n-mini"
    raw = read_openke(folder)
    _check_openke(raw, folder)
    assert len(raw.entity_labels) == 400 and len(raw.relation_labels) == 93
    # first train line "242 49 84" is h t r: relation 84, tail 49
    assert raw.splits["train"].triples[0].tolist() == [242, 84, 49]


def test_gzipped_files_read_the_same(tmp_path: Path) -> None:
    src = FIXTURES / "wikidata12k-mini"
    for f in src.iterdir():
        with open(f, "rb") as a, gzip.open(tmp_path / (f.name + ".gz"), "wb") as b:
            b.write(a.read())
    plain, zipped = read_hyte(src), read_hyte(tmp_path)
    assert zipped.entity_labels == plain.entity_labels
    for s in SPLITS:
        assert np.array_equal(zipped.splits[s].triples, plain.splits[s].triples)
        assert np.array_equal(zipped.splits[s].start, plain.splits[s].start)  # type: ignore[arg-type]
        assert zipped.splits[s].path.endswith(".gz")


def test_crlf_and_blank_lines_are_tolerated(tmp_path: Path) -> None:
    src = FIXTURES / "fb15k237-mini"
    for s in SPLITS:
        text = (src / f"{s}.txt").read_text(encoding="utf-8").replace("\n", "\r\n")
        (tmp_path / f"{s}.txt").write_text("\n" + text + "\n\n", encoding="utf-8", newline="")
    raw = read_static_names(tmp_path)
    ref = read_static_names(src)
    assert raw.entity_labels == ref.entity_labels
    assert raw.relation_labels == ref.relation_labels
    assert np.array_equal(raw.splits["train"].triples, ref.splits["train"].triples)
    assert raw.splits["train"].lines[0] == 2  # the blank first line is skipped but counted


# -- read_table -----------------------------------------------------------------------------------------------


def test_read_table_csv_with_header_and_column_mapping(tmp_path: Path) -> None:
    src = FIXTURES / "fb15k237-mini"
    files = {}
    for s in SPLITS:
        rows = [ln.split("\t") for ln in _lines(src / f"{s}.txt")]
        # columns: relation, tail, extra, head
        text = "relation,tail,note,head\n" + "".join(f"{r},{t},x,{h}\n" for h, r, t in rows)
        files[s] = tmp_path / f"{s}.csv"
        files[s].write_text(text, encoding="utf-8")
    raw = read_table(
        files, columns={"head": 3, "relation": 0, "tail": 1}, sep=",", header=True, name="mine"
    )
    ref = read_static_names(src)
    assert raw.kind == "none" and raw.name == "mine"
    assert raw.entity_labels == ref.entity_labels
    assert raw.relation_labels == ref.relation_labels
    for s in SPLITS:
        assert np.array_equal(raw.splits[s].triples, ref.splits[s].triples)
        assert raw.splits[s].lines[0] == 2  # header is line 1


def test_read_table_point_iso_dates(tmp_path: Path) -> None:
    src = FIXTURES / "icews14-mini"
    ref = read_point_ids(src, origin="2014-01-01")
    ents, rels = ref.entity_labels, ref.relation_labels
    files = {}
    for s in SPLITS:
        sp = ref.splits[s]
        text = "".join(
            f"{ents[h]}\t{rels[r]}\t{ents[t]}\t{dt.date(2014, 1, 1) + dt.timedelta(days=int(d))}\n"
            for (h, r, t), d in zip(sp.triples.tolist(), sp.start.tolist(), strict=True)  # type: ignore[union-attr]
        )
        files[s] = tmp_path / f"{s}.tsv"
        files[s].write_text(text, encoding="utf-8")
    raw = read_table(files, columns={"head": 0, "relation": 1, "tail": 2, "time": 3})
    assert raw.kind == "point"
    first_day = min(int(ref.splits[s].start.min()) for s in SPLITS)  # type: ignore[union-attr]
    assert raw.origin == (dt.date(2014, 1, 1) + dt.timedelta(days=first_day)).isoformat()
    for s in SPLITS:
        assert _labels(raw, s) == _labels(ref, s)
        assert (raw.splits[s].start + first_day).tolist() == ref.splits[s].start.tolist()  # type: ignore[operator,union-attr]
        assert np.array_equal(raw.splits[s].start, raw.splits[s].end)  # type: ignore[arg-type]
    # the same time labels once built
    kg, kg_ref = build_kg(raw), build_kg(ref)
    assert kg.time.labels == kg_ref.time.labels
    tl = [kg.time.labels[i] for i in kg.splits["test"][:, 3].tolist()]
    tl_ref = [kg_ref.time.labels[i] for i in kg_ref.splits["test"][:, 3].tolist()]
    assert tl == tl_ref


def test_read_table_point_integer_times(tmp_path: Path) -> None:
    path = tmp_path / "train.tsv"
    path.write_text("a\tr\tb\t5\nb\tr\tc\t12\n", encoding="utf-8")
    raw = read_table({"train": path}, columns={"head": 0, "relation": 1, "tail": 2, "time": 3})
    assert raw.kind == "point" and raw.origin is None
    assert raw.splits["train"].start.tolist() == [5, 12]  # type: ignore[union-attr]
    assert list(raw.splits) == ["train"]


def test_read_table_interval(tmp_path: Path) -> None:
    src = FIXTURES / "wikidata12k-mini"
    ents, rels = _vocab(src / "entity2id.txt"), _vocab(src / "relation2id.txt")
    files = {}
    for s in SPLITS:
        rows = [ln.split("\t") for ln in _lines(src / f"{s}.txt")]
        text = "start,end,head,relation,tail\n" + "".join(
            f"{a},{b},{ents[h]},{rels[r]},{ents[t]}\n" for h, r, t, a, b in rows
        )
        files[s] = tmp_path / f"{s}.csv"
        files[s].write_text(text, encoding="utf-8")
    cols = {"head": 2, "relation": 3, "tail": 4, "start": 0, "end": 1}
    raw = read_table(files, columns=cols, sep=",", header=True)
    ref = read_hyte(src)
    assert raw.kind == "interval"
    assert raw.quirks.counts == ref.quirks.counts
    assert raw.quirks.examples["start_after_end_swapped"] == ["train.csv:487"]
    for s in SPLITS:
        assert _labels(raw, s) == _labels(ref, s)
        assert raw.splits[s].start.tolist() == ref.splits[s].start.tolist()  # type: ignore[union-attr]
        assert raw.splits[s].end.tolist() == ref.splits[s].end.tolist()  # type: ignore[union-attr]


def test_read_table_utf8_bom_is_not_part_of_the_first_name(tmp_path: Path) -> None:
    """Spreadsheets export "CSV UTF-8" with a byte-order mark; it must not become part of the first field."""
    path = tmp_path / "train.csv"
    path.write_bytes("a,r,b\nb,r,a\n".encode("utf-8-sig"))
    raw = read_table({"train": path}, columns={"head": 0, "relation": 1, "tail": 2}, sep=",")
    assert raw.entity_labels == ["a", "b"], (
        f"BUG: the UTF-8 BOM is read as part of the first head name: entities {raw.entity_labels!r} "
        "(open_text should use encoding='utf-8-sig')"
    )


def test_read_table_bad_mappings(tmp_path: Path) -> None:
    path = tmp_path / "train.tsv"
    path.write_text("a\tr\tb\t1990\n", encoding="utf-8")
    with pytest.raises(DataError, match="column mapping lacks 'tail'"):
        read_table({"train": path}, columns={"head": 0, "relation": 1})
    with pytest.raises(DataError, match="needs at least a 'train' file"):
        read_table({"valid": path}, columns={"head": 0, "relation": 1, "tail": 2})
    with pytest.raises(DataError, match="needs both 'start' and 'end'"):
        read_table({"train": path}, columns={"head": 0, "relation": 1, "tail": 2, "start": 3})


# -- bad input: DataError naming the file (and the line) -------------------------------------------------


def _copy(name: str, dst: Path) -> Path:
    shutil.copytree(FIXTURES / name, dst / name)
    return dst / name


def _edit_line(path: Path, line: int, text: str) -> None:
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[line - 1] = text + "\n"
    path.write_text("".join(lines), encoding="utf-8")


def test_missing_file(tmp_path: Path) -> None:
    folder = _copy("wikidata12k-mini", tmp_path)
    (folder / "test.txt").unlink()
    with pytest.raises(DataError, match=r"missing file 'test\.txt' in " + re.escape(str(folder))):
        read_hyte(folder)
    (folder / "entity2id.txt").unlink()
    with pytest.raises(DataError, match=r"missing file 'entity2id\.txt'"):
        read_hyte(folder)
    with pytest.raises(DataError, match=r"missing file 'train\.txt'"):
        read_static_names(tmp_path)
    with pytest.raises(DataError, match="^" + re.escape(f"{tmp_path / 'nope.tsv'}: missing file")):
        read_table({"train": tmp_path / "nope.tsv"}, columns={"head": 0, "relation": 1, "tail": 2})


def test_wrong_column_count(tmp_path: Path) -> None:
    folder = _copy("wikidata12k-mini", tmp_path)
    _edit_line(folder / "train.txt", 5, "1\t2\t3\t1990-##-##")
    with pytest.raises(DataError, match=r"train\.txt, line 5: expected 5 columns, found 4"):
        read_hyte(folder)
    folder = _copy("fb15k237-mini", tmp_path)
    _edit_line(folder / "valid.txt", 3, "/m/a\t/r\t/m/b\t/m/c")
    with pytest.raises(DataError, match=r"valid\.txt, line 3: expected 3 columns, found 4"):
        read_static_names(folder)
    folder = _copy("fb15k237n-mini", tmp_path)
    _edit_line(folder / "test2id.txt", 10, "1 2")
    with pytest.raises(DataError, match=r"test2id\.txt, line 10: expected 3 columns, found 2"):
        read_openke(folder)
    path = tmp_path / "t.csv"
    path.write_text("a,r,b\na,r\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"t\.csv, line 2: expected at least 3 columns, found 2"):
        read_table({"train": path}, columns={"head": 0, "relation": 1, "tail": 2}, sep=",")


def test_id_outside_vocabulary(tmp_path: Path) -> None:
    folder = _copy("wikidata12k-mini", tmp_path)
    _edit_line(folder / "valid.txt", 4, "1\t2\t520\t1990-##-##\t####-##-##")
    with pytest.raises(
        DataError, match=r"valid\.txt, line 4: entity id 520 is outside the vocabulary \(0\.\.519\)"
    ):
        read_hyte(folder)
    _edit_line(folder / "valid.txt", 4, "1\t24\t5\t1990-##-##\t####-##-##")
    with pytest.raises(DataError, match=r"valid\.txt, line 4: relation id 24 is outside"):
        read_hyte(folder)
    _edit_line(folder / "valid.txt", 4, "-1\t2\t5\t1990-##-##\t####-##-##")
    with pytest.raises(DataError, match=r"valid\.txt, line 4: entity id -1 is outside"):
        read_hyte(folder)
    _edit_line(folder / "valid.txt", 4, "x\t2\t5\t1990-##-##\t####-##-##")
    with pytest.raises(DataError, match=r"valid\.txt, line 4: entity id 'x' is not an integer"):
        read_hyte(folder)
    folder = _copy("icews14-mini", tmp_path)
    _edit_line(folder / "test.txt", 7, "1\t230\t2\t5")
    with pytest.raises(DataError, match=r"test\.txt, line 7: relation id 230 is outside"):
        read_point_ids(folder)
    folder = _copy("fb15k237n-mini", tmp_path)
    # h t r order: the third column is the relation
    _edit_line(folder / "train2id.txt", 2, "1 2 93")
    with pytest.raises(DataError, match=r"train2id\.txt, line 2: relation id 93 is outside"):
        read_openke(folder)


def test_unparsable_date(tmp_path: Path) -> None:
    folder = _copy("wikidata12k-mini", tmp_path)
    _edit_line(folder / "test.txt", 9, "1\t2\t3\tnineteen-##-##\t####-##-##")
    with pytest.raises(DataError, match=r"test\.txt, line 9: cannot parse year"):
        read_hyte(folder)
    folder = _copy("icews14-mini", tmp_path)
    _edit_line(folder / "train.txt", 11, "1\t2\t3\tmonday")
    with pytest.raises(DataError, match=r"train\.txt, line 11: time 'monday' is not an integer"):
        read_point_ids(folder)
    _edit_line(folder / "train.txt", 11, "1\t2\t3\t-4")
    with pytest.raises(DataError, match=r"train\.txt, line 11: impossible time -4"):
        read_point_ids(folder)
    path = tmp_path / "p.tsv"
    path.write_text("a\tr\tb\t2014-01-02\nb\tr\tc\t2014-13-45\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"p\.tsv, line 2: cannot parse time '2014-13-45'"):
        read_table({"train": path}, columns={"head": 0, "relation": 1, "tail": 2, "time": 3})
    path.write_text("a\tr\tb\t1990\t19x9\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"p\.tsv, line 1: cannot parse year"):
        read_table(
            {"train": path}, columns={"head": 0, "relation": 1, "tail": 2, "start": 3, "end": 4}
        )


def test_empty_split(tmp_path: Path) -> None:
    folder = _copy("wikidata12k-mini", tmp_path)
    (folder / "valid.txt").write_text("\n", encoding="utf-8")
    with pytest.raises(DataError, match="^" + re.escape(f"{folder / 'valid.txt'}: split is empty")):
        read_hyte(folder)
    folder = _copy("fb15k237-mini", tmp_path)
    (folder / "test.txt").write_text("", encoding="utf-8")
    with pytest.raises(DataError, match=r"test\.txt: split is empty"):
        read_static_names(folder)
    path = tmp_path / "e.csv"
    path.write_text("head,relation,tail\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"e\.csv: split is empty"):
        read_table(
            {"train": path}, columns={"head": 0, "relation": 1, "tail": 2}, sep=",", header=True
        )


def test_openke_count_line_mismatch(tmp_path: Path) -> None:
    folder = _copy("fb15k237n-mini", tmp_path)
    _edit_line(folder / "valid2id.txt", 1, "81")
    with pytest.raises(
        DataError, match=r"valid2id\.txt, line 1: count line says '81' but the file holds 80"
    ):
        read_openke(folder)
    _edit_line(folder / "valid2id.txt", 1, "80")
    _edit_line(folder / "entity2id.txt", 1, "14541")
    with pytest.raises(DataError, match=r"entity2id\.txt, line 1: count line says '14541'.* 400"):
        read_openke(folder)


def test_bad_vocabulary_files(tmp_path: Path) -> None:
    folder = _copy("icews14-mini", tmp_path)
    _edit_line(folder / "entity2id.txt", 3, "Someone\t1")
    with pytest.raises(DataError, match=r"entity2id\.txt, line 3: id 1 is given twice"):
        read_point_ids(folder)
    _edit_line(folder / "entity2id.txt", 3, "Someone\t99")
    with pytest.raises(
        DataError, match=r"entity2id\.txt: ids are not 0\.\.79 \(missing e\.g\. \[2\]\)"
    ):
        read_point_ids(folder)
    _edit_line(folder / "entity2id.txt", 3, "Someone\ttwo")
    with pytest.raises(DataError, match=r"entity2id\.txt, line 3: id 'two' is not an integer"):
        read_point_ids(folder)
    _edit_line(folder / "entity2id.txt", 3, "Someone\t2")
    assert read_point_ids(folder).entity_labels[2] == "Someone"
    (folder / "relation2id.txt").write_bytes(b"\xff\xfe\x00bad\t0\n")
    with pytest.raises(DataError, match=r"relation2id\.txt, line 1: not UTF-8 text: byte 0xff"):
        read_point_ids(folder)


# -- registry and folder detection ---------------------------------------------------------------------------


def test_bundled_yago11k_without_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KGDISTILL_DATA", raising=False)
    raw = read_raw("yago11k")
    assert raw.name == "yago11k" and raw.source == str(BUNDLED / "yago11k")
    assert raw.kind == "interval"
    assert [len(raw.splits[s]) for s in SPLITS] == [16408, 2050, 2051]
    assert read_raw("YAGO11k").source == raw.source  # names are case-insensitive


def test_bundled_name_is_normalised(monkeypatch: pytest.MonkeyPatch) -> None:
    """The registry matches " YAGO11k " (names are normalised), so the bundled copy must be found too."""
    monkeypatch.delenv("KGDISTILL_DATA", raising=False)
    assert " YAGO11k " in DATASETS
    try:
        raw = read_raw(" YAGO11k ")
    except DataError as e:
        pytest.fail(
            f"BUG: read_raw(' YAGO11k ') looks for the bundled copy under the raw text: {e}"
        )
    assert raw.name == "yago11k"


def test_registered_name_root_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KGDISTILL_DATA", raising=False)
    shutil.copytree(FIXTURES / "wikidata12k-mini", tmp_path / "Wikidata12k")
    raw = read_raw("wikidata12k", root=tmp_path)
    assert raw.name == "wikidata12k" and raw.source == str(tmp_path / "Wikidata12k")
    assert len(raw.splits["train"]) == 964
    monkeypatch.setenv("KGDISTILL_DATA", str(tmp_path))
    assert read_raw("Wikidata12k").source == str(tmp_path / "Wikidata12k")
    # the bundled YAGO11k is the fallback when the root lacks it
    assert read_raw("yago11k", root=tmp_path).source == str(BUNDLED / "yago11k")


def test_registered_name_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KGDISTILL_DATA", raising=False)
    with pytest.raises(DataError, match=r"dataset 'icews14' not found: pass --data-root"):
        read_raw("icews14")
    with pytest.raises(
        DataError, match=re.escape(f"not found (looked in {tmp_path / 'FB15k-237'})")
    ):
        read_raw("fb15k237", root=tmp_path)


def test_unknown_name_lists_known_datasets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KGDISTILL_DATA", raising=False)
    with pytest.raises(DataError, match="'nosuch' is neither a known dataset") as info:
        read_raw("nosuch")
    for name in ("yago11k", "wikidata12k", "icews14", "fb15k237", "wn18rr", "fb15k237n"):
        assert name in str(info.value)
    assert set(DATASETS.names()) >= {"yago11k", "icews14_forecasting"}


@pytest.mark.parametrize(
    ("name", "reader", "kind"),
    [
        ("wikidata12k-mini", read_hyte, "interval"),
        ("icews14-mini", read_point_ids, "point"),
        ("fb15k237-mini", read_static_names, "none"),
        ("wn18rr-mini", read_static_names, "none"),
        ("fb15k237n-mini", read_openke, "none"),
    ],
)
def test_folder_auto_detection(name: str, reader: object, kind: str) -> None:
    folder = FIXTURES / name
    assert detect_reader(folder) is reader
    raw = read_raw(folder)
    assert raw.kind == kind and raw.name == name
    ref = reader(folder)  # type: ignore[operator]
    assert raw.entity_labels == ref.entity_labels
    for s in SPLITS:
        assert np.array_equal(raw.splits[s].triples, ref.splits[s].triples)
    assert read_raw(str(folder)).entity_labels == ref.entity_labels


def test_folder_auto_detection_unknown_format(tmp_path: Path) -> None:
    (tmp_path / "train.txt").write_text("a\tb\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"train\.txt, line 1: cannot tell the format .*2 columns"):
        read_raw(tmp_path)
    (tmp_path / "train.txt").write_text("\n\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"train\.txt: split is empty"):
        read_raw(tmp_path)


def test_load_kg_passes_protocol(tmp_path: Path) -> None:
    from kgdistill.data import load_kg

    kg = load_kg(FIXTURES / "wikidata12k-mini", granularity="year", interval_mode="split")
    assert kg.report["time_protocol"]["interval_mode"] == "split"
    assert kg.report["time_protocol"]["granularity"] == "year"
    assert all(lab.startswith(("since ", "until ", "unknown")) for lab in kg.time.labels)


# -- the full datasets -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def yago_full(data_root: Path) -> RawKG:
    return read_raw("yago11k", root=data_root)


@pytest.mark.slow
def test_full_yago11k(yago_full: RawKG, data_root: Path) -> None:
    raw = yago_full
    assert raw.source == str(data_root / "YAGO11k")
    assert [len(raw.splits[s]) for s in SPLITS] == [16408, 2050, 2051]
    assert len(raw.entity_labels) == 10623 and len(raw.relation_labels) == 10
    assert raw.entity_labels[4946] == "<Getafe_CF>" and raw.relation_labels[0] == "<wasBornIn>"
    q = raw.quirks.counts
    assert q["invalid_month_day"] == 2
    assert q["masked_year"] == 16
    assert q["start_after_end_swapped"] == 70
    assert q["bc_year"] == 10
    assert (
        q["short_year"] == 234
    )  # 235 short years, one of them (307-13047-09) counted as invalid_month_day
    assert set(raw.quirks.examples["invalid_month_day"]) == {"train.txt:7436", "train.txt:11454"}
    _check_hyte(raw, data_root / "YAGO11k")


@pytest.mark.slow
def test_full_yago11k_malformed_lines_kept(yago_full: RawKG) -> None:
    tr = yago_full.splits["train"]
    assert tr.start is not None and tr.end is not None
    i = int(np.flatnonzero(tr.lines == 7436)[0])  # 10023 9 6503 307-13047-09 978-##-##
    assert tr.triples[i].tolist() == [10023, 9, 6503] and (tr.start[i], tr.end[i]) == (307, 978)
    j = int(np.flatnonzero(tr.lines == 11454)[0])  # 5766 3 5428 1963-64-65 ####-##-##
    assert tr.triples[j].tolist() == [5766, 3, 5428] and (tr.start[j], tr.end[j]) == (1963, UNKNOWN)
    # "4129 1 4130 2014-##-## 2007-##-##" is swapped
    k = np.flatnonzero((tr.triples == [4129, 1, 4130]).all(axis=1))
    assert len(k) == 1 and (tr.start[k[0]], tr.end[k[0]]) == (2007, 2014)
    # only ends are "####" in YAGO11k (7395); the 16 masked years are 13 starts and 3 ends
    assert int((tr.start == UNKNOWN).sum()) == 13
    assert int((tr.end == UNKNOWN).sum()) == 7395 + 3
    assert yago_full.quirks.counts["no_known_year"] == 13


@pytest.mark.slow
def test_full_yago11k_equals_bundled(yago_full: RawKG) -> None:
    bundled = read_hyte(BUNDLED / "yago11k", name="yago11k")
    assert bundled.entity_labels == yago_full.entity_labels
    assert bundled.quirks.counts == yago_full.quirks.counts
    for s in SPLITS:
        a, b = bundled.splits[s], yago_full.splits[s]
        assert np.array_equal(a.triples, b.triples) and np.array_equal(a.lines, b.lines)
        assert np.array_equal(a.start, b.start) and np.array_equal(a.end, b.end)  # type: ignore[arg-type]


@pytest.mark.slow
def test_full_wikidata12k(data_root: Path) -> None:
    raw = read_raw("wikidata12k", root=data_root)
    _check_hyte(raw, data_root / "Wikidata12k")
    assert [len(raw.splits[s]) for s in SPLITS] == [32497, 4062, 4062]
    assert len(raw.entity_labels) == 12554 and len(raw.relation_labels) == 24
    tr = raw.splits["train"]
    # repeated (h, r, t) with different intervals are all kept
    assert len({tuple(x) for x in tr.triples.tolist()}) == 27774
    assert [int((raw.splits[s].start == UNKNOWN).sum()) for s in SPLITS] == [1273, 76, 56]
    assert [int((raw.splits[s].end == UNKNOWN).sum()) for s in SPLITS] == [4089, 322, 324]
    assert raw.quirks.counts["start_after_end_swapped"] == 10
    assert raw.quirks.counts["short_year"] == 89
    assert raw.quirks.counts["no_known_year"] == 0
    # first line: 3962 14 3927 1926-##-## 1929-##-##
    assert tr.triples[0].tolist() == [3962, 14, 3927]
    assert (tr.start[0], tr.end[0]) == (1926, 1929)  # type: ignore[index]


@pytest.mark.slow
def test_full_icews14(data_root: Path) -> None:
    raw = read_raw("icews14", root=data_root)
    _check_point(raw, data_root / "ICEWS14")
    assert [len(raw.splits[s]) for s in SPLITS] == [72826, 8941, 8963]
    assert len(raw.entity_labels) == 7128 and len(raw.relation_labels) == 230
    assert raw.entity_labels[0] == "Cyprian Awiti"
    kg = build_kg(raw)
    assert kg.num_times == 365
    assert kg.time.labels[0] == "2014-01-01" and kg.time.labels[-1] == "2014-12-31"
    assert kg.time.anchors == tuple(range(365))
    # test line 2: 2679 35 5745 307 -> 2014-01-01 + 307 days
    assert kg.splits["test"][1].tolist()[:3] == [2679, 35, 5745]
    assert kg.time.labels[int(kg.splits["test"][1, 3])] == "2014-11-04"


@pytest.mark.slow
def test_full_icews14_forecasting(data_root: Path) -> None:
    raw = read_raw("icews14_forecasting", root=data_root)
    _check_point(raw, data_root / "ICEWS14_forecasting", divisor=24)
    assert [len(raw.splits[s]) for s in SPLITS] == [63685, 13823, 13222]
    days = {s: raw.splits[s].start for s in SPLITS}
    assert (int(days["train"].min()), int(days["train"].max())) == (0, 6264 // 24)  # type: ignore[union-attr]
    assert (int(days["valid"].min()), int(days["valid"].max())) == (6288 // 24, 7512 // 24)  # type: ignore[union-attr]
    assert (int(days["test"].min()), int(days["test"].max())) == (7536 // 24, 8736 // 24)  # type: ignore[union-attr]
    kg = build_kg(raw)
    assert kg.num_times == 365 and kg.time.labels[-1] == "2014-12-31"
    # forecasting: no test day is a train day
    assert kg.report["unseen_time_facts"]["test"] == 13222


@pytest.fixture(scope="module")
def fb15k237(data_root: Path) -> RawKG:
    return read_raw("fb15k237", root=data_root)


@pytest.mark.slow
def test_full_fb15k237(fb15k237: RawKG, data_root: Path) -> None:
    raw = fb15k237
    assert raw.kind == "none" and raw.source == str(data_root / "FB15k-237")
    assert len(raw.entity_labels) == 14541 and len(raw.relation_labels) == 237
    assert [len(raw.splits[s]) for s in SPLITS] == [272115, 17535, 20466]
    assert raw.entity_labels == sorted(raw.entity_labels)
    # first line: /m/027rn /location/country/form_of_government /m/06cx9
    h, r, t = raw.splits["train"].triples[0].tolist()
    assert (raw.entity_labels[h], raw.relation_labels[r], raw.entity_labels[t]) == (
        "/m/027rn",
        "/location/country/form_of_government",
        "/m/06cx9",
    )
    kg_bert = set(_lines(data_root / "FB15k-237" / "kg-bert" / "entities.txt"))
    assert set(raw.entity_labels) == kg_bert


@pytest.mark.slow
def test_full_wn18rr(data_root: Path) -> None:
    raw = read_raw("wn18rr", root=data_root)
    _check_names(raw, data_root / "WN18RR")
    assert len(raw.entity_labels) == 40943 and len(raw.relation_labels) == 11
    assert "00260881" in raw.entity_labels and "260881" not in raw.entity_labels
    assert _labels(raw, "train")[0] == ("00260881", "_hypernym", "00260622")


@pytest.mark.slow
def test_full_fb15k237n(data_root: Path) -> None:
    folder = data_root / "FB15k-237N" / "KG-S2S"
    raw = read_raw(folder)
    assert raw.kind == "none"
    _check_openke(raw, folder)
    assert len(raw.entity_labels) == 14541 and len(raw.relation_labels) == 93
    assert [len(raw.splits[s]) for s in SPLITS] == [87282, 7041, 8226]
    # train2id.txt line 2 is "13140 13889 12" (h t r)
    assert raw.splits["train"].triples[0].tolist() == [13140, 12, 13889]
    # the kg-bert copy holds the same triples in the same order, by name
    kg_bert = data_root / "FB15k-237N" / "kg-bert"
    for s, f in (("valid", "dev.tsv"), ("test", "test.tsv")):
        assert _labels(raw, s) == [tuple(ln.split("\t")) for ln in _lines(kg_bert / f)]
    assert data_root / DATASETS.get("fb15k237n").folder == folder


# -- input defects: quoted CSV fields, empty fields, implausible times, blank / repeated rows, bad bytes ------

# Real Wikidata12k train rows (train.txt lines 357, 8379, 778, 825), their entities named by the labels of
# text/LiterallyWikidata/entity_labels_en.txt (Q-id where it has none), relations by their P-ids.
WIKIDATA_CSV = (
    "head,relation,tail,start,end\n"
    '"Cona, Veneto",P131,Metropolitan City of Venice,2015-##-##,####-##-##\n'
    '"Nate ""Tiny"" Archibald",P166,Q31391,1981-##-##,1981-##-##\n'
    '"20,000 Leagues Under the Sea",P1411,Q22917729,1955-##-##,1955-##-##\n'
    '"Londa, Tuscany",P131,Metropolitan City of Florence,2015-##-##,####-##-##\n'
)
WIKIDATA_COLUMNS = {"head": 0, "relation": 1, "tail": 2, "start": 3, "end": 4}
# FB15k-237 train.txt: "/m/0rh6k /location/location/contains /m/0pspl", named by kg-bert/entity2text.txt
WASHINGTON = '"Washington, D.C.",/location/location/contains,Georgetown University'


def test_read_table_csv_quoted_fields(tmp_path: Path) -> None:
    """A quoted field keeps its separator and its doubled quotes; it is one entity, not two fields."""
    path = tmp_path / "train.csv"
    path.write_text(WIKIDATA_CSV, encoding="utf-8")
    raw = read_table({"train": path}, columns=WIKIDATA_COLUMNS, sep=",", header=True)
    assert _labels(raw, "train") == [
        ("Cona, Veneto", "P131", "Metropolitan City of Venice"),
        ('Nate "Tiny" Archibald', "P166", "Q31391"),
        ("20,000 Leagues Under the Sea", "P1411", "Q22917729"),
        ("Londa, Tuscany", "P131", "Metropolitan City of Florence"),
    ]
    sp = raw.splits["train"]
    assert sp.lines.tolist() == [2, 3, 4, 5]
    assert sp.start.tolist() == [2015, 1981, 1955, 2015]  # type: ignore[union-attr]
    assert sp.end.tolist() == [UNKNOWN, 1981, 1955, UNKNOWN]  # type: ignore[union-attr]
    assert not raw.quirks.counts
    # the same rows tab-separated: quotes in the middle of a field are kept, quoted fields are unquoted
    tsv = tmp_path / "train.tsv"
    tsv.write_text(
        'Nate "Tiny" Archibald\tP166\tQ31391\n"Cona, Veneto"\tP131\t"Metropolitan City of Venice"\n',
        encoding="utf-8",
    )
    raw = read_table({"train": tsv}, columns={"head": 0, "relation": 1, "tail": 2})
    assert raw.entity_labels == [
        "Cona, Veneto",
        "Metropolitan City of Venice",
        'Nate "Tiny" Archibald',
        "Q31391",
    ]


def test_read_table_csv_line_numbers_are_physical_lines(tmp_path: Path) -> None:
    """A quoted line break makes one record of two lines; later lines keep their numbers in errors."""
    path = tmp_path / "train.csv"
    broken = WASHINGTON.replace(", D.C.", ",\nD.C.")  # line 2-3: one record
    path.write_text(f"{WASHINGTON}\n{broken}\n\n{WASHINGTON}\n", encoding="utf-8")
    raw = read_table({"train": path}, columns={"head": 0, "relation": 1, "tail": 2}, sep=",")
    assert raw.splits["train"].lines.tolist() == [1, 2, 5]
    assert raw.entity_labels == ["Georgetown University", "Washington,\nD.C.", "Washington, D.C."]
    path.write_text(f"{broken}\n{WASHINGTON}\n{WASHINGTON.rsplit(',', 1)[0]}\n", encoding="utf-8")
    with pytest.raises(
        DataError, match=r"train\.csv, line 4: expected at least 3 columns, found 2"
    ):
        read_table({"train": path}, columns={"head": 0, "relation": 1, "tail": 2}, sep=",")


def test_read_table_csv_malformed_quoting(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    stray = WASHINGTON.replace('C."', 'C." x')  # a stray character after a closing quote
    path.write_text(f"{WASHINGTON}\n{stray}\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"train\.csv, line 2: malformed CSV record"):
        read_table({"train": path}, columns={"head": 0, "relation": 1, "tail": 2}, sep=",")
    # a quote that is never closed: the error names the line where the record starts
    unclosed = WASHINGTON.replace('C."', "C.")
    path.write_text(f"{WASHINGTON}\n{unclosed}\n{WASHINGTON}\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"train\.csv, line 2: malformed CSV record"):
        read_table({"train": path}, columns={"head": 0, "relation": 1, "tail": 2}, sep=",")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("\t/location/location/contains\t/m/04jpl", "empty head name in column 1"),
        ("/m/07ssc\t\t/m/04jpl", "empty relation name in column 2"),
        ("/m/07ssc\t/location/location/contains\t", "empty tail name in column 3"),
        ("/m/07ssc\t \t/m/04jpl", "empty relation name in column 2"),
    ],
)
def test_empty_name_in_static_file(tmp_path: Path, line: str, message: str) -> None:
    """Line 5 of fb15k237-mini's train is "/m/07ssc /location/location/contains /m/04jpl"."""
    folder = _copy("fb15k237-mini", tmp_path)
    _edit_line(folder / "train.txt", 5, line)
    with pytest.raises(DataError, match=r"train\.txt, line 5: " + re.escape(message)):
        read_static_names(folder)


def test_empty_name_in_table(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    lines = WIKIDATA_CSV.splitlines()
    lines[3] = ",P1411,Q22917729,1955-##-##,1955-##-##"  # the head of line 4 is gone
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"train\.csv, line 4: empty head name in column 1"):
        read_table({"train": path}, columns=WIKIDATA_COLUMNS, sep=",", header=True)
    lines[3] = '"20,000 Leagues Under the Sea",  ,Q22917729,1955-##-##,1955-##-##'
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"train\.csv, line 4: empty relation name in column 2"):
        read_table({"train": path}, columns=WIKIDATA_COLUMNS, sep=",", header=True)
    # the message names the file's column, wherever the mapping puts it
    lines[3] = '1955-##-##,1955-##-##,"20,000 Leagues Under the Sea",P1411,""'
    path.write_text("\n".join(lines[3:]) + "\n", encoding="utf-8")
    cols = {"head": 2, "relation": 3, "tail": 4, "start": 0, "end": 1}
    with pytest.raises(DataError, match=r"train\.csv, line 1: empty tail name in column 5"):
        read_table({"train": path}, columns=cols, sep=",")


def test_empty_ids_and_times(tmp_path: Path) -> None:
    """Empty fields of id files: a clear message naming the column, not "'' is not an integer"."""
    folder = _copy("wikidata12k-mini", tmp_path)
    _edit_line(folder / "train.txt", 3, "\t12\t10\t####-##-##\t1800-##-##")
    with pytest.raises(DataError, match=r"train\.txt, line 3: empty entity id in column 1"):
        read_hyte(folder)
    _edit_line(folder / "train.txt", 3, "108\t\t10\t####-##-##\t1800-##-##")
    with pytest.raises(DataError, match=r"train\.txt, line 3: empty relation id in column 2"):
        read_hyte(folder)
    _edit_line(folder / "train.txt", 3, "108\t12\t10\t\t1800-##-##")
    with pytest.raises(DataError, match=r"train\.txt, line 3: cannot parse an empty date"):
        read_hyte(folder)
    _edit_line(folder / "train.txt", 3, "108\t12\t10\t####-##-##\t1800-##-##")
    _edit_line(folder / "entity2id.txt", 2, "Q159\t")
    with pytest.raises(DataError, match=r"entity2id\.txt, line 2: empty id in column 2"):
        read_hyte(folder)
    _edit_line(folder / "entity2id.txt", 2, "\t1")
    with pytest.raises(DataError, match=r"entity2id\.txt, line 2: empty name in column 1"):
        read_hyte(folder)
    folder = _copy("icews14-mini", tmp_path)
    _edit_line(folder / "train.txt", 2, "55\t35\t63\t")
    with pytest.raises(DataError, match=r"train\.txt, line 2: time is empty"):
        read_point_ids(folder)


@pytest.mark.parametrize(
    "year", ["19990-01-01", "123456789012345678901-##-##", "1" * 5000 + "-##-##", "-20000-##-##"]
)
def test_implausible_year_in_hyte_file(tmp_path: Path, year: str) -> None:
    """Line 3 of wikidata12k-mini's train is "108 12 10 ####-##-## 1800-##-##"."""
    folder = _copy("wikidata12k-mini", tmp_path)
    _edit_line(folder / "train.txt", 3, f"108\t12\t10\t####-##-##\t{year}")
    with pytest.raises(DataError, match=r"train\.txt, line 3: implausible year") as info:
        read_hyte(folder)
    assert year[:30].lstrip("-").split("-")[0][:30] in str(info.value)
    assert len(str(info.value)) < 300  # a runaway field is cut short in the message


def test_implausible_year_in_table_interval(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    path.write_text(WIKIDATA_CSV.replace("1981-##-##,1981", "1981-##-##,19810"), encoding="utf-8")
    with pytest.raises(DataError, match=r"train\.csv, line 3: implausible year 19810"):
        read_table({"train": path}, columns=WIKIDATA_COLUMNS, sep=",", header=True)


@pytest.mark.parametrize(
    ("time", "message"),
    [
        ("20140-01-05", "implausible year 20140"),
        ("99999999999999999999", "time '99999999999999999999' is out of range"),
        ("-99999999999999999999", "time '-99999999999999999999' is out of range"),
        ("2014-01-059", "cannot parse time '2014-01-059'"),
    ],
)
def test_implausible_point_time_in_table(tmp_path: Path, time: str, message: str) -> None:
    """ICEWS14 test rows in name form (entity2id / relation2id of ICEWS14), the second one damaged."""
    path = tmp_path / "test.tsv"
    path.write_text(
        "Chuck Hagel\tMake statement\tPoland\t2014-01-05\n"
        f"Haider Al-Abadi\tMake statement\tPoland\t{time}\n",
        encoding="utf-8",
    )
    with pytest.raises(DataError, match=r"test\.tsv, line 2: " + re.escape(message)):
        read_table({"train": path}, columns={"head": 0, "relation": 1, "tail": 2, "time": 3})


def test_point_time_beyond_int64_in_id_file(tmp_path: Path) -> None:
    """It used to pass the reader and crash with an OverflowError when stored as int64."""
    folder = _copy("icews14-mini", tmp_path)
    _edit_line(folder / "valid.txt", 4, "52\t1\t64\t" + "9" * 25)
    with pytest.raises(DataError, match=r"valid\.txt, line 4: time '9+' is out of range"):
        read_point_ids(folder)
    _edit_line(folder / "valid.txt", 4, "52\t1\t64\t" + "1" * 5000)
    with pytest.raises(DataError, match=r"valid\.txt, line 4: time '1+\.\.\. \(5000 characters\)'"):
        read_point_ids(folder)


def _insert_lines(path: Path, at: int, texts: list[str]) -> None:
    """Insert ``texts`` as new lines before line ``at`` (1-based)."""
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[at - 1 : at - 1] = [t + "\n" for t in texts]
    path.write_text("".join(lines), encoding="utf-8")


def test_blank_lines_are_counted(tmp_path: Path) -> None:
    folder = _copy("wikidata12k-mini", tmp_path)
    _insert_lines(folder / "train.txt", 3, ["", "  \t "])
    (folder / "valid.txt").write_text(
        (folder / "valid.txt").read_text(encoding="utf-8") + "\n\n", encoding="utf-8"
    )
    raw = read_hyte(folder)
    n_valid = len(_lines(folder / "valid.txt"))
    assert raw.quirks.counts["blank_line"] == 4
    assert raw.quirks.examples["blank_line"] == [
        "train.txt:3",
        "train.txt:4",
        f"valid.txt:{n_valid + 1}",
    ]
    tr = raw.splits["train"]
    assert len(tr) == 964 and tr.lines[:4].tolist() == [1, 2, 5, 6]
    kg = build_kg(raw)
    assert kg.report["quirks"]["blank_line"]["count"] == 4
    assert kg.report["lines"]["train"] == 964


def test_duplicate_rows_are_counted_and_kept(tmp_path: Path) -> None:
    folder = _copy("fb15k237-mini", tmp_path)
    train = _lines(folder / "train.txt")
    _insert_lines(folder / "train.txt", len(train) + 1, [train[4], train[0], train[4]])
    _insert_lines(folder / "valid.txt", 1, [train[1]])  # in train too, but another split: no quirk
    raw = read_static_names(folder)
    n = len(train)
    assert raw.quirks.counts == Counter({"duplicate_row": 3})
    assert raw.quirks.examples["duplicate_row"] == [
        f"train.txt:{n + 1} (= line 5)",
        f"train.txt:{n + 2} (= line 1)",
        f"train.txt:{n + 3} (= line 5)",
    ]
    tr = raw.splits["train"]
    assert len(tr) == n + 3  # kept, as before
    assert tr.triples[n].tolist() == tr.triples[4].tolist()
    assert build_kg(raw).report["quirks"]["duplicate_row"]["count"] == 3
    # a row that differs in a time column is no duplicate (Wikidata12k repeats facts with other intervals)
    folder = _copy("wikidata12k-mini", tmp_path)
    _insert_lines(folder / "train.txt", 4, ["108\t12\t10\t####-##-##\t1801-##-##"])
    assert "duplicate_row" not in read_hyte(folder).quirks.counts
    _insert_lines(folder / "train.txt", 4, ["108\t12\t10\t####-##-##\t1800-##-##"])
    assert read_hyte(folder).quirks.examples["duplicate_row"] == ["train.txt:4 (= line 3)"]


def test_duplicate_and_blank_rows_in_table_and_openke(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    lines = WIKIDATA_CSV.splitlines()
    path.write_text("\n".join([*lines, "", lines[2]]) + "\n", encoding="utf-8")
    raw = read_table({"train": path}, columns=WIKIDATA_COLUMNS, sep=",", header=True)
    assert raw.quirks.to_dict() == {
        "blank_line": {"count": 1, "examples": ["train.csv:6"]},
        "duplicate_row": {"count": 1, "examples": ["train.csv:7 (= line 3)"]},
    }
    folder = _copy("fb15k237n-mini", tmp_path)
    rows = _lines(folder / "test2id.txt")
    (folder / "test2id.txt").write_text(
        f"{int(rows[0]) + 1}\n" + "\n".join([*rows[1:], rows[3]]) + "\n\n", encoding="utf-8"
    )
    q = read_openke(folder).quirks
    assert q.examples["duplicate_row"] == [f"test2id.txt:{len(rows) + 1} (= line 4)"]
    assert q.examples["blank_line"] == [f"test2id.txt:{len(rows) + 2}"]


def _latin1_line(path: Path, at: int) -> tuple[str, bytes]:
    """Re-encode line ``at`` of ``path`` as Latin-1 (a common export mistake); return the line and the file."""
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[at - 1] = lines[at - 1].replace("\n", "\r\n")
    data = b"".join(
        ln.encode("latin-1" if i == at else "utf-8") for i, ln in enumerate(lines, start=1)
    )
    return lines[at - 1], data


@pytest.mark.parametrize("gz", [False, True])
def test_non_utf8_bytes_name_the_line(tmp_path: Path, gz: bool) -> None:
    """Line 5 of the bundled YAGO11k entity2id is "<Fortuna_Düsseldorf> 5131 ..."; 'ü' in Latin-1 is 0xfc."""
    src = BUNDLED / "yago11k" / "entity2id.txt.gz"
    plain = tmp_path / "entity2id.txt"
    plain.write_bytes(gzip.decompress(src.read_bytes()))
    line, data = _latin1_line(plain, 5)
    assert line.startswith("<Fortuna_Düsseldorf>")
    target = tmp_path / ("entity2id.txt.gz" if gz else "entity2id.txt")
    plain.unlink()
    target.write_bytes(
        gzip.compress(data) if gz else b"\xef\xbb\xbf" + data
    )  # with a BOM: still line 5
    from kgdistill.data.raw import open_text

    with pytest.raises(DataError) as info:
        list(open_text(target))
    assert info.value.line == 5 and info.value.path == target
    assert str(info.value) == (
        f"{target}, line 5: not UTF-8 text: byte 0xfc at byte 11 of the line (re-save the file as UTF-8)"
    )
