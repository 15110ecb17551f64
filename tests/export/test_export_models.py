"""Every registered model family exports and round-trips in every format, or is refused with one clear error."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from kgdistill.data import KG
from kgdistill.data.batching import both_directions
from kgdistill.export import ExportError, export_model
from kgdistill.export.check import compare_scores, compare_topk
from kgdistill.export.graph import scores_of
from kgdistill.features import TextFeatures
from kgdistill.models import MODELS, KGEModel, Vocab, build_model, is_temporal
from kgdistill.models.zoo import model_features

FORMATS = ("onnx", "torchscript", "safetensors-embeddings")
SUFFIX = {"onnx": ".onnx", "torchscript": ".pt", "safetensors-embeddings": ".safetensors"}
#: (model, format) pairs that are refused, with a phrase of the reason the error must give
REFUSED = {
    ("llm_scorer", "safetensors-embeddings"): "text features",
    ("timeplex", "safetensors-embeddings"): "no layout in the embedding-table format",
    **{("bi_encoder", fmt): "text encoder" for fmt in FORMATS},
    **{("cross_encoder", fmt): "joint text" for fmt in FORMATS},
    **{("generative", fmt): "language model's likelihood" for fmt in FORMATS},
}


def _model(
    name: str,
    kg: KG,
    plm: Callable[..., Any] | None = None,
    lm: Callable[..., Any] | None = None,
) -> KGEModel:
    """``name`` built on ``kg`` with spread-out random weights (``plm``: the bi-encoder's features maker,
    ``lm``: the generative model's)."""
    vocab = Vocab(kg.num_entities, kg.num_relations, tuple(kg.time.labels))
    features: dict[str, Any] | None = None
    if "plm" in model_features(name):
        assert plm is not None
        features = {"plm": plm(kg)}
    if "lm" in model_features(name):
        assert lm is not None
        features = {"lm": lm(kg)}
    if "text" in model_features(name):
        text = TextFeatures.placeholder(kg.num_entities, kg.num_relations, kg.num_times or 0, 12)
        for t in (text.entities, text.relations, text.times):
            if t is not None:
                t.normal_()
        features = {"text": text}
    spec = {"name": name} if "lm" in model_features(name) else {"name": name, "dim": 8}
    model = build_model(spec, vocab, features=features).eval()
    with (
        torch.no_grad()
    ):  # spread scores out: near-ties of a fresh model would make top-10 checks moot
        for p in model.parameters():
            p.normal_(std=0.5)
    return model


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", MODELS.names())
def test_every_model_exports_and_round_trips_or_is_refused(
    name: str,
    fmt: str,
    tiny_kg: KG,
    tiny_tkg: KG,
    tmp_path: Path,
    tiny_plm: Callable[..., Any],
    tiny_lm: Callable[..., Any],
) -> None:
    kg = tiny_tkg if is_temporal(name) else tiny_kg
    model = _model(name, kg, tiny_plm, tiny_lm)
    out = tmp_path / f"model{SUFFIX[fmt]}"
    if (name, fmt) in REFUSED:
        with pytest.raises(ExportError, match=rf"model '{name}'.*{REFUSED[name, fmt]}"):
            export_model(model, out, format=fmt, name=name)  # type: ignore[arg-type]
        assert not out.exists()
        return
    scorer = export_model(model, out, format=fmt, name=name)()  # type: ignore[arg-type]
    queries = both_directions(kg.splits["test"], kg.num_relations)
    check = compare_scores(lambda q: scores_of(model, q), scorer.score_all, queries)
    with torch.no_grad():
        scale = 1.0 + float(model.score_all(queries).abs().max())
    assert check["max_abs_diff"] < 1e-5 * scale
    assert check["top10_agree_up_to_ties"] == 1.0
    # dynamic batch axis: one query and a batch give the same rows
    one, many = scorer.score_all(queries[:1]), scorer.score_all(queries[:7])
    assert one.shape == (1, kg.num_entities) and many.shape == (7, kg.num_entities)
    torch.testing.assert_close(one[0], many[0], rtol=1e-5, atol=1e-5 * scale)


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
@pytest.mark.parametrize("name", ["distmult", "tntcomplex", "ta_distmult", "hyte"])
def test_topk_graphs(name: str, fmt: str, tiny_kg: KG, tiny_tkg: KG, tmp_path: Path) -> None:
    kg = tiny_tkg if is_temporal(name) else tiny_kg
    model = _model(name, kg)
    scorer = export_model(model, tmp_path / "top", format=fmt, name=name, topk=10)()  # type: ignore[arg-type]
    queries = both_directions(kg.splits["test"], kg.num_relations)
    check = compare_topk(lambda q: scores_of(model, q), scorer.topk, queries)
    assert check["top10_agree_up_to_ties"] == 1.0 and check["max_abs_diff"] < 1e-4


def test_transe_l1_exports_correctly(tiny_kg: KG, tmp_path: Path) -> None:
    """The TorchScript-based exporter drops the absolute value of ``cdist`` for ``p != 2``; the export avoids it."""
    vocab = Vocab(tiny_kg.num_entities, tiny_kg.num_relations)
    model = build_model({"name": "transe", "dim": 8, "p": 1.0}, vocab).eval()
    scorer = export_model(model, tmp_path / "l1.onnx", format="onnx", name="transe")()
    queries = both_directions(tiny_kg.splits["test"], tiny_kg.num_relations)
    with torch.no_grad():
        torch.testing.assert_close(scorer.score_all(queries), model.score_all(queries))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tntcomplex", "ta_distmult", "transe"])
def test_dynamo_exporter(name: str, tiny_kg: KG, tiny_tkg: KG, tmp_path: Path) -> None:
    """The ``torch.export``-based ONNX exporter (about 10 s a model on 2 cores) gives the same graphs."""
    pytest.importorskip("onnxscript")
    from kgdistill.export.onnx import OnnxScorer, export_onnx

    kg = tiny_tkg if is_temporal(name) else tiny_kg
    model = _model(name, kg)
    export_onnx(model, tmp_path / "m.onnx", exporter="dynamo")
    queries = both_directions(kg.splits["test"], kg.num_relations)
    check = compare_scores(
        lambda q: scores_of(model, q), OnnxScorer(tmp_path / "m.onnx").score_all, queries
    )
    assert check["top10_agree_up_to_ties"] == 1.0
