"""Where the texts of each benchmark come from: name cleaning rules and the text files shipped with the data.

Every source is a :class:`Layer`: one kind of text (entity names, entity descriptions or relation names) for some ids,
read from one file or made by one rule. :func:`dataset_layers` returns the layers of a KG's dataset in increasing
priority (a later layer overrides an earlier one for the ids it covers). Datasets are recognised by the KG's name
and its folder (``kg.report["source"]``); their text files are looked up beside the data, then under the data root
(``$KGDISTILL_DATA``), so a subset of a benchmark (a test fixture) still gets the benchmark's labels.

Third-party text files are read leniently: a line without a text (``Q29051963`` in TEMT's file, the 25 empty labels
of the mmkb fork) is skipped, never an error; users' own files are checked strictly (see :mod:`.verbalize`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache, partial
from pathlib import Path

from kgdistill.data.datasets import data_root
from kgdistill.data.kg import KG
from kgdistill.data.raw import open_text

__all__ = [
    "Layer",
    "camel_to_words",
    "dataset_layers",
    "dataset_style",
    "freebase_relation",
    "plain",
    "yago_name",
]

#: Dataset style -> the folder of the benchmark under the data root.
_TOP = {
    "yago": "YAGO11k",
    "wikidata": "Wikidata12k",
    "icews": "ICEWS14",
    "fb15k237n": "FB15k-237N",
    "fb15k237": "FB15k-237",
    "wn18rr": "WN18RR",
}
_VILLMOW = ("text/villmow/entity2wikidata.json", "../FB15k-237/text/villmow/entity2wikidata.json")


@dataclass
class Layer:
    """Texts of one kind from one source.

    Attributes:
        kind: ``entity``, ``entity_description`` or ``relation``.
        source: short name used in the report (``mmkb-fork-labels``, ``yago-name``, ...).
        texts: id -> text (never empty).
        path: the file it was read from, ``None`` for a rule.
    """

    kind: str
    source: str
    texts: dict[int, str] = field(default_factory=dict)
    path: str | None = None


# -- name rules -----------------------------------------------------------------------------------------------
def plain(text: str) -> str:
    """Collapse runs of whitespace and strip."""
    return " ".join(text.split())


def camel_to_words(name: str) -> str:
    """``wasBornIn`` -> ``was born in``; acronyms stay upper case (``hasGDPOf`` -> ``has GDP of``)."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", " ", name.strip("<>"))
    words = plain(spaced.replace("_", " ")).split()
    return " ".join(w if w.isupper() and len(w) > 1 else w.lower() for w in words)


def yago_name(label: str) -> str:
    """``<Take_the_\\u0022A\\u0022_Train>`` -> ``Take the "A" Train`` (disambiguation suffixes are kept)."""
    text = label.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1]
    text = re.sub(r"\\u([0-9a-fA-F]{4})", lambda m: chr(int(m.group(1), 16)), text)
    return plain(text.replace("_", " "))


def freebase_relation(path: str) -> str:
    """A Freebase relation path in words: ``/people/person/nationality`` -> ``people person nationality``.

    Repeated words are said once (``/film/film/genre`` -> ``film genre``), the plural marker ``_s`` becomes an
    ``s``, and of a compound (CVT) path only the final property of every later hop is kept:
    ``/film/film/release_date_s./film/film_regional_release_date/film_release_region`` ->
    ``film release dates, film release region``.
    """
    hops = [h for h in path.strip().split("./") if h.strip("/")]
    phrases = []
    for k, hop in enumerate(hops):
        segments = [s for s in hop.split("/") if s]
        if k > 0:
            segments = segments[-1:]
        words: list[str] = []
        for seg in segments:
            seg = seg[:-2] + "s" if seg.endswith("_s") else seg
            for w in seg.replace("_", " ").split():
                if not words or words[-1] != w:
                    words.append(w)
        phrases.append(" ".join(words))
    return ", ".join(p for p in phrases if p)


# -- recognising the dataset ------------------------------------------------------------------------------------
def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def dataset_style(kg: KG) -> str:
    """``yago``, ``wikidata``, ``icews``, ``fb15k237``, ``fb15k237n``, ``wn18rr`` or ``generic``."""
    folder = Path(str(kg.report.get("source", "")))
    names = [kg.name, folder.name]
    if _norm(folder.name) in ("kgs2s", "kgbert"):  # FB15k-237N/KG-S2S: the benchmark is the parent
        names.append(folder.parent.name)
    for name in names:
        key = _norm(name)
        for style in _TOP:
            if key.startswith(style):
                return style
    return "generic"


def _bases(kg: KG, style: str) -> list[Path]:
    source = str(kg.report.get("source", ""))
    bases = [Path(source), Path(source).parent] if source else []
    root = data_root()
    if root is not None and style in _TOP:
        bases.append(root / _TOP[style])
    return bases


# -- readers of third-party files ---------------------------------------------------------------------------------
def _pairs(
    path: Path, *, key: int = 0, value: int = 1, sep: str | None = "\t", underscores: bool = False
) -> dict[str, str]:
    """``key -> text`` of a tab-separated file; lines without a text are skipped.

    ``sep=None`` splits once on a run of spaces (TEMT); ``underscores`` turns ``_`` into spaces (NeuSTIP).
    """
    out: dict[str, str] = {}
    for line in open_text(path):
        fields = line.split(sep) if sep else line.split(None, 1)
        if len(fields) > max(key, value):
            text = plain(fields[value].replace("_", " ") if underscores else fields[value])
            if text:
                out[fields[key].strip()] = text
    return out


