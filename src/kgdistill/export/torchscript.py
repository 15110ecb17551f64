"""TorchScript export (``torch.jit.trace``) of a model's 1-N scoring, and :class:`TorchScriptScorer`.

The traced module takes ``queries (B, 3|4) int64`` with any batch size and returns ``scores (B, E)`` or the
top-k ``(values, ids)``; it runs in C++ (``torch::jit::load``) or Python without kgdistill. Only float32: a
CPU half-precision model would compute in half (slow, and the LSTM of TA-* models has no half kernel on CPU),
so fp16 / int8 go through ONNX or the embedding tables.
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path
from typing import Any

import torch

from kgdistill.export.graph import Dtype, ExportError, example_queries, frozen, scoring_module
from kgdistill.io import atomic_write_bytes
from kgdistill.models.base import KGEModel
from kgdistill.types import FloatTensor, LongTensor

__all__ = ["TorchScriptScorer", "export_torchscript"]

META_FILE = "kgdistill.json"


def export_torchscript(
    model: KGEModel,
    path: Path,
    *,
    topk: int | None = None,
    dtype: Dtype = "fp32",
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Trace ``model``'s scoring and save it to ``path`` (``metadata`` as the extra file ``kgdistill.json``)."""
    if dtype != "fp32":
        raise ExportError(
            f"torchscript exports float32 only, not {dtype}: use --format onnx or "
            "safetensors-embeddings for fp16 / int8"
        )
    model = frozen(model)
    module = scoring_module(model, topk).eval()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter(
            "ignore"
        )  # tracer warnings on shape checks that are constant per model
        traced = torch.jit.trace(module, (example_queries(model),), check_trace=False)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter(
            "ignore", DeprecationWarning
        )  # TorchScript is deprecated, still supported
        torch.jit.save(
            traced, buffer, _extra_files={META_FILE: json.dumps({**(metadata or {}), "topk": topk})}
        )
    atomic_write_bytes(Path(path), buffer.getvalue())
    return Path(path)


class TorchScriptScorer:
    """A traced scoring module, scoring like a model: ``score_all(queries (B, 3|4)) -> (B, E)``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ExportError(f"TorchScript model not found: {self.path}")
        extra = {META_FILE: ""}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            self.module = torch.jit.load(str(self.path), map_location="cpu", _extra_files=extra)
        self.metadata: dict[str, Any] = json.loads(extra[META_FILE] or "{}")
        self.is_topk = self.metadata.get("topk") is not None

    @torch.no_grad()
    def score_all(self, queries: LongTensor) -> FloatTensor:
        """``queries (B, 3|4) -> scores (B, E)``."""
        if self.is_topk:
            raise ExportError(f"{self.path} is a top-k module: use topk()")
        return self.module(queries.cpu())  # type: ignore[no-any-return]

    @torch.no_grad()
    def topk(self, queries: LongTensor) -> tuple[FloatTensor, LongTensor]:
        """``queries (B, 3|4) -> (values (B, k), ids (B, k))`` of a top-k module."""
        if not self.is_topk:
            raise ExportError(f"{self.path} scores all entities: use score_all()")
        values, ids = self.module(queries.cpu())
        return values, ids
