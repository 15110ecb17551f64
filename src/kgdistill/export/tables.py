"""``safetensors-embeddings``: a model's tables and a JSON description of its scoring, for scoring elsewhere.

The file holds the tables (``entity``, ``relation``, and as the model needs them ``time``, ``relation_nt``,
``normal`` or ``relation_time``) and, in its header under ``kgdistill`` and beside it as ``<file>.scoring.json``,
how a score is computed from them. :class:`TableScorer` is that description implemented in a few lines of
PyTorch (it imports no kgdistill model code): the reference a re-implementation in another language can be
checked against, and what the export is verified with.

Scoring, for a query ``(h, r, ?, [tau])`` (head queries ``(?, r, t)`` are asked as ``(t, r + R, ?)``, ``R`` the
number of original relations; complex rows are ``[re | im]``, ``∘`` the element-wise complex product):

* relation vector ``rv``: ``static`` ``relation[r]``; ``add_time`` ``relation[r] + time[tau]``; ``mul_time``
  ``relation[r] ∘ time[tau] + relation_nt[r]``; ``table`` ``relation_time[r, tau]`` (an LSTM encoder, evaluated
  for every relation and time at export);
* ``distmult``: ``q = entity[h] * rv``, ``s = q · entity[t]``; ``complex``: ``q = entity[h] ∘ rv``,
  ``s = q · entity[t]`` (the real part of ``<h, r, conj t>``);
* ``transe``: ``s = -||entity[h] + rv - entity[t]||_p``; ``rotate``: ``s = -||entity[h] ∘ (cos rv, sin rv) -
  entity[t]||_p`` (the norm over the ``2d`` reals);
* ``hyte``: ``w = normal[tau] / ||normal[tau]||``, ``P(x) = x - (x · w) w``,
  ``s = -sqrt(||P(entity[h]) + P(rv) - P(entity[t])||^2 + 1e-9)``.

``fp16`` stores the tables as float16; ``int8`` stores each table ``X`` as ``X.int8`` with one float32 scale per
row ``X.scale``: ``X = X.int8 * X.scale[..., None]``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from kgdistill.export.graph import Dtype, ExportError, frozen
from kgdistill.io import atomic_save_tensors, read_safetensors, write_json
from kgdistill.models.base import KGEModel
from kgdistill.models.hyte import HyTE
from kgdistill.models.interactions import INTERACTIONS
from kgdistill.models.representations import (
    AddTime,
    EmbeddingTable,
    LSTMTime,
    MulTime,
    StaticRelations,
)
from kgdistill.types import HEAD, REL, TIME, FloatTensor, LongTensor

__all__ = ["TableScorer", "export_tables", "model_tables"]

META_KEY = "kgdistill"
LAYOUT = "kgdistill-embeddings"
_ENCODERS = {StaticRelations: "static", AddTime: "add_time", MulTime: "mul_time", LSTMTime: "table"}


def _interaction_name(model: KGEModel) -> str | None:
    if type(model) is HyTE:
        return "hyte"
    if type(model) is not KGEModel:
        return None
    for name, cls in INTERACTIONS.items():
        if type(model.interaction) is cls:
            return name
    return None


@torch.no_grad()
def model_tables(model: KGEModel, name: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The tables of ``model`` and the description of its scoring (float32).

    Raises:
        ExportError: the model's scoring has no layout in the table format (names the model and why).
    """
    model = frozen(model)
    interaction = _interaction_name(model)
    encoder = _ENCODERS.get(type(model.relations))  # type: ignore[arg-type]
    if interaction is None or encoder is None or not isinstance(model.entities, EmbeddingTable):
        why = (
            "its vectors come from frozen text features through learned projections and an MLP, not from "
            "embedding tables"
            if model.relations.__class__.__name__ == "TextRelations"
            else f"its scoring ({type(model).__name__} with {type(model.relations).__name__} and "
            f"{type(model.interaction).__name__}) has no layout in the embedding-table format"
        )
        raise ExportError(
            f"model '{name}' cannot be exported as safetensors-embeddings: {why}; export it with "
            "--format onnx or torchscript"
        )
    rel = model.relations
    tables = {"entity": model.entities.weight, "relation": rel.rel.weight}  # type: ignore[union-attr]
    if isinstance(rel, (AddTime, MulTime)):
        tables["time"] = rel.time.weight
    if isinstance(rel, MulTime):
        tables["relation_nt"] = rel.rel_nt.weight
    if isinstance(rel, LSTMTime):
        num_rel, num_times = rel.rel.weight.shape[0], rel.tokens.shape[0]
        r = torch.arange(num_rel).repeat_interleave(num_times)
        tau = torch.arange(num_times).repeat(num_rel)
        tables = {
            "entity": tables["entity"],
            "relation_time": rel(r, tau).view(num_rel, num_times, -1),
        }
    if isinstance(model, HyTE):
        tables["normal"] = model.normals.weight
    description = {
        "layout": LAYOUT,
        "model": name,
        "interaction": interaction,
        "relation_encoder": encoder,
        "p": float(model.interaction.p) if model.interaction.kind == "distance" else None,
        "complex": bool(model.interaction.complex),
        "temporal": bool(model.temporal),
        "num_entities": int(tables["entity"].shape[0]),
        "num_relations": int((tables.get("relation", tables.get("relation_time"))).shape[0] // 2),
        "reciprocal": "a head query (?, r, t) is the tail query (t, r + num_relations, ?)",
        "tables": {k: list(v.shape) for k, v in tables.items()},
    }
    return {k: v.detach().float().contiguous() for k, v in tables.items()}, description


def _encode(tables: dict[str, torch.Tensor], dtype: Dtype) -> dict[str, torch.Tensor]:
    if dtype == "fp32":
        return tables
    if dtype == "fp16":
        return {k: v.half() for k, v in tables.items()}
    out = {}
    for k, v in tables.items():
        amax = v.abs().amax(dim=-1)
        scale = torch.where(amax > 0, amax / 127.0, torch.ones_like(amax))
        out[f"{k}.int8"] = (v / scale.unsqueeze(-1)).round().clamp(-127, 127).to(torch.int8)
        out[f"{k}.scale"] = scale.float().contiguous()
    return out


def export_tables(
    model: KGEModel,
    path: Path,
    *,
    name: str,
    dtype: Dtype = "fp32",
    topk: int | None = None,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write ``model``'s tables to ``path`` and the scoring description to ``<path>.scoring.json``."""
    if topk is not None:
        raise ExportError("safetensors-embeddings holds tables, not a graph: --topk does not apply")
    tables, description = model_tables(model, name)
    description["dtype"] = dtype
    header = {**(metadata or {}), "scoring": description}
    atomic_save_tensors(Path(path), _encode(tables, dtype), {META_KEY: json.dumps(header)})
    write_json(scoring_path(Path(path)), description)
    return Path(path)


def scoring_path(path: Path) -> Path:
    """``<file>.scoring.json`` beside the tables."""
    return path.with_name(path.name + ".scoring.json")


def _cmul(a: FloatTensor, b: FloatTensor) -> FloatTensor:
    ar, ai = a.chunk(2, -1)
    br, bi = b.chunk(2, -1)
    return torch.cat([ar * br - ai * bi, ar * bi + ai * br], -1)


class TableScorer:
    """Scores from a ``safetensors-embeddings`` file alone (see the module docstring): ``score_all``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ExportError(f"embedding tables not found: {self.path}")
        header, raw = read_safetensors(self.path, "embedding tables")
        if META_KEY not in header:
            raise ExportError(f"{self.path}: no '{META_KEY}' description in the header")
        self.metadata: dict[str, Any] = json.loads(header[META_KEY])
        self.scoring: dict[str, Any] = self.metadata["scoring"]
        self.tables: dict[str, torch.Tensor] = {}
        for k in self.scoring[
            "tables"
        ]:  # float32 / float16 as stored, int8 rows times their scales
            self.tables[k] = (
                raw[k].float()
                if k in raw
                else raw[f"{k}.int8"].float() * raw[f"{k}.scale"].unsqueeze(-1)
            )

    def _relation(self, queries: LongTensor) -> FloatTensor:
        t, kind = self.tables, self.scoring["relation_encoder"]
        r = queries[:, REL]
        if kind == "table":
            return t["relation_time"][r, queries[:, TIME]]
        rv = t["relation"][r]
        if kind == "add_time":
            return rv + t["time"][queries[:, TIME]]
        if kind == "mul_time":
            return _cmul(rv, t["time"][queries[:, TIME]]) + t["relation_nt"][r]
        return rv

    @torch.no_grad()
    def score_all(self, queries: LongTensor) -> FloatTensor:
        """``queries (B, 3|4) -> scores (B, E)`` float32."""
        e, kind, p = self.tables["entity"], self.scoring["interaction"], self.scoring["p"]
        h, rv = e[queries[:, HEAD]], self._relation(queries)
        if kind == "distmult":
            return (h * rv) @ e.T
        if kind == "complex":
            return _cmul(h, rv) @ e.T
        if kind == "transe":
            return -torch.cdist(h + rv, e, p=p) if p == 2.0 else -_pnorm(h + rv, e, p)
        if kind == "rotate":
            q = _cmul(h, torch.cat([torch.cos(rv), torch.sin(rv)], -1))
            return -torch.cdist(q, e, p=p) if p == 2.0 else -_pnorm(q, e, p)
        w = F.normalize(self.tables["normal"][queries[:, TIME]], dim=-1)

        def proj(x: FloatTensor, w: FloatTensor) -> FloatTensor:
            return x - (x * w).sum(-1, keepdim=True) * w

        a = proj(h, w) + proj(
            rv, w
        )  # (B, d); P(t) for every entity: (B, E, d) without materialising it
        d2 = (a * a).sum(-1, keepdim=True) - 2 * a @ e.T + (e * e).sum(-1) - (w @ e.T) ** 2
        return -torch.sqrt(d2.clamp_min(0.0) + 1e-9)


def _pnorm(q: FloatTensor, e: FloatTensor, p: float) -> FloatTensor:
    """``||q_b - e_j||_p`` ``(B, E)`` from the difference tensor."""
    return (q.unsqueeze(1) - e).abs().pow(p).sum(-1).pow(1.0 / p)
