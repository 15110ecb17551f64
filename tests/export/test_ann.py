"""Approximate top-k (FAISS) for dot-product models: recall against exact search, refusals."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from kgdistill import api
from kgdistill.checkpoint import load_checkpoint, load_model
from kgdistill.config import parse_config
from kgdistill.data import KG
from kgdistill.data.batching import both_directions
from kgdistill.export import ExportError, build_ann_index
from kgdistill.export.ann import exact_topk, recall_at_k
from kgdistill.models import MODELS, KGEModel, Vocab, build_model, is_temporal
from kgdistill.models.zoo import model_features

FIXTURES = Path(__file__).parents[1] / "fixtures"
DOT = {"distmult", "complex", "tntcomplex", "timeplex", "ta_distmult", "llm_scorer", "bi_encoder"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[KGEModel, KG]:
    """DistMult-32 trained for 3 epochs on a real WN18RR subset, and its graph."""
    cfg = parse_config(
        {
            "data": {"name": str(FIXTURES / "wn18rr-mini")},
            "model": {"name": "distmult", "dim": 32, "init_scale": 0.1},
            "stages": [{"epochs": 3}],
            "train": {"optimizer": "adam", "lr": 0.02, "batch_size": 500, "progress": False},
        }
    )
    result = api.train(cfg, out=tmp_path_factory.mktemp("ann") / "run")
    model = load_model(load_checkpoint(result.run_dir)).eval()
    return model, api.load_data(cfg)


#: recall@10 the default search settings reach on the graph below (measured: HNSW 1.0, IVF 16 of 40 cells 0.92)
@pytest.mark.parametrize(("kind", "recall"), [("hnsw", 0.97), ("ivf", 0.85)])
def test_ann_recall_at_10_on_a_real_graph(
    trained: tuple[KGEModel, KG], kind: str, recall: float
) -> None:
    model, kg = trained
    index = build_ann_index(model, kind=kind)
    queries = both_directions(kg.splits["test"], kg.num_relations)
    approx_scores, approx_ids = index.topk(queries, 10)
    _, exact_ids = exact_topk(model, queries, 10)
    assert approx_ids.shape == (len(queries), 10)
    assert recall_at_k(approx_ids, exact_ids) >= recall
    # the scores returned are the model's scores of the entities found
    with torch.no_grad():
        torch.testing.assert_close(
            approx_scores, model.score_all(queries).gather(1, approx_ids), rtol=1e-4, atol=1e-4
        )
    index.set_search(ef_search=512, nprobe=10_000)
    assert recall_at_k(index.topk(queries, 10)[1], exact_ids) >= 0.99


def test_recall_at_k_counts_found_ids() -> None:
    exact = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8]])
    approx = torch.tensor([[4, 3, 9, 1], [5, 6, 7, 8]])
    assert recall_at_k(approx, exact) == pytest.approx((3 / 4 + 1) / 2)


@pytest.mark.parametrize("name", MODELS.names())
def test_dot_models_index_and_distance_models_are_refused(
    name: str,
    tiny_kg: KG,
    tiny_tkg: KG,
    tiny_plm: Callable[..., Any],
    tiny_lm: Callable[..., Any],
) -> None:
    kg = tiny_tkg if is_temporal(name) else tiny_kg
    vocab = Vocab(kg.num_entities, kg.num_relations, tuple(kg.time.labels))
    features = None
    if "text" in model_features(name):
        from kgdistill.features import TextFeatures

        features = {"text": TextFeatures.placeholder(kg.num_entities, kg.num_relations, 0, 8)}
    if "plm" in model_features(name):
        features = {"plm": tiny_plm(kg)}
    spec: dict[str, Any] = {"name": name, "dim": 8}
    if "lm" in model_features(name):  # the generative model: no dim (the LM's width)
        features, spec = {"lm": tiny_lm(kg)}, {"name": name}
    model = build_model(spec, vocab, features=features).eval()
    if name not in DOT:
        with pytest.raises(ExportError, match=rf"model '{name}' has no approximate top-k"):
            build_ann_index(model, name=name)
        return
    index = build_ann_index(model, name=name)
    queries = both_directions(kg.splits["test"][:20], kg.num_relations)
    _, ids = index.topk(queries, 5)
    assert ids.shape == (40, 5) and index.num_entities == kg.num_entities


def test_ann_recall_on_wn18rr(data_root: Path, tmp_path: Path) -> None:
    """HNSW and IVF over the 40,943 entities of WN18RR (DistMult-32, one epoch): recall@10 against exact search."""
    cfg = parse_config(
        {
            "data": {"name": "wn18rr", "root": str(data_root)},
            "model": {"name": "distmult", "dim": 32, "init_scale": 0.1},
            "stages": [{"epochs": 1}],
            "train": {"optimizer": "adam", "lr": 0.01, "batch_size": 1000, "progress": False},
            "eval": {"split": "valid"},
        }
    )
    result = api.train(cfg, out=tmp_path / "run")
    model = load_model(load_checkpoint(result.run_dir)).eval()
    kg = api.load_data(cfg)
    queries = both_directions(kg.splits["test"][:1000], kg.num_relations)
    _, exact_ids = exact_topk(model, queries, 10)
    index = build_ann_index(model, kind="hnsw")
    assert index.num_entities == 40_943
    # measured: HNSW (inner product, efSearch 128) 0.88; IVF (nprobe 256 of 809 cells) 0.99
    assert recall_at_k(index.topk(queries, 10)[1], exact_ids) >= 0.85
    index = build_ann_index(model, kind="ivf", nprobe=256)
    assert recall_at_k(index.topk(queries, 10)[1], exact_ids) >= 0.98
