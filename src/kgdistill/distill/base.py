"""What every teacher shares: the fields a teacher output may carry, the call protocol and the registry
(:mod:`kgdistill.distill.teachers` registers ``checkpoint``, :mod:`kgdistill.distill.cache` ``cache``)."""

from __future__ import annotations

from typing import Protocol

from kgdistill.models.base import ModelOutput
from kgdistill.registry import Registry
from kgdistill.types import LongTensor

__all__ = ["ALL_FIELDS", "TEACHERS", "Teacher"]

ALL_FIELDS = frozenset({"scores", "h", "r", "t", "time_table"})


class Teacher(Protocol):
    """Anything that answers the student's queries with a :class:`ModelOutput`."""

    def __call__(
        self,
        queries: LongTensor,
        candidates: LongTensor | None = None,
        fields: frozenset[str] = ALL_FIELDS,
    ) -> ModelOutput: ...


TEACHERS: Registry[type] = Registry("teacher")
