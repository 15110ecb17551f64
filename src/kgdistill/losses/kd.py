"""Distillation terms: BKD, FitNet, RKD and score-level Huber / MSE.

Every term compares the student's :class:`~kgdistill.models.ModelOutput` with one teacher's, for the same
queries and candidates. ``mask`` entries of the teacher (entities a teacher does not know, or outside a cached
top-k) are left out. Terms that own parameters (FitNet's projections) create them in :meth:`setup`, from
probe outputs, before the optimiser is built.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, NonNegativeFloat, PositiveFloat
from torch import nn

from kgdistill.data.batching import Batch
from kgdistill.errors import ConfigError
from kgdistill.losses.base import LOSSES, LossTerm
from kgdistill.models.base import ModelOutput, masked_log_softmax
from kgdistill.types import FloatTensor

__all__ = ["BKD", "RKD", "FitNet", "ScoreHuber", "ScoreMSE", "masked_log_softmax"]


def _rows(mask: torch.Tensor | None, n: int, device: torch.device) -> torch.Tensor:
    """Rows with at least one valid entry ``(B,)``."""
    if mask is None:
        return torch.ones(n, dtype=torch.bool, device=device)
    return mask.any(dim=1)


@LOSSES.register("kd_kl")
class BKD(LossTerm):
    """Hinton's distillation: ``KL(softmax(s_T / T) || softmax(s_S / T)) * T^2``, averaged over queries.

    With a top-k teacher (a cache written with ``k``) both softmaxes run over the teacher's k candidates of each
    query, the same as masking the other entities, at the cost of ``(B, k)`` instead of ``(B, E)``.

    Args:
        temperature: the softening temperature ``T``.

    Paper: Hinton et al. 2015, https://arxiv.org/abs/1503.02531
    """

    requires_teacher: ClassVar[bool] = True
    sparse_scores: ClassVar[bool] = True
    reads_student_softmax = True

    def __init__(self, *, temperature: PositiveFloat = 2.0) -> None:
        super().__init__()
        if temperature <= 0:
            raise ConfigError("kd_kl: temperature must be > 0")
        self.temperature = temperature
        self.reads = frozenset({"scores"})

    def forward(
        self, student: ModelOutput, teacher: ModelOutput | None, batch: Batch
    ) -> FloatTensor:
        assert teacher is not None
        t = self.temperature
        with torch.no_grad():
            log_pt = teacher.log_softmax(t, teacher.mask)
            pt = teacher.softmax(t, teacher.mask)
            neg_entropy = (pt * log_pt).nan_to_num_(0.0).sum(-1)  # masked entries: 0 * -inf
        # a top-k teacher (a cache): both distributions over the teacher's k candidates, (B, k) not (B, E)
        s = student.scores if teacher.ids is None else student.scores.gather(1, teacher.ids)
        log_ps = (
            student.log_softmax(t, teacher.mask)
            if teacher.ids is None
            else masked_log_softmax(s, teacher.mask, t)
        )
        if teacher.mask is not None:
            log_ps = log_ps.masked_fill(~teacher.mask, 0.0)
        kl = neg_entropy - (pt * log_ps).sum(-1)
        rows = _rows(teacher.mask, len(kl), kl.device)
        return kl[rows].mean() * t * t if rows.any() else kl.sum() * 0


class _ScoreMatch(LossTerm):
    requires_teacher: ClassVar[bool] = True

    def __init__(
        self, *, compare: Literal["scores", "probs"] = "probs", temperature: PositiveFloat = 1.0
    ) -> None:
        super().__init__()
        if compare not in ("scores", "probs"):
            raise ConfigError(
                f"{type(self).__name__}: 'compare' must be 'scores' or 'probs', not {compare!r}"
            )
        self.compare, self.temperature = compare, temperature
        self.reads = frozenset({"scores"})
        self.reads_student_softmax = compare == "probs"

    def _pair(self, student: ModelOutput, teacher: ModelOutput) -> tuple[FloatTensor, FloatTensor]:
        """Student and teacher values ``(B, C)`` to compare, 0 where the teacher's mask is off."""
        mask = teacher.mask
        # memoised softmaxes: the Huber and MSE terms of one step share them
        if self.compare == "probs":
            s = student.softmax(self.temperature, mask)
            with torch.no_grad():
                t = teacher.softmax(self.temperature, mask)
            return s, t  # a masked entry is 0 on both sides already
        s, t = student.scores.float(), teacher.scores.float()
        if mask is not None:
            s, t = torch.where(mask, s, 0), torch.where(mask, t, 0)
        return s, t


