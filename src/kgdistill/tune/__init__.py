"""Hyper-parameter search on validation (``kgdistill tune``): an Optuna study whose trials are run folders.

See :mod:`kgdistill.tune.spec` for the spec and :mod:`kgdistill.tune.search` for the search. The public names
are imported on first use (PEP 562), so the command registers without loading PyTorch or Optuna
(``pip install kgdistill[tune]``).
"""

from __future__ import annotations

import importlib
from typing import Any

#: public name -> the module that defines it
_LAZY = {
    "Param": "kgdistill.tune.spec",
    "TuneSpec": "kgdistill.tune.spec",
    "check_space": "kgdistill.tune.spec",
    "load_spec": "kgdistill.tune.spec",
    "trial_config": "kgdistill.tune.spec",
    "run_key": "kgdistill.tune.search",
    "run_search": "kgdistill.tune.search",
    "tune": "kgdistill.tune.search",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
