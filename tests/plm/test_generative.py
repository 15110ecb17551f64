"""The generative model: prompts and answers from the token tables, log-likelihoods checked by hand against the
LM's logits, scoring paths and chunking, training steps with the `generation` term (the tiny random Llama, and
the real SmolLM2 in the slow tier), re-ranking a DistMult retriever, checkpoints, bad LM folders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from kgdistill import api
from kgdistill.checkpoint import load_checkpoint, load_model, save_checkpoint
from kgdistill.config import ParamGroup, parse_config
from kgdistill.data import KG, build_kg, read_openke
from kgdistill.data.batching import Batch, both_directions, sample_candidates
from kgdistill.errors import ConfigError
from kgdistill.evaluate import evaluate, evaluate_rerank
from kgdistill.models import Vocab, build_model
from kgdistill.models.generative import GenerativeLM
from kgdistill.objective import Objective
from kgdistill.plm.causal import LMFeatures, lm_features
from kgdistill.train import make_optimizer, param_groups
from kgdistill.types import TAIL

from .conftest import build_text_model, check_scoring_paths

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"
CONFIG = REPO / "configs" / "plm" / "generative-fb15k237n.yaml"


def _model(kg: KG, features: LMFeatures, **kwargs: Any) -> GenerativeLM:
    return build_text_model("generative", kg, features, GenerativeLM, **kwargs)


def _train(model: GenerativeLM, q: torch.Tensor, cand: torch.Tensor, steps: int, lr: float) -> list:
    """``steps`` AdamW steps on one batch with ``generation`` + 0.1 ``supervised_ce``; the losses."""
    objective = Objective.build(
        [{"loss": "generation"}, {"loss": "supervised_ce", "weight": 0.1}], candidates=True
    )
    groups = param_groups(
        list(model.named_parameters()), [ParamGroup(match=["*norm*"], weight_decay=0.0)], lr, 0.01
    )
    opt = make_optimizer(groups, "adamw", lr, 0.01)
    batch, losses = Batch(q, cand, None), []
    for step in range(steps):
        out = model(q, cand)
        loss, parts = objective(out, {}, batch)
        assert set(parts) == {"generation", "supervised_ce"}
        loss.backward()
        if step == 0:
            grads = [p.grad for p in model.lm.parameters() if p.requires_grad]
            assert all(g is not None and g.abs().sum() > 0 for g in grads)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
        losses.append(float(parts["generation"]))
    return losses


# -- prompts, answers and likelihoods --------------------------------------------------------------------------


#: a stand-in user message: splits the chat template's rendering into the frame before and after it
MARK = "\x00"


def test_sequence_is_the_chat_frame_around_head_relation_then_the_name(
    tiny_kg: KG, tiny_lm: Any, tiny_lm_path: Path
) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_lm_path))
    features = tiny_lm(tiny_kg)
    model = _model(tiny_kg, features)
    q = both_directions(tiny_kg.splits["test"][:3], tiny_kg.num_relations)
    ids, mask, answer = model.relations.sequences(model.entities, q[:, 0], q[:, 1], None, q[:, 2])
    assert (mask.sum(1) - answer.sum(1) <= features.max_length).all()
    from kgdistill.text import kg_texts

    texts, names = kg_texts(tiny_kg), kg_texts(tiny_kg, descriptions=False).entities
    frame = tok.apply_chat_template(
        [{"role": "user", "content": MARK}], tokenize=False, add_generation_prompt=True
    )
    for i in range(len(q)):
        h, r, t = (int(x) for x in q[i, :3])
        # relation texts keep a third of the window (cut here): the table's tokens start the full text
        rel = tok.decode(features.relations.ids[r][: features.relations.lengths[r]])
        assert texts.relation(r).startswith(rel)  # the reciprocal's text for head queries
        row, is_answer = ids[i][mask[i]], answer[i][mask[i]].bool()
        got = tok.decode(row[~is_answer])
        # the chat frame around "head | relation"; the head's text may be cut to the window (with the
        # datasets' descriptions it is): what is kept starts the full text
        pre, post = frame.split(MARK)
        tail = f" | {rel}{post}"
        assert got.startswith(pre) and got.endswith(tail)
        head = got[len(pre) : len(got) - len(tail)]
        assert head and texts.entities[h].startswith(head)
        assert tok.decode(row[is_answer]) == names[t] + tok.eos_token
        assert not mask[i, mask[i].sum() :].any()  # right-padded: valid tokens first


def test_loglik_equals_a_hand_computation_from_the_logits(tiny_kg: KG, tiny_lm: Any) -> None:
    """Each candidate's score is the sum (or mean) of its answer tokens' log-probabilities, as read from the
    LM's full logits over the unpadded sequence alone: batching, padding and position ids change nothing."""
    torch.manual_seed(0)
    model = _model(tiny_kg, tiny_lm(tiny_kg), chunk_size=5).eval()
    q = both_directions(tiny_kg.splits["test"][:2], tiny_kg.num_relations)
    cand = torch.randint(
        tiny_kg.num_entities, (len(q), 3), generator=torch.Generator().manual_seed(1)
    )
    with torch.no_grad():
        scores = model.score_candidates(q, cand)
        model.length_norm = True
        normed = model.score_candidates(q, cand)
        for b in range(len(q)):
            for c in range(cand.shape[1]):
                ids, mask, answer = model.relations.sequences(
                    model.entities, q[b : b + 1, 0], q[b : b + 1, 1], None, cand[b, c : c + 1]
                )
                n = int(mask.sum())
                ids, answer = ids[:, :n], answer[0, :n].bool()
                logp = model.lm(input_ids=ids).logits[0].float().log_softmax(-1)  # (n, V)
                start = int(answer.nonzero()[0])
                hand = sum(float(logp[j - 1, ids[0, j]]) for j in range(start, n))
                assert scores[b, c].item() == pytest.approx(hand, rel=1e-4, abs=1e-4)
                assert normed[b, c].item() == pytest.approx(hand / (n - start), rel=1e-4, abs=1e-4)
    assert (scores < 0).all()


