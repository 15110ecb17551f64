"""Linked collections from disk: DBP15K and the generic layout, counts, namespaced labels, link checks that name
the file and line."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest

from kgdistill.errors import DataError
from kgdistill.multi import LinkedKGs, load_linked, read_dbp15k, read_linked

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "dbp15k-mini" / "zh_en"


def _wc(path: Path) -> int:
    """What ``wc -l`` says: the number of newline characters."""
    return path.read_bytes().count(b"\n")


def _rows(path: Path) -> list[list[str]]:
    return [ln.split("\t") for ln in path.read_text(encoding="utf-8").splitlines() if ln]


def _copy(tmp_path: Path) -> Path:
    """A writable copy of the fixture pair folder, still named ``zh_en``."""
    dst = tmp_path / "zh_en"
    shutil.copytree(FIXTURE, dst)
    for f in dst.iterdir():
        f.chmod(0o644)
    return dst


def _set_line(path: Path, line: int, text: str) -> None:
    """Replace 1-based ``line`` of ``path`` (or append it when ``line`` is one past the end)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    if line == len(lines) + 1:
        lines.append(text)
    else:
        lines[line - 1] = text
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _raises_at(exc: pytest.ExceptionInfo[DataError], path: Path, line: int) -> str:
    """The error names the file and the line (attributes and message)."""
    msg = str(exc.value)
    assert Path(str(exc.value.path)).name == path.name, msg
    assert exc.value.line == line, msg
    assert path.name in msg and f"line {line}:" in msg, msg
    return msg


@pytest.fixture(scope="module")
def mini() -> LinkedKGs:
    return read_dbp15k(FIXTURE)


# --------------------------------------------------------------------------------------------------------------
# DBP15K on the real fixture
# --------------------------------------------------------------------------------------------------------------


def test_fixture_counts_match_wc(mini: LinkedKGs) -> None:
    assert mini.name == "dbp15k_zh_en"
    assert list(mini.graphs) == ["zh", "en"]
    assert list(mini.links) == [("zh", "en")]
    for k, name in ((1, "zh"), (2, "en")):
        g = mini.graphs[name]
        assert g.name == name
        assert g.num_entities == _wc(FIXTURE / f"ent_ids_{k}")
        assert len(g.triples) == _wc(FIXTURE / f"triples_{k}")
        assert g.triples.shape == (len(g.triples), 3) and g.triples.dtype == np.int64
        assert Path(g.path) == FIXTURE / f"triples_{k}"
        np.testing.assert_array_equal(g.lines, np.arange(1, len(g.triples) + 1))
        rels = {r[1] for r in _rows(FIXTURE / f"triples_{k}")}
        assert len(g.relation_labels) == len(rels)
    assert len(mini.links["zh", "en"]) == _wc(FIXTURE / "ref_ent_ids") == 700
    assert "zh: 900 entities" in repr(mini) and "zh-en: 700" in repr(mini)


def test_fixture_ids_round_trip_to_the_files(mini: LinkedKGs) -> None:
    """Local ids map back to exactly the global ids of every file row (triples and links)."""
    gid = {}
    for k, name in ((1, "zh"), (2, "en")):
        ents = _rows(FIXTURE / f"ent_ids_{k}")
        g = mini.graphs[name]
        # entities keep file order; labels are the URIs namespaced by graph
        assert g.entity_labels == tuple(f"{name}:{uri}" for _, uri in ents)
        gid[name] = np.asarray([int(i) for i, _ in ents])
        rel_ids = np.asarray([int(lab.split("/")[-1]) for lab in g.relation_labels])
        back = np.column_stack(
            [gid[name][g.triples[:, 0]], rel_ids[g.triples[:, 1]], gid[name][g.triples[:, 2]]]
        )
        want = np.asarray(_rows(FIXTURE / f"triples_{k}"), dtype=np.int64)
        np.testing.assert_array_equal(back, want)
    pairs = mini.links["zh", "en"]
    back = np.column_stack([gid["zh"][pairs[:, 0]], gid["en"][pairs[:, 1]]])
    np.testing.assert_array_equal(back, np.asarray(_rows(FIXTURE / "ref_ent_ids"), dtype=np.int64))


