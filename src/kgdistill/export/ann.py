"""Approximate top-k for dot-product models: a FAISS inner-product index over the entity vectors.

For DistMult, ComplEx, TNTComplEx, TimePlex, TA-DistMult and the LLM scorer the score of a tail is a real inner product
``s(t) = <q, e_t>`` of the query vector ``q = combine(h, r[, tau])`` and the entity's row (complex numbers as
``[re | im]``: ``Re(<h r, conj t>) = <h r (flattened), t (flattened)>``). The best tails of a query are then its
maximum-inner-product neighbours among the entity rows, which a graph index (HNSW) or an inverted file (IVF)
finds without scoring every entity. Exact search (``score_all`` + ``topk``) stays the default everywhere; an
:class:`AnnIndex` is an opt-in for vocabularies where scoring all entities per query is the bottleneck.

Distance models (TransE, RotatE, TTransE, TA-TransE, HyTE) are refused: their scores are not inner products.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from kgdistill.export.graph import ExportError
from kgdistill.models.base import KGEModel
from kgdistill.types import FloatTensor, LongTensor

__all__ = ["AnnIndex", "build_ann_index", "exact_topk", "recall_at_k"]

Kind = Literal["hnsw", "ivf"]


def _check_dot(model: KGEModel, name: str | None) -> None:
    what = name or type(model).__name__
    inter = getattr(model, "interaction", None)
    if (
        not isinstance(model, KGEModel)
        or type(model).score_all is not KGEModel.score_all
        or inter is None
        or inter.kind != "dot"
        or model.history is not None
    ):
        why = (
            f"{type(inter).__name__} is a distance"
            if getattr(inter, "kind", None) == "distance"
            else "its recurrence term (model.history) adds per-entity scores"
            if getattr(model, "history", None) is not None
            else f"{type(model).__name__} scores each (query, entity) pair jointly"
        )
        raise ExportError(
            f"model '{what}' has no approximate top-k: its scores are not inner products of a query vector "
            f"and entity vectors ({why}); use exact search (score_all + topk)"
        )


@dataclass
class AnnIndex:
    """A FAISS inner-product index over a dot-product model's entity vectors ``(E, d)``.

    Attributes:
        index: the FAISS index (``search`` parameters ``ef_search`` / ``nprobe`` already set).
        model: the model whose :meth:`~KGEModel.query_vectors` are searched.
        kind: ``hnsw`` or ``ivf``.
    """

    index: Any
    model: KGEModel
    kind: str

    @property
    def num_entities(self) -> int:
        return int(self.index.ntotal)

    @torch.no_grad()
    def topk(self, queries: LongTensor, k: int = 10) -> tuple[FloatTensor, LongTensor]:
        """``queries (B, 3|4) -> (scores (B, k), ids (B, k))``, best first (approximate; scores are exact
        inner products of the entities found; a row found short of ``k`` is padded with ``-inf`` / ``-1``)."""
        q = self.model.query_vectors(queries).detach().float().cpu().numpy()
        scores, ids = self.index.search(np.ascontiguousarray(q), k)
        s, i = torch.from_numpy(scores), torch.from_numpy(ids)
        return s.masked_fill(i < 0, float("-inf")), i

    def set_search(self, *, ef_search: int | None = None, nprobe: int | None = None) -> None:
        """Trade recall for speed: HNSW's ``efSearch``, IVF's ``nprobe`` (both: larger = better, slower)."""
        if ef_search is not None and self.kind == "hnsw":
            self.index.hnsw.efSearch = ef_search
        if nprobe is not None and self.kind == "ivf":
            self.index.nprobe = nprobe


@torch.no_grad()
def build_ann_index(
    model: KGEModel,
    *,
    kind: Kind = "hnsw",
    name: str | None = None,
    m: int = 32,
    ef_construction: int = 200,
    ef_search: int = 128,
    nlist: int | None = None,
    nprobe: int = 16,
) -> AnnIndex:
    """An approximate top-k index over ``model``'s entity vectors (inner product).

    Args:
        kind: ``hnsw`` (``IndexHNSWFlat``: ``m`` links per node, ``ef_construction`` / ``ef_search`` beam
            widths) or ``ivf`` (``IndexIVFFlat``: ``nlist`` k-means cells, default ``4 sqrt(E)``; ``nprobe``
            cells searched per query).
        name: how errors name the model (default: its class).

    Raises:
        ExportError: the model's scores are not inner products (a distance model).
    """
    import faiss

    _check_dot(model, name)
    table = model.entities.table().detach().float().cpu().numpy()
    table = np.ascontiguousarray(table)
    e, d = table.shape
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = ef_construction
        index.add(table)
        index.hnsw.efSearch = ef_search
    elif kind == "ivf":
        cells = nlist or max(1, min(e // 39, int(4 * np.sqrt(e))))
        quantizer = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFFlat(quantizer, d, cells, faiss.METRIC_INNER_PRODUCT)
        index.train(table)
        index.add(table)
        index.nprobe = nprobe
    else:
        raise ExportError(f"unknown ANN index kind '{kind}' (hnsw or ivf)")
    return AnnIndex(index=index, model=model, kind=kind)


@torch.no_grad()
def exact_topk(model: KGEModel, queries: LongTensor, k: int = 10) -> tuple[FloatTensor, LongTensor]:
    """Exact ``(scores (B, k), ids (B, k))`` by scoring every entity."""
    top = torch.topk(model.score_all(queries), k, dim=1)
    return top.values, top.indices


def recall_at_k(approx: LongTensor, exact: LongTensor) -> float:
    """Mean share of each row's exact top-k ``exact (B, k)`` that ``approx (B, k)`` found."""
    hits = (approx.unsqueeze(2) == exact.unsqueeze(1)).any(dim=2).float()  # (B, k)
    return float(hits.mean())
