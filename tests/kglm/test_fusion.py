"""Knowledge injection (KG -> LM) into a tiny random BERT over the real MiniLM vocabulary, with real DistMult
entity vectors trained on the FB15k-237 subset: hidden states change at mention positions only, gradients reach
the gate and the projection, a frozen KGE table stays bit-identical, a trainable one learns."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from kgdistill.errors import ConfigError
from kgdistill.kglm import KnowledgeInjection, encoder_layers

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
TWO_LAYERS = {
    "vocab_size": 30522,
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "max_position_embeddings": 64,
    "hidden_dropout_prob": 0.0,
    "attention_probs_dropout_prob": 0.0,
}


@pytest.fixture(scope="module")
def entity_table(tmp_path_factory: pytest.TempPathFactory) -> torch.Tensor:
    """DistMult (dim 16) entity vectors after two epochs on the FB15k-237 subset: real trained KGE rows."""
    from kgdistill import api
    from kgdistill.config import parse_config

    cfg = {
        "seed": 0,
        "data": {"name": str(FIXTURES / "fb15k237-mini")},
        "model": {"name": "distmult", "dim": 16, "init_scale": 0.1},
        "stages": [{"epochs": 2}],
        "train": {"optimizer": "adam", "lr": 0.02, "batch_size": 500, "progress": False},
    }
    result = api.train(parse_config(cfg), out=tmp_path_factory.mktemp("kge") / "run")
    return result.model.entities.table().detach().clone()


def _encoder() -> Any:
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    return BertModel(BertConfig(**TWO_LAYERS), add_pooling_layer=False).eval()


def _batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two sequences of 10 tokens (the second padded after 7); mentions of entities 3, 5 and 7."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 5000, (2, 10), generator=g)
    mask = torch.ones(2, 10, dtype=torch.long)
    mask[1, 7:] = 0
    mentions = torch.full((2, 10), -1)
    mentions[0, 1:3] = 3
    mentions[0, 5] = 5
    mentions[1, 2:4] = 7
    return ids, mask, mentions


def _outputs_of(layer: torch.nn.Module, run: Any) -> torch.Tensor:
    """What ``layer`` outputs (after the injection hook) while ``run()`` runs."""
    seen: list[torch.Tensor] = []
    handle = layer.register_forward_hook(
        lambda m, a, out: seen.append((out[0] if isinstance(out, tuple) else out).detach())
    )
    try:
        run()
    finally:
        handle.remove()
    return seen[0]


@pytest.mark.parametrize("layer", [0, 1, -1])
def test_only_mention_positions_change_at_the_injection_layer(
    entity_table: torch.Tensor, layer: int
) -> None:
    fusion = KnowledgeInjection(_encoder(), entity_table, layer=layer, gate_bias=0.0)
    ids, mask, mentions = _batch()
    target = encoder_layers(fusion.encoder)[layer]
    with torch.no_grad():
        plain = _outputs_of(target, lambda: fusion(ids, mask, None))
        fused = _outputs_of(target, lambda: fusion(ids, mask, mentions))
    changed = (plain != fused).any(-1)
    assert torch.equal(changed, mentions >= 0)
    # the change is the gated projection of the mentioned entity's vector
    p = fusion.proj(entity_table[mentions[0, 5]])
    g = torch.sigmoid(fusion.gate(torch.cat([plain[0, 5], p])))
    assert torch.allclose(fused[0, 5], plain[0, 5] + g * p, atol=1e-6)
    with torch.no_grad():
        none = fusion(ids, mask, torch.full_like(mentions, -1))
        assert torch.equal(none, fusion.encoder(input_ids=ids, attention_mask=mask)[0])


def test_gradients_reach_gate_and_projection_and_a_frozen_kge_stays_identical(
    entity_table: torch.Tensor,
) -> None:
    fusion = KnowledgeInjection(_encoder().train(), entity_table, layer=0)
    before = fusion.kge.weight.detach().clone()
    opt = torch.optim.AdamW(fusion.parameters(), lr=1e-2, weight_decay=0.1)
    ids, mask, mentions = _batch()
    for step in range(3):
        loss = fusion(ids, mask, mentions)[:, 0].pow(2).mean()
        loss.backward()
        if step == 0:
            for module in (fusion.gate, fusion.proj):
                assert module.weight.grad is not None and module.weight.grad.abs().sum() > 0
            assert fusion.kge.weight.grad is None
        opt.step()
        opt.zero_grad()
    assert torch.equal(fusion.kge.weight, before)


def test_a_trainable_kge_learns(entity_table: torch.Tensor) -> None:
    fusion = KnowledgeInjection(_encoder().train(), entity_table, layer=0, train_kge=True)
    ids, mask, mentions = _batch()
    fusion(ids, mask, mentions)[:, 0].pow(2).mean().backward()
    grad = fusion.kge.weight.grad
    assert grad is not None
    assert set(grad.abs().sum(1).nonzero()[:, 0].tolist()) == {3, 5, 7}  # the mentioned rows only


def test_bad_layer_or_model_is_one_error(entity_table: torch.Tensor) -> None:
    with pytest.raises(ConfigError, match="layer': 2 is not a layer of the encoder's 2"):
        KnowledgeInjection(_encoder(), entity_table, layer=2)
    with pytest.raises(ConfigError, match=r"encoder\.layer"):
        KnowledgeInjection(torch.nn.Linear(2, 2), entity_table)
    fusion = KnowledgeInjection(_encoder(), entity_table)
    ids, mask, mentions = _batch()
    with pytest.raises(ValueError, match="shape of the tokens"):
        fusion(ids, mask, mentions[:, :5])
