"""``export_run``: a finished run (or a checkpoint file) -> an exported model, checked, with a JSON report.

The report (``<out>.report.json``) holds the format, dtype, bytes on disk, the graph's signature, the largest
score difference and the top-10 agreement with the PyTorch model on the test queries, and the test MRR / Hits@k
of the exported model and of PyTorch under the run's own protocol (:func:`kgdistill.evaluate.evaluate` over a
scorer of the exported file). A float32 export must agree: every exported top-10 must be a PyTorch top-10 (up
to ties), else :class:`ExportError` (the report is written first). fp16 and int8 are allowed to differ; their
report states what they cost in MRR.
"""

from __future__ import annotations

import functools
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from kgdistill.checkpoint import Checkpoint, load_checkpoint, load_model
from kgdistill.config import RunConfig
from kgdistill.data.batching import both_directions
from kgdistill.evaluate import evaluate
from kgdistill.export.check import compare_scores, compare_topk
from kgdistill.export.graph import (
    DTYPES,
    FORMATS,
    Dtype,
    ExportError,
    Format,
    describe_io,
    frozen,
    scores_of,
)
from kgdistill.export.onnx import OnnxScorer, export_onnx
from kgdistill.export.tables import TableScorer, export_tables
from kgdistill.export.torchscript import TorchScriptScorer, export_torchscript
from kgdistill.io import write_json
from kgdistill.models.base import KGEModel
from kgdistill.vocab import GraphVocab, check_graph

__all__ = ["export_model", "export_run", "open_run", "report_path"]

#: layout version of exported files' metadata
EXPORT_VERSION = 1


def open_run(path: str | Path) -> Checkpoint:
    """The checkpoint to export: a finished run folder's ``best.safetensors``, or a checkpoint file.

    Raises:
        CheckpointError / ExportError: missing path, unfinished run, corrupt file or another format version.
    """
    p = Path(path)
    if not p.exists():
        raise ExportError(f"no run or checkpoint at {p}")
    if p.is_dir():
        if not (p / "best.safetensors").is_file():
            hint = (
                " (training was interrupted: finish it with kgdistill train --resume "
                f"{p}, or export {p / 'last.safetensors'})"
                if (p / "last.safetensors").is_file()
                else ""
            )
            raise ExportError(f"run {p} holds no trained model: best.safetensors is missing{hint}")
        if not (p / "metrics.json").is_file():
            raise ExportError(
                f"run {p} is not finished (no metrics.json): finish it with kgdistill train --resume {p}, "
                f"or export the checkpoint file {p / 'best.safetensors'}"
            )
    return load_checkpoint(p)


def report_path(out: Path) -> Path:
    """``<out>.report.json``: where an export's report goes."""
    return out.with_name(out.name + ".report.json")


def _metadata(ckpt: Checkpoint, model: KGEModel, dtype: str, topk: int | None) -> dict[str, Any]:
    """What a consumer of the file needs besides the graph: labels, time protocol, signature."""
    from kgdistill import __version__

    meta = ckpt.meta
    return {
        "export_version": EXPORT_VERSION,
        "kgdistill_version": __version__,
        "model": meta["model"],
        "dataset": (meta.get("data") or {}).get("name") or meta["config"]["data"]["name"],
        "dtype": dtype,
        "topk": topk,
        "io": describe_io(model, topk),
        "time": meta.get("time"),
        "id_maps": meta["id_maps"],
    }


def export_model(
    model: KGEModel,
    out: Path,
    *,
    format: Format,
    name: str,
    dtype: Dtype = "fp32",
    topk: int | None = None,
    metadata: dict[str, Any] | None = None,
) -> Callable[[], Any]:
    """Write ``model`` in ``format`` to ``out``; returns a loader of a scorer of the written file."""
    if format not in FORMATS:
        raise ExportError(f"unknown format '{format}' (one of {', '.join(FORMATS)})")
    if dtype not in DTYPES:
        raise ExportError(f"unknown dtype '{dtype}' (one of {', '.join(DTYPES)})")
    refusal = getattr(model, "export_refusal", None)
    if refusal:
        raise ExportError(f"model '{name}' cannot be exported: {refusal}")
    if format == "onnx":
        export_onnx(model, out, topk=topk, dtype=dtype, metadata=metadata)
        return lambda: OnnxScorer(out)
    if format == "torchscript":
        export_torchscript(model, out, topk=topk, dtype=dtype, metadata=metadata)
        return lambda: TorchScriptScorer(out)
    export_tables(model, out, name=name, dtype=dtype, topk=topk, metadata=metadata)
    return lambda: TableScorer(out)