def test_score_all_agrees_with_score_candidates_in_any_chunking(tiny_kg: KG, tiny_lm: Any) -> None:
    torch.manual_seed(0)
    model = _model(tiny_kg, tiny_lm(tiny_kg), chunk_size=97).eval()
    q, cand, hrt = check_scoring_paths(model, tiny_kg, facts=1, candidates=20, tol=1e-4)
    with torch.no_grad():
        out = model(q, cand)
    # the true answer is not among the candidates: its generation loss comes from one more pass
    assert out.generation is not None and out.generation.shape == (len(q),)
    n_tokens = model.relations.name_lengths[q[:, TAIL]] + 1
    torch.testing.assert_close(out.generation, -hrt / n_tokens, rtol=1e-4, atol=1e-4)
    assert model.score_candidates(q, cand[:, :0]).shape == (len(q), 0)


@pytest.mark.parametrize("temporal", [False, True])
def test_the_shared_prompt_scores_equal_one_pass_per_pair(
    tiny_kg: KG, tiny_tkg: KG, tiny_lm: Any, temporal: bool
) -> None:
    """Without gradients each prompt is passed once and its candidates' answers reuse its keys and values:
    the same log-likelihoods and token counts as one pass per pair, with prompts of different lengths in a
    batch and chunks that split the queries."""
    from kgdistill.models.plm import pack

    kg = tiny_tkg if temporal else tiny_kg
    model = _model(kg, tiny_lm(kg, max_length=64), chunk_size=7).eval()
    q = both_directions(kg.splits["test"][:3], kg.num_relations)
    cand = torch.randint(kg.num_entities, (len(q), 5), generator=torch.Generator().manual_seed(0))
    texts = model.relations
    _, mask, _ = pack(texts.prompt_pieces(model.entities, q[:, 0], q[:, 1], model._tau(q)))
    assert len(set(mask.sum(1).tolist())) > 1, "the case must mix prompt lengths"
    with torch.no_grad():
        shared = model.loglik(q, cand)
        model.shared_prompt = False
        full = model.loglik(q, cand)
    torch.testing.assert_close(shared[0], full[0], rtol=1e-4, atol=1e-4)
    assert torch.equal(shared[1], full[1])
    model.shared_prompt = True
    with torch.enable_grad():  # training: one pass per pair, as before
        graded = model.loglik(q, cand)
    assert graded[0].requires_grad
    torch.testing.assert_close(graded[0].detach(), full[0], rtol=0, atol=0)
    assert _model(kg, tiny_lm(kg, max_length=64), shared_prompt=False).shared_prompt is False


