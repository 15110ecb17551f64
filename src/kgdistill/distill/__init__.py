"""Distillation: teachers (checkpoints, caches) and the teacher-cache writer. The loss terms live in
:mod:`kgdistill.losses`."""

from kgdistill.distill.cache import CachedTeacher, write_cache
from kgdistill.distill.teachers import TEACHERS, KGETeacher, Teacher, teacher_from_spec

__all__ = ["TEACHERS", "CachedTeacher", "KGETeacher", "Teacher", "teacher_from_spec", "write_cache"]
