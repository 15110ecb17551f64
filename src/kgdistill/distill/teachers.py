"""Teachers: frozen models whose outputs a student learns from, always answered in the student's id space.

* :class:`KGETeacher` (``name: checkpoint``) - a trained checkpoint of any family, size, static or temporal.
  When its vocabulary differs from the student's dataset, entities, relations and times are aligned by their
  labels (the label maps stored in both checkpoints); the coverage is logged and a teacher covering less than
  ``min_coverage`` of the student's entities is refused with a clear error. Entities, queries or times the
  teacher does not know come back masked. With ``score_cache: FILE`` its full score rows over the student's
  training queries are written to FILE once (float16, keyed by a digest of the checkpoint) and 1-N steps read
  them instead of a forward pass over all entities; embeddings and every other query come from the checkpoint.
* :class:`CachedTeacher` (``name: cache``) - outputs written to disk ahead of time by ``kgdistill cache``
  (full score rows or top-k, safetensors), so an expensive teacher runs once.

Every teacher is called as ``teacher(queries, candidates, fields)`` and returns a
:class:`~kgdistill.models.ModelOutput` with ``scores (B, C)``, ``mask (B, C)`` (valid entries) and, when it
has them and they are asked for, ``h``, ``r``, ``t`` and ``time_table``.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated

import torch
from pydantic import Field

from kgdistill.checkpoint import load_checkpoint, load_model
from kgdistill.data.kg import KG
from kgdistill.distill.base import ALL_FIELDS, TEACHERS, Teacher
from kgdistill.distill.cache import CachedTeacher, write_cache
from kgdistill.errors import ConfigError
from kgdistill.models.base import KGEModel, ModelOutput
from kgdistill.types import HEAD, REL, TAIL, TIME, FloatTensor, LongTensor

__all__ = ["ALL_FIELDS", "TEACHERS", "KGETeacher", "Teacher", "align", "file_digest"]

log = logging.getLogger(__name__)


def align(
    student: Sequence[str], teacher: Sequence[str], aliases: Mapping[str, int] | None = None
) -> LongTensor:
    """Teacher id of every student label, ``-1`` where the teacher lacks it: ``(len(student),)``.

    ``aliases`` are further labels of teacher ids (the tied copies of an aligned entity in a union graph).
    """
    index = {**(aliases or {}), **{label: i for i, label in enumerate(teacher)}}
    return torch.tensor([index.get(label, -1) for label in student], dtype=torch.long)


@TEACHERS.register("checkpoint")
class KGETeacher(torch.nn.Module):
    """A frozen checkpoint answering in the student's ids (see the module docstring).

    Args:
        path: a checkpoint file or a run folder (its ``best.safetensors``).
        kg: the student's graph (its labels define the student's ids).
        min_coverage: least fraction of the student's entities the teacher must know.
        score_cache: a file of this teacher's full score rows over the student's training queries (float16,
            the format of :mod:`kgdistill.distill.cache`), written here on first use and read by every later
            student: 1-N steps take their scores from it instead of a forward pass over all entities (most of
            a KD step's time when the teacher is several times the student's size); embeddings, candidate
            scores and queries outside the training split still come from the checkpoint. The file records a
            digest of the checkpoint and is refused for another one.
    """

    def __init__(
        self,
        *,
        path: str,
        kg: KG,
        min_coverage: Annotated[float, Field(ge=0, le=1)] = 0.9,
        score_cache: str | None = None,
    ) -> None:
        super().__init__()
        ckpt = load_checkpoint(path)
        self.model = load_model(ckpt).eval().requires_grad_(False)
        if self.model.interaction.kind == "joint":
            raise ConfigError(
                f"teacher {ckpt.path} is a '{ckpt.meta['model']['name']}' model: it scores (query, entity) pairs "
                "jointly, one transformer pass per pair, so it cannot answer for every entity at each step; "
                "use it as a re-ranker, or distil from a bi-encoder or a KGE model"
            )
        ids = ckpt.meta["id_maps"]
        self.num_relations_teacher = len(ids["relation"])
        self.num_relations = kg.num_relations
        self.identity = ids == kg.id_maps()
        ent = align(kg.entity_labels, ids["entity"], ids.get("entity_aliases"))
        rel = align(kg.relation_labels, ids["relation"])
        tim = (
            align(kg.time.labels, ids.get("time", []))
            if kg.temporal
            else torch.zeros(0, dtype=torch.long)
        )
        self.coverage = {
            "entities": float((ent >= 0).float().mean()),
            "relations": float((rel >= 0).float().mean()),
            "times": float((tim >= 0).float().mean()) if len(tim) else 1.0,
        }
        log.info(
            "teacher %s: coverage of the student's vocabulary %s",
            ckpt.path,
            {k: f"{v:.1%}" for k, v in self.coverage.items()},
        )
        if self.coverage["entities"] < min_coverage:
            raise ConfigError(
                f"teacher {ckpt.path} knows only {self.coverage['entities']:.1%} of the {kg.num_entities} entities "
                f"of '{kg.name}' (min_coverage is {min_coverage:.0%}): it was trained on another graph"
            )
        if self.model.temporal and not kg.temporal:
            raise ConfigError(
                f"teacher {ckpt.path} is temporal but the student's dataset '{kg.name}' is static"
            )
        self.covers_all = bool((ent >= 0).all())
        self.register_buffer("ent", ent, persistent=False)
        self.register_buffer(
            "rel",
            torch.cat([rel, torch.where(rel >= 0, rel + self.num_relations_teacher, rel)]),
            persistent=False,
        )
        self.register_buffer("tim", tim, persistent=False)
        self.static_teacher = not self.model.temporal
        self.source = str(ckpt.path)
        self.model_name = ckpt.meta["model"]["name"]
        self.rows: CachedTeacher | None = None
        self._kg = kg
        self._digest = ""
        self._score_cache = None if score_cache is None else Path(score_cache).expanduser()
        if self._score_cache is not None:
            self._digest = file_digest(Path(self.source))
            # an existing file is checked before any step; a missing one is written on first use
            if self._score_cache.is_file():
                self.rows = self._read_rows()

    def _write_rows(self) -> CachedTeacher:
        """Score every training query of the student's graph once and write the score cache."""
        path, kg = self._score_cache, self._kg
        assert path is not None
        log.info(
            "writing teacher %s's score rows for '%s' to %s (once)", self.source, kg.name, path
        )
        self._score_cache = None  # the writer asks this teacher for its own scores
        try:
            write_cache(
                path, self, kg, k=None, source=self.source, extra={"teacher_sha256": self._digest}
            )
        finally:
            self._score_cache = path
        return self._read_rows()

    def _read_rows(self) -> CachedTeacher:
        """The score cache, checked: full rows, written from this checkpoint."""
        path = self._score_cache
        rows = CachedTeacher(path=str(path), kg=self._kg)
        if rows.meta.get("k") is not None:
            raise ConfigError(
                f"teachers score_cache {path} holds top-{rows.meta['k']} rows: a checkpoint teacher reads full "
                "rows (kgdistill cache --full), or use the top-k file as a teacher of its own ({name: cache})"
            )
        if rows.meta.get("teacher_sha256") != self._digest:
            raise ConfigError(
                f"teachers score_cache {path} was written from another checkpoint than {self.source} "
                f"(source: {rows.meta.get('source') or 'unknown'}); remove it and it is written again"
            )
        return rows

    def _map_queries(self, queries: LongTensor) -> tuple[LongTensor, torch.Tensor]:
        """Student queries -> teacher queries ``(B, 3|4)`` and the rows the teacher can answer ``(B,)``."""
        q = queries.clone()
        q[:, HEAD] = self.ent[queries[:, HEAD]]
        q[:, TAIL] = self.ent[queries[:, TAIL]]
        q[:, REL] = self.rel[queries[:, REL]]
        if queries.shape[1] > 3 and not self.static_teacher:
            q[:, TIME] = self.tim[queries[:, TIME]]
        elif self.static_teacher:
            q = q[:, :3]
        ok = (q[:, [HEAD, REL] + ([TIME] if q.shape[1] > 3 else [])] >= 0).all(dim=1)
        return q.clamp_min(0), ok

    @torch.no_grad()
    def forward(
        self,
        queries: LongTensor,
        candidates: LongTensor | None = None,
        fields: frozenset[str] = ALL_FIELDS,
    ) -> ModelOutput:
        """Teacher outputs for the student's ``queries (B, 3|4)`` and ``candidates (B, C)`` (None = all)."""
        if self.identity:
            q, ok = queries, None
        else:
            q, ok = self._map_queries(queries)
        model = self.model
        h, r = model.encode(q)
        out = ModelOutput(
            scores=torch.empty(0, device=queries.device),
            h=h,
            r=r,
            time_table=model.relations.time_table() if "time_table" in fields else None,
        )
        ent = None if self.identity else self.ent
        if "t" in fields:
            if candidates is None:
                table = model.entities.table()
                out.t = table if ent is None else table[ent.clamp_min(0)]
                out.known = None if ent is None or self.covers_all else ent >= 0
            else:
                out.t = model.entities(candidates if ent is None else ent[candidates].clamp_min(0))
        if "scores" in fields:
            if candidates is None and self._score_cache is not None:
                out.scores, out.mask = self._cached_scores(queries, q, h, r, ok)
            else:
                out.scores, out.mask = self._model_scores(q, h, r, ok, candidates)
        return out

    def _model_scores(
        self,
        q: LongTensor,
        h: FloatTensor,
        r: FloatTensor,
        ok: torch.Tensor | None,
        candidates: LongTensor | None,
    ) -> tuple[FloatTensor, torch.Tensor | None]:
        """The checkpoint's scores of the mapped queries ``q (B, 3|4)`` (encoded as ``h``, ``r``) against all
        the student's entities ``(B, E)`` or the ``candidates (B, C)``, and the mask of valid entries (None:
        all valid)."""
        model, ent = self.model, None if self.identity else self.ent
        if candidates is None:
            if ent is None and type(model).score_all is not KGEModel.score_all:
                scores = model.score_all(q)  # its own scoring (HyTE's projections)
            elif ent is None:  # from the queries encoded above: a text encoder does not run twice
                scores = model.interaction.score_all(
                    model.interaction.combine(h, r), model.entities.table()
                )
            else:  # score only the student's entities, in the student's order: (B, E_student)
                table = model.entities.table()[ent.clamp_min(0)]
                scores = model.interaction.score_all(model.interaction.combine(h, r), table)
        else:
            t_cand = candidates if ent is None else ent[candidates].clamp_min(0)
            scores = model(q, t_cand).scores
        # no mask when the teacher knows every entity and can answer every query: a (B, E) mask costs
        # several full passes per step in every term that reads it
        if ent is None or (self.covers_all and bool(ok.all())):  # type: ignore[union-attr]
            return scores, None
        valid = (ent >= 0)[None, :] if candidates is None else (ent[candidates] >= 0)
        return scores, valid.expand_as(scores) & ok[:, None]  # type: ignore[index]

    def _cached_scores(
        self,
        queries: LongTensor,
        q: LongTensor,
        h: FloatTensor,
        r: FloatTensor,
        ok: torch.Tensor | None,
    ) -> tuple[FloatTensor, torch.Tensor | None]:
        """Scores ``(B, E)`` and mask of the student's ``queries`` from the score cache (written first when it
        is missing, on the teacher's device); queries it lacks are scored by the checkpoint."""
        if self.rows is None:
            self.rows = self._write_rows().to(queries.device)
        pos, found = self.rows.lookup(queries)
        scores = self.rows.scores[pos].float()
        missing = (~found).nonzero().squeeze(1)
        if len(missing):
            sub_ok = None if ok is None else ok[missing]
            fill, mask = self._model_scores(q[missing], h[missing], r[missing], sub_ok, None)
            scores[missing] = fill if mask is None else fill.masked_fill(~mask, float("-inf"))
        # the writer stored what the teacher cannot answer as -inf; no mask when it answers everything
        if self.identity or (self.covers_all and (ok is None or bool(ok.all()))):
            return scores, None
        mask = torch.isfinite(scores)
        return scores.masked_fill(~mask, 0.0), mask

    @torch.no_grad()
    def score_all(self, queries: LongTensor) -> FloatTensor:
        """Scores of all the student's entities ``(B, E)``, ``-inf`` where the teacher cannot answer, so that
        :func:`kgdistill.evaluate.evaluate` ranks a teacher on the student's graph."""
        out = self.forward(queries, None, frozenset({"scores"}))
        return out.scores if out.mask is None else out.scores.masked_fill(~out.mask, float("-inf"))


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes (a checkpoint a score cache was written from)."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def describe_teacher(teacher: torch.nn.Module) -> dict[str, object]:
    """What a run's ``metrics.json`` records about a teacher."""
    if isinstance(teacher, KGETeacher):
        d: dict[str, object] = {
            "kind": "checkpoint",
            "source": teacher.source,
            "model": teacher.model_name,
            "num_parameters": teacher.model.num_parameters(),
            "coverage": teacher.coverage,
        }
        if teacher.rows is not None:
            d["score_cache"] = {"queries": teacher.rows.meta["queries"], "format": "float16 rows"}
        return d
    return {"kind": type(teacher).__name__, **getattr(teacher, "meta", {})}


