"""A re-ranker's scores fused with its retriever's, the weight chosen on validation (``plm_contexts.py``).

A re-ranker trained briefly on two CPU cores can order the retriever's top-k worse than the retriever did. The
fused score ``(1 - mix) * log_softmax(re-ranker) + mix * log_softmax(retriever)`` over each query's candidates
(:func:`kgdistill.evaluate.fuse_scores`) keeps what both know; ``mix`` is read off a grid on the validation
split's first facts (one re-ranker pass for the whole grid, :func:`kgdistill.api.rerank_sweep`), and the test
split is evaluated once, at that value. The sweep and the chosen value are kept in the run's ``fusion.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from _plm_kge import result_row
from kgdistill.api import evaluate_run, rerank_sweep
from kgdistill.evaluate import best_mix, mix_grid
from kgdistill.io import atomic_write_text

#: the retriever's weights tried on validation: 0 (the re-ranker alone) to 1 (the retriever's order)
MIXES = tuple(mix_grid(0.05))
SUFFIX = " + retriever"


def fused_label(model: str) -> str:
    """The table's name of ``model``'s fused rows."""
    return f"{model}{SUFFIX}"


def reranker_of(label: str) -> str | None:
    """The re-ranker a fused row belongs to, or ``None`` for any other row."""
    return label[: -len(SUFFIX)] if label.endswith(SUFFIX) else None


def fusion(run: Path, retriever: Path, k: int, facts: int) -> dict[str, Any]:
    """``run`` (a re-ranker) fused with ``retriever``'s top-``k`` scores: the validation MRR of every weight of
    :data:`MIXES` on the valid split's first ``facts`` facts, the chosen weight, and the test metrics at that
    weight on the test split's first ``facts`` facts. Computed once per (retriever, k, facts, grid)."""
    cached = run / "fusion.json"
    key = {"retriever": str(retriever.resolve()), "k": k, "facts": facts, "mixes": list(MIXES)}
    if cached.is_file():
        doc: dict[str, Any] = json.loads(cached.read_text())
        if all(doc.get(x) == v for x, v in key.items()):
            return doc
    sweep = rerank_sweep(
        run, retriever, mixes=MIXES, split="valid", rerank_k=k, max_queries=facts, progress=False
    )
    valid = {m: metrics.mrr for m, metrics in sweep.items()}
    mix = best_mix(valid)
    test = evaluate_run(
        run,
        retriever=retriever,
        rerank_k=k,
        max_queries=facts,
        overrides={"rerank_mix": mix},
        progress=False,
    )
    doc = {
        **key,
        "valid_mrr": {str(m): v for m, v in valid.items()},
        "mix": mix,
        "test": test.to_dict(),
    }
    atomic_write_text(cached, json.dumps(doc, indent=1) + "\n")
    return doc


def fused_row(row: dict[str, Any], run: Path, retriever: Path, facts: int) -> dict[str, Any]:
    """The fused row beside a re-ranker's ``row``, evaluated on the first ``facts`` facts of each split (same
    dataset, source, seed, parameters, training time and time per query: the fusion adds two softmaxes over k
    scores)."""
    doc = fusion(run, retriever, int(row["rerank_k"]), facts)
    label = fused_label(row["model"])
    out = result_row(label, row["dataset"], row["source"], row["seed"], doc["test"], run)
    return {
        **out,
        "parameters": row["parameters"],
        "train_seconds": row["train_seconds"],
        "rerank_k": row["rerank_k"],
        "rerank_mix": doc["mix"],
        "ms_per_query": row["ms_per_query"],
    }
