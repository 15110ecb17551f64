"""The loss-term interface and its registry.

A term reads only :class:`~kgdistill.models.ModelOutput` objects and the batch: never a model, a config or the
trainer. Terms that need a teacher declare which fields of the teacher's output they read, so an objective
can be checked before the first step.
"""

from __future__ import annotations

from typing import ClassVar

from torch import nn

from kgdistill.data.batching import Batch
from kgdistill.models.base import ModelOutput
from kgdistill.registry import Registry
from kgdistill.types import FloatTensor

__all__ = ["LOSSES", "LossTerm"]


class LossTerm(nn.Module):
    """One named term of an objective; returns a scalar.

    Class attributes:
        requires_teacher: the term compares the student with a teacher.
        reads: fields of the teacher's output the term needs (``scores``, ``h``, ``r``, ``t``).
        needs_candidates: the term needs sampled candidates (negative sampling), not 1-N scores.
    """

    requires_teacher: ClassVar[bool] = False
    reads: ClassVar[frozenset[str]] = frozenset()
    needs_candidates: ClassVar[bool] = False

    def __init__(self) -> None:  # terms without options accept no config keys
        super().__init__()

    def forward(
        self, student: ModelOutput, teacher: ModelOutput | None, batch: Batch
    ) -> FloatTensor:
        """``student`` (and ``teacher``) outputs for ``batch`` -> a scalar loss."""
        raise NotImplementedError


LOSSES: Registry[type[LossTerm]] = Registry("loss")