@lru_cache(maxsize=1)
def _json(path: Path) -> Mapping[str, Mapping[str, object]]:
    with path.open(encoding="utf-8-sig") as fh:
        return json.load(fh)


def _villmow(path: Path, part: str) -> dict[str, str]:
    """villmow's ``entity2wikidata.json``: mid -> ``label`` / ``desc``ription, or Q-id -> same (``...:qid``)."""
    records = _json(path)
    by_qid = part.endswith(":qid")
    name = {"label": "label", "desc": "description"}[part.removesuffix(":qid")]
    out = {}
    for mid, rec in records.items():
        text = plain(str(rec.get(name) or ""))
        k = str(rec.get("wikidata_id") or "") if by_qid else mid
        if text and k:
            out.setdefault(k, text)
    return out


def _wn_entity(path: Path, part: str) -> dict[str, str]:
    """kg-bert's WN18RR ``entity2text.txt``: ``offset<TAB>name, definition``.

    WN18RR ids are synset offsets without the part of speech, so 232 offsets name several synsets (``00001740``:
    the noun *entity* and the verb *breathe*, ...); kg-bert joined their definitions and kept one name. Those texts
    are used as they are.
    """
    out = {}
    for k, v in _pairs(path).items():
        name, _, definition = v.partition(", ")
        text = plain(name if part == "name" else definition)
        if text:
            out[k] = text
    return out


Reader = Callable[[Path], dict[str, str]]
_LW, _RL = "text/LiterallyWikidata/", "text/relation-labels/"
_KGB = ("kg-bert/entity2text.txt",)

#: style -> [(kind, source, relative paths to try, reader)], in increasing priority.
_FILES: dict[str, list[tuple[str, str, tuple[str, ...], Reader]]] = {
    "wikidata": [
        ("entity", "villmow-wikidata", _VILLMOW[1:], partial(_villmow, part="label:qid")),
        ("entity", "TEMT-no-name", ("text/TEMT/wikidata_no_name.txt",), partial(_pairs, sep=None)),
        ("entity", "LiterallyWikidata", (_LW + "entity_labels_en.txt",), _pairs),
        ("entity", "mmkb-fork-labels", ("text/mmkb-fork-labels/wikidata_labels.tsv",), _pairs),
        (
            "entity_description",
            "villmow-wikidata",
            _VILLMOW[1:],
            partial(_villmow, part="desc:qid"),
        ),
        (
            "entity_description",
            "LiterallyWikidata",
            (_LW + "entity_wikidata_descriptions_en.txt",),
            _pairs,
        ),
        ("relation", "LiterallyWikidata", (_LW + "relation_labels_en.txt",), _pairs),
        (
            "relation",
            "NeuSTIP",
            (_RL + "NeuSTIP_wiki_actual_rel.txt",),
            partial(_pairs, underscores=True),
        ),
        ("relation", "TILP", (_RL + "TILP_relation2id.txt",), partial(_pairs, value=2)),
    ],
    "fb15k237": [
        ("entity", "villmow-wikidata", _VILLMOW, partial(_villmow, part="label")),
        ("entity", "kg-bert", _KGB, _pairs),
        ("entity_description", "villmow-wikidata", _VILLMOW, partial(_villmow, part="desc")),
    ],
    "wn18rr": [
        ("entity", "kg-bert", _KGB, partial(_wn_entity, part="name")),
        ("entity_description", "kg-bert", _KGB, partial(_wn_entity, part="definition")),
        ("relation", "kg-bert", ("kg-bert/relation2text.txt",), _pairs),
    ],
}
_FILES["fb15k237n"] = _FILES["fb15k237"]


def _rule_layers(kg: KG, style: str) -> list[Layer]:
    """Layers made by a rule from the labels themselves (no file needed)."""
    if style == "yago":
        return [
            Layer("entity", "yago-name", {i: yago_name(x) for i, x in enumerate(kg.entity_labels)}),
            Layer(
                "relation",
                "yago-camelcase",
                {i: camel_to_words(x) for i, x in enumerate(kg.relation_labels)},
            ),
        ]
    if style == "icews":
        return [
            Layer("entity", "icews-name", {i: plain(x) for i, x in enumerate(kg.entity_labels)}),
            Layer(
                "relation", "icews-name", {i: plain(x) for i, x in enumerate(kg.relation_labels)}
            ),
        ]
    if style in ("fb15k237", "fb15k237n"):
        paths = {
            i: freebase_relation(x) for i, x in enumerate(kg.relation_labels) if x.startswith("/")
        }
        return [Layer("relation", "freebase-path", paths)]
    return []


def dataset_layers(kg: KG) -> tuple[str, list[Layer]]:
    """The style of ``kg``'s dataset and its text layers, in increasing priority; empty layers are left out."""
    style = dataset_style(kg)
    layers = _rule_layers(kg, style)
    bases = _bases(kg, style)
    for kind, source, rels, reader in _FILES.get(style, []):
        path = next((b / r for b in bases for r in rels if (b / r).is_file()), None)
        if path is None:
            continue
        ids = kg.relation_ids if kind == "relation" else kg.entity_ids
        texts = {ids[k]: v for k, v in reader(path).items() if k in ids}
        if texts:
            layers.append(Layer(kind, source, texts, str(path.resolve())))
    return style, [la for la in layers if la.texts]
