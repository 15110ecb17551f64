"""Generation terms: teacher-forced cross-entropy on the answer's tokens (generative models)."""

from __future__ import annotations

from kgdistill.data.batching import Batch
from kgdistill.errors import ConfigError
from kgdistill.losses.base import LOSSES, LossTerm
from kgdistill.models.base import ModelOutput
from kgdistill.types import FloatTensor

__all__ = ["Generation"]


@LOSSES.register("generation")
class Generation(LossTerm):
    """Cross-entropy of the true answer entity's name tokens (and the end token) given the query's prompt,
    under teacher forcing: the mean over the batch of each answer's mean token negative log-likelihood
    (:attr:`ModelOutput.generation`, ``(B,)``). The prompt's tokens are not in the loss.

    Only a generative model (``generative``) provides it. It needs sampled candidates (``train.negatives >= 1``;
    the first candidate is the true answer, whose likelihood the model computes anyway), so the model does not
    score every entity per step; combine it with ``supervised_ce`` to also rank the sampled negatives below.

    Paper: Chen et al. 2022 (KG-S2S), https://arxiv.org/abs/2209.07299
    """

    needs_candidates = True
    reads = frozenset({"generation"})
    requirement = "a generative model (model.name: generative)"

    def setup(self, student: ModelOutput, teacher: ModelOutput | None) -> None:
        if student.generation is None:
            raise ConfigError(f"loss 'generation' needs {self.requirement}")

    def forward(
        self, student: ModelOutput, teacher: ModelOutput | None, batch: Batch
    ) -> FloatTensor:
        assert student.generation is not None
        return student.generation.float().mean()