def test_fixture_labels_are_namespaced(mini: LinkedKGs) -> None:
    zh, en = mini.graphs["zh"], mini.graphs["en"]
    assert all(lab.startswith("zh:http://zh.dbpedia.org/") for lab in zh.entity_labels)
    assert all(lab.startswith("en:http://dbpedia.org/") for lab in en.entity_labels)
    assert zh.entity_labels[1] == "zh:http://zh.dbpedia.org/resource/Linux"
    assert en.entity_labels[1] == "en:http://dbpedia.org/resource/Linux"
    # relations are labelled by their file id, in order of first occurrence
    first = _rows(FIXTURE / "triples_1")[0][1]
    assert zh.relation_labels[0] == f"zh:rel/{first}"
    assert all(lab.startswith("zh:rel/") for lab in zh.relation_labels)
    assert all(lab.startswith("en:rel/") for lab in en.relation_labels)
    assert len(set(zh.relation_labels)) == len(zh.relation_labels)


def test_aligned_ids(mini: LinkedKGs) -> None:
    pairs = mini.links["zh", "en"]
    np.testing.assert_array_equal(mini.aligned("zh"), np.unique(pairs[:, 0]))
    np.testing.assert_array_equal(mini.aligned("en"), np.unique(pairs[:, 1]))
    assert len(mini.aligned("zh")) == len(mini.aligned("en")) == 700  # one-to-one
    assert len(mini.aligned("nope")) == 0


def test_load_linked_dispatch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    by_path = load_linked(str(FIXTURE))
    assert by_path.name == "dbp15k_zh_en" and by_path.source == str(FIXTURE)
    # a registered name resolves under a data root (here: a root holding a copy of the fixture)
    shutil.copytree(FIXTURE, tmp_path / "root" / "DBP15K" / "zh_en")
    for name in ("dbp15k_zh_en", "DBP15K-zh-en", "dbp15k/zh_en"):
        got = load_linked(name, root=tmp_path / "root")
        assert got.name == "dbp15k_zh_en"
        assert got.source == str(tmp_path / "root" / "DBP15K" / "zh_en")
        assert len(got.links["zh", "en"]) == 700
    monkeypatch.setenv("KGDISTILL_DATA", str(tmp_path / "root"))
    assert len(load_linked("dbp15k_zh_en").graphs["en"].triples) == _wc(FIXTURE / "triples_2")
    monkeypatch.delenv("KGDISTILL_DATA")
    with pytest.raises(DataError, match="needs a data root"):
        load_linked("dbp15k_zh_en")
    with pytest.raises(DataError, match="not found"):
        load_linked("dbp15k_ja_en", root=tmp_path / "root")
    with pytest.raises(DataError, match="neither a known linked collection"):
        load_linked(tmp_path / "nowhere")


def test_pair_folder_names_and_gzip(tmp_path: Path, mini: LinkedKGs) -> None:
    """Graphs are named after the pair folder (``kg1`` / ``kg2`` when it has no ``_``); ``.gz`` files read the
    same."""
    plain = tmp_path / "pair"
    shutil.copytree(FIXTURE, plain)
    got = read_dbp15k(plain)
    assert got.name == "dbp15k_pair" and list(got.graphs) == ["kg1", "kg2"]
    assert got.graphs["kg1"].entity_labels[1] == "kg1:http://zh.dbpedia.org/resource/Linux"
    zipped = tmp_path / "zh_en"
    zipped.mkdir()
    for f in FIXTURE.iterdir():
        (zipped / f"{f.name}.gz").write_bytes(gzip.compress(f.read_bytes()))
    again = load_linked(zipped)
    for name, g in mini.graphs.items():
        np.testing.assert_array_equal(again.graphs[name].triples, g.triples)
        assert again.graphs[name].entity_labels == g.entity_labels
    np.testing.assert_array_equal(again.links["zh", "en"], mini.links["zh", "en"])


@pytest.mark.slow
def test_full_dbp15k_zh_en(data_root: Path) -> None:
    """The counts of the dataset's README (``wc -l``), read in about 2 s."""
    full = load_linked("dbp15k_zh_en", root=data_root)
    zh, en = full.graphs["zh"], full.graphs["en"]
    assert (zh.num_entities, en.num_entities) == (19388, 19572)
    assert (len(zh.triples), len(en.triples)) == (70414, 95142)
    assert (len(zh.relation_labels), len(en.relation_labels)) == (1701, 1323)
    assert len(full.links["zh", "en"]) == 15000
    assert len(full.aligned("zh")) == len(full.aligned("en")) == 15000
    assert all(lab.startswith("zh:http://zh.dbpedia.org/") for lab in zh.entity_labels)
    assert all(lab.startswith("en:http://dbpedia.org/") for lab in en.entity_labels)
    assert all(lab.startswith("zh:rel/") for lab in zh.relation_labels)
    assert all(lab.startswith("en:rel/") for lab in en.relation_labels)
    # no duplicate triples in the original (README), so the split keeps every one
    for g in (zh, en):
        assert len(np.unique(g.triples, axis=0)) == len(g.triples)