def teacher_from_spec(
    name: str, spec: Mapping[str, object], kg: KG, device: torch.device
) -> torch.nn.Module:
    """Build the teacher ``spec = {"name": "checkpoint" | "cache", **kwargs}`` for the student's ``kg``."""
    if "name" not in spec:
        raise ConfigError(
            f"config key 'teachers.{name}.name' is missing (one of {', '.join(TEACHERS.names())})"
        )
    _check_path(name, spec)
    teacher = TEACHERS.build(dict(spec), where=f"teachers.{name}", kg=kg)
    return teacher.to(device)


def _check_path(name: str, spec: Mapping[str, object]) -> None:
    """A teacher whose files do not exist yet: one error naming the config key and the command that makes them."""
    path = spec.get("path")
    if not isinstance(path, str):
        return
    p = Path(path).expanduser()
    kind = str(spec["name"]).strip().lower()
    if kind == "checkpoint" and not (p / "best.safetensors").is_file() and not p.is_file():
        raise ConfigError(
            f"config key 'teachers.{name}.path': no trained teacher at {p} (a run folder with "
            f"best.safetensors, or a checkpoint file); train it first: "
            f"kgdistill train <teacher config> --out {p}"
        )
    if kind == "cache" and not p.is_file():
        raise ConfigError(
            f"config key 'teachers.{name}.path': no teacher cache at {p}; write it first: "
            f"kgdistill cache <teacher run> --out {p} -k 128"
        )
