"""kgdistill: knowledge distillation on knowledge graphs.

Train static and temporal link-prediction teachers, distill them into small students, evaluate with filtered
and time-aware filtered ranking. The CLI (``kgdistill``) is a thin layer over :mod:`kgdistill.api`.

The public names below are imported on first use (PEP 562), so ``import kgdistill`` and ``kgdistill --help``
do not pay for PyTorch. Every registry is complete as soon as it is reached, whatever was imported first:
``DATASETS``, ``MODELS``, ``LOSSES``, ``TEACHERS``, ``ENCODERS`` live in packages whose ``__init__`` imports
every module that registers built-ins (heavy language-model libraries load only when an encoder is built).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: public name -> the module that defines it. No name may also be a submodule's: importing the submodule sets
#: the package attribute to the module (``kgdistill.evaluate`` is the module; the function is
#: ``kgdistill.api.evaluate`` or ``kgdistill.evaluate.evaluate``)
_LAZY = {
    "DATASETS": "kgdistill.data",
    "KG": "kgdistill.data",
    "load_kg": "kgdistill.data",
    "TEACHERS": "kgdistill.distill",
    "Metrics": "kgdistill.evaluate",
    "ENCODERS": "kgdistill.llm.encoders",
    "LOSSES": "kgdistill.losses",
    "MODELS": "kgdistill.models",
    "KGEModel": "kgdistill.models",
    "build_model": "kgdistill.models",
    "Predictor": "kgdistill.predict",
    "Run": "kgdistill.run",
}

__all__ = ["__version__", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'kgdistill' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