@LOSSES.register("huber")
class ScoreHuber(_ScoreMatch):
    """Huber loss between student and teacher scores or softmax distributions (valid entries), summed over
    candidates and averaged over queries.

    Args:
        compare: ``probs`` (softmax with ``temperature``) or raw ``scores``.
        delta: the Huber threshold.

    Paper: Huber 1964, https://doi.org/10.1214/aoms/1177703732
    """

    def __init__(
        self,
        *,
        compare: Literal["scores", "probs"] = "probs",
        temperature: PositiveFloat = 1.0,
        delta: PositiveFloat = 1.0,
    ) -> None:
        super().__init__(compare=compare, temperature=temperature)
        self.delta = delta

    def forward(
        self, student: ModelOutput, teacher: ModelOutput | None, batch: Batch
    ) -> FloatTensor:
        assert teacher is not None
        s, t = self._pair(student, teacher)
        return F.huber_loss(s, t, delta=self.delta, reduction="none").sum(-1).mean()


@LOSSES.register("mse")
class ScoreMSE(_ScoreMatch):
    """Squared error between student and teacher scores or softmax distributions (valid entries), summed over
    candidates and averaged over queries.

    Args:
        compare: ``probs`` (softmax with ``temperature``) or raw ``scores``.

    Paper: Ba and Caruana 2014 (regressing logits), https://arxiv.org/abs/1312.6184
    """

    def forward(
        self, student: ModelOutput, teacher: ModelOutput | None, batch: Batch
    ) -> FloatTensor:
        assert teacher is not None
        s, t = self._pair(student, teacher)
        return ((s - t) ** 2).sum(-1).mean()


_FIELDS = ("h", "r", "t", "time_table")


@LOSSES.register("fitnet")
class FitNet(LossTerm):
    """Hint regression ``mean((W e_S - e_T)^2)`` through a learned linear projection per embedding kind
    (averaged over dimensions and rows; one term per kind, summed).

    Args:
        fields: embeddings to match: ``h`` (query head), ``r`` (time-conditioned relation), ``t`` (the true tail's
            entity embedding), ``time_table`` (all time embeddings). Student and teacher widths may differ.
        normalize: divide each kind's error by the mean square of the teacher's embeddings in the batch, so the
            term starts near 1 whatever the teacher's scale (a teacher's embedding norms depend on its
            regulariser; without this the term's weight would have to be tuned per teacher).

    Paper: Romero et al. 2015, https://arxiv.org/abs/1412.6550
    """

    requires_teacher: ClassVar[bool] = True

    def __init__(self, *, fields: Sequence[str] = ("h", "r", "t"), normalize: bool = True) -> None:
        super().__init__()
        bad = [f for f in fields if f not in _FIELDS]
        if bad or not fields or isinstance(fields, str):
            raise ConfigError(f"fitnet: 'fields' must list some of {list(_FIELDS)}, got {fields!r}")
        self.fields = tuple(fields)
        self.normalize = normalize
        self.reads = frozenset(self.fields)
        self.proj = nn.ModuleDict()

    def setup(self, student: ModelOutput, teacher: ModelOutput | None) -> None:
        assert teacher is not None
        for f in self.fields:
            s, t = getattr(student, f), getattr(teacher, f)
            self.proj[f] = nn.Linear(s.shape[-1], t.shape[-1], bias=False)

    def _pick(self, out: ModelOutput, field: str, batch: Batch) -> FloatTensor:
        x = getattr(out, field)
        if field == "t":  # the true tail's row: (E, d) table or (B, C, d) candidates
            if batch.candidates is None:
                return x[batch.queries[:, 2]]
            return x[:, 0]
        return x

    def forward(
        self, student: ModelOutput, teacher: ModelOutput | None, batch: Batch
    ) -> FloatTensor:
        assert teacher is not None
        total = student.scores.new_zeros((), dtype=torch.float32)
        rows = None if teacher.mask is None else teacher.mask.any(dim=1)
        for f in self.fields:
            s = self.proj[f](self._pick(student, f, batch).float())
            t = self._pick(teacher, f, batch).float()
            err = ((s - t) ** 2).mean(-1)
            if rows is not None and f != "time_table":
                err, t = err[rows], t[rows]
            if self.normalize:
                err = err / (t**2).mean().detach().clamp_min(1e-12)
            total = total + err.mean()
        return total


