"""What is exported: a model's 1-N scoring as a module of one input, and the models each format can take.

An exported graph is a function of one int64 tensor ``queries (B, 3|4)`` (columns ``h, r, t[, tau]``; ``t`` is
never read; head queries are tail queries on the reciprocal relation ``r + num_relations``) with a dynamic batch
axis, returning either

* ``scores (B, E)``: every entity's score as the tail (:class:`ScoreAll`), or
* ``values (B, k), ids (B, k)``: the best ``k``, best first (:class:`TopK`).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn

from kgdistill.errors import KGDistillError
from kgdistill.models.base import KGEModel
from kgdistill.types import FloatTensor, LongTensor

__all__ = [
    "DTYPES",
    "FORMATS",
    "Dtype",
    "ExportError",
    "Format",
    "ScoreAll",
    "TopK",
    "example_queries",
    "scores_of",
    "scoring_module",
]

Format = Literal["onnx", "torchscript", "safetensors-embeddings"]
Dtype = Literal["fp32", "fp16", "int8"]
FORMATS: tuple[str, ...] = ("onnx", "torchscript", "safetensors-embeddings")
DTYPES: tuple[str, ...] = ("fp32", "fp16", "int8")


class ExportError(KGDistillError):
    """A model cannot be exported in the asked format, or its export does not match the PyTorch model."""


def scores_of(model: KGEModel, queries: LongTensor) -> FloatTensor:
    """``model.score_all(queries)`` ``(B, E)`` as float32, in a form both exporters translate correctly.

    A distance model with ``p != 2`` is scored from the difference tensor ``(B, E, d)``: the TorchScript-based
    ONNX exporter translates ``torch.cdist`` for ``p != 2`` without the absolute value (NaN or wrong scores).
    """
    inter = model.interaction
    if type(model).score_all is KGEModel.score_all and inter.kind == "distance" and inter.p != 2.0:
        diff = (model.query_vectors(queries).unsqueeze(1) - model.entities.table()).abs()
        if inter.p == 1.0:
            return -diff.sum(-1).float()
        return -diff.pow(inter.p).sum(-1).pow(1.0 / inter.p).float()
    return model.score_all(queries).float()


class ScoreAll(nn.Module):
    """``queries (B, 3|4) int64 -> scores (B, E) float32``: the model's :meth:`~KGEModel.score_all`."""

    def __init__(self, model: KGEModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, queries: LongTensor) -> FloatTensor:
        return scores_of(self.model, queries)


class TopK(nn.Module):
    """``queries (B, 3|4) int64 -> (values (B, k) float32, ids (B, k) int64)``, best first."""

    def __init__(self, model: KGEModel, k: int) -> None:
        super().__init__()
        self.model = model
        self.k = k

    def forward(self, queries: LongTensor) -> tuple[FloatTensor, LongTensor]:
        top = torch.topk(scores_of(self.model, queries), self.k, dim=1)
        return top.values, top.indices


def num_entities(model: KGEModel) -> int:
    """``E``, the rows of the model's entity table."""
    with torch.no_grad():
        return int(model.entities.table().shape[0])


def query_columns(model: KGEModel) -> int:
    """Columns a query needs: 4 for a model that reads the time, else 3 (a 4th column is then ignored)."""
    return 4 if model.temporal else 3


def example_queries(model: KGEModel, batch: int = 2) -> LongTensor:
    """``batch`` valid queries ``(batch, 3|4)`` for tracing (ids 0 and 1, time id 0)."""
    q = torch.zeros(batch, query_columns(model), dtype=torch.long)
    q[:, 0] = torch.arange(batch) % max(num_entities(model), 1)
    return q


def scoring_module(model: KGEModel, topk: int | None) -> nn.Module:
    """The module to export: :class:`ScoreAll`, or :class:`TopK` when ``topk`` is given.

    Raises:
        ExportError: ``topk`` is not between 1 and the number of entities.
    """
    if topk is None:
        return ScoreAll(model)
    e = num_entities(model)
    if not 1 <= topk <= e:
        raise ExportError(f"--topk must be between 1 and the {e} entities, got {topk}")
    return TopK(model, topk)


def frozen(model: KGEModel) -> KGEModel:
    """The model on CPU in eval mode without gradients (what every exporter traces)."""
    return model.cpu().eval().requires_grad_(False)


def describe_io(model: KGEModel, topk: int | None) -> dict[str, Any]:
    """The graph's signature, for reports and metadata."""
    cols = query_columns(model)
    outputs = (
        {"scores": ["batch", num_entities(model)]}
        if topk is None
        else {"values": ["batch", topk], "ids": ["batch", topk]}
    )
    return {"inputs": {"queries": ["batch", cols]}, "outputs": outputs, "query_columns": cols}
