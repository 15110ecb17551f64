"""The ``info_nce`` term: the margin, in-batch masks, pre-batch negatives and their queue across a resume."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F

from kgdistill.data import KG
from kgdistill.data.batching import Batch, both_directions, in_batch_candidates
from kgdistill.errors import ConfigError
from kgdistill.losses import LOSSES
from kgdistill.models import Vocab, build_model
from kgdistill.models.base import ModelOutput


@pytest.fixture
def step(wn_mini: KG, tiny_plm: Any) -> tuple[Any, Batch]:
    """A tiny bi-encoder and one in-batch step (16 queries) of the WN18RR subset."""
    vocab = Vocab(wn_mini.num_entities, wn_mini.num_relations)
    model = build_model({"name": "bi_encoder"}, vocab, {"plm": tiny_plm(wn_mini)})
    q = both_directions(wn_mini.splits["train"][:8], wn_mini.num_relations)
    cand, mask = in_batch_candidates(q)
    return model, Batch(q, cand, mask)


def test_without_margin_it_is_the_masked_cross_entropy(step: tuple[Any, Batch]) -> None:
    model, batch = step
    out = model(batch.queries, batch.candidates)
    plain = LOSSES.get("info_nce")(margin=0.0)(out, None, batch)
    ce = LOSSES.get("supervised_ce")()(out, None, batch)
    torch.testing.assert_close(plain, ce)
    margin = LOSSES.get("info_nce")(margin=0.1)(out, None, batch)
    logits = out.scores.masked_fill(~batch.candidate_mask, float("-inf"))
    logits[:, 0] -= 0.1 * out.scale
    torch.testing.assert_close(margin, F.cross_entropy(logits, batch.targets))
    assert margin > plain


def test_the_temperature_learns(step: tuple[Any, Batch]) -> None:
    model, batch = step
    LOSSES.get("info_nce")()(model(batch.queries, batch.candidates), None, batch).backward()
    grad = model.interaction.log_inv_t.grad
    assert grad is not None and grad.abs() > 0


def test_prebatch_negatives_queue_mask_and_resume(step: tuple[Any, Batch]) -> None:
    model, batch = step
    term = LOSSES.get("info_nce")(prebatch=2)
    assert term.reads == {"scores", "h", "t"}
    out = model(batch.queries, batch.candidates)
    term.setup(out, None)
    first = term(out, None, batch)  # empty queue: in-batch only
    assert term.queue.shape == (16, out.t.shape[-1]) and torch.equal(
        term.queue_ids, batch.queries[:, 2]
    )
    second = term(model(batch.queries, batch.candidates), None, batch)
    # the same batch again: every queued vector is some row's answer; masked for that row only
    assert second > first
    assert term.queue.shape[0] == 32
    state = term.state_dict()
    fresh = LOSSES.get("info_nce")(prebatch=2)
    fresh.load_state_dict(state)
    assert torch.equal(fresh.queue, term.queue) and torch.equal(fresh.queue_ids, term.queue_ids)
    with torch.no_grad():  # evaluation does not enqueue
        term(model(batch.queries, batch.candidates), None, batch)
    assert term.queue.shape[0] == 32


def test_prebatch_needs_a_cosine_model(step: tuple[Any, Batch]) -> None:
    model, batch = step
    out = model(batch.queries, batch.candidates)
    plain = ModelOutput(scores=out.scores, h=out.h, t=out.t)
    with pytest.raises(ConfigError, match="prebatch > 0 needs a cosine model"):
        LOSSES.get("info_nce")(prebatch=1).setup(plain, None)
    # without pre-batch negatives any model's scores work (margin in score units)
    assert torch.isfinite(LOSSES.get("info_nce")()(plain, None, batch))


def test_self_negatives_put_the_query_head_among_the_candidates(wn_mini: KG, tiny_plm: Any) -> None:
    """SimKGC's self-negatives: the last candidate is the query's own head (masked where it is the answer), so
    the term pushes the head's score down; the train config switches them on (in-batch only)."""
    from kgdistill.config import TrainConfig
    from kgdistill.train import _candidates

    q = both_directions(wn_mini.splits["train"][:8], wn_mini.num_relations)
    q[3, 2] = q[3, 0]  # a query whose answer is its own head: that candidate is not a negative
    plain, _ = in_batch_candidates(q)
    cand, mask = in_batch_candidates(q, self_negatives=True)
    assert torch.equal(cand[:, :-1], plain) and torch.equal(cand[:, -1], q[:, 0])
    assert mask[:, -1].tolist() == [i != 3 for i in range(len(q))]
    cfg = TrainConfig(negative_sampling="in_batch", self_negatives=True)
    via_config, _ = _candidates(q, wn_mini, cfg, torch.Generator())
    assert via_config is not None and torch.equal(via_config, cand)
    with pytest.raises(ValueError, match="negative_sampling: in_batch"):
        TrainConfig(self_negatives=True)
    # the head's score gets a gradient that lowers it (it is a negative of its own query)
    vocab = Vocab(wn_mini.num_entities, wn_mini.num_relations)
    model = build_model({"name": "bi_encoder"}, vocab, {"plm": tiny_plm(wn_mini)})
    out = model(q, cand)
    out.scores.retain_grad()
    LOSSES.get("info_nce")()(out, None, Batch(q, cand, mask)).backward()
    assert out.scores.grad is not None
    assert bool((out.scores.grad[mask[:, -1], -1] > 0).all())  # descent lowers the head's score
    assert bool((out.scores.grad[~mask[:, -1], -1] == 0).all())
