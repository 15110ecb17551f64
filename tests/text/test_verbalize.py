"""Verbalisers of entities, relations and times, on the real benchmark files (bundled YAGO11k, full datasets)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kgdistill.data import KG, build_kg, load_kg, read_table
from kgdistill.data.raw import open_text
from kgdistill.errors import DataError
from kgdistill.text import (
    KGTexts,
    camel_to_words,
    dataset_style,
    freebase_relation,
    kg_texts,
    time_phrase,
    yago_name,
)

# Every relation of YAGO11k (relation2id.txt) and its words.
YAGO_RELATIONS = {
    "<wasBornIn>": "was born in",
    "<diedIn>": "died in",
    "<worksAt>": "works at",
    "<playsFor>": "plays for",
    "<hasWonPrize>": "has won prize",
    "<isMarriedTo>": "is married to",
    "<owns>": "owns",
    "<graduatedFrom>": "graduated from",
    "<isAffiliatedTo>": "is affiliated to",
    "<created>": "created",
}


def _all_nonempty(tx: KGTexts) -> None:
    for texts in (tx.entities, tx.relations, tx.times):
        assert all(t.strip() for t in texts)


def _text(tx: KGTexts, kg: KG, label: str) -> str:
    return tx.entities[kg.entity_ids[label]]


# -- name rules -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("raw", "words"), sorted(YAGO_RELATIONS.items()))
def test_camel_case_yago_relations(raw: str, words: str) -> None:
    assert camel_to_words(raw) == words
    assert camel_to_words(raw.strip("<>")) == words


def test_camel_case_keeps_acronyms() -> None:
    assert camel_to_words("hasGDPOf") == "has GDP of"
    assert camel_to_words("<isLeaderOf>") == "is leader of"


def test_yago_relations_are_exactly_the_known_ones(yago: KG) -> None:
    tx = kg_texts(yago)
    assert dict(zip(yago.relation_labels, tx.relations, strict=True)) == YAGO_RELATIONS


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        ("<Getafe_CF>", "Getafe CF"),
        ("<Athletic_Park_(Vancouver)>", "Athletic Park (Vancouver)"),
        ("<Take_the_\\u0022A\\u0022_Train>", 'Take the "A" Train'),
        ("<10\\u005e16_to_1>", "10^16 to 1"),
        ("<Fortuna_Düsseldorf>", "Fortuna Düsseldorf"),
    ],
)
def test_yago_name(raw: str, text: str) -> None:
    assert yago_name(raw) == text


@pytest.mark.parametrize(
    ("path", "text"),
    [
        ("/people/person/nationality", "people person nationality"),
        ("/film/film/genre", "film genre"),
        ("/music/artist/origin", "music artist origin"),
        (
            "/film/film/release_date_s./film/film_regional_release_date/film_release_region",
            "film release dates, film release region",
        ),
        (
            "/award/award_category/winners./award/award_honor/award_winner",
            "award category winners, award winner",
        ),
    ],
)
def test_freebase_relation(path: str, text: str) -> None:
    assert freebase_relation(path) == text


# -- times ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("label", "kind", "phrase"),
    [
        ("1998", "interval", "in 1998"),
        ("1990..1995", "interval", "between 1990 and 1995"),
        ("-431..1701", "interval", "between 431 BC and 1701"),
        ("-405", "interval", "in 405 BC"),
        ("since 1990", "interval", "since 1990"),
        ("until 1990..1995", "interval", "until a year between 1990 and 1995"),
        ("unknown", "interval", "at an unknown time"),
        ("2014-03-05", "point", "on 2014-03-05"),
        ("17", "point", "at time step 17"),
        ("sometime", "interval", None),
    ],
)
def test_time_phrase(label: str, kind: str, phrase: str | None) -> None:
    assert time_phrase(label, kind) == phrase


def test_yago_time_bins(yago: KG) -> None:
    tx = kg_texts(yago)
    assert len(tx.times) == yago.num_times
    by_label = dict(zip(yago.time.labels, tx.times, strict=True))
    assert by_label["unknown"] == "at an unknown time"
    assert (
        by_label[yago.time.labels[0]] == "between 431 BC and 1701"
    )  # the first bin holds the BC years
    for label, phrase in by_label.items():
        if ".." in label:
            lo, hi = label.split("..")
            assert phrase == f"between {lo} and {hi}" or "BC" in phrase
        elif label != "unknown":
            assert phrase == f"in {label}"
    assert tx.report["times"]["fallback"] == 0


def test_yago_time_split_mode() -> None:
    kg = load_kg("yago11k", interval_mode="split")
    tx = kg_texts(kg)
    by_label = dict(zip(kg.time.labels, tx.times, strict=True))
    assert by_label["since 1702..1836"] == "since a year between 1702 and 1836"
    assert by_label["until 2014"] == "until 2014"
    assert all(p.startswith(("since ", "until ", "at an unknown")) for p in tx.times)


def test_icews_days(tiny_point_kg: KG) -> None:
    tx = kg_texts(tiny_point_kg)
    assert tx.times == [f"on {label}" for label in tiny_point_kg.time.labels]
    assert all(t.startswith("on 2014-") for t in tx.times)


def test_static_kg_has_no_times(tiny_kg: KG) -> None:
    assert kg_texts(tiny_kg).times == []


# -- YAGO11k (bundled) ------------------------------------------------------------------------------------------
def test_yago_entities(yago: KG) -> None:
    tx = kg_texts(yago)
    assert dataset_style(yago) == "yago"
    assert len(tx.entities) == yago.num_entities == 10623
    assert _text(tx, yago, "<Take_the_\\u0022A\\u0022_Train>") == 'Take the "A" Train'
    assert _text(tx, yago, "<Fortuna_Düsseldorf>") == "Fortuna Düsseldorf"
    assert _text(tx, yago, "<Tony_Young_(actor)>") == "Tony Young (actor)"
    assert _text(tx, yago, "<Südtiroler_Sparkasse_–_Cassa_di_Risparmio_di_Bolzano>") == (
        "Südtiroler Sparkasse – Cassa di Risparmio di Bolzano"
    )
    ents = tx.report["entities"]
    assert ents["sources"] == {"yago-name": 10623}
    assert ents["fallback"] == 0 and ents["coverage"] == 1.0
    _all_nonempty(tx)


def test_yago_names_match_g2s_cleaned_file(yago: KG, data_root: Path) -> None:
    """G2S-TKG's cleaned names (``<>`` removed, ``_`` -> space, escapes kept) agree with ours on every entity."""
    tx = kg_texts(yago)
    path = data_root / "YAGO11k" / "text" / "G2S-TKG-forecasting" / "entity2id.txt"
    rows = [line.split("\t") for line in open_text(path) if line.strip()]
    assert len(rows) == yago.num_entities
    for name, idx in rows:
        assert tx.entities[int(idx)] == yago_name(name)