@LOSSES.register("rkd")
class RKD(LossTerm):
    """Relational KD: the student's pairwise distances and triplet angles between the batch's embeddings match
    the teacher's (Huber), so embeddings of different widths can be compared without a projection.

    Args:
        field: which embedding (``h``, ``r`` or ``t``: the true tails) to relate.
        distance_weight / angle_weight: weights of the two parts (paper: 1 and 2).
        max_samples: rows used (the first ones of the batch; angles cost ``n^3``).

    Paper: Park et al. 2019, https://arxiv.org/abs/1904.05068
    """

    requires_teacher: ClassVar[bool] = True

    def __init__(
        self,
        *,
        field: Literal["h", "r", "t"] = "h",
        distance_weight: NonNegativeFloat = 1.0,
        angle_weight: NonNegativeFloat = 2.0,
        max_samples: Annotated[int, Field(ge=3)] = 128,
    ) -> None:
        super().__init__()
        if field not in ("h", "r", "t"):
            raise ConfigError(f"rkd: 'field' must be 'h', 'r' or 't', not {field!r}")
        self.field, self.wd, self.wa, self.n = field, distance_weight, angle_weight, max_samples
        self.reads = frozenset({field})

    def _emb(self, out: ModelOutput, batch: Batch) -> FloatTensor:
        x = getattr(out, self.field)
        if self.field == "t":
            x = x[batch.queries[:, 2]] if batch.candidates is None else x[:, 0]
        return x[: self.n].float()

    @staticmethod
    def _dist(x: FloatTensor) -> FloatTensor:
        d = torch.cdist(x, x)
        mean = d[d > 0].mean() if (d > 0).any() else d.new_ones(())
        return d / mean

    @staticmethod
    def _angle(x: FloatTensor) -> FloatTensor:
        e = F.normalize(
            x.unsqueeze(0) - x.unsqueeze(1), p=2, dim=2
        )  # (n, n, d): e[j, i] = unit(x_i - x_j)
        return torch.bmm(e, e.transpose(1, 2)).flatten()

    def forward(
        self, student: ModelOutput, teacher: ModelOutput | None, batch: Batch
    ) -> FloatTensor:
        assert teacher is not None
        s, t = self._emb(student, batch), self._emb(teacher, batch)
        if teacher.mask is not None:
            keep = teacher.mask.any(dim=1)[: len(s)]
            s, t = s[keep], t[keep]
        if len(s) < 3:
            return student.scores.new_zeros((), dtype=torch.float32)
        with torch.no_grad():
            td, ta = self._dist(t), self._angle(t)
        return self.wd * F.smooth_l1_loss(self._dist(s), td) + self.wa * F.smooth_l1_loss(
            self._angle(s), ta
        )