def export_run(
    run: str | Path,
    out: str | Path,
    *,
    format: Format = "onnx",
    dtype: Dtype = "fp32",
    topk: int | None = None,
    data_root: str | None = None,
    check_queries: int = 2000,
    max_queries: int | None = None,
) -> dict[str, Any]:
    """Export ``run``'s model to ``out``, check it on the test split and write ``<out>.report.json``.

    Args:
        run: a finished run folder or a checkpoint file.
        topk: export the top-``k`` graph ``(values, ids)`` instead of all scores.
        data_root: where the run's dataset is found (as ``--data-root``).
        check_queries: test queries (both directions) whose scores are compared one by one.
        max_queries: evaluate MRR on the first ``max_queries`` test facts only (default: all).

    Returns:
        The report.
    """
    from kgdistill.run import eval_kwargs, load_data

    started = time.perf_counter()
    ckpt = open_run(run)
    name = ckpt.meta["model"]["name"]
    cfg = RunConfig.model_validate(ckpt.meta["config"])
    model = frozen(load_model(ckpt))
    out = Path(out)
    metadata = _metadata(ckpt, model, dtype, topk)
    load = export_model(
        model, out, format=format, name=name, dtype=dtype, topk=topk, metadata=metadata
    )
    seconds = time.perf_counter() - started
    scorer = load()

    data = cfg.data.model_copy(update={"root": data_root}) if data_root else cfg.data
    kg = load_data(data)
    check_graph(GraphVocab.of_checkpoint(ckpt.meta), kg, what=str(ckpt.path))
    queries = both_directions(kg.splits["test"], kg.num_relations)[:check_queries]
    reference = functools.partial(scores_of, model)
    agreement = (
        compare_scores(reference, scorer.score_all, queries)
        if topk is None
        else compare_topk(reference, scorer.topk, queries)
    )
    protocol = eval_kwargs(cfg.eval)
    ref_metrics = evaluate(model, kg, "test", max_queries=max_queries, **protocol)
    with tempfile.TemporaryDirectory() as tmp:
        full = scorer
        if topk is not None:  # the MRR of the same weights' all-scores graph
            full = export_model(
                model, Path(tmp) / out.name, format=format, name=name, dtype=dtype
            )()
        metrics = evaluate(full, kg, "test", max_queries=max_queries, **protocol)

    report = {
        "format": format,
        "dtype": dtype,
        "file": out.name,
        "bytes": out.stat().st_size,
        "pytorch_parameter_bytes": model.num_bytes(),
        "model": name,
        "dataset": kg.name,
        "num_entities": kg.num_entities,
        "topk": topk,
        **describe_io(model, topk),
        "check": agreement,
        "test": {
            "exported": _summary(metrics.sides["both"]),
            "pytorch": _summary(ref_metrics.sides["both"]),
            "mrr_cost": ref_metrics.mrr - metrics.mrr,
            "protocol": metrics.protocol,
            "mrr_of": "the all-scores graph of the same weights" if topk is not None else out.name,
        },
        "export_seconds": round(seconds, 3),
        "checkpoint": str(ckpt.path),
        "versions": _versions(format),
    }
    if format == "safetensors-embeddings":
        report["scoring"] = out.name + ".scoring.json"
    write_json(report_path(out), report)
    if dtype == "fp32" and agreement["top10_agree_up_to_ties"] < 1.0:
        raise ExportError(
            f"the exported {name} disagrees with PyTorch: top-10 identical up to ties for "
            f"{agreement['top10_agree_up_to_ties']:.1%} of {agreement['queries']} test queries, max abs "
            f"score difference {agreement['max_abs_diff']:.3g} (report: {report_path(out)})"
        )
    return report


def _summary(sides: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in sides.items() if k == "mrr" or k.startswith("hits@")}


def _versions(format: str) -> dict[str, str]:
    out = {"torch": torch.__version__}
    if format == "onnx":
        import onnx
        import onnxruntime

        out.update(onnx=onnx.__version__, onnxruntime=onnxruntime.__version__)
    return out
