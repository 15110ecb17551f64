"""Verbalisers: one non-empty text per entity, relation and time id of a :class:`~kgdistill.data.KG`.

:func:`kg_texts` picks the texts of a KG's dataset (see :mod:`.sources`), lets users' own files override them,
falls back to the raw label (``_`` -> space) where nothing else is known, and counts where every text came from.

Users' text files are UTF-8 (a BOM is allowed), one ``key<TAB>text`` per line; blank lines are ignored and
CRLF line ends are fine. The key is the raw label as in the dataset files (``<Barack_Obama>``, ``Q42``,
``/m/06rf7``), or else the integer id. A user's text replaces the whole text of that id (name and description);
a later file overrides an earlier one, and a later line the same key's earlier line. A key that is neither a label
nor an id, a line without a tab, or an empty text is a :class:`~kgdistill.errors.DataError` naming file and line.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from kgdistill.data.kg import KG
from kgdistill.data.raw import open_text
from kgdistill.data.time import TimeSpec
from kgdistill.errors import DataError
from kgdistill.text.sources import Layer, dataset_layers, plain

__all__ = ["KGTexts", "kg_texts", "read_text_file", "time_phrase", "time_phrases"]

PathLike = str | os.PathLike[str]
_EXAMPLES = 5
_BIN = re.compile(r"^(?:(since|until) )?(-?\d+)(?:\.\.(-?\d+))?$")
_DATE = re.compile(r"^-?\d{4}-\d{2}-\d{2}$")


@dataclass
class KGTexts:
    """Texts of a KG, indexed like its ids.

    Attributes:
        entities: one text per entity id.
        relations: one text per original relation id (``kg.num_relations`` long); the reciprocal relation
            ``r + num_relations`` that models add is said by :meth:`inverse_relation` / :meth:`relation`.
        times: one phrase per time id (``"in 1998"``, ``"between 1990 and 1995"``, ``"on 2014-03-05"``);
            empty for a static KG.
        report: per kind (``entities``, ``relations``, ``times``): ``total``, ``sources`` (count per source),
            ``fallback`` (texts that are only the raw label), ``fallback_examples`` (a few such ids), ``coverage``;
            entities also ``descriptions`` (count per source) and ``with_description``.
    """

    entities: list[str]
    relations: list[str]
    times: list[str]
    report: dict[str, Any] = field(default_factory=dict)

    INVERSE_PREFIX: ClassVar[str] = "inverse of: "

    def __post_init__(self) -> None:
        for kind, texts in (
            ("entity", self.entities),
            ("relation", self.relations),
            ("time", self.times),
        ):
            empty = [i for i, t in enumerate(texts) if not t or not t.strip()]
            if empty:
                raise ValueError(f"{kind} texts must not be empty (ids {empty[:_EXAMPLES]})")

    @property
    def num_relations(self) -> int:
        return len(self.relations)

    def inverse_relation(self, r: int) -> str:
        """Text of the reciprocal of original relation ``r`` (model relation ``r + num_relations``)."""
        if not 0 <= r < self.num_relations:
            raise IndexError(f"relation id {r} is outside 0..{self.num_relations - 1}")
        return self.INVERSE_PREFIX + self.relations[r]

    def relation(self, i: int) -> str:
        """Text of model relation ``i`` in ``0 .. 2 * num_relations - 1`` (reciprocals after the originals)."""
        n = self.num_relations
        if not 0 <= i < 2 * n:
            raise IndexError(
                f"relation id {i} is outside 0..{2 * n - 1} (originals and reciprocals)"
            )
        return self.relations[i] if i < n else self.inverse_relation(i - n)

    def all_relations(self) -> list[str]:
        """The ``2 * num_relations`` texts of the originals followed by their reciprocals."""
        return [self.relation(i) for i in range(2 * self.num_relations)]


# -- times ------------------------------------------------------------------------------------------------------
def _year(text: str) -> str:
    y = int(text)
    return f"{-y} BC" if y < 0 else str(y)


def time_phrase(label: str, kind: str) -> str | None:
    """The phrase of one time label of a :class:`TimeSpec` of ``kind``; ``None`` when the label is not understood.

    Interval labels: ``1998`` -> ``in 1998``, ``1990..1995`` -> ``between 1990 and 1995``, ``since 1990`` ->
    ``since 1990``, ``until 1990..1995`` -> ``until a year between 1990 and 1995``, ``-405`` -> ``in 405 BC``,
    ``unknown`` -> ``at an unknown time``. Point labels: ``2014-03-05`` -> ``on 2014-03-05``, ``17`` ->
    ``at time step 17``.
    """
    text = label.strip()
    if text == "unknown":
        return "at an unknown time"
    if kind == "point":
        if _DATE.match(text):
            return f"on {text}"
        return f"at time step {text}" if text.lstrip("-").isdigit() else None
    m = _BIN.match(text)
    if m is None:
        return None
    modifier, lo, hi = m.groups()
    span = _year(lo) if hi is None or hi == lo else f"between {_year(lo)} and {_year(hi)}"
    if modifier is None:
        return f"in {span}" if hi is None or hi == lo else span
    return f"{modifier} {span}" if hi is None or hi == lo else f"{modifier} a year {span}"


def time_phrases(spec: TimeSpec) -> tuple[list[str], dict[str, Any]]:
    """One phrase per time id of ``spec`` and the report of how they were made; ``([], ...)`` when static."""
    phrases, sources, fallback = [], Counter[str](), []
    for i, label in enumerate(spec.labels if spec.kind != "none" else ()):
        phrase = time_phrase(label, spec.kind)
        if phrase is None:
            fallback.append(i)
            phrase = f"at time {plain(label) or i}"
            sources["raw"] += 1
        else:
            sources["unknown" if label.strip() == "unknown" else f"{spec.kind}-label"] += 1
        phrases.append(phrase)
    return phrases, _kind_report(len(phrases), sources, fallback)


# -- users' files -----------------------------------------------------------------------------------------------
def read_text_file(
    path: PathLike, labels: Sequence[str], *, kind: str = "entity"
) -> dict[int, str]:
    """Read a user's ``key<TAB>text`` file (see the module docstring) into ``id -> text``.

    Args:
        labels: the raw labels of ``kind``, in id order (``kg.entity_labels`` / ``kg.relation_labels``).
        kind: ``entity`` or ``relation``, for messages.

    Raises:
        DataError: unreadable file, a line without a tab, an unknown key or an empty text (names file and line).
    """
    path = Path(path)
    index = {lab: i for i, lab in enumerate(labels)}
    out: dict[int, str] = {}
    for ln, line in enumerate(open_text(path), start=1):
        if not line.strip():
            continue
        key, tab, text = line.partition("\t")
        if not tab:
            raise DataError(
                f"expected '<{kind} label or id><TAB><text>', found {line[:80]!r}",
                path=path,
                line=ln,
            )
        i = index.get(key, index.get(key.strip()))
        if i is None and key.strip().isdigit() and int(key.strip()) < len(labels):
            i = int(key.strip())
        if i is None:
            raise DataError(
                f"unknown {kind} '{key.strip()}': neither a label of the graph nor an id "
                f"0..{len(labels) - 1}",
                path=path,
                line=ln,
            )
        if not text.strip():
            raise DataError(f"empty text for {kind} '{key.strip()}'", path=path, line=ln)
        out[i] = text.strip()
    return out


# -- putting it together ----------------------------------------------------------------------------------------
def _kind_report(total: int, sources: Counter[str], fallback: list[int]) -> dict[str, Any]:
    return {
        "total": total,
        "sources": dict(sorted(sources.items())),
        "fallback": len(fallback),
        "fallback_examples": fallback[:_EXAMPLES],
        "coverage": round((total - len(fallback)) / total, 4) if total else 1.0,
    }


def _raw_text(label: str, kind: str, i: int) -> str:
    return plain(label.replace("_", " ")) or plain(label) or f"{kind} {i}"


def _merge(layers: Iterable[Layer]) -> tuple[dict[int, str], dict[int, str]]:
    """``id -> text`` and ``id -> source`` of layers given in increasing priority."""
    texts: dict[int, str] = {}
    source: dict[int, str] = {}
    for layer in layers:
        texts.update(layer.texts)
        source.update(dict.fromkeys(layer.texts, layer.source))
    return texts, source


def _compose(
    labels: Sequence[str],
    kind: str,
    layers: list[Layer],
    descriptions: list[Layer],
    user: list[Layer],
) -> tuple[list[str], dict[str, Any]]:
    names, name_src = _merge(layers)
    descs, desc_src = _merge(descriptions)
    given, given_src = _merge(user)
    texts, sources, fallback, with_desc = [], Counter[str](), [], Counter[str]()
    for i, label in enumerate(labels):
        if i in given:
            texts.append(given[i])
            sources[given_src[i]] += 1
            continue
        if i in names:
            text = names[i]
            sources[name_src[i]] += 1
        else:
            text = _raw_text(label, kind, i)
            sources["raw"] += 1
            fallback.append(i)
        if i in descs and descs[i] != text:
            text = f"{text}: {descs[i]}"
            with_desc[desc_src[i]] += 1
        texts.append(text)
    report = _kind_report(len(texts), sources, fallback)
    if kind == "entity":
        report["descriptions"] = dict(sorted(with_desc.items()))
        report["with_description"] = sum(with_desc.values())
    report["files"] = {la.source: la.path for la in (*layers, *descriptions, *user) if la.path}
    return texts, report


def _user_layers(
    files: Sequence[PathLike] | PathLike, labels: Sequence[str], kind: str
) -> list[Layer]:
    if isinstance(files, str | os.PathLike):
        files = [files]
    return [
        Layer(kind, f"file:{Path(f).name}", read_text_file(f, labels, kind=kind), str(f))
        for f in files
    ]


def kg_texts(
    kg: KG,
    *,
    entity_files: Sequence[PathLike] | PathLike = (),
    relation_files: Sequence[PathLike] | PathLike = (),
    descriptions: bool = True,
) -> KGTexts:
    """Texts of every entity, relation and time of ``kg``.

    Args:
        entity_files / relation_files: users' ``key<TAB>text`` files; they override the dataset's texts, a later
            file an earlier one.
        descriptions: append the short description where the dataset has one (``"Boston: city in and state
            capital of Massachusetts, United States"``, ``"stool: solid excretory product ..."``).

    Raises:
        DataError: a user's file is unreadable or has an unknown key or an empty text (names file and line).
    """
    style, layers = dataset_layers(kg)
    user_e = _user_layers(entity_files, kg.entity_labels, "entity")
    user_r = _user_layers(relation_files, kg.relation_labels, "relation")
    of = {
        k: [la for la in layers if la.kind == k]
        for k in ("entity", "entity_description", "relation")
    }
    entities, e_report = _compose(
        kg.entity_labels,
        "entity",
        of["entity"],
        of["entity_description"] if descriptions else [],
        user_e,
    )
    relations, r_report = _compose(kg.relation_labels, "relation", of["relation"], [], user_r)
    times, t_report = time_phrases(kg.time)
    report = {
        "dataset": style,
        "descriptions": descriptions,
        "entities": e_report,
        "relations": r_report,
        "times": t_report,
    }
    return KGTexts(entities=entities, relations=relations, times=times, report=report)
