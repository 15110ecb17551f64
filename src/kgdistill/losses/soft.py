"""Soft labels: facts known only with a confidence (e.g. triples a language model judged plausible) as
weighted positives of the 1-N objective, read from a teacher (usually a top-k cache of the facts).

For a query ``q`` with soft answers ``e_j`` of confidence ``w_j`` (the teacher's entries), the term adds
``-sum_j w_j log p_S(e_j | q)`` with the student's softmax over all entities, the same cross-entropy as a hard
fact's at weight ``w_j``; averaged over the batch's queries (those without soft answers add zero). The term
reads a query's soft answers each time a training fact asks that query: a cache written by
:func:`kgdistill.kglm.augment.soft_label_cache` divides each confidence by that count, so over an epoch a soft
fact of confidence 1 weighs one hard fact at ``weight: 1``.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch

from kgdistill.data.batching import Batch
from kgdistill.errors import ConfigError
from kgdistill.losses.base import LOSSES, LossTerm
from kgdistill.models.base import ModelOutput
from kgdistill.types import FloatTensor

__all__ = ["SoftLabels"]


@LOSSES.register("soft_labels")
class SoftLabels(LossTerm):
    """Weighted positives from a teacher's scores (see the module docstring).

    Args:
        confidence: how the teacher's scores become weights: ``probability`` reads them as they are (they must
            lie in [0, 1]: a cache written by :func:`kgdistill.kglm.augment.soft_label_cache`), ``sigmoid``
            squashes raw scores (any teacher model).
        min_confidence: entries below it weigh nothing.

    Paper: Chen et al. 2019, triples with confidence scores as soft targets of a KG embedding (UKGE),
    https://arxiv.org/abs/1811.10667
    """

    requires_teacher: ClassVar[bool] = True
    sparse_scores: ClassVar[bool] = True
    reads_student_softmax = True

    def __init__(
        self,
        *,
        confidence: Literal["probability", "sigmoid"] = "probability",
        min_confidence: float = 0.0,
    ) -> None:
        super().__init__()
        if not 0 <= min_confidence <= 1:
            raise ConfigError(f"soft_labels: min_confidence {min_confidence} is not in [0, 1]")
        self.confidence = confidence
        self.min_confidence = min_confidence
        self.reads = frozenset({"scores"})

    def weights(self, teacher: ModelOutput) -> FloatTensor:
        """The teacher's entries as weights ``(B, k)`` (or ``(B, E)``), zero where masked or below the floor."""
        scores = teacher.scores.float()
        if self.confidence == "sigmoid":
            w = scores.sigmoid()
        else:
            valid = scores if teacher.mask is None else scores[teacher.mask]
            if valid.numel() and bool(((valid < 0) | (valid > 1)).any()):
                raise ConfigError(
                    "soft_labels: the teacher's scores are not confidences in [0, 1] "
                    "(a model's raw scores: set confidence: sigmoid)"
                )
            w = scores
        if teacher.mask is not None:
            w = torch.where(teacher.mask, w, torch.zeros_like(w))
        return torch.where(w >= self.min_confidence, w, torch.zeros_like(w))

    def forward(
        self, student: ModelOutput, teacher: ModelOutput | None, batch: Batch
    ) -> FloatTensor:
        assert teacher is not None
        with torch.no_grad():
            w = self.weights(teacher)
        log_p = student.log_softmax(1.0)  # (B, E), shared with the other terms
        if teacher.ids is not None:
            log_p = log_p.gather(1, teacher.ids)
        return -(w * log_p.masked_fill(w == 0, 0.0)).sum() / max(len(w), 1)
