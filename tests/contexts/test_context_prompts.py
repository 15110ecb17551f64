"""Prompt templates and paths, keys files, and the quality filters."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from kgdistill.contexts import QualityFilter, Templates, work_items
from kgdistill.contexts.prompts import read_keys
from kgdistill.data import KG
from kgdistill.errors import DataError


def test_paths_make_one_item_per_entity_and_training_triple(yago: KG) -> None:
    ed, td, both = (work_items(yago, p) for p in ("ed", "td", "ed+td"))
    assert len(ed) == yago.num_entities and {i.kind for i in ed} == {"entity"}
    distinct = {tuple(x) for x in yago.facts["train"][:, :3].tolist()}
    assert len(td) == len(distinct) and len(both) == len(ed) + len(td)
    first = td[0]
    h, r, t = first.key
    assert (h, r, t) == tuple(
        lab
        for lab in (
            yago.entity_labels[int(yago.facts["train"][0, 0])],
            yago.relation_labels[int(yago.facts["train"][0, 1])],
            yago.entity_labels[int(yago.facts["train"][0, 2])],
        )
    )
    # verbalised labels, not raw ones
    assert "<" not in first.prompt and "was born in" in " ".join(i.prompt for i in td[:200])
    assert ed[2].key == "<Al_Gore>" and '"Al Gore"' in ed[2].prompt


def test_templates_are_checked() -> None:
    t = Templates(
        entity="Tell me about {entity}.", triple="{head} -- {relation} -- {tail} {{json}}"
    )
    assert t.triple.format(head="a", relation="b", tail="c") == "a -- b -- c {json}"
    with pytest.raises(ValidationError, match=r"unknown placeholder\(s\) \['name'\]"):
        Templates(entity="Tell me about {name}.")
    with pytest.raises(ValidationError, match="uses none of"):
        Templates(triple="Describe the fact.")
    with pytest.raises(ValidationError, match="malformed template"):
        Templates(entity="about {entity")


def test_keys_file(yago: KG, tmp_path: Path) -> None:
    items = work_items(yago, "ed+td")
    h, r, t = items[yago.num_entities].key
    keys = tmp_path / "keys.txt"
    keys.write_text(f"# a comment\n<Al_Gore>\n\n{h}\t{r}\t{t}\n", encoding="utf-8")
    assert read_keys(keys, items) == {"entity\t<Al_Gore>", f"triple\t{h}\t{r}\t{t}"}
    keys.write_text("<Al_Gore>\n<Nobody_At_All>\n", encoding="utf-8")
    with pytest.raises(DataError, match=rf"{keys}, line 2: entity <Nobody_At_All> is not a key"):
        read_keys(keys, items)
    keys.write_text(f"{h}\t{r}\n", encoding="utf-8")
    with pytest.raises(DataError, match="line 1: expected an entity label or head"):
        read_keys(keys, items)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("  ...  ", "empty"),
        ("Al Gore is a politician.", "too_short"),
        ("the city and the river " * 12, "repetition"),
        (
            'Describe "Al Gore" in one paragraph of about 100 words and more '
            + " ".join(f"x{i}" for i in range(40)),
            "prompt_echo",
        ),
        (" ".join(f"w{i}" for i in range(40)), None),
    ],
)
def test_quality_filter(text: str, reason: str | None) -> None:
    prompt = 'Describe "Al Gore" in one paragraph of about 100 words: say who it is.'
    assert QualityFilter().check(text, prompt, "entity") == reason


def test_echo_inside_the_text_and_triple_length() -> None:
    prompt = "Here is a fact: (A, born in, B). Write one paragraph that introduces A and B and the relation."
    text = "Sure. " + prompt + " " + " ".join(f"w{i}" for i in range(80))
    assert QualityFilter().check(text, prompt, "triple") == "prompt_echo"
    sixty = " ".join(f"w{i}" for i in range(60))
    assert QualityFilter().check(sixty, prompt, "triple") == "too_short"  # a triple needs 80 words
    assert QualityFilter().check(sixty, prompt, "entity") is None
    assert QualityFilter(min_words_triple=10).check(sixty, prompt, "triple") is None
