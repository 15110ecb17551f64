"""ONNX export of a model's 1-N scoring (``torch.onnx.export``), weight compression, and :class:`OnnxScorer`.

Exporter: PyTorch's TorchScript-based exporter (``dynamo=False``, opset 17). With torch 2.13 both exporters
produce graphs that match the model (checked on every registered model family); the ``torch.export``-based one
(``dynamo=True``, needs ``onnxscript``) takes about 10 s per model on 2 CPU cores against about 0.2 s, so it is
offered as ``exporter="dynamo"`` but is not the default. Constant folding is off: folding would store a second,
transposed copy of the entity table (``q @ E^T``); ONNX Runtime folds the transpose in memory when it loads.

Lower precision stores the weights, not the arithmetic (scores are computed in float32 on any ONNX Runtime
build, CPU included):

* ``fp16``: every float matrix is stored as float16 and cast back to float32 by a ``Cast`` node at load;
* ``int8``: every float matrix is stored as int8 rows with one float32 scale per row (symmetric, zero point 0)
  and restored by a ``DequantizeLinear`` node (per-row quantised embedding tables). Vectors (biases) stay
  float32. ONNX Runtime folds these nodes at load only with the session option
  ``session.disable_quant_qdq = 1`` (:class:`OnnxScorer` sets it); without it every call dequantises the tables.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from kgdistill.export.graph import Dtype, ExportError, example_queries, frozen, scoring_module
from kgdistill.io import atomic_write_bytes
from kgdistill.models.base import KGEModel
from kgdistill.types import FloatTensor, LongTensor

if TYPE_CHECKING:
    from kgdistill.predict import Predictor

__all__ = ["OPSET", "OnnxScorer", "compress_weights", "export_onnx"]

OPSET = 17
META_KEY = "kgdistill"


def export_onnx(
    model: KGEModel,
    path: Path,
    *,
    topk: int | None = None,
    dtype: Dtype = "fp32",
    metadata: dict[str, Any] | None = None,
    exporter: Literal["torchscript", "dynamo"] = "torchscript",
) -> Path:
    """Write ``model``'s scoring graph (``queries (B, 3|4) -> scores (B, E)`` or the top-``k``) to ``path``.

    Args:
        dtype: how the weights are stored (see the module docstring); scores are float32 in every case.
        metadata: JSON-able data stored in the model's ``metadata_props`` under ``kgdistill``.
        exporter: ``torchscript`` (``dynamo=False``, default) or ``dynamo`` (``torch.export``, needs onnxscript).
    """
    import onnx

    model = frozen(model)
    module = scoring_module(model, topk).eval()
    outputs = ["scores"] if topk is None else ["values", "ids"]
    example = example_queries(model)
    query_axes = {0: "batch"} if model.temporal else {0: "batch", 1: "columns"}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.export.tmp")
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the legacy exporter's deprecation and tracer warnings
            if exporter == "dynamo":
                shapes: dict[int, Any] = {0: torch.export.Dim("batch")}
                if not model.temporal:
                    shapes[1] = torch.export.Dim("columns", min=3, max=4)
                torch.onnx.export(
                    module,
                    (example,),
                    str(tmp),
                    dynamo=True,
                    input_names=["queries"],
                    output_names=outputs,
                    dynamic_shapes=(shapes,),
                    opset_version=18,
                    verbose=False,
                )
            else:
                torch.onnx.export(
                    module,
                    (example,),
                    str(tmp),
                    dynamo=False,
                    input_names=["queries"],
                    output_names=outputs,
                    dynamic_axes={"queries": query_axes, **{o: {0: "batch"} for o in outputs}},
                    opset_version=OPSET,
                    do_constant_folding=False,
                )
        proto = onnx.load(str(tmp))
    finally:
        for extra in tmp.parent.glob(f"{tmp.name}*"):  # with the external data of a dynamo export
            extra.unlink(missing_ok=True)
    if dtype != "fp32":
        compress_weights(proto, dtype)
    if metadata is not None:
        entry = proto.metadata_props.add()
        entry.key, entry.value = META_KEY, json.dumps(metadata)
    _save(proto, path)
    return path


def _save(proto: Any, path: Path) -> None:
    """Serialise ``proto`` to ``path`` atomically (one file; graphs over 2 GB are refused)."""
    if proto.ByteSize() >= 2**31 - 1:
        raise ExportError(
            "the graph exceeds ONNX's 2 GB single-file limit: export with --dtype fp16/int8"
        )
    atomic_write_bytes(path, proto.SerializeToString())


def compress_weights(proto: Any, dtype: Dtype) -> None:
    """Store every float32 matrix initializer of ``proto`` as float16 or per-row int8, in place.

    Each matrix ``W`` is replaced by ``W.fp16`` + ``Cast`` (fp16) or ``W.int8``, ``W.scale`` + ``DequantizeLinear``
    (int8, axis 0) that produce ``W`` again, so the rest of the graph is unchanged.
    """
    from onnx import TensorProto, helper, numpy_helper

    graph = proto.graph
    new_inits, new_nodes, keep = [], [], []
    for init in graph.initializer:
        if init.data_type != TensorProto.FLOAT or len(init.dims) != 2:
            keep.append(init)
            continue
        w = numpy_helper.to_array(init)
        name = init.name
        if dtype == "fp16":
            new_inits.append(numpy_helper.from_array(w.astype(np.float16), f"{name}.fp16"))
            new_nodes.append(
                helper.make_node("Cast", [f"{name}.fp16"], [name], to=TensorProto.FLOAT)
            )
        else:
            q, scale = quantize_rows(w)
            new_inits += [
                numpy_helper.from_array(q, f"{name}.int8"),
                numpy_helper.from_array(scale, f"{name}.scale"),
                numpy_helper.from_array(np.zeros(len(scale), np.int8), f"{name}.zero"),
            ]
            new_nodes.append(
                helper.make_node(
                    "DequantizeLinear",
                    [f"{name}.int8", f"{name}.scale", f"{name}.zero"],
                    [name],
                    axis=0,
                )
            )
    del graph.initializer[:]
    graph.initializer.extend(keep + new_inits)
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(new_nodes + nodes)


def quantize_rows(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-row int8: ``w (n, d) -> (q (n, d) int8, scale (n,) float32)`` with ``w ≈ q * scale``."""
    amax = np.abs(w).max(axis=1)
    scale = np.where(amax > 0, amax / 127.0, 1.0).astype(np.float32)
    q = np.clip(np.rint(w / scale[:, None]), -127, 127).astype(np.int8)
    return q, scale


