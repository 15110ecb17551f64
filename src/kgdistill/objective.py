"""The objective: a list of named, weighted loss terms, checked before the first step."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from kgdistill.data.batching import Batch
from kgdistill.data.kg import KG
from kgdistill.errors import ConfigError
from kgdistill.losses import LOSSES
from kgdistill.models.base import ModelOutput
from kgdistill.registry import check_kwargs
from kgdistill.types import FloatTensor

__all__ = ["Objective"]


class Objective(nn.Module):
    """``sum_i w_i * term_i(student, teacher_i, batch)``; each part is reported under its own name.

    Args:
        terms: ``(name, weight, teacher or None, LossTerm)`` tuples.
    """

    def __init__(self, terms: Sequence[tuple[str, float, str | None, nn.Module]]) -> None:
        super().__init__()
        self.names = [t[0] for t in terms]
        self.weights = [float(t[1]) for t in terms]
        self.teachers = [t[2] for t in terms]
        self.terms = nn.ModuleList([t[3] for t in terms])
        # a term with its own fused softmax pass gives it up when another term shares the memoised one
        shared = sum(bool(getattr(t, "reads_student_softmax", False)) for t in self.terms) > 1
        for t in self.terms:
            if shared and hasattr(t, "fused"):
                t.fused = False

    @classmethod
    def build(
        cls,
        specs: Sequence[Mapping[str, Any]],
        *,
        teachers: Mapping[str, frozenset[str] | None] | None = None,
        student: frozenset[str] | None = None,
        candidates: bool = False,
        where: str = "objective",
    ) -> Objective:
        """Build from config specs ``{"loss": name, "weight": w, "teacher": name?, **kwargs}``.

        Args:
            teachers: teacher name -> fields its output provides (``scores``, ``h``, ``r``, ``t``,
                ``time_table``), or ``None`` when not known yet (config check before the data is loaded).
            student: fields the student's output provides (``None``: not checked).
            candidates: training samples candidates (negative sampling) instead of scoring all entities.

        Raises:
            ConfigError: an unknown loss or key, a missing teacher, a teacher that lacks a field a term reads,
                or a term that needs sampled candidates in 1-N training (all before any training step).
        """
        teachers = dict(teachers or {})
        if not specs:
            raise ConfigError(f"{where} has no loss terms")
        built = []
        seen: dict[str, int] = {}
        for i, spec in enumerate(specs):
            spec = dict(spec)
            here = f"{where}.{i}"
            if "loss" not in spec:
                raise ConfigError(f"config key '{here}.loss' is missing")
            name, weight, teacher = (
                spec.pop("loss"),
                spec.pop("weight", 1.0),
                spec.pop("teacher", None),
            )
            term_cls = LOSSES.get(name)
            spec = check_kwargs(term_cls, spec, where=here)
            term = term_cls(**spec)
            if student is not None and term.reads - student:
                needs = f": it needs {term_cls.requirement}" if term_cls.requirement else ""
                raise ConfigError(
                    f"loss '{name}' ({here}) reads {sorted(term.reads - student)} of the student, "
                    f"which only provides {sorted(student)}{needs}"
                )
            if term_cls.requires_teacher:
                if teacher is None:
                    raise ConfigError(
                        f"config key '{here}.teacher' is missing: loss '{name}' compares the "
                        f"student with a teacher (known teachers: {', '.join(teachers) or 'none'})"
                    )
                if teacher not in teachers:
                    raise ConfigError(
                        f"config key '{here}.teacher': no teacher named '{teacher}' "
                        f"(known: {', '.join(teachers) or 'none'})"
                    )
                provided = teachers[teacher]
                lacking = term.reads - provided if provided is not None else set()
                if lacking:
                    raise ConfigError(
                        f"loss '{name}' ({here}) reads {sorted(lacking)} of teacher '{teacher}', "
                        f"which only provides {sorted(provided or ())}"
                    )
            elif teacher is not None:
                raise ConfigError(
                    f"config key '{here}.teacher': loss '{name}' does not use a teacher"
                )
            if term_cls.needs_candidates and not candidates:
                raise ConfigError(
                    f"loss '{name}' ({here}) needs sampled negatives: set train.negatives > 0"
                )
            if term_cls.needs_entity_table and candidates:
                raise ConfigError(
                    f"loss '{name}' ({here}) reads the whole entity table, which only 1-N training "
                    "outputs: set train.negatives to 0"
                )
            label = f"{name}[{teacher}]" if teacher else name
            seen[label] = seen.get(label, 0) + 1
            if seen[label] > 1:
                label = f"{label}#{seen[label]}"
            built.append((label, float(weight), teacher, term))
        return cls(built)

    def setup(self, student: ModelOutput, teachers: Mapping[str, ModelOutput]) -> None:
        """Let every term create its width-dependent parameters from probe outputs (before the optimiser)."""
        for teacher, term in zip(self.teachers, self.terms, strict=True):
            term.setup(student, teachers[teacher] if teacher else None)

    def bind(self, kg: KG) -> None:
        """Hand the training graph to every term (see :meth:`LossTerm.bind`)."""
        for term in self.terms:
            term.bind(kg)

    def reads(self, teacher: str) -> frozenset[str]:
        """Fields of ``teacher``'s output that the terms using it read."""
        out: set[str] = set()
        for name, term in zip(self.teachers, self.terms, strict=True):
            if name == teacher:
                out |= term.reads
        return frozenset(out)

    def forward(
        self, student: ModelOutput, teachers: Mapping[str, ModelOutput], batch: Batch
    ) -> tuple[FloatTensor, dict[str, FloatTensor]]:
        """Total loss and the detached value of every (unweighted) term."""
        total: FloatTensor = student.scores.new_zeros((), dtype=torch.float32)
        parts: dict[str, FloatTensor] = {}
        dense: dict[str, ModelOutput] = {}
        for name, w, teacher, term in zip(
            self.names, self.weights, self.teachers, self.terms, strict=True
        ):
            t_out = teachers[teacher] if teacher else None
            if t_out is not None and t_out.ids is not None and not term.sparse_scores:
                if teacher not in dense:  # expanded once per step for all the terms that need it
                    dense[teacher] = t_out.dense(student.scores.shape[-1])
                t_out = dense[teacher]
            value = term(student, t_out, batch)
            parts[name] = value.detach()
            total = total + w * value
        return total, parts

    def __str__(self) -> str:
        return " + ".join(f"{w:g}·{n}" for n, w in zip(self.names, self.weights, strict=True))
