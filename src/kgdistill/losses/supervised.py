"""Supervised terms (the true answers) and regularisers (the student's own embeddings)."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, NonNegativeFloat

from kgdistill.data.batching import Batch
from kgdistill.losses.base import LOSSES, LossTerm
from kgdistill.losses.fused import fused_cross_entropy
from kgdistill.models.base import ModelOutput
from kgdistill.types import FloatTensor

__all__ = ["L2", "N3", "Lambda3", "MarginRanking", "NegativeSampling", "SupervisedCE"]


@LOSSES.register("supervised_ce")
class SupervisedCE(LossTerm):
    """Cross-entropy of the true answer against all entities (1-N) or the sampled candidates.

    Args:
        label_smoothing: mass spread uniformly over all candidates (0 = none).
        fused: one fused pass (faster, less memory; default) or ``log_softmax`` then ``nll_loss``.

    Paper: Lacroix et al. 2018 (1-N with reciprocals), https://arxiv.org/abs/1806.07297
    """

    reads_student_softmax = True

    def __init__(
        self, *, label_smoothing: Annotated[float, Field(ge=0, lt=1)] = 0.0, fused: bool = True
    ) -> None:
        super().__init__()
        self.label_smoothing = label_smoothing
        #: the fused loss (:func:`~kgdistill.losses.fused.fused_cross_entropy`: one (B, C) tensor instead of
        #: three, the same value up to float rounding); the objective turns it off when another of its terms
        #: reads the student's softmax, which then shares the memoised log-softmax instead
        self.fused = fused

    def forward(
        self, student: ModelOutput, teacher: ModelOutput | None, batch: Batch
    ) -> FloatTensor:
        mask = batch.candidate_mask
        if self.fused and mask is None:
            return fused_cross_entropy(student.scores.float(), batch.targets, self.label_smoothing)
        # the student's log-softmax is memoised on its output: score-matching terms at T = 1 reuse it
        logp = student.log_softmax(mask=mask)
        nll = F.nll_loss(logp, batch.targets)
        if not self.label_smoothing:
            return nll
        eps = self.label_smoothing  # as F.cross_entropy: target (1 - eps) one-hot + eps / C uniform
        if mask is None:
            return (1 - eps) * nll - eps * logp.mean(-1).mean()
        uniform = (logp.masked_fill(~mask, 0.0).sum(-1) / mask.sum(-1)).mean()
        return (1 - eps) * nll - eps * uniform


@LOSSES.register("negative_sampling")
class NegativeSampling(LossTerm):
    """Binary loss over sampled candidates (column 0 true): ``softplus`` or RotatE's self-adversarial form.

    Self-adversarial: ``-log s(margin + s_pos) - sum_i p_i log s(-margin - s_neg_i)`` with
    ``p = softmax(adversarial_temperature * s_neg)`` held constant (scores of distance models are ``-d``).

    Args:
        form: ``softplus`` (logistic loss) or ``self_adversarial`` (named ``form``, not ``loss``: ``loss`` is the
            config key of the term's name).
        margin: ``gamma`` of the self-adversarial loss.
        adversarial_temperature: ``alpha``.

    Paper: Sun et al. 2019 (self-adversarial sampling), https://arxiv.org/abs/1902.10197
    """

    needs_candidates: ClassVar[bool] = True

    def __init__(
        self,
        *,
        form: Literal["softplus", "self_adversarial"] = "self_adversarial",
        margin: float = 6.0,
        adversarial_temperature: NonNegativeFloat = 1.0,
    ) -> None:
        super().__init__()
        self.form, self.margin, self.alpha = form, margin, adversarial_temperature

    def forward(
        self, student: ModelOutput, teacher: ModelOutput | None, batch: Batch
    ) -> FloatTensor:
        s = student.scores.float()
        pos, neg = s[:, 0], s[:, 1:]
        valid = None if batch.candidate_mask is None else batch.candidate_mask[:, 1:]
        if self.form == "softplus":
            neg_loss = F.softplus(neg)
            if valid is None:
                return (F.softplus(-pos).sum() + neg_loss.sum()) / s.numel()
            return (F.softplus(-pos).sum() + neg_loss[valid].sum()) / (len(pos) + valid.sum())
        logits = self.alpha * neg
        if valid is not None:
            logits = logits.masked_fill(~valid, float("-inf"))
        weights = (
            torch.softmax(logits, dim=1).nan_to_num(0.0).detach()
        )  # a row without negatives: 0
        pos_loss = -F.logsigmoid(self.margin + pos)
        neg_loss = -(weights * F.logsigmoid(-self.margin - neg)).sum(1)
        return ((pos_loss + neg_loss) / 2).mean()


@LOSSES.register("margin_ranking")
class MarginRanking(LossTerm):
    """``max(0, margin - s_pos + s_neg)`` averaged over sampled negatives (TransE's loss).

    Paper: Bordes et al. 2013, https://papers.nips.cc/paper/5071
    """

    needs_candidates: ClassVar[bool] = True

    def __init__(self, *, margin: float = 1.0) -> None:
        super().__init__()
        self.margin = margin

    def forward(
        self, student: ModelOutput, teacher: ModelOutput | None, batch: Batch
    ) -> FloatTensor:
        s = student.scores.float()
        hinge = F.relu(self.margin - s[:, :1] + s[:, 1:])
        if batch.candidate_mask is None:
            return hinge.mean()
        valid = batch.candidate_mask[:, 1:]
        return hinge[valid].sum() / valid.sum().clamp_min(1)


@LOSSES.register("n3")
class N3(LossTerm):
    """Nuclear 3-norm: ``sum_f sum |f|^3 / B`` over the factors of the batch (head, relation, true tail).

    Paper: Lacroix et al. 2018, https://arxiv.org/abs/1806.07297
    """

    def forward(
        self, student: ModelOutput, teacher: ModelOutput | None, batch: Batch
    ) -> FloatTensor:
        b = student.scores.shape[0]
        return sum((f.float().abs() ** 3).sum() for f in student.factors) / b  # type: ignore[return-value]


@LOSSES.register("l2")
class L2(LossTerm):
    """Squared L2 norm of the batch's factors, ``sum_f sum f^2 / B``.

    Paper: Trouillon et al. 2016, https://arxiv.org/abs/1606.06357
    """

    def forward(
        self, student: ModelOutput, teacher: ModelOutput | None, batch: Batch
    ) -> FloatTensor:
        b = student.scores.shape[0]
        return sum((f.float() ** 2).sum() for f in student.factors) / b  # type: ignore[return-value]


@LOSSES.register("lambda3")
class Lambda3(LossTerm):
    """Temporal smoothness: ``sum ||tau_{i+1} - tau_i||^3 / (T - 1)`` over consecutive time embeddings
    (moduli for complex ones when ``complex_pairs``).

    Paper: Lacroix et al. 2020, https://arxiv.org/abs/2004.04926
    """

    def __init__(self, *, complex_pairs: bool = True) -> None:
        super().__init__()
        self.complex_pairs = complex_pairs

    def forward(
        self, student: ModelOutput, teacher: ModelOutput | None, batch: Batch
    ) -> FloatTensor:
        table = student.time_table
        if table is None or table.shape[0] < 2:
            return student.scores.new_zeros(())
        diff = (table[1:] - table[:-1]).float()
        if self.complex_pairs and diff.shape[1] % 2 == 0:
            re, im = diff.chunk(2, dim=1)
            return (torch.sqrt(re**2 + im**2 + 1e-12) ** 3).sum() / (table.shape[0] - 1)
        return (diff.abs() ** 3).sum() / (table.shape[0] - 1)
