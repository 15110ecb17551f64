"""The cross-encoder on real subsets: training steps with the real all-MiniLM-L6-v2 and sampled negatives,
scoring paths and chunking, re-ranking a DistMult retriever, checkpoints, an exact resume, bad encoder
folders."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from kgdistill import api
from kgdistill.checkpoint import load_checkpoint, load_model, save_checkpoint
from kgdistill.config import ParamGroup, parse_config
from kgdistill.data import KG
from kgdistill.data.batching import Batch, both_directions, sample_candidates
from kgdistill.errors import ConfigError
from kgdistill.evaluate import evaluate, evaluate_rerank
from kgdistill.losses import LOSSES
from kgdistill.models import Vocab, build_model
from kgdistill.models.cross_encoder import CrossEncoder
from kgdistill.plm import PLMFeatures
from kgdistill.train import make_optimizer, param_groups
from kgdistill.types import TAIL

from .conftest import assert_same_weights, build_text_model, check_scoring_paths, killed_and_resumed

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"


def _model(kg: KG, features: PLMFeatures, **kwargs: Any) -> CrossEncoder:
    return build_text_model("cross_encoder", kg, features, CrossEncoder, **kwargs)


def test_training_steps_with_sampled_negatives_lower_the_loss(
    wn_mini: KG, minilm_wn: PLMFeatures
) -> None:
    """Real MiniLM, 7 uniform negatives per query, supervised cross-entropy over the candidates plus the
    logistic (softplus) term; the encoder at its own learning rate."""
    torch.manual_seed(0)
    model = _model(wn_mini, minilm_wn, dropout=0.0)
    q = both_directions(wn_mini.splits["train"][:4], wn_mini.num_relations)  # 8 queries
    cand = sample_candidates(q, wn_mini.num_entities, 7, torch.Generator().manual_seed(0))
    batch = Batch(q, cand, None)
    ce = LOSSES.get("supervised_ce")()
    bce = LOSSES.get("negative_sampling")(form="softplus")
    groups = param_groups(
        list(model.named_parameters()), [ParamGroup(match=["encoder.*"], lr=1e-4)], 1e-3, 0.0
    )
    opt = make_optimizer(groups, "adamw", 1e-3, 0.0)
    losses = []
    for step in range(4):
        out = model(q, cand)
        assert out.scores.shape == (8, 8)
        loss = ce(out, None, batch) + bce(out, None, batch)
        loss.backward()
        if step == 0:
            assert all(
                p.grad is not None and p.grad.abs().sum() > 0
                for p in model.encoder.parameters()
                if p.requires_grad and p.dim() > 1
            )
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.1, losses


def test_score_all_agrees_with_score_candidates_in_any_chunking(wn_mini: KG, tiny_plm: Any) -> None:
    torch.manual_seed(0)
    model = _model(wn_mini, tiny_plm(wn_mini), chunk_size=97).eval()
    q, cand, _ = check_scoring_paths(model, wn_mini, facts=3, candidates=40, tol=1e-5)
    assert model.score_candidates(q, cand[:, :0]).shape == (len(q), 0)


def test_joint_text_is_head_relation_tail_within_the_window(wn_mini: KG, tiny_plm: Any) -> None:
    features = tiny_plm(wn_mini, max_length=16)
    model = _model(wn_mini, features)
    q = both_directions(wn_mini.splits["train"][:20], wn_mini.num_relations)
    ids, mask, types = model.relations.pair_sequences(
        model.entities, q[:, 0], q[:, 1], None, q[:, TAIL]
    )
    special = features.special
    assert ids.shape[1] <= 16 and (mask.sum(1) <= 16).all()
    assert (ids[:, 0] == special["cls"]).all()
    assert ((ids == special["sep"]) & mask).sum(1).eq(3).all()  # after head, relation and tail
    n = mask.sum(1)
    assert (ids[torch.arange(len(q)), n - 1] == special["sep"]).all()
    # the relation's tokens (type 1) are whole, the two entities share the rest
    rel_len = features.relations.lengths[q[:, 1]].long()
    assert torch.equal((types == 1).sum(1), rel_len + 1)


def test_rerank_a_distmult_retriever(wn_mini: KG, tiny_plm: Any) -> None:
    """k = 1: the reranker only sees the retriever's first candidate, so every rank is the retriever's."""
    torch.manual_seed(0)
    vocab = Vocab(wn_mini.num_entities, wn_mini.num_relations)
    retriever = build_model({"name": "distmult", "dim": 16, "init_scale": 0.5}, vocab).eval()
    reranker = _model(wn_mini, tiny_plm(wn_mini))
    base = evaluate(retriever, wn_mini, "test", max_queries=12)
    one = evaluate_rerank(retriever, reranker, wn_mini, "test", k=1, max_queries=12)
    assert one.sides == base.sides
    five = evaluate_rerank(retriever, reranker, wn_mini, "test", k=5, max_queries=12)
    assert five.protocol["rerank"]["k"] == 5
    assert five.protocol["rerank"]["reranker"].startswith("CrossEncoder")
    # answers outside the top 5 keep the retriever's rank
    assert five.sides["both"]["hits@10"] == pytest.approx(base.sides["both"]["hits@10"])


def test_checkpoint_round_trip(wn_mini: KG, tiny_plm: Any, tmp_path: Path) -> None:
    features = tiny_plm(wn_mini)
    model = _model(wn_mini, features, dim=8, pooling="cls")
    with torch.no_grad():
        model.interaction.out.weight.add_(0.1)
    meta = {
        "model": {
            "name": "cross_encoder",
            "kwargs": {"dim": 8, "pooling": "cls"},
            "features": {"plm": features.meta()},
        },
        "id_maps": wn_mini.id_maps(),
        "time": wn_mini.time.to_dict(),
    }
    save_checkpoint(tmp_path / "m.safetensors", model=model, meta=meta)
    loaded = load_model(load_checkpoint(tmp_path / "m.safetensors")).eval()
    model.eval()
    q = both_directions(wn_mini.splits["test"][:4], wn_mini.num_relations)
    cand = torch.randint(wn_mini.num_entities, (len(q), 30))
    with torch.no_grad():
        assert torch.equal(loaded.score_candidates(q, cand), model.score_candidates(q, cand))
    assert loaded.state_dict().keys() == model.state_dict().keys()


def test_a_bad_encoder_folder_is_one_error_naming_it(tmp_path: Path) -> None:
    cfg = yaml.safe_load((REPO / "configs" / "plm" / "cross_encoder-wn18rr.yaml").read_text())
    cfg["data"] = {"name": str(FIXTURES / "fb15k237-mini")}
    missing = tmp_path / "no-such-encoder"
    cfg["model"]["encoder"] = str(missing)
    with pytest.raises(ConfigError, match=f"'model.encoder': '{missing}' does not exist"):
        api.train(parse_config(cfg), out=tmp_path / "run")


# -- the shipped config, and an exact resume (kgdistill train, killed with SIGKILL) -------------------------------


def _config(encoder: Path) -> dict[str, Any]:
    """The shipped config on the FB15k-237 subset (108 entities: all-entity evaluation is cheap)."""
    cfg = yaml.safe_load((REPO / "configs" / "plm" / "cross_encoder-wn18rr.yaml").read_text())
    cfg["data"] = {"name": str(FIXTURES / "fb15k237-mini")}
    cfg["model"] |= {"encoder": str(encoder), "max_length": 24, "chunk_size": 512}
    cfg["stages"][0]["epochs"] = 3
    cfg["train"] |= {
        "batch_size": 256,
        "negatives": 3,
        "scheduler": {"name": "linear", "warmup": 5},
        "amp": False,
        "eval_every": 1,
        "eval_max_queries": 5,
        "progress": False,
        "device": "cpu",
    }
    cfg["eval"] |= {"batch_size": 16}
    return cfg


@pytest.mark.slow
def test_the_shipped_config_trains_and_a_killed_run_resumes_exactly(
    tiny_encoder_folder: Path, tmp_path: Path
) -> None:
    config = tmp_path / "cross.yaml"
    config.write_text(yaml.safe_dump(_config(tiny_encoder_folder)))
    ref, run = killed_and_resumed(config, tmp_path, timeout=900)
    log = [json.loads(x) for x in (ref / "log.jsonl").read_text().splitlines()]
    epochs = [e for e in log if e["event"] == "epoch"]
    assert len(epochs) == 3 and epochs[-1]["negative_sampling"] < epochs[0]["negative_sampling"]
    a = json.loads((ref / "metrics.json").read_text())
    b = json.loads((run / "metrics.json").read_text())
    assert a["sides"] == b["sides"] and 0 < a["sides"]["both"]["mrr"] <= 1
    assert_same_weights(ref, run, ("model.", "optim."))
