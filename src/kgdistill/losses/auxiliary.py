"""Auxiliary terms over LLM-written contexts (contextualization distillation, arXiv 2402.01729).

``L = L_KGC + lambda L_aux``: a stage's objective lists the KGC term and one of these with its ``weight``
(lambda). The model computes the loss from the contexts it was built with (``model.context``, a context
store; :mod:`kgdistill.models.aux`); the term reads it from :attr:`ModelOutput.aux`.
"""

from __future__ import annotations

from typing import ClassVar

from kgdistill.data.batching import Batch
from kgdistill.errors import ConfigError
from kgdistill.losses.base import LOSSES, LossTerm
from kgdistill.models.base import ModelOutput
from kgdistill.types import FloatTensor

__all__ = ["Contextualization", "Reconstruction"]


class _AuxTerm(LossTerm):
    """Reads the model's auxiliary loss named like the term."""

    name: ClassVar[str]

    def setup(self, student: ModelOutput, teacher: ModelOutput | None) -> None:
        if self.name not in student.aux:
            raise ConfigError(f"loss '{self.name}' needs {self.requirement}")

    def forward(
        self, student: ModelOutput, teacher: ModelOutput | None, batch: Batch
    ) -> FloatTensor:
        return student.aux[self.name].float()


@LOSSES.register("reconstruction")
class Reconstruction(_AuxTerm):
    """Masked-token recovery over each training triple's context (BERT's masking: ``model.context.mask_rate``
    of the context's tokens, 80% masked / 10% random / 10% kept), read after the triple's own text: the mean
    cross-entropy over the batch's masked tokens. For the encoder models (``bi_encoder``, ``cross_encoder``)
    built with ``model.context``.

    Paper: Li et al. 2024 (contextualization distillation), https://arxiv.org/abs/2402.01729
    """

    name = "reconstruction"
    requirement = "an encoder model (bi_encoder, cross_encoder) built with contexts (model.context: {store: ...})"
    reads = frozenset({"reconstruction"})


@LOSSES.register("contextualization")
class Contextualization(_AuxTerm):
    """Writing each training triple's context from the triple: teacher-forced cross-entropy of the context's
    tokens after the prompt ``head | relation | tail`` (mean over the batch's context tokens). For the
    generative model (``generative``) built with ``model.context``.

    Paper: Li et al. 2024 (contextualization distillation), https://arxiv.org/abs/2402.01729
    """

    name = "contextualization"
    requirement = (
        "a generative model (generative) built with contexts (model.context: {store: ...})"
    )
    reads = frozenset({"contextualization"})