# --------------------------------------------------------------------------------------------------------------
# DBP15K: broken copies of the fixture
# --------------------------------------------------------------------------------------------------------------


def test_link_to_unknown_entity(tmp_path: Path) -> None:
    folder = _copy(tmp_path)
    ref = folder / "ref_ent_ids"
    en_id = _rows(ref)[9][1]
    _set_line(ref, 10, f"999999\t{en_id}")
    with pytest.raises(DataError) as exc:
        read_dbp15k(folder)
    msg = _raises_at(exc, ref, 10)
    assert "999999" in msg and "'zh'" in msg


def test_link_to_entity_of_the_wrong_graph(tmp_path: Path) -> None:
    """A KG1 id in the KG2 column is unknown to KG2 (the id spaces are disjoint)."""
    folder = _copy(tmp_path)
    ref = folder / "ref_ent_ids"
    rows = _rows(ref)
    _set_line(ref, 4, f"{rows[3][0]}\t{rows[4][0]}")
    with pytest.raises(DataError) as exc:
        read_dbp15k(folder)
    msg = _raises_at(exc, ref, 4)
    assert rows[4][0] in msg and "'en'" in msg


def test_duplicate_link(tmp_path: Path) -> None:
    folder = _copy(tmp_path)
    ref = folder / "ref_ent_ids"
    rows = _rows(ref)
    _set_line(ref, len(rows) + 1, "\t".join(rows[2]))
    with pytest.raises(DataError) as exc:
        read_dbp15k(folder)
    msg = _raises_at(exc, ref, len(rows) + 1)
    assert "duplicate link" in msg and "first on line 3" in msg


@pytest.mark.parametrize("side", ["zh", "en"])
def test_conflicting_link(tmp_path: Path, side: str) -> None:
    """One entity linked to two different entities of the other graph (either side)."""
    folder = _copy(tmp_path)
    ref = folder / "ref_ent_ids"
    rows = _rows(ref)
    # row 5's entity of `side` also linked to another entity: row 8's partner (zh side), or an unaligned zh
    # entity (en side, so that only the en entity has two partners)
    unaligned = sorted({r[0] for r in _rows(folder / "ent_ids_1")} - {r[0] for r in rows})[0]
    new = [rows[4][0], rows[7][1]] if side == "zh" else [unaligned, rows[4][1]]
    _set_line(ref, len(rows) + 1, "\t".join(new))
    with pytest.raises(DataError) as exc:
        read_dbp15k(folder)
    msg = _raises_at(exc, ref, len(rows) + 1)
    assert "conflicting links" in msg and f"'{side}'" in msg and "(line 5)" in msg


def test_triple_with_unknown_entity(tmp_path: Path) -> None:
    folder = _copy(tmp_path)
    tri = folder / "triples_2"
    h, r, _ = _rows(tri)[6]
    _set_line(tri, 7, f"{h}\t{r}\t999999")
    with pytest.raises(DataError) as exc:
        read_dbp15k(folder)
    msg = _raises_at(exc, tri, 7)
    assert "999999" in msg and "ent_ids_2" in msg


def test_triple_with_an_entity_of_the_other_graph(tmp_path: Path) -> None:
    folder = _copy(tmp_path)
    tri = folder / "triples_1"
    h, r, _ = _rows(tri)[1]
    en_id = _rows(folder / "ent_ids_2")[0][0]
    _set_line(tri, 2, f"{h}\t{r}\t{en_id}")
    with pytest.raises(DataError) as exc:
        read_dbp15k(folder)
    assert en_id in _raises_at(exc, tri, 2)


