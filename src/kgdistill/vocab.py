"""Which graph a model was built for, and the check that a graph about to be ranked on is that graph.

A model holds one embedding row per entity, relation (and reciprocal) and time of the graph it was built for.
Ranking it on another graph would index outside those tables (an ``IndexError`` deep inside PyTorch) or, worse,
rank with rows that mean other entities. Every path that evaluates a model on a graph
(:func:`kgdistill.api.evaluate`, :func:`kgdistill.api.evaluate_run` and so ``kgdistill evaluate``, a resumed
:class:`kgdistill.run.Run`) first compares the model's :class:`GraphVocab` with the graph's and raises one
:class:`~kgdistill.errors.GraphMismatchError` naming both.

A model built by :func:`kgdistill.models.build_model` records its sizes and time labels; a run
(:meth:`kgdistill.run.Run.build`) and a checkpoint (:func:`kgdistill.checkpoint.load_model`) add the dataset
name and the entity and relation labels, so the check also catches a graph of the same sizes with other labels.
This module imports nothing heavy (no PyTorch).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kgdistill.errors import GraphMismatchError

if TYPE_CHECKING:
    from kgdistill.data.kg import KG

__all__ = ["GraphVocab", "check_graph", "model_vocab", "record_vocab"]

#: the attribute of a model that holds its :class:`GraphVocab` (plain data about the model itself)
_ATTR = "graph_vocab"


@dataclass(frozen=True)
class GraphVocab:
    """The vocabulary of a graph, as a model built for it knows it.

    Attributes:
        num_entities / num_relations: sizes (``num_relations`` counts the original relations, not reciprocals).
        time_labels: the labels of the time ids (empty for a static graph).
        dataset: the graph's name, when known (a run or a checkpoint records it).
        entity_labels / relation_labels: labels by id, when known (``None``: only the sizes are compared).
    """

    num_entities: int
    num_relations: int
    time_labels: tuple[str, ...] = ()
    dataset: str | None = None
    entity_labels: tuple[str, ...] | None = None
    relation_labels: tuple[str, ...] | None = None

    @property
    def num_times(self) -> int:
        return len(self.time_labels)

    @classmethod
    def of_kg(cls, kg: KG) -> GraphVocab:
        """A graph's vocabulary, labels included."""
        return cls(
            num_entities=kg.num_entities,
            num_relations=kg.num_relations,
            time_labels=tuple(kg.time.labels),
            dataset=kg.name,
            entity_labels=tuple(kg.entity_labels),
            relation_labels=tuple(kg.relation_labels),
        )

    @classmethod
    def of_checkpoint(cls, meta: Mapping[str, Any]) -> GraphVocab:
        """The vocabulary a checkpoint's model was trained on, from its metadata (``id_maps``, ``data.name``)."""
        ids = meta["id_maps"]
        data = meta.get("data") or {}
        return cls(
            num_entities=len(ids["entity"]),
            num_relations=len(ids["relation"]),
            time_labels=tuple(ids.get("time", ())),
            dataset=data.get("name") if isinstance(data, Mapping) else None,
            entity_labels=tuple(ids["entity"]),
            relation_labels=tuple(ids["relation"]),
        )

    def describe(self) -> str:
        """``'yago11k' (10,623 entities, 10 relations, 63 times)``."""
        name = f"'{self.dataset}'" if self.dataset else "an unnamed graph"
        times = f", {self.num_times:,} times" if self.num_times else ""
        return f"{name} ({self.num_entities:,} entities, {self.num_relations:,} relations{times})"

    def difference(self, other: GraphVocab, *, times: bool = True) -> str | None:
        """The first way ``other`` differs from this vocabulary (``None``: it is the same vocabulary).

        Args:
            times: compare the time labels too (a static model does not read the time column).
        """
        for what, mine, theirs in (
            ("entities", self.num_entities, other.num_entities),
            ("relations", self.num_relations, other.num_relations),
            *((("times", self.num_times, other.num_times),) if times else ()),
        ):
            if mine != theirs:
                return f"{mine:,} vs {theirs:,} {what}"
        pairs: list[tuple[str, Sequence[str] | None, Sequence[str] | None]] = [
            ("entity", self.entity_labels, other.entity_labels),
            ("relation", self.relation_labels, other.relation_labels),
        ]
        if times:
            pairs.append(("time", self.time_labels, other.time_labels))
        for what, a, b in pairs:
            if a is None or b is None or tuple(a) == tuple(b):
                continue
            i = next(i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y)
            return f"{what} {i} is '{a[i]}' vs '{b[i]}'"
        return None


def record_vocab(model: Any, vocab: GraphVocab) -> None:
    """Remember on ``model`` the vocabulary it was built for (replacing a less complete one)."""
    object.__setattr__(model, _ATTR, vocab)


def model_vocab(model: Any) -> GraphVocab | None:
    """The vocabulary ``model`` was built for, or ``None`` when it was not recorded (a model built by hand)."""
    vocab = getattr(model, _ATTR, None)
    return vocab if isinstance(vocab, GraphVocab) else None


def check_graph(model: Any, kg: KG | GraphVocab, *, what: str = "the model") -> None:
    """Raise :class:`~kgdistill.errors.GraphMismatchError` unless ``kg`` is the graph ``model`` was built for.

    Sizes are always compared (time only for a temporal model), labels where both sides know them. A model that
    recorded no vocabulary (not built through :func:`kgdistill.models.build_model`) is not checked.

    Args:
        model: a model (its recorded vocabulary is read) or a :class:`GraphVocab`.
        kg: the graph about to be ranked on.
        what: how the message names the model (``"runs/x/best.safetensors"``, say).
    """
    mine = model if isinstance(model, GraphVocab) else model_vocab(model)
    if mine is None:
        return
    theirs = kg if isinstance(kg, GraphVocab) else GraphVocab.of_kg(kg)
    temporal = bool(getattr(model, "temporal", True)) and mine.num_times > 0
    diff = mine.difference(theirs, times=temporal)
    if diff is not None:
        raise GraphMismatchError(
            f"{what} was trained on {mine.describe()} and cannot be evaluated on {theirs.describe()} "
            f"({diff}); evaluate it on the graph it was trained on (same dataset, data root and time "
            "protocol)"
        )