def test_the_time_phrase_is_in_the_prompt(tiny_tkg: KG, tiny_lm: Any) -> None:
    model = _model(tiny_tkg, tiny_lm(tiny_tkg, max_length=64)).eval()
    assert model.temporal
    q = both_directions(tiny_tkg.splits["test"][:2], tiny_tkg.num_relations)
    shifted = q.clone()
    shifted[:, 3] = (q[:, 3] + 1) % tiny_tkg.num_times
    cand = torch.randint(
        tiny_tkg.num_entities, (len(q), 4), generator=torch.Generator().manual_seed(0)
    )
    with torch.no_grad():
        a, b = model.score_candidates(q, cand), model.score_candidates(shifted, cand)
    assert not torch.allclose(a, b)
    with pytest.raises(ValueError, match="time column"):
        model.score_candidates(q[:, :3], cand)


# -- training, re-ranking, checkpoints ---------------------------------------------------------------------------


def test_generation_steps_lower_the_loss(tiny_kg: KG, tiny_lm: Any) -> None:
    """The tiny Llama, one sampled negative per query: the answer tokens' cross-entropy falls."""
    torch.manual_seed(0)
    model = _model(tiny_kg, tiny_lm(tiny_kg)).train()
    q = both_directions(tiny_kg.splits["train"][:4], tiny_kg.num_relations)
    cand = sample_candidates(q, tiny_kg.num_entities, 1, torch.Generator().manual_seed(0))
    losses = _train(model, q, cand, steps=5, lr=1e-2)
    assert losses[-1] < losses[0] - 0.5, losses


@pytest.mark.slow
def test_real_smollm2_generation_steps_lower_the_loss() -> None:
    """The packaged SmolLM2-135M-Instruct on two facts of the FB15k-237N subset (KG-S2S names when
    ``KGDISTILL_DATA`` holds FB15k-237N, else the ids): three steps lower the answer tokens' cross-entropy."""
    torch.manual_seed(0)
    kg = build_kg(read_openke(FIXTURES / "fb15k237n-mini"))
    features = lm_features(kg, max_length=48, answer_length=8, text={"descriptions": False})
    model = _model(kg, features).train()
    q = both_directions(kg.splits["train"][:2], kg.num_relations)
    losses = _train(model, q, q[:, TAIL : TAIL + 1], steps=3, lr=1e-4)
    assert losses[-1] < losses[0] - 0.1, losses


def test_rerank_a_distmult_retriever(tiny_kg: KG, tiny_lm: Any) -> None:
    """k = 1: the reranker only sees the retriever's first candidate, so every rank is the retriever's."""
    torch.manual_seed(0)
    vocab = Vocab(tiny_kg.num_entities, tiny_kg.num_relations)
    retriever = build_model({"name": "distmult", "dim": 16, "init_scale": 0.5}, vocab).eval()
    reranker = _model(tiny_kg, tiny_lm(tiny_kg))
    base = evaluate(retriever, tiny_kg, "test", max_queries=6)
    one = evaluate_rerank(retriever, reranker, tiny_kg, "test", k=1, max_queries=6)
    assert one.sides == base.sides
    three = evaluate_rerank(retriever, reranker, tiny_kg, "test", k=3, max_queries=6)
    assert three.protocol["rerank"]["reranker"].startswith("GenerativeLM")
    assert three.sides["both"]["hits@10"] == pytest.approx(base.sides["both"]["hits@10"])


