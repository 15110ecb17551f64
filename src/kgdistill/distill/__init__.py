"""Distillation: teachers (checkpoints, caches), distillation loss terms, the temporal KD benchmark."""

from kgdistill.distill import losses as _losses  # noqa: F401  (registers kd_kl, fitnet, rkd, huber, mse)
from kgdistill.distill import multisource as _multisource  # noqa: F401  (alignment, feature, network)
from kgdistill.distill.cache import CachedTeacher, write_cache
from kgdistill.distill.teachers import TEACHERS, KGETeacher, Teacher, teacher_from_spec

__all__ = ["TEACHERS", "CachedTeacher", "KGETeacher", "Teacher", "teacher_from_spec", "write_cache"]
