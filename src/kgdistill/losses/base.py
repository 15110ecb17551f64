"""The loss-term interface and its registry.

A term reads only :class:`~kgdistill.models.ModelOutput` objects and the batch: never a model, a config or the
trainer. Terms that need a teacher declare which fields of the teacher's output they read, so an objective
can be checked before the first step.
"""

from __future__ import annotations

from typing import ClassVar

from torch import nn

from kgdistill.data.batching import Batch
from kgdistill.data.kg import KG
from kgdistill.models.base import ModelOutput
from kgdistill.registry import Registry
from kgdistill.types import FloatTensor

__all__ = ["LOSSES", "LossTerm"]


class LossTerm(nn.Module):
    """One named term of an objective; returns a scalar.

    Attributes:
        requires_teacher: the term compares the student with a teacher (class attribute).
        needs_candidates: the term needs sampled candidates (negative sampling), not 1-N scores.
        needs_entity_table: the term reads the entity table, which only 1-N steps output.
        sparse_scores: the term reads a teacher's top-k scores (``ids`` set) without expanding them.
        reads: fields of the outputs the term needs (``scores``, ``h``, ``r``, ``t``, ``time_table``),
            set per instance when they depend on the term's options.
    """

    requires_teacher: ClassVar[bool] = False
    needs_candidates: ClassVar[bool] = False
    #: the term reads the whole entity table (``t`` of a 1-N step), so it cannot run with sampled negatives
    needs_entity_table: ClassVar[bool] = False
    #: the term reads a top-k teacher output (``ModelOutput.ids``) as it is; other terms get it expanded to
    #: all entities (:meth:`ModelOutput.dense`)
    sparse_scores: ClassVar[bool] = False
    #: output fields the term reads, of the teacher and of the student (may depend on the term's options)
    reads: frozenset[str] = frozenset()
    #: what the student must be to provide what the term reads (said when it does not), e.g. "a generative
    #: model (model.name: generative)"
    requirement: ClassVar[str] = ""
    #: the term reads the student's (memoised) softmax or log-softmax
    reads_student_softmax: bool = False  # may depend on the term's options

    def __init__(self) -> None:  # terms without options accept no config keys
        super().__init__()

    def setup(self, student: ModelOutput, teacher: ModelOutput | None) -> None:
        """Create parameters that depend on output widths (e.g. FitNet's projections) from probe outputs.

        Called once before the optimiser is built, with outputs of the student and teacher on a tiny batch.
        """

    def bind(self, kg: KG) -> None:
        """Read what the term needs from the training graph (aligned pairs, neighbourhoods), once, before
        training. Raise :class:`~kgdistill.errors.ConfigError` when the graph lacks it."""

    def forward(
        self, student: ModelOutput, teacher: ModelOutput | None, batch: Batch
    ) -> FloatTensor:
        """``student`` (and ``teacher``) outputs for ``batch`` -> a scalar loss."""
        raise NotImplementedError


LOSSES: Registry[type[LossTerm]] = Registry("loss")
