"""Contexts in and out of a store: the exchange format's round trip, bad files (one error naming file and line,
exit 2, nothing stored lost), the real CP-KGC LLM files (a committed subset, and the full files in the slow tier)
and coverage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kgdistill.contexts import (
    ContextStore,
    coverage,
    export_contexts,
    generate_contexts,
    import_contexts,
    read_store,
)
from kgdistill.contexts.exchange import escape, unescape
from kgdistill.data import KG, load_kg
from kgdistill.errors import DataError

from .conftest import FIXTURES, LONG, ScriptedGenerator, invoke

MINI = FIXTURES / "llm-text-mini"
ANY = {"min_words_entity": 0, "min_words_triple": 0, "max_echo": 1.0}


def test_escape_round_trip() -> None:
    text = 'a\tb\nc\\d\re "q"'
    assert "\t" not in escape(text) and "\n" not in escape(text)
    assert unescape(escape(text)) == text
    assert unescape(r"He said \"hi\"\nbye \x") == 'He said "hi"\nbye \\x'


def test_export_import_round_trip(yago: KG, tmp_path: Path) -> None:
    from kgdistill.contexts import QualityFilter

    def answer(prompt: str, sampling: object) -> str:
        return f"{LONG}\n\tSecond paragraph with a backslash \\ for: {prompt}"

    store = tmp_path / "gen.jsonl"
    filters = QualityFilter(**ANY)
    generate_contexts(yago, store, ScriptedGenerator(answer), path="ed", limit=3, filters=filters)
    generate_contexts(yago, store, ScriptedGenerator(answer), path="td", limit=3, filters=filters)
    out = tmp_path / "contexts.tsv"
    assert export_contexts(store, out) == {"entity": 3, "triple": 3}
    rows = out.read_text(encoding="utf-8").splitlines()
    assert len(rows) == 6 and [len(r.split("\t")) for r in rows] == [2, 2, 2, 4, 4, 4]
    result = invoke(
        "contexts", "import", str(out), "--dataset", "yago11k", "--out", str(tmp_path / "in.jsonl")
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["format"], report["read"], report["added"]) == ("tsv", 6, 6)
    a, b = ContextStore(store), ContextStore(tmp_path / "in.jsonl")
    assert a.entities == b.entities and a.triples == b.triples
    again = tmp_path / "again.tsv"
    assert (
        invoke("contexts", "export", str(tmp_path / "in.jsonl"), "--out", str(again)).exit_code == 0
    )
    assert again.read_bytes() == out.read_bytes()
    assert export_contexts(store, again, kind="triple") == {"entity": 0, "triple": 3}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("<Nobody_At_All>\tsome text", "unknown entity '<Nobody_At_All>'"),
        ("<Al_Gore>\t<wasBornIn>\tsome text", "found 3 tab-separated fields"),
        ("<Al_Gore>\t<bornIn>\t<Edmonton>\ttext", "unknown relation '<bornIn>'"),
        ("<Al_Gore> and no tab", "found 1 tab-separated fields"),
        ("<Al_Gore>\t   ", "empty text"),
    ],
)
def test_bad_context_file_is_one_error_and_nothing_is_lost(
    yago: KG, tmp_path: Path, line: str, message: str
) -> None:
    store = tmp_path / "s.jsonl"
    good = tmp_path / "good.tsv"
    good.write_text("<Edmonton>\tA city in Canada.\n", encoding="utf-8")
    import_contexts(good, yago, store)
    before = store.read_bytes()
    bad = tmp_path / "bad.tsv"
    bad.write_text(f"<Al_Gore>\tA politician.\n\n{line}\n<Edmonton>\tnew\n", encoding="utf-8")
    result = invoke("contexts", "import", str(bad), "--dataset", "yago11k", "--out", str(store))
    assert result.exit_code == 2
    assert result.output.startswith(f"error: {bad}, line 3: ") and message in result.output
    assert store.read_bytes() == before


def test_existing_contexts_are_kept_unless_replace(yago: KG, tmp_path: Path) -> None:
    store = tmp_path / "s.jsonl"
    first, second = tmp_path / "a.tsv", tmp_path / "b.tsv"
    first.write_text("<Edmonton>\tA city.\n<Al_Gore>\tA politician.\n", encoding="utf-8")
    second.write_text(
        "<Edmonton>\tThe capital of Alberta.\n<Beverly_Adams>\tAn actress.\n", encoding="utf-8"
    )
    import_contexts(first, yago, store, model="me")
    kept = import_contexts(second, yago, store)
    assert (kept.added, kept.kept, kept.replaced) == (1, 1, 0)
    assert ContextStore(store).entity("<Edmonton>") == "A city."
    replaced = import_contexts(second, yago, store, replace=True)
    assert (replaced.added, replaced.replaced) == (0, 2)
    view = ContextStore(store)
    assert view.entity("<Edmonton>") == "The capital of Alberta." and len(view) == 3
    assert view.records["entity\t<Al_Gore>"]["model"] == "me"
    assert view.records["entity\t<Edmonton>"]["source"] == "b.tsv:1"
    assert read_store(store).duplicates == 0


def test_import_fills_rejected_keys(yago: KG, tmp_path: Path) -> None:
    store = tmp_path / "s.jsonl"
    generate_contexts(yago, store, ScriptedGenerator(lambda p, s: ""), path="ed", limit=2)
    assert ContextStore(store).entity("<Edmonton>") is None  # recorded as rejected
    src = tmp_path / "a.tsv"
    src.write_text("<Edmonton>\tA city in Alberta.\n", encoding="utf-8")
    report = import_contexts(src, yago, store)
    assert (report.added, report.replaced, report.kept) == (0, 1, 0)
    assert ContextStore(store).entity("<Edmonton>") == "A city in Alberta."
    assert len(ContextStore(store)) == 2


def test_cpkgc_descriptions_real_subset(tiny_kg: KG, tmp_path: Path) -> None:
    """GPT-4 summaries (CRLF, quoted literals) of 100 of the 108 fb15k237-mini entities, plus 4 lines of other
    entities (skipped)."""
    store = tmp_path / "s.jsonl"
    src = MINI / "FB15k_mid2description_GPT4.txt"
    report = import_contexts(src, tiny_kg, store)
    assert (report.format, report.model, report.read, report.added) == ("cpkgc", "gpt-4", 100, 100)
    assert report.skipped == {"not in the dataset": 4}
    assert report.coverage["entities"] == {"with": 100, "total": 108, "share": round(100 / 108, 4)}
    train = report.coverage["splits"]["train"]
    assert (
        train["triples_td"]["with"] == 0
        and 0 < train["triples_ed"]["with"] < train["triples_ed"]["total"]
    )
    view = ContextStore(store)
    first = src.read_bytes().decode("utf-8").split("\r\n")[0]
    mid, text = first.split("\t")
    assert view.entity(mid) == text[1:-4]  # without the quotes and @en
    assert not any(t.endswith(("@en", '"', "\r")) for t in view.entities.values())
    hi, ri, ti = tiny_kg.facts["train"][0].tolist()
    h, r, t = tiny_kg.entity_labels[hi], tiny_kg.relation_labels[ri], tiny_kg.entity_labels[ti]
    if view.entity(h) and view.entity(t):
        assert view.triple(h, r, t) == f"{view.entity(h)}\n{view.entity(t)}"


def test_cpkgc_escapes(tiny_kg: KG, tmp_path: Path) -> None:
    mid = tiny_kg.entity_labels[0]
    src = tmp_path / "FB15k_mid2description_llama2_13B_chat.txt"
    src.write_bytes(f'{mid}\t"Known as \\"Big\\" here.\\nSecond line."@en\r\n'.encode())
    report = import_contexts(src, tiny_kg, tmp_path / "s.jsonl")
    assert report.model == "llama-2-13b-chat"
    assert ContextStore(tmp_path / "s.jsonl").entity(mid) == 'Known as "Big" here.\nSecond line.'


def test_cpkgc_synonyms_real_subset(wn_mini: KG, tmp_path: Path) -> None:
    src = MINI / "entity2sysnonyms_Qwen.txt"
    report = import_contexts(src, wn_mini, tmp_path / "s.jsonl")
    assert (report.format, report.model) == ("cpkgc-synonyms", "qwen-7b-chat")
    assert report.skipped == {"empty": 7} and report.added == 293
    view = ContextStore(tmp_path / "s.jsonl")
    offset, name, raw = src.read_text(encoding="utf-8").splitlines()[0].rstrip("\r").split("\t")
    syns = [s.strip() for s in raw.split("[SEP]") if s.strip() and s.strip() != name]
    assert view.entity(offset) == f"{name} (synonyms: {', '.join(dict.fromkeys(syns))})"


def test_filtered_qwen_synonyms_detected_though_the_first_line_has_none(
    wn_mini: KG, tmp_path: Path
) -> None:
    """CP-KGC's similarity-filtered synonyms: the real file's first line (a synset whose synonyms were all
    filtered out) has no [SEP]; the format must still be recognised, not read as a strict exchange file."""
    lines = (MINI / "entity2synonyms_Qwen_argmax.txt").read_text(encoding="utf-8").splitlines()
    empty = [ln for ln in lines if not ln.split("\t")[2].strip()]
    assert len(empty) == 74
    src = tmp_path / "entity2synonyms_Qwen_argmax.txt"
    src.write_text(
        "\n".join([*empty, *[ln for ln in lines if ln not in empty]]) + "\n", encoding="utf-8"
    )
    report = import_contexts(src, wn_mini, tmp_path / "s.jsonl")
    assert (report.format, report.model) == ("cpkgc-synonyms", "qwen-7b-chat")
    # 2 more lines name only the synset itself as a synonym: empty once the name is dropped
    assert report.skipped == {"empty": 76} and report.added == 224


def test_coverage_command(tiny_kg: KG, tmp_path: Path) -> None:
    store = tmp_path / "s.jsonl"
    import_contexts(MINI / "FB15k_mid2description_GPT4.txt", tiny_kg, store)
    result = invoke(
        "contexts", "coverage", str(store), "--dataset", str(FIXTURES / "fb15k237-mini")
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == coverage(tiny_kg, store)


def test_errors_name_the_file(tmp_path: Path, tiny_kg: KG) -> None:
    with pytest.raises(DataError, match="cannot read the context file"):
        import_contexts(tmp_path / "missing.tsv", tiny_kg, tmp_path / "s.jsonl")
    bad = tmp_path / "FB15k_mid2description_GPT4.txt"
    bad.write_text(f'{tiny_kg.entity_labels[0]}\t"fine"@en\n/m/x\tbroken\n', encoding="utf-8")
    with pytest.raises(DataError, match=rf"{bad}, line 2: expected mid<TAB>\"text\"@en"):
        import_contexts(bad, tiny_kg, tmp_path / "s.jsonl")


# -- the full real files (slow: full datasets) -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dataset", "file", "model", "used"),
    [
        ("fb15k237", "FB15k-237/FB15k_mid2description_GPT4.txt", "gpt-4", (14515, 14541)),
        (
            "fb15k237",
            "FB15k-237/FB15k_mid2description_GPT_3.5turbo.txt",
            "gpt-3.5-turbo",
            (14515, 14541),
        ),
        (
            "fb15k237",
            "FB15k-237/FB15k_mid2description_llama2_13B_chat.txt",
            "llama-2-13b-chat",
            (14515, 14541),
        ),
        ("fb15k237n", "FB15k-237/FB15k_mid2description_GPT4.txt", "gpt-4", (13081, 13104)),
    ],
)
def test_real_llm_summaries(
    data_root: Path, tmp_path: Path, dataset: str, file: str, model: str, used: tuple[int, int]
) -> None:
    """Coverage as the data's README states it: 14,515 of FB15k-237's 14,541 entities; 13,081 of the 13,104
    entities FB15k-237N's triples use (its vocabulary lists all 14,541)."""
    src = data_root / "llm-text" / "CP-KGC" / file
    kg = load_kg(dataset, root=data_root)
    report = import_contexts(src, kg, tmp_path / "s.jsonl")
    assert report.model == model and report.added == 14515
    assert report.skipped == {"not in the dataset": 14904 - 14515}
    cov = report.coverage
    assert (cov["entities"]["with"], cov["entities"]["total"]) == (14515, 14541)
    assert (cov["entities_in_triples"]["with"], cov["entities_in_triples"]["total"]) == used
    for split in ("train", "valid", "test"):
        assert cov["splits"][split]["entities"]["share"] > 0.99
        assert cov["splits"][split]["triples_ed"]["share"] > 0.98


def test_real_filtered_qwen_synonyms(data_root: Path, tmp_path: Path) -> None:
    """The README's counts: 7,417 lines, 5,363 with synonyms left after CP-KGC's filter; 135 of those name only
    the synset itself, so 5,228 contexts."""
    src = data_root / "llm-text" / "CP-KGC" / "WN18RR" / "entity2synonyms_Qwen_argmax.txt"
    report = import_contexts(src, load_kg("wn18rr", root=data_root), tmp_path / "s.jsonl")
    assert report.format == "cpkgc-synonyms"
    assert report.read + sum(report.skipped.values()) == 7417
    assert report.skipped == {"empty": 7417 - 5363 + 135} and report.added == 5228


def test_real_qwen_synonyms(data_root: Path, tmp_path: Path) -> None:
    src = data_root / "llm-text" / "CP-KGC" / "WN18RR" / "entity2sysnonyms_Qwen.txt"
    kg = load_kg("wn18rr", root=data_root)
    report = import_contexts(src, kg, tmp_path / "s.jsonl")
    assert (
        report.read + report.skipped.get("empty", 0) + report.skipped.get("not in the dataset", 0)
        == 39270
    )
    assert 38000 < report.added <= 38932
    assert report.coverage["entities"]["total"] == 40943