def test_reciprocal_relations(yago: KG) -> None:
    tx = kg_texts(yago)
    r = yago.relation_ids["<wasBornIn>"]
    n = yago.num_relations
    assert tx.inverse_relation(r) == "inverse of: was born in"
    assert tx.relation(r) == "was born in"
    assert tx.relation(r + n) == "inverse of: was born in"
    assert len(tx.all_relations()) == 2 * n
    with pytest.raises(IndexError, match="outside"):
        tx.relation(2 * n)
    with pytest.raises(IndexError, match="outside"):
        tx.inverse_relation(n)


def test_texts_are_never_empty() -> None:
    with pytest.raises(ValueError, match="empty"):
        KGTexts(entities=["a", " "], relations=["r"], times=[])


# -- users' text files ------------------------------------------------------------------------------------------
def test_user_file_overrides(yago: KG, tmp_path: Path) -> None:
    first = tmp_path / "first.tsv"
    first.write_bytes(
        "\ufeff<Getafe_CF>\tGetafe Club de Fútbol\r\n\r\n0\tfirst text of entity 0\r\n".encode()
    )
    second = tmp_path / "second.tsv"
    second.write_text("0\tsecond text of entity 0\n", encoding="utf-8")
    rels = tmp_path / "rels.tsv"
    rels.write_text("<wasBornIn>\tborn in the place\n", encoding="utf-8")
    tx = kg_texts(yago, entity_files=[first, second], relation_files=rels)
    assert _text(tx, yago, "<Getafe_CF>") == "Getafe Club de Fútbol"
    assert tx.entities[0] == "second text of entity 0"
    assert tx.relations[yago.relation_ids["<wasBornIn>"]] == "born in the place"
    assert tx.inverse_relation(yago.relation_ids["<wasBornIn>"]) == "inverse of: born in the place"
    assert tx.report["entities"]["sources"]["file:first.tsv"] == 1
    assert tx.report["entities"]["sources"]["file:second.tsv"] == 1
    assert tx.report["entities"]["sources"]["yago-name"] == yago.num_entities - 2
    assert tx.report["relations"]["sources"]["file:rels.tsv"] == 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            "<Getafe_CF>\tGetafe\n\n<No_Such_Entity>\tx\n",
            "line 3: unknown entity '<No_Such_Entity>'",
        ),
        ("<Getafe_CF>\tGetafe\n10623\ttoo large\n", "line 2: unknown entity '10623'"),
        ("<Getafe_CF>\tGetafe\r\n<Edmonton>\t  \r\n", "line 2: empty text for entity '<Edmonton>'"),
        ("<Getafe_CF> Getafe\n", "line 1: expected '<entity label or id><TAB><text>'"),
    ],
)
def test_user_file_errors_name_file_and_line(
    yago: KG, tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "names.tsv"
    path.write_bytes(content.encode())
    with pytest.raises(DataError, match=str(path) + ", " + message.replace("(", r"\(")) as err:
        kg_texts(yago, entity_files=[path])
    assert err.value.path == path


def test_user_relation_file_unknown_key(yago: KG, tmp_path: Path) -> None:
    path = tmp_path / "rels.tsv"
    path.write_text("<wasBornIn>\tborn in\n<livesIn>\tlives in\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"rels\.tsv, line 2: unknown relation '<livesIn>'"):
        kg_texts(yago, relation_files=[path])


def test_missing_user_file(yago: KG, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cannot read file"):
        kg_texts(yago, entity_files=[tmp_path / "absent.tsv"])


# -- generic fallback -------------------------------------------------------------------------------------------
def test_generic_dataset_falls_back_to_raw_labels(tmp_path: Path) -> None:
    train = tmp_path / "train.tsv"
    train.write_text("New_York\tlocated_in\tUnited_States\nParis\tlocated_in\tFrance\n")
    kg = build_kg(read_table({"train": train}, columns={"head": 0, "relation": 1, "tail": 2}))
    tx = kg_texts(kg)
    assert dataset_style(kg) == "generic"
    assert _text(tx, kg, "New_York") == "New York"
    assert tx.relations == ["located in"]
    assert tx.report["entities"]["fallback"] == kg.num_entities
    assert tx.report["entities"]["coverage"] == 0.0
    assert len(tx.report["entities"]["fallback_examples"]) <= 5


# -- fixtures (subsets of the benchmarks) get the benchmark's texts through the data root -----------------------
def test_wikidata_subset_without_data_root(tiny_tkg: KG, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KGDISTILL_DATA", raising=False)
    tx = kg_texts(tiny_tkg)
    assert tx.entities == list(tiny_tkg.entity_labels)  # Q-ids: nothing else is known
    assert tx.report["entities"]["fallback"] == tiny_tkg.num_entities
    _all_nonempty(tx)


def test_subsets_use_data_root_texts(
    tiny_tkg: KG, tiny_kg: KG, data_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KGDISTILL_DATA", str(data_root))
    tx = kg_texts(tiny_tkg)
    assert tx.report["relations"]["sources"] == {"TILP": tiny_tkg.num_relations}
    assert tx.report["entities"]["fallback"] < tiny_tkg.num_entities
    fb = kg_texts(tiny_kg, descriptions=False)
    assert fb.report["entities"]["sources"] == {"kg-bert": tiny_kg.num_entities}
    assert all(not t.startswith("/") for t in fb.relations)


# -- full datasets ----------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_full_wikidata12k(data_root: Path) -> None:
    kg = load_kg("wikidata12k", root=data_root)
    tx = kg_texts(kg)
    ents = tx.report["entities"]
    # README: 6,648 / 12,554 (53.0%) labelled with the FB15k-237 Wikidata map, ~24.5% with a description.
    assert ents["total"] == 12554
    assert ents["fallback"] == 12554 - 6648
    assert 0.52 < ents["coverage"] < 0.54
    assert 3000 < ents["with_description"] < 3100
    assert ents["sources"]["mmkb-fork-labels"] == 5255
    assert _text(tx, kg, "Q183") == "Germany: country in Central Europe"
    assert _text(tx, kg, "Q873403") == "E.-T.-A.-Hoffmann-Preis"  # TEMT's hand-made name
    assert _text(tx, kg, "Q29051963") == "Q29051963"  # TEMT lists it without a name
    fallback = ents["fallback_examples"][0]
    assert tx.entities[fallback] == kg.entity_labels[fallback]
    plain = kg_texts(kg, descriptions=False)
    assert _text(plain, kg, "Q183") == "Germany"
    assert "with_description" in plain.report["entities"]
    assert plain.report["entities"]["with_description"] == 0
    rel = dict(zip(kg.relation_labels, tx.relations, strict=True))
    assert rel["P1376"] == "capital of"
    assert rel["P166"] == "receive award"
    assert tx.report["relations"]["coverage"] == 1.0
    assert tx.times[-1] == "between 2018 and 2020"
    _all_nonempty(tx)


@pytest.mark.slow
def test_full_icews14(data_root: Path) -> None:
    kg = load_kg("icews14", root=data_root)
    tx = kg_texts(kg)
    assert tx.entities[0] == "Cyprian Awiti"
    assert tx.entities[1] == "Governor (Bermuda)"
    assert tx.relations[1] == "Criticize or denounce"
    assert tx.inverse_relation(1) == "inverse of: Criticize or denounce"
    assert len(tx.times) == 365
    assert (tx.times[0], tx.times[-1]) == ("on 2014-01-01", "on 2014-12-31")
    assert tx.report["entities"]["coverage"] == tx.report["relations"]["coverage"] == 1.0
    _all_nonempty(tx)


@pytest.mark.slow
def test_full_fb15k237(data_root: Path) -> None:
    kg = load_kg("fb15k237", root=data_root)
    tx = kg_texts(kg)
    ents = tx.report["entities"]
    assert ents["sources"] == {"kg-bert": 14541}
    assert ents["with_description"] == 13662  # 13,666 descriptions, 4 equal to the name
    assert _text(tx, kg, "/m/06rf7").startswith("Schleswig-Holstein")
    assert _text(kg_texts(kg, descriptions=False), kg, "/m/010016") == "Denton"
    assert _text(tx, kg, "/m/010016") == "Denton: city in Texas, United States"
    rel = dict(zip(kg.relation_labels, tx.relations, strict=True))
    assert rel["/people/person/nationality"] == "people person nationality"
    assert tx.report["relations"]["sources"] == {"freebase-path": 237}
    _all_nonempty(tx)


@pytest.mark.slow
def test_full_wn18rr(data_root: Path) -> None:
    kg = load_kg("wn18rr", root=data_root)
    tx = kg_texts(kg)
    assert _text(tx, kg, "14854262") == "stool: solid excretory product evacuated from the bowels"
    assert _text(kg_texts(kg, descriptions=False), kg, "08769179") == "saxony"
    rel = dict(zip(kg.relation_labels, tx.relations, strict=True))
    assert rel["_member_of_domain_usage"] == "member of domain usage"
    assert tx.report["entities"]["coverage"] == tx.report["relations"]["coverage"] == 1.0
    _all_nonempty(tx)
