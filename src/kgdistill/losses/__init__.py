"""Loss terms and their registry: supervised terms and regularisers, distillation terms (BKD, FitNet, RKD,
score matching), contrastive terms (InfoNCE),
the generation term (teacher-forced answer tokens), the auxiliary terms over LLM-written contexts (reconstruction,
contextualization), the multi-source terms (alignment, feature, network) and soft labels (weighted
positives read from a teacher).

Every built-in term is registered here, so ``LOSSES`` is complete as soon as :mod:`kgdistill.losses` (or
anything of kgdistill) is imported.
"""

from kgdistill.losses import (
    auxiliary,
    contrastive,
    generation,
    kd,
    multisource,
    soft,
    supervised,
)
from kgdistill.losses.base import LOSSES, LossTerm

__all__ = [
    "LOSSES",
    "LossTerm",
    "auxiliary",
    "contrastive",
    "generation",
    "kd",
    "multisource",
    "soft",
    "supervised",
]
