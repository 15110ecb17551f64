"""Loss terms (supervised, regularisers, distillation) and their registry."""

from kgdistill.losses import supervised  # noqa: F401  (registers the built-in terms)
from kgdistill.losses.base import LOSSES, LossTerm

__all__ = ["LOSSES", "LossTerm"]