@pytest.mark.parametrize(
    ("file", "line", "text", "found"),
    [
        ("triples_1", 3, "23356\t498", 2),
        ("triples_2", 12, "17987\t2146\t34468\t7", 4),
        ("ent_ids_1", 5, "6\thttp://zh.dbpedia.org/resource/x\textra", 3),
        ("ent_ids_2", 900, "10506", 1),
        ("ref_ent_ids", 2, "22\t10522\t1", 3),
    ],
)
def test_wrong_number_of_columns(
    tmp_path: Path, file: str, line: int, text: str, found: int
) -> None:
    folder = _copy(tmp_path)
    _set_line(folder / file, line, text)
    with pytest.raises(DataError) as exc:
        read_dbp15k(folder)
    assert f"found {found}" in _raises_at(exc, folder / file, line)


def test_non_integer_id_and_repeated_entity(tmp_path: Path) -> None:
    folder = _copy(tmp_path)
    tri = folder / "triples_1"
    _set_line(tri, 9, "23356\tnot-a-relation\t2631")
    with pytest.raises(DataError) as exc:
        read_dbp15k(folder)
    assert "'not-a-relation' is not an integer id" in _raises_at(exc, tri, 9)

    folder = _copy(tmp_path / "again")
    ent = folder / "ent_ids_1"
    first = _rows(ent)[0][0]
    _set_line(ent, 3, f"{first}\thttp://zh.dbpedia.org/resource/dup")
    with pytest.raises(DataError) as exc:
        read_dbp15k(folder)
    assert "listed twice" in _raises_at(exc, ent, 3)


def test_missing_file_and_blank_lines(tmp_path: Path) -> None:
    folder = _copy(tmp_path)
    # blank lines are skipped and do not shift line numbers of later rows
    tri = folder / "triples_1"
    tri.write_text("\n" + tri.read_text(encoding="utf-8"), encoding="utf-8")
    got = read_dbp15k(folder)
    assert len(got.graphs["zh"].triples) == _wc(FIXTURE / "triples_1")
    assert got.graphs["zh"].lines[0] == 2
    (folder / "ref_ent_ids").unlink()
    with pytest.raises(DataError, match="missing file 'ref_ent_ids'"):
        read_dbp15k(folder)


# --------------------------------------------------------------------------------------------------------------
# The generic layout
# --------------------------------------------------------------------------------------------------------------


def write_collection(
    root: Path, graphs: dict[str, list[str]], links: list[str], name: str = "toy"
) -> Path:
    """``root/name/<graph>/triples.tsv`` (rows ``"h r t"``) and ``links.tsv`` (rows ``"ga ea gb eb"``)."""
    folder = root / name
    for g, rows in graphs.items():
        (folder / g).mkdir(parents=True)
        (folder / g / "triples.tsv").write_text(
            "".join("\t".join(r.split()) + "\n" for r in rows), encoding="utf-8"
        )
    (folder / "links.tsv").write_text(
        "".join("\t".join(r.split()) + "\n" for r in links), encoding="utf-8"
    )
    return folder


TOY = {
    "b": ["y1 likes y2", "y2 likes y3"],
    "a": ["x1 knows x2", "x2 knows x3", "x3 owns x1"],
}


def test_generic_graphs_labels_and_links(tmp_path: Path) -> None:
    folder = write_collection(tmp_path, TOY, ["a x1 b y1", "b y3 a x2"])
    kgs = read_linked(folder)
    assert kgs.name == "toy" and kgs.source == str(folder)
    assert list(kgs.graphs) == ["a", "b"]  # sorted by folder name
    a, b = kgs.graphs["a"], kgs.graphs["b"]
    assert a.entity_labels == ("a:x1", "a:x2", "a:x3")
    assert a.relation_labels == ("a:knows", "a:owns")
    assert b.entity_labels == ("b:y1", "b:y2", "b:y3")
    assert b.relation_labels == ("b:likes",)
    np.testing.assert_array_equal(a.triples, [[0, 0, 1], [1, 0, 2], [2, 1, 0]])
    np.testing.assert_array_equal(a.lines, [1, 2, 3])
    # the second link is written b -> a and stored in the collection's graph order
    assert list(kgs.links) == [("a", "b")]
    np.testing.assert_array_equal(kgs.links["a", "b"], [[0, 0], [1, 2]])
    np.testing.assert_array_equal(kgs.aligned("b"), [0, 2])
    # load_linked picks the generic reader for a folder without ref_ent_ids
    assert load_linked(folder).links["a", "b"].tolist() == [[0, 0], [1, 2]]
    assert read_linked(folder, name="other").name == "other"


