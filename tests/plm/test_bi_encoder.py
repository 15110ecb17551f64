"""The bi-encoder on the WN18RR subset: a real training step with the real all-MiniLM-L6-v2, scoring paths,
the entity cache, checkpoints, bad encoder folders and truncation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from kgdistill.checkpoint import load_checkpoint, load_model, save_checkpoint
from kgdistill.config import ParamGroup, SchedulerConfig
from kgdistill.data import KG
from kgdistill.data.batching import Batch, both_directions, in_batch_candidates
from kgdistill.errors import ConfigError
from kgdistill.evaluate import evaluate
from kgdistill.losses import LOSSES
from kgdistill.models.bi_encoder import BiEncoder
from kgdistill.plm import PLMFeatures, load_encoder, plm_features
from kgdistill.plm.features import window_budgets
from kgdistill.text import kg_texts
from kgdistill.train import lr_factor, make_optimizer, param_groups
from kgdistill.types import TAIL

from .conftest import build_text_model

#: the user's entity file of the ``minilm_wn`` fixture
SYNONYMS = (
    Path(__file__).resolve().parents[1] / "fixtures" / "llm-text-mini" / "entity2sysnonyms_Qwen.txt"
)


def _model(kg: KG, features: PLMFeatures, **kwargs: Any) -> BiEncoder:
    return build_text_model("bi_encoder", kg, features, BiEncoder, **kwargs)


def test_infonce_training_steps_lower_the_loss_and_reach_the_encoder(
    wn_mini: KG, minilm_wn: PLMFeatures
) -> None:
    """Real MiniLM, in-batch negatives, InfoNCE with margin; the train config's parameter groups (encoder at its
    own learning rate), warm-up schedule and gradient clipping."""
    model = _model(wn_mini, minilm_wn, dropout=0.0)
    q = both_directions(wn_mini.splits["train"][:8], wn_mini.num_relations)  # 16 queries
    cand, mask = in_batch_candidates(q)
    batch = Batch(q, cand, mask)
    term = LOSSES.get("info_nce")(margin=0.02)
    groups = param_groups(
        list(model.named_parameters()),
        [ParamGroup(match=["entities.encoder.*"], lr=1e-4)],
        1e-2,
        0.0,
    )
    assert [len(g["params"]) for g in groups] == [1, len(list(model.entities.parameters()))]
    opt = make_optimizer(groups, "adamw", 1e-2, 0.0)
    for g in opt.param_groups:
        g["initial_lr"] = g["lr"]
    schedule = SchedulerConfig(name="linear", warmup=2)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, 6, schedule))
    losses = []
    for step in range(5):
        loss = term(model(q, cand), None, batch)
        loss.backward()
        if step == 0:
            grads = {n: p.grad for n, p in model.named_parameters()}
            assert all(g is not None and g.abs().sum() > 0 for g in grads.values()), [
                n for n, g in grads.items() if g is None or g.abs().sum() == 0
            ]
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad()
        losses.append(loss.item())
    assert opt.param_groups[1]["lr"] < 1e-4  # warmed up, then decaying
    assert losses[-1] < losses[0] - 0.1, losses


@pytest.mark.parametrize("shared", [True, False])
def test_shipped_config_gives_every_encoder_its_own_learning_rate(
    wn_mini: KG, tiny_plm: Any, shared: bool
) -> None:
    """The parameter groups of configs/plm/bi_encoder-wn18rr.yaml put every encoder weight (the query encoder's
    too, with ``shared_encoder: false``) at the encoder's learning rate; only the temperature keeps the base one.
    (The query encoder once fell to the base rate, 20x the encoder's.)"""
    import yaml

    from kgdistill.config import TrainConfig

    cfg = yaml.safe_load(
        (Path(__file__).resolve().parents[2] / "configs/plm/bi_encoder-wn18rr.yaml").read_text()
    )
    train = TrainConfig(**cfg["train"])
    model = _model(wn_mini, tiny_plm(wn_mini), shared_encoder=shared)
    groups = param_groups(list(model.named_parameters()), train.param_groups, train.lr, 0.0)
    encoders = [p for n, p in model.named_parameters() if "encoder." in n]
    assert len(encoders) == (1 if shared else 2) * len(list(model.text_encoder().parameters()))
    assert [len(g["params"]) for g in groups] == [1, len(encoders)]
    assert groups[1]["lr"] == train.param_groups[0].lr < train.lr


def test_score_all_agrees_with_score_candidates_and_the_evaluator_ranks_all(
    wn_mini: KG, tiny_plm: Any
) -> None:
    model = _model(wn_mini, tiny_plm(wn_mini)).eval()
    q = both_directions(wn_mini.splits["test"][:10], wn_mini.num_relations)
    g = torch.Generator().manual_seed(0)
    cand = torch.randint(wn_mini.num_entities, (len(q), 40), generator=g)
    with torch.no_grad():
        full = model.score_all(q)
        some = model.score_candidates(q, cand)
    assert full.shape == (len(q), wn_mini.num_entities)
    torch.testing.assert_close(some, full.gather(1, cand), rtol=1e-4, atol=1e-4)
    metrics = evaluate(model, wn_mini, "test", max_queries=10)
    assert 0 < metrics.mrr <= 1


def test_entity_table_is_encoded_once_per_evaluation(wn_mini: KG, tiny_plm: Any) -> None:
    model = _model(wn_mini, tiny_plm(wn_mini), chunk_size=500)
    calls = []
    model.entities.encoder.register_forward_hook(lambda *_: calls.append(1))
    q = both_directions(wn_mini.splits["test"][:4], wn_mini.num_relations)
    chunks = -(-wn_mini.num_entities // 500)
    model.eval()
    with torch.no_grad():
        model.score_all(q)
        model.score_all(q)
    assert len(calls) == chunks + 2  # entities once, the queries twice
    model.train()  # training clears the cache
    model.eval()
    with torch.no_grad():
        model.score_all(q)
    assert len(calls) == 2 * chunks + 3


def test_checkpoint_round_trip_with_two_encoders_and_a_projection(
    wn_mini: KG, tiny_plm: Any, tmp_path: Path
) -> None:
    features = tiny_plm(wn_mini)
    model = _model(wn_mini, features, dim=8, shared_encoder=False, temperature=0.1)
    with torch.no_grad():
        model.query_encoder.proj.weight.add_(0.1)  # the two encoders now differ
        model.interaction.log_inv_t.add_(0.3)
    meta = {
        "model": {
            "name": "bi_encoder",
            "kwargs": {"dim": 8, "shared_encoder": False},
            "features": {"plm": features.meta()},
        },
        "id_maps": wn_mini.id_maps(),
        "time": wn_mini.time.to_dict(),
    }
    save_checkpoint(tmp_path / "m.safetensors", model=model, meta=meta)
    loaded = load_model(load_checkpoint(tmp_path / "m.safetensors")).eval()
    model.eval()
    q = both_directions(wn_mini.splits["test"][:6], wn_mini.num_relations)
    with torch.no_grad():
        assert torch.equal(loaded.score_all(q), model.score_all(q))
    assert loaded.state_dict().keys() == model.state_dict().keys()
    assert any(k.startswith("query_encoder.") for k in model.state_dict())


def test_a_loaded_checkpoint_keeps_its_entity_table_on_disk(
    wn_mini: KG, tiny_plm: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A loaded bi-encoder writes its eval-mode entity table beside the checkpoint; the next load of the same
    weights reads it (the encoder never runs on the entities); new weights, a corrupt file and training encode
    again."""
    from kgdistill.checkpoint import entity_table_path

    features = tiny_plm(wn_mini)
    model = _model(wn_mini, features)
    meta = {
        "model": {"name": "bi_encoder", "kwargs": {}, "features": {"plm": features.meta()}},
        "id_maps": wn_mini.id_maps(),
        "time": wn_mini.time.to_dict(),
    }
    path = tmp_path / "best.safetensors"
    save_checkpoint(path, model=model, meta=meta)
    kept = entity_table_path(path)
    assert kept == tmp_path / "best.entities.safetensors"
    first = load_model(load_checkpoint(path)).eval()
    with torch.no_grad():
        table = first.entities.table().clone()
    assert kept.is_file()

    def loaded_with_calls() -> tuple[Any, list[int]]:
        m = load_model(load_checkpoint(path)).eval()
        calls: list[int] = []
        m.entities.encoder.register_forward_hook(lambda *_: calls.append(1))
        return m, calls

    again, calls = loaded_with_calls()
    with torch.no_grad():
        assert torch.equal(again.entities.table(), table)
    assert calls == []  # read from the file
    q = both_directions(wn_mini.splits["test"][:4], wn_mini.num_relations)
    with torch.no_grad():
        assert torch.equal(again.score_all(q), first.score_all(q))
    # training, or gradients, never read the file
    again.train()
    again.entities.table()
    assert calls
    # other weights at the same path: another key, encoded again and the file replaced
    with torch.no_grad():
        for param in model.entities.encoder.parameters():
            param.add_(0.01)
    save_checkpoint(path, model=model, meta=meta)
    changed, calls = loaded_with_calls()
    with torch.no_grad():
        new = changed.entities.table()
    assert calls and not torch.equal(new, table)
    third, calls = loaded_with_calls()
    with torch.no_grad():
        assert torch.equal(third.entities.table(), new)
    assert calls == []
    # a corrupt file: a warning naming it, and the entities encoded again
    kept.write_bytes(b"not safetensors")
    broken, calls = loaded_with_calls()
    with caplog.at_level("WARNING"), torch.no_grad():
        assert torch.equal(broken.entities.table(), new)
    assert calls and str(kept) in caplog.text


def test_a_missing_encoder_folder_is_one_error_naming_it(wn_mini: KG, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-encoder"
    with pytest.raises(ConfigError, match=f"'{missing}' does not exist"):
        plm_features(wn_mini, encoder=str(missing))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="is not a Hugging Face model folder"):
        load_encoder(str(tmp_path / "empty"))


def test_a_causal_language_model_is_refused_naming_the_folder(tiny_lm_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_encoder(str(tiny_lm_path))
    msg = str(info.value)
    assert str(tiny_lm_path.resolve()) in msg
    assert "causal language model (LlamaForCausalLM)" in msg


def test_texts_longer_than_the_window_are_truncated_and_counted(
    wn_mini: KG, minilm_wn: PLMFeatures
) -> None:
    loaded = load_encoder(None)
    texts = kg_texts(wn_mini, entity_files=[SYNONYMS])
    budget = window_budgets(16)
    lengths = [
        len(ids) for ids in loaded.tokenizer(texts.entities, add_special_tokens=False)["input_ids"]
    ]
    cut = sum(n > budget["entity"] for n in lengths)
    assert cut > 0  # the window is tiny
    truncated = minilm_wn.report["truncated"]
    assert truncated["entities"] == cut == minilm_wn.entities.truncated
    assert int(minilm_wn.entities.lengths.max()) == budget["entity"]
    assert minilm_wn.entities.lengths.tolist() == [min(n, budget["entity"]) for n in lengths]
    model = _model(wn_mini, minilm_wn)
    q = both_directions(wn_mini.splits["train"][:50], wn_mini.num_relations)
    ids, mask, _ = model.relations.sequences(model.entities, q[:, 0], q[:, 1], None)
    assert ids.shape[1] <= 16 and int(mask.sum(1).max()) == 16
    # every query ends with [SEP] and starts with [CLS]
    last = ids.gather(1, (mask.sum(1) - 1)[:, None]).squeeze(1)
    assert (ids[:, 0] == minilm_wn.special["cls"]).all() and (
        last == minilm_wn.special["sep"]
    ).all()
    assert truncated["train_query_heads"] > 0


def test_scores_are_cosines_over_the_temperature(wn_mini: KG, tiny_plm: Any) -> None:
    model = _model(wn_mini, tiny_plm(wn_mini), temperature=0.2).eval()
    q = both_directions(wn_mini.splits["test"][:4], wn_mini.num_relations)
    with torch.no_grad():
        out = model(q)
    assert out.scale is not None and out.scale.item() == pytest.approx(5.0)
    assert out.h is not None and out.t is not None
    torch.testing.assert_close(out.h.norm(dim=1), torch.ones(len(q)))
    torch.testing.assert_close(out.scores, 5.0 * out.h @ out.t.T)
    assert model.score_hrt(q).shape == (len(q),)
    torch.testing.assert_close(
        model.score_hrt(q), out.scores.gather(1, q[:, TAIL : TAIL + 1]).squeeze(1)
    )
