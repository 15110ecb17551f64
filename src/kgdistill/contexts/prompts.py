"""Prompt paths of contextualization distillation (Li et al. 2024, arXiv 2402.01729) and the work they make.

* ``ed`` (T->ED): one *entity description* per entity of the graph;
* ``td`` (T->TD): one *triple description* per training triple (a paragraph introducing head and tail and
  their relation);
* ``ed+td``: both.

Prompts are templates with the placeholders ``{entity}`` (``entity`` template) and ``{head}``, ``{relation}``,
``{tail}`` (``triple`` template), filled with the graph's verbalised labels (:func:`kgdistill.text.kg_texts`
without descriptions: ``<Al_Gore>`` -> ``Al Gore``, ``<wasBornIn>`` -> ``was born in``); literal braces are
doubled (``{{``). A triple's key is its raw labels ``(h, r, t)``, an entity's its raw label.
"""

from __future__ import annotations

import os
import string
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, field_validator

from kgdistill.contexts.store import describe_id, record_id
from kgdistill.errors import DataError

if TYPE_CHECKING:
    from kgdistill.data.kg import KG

__all__ = [
    "DEFAULT_ENTITY",
    "DEFAULT_TRIPLE",
    "PATHS",
    "Templates",
    "WorkItem",
    "read_keys",
    "work_items",
]

PathName = Literal["ed", "td", "ed+td"]
#: prompt path -> the kinds of record it makes
PATHS: dict[str, tuple[str, ...]] = {
    "ed": ("entity",),
    "td": ("triple",),
    "ed+td": ("entity", "triple"),
}

DEFAULT_ENTITY = (
    'Describe "{entity}" in one paragraph of about 100 words: say what or who it is and give the facts it '
    "is best known for."
)
DEFAULT_TRIPLE = (
    "Here is a fact from a knowledge graph: ({head}, {relation}, {tail}). Write one paragraph of at least "
    '100 words that introduces {head} and {tail} and explains the relation "{relation}" between them.'
)
_FIELDS = {"entity": {"entity"}, "triple": {"head", "relation", "tail"}}


def _placeholders(template: str) -> set[str]:
    return {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}


class Templates(BaseModel):
    """The prompt templates (see the module docstring).

    Attributes:
        entity: the entity-description prompt, with ``{entity}``.
        triple: the triple-description prompt, with ``{head}``, ``{relation}`` and ``{tail}``.
        system: a system message sent before every prompt (``None``: the model's default).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    entity: str = DEFAULT_ENTITY
    triple: str = DEFAULT_TRIPLE
    system: str | None = None

    @field_validator("entity", "triple")
    @classmethod
    def _known_placeholders(cls, v: str, info: object) -> str:
        kind = getattr(info, "field_name", "entity")
        try:
            found = _placeholders(v)
        except ValueError as e:
            raise ValueError(
                f"malformed template ({e}); write literal braces as {{{{ }}}}"
            ) from None
        unknown = found - _FIELDS[kind]
        if unknown:
            raise ValueError(
                f"unknown placeholder(s) {sorted(unknown)}; the {kind} template knows "
                f"{sorted(_FIELDS[kind])}"
            )
        if not found:
            raise ValueError(f"the {kind} template uses none of {sorted(_FIELDS[kind])}")
        return v


@dataclass(frozen=True)
class WorkItem:
    """One record to make: its kind, key (raw labels) and rendered prompt."""

    kind: str
    key: str | tuple[str, str, str]
    prompt: str

    @property
    def rid(self) -> str:
        return record_id(self.kind, self.key)

    def describe(self) -> str:
        return describe_id(self.rid)


def work_items(kg: KG, path: str, templates: Templates | None = None) -> list[WorkItem]:
    """Every record of prompt ``path`` for ``kg``, in a stable order: entities by id, then the distinct training
    triples in file order."""
    from kgdistill.text import kg_texts

    if path not in PATHS:
        raise DataError(f"unknown prompt path '{path}'; known: {', '.join(PATHS)}")
    templates = templates or Templates()
    texts = kg_texts(kg, descriptions=False)
    items: list[WorkItem] = []
    if "entity" in PATHS[path]:
        for i, label in enumerate(kg.entity_labels):
            prompt = templates.entity.format(entity=texts.entities[i])
            items.append(WorkItem("entity", label, prompt))
    if "triple" in PATHS[path]:
        seen: set[tuple[int, int, int]] = set()
        for h, r, t in kg.facts["train"][:, :3].tolist():
            if (h, r, t) in seen:
                continue
            seen.add((h, r, t))
            key = (kg.entity_labels[h], kg.relation_labels[r], kg.entity_labels[t])
            prompt = templates.triple.format(
                head=texts.entities[h], relation=texts.relations[r], tail=texts.entities[t]
            )
            items.append(WorkItem("triple", key, prompt))
    return items


def read_keys(path: str | os.PathLike[str], items: Sequence[WorkItem]) -> set[str]:
    """The record ids listed in a keys file: one entity label, or ``head<TAB>relation<TAB>tail``, per line
    (blank lines and lines starting with ``#`` are skipped). A key that is not one of ``items`` is a
    :class:`DataError` naming file and line."""
    path = Path(path)
    known = {it.rid for it in items}
    out: set[str] = set()
    try:
        lines: Iterable[str] = path.read_text(encoding="utf-8-sig").splitlines()
    except OSError as e:
        raise DataError(f"cannot read the keys file ({e.strerror})", path=path) from None
    for ln, line in enumerate(lines, start=1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.rstrip("\r").split("\t")
        if len(fields) not in (1, 3):
            raise DataError(
                f"expected an entity label or head<TAB>relation<TAB>tail, found {len(fields)} "
                f"tab-separated fields",
                path=path,
                line=ln,
            )
        rid = record_id("entity", fields[0]) if len(fields) == 1 else record_id("triple", fields)
        if rid not in known:
            raise DataError(
                f"{describe_id(rid)} is not a key of this prompt path and dataset",
                path=path,
                line=ln,
            )
        out.add(rid)
    return out