class OnnxScorer:
    """An exported graph under ONNX Runtime, scoring like a model: ``score_all(queries (B, 3|4)) -> (B, E)``.

    What :func:`kgdistill.evaluate.evaluate`, a re-ranking retriever or a service needs from a model. A top-k
    graph answers :meth:`topk` instead.

    Args:
        path: the ``.onnx`` file.
        threads: intra-op threads of the session (``None``: ONNX Runtime's default, all cores).
    """

    def __init__(self, path: str | Path, *, threads: int | None = None) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise ExportError(f"ONNX model not found: {self.path}")
        options = ort.SessionOptions()
        # fold the weights' DequantizeLinear nodes once at load (int8 on disk, float32 in memory): kept, they
        # dequantise the entity table on every call (WN18RR, ComplEx rank 64: 19 ms a query instead of 2 ms)
        options.add_session_config_entry("session.disable_quant_qdq", "1")
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            str(self.path), options, providers=["CPUExecutionProvider"]
        )
        self.outputs = [o.name for o in self.session.get_outputs()]
        props = self.session.get_modelmeta().custom_metadata_map
        self.metadata: dict[str, Any] = json.loads(props[META_KEY]) if META_KEY in props else {}

    @property
    def is_topk(self) -> bool:
        return self.outputs == ["values", "ids"]

    def _run(self, queries: LongTensor) -> list[np.ndarray]:
        q = np.ascontiguousarray(queries.detach().cpu().numpy().astype(np.int64, copy=False))
        return self.session.run(None, {"queries": q})  # type: ignore[no-any-return]

    def score_all(self, queries: LongTensor) -> FloatTensor:
        """``queries (B, 3|4) int64 -> scores (B, E) float32`` (a CPU tensor)."""
        if self.is_topk:
            raise ExportError(f"{self.path} is a top-k graph: use topk(), or export without --topk")
        return torch.from_numpy(self._run(queries)[0])

    def topk(self, queries: LongTensor) -> tuple[FloatTensor, LongTensor]:
        """``queries (B, 3|4) -> (values (B, k), ids (B, k))`` of a top-k graph, best first."""
        if not self.is_topk:
            raise ExportError(f"{self.path} scores all entities: use score_all()")
        values, ids = self._run(queries)
        return torch.from_numpy(values), torch.from_numpy(ids)

    def score_hrt(self, facts: LongTensor) -> FloatTensor:
        """Score of each fact's own tail: ``facts (B, 3|4) -> (B,)``."""
        return self.score_all(facts).gather(1, facts[:, 2:3].cpu()).squeeze(1)

    # what a holder of a model calls on it (the Predictor: ``model.to(device).eval().requires_grad_(False)``)
    def to(self, device: torch.device | str) -> OnnxScorer:
        """The session runs on CPU; only ``cpu`` is accepted."""
        if torch.device(device).type != "cpu":
            raise ExportError(f"an ONNX Runtime CPU session cannot move to {device}")
        return self

    def eval(self) -> OnnxScorer:
        return self

    def requires_grad_(self, requires_grad: bool = True) -> OnnxScorer:
        return self

    def predictor(self) -> Predictor:
        """A :class:`~kgdistill.predict.Predictor` over this graph (labels and time protocol from its metadata):
        queries by label, top-k answers, as for a run."""
        from kgdistill.data.time import TimeSpec
        from kgdistill.predict import Predictor

        meta = self.metadata
        if "id_maps" not in meta or "time" not in meta:
            raise ExportError(f"{self.path} carries no labels (not written by kgdistill export)")
        return Predictor(
            self,  # type: ignore[arg-type]
            meta["id_maps"],
            TimeSpec.from_dict(meta["time"]),
            model_name=meta.get("model", {}).get("name"),
        )
