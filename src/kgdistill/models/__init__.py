"""Models: representations + interactions, and the model registry."""

from kgdistill.models.base import KGEModel, ModelOutput, Vocab
from kgdistill.models.zoo import MODELS, build_model, is_temporal

__all__ = ["MODELS", "KGEModel", "ModelOutput", "Vocab", "build_model", "is_temporal"]