def test_checkpoint_round_trip(tiny_kg: KG, tiny_lm: Any, tmp_path: Path) -> None:
    features = tiny_lm(tiny_kg)
    model = _model(tiny_kg, features, length_norm=True)
    with torch.no_grad():
        for p in model.lm.parameters():
            p.add_(0.05 * torch.randn_like(p))
    meta = {
        "model": {
            "name": "generative",
            "kwargs": {"length_norm": True},
            "features": {"lm": features.meta()},
        },
        "id_maps": tiny_kg.id_maps(),
        "time": tiny_kg.time.to_dict(),
    }
    save_checkpoint(tmp_path / "m.safetensors", model=model, meta=meta)
    loaded = load_model(load_checkpoint(tmp_path / "m.safetensors")).eval()
    model.eval()
    q = both_directions(tiny_kg.splits["test"][:2], tiny_kg.num_relations)
    cand = torch.randint(tiny_kg.num_entities, (len(q), 6))
    with torch.no_grad():
        assert torch.equal(loaded.score_candidates(q, cand), model.score_candidates(q, cand))
    assert loaded.state_dict().keys() == model.state_dict().keys()


# -- bad LM folders ---------------------------------------------------------------------------------------------


def test_bad_lm_folders_are_one_error_naming_them(
    tiny_kg: KG, tiny_encoder_folder: Path, tmp_path: Path
) -> None:
    missing = tmp_path / "no-such-lm"
    with pytest.raises(ConfigError, match=f"'model.lm': '{missing}' does not exist"):
        lm_features(tiny_kg, lm=str(missing))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match=f"'{empty}' is not a Hugging Face model folder"):
        lm_features(tiny_kg, lm=str(empty))
    with pytest.raises(ConfigError, match="not a causal language model") as e:
        lm_features(tiny_kg, lm=str(tiny_encoder_folder))
    assert str(tiny_encoder_folder.resolve()) in str(e.value) and "BertModel" in str(e.value)


def test_the_shipped_config_names_a_missing_lm_folder(tmp_path: Path) -> None:
    cfg = yaml.safe_load(CONFIG.read_text())
    cfg["data"] = {"name": str(FIXTURES / "fb15k237-mini")}
    missing = tmp_path / "no-such-lm"
    cfg["model"]["lm"] = str(missing)
    with pytest.raises(ConfigError, match=f"'model.lm': '{missing}' does not exist"):
        api.train(parse_config(cfg), out=tmp_path / "run")


@pytest.mark.slow
def test_the_shipped_config_trains_with_the_tiny_lm(tiny_lm_path: Path, tmp_path: Path) -> None:
    """The shipped config on the FB15k-237 subset with the tiny Llama, one epoch: the `generation` term is
    logged and falls, the run is evaluated (all 108 entities) and its checkpoint reloads."""
    cfg = yaml.safe_load(CONFIG.read_text())
    cfg["data"] = {"name": str(FIXTURES / "fb15k237-mini")}
    cfg["model"] |= {"lm": str(tiny_lm_path), "max_length": 48, "answer_length": 8}
    cfg["stages"][0]["epochs"] = 2
    cfg["train"] |= {
        "batch_size": 256,
        "lr": 1.0e-3,
        "scheduler": {"name": "linear", "warmup": 3},
        "amp": False,
        "eval_every": 2,
        "eval_max_queries": 4,
        "progress": False,
        "device": "cpu",
    }
    cfg["eval"] |= {"split": "valid", "batch_size": 16}
    result = api.train(parse_config(cfg), out=tmp_path / "run")
    log = [yaml.safe_load(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    epochs = [e for e in log if e["event"] == "epoch"]
    assert len(epochs) == 2 and epochs[-1]["generation"] < epochs[0]["generation"]
    assert 0 < result.metrics.sides["both"]["mrr"] <= 1
    model = load_model(load_checkpoint(tmp_path / "run" / "last.safetensors"))
    assert isinstance(model, GenerativeLM)
