"""Answering queries with a trained run: :class:`Predictor` loads it once and keeps label indexes.

``kgdistill predict`` uses it, and so will the HTTP service and the exporters. A query is
``(head, relation, ?, [time])`` (tail prediction) or ``(?, relation, tail, [time])`` (head prediction, asked as
a tail query on the reciprocal relation), by label or by id; answers come back best first, with their scores
and, when the training facts are available, whether each answer is already known in training (``known``), so
that known answers can be marked or left out.

Labels are looked up in dictionaries built once (exact label, then a normalised form: case, ``<>`` and ``_``
versus space ignored), never by scanning the vocabulary per call.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from kgdistill.checkpoint import load_checkpoint, load_model
from kgdistill.config import RunConfig
from kgdistill.data.filters import FilterIndex
from kgdistill.data.time import TimeSpec
from kgdistill.errors import KGDistillError, QueryError
from kgdistill.models.base import KGEModel
from kgdistill.runs import resolve_device
from kgdistill.types import FloatTensor, LongTensor

__all__ = ["Answer", "LabelIndex", "Predictor", "Query", "TopK"]

log = logging.getLogger(__name__)


def _norm(label: str) -> str:
    return label.strip().strip("<>").replace("_", " ").casefold()


class LabelIndex:
    """Label -> id, exact or normalised (case, ``<>`` and ``_`` vs space ignored); built once, O(1) per lookup.

    Args:
        labels: id -> label.
        kind: what the labels name (``entity``, ``relation``), for error messages.
    """

    def __init__(self, labels: Sequence[str], kind: str) -> None:
        self.labels = list(labels)
        self.kind = kind
        self.exact = {label: i for i, label in enumerate(self.labels)}
        self.normalised: dict[str, list[int]] = {}
        for i, label in enumerate(self.labels):
            self.normalised.setdefault(_norm(label), []).append(i)

    def __len__(self) -> int:
        return len(self.labels)

    def id(self, label: str) -> int:
        """The id of ``label``.

        Raises:
            QueryError: unknown (with close matches as ``suggestions``) or ambiguous once normalised.
        """
        if label in self.exact:
            return self.exact[label]
        hits = self.normalised.get(_norm(label), [])
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            names = tuple(self.labels[i] for i in hits[:5])
            raise QueryError(
                f"{self.kind} '{label}' is ambiguous: {', '.join(names)}", suggestions=names
            )
        names = self.close(label)
        hint = f" (close: {', '.join(names)})" if names else ""
        raise QueryError(f"unknown {self.kind} '{label}'{hint}", suggestions=names)

    def close(self, label: str, n: int = 3) -> tuple[str, ...]:
        """Up to ``n`` known labels close to ``label`` (difflib over the normalised labels), best first."""
        close = difflib.get_close_matches(_norm(label), list(self.normalised), n=n)
        return tuple(self.labels[self.normalised[c][0]] for c in close)

    def check(self, i: int) -> int:
        """``i`` when it is an id of this index.

        Raises:
            QueryError: out of range.
        """
        if not 0 <= i < len(self.labels):
            raise QueryError(f"{self.kind} id {i} is out of range (0..{len(self.labels) - 1})")
        return i

    def resolve(self, key: str | int) -> int:
        """A label (``str``) or an id (``int``) -> its id; :class:`QueryError` when unknown."""
        return self.check(key) if isinstance(key, int) else self.id(key)


@dataclass(frozen=True)
class Query:
    """A resolved query: ids and the labels they came from.

    Attributes:
        row: ``(3,)`` or ``(4,)`` query ids ``(anchor, relation or its reciprocal, 0, [time id])``.
        direction: ``tail`` (``(head, r, ?)``) or ``head`` (``(?, r, tail)``).
        anchor / relation: the labels of the given entity and relation.
        time: the time label the query's time mapped to (``None`` when static).
    """

    row: tuple[int, ...]
    direction: str
    anchor: str
    relation: str
    time: str | None = None

    def describe(self) -> str:
        """``(<A>, rel, ?) at 1990..1993`` or ``(?, rel, <B>)``."""
        text = (
            f"({self.anchor}, {self.relation}, ?)"
            if self.direction == "tail"
            else f"(?, {self.relation}, {self.anchor})"
        )
        return text + (f" at {self.time}" if self.time is not None else "")


@dataclass(frozen=True)
class Answer:
    """One answer: its rank (1 = best), entity label and id, score, and whether training already holds it
    (``None``: unknown, the training facts were not loaded)."""

    rank: int
    entity: str
    id: int
    score: float
    known: bool | None = None


@dataclass(frozen=True)
class TopK:
    """The best answers of a batch of queries: ``scores (B, k)``, entity ``ids (B, k)``, and ``known (B, k)``
    (whether each answer is a training fact; ``None`` without the training facts)."""

    scores: FloatTensor
    ids: LongTensor
    known: torch.Tensor | None = None


class Predictor:
    """A trained model ready for queries (see the module docstring).

    Args:
        model: the model (moved to ``device``, put in eval mode).
        id_maps: ``{"entity": [...], "relation": [...], "time": [...]}`` labels by id, as in checkpoints.
        time: the time protocol (maps a user's time to a time id).
        known: a filter index of the training facts (static filter), or ``None``.
        model_name: the model's registry name (``ta_distmult``), for reports.
    """

    def __init__(
        self,
        model: KGEModel,
        id_maps: dict[str, list[str]],
        time: TimeSpec,
        *,
        known: FilterIndex | None = None,
        device: torch.device | str = "cpu",
        model_name: str | None = None,
    ) -> None:
        self.device = torch.device(device)
        self.model_name = model_name or type(model).__name__
        self.model = model.to(self.device).eval().requires_grad_(False)
        self.entities = LabelIndex(id_maps["entity"], "entity")
        self.relations = LabelIndex(id_maps["relation"], "relation")
        self.time = time
        self.known = None if known is None else known.to(self.device)

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        device: str = "auto",
        known_facts: bool = True,
        data_root: str | None = None,
    ) -> Predictor:
        """Load a run folder (its best checkpoint) or a checkpoint file once.

        Args:
            known_facts: read the run's training data to mark answers known in training; when the data
                cannot be read, answers are left unmarked (``known=None``) with an info line.
            data_root: where the run's dataset is found (as ``--data-root``).
        """
        ckpt = load_checkpoint(path)
        model = load_model(ckpt)
        known = None
        if known_facts:
            known = _training_filter(ckpt.meta, data_root)
        return cls(
            model,
            ckpt.meta["id_maps"],
            ckpt.time,
            known=known,
            device=resolve_device(device),
            model_name=str(ckpt.meta["model"]["name"]),
        )

    @property
    def temporal(self) -> bool:
        return self.time.kind != "none"

    def query(
        self,
        relation: str | int,
        *,
        head: str | int | None = None,
        tail: str | int | None = None,
        time: str | None = None,
        time_id: int | None = None,
    ) -> Query:
        """Resolve a query into a :class:`Query`: labels (``str``) or ids (``int``) of the relation and the given
        entity, and a time (a year, ``since 1990``, a date or a time label) or a ``time_id``.

        Raises:
            QueryError: naming the field at fault (``relation``, ``head``, ``tail``, ``time``).
        """
        if (head is None) == (tail is None):
            raise QueryError("give exactly one of head and tail", field="head")
        side = "head" if head is not None else "tail"
        try:
            r = self.relations.resolve(relation)
        except QueryError as e:
            raise e.at("relation") from None
        anchor_key = head if head is not None else tail
        assert anchor_key is not None
        try:
            anchor = self.entities.resolve(anchor_key)
        except QueryError as e:
            raise e.at(side) from None
        row = [anchor, r + (len(self.relations) if side == "tail" else 0), 0]
        time_label = None
        if self.temporal:
            tid = self.time_id(time, time_id)
            row.append(tid)
            time_label = self.time.labels[tid]
        elif time is not None or time_id is not None:
            raise QueryError("this model is static: it takes no time", field="time")
        return Query(
            row=tuple(row),
            direction="tail" if side == "head" else "head",
            anchor=self.entities.labels[anchor],
            relation=self.relations.labels[r],
            time=time_label,
        )

    def time_id(self, time: str | None, time_id: int | None = None) -> int:
        """The time id of a temporal query's time (as ``kgdistill predict --time``) or of a ``time_id``.

        Raises:
            QueryError: no time, both, a time outside the model's range or never seen (``field="time"``).
        """
        if time is not None and time_id is not None:
            raise QueryError("give time or time_id, not both", field="time")
        if time_id is not None:
            if not 0 <= time_id < self.time.num_times:
                raise QueryError(
                    f"time id {time_id} is out of range (0..{self.time.num_times - 1})",
                    field="time_id",
                )
            return time_id
        if time is None:
            mid = self.time.labels[len(self.time.labels) // 2]
            raise QueryError(f"this model is temporal: give a time (e.g. {mid})", field="time")
        try:
            return self.time.time_id(time)
        except KGDistillError as e:  # a DataError of the parser or the protocol's own message
            raise QueryError(str(e), field="time") from None

    @torch.inference_mode()
    def topk_batch(
        self, queries: LongTensor, k: int = 10, *, exclude_known: bool | torch.Tensor = False
    ) -> TopK:
        """Best ``k`` answers of a batch of id queries ``(B, 3|4)``: one ``score_all`` call, one filter lookup.

        Args:
            exclude_known: leave out answers already known in training, for every query (``bool``) or per
                query (a ``(B,)`` bool tensor); their scores become ``-inf``, so they come last when ``k``
                reaches them. Needs the training facts.

        Returns:
            :class:`TopK` with ``scores (B, k')``, ``ids (B, k')`` and ``known (B, k')`` (``None`` without the
            training facts), ``k' = min(k, E)``.
        """
        if k < 1:
            raise QueryError(f"k must be >= 1, got {k}", field="k")
        q = queries.to(self.device)
        exclude = torch.as_tensor(exclude_known, dtype=torch.bool, device=self.device)
        if bool(exclude.any()) and self.known is None:
            raise QueryError(
                "cannot leave out known answers: the run's training data could not be read",
                field="exclude_known",
            )
        scores = self.model.score_all(q).float()
        rows = cols = None
        if self.known is not None:
            rows, cols = self.known.known(q)
        if rows is not None and cols is not None and bool(exclude.any()):
            hide = exclude.expand(len(q)).index_select(0, rows)
            scores[rows[hide], cols[hide]] = float("-inf")
        top = torch.topk(scores, min(k, scores.shape[1]), dim=1)
        known = None
        if rows is not None and cols is not None:
            mask = torch.zeros_like(scores, dtype=torch.bool)
            mask[rows, cols] = True
            known = mask.gather(1, top.indices)
        return TopK(top.values, top.indices, known)

    def topk_ids(
        self, queries: LongTensor, k: int = 10, *, exclude_known: bool = False
    ) -> tuple[FloatTensor, LongTensor]:
        """Best ``k`` answers of a batch of id queries ``(B, 3|4)``: ``scores (B, k)`` and ``ids (B, k)``
        (see :meth:`topk_batch`)."""
        top = self.topk_batch(queries, k, exclude_known=exclude_known)
        return top.scores, top.ids

    def is_known(self, queries: LongTensor, ids: LongTensor) -> torch.Tensor | None:
        """Whether each answer ``ids (B, k)`` of ``queries (B, 3|4)`` is a training fact ``(B, k)``; ``None``
        without the training facts."""
        if self.known is None:
            return None
        q = queries.to(self.device)
        rows, cols = self.known.known(q)
        mask = torch.zeros(len(q), len(self.entities), dtype=torch.bool, device=self.device)
        mask[rows, cols] = True
        return mask.gather(1, ids.to(self.device))

    @torch.inference_mode()
    def score_triples(self, facts: LongTensor) -> tuple[FloatTensor, torch.Tensor | None]:
        """Scores of given facts ``(B, 3|4)`` (``h, r, t, [time]``; the same score ``t`` has among the answers
        of ``(h, r, ?)``): ``scores (B,)`` and whether each fact is a training fact ``(B,)`` (``None`` without
        the training facts)."""
        f = facts.to(self.device)
        scores = self.model.score_hrt(f).float()
        known = self.is_known(f, f[:, 2:3])
        return scores, None if known is None else known[:, 0]

    def answers(self, top: TopK, i: int, *, exclude_known: bool = False) -> list[Answer]:
        """Row ``i`` of a :meth:`topk_batch` result as :class:`Answer` s, best first (answers left out by
        ``exclude_known`` dropped)."""
        scores, ids = top.scores[i].tolist(), top.ids[i].tolist()
        known = None if top.known is None else top.known[i].tolist()
        return [
            Answer(
                rank=j + 1,
                entity=self.entities.labels[e],
                id=e,
                score=s,
                known=None if known is None else bool(known[j]),
            )
            for j, (s, e) in enumerate(zip(scores, ids, strict=True))
            if not (exclude_known and s == float("-inf"))  # hidden answers sort last at -inf
        ]

    def topk(self, query: Query, k: int = 10, *, exclude_known: bool = False) -> list[Answer]:
        """The best ``k`` answers of one query, best first."""
        q = torch.tensor([query.row], dtype=torch.long)
        return self.answers(
            self.topk_batch(q, k, exclude_known=exclude_known), 0, exclude_known=exclude_known
        )


def _training_filter(meta: dict[str, object], data_root: str | None) -> FilterIndex | None:
    """A static filter of the run's training facts, or ``None`` when its data cannot be read."""
    from kgdistill.run import load_data

    try:
        cfg = RunConfig.model_validate(meta["config"])
        data = cfg.data.model_copy(update={"root": data_root}) if data_root else cfg.data
        kg = load_data(data)
    except (KGDistillError, KeyError, ValueError) as e:
        log.info("answers are not marked as known: the training data could not be read (%s)", e)
        return None
    if kg.id_maps() != meta["id_maps"]:
        log.info("answers are not marked as known: the data read now has another vocabulary")
        return None
    return FilterIndex.build(kg, ("train",), time_aware=False)