def test_generic_same_local_names_do_not_clash(tmp_path: Path) -> None:
    folder = write_collection(
        tmp_path, {"a": ["e1 r e2"], "b": ["e1 r e2"]}, ["a e1 b e2", "a e2 b e1"]
    )
    kgs = read_linked(folder)
    assert kgs.graphs["a"].entity_labels == ("a:e1", "a:e2")
    assert kgs.graphs["b"].entity_labels == ("b:e1", "b:e2")
    assert kgs.graphs["a"].relation_labels != kgs.graphs["b"].relation_labels
    np.testing.assert_array_equal(kgs.links["a", "b"], [[0, 1], [1, 0]])


def test_generic_three_graphs(tmp_path: Path) -> None:
    folder = write_collection(
        tmp_path,
        {"a": ["x1 r x2"], "b": ["y1 r y2"], "c": ["z1 r z2"]},
        ["a x1 b y1", "c z2 b y2", "a x2 c z1"],
    )
    kgs = read_linked(folder)
    assert set(kgs.links) == {("a", "b"), ("b", "c"), ("a", "c")}
    np.testing.assert_array_equal(kgs.links["b", "c"], [[1, 1]])
    np.testing.assert_array_equal(kgs.aligned("c"), [0, 1])


def test_generic_links_that_join_two_entities_of_one_graph_through_a_third(tmp_path: Path) -> None:
    """x1 = y1 (line 1), y1 = z1 (line 2) and x1 = z2 (line 3): every pair of graphs is one-to-one, but x1 is now
    linked to two different entities of graph c (z1 through y1, and z2). The union would merge z1 and z2 into
    one entity, turning c's triple z1 -t-> z2 into a self-loop; the collection must be refused at line 3."""
    folder = write_collection(
        tmp_path,
        {"a": ["x1 r x2", "x2 r x1"], "b": ["y1 s y2", "y2 s y1"], "c": ["z1 t z2", "z2 t z1"]},
        ["a x1 b y1", "b y1 c z1", "a x1 c z2"],
    )
    with pytest.raises(DataError) as exc:
        read_linked(folder)
    _raises_at(exc, folder / "links.tsv", 3)


@pytest.mark.parametrize(
    ("links", "line", "pattern"),
    [
        (["a x1 b y1", "a x2 q y2"], 2, "unknown graph 'q'"),
        (["zz x1 b y1"], 1, "unknown graph 'zz'"),
        (["a x1 b y1", "a x2 a x3"], 2, "two different graphs"),
        (["a x1 b y9"], 1, "entity 'y9', which does not occur in graph 'b'"),
        (["a x1 b y1", "b y2 a x2", "a x1 b y1"], 3, "duplicate link"),
        (["a x1 b y1", "b y1 a x1"], 2, "duplicate link"),  # the same link written the other way
        (["a x1 b y1", "a x1 b y2"], 2, "conflicting links"),
        (["a x1 b y1", "b y1 a x3"], 2, "conflicting links"),
        (["a x1 b y1", "a x2\tb"], 2, "expected 4 tab-separated columns, found 3"),
    ],
)
def test_generic_bad_links(tmp_path: Path, links: list[str], line: int, pattern: str) -> None:
    folder = write_collection(tmp_path, TOY, links)
    with pytest.raises(DataError, match=pattern) as exc:
        read_linked(folder)
    _raises_at(exc, folder / "links.tsv", line)


def test_generic_bad_layout(tmp_path: Path) -> None:
    one = write_collection(tmp_path, {"a": ["x1 r x2"]}, ["a x1 a x2"], name="one")
    with pytest.raises(DataError, match="at least two sub-folders"):
        read_linked(one)
    none = write_collection(tmp_path, TOY, [], name="nolinks")
    with pytest.raises(DataError, match="no links"):
        read_linked(none)
    bad = write_collection(tmp_path, {**TOY, "c": ["z1 r"]}, ["a x1 b y1"], name="bad")
    with pytest.raises(DataError) as exc:
        read_linked(bad)
    _raises_at(exc, bad / "c" / "triples.tsv", 1)
    missing = write_collection(tmp_path, TOY, ["a x1 b y1"], name="missing")
    (missing / "links.tsv").unlink()
    with pytest.raises(DataError, match=r"missing file 'links\.tsv'"):
        read_linked(missing)
