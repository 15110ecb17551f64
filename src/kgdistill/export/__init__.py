"""Shipping models: ONNX / TorchScript graphs and embedding tables of a trained run, checked against PyTorch
(:func:`export_run`), scorers of the exported files, and approximate top-k for dot-product models
(:func:`build_ann_index`). See ``docs/export.md``.

The public names are imported on first use (PEP 562), so the ``kgdistill export`` command registers without
loading PyTorch. ONNX (``onnx``, ``onnxruntime``) and FAISS (``faiss-cpu``) load when used:
``pip install kgdistill[export]``.
"""

from __future__ import annotations

import importlib
from typing import Any

#: public name -> the module that defines it
_LAZY = {
    "AnnIndex": "kgdistill.export.ann",
    "build_ann_index": "kgdistill.export.ann",
    "exact_topk": "kgdistill.export.ann",
    "recall_at_k": "kgdistill.export.ann",
    "DTYPES": "kgdistill.export.graph",
    "FORMATS": "kgdistill.export.graph",
    "ExportError": "kgdistill.export.graph",
    "ScoreAll": "kgdistill.export.graph",
    "TopK": "kgdistill.export.graph",
    "OnnxScorer": "kgdistill.export.onnx",
    "export_onnx": "kgdistill.export.onnx",
    "export_model": "kgdistill.export.run",
    "export_run": "kgdistill.export.run",
    "open_run": "kgdistill.export.run",
    "TableScorer": "kgdistill.export.tables",
    "export_tables": "kgdistill.export.tables",
    "TorchScriptScorer": "kgdistill.export.torchscript",
    "export_torchscript": "kgdistill.export.torchscript",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'kgdistill.export' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
