"""Contrastive terms: InfoNCE with an additive margin and pre-batch negatives (bi-encoders)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from pydantic import NonNegativeFloat, NonNegativeInt

from kgdistill.data.batching import Batch
from kgdistill.errors import ConfigError
from kgdistill.losses.base import LOSSES, LossTerm
from kgdistill.models.base import ModelOutput
from kgdistill.types import TAIL, FloatTensor

__all__ = ["InfoNCE"]


@LOSSES.register("info_nce")
class InfoNCE(LossTerm):
    """InfoNCE: cross-entropy of the true tail against the batch's candidates, with an additive margin.

    ``logits = scale * (cos - margin * [true])`` over the step's candidates (in-batch negatives with
    ``train.negative_sampling: in_batch``, or all entities), then, with ``prebatch > 0``, the true tails of the
    last ``prebatch`` batches as extra negatives (their vectors detached; an entry that is the row's own answer
    is masked). ``scale`` is the student's inverse temperature (:attr:`ModelOutput.scale`, learnable in the
    bi-encoder); a model without one scores in logits (``scale = 1``, margin in score units).

    Args:
        margin: additive margin subtracted from the true tail's cosine (SimKGC: 0.02).
        prebatch: past batches whose true-tail vectors are negatives (0: none); needs a cosine model
            (``scores = scale * <h, t>``: the bi-encoder).

    Paper: Wang et al. 2022 (SimKGC: in-batch, pre-batch negatives, additive margin),
    https://arxiv.org/abs/2203.02167
    """

    def __init__(self, *, margin: NonNegativeFloat = 0.02, prebatch: NonNegativeInt = 0) -> None:
        super().__init__()
        self.margin = float(margin)
        self.prebatch = int(prebatch)
        self.reads = frozenset({"scores", "h", "t"} if prebatch else {"scores"})
        # the pre-batch queue: in the objective's state, so a resumed run continues with the same negatives
        self.register_buffer("queue", torch.zeros(0, 0))
        self.register_buffer("queue_ids", torch.zeros(0, dtype=torch.long))

    def setup(self, student: ModelOutput, teacher: ModelOutput | None) -> None:
        if self.prebatch and student.scale is None:
            raise ConfigError(
                "loss 'info_nce': prebatch > 0 needs a cosine model (scores = scale * <h, t>, a bi-encoder)"
            )

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        for name in ("queue", "queue_ids"):  # the queue's size is that of the saved one
            if prefix + name in state_dict:
                setattr(
                    self,
                    name,
                    torch.empty_like(state_dict[prefix + name], device=self.queue.device),
                )
        super()._load_from_state_dict(state_dict, prefix, *args)

    def forward(
        self, student: ModelOutput, teacher: ModelOutput | None, batch: Batch
    ) -> FloatTensor:
        logits = student.scores.float()
        scale = student.scale.float() if student.scale is not None else logits.new_ones(())
        targets = batch.targets
        true = F.one_hot(targets, logits.shape[1]).bool()
        logits = logits - (self.margin * scale) * true
        if batch.candidate_mask is not None:
            logits = logits.masked_fill(~batch.candidate_mask, float("-inf"))
        if self.prebatch:
            logits = torch.cat([logits, self._prebatch(student, batch, scale)], dim=1)
        return F.cross_entropy(logits, targets)

    def _prebatch(self, student: ModelOutput, batch: Batch, scale: FloatTensor) -> FloatTensor:
        """``(B, Q)`` logits against the queue, then the batch's true tails enter it (while training)."""
        assert student.h is not None and student.t is not None
        answers = batch.queries[:, TAIL]
        if self.queue.numel():
            pre = (student.h.float() @ self.queue.T) * scale
            pre = pre.masked_fill(self.queue_ids[None, :] == answers[:, None], float("-inf"))
        else:
            pre = student.h.new_zeros((len(answers), 0))
        if torch.is_grad_enabled():
            t = student.t
            pos = t[answers] if batch.candidates is None else t[:, 0]
            keep = self.prebatch * len(answers)
            self.queue = torch.cat([pos.detach().float(), self.queue.reshape(-1, pos.shape[1])])[
                :keep
            ]
            self.queue_ids = torch.cat([answers, self.queue_ids])[:keep]
        return pre
