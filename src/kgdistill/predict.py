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
from kgdistill.errors import KGDistillError
from kgdistill.models.base import KGEModel
from kgdistill.runs import resolve_device
from kgdistill.types import FloatTensor, LongTensor

__all__ = ["Answer", "LabelIndex", "Predictor", "Query"]

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
            KGDistillError: unknown (with close matches) or ambiguous once normalised.
        """
        if label in self.exact:
            return self.exact[label]
        hits = self.normalised.get(_norm(label), [])
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise KGDistillError(
                f"{self.kind} '{label}' is ambiguous: {', '.join(self.labels[i] for i in hits[:5])}"
            )
        close = difflib.get_close_matches(_norm(label), list(self.normalised), n=3)
        names = [self.labels[self.normalised[c][0]] for c in close]
        hint = f" (close: {', '.join(names)})" if names else ""
        raise KGDistillError(f"unknown {self.kind} '{label}'{hint}")


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


class Predictor:
    """A trained model ready for queries (see the module docstring).

    Args:
        model: the model (moved to ``device``, put in eval mode).
        id_maps: ``{"entity": [...], "relation": [...], "time": [...]}`` labels by id, as in checkpoints.
        time: the time protocol (maps a user's time to a time id).
        known: a filter index of the training facts (static filter), or ``None``.
    """

    def __init__(
        self,
        model: KGEModel,
        id_maps: dict[str, list[str]],
        time: TimeSpec,
        *,
        known: FilterIndex | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        self.device = torch.device(device)
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
        )

    @property
    def temporal(self) -> bool:
        return self.time.kind != "none"

    def query(
        self,
        relation: str,
        *,
        head: str | None = None,
        tail: str | None = None,
        time: str | None = None,
    ) -> Query:
        """Resolve labels (and a time: a year, ``since 1990``, a date or a time label) into a :class:`Query`."""
        if (head is None) == (tail is None):
            raise KGDistillError("give exactly one of head and tail")
        r = self.relations.id(relation)
        anchor_label = head if head is not None else tail
        assert anchor_label is not None
        anchor = self.entities.id(anchor_label)
        if tail is not None:
            r += len(self.relations)
        row = [anchor, r, 0]
        time_label = None
        if self.temporal:
            if time is None:
                mid = self.time.labels[len(self.time.labels) // 2]
                raise KGDistillError(f"this model is temporal: give a time (e.g. {mid})")
            tid = self.time.time_id(time)
            row.append(tid)
            time_label = self.time.labels[tid]
        elif time is not None:
            raise KGDistillError("this model is static: it takes no time")
        return Query(
            row=tuple(row),
            direction="tail" if head is not None else "head",
            anchor=self.entities.labels[anchor],
            relation=self.relations.labels[self.relations.id(relation)],
            time=time_label,
        )

    @torch.inference_mode()
    def topk_ids(
        self, queries: LongTensor, k: int = 10, *, exclude_known: bool = False
    ) -> tuple[FloatTensor, LongTensor]:
        """Best ``k`` answers of a batch of id queries ``(B, 3|4)``: ``scores (B, k)`` and ``ids (B, k)``.

        Args:
            exclude_known: leave out answers already known in training (needs the training facts); their
                scores become ``-inf``, so they come last when ``k`` reaches them.
        """
        if k < 1:
            raise KGDistillError(f"k must be >= 1, got {k}")
        q = queries.to(self.device)
        scores = self.model.score_all(q).float()
        if exclude_known:
            if self.known is None:
                raise KGDistillError(
                    "cannot leave out known answers: the run's training data could not be read"
                )
            rows, cols = self.known.known(q)
            scores[rows, cols] = float("-inf")
        top = torch.topk(scores, min(k, scores.shape[1]), dim=1)
        return top.values, top.indices

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

    def topk(self, query: Query, k: int = 10, *, exclude_known: bool = False) -> list[Answer]:
        """The best ``k`` answers of one query, best first."""
        q = torch.tensor([query.row], dtype=torch.long)
        scores, ids = self.topk_ids(q, k, exclude_known=exclude_known)
        known = self.is_known(q, ids)
        return [
            Answer(
                rank=i + 1,
                entity=self.entities.labels[int(e)],
                id=int(e),
                score=float(s),
                known=None if known is None else bool(known[0, i]),
            )
            for i, (s, e) in enumerate(zip(scores[0], ids[0], strict=True))
            if not (exclude_known and bool(torch.isneginf(s)))  # hidden answers sort last at -inf
        ]


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
