"""kgdistill: knowledge distillation on knowledge graphs.

Train static and temporal link-prediction teachers, distill them into small students, evaluate with filtered
and time-aware filtered ranking. The CLI (``kgdistill``) is a thin layer over :mod:`kgdistill.api`.

Importing this package imports every module that registers built-ins, so each registry is complete whatever
is imported first: ``DATASETS``, ``MODELS``, ``LOSSES``, ``TEACHERS``, ``ENCODERS`` (heavy language-model
libraries are imported only when an encoder is built).
"""

__version__ = "0.1.0"

from kgdistill.data import DATASETS, KG, load_kg
from kgdistill.distill import TEACHERS
from kgdistill.evaluate import Metrics, evaluate
from kgdistill.llm.encoders import ENCODERS
from kgdistill.losses import LOSSES
from kgdistill.models import MODELS, KGEModel, build_model

__all__ = [
    "DATASETS",
    "ENCODERS",
    "KG",
    "LOSSES",
    "MODELS",
    "TEACHERS",
    "KGEModel",
    "Metrics",
    "__version__",
    "build_model",
    "evaluate",
    "load_kg",
]
