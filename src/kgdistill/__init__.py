"""kgdistill: knowledge distillation on knowledge graphs.

Train static and temporal link-prediction teachers, distill them into small students, evaluate with filtered
and time-aware filtered ranking. The CLI (``kgdistill``) is a thin layer over :mod:`kgdistill.api`.
"""

__version__ = "0.1.0"

from kgdistill import losses as _losses  # noqa: F401  (registers the built-in loss terms)
from kgdistill.data import DATASETS, KG, load_kg
from kgdistill.evaluate import Metrics, evaluate
from kgdistill.models import MODELS, KGEModel, build_model

__all__ = [
    "DATASETS",
    "KG",
    "MODELS",
    "KGEModel",
    "Metrics",
    "__version__",
    "build_model",
    "evaluate",
    "load_kg",
]
