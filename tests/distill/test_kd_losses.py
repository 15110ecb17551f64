"""Distillation terms: hand-computed values, zero at agreement, masks respected, invariances."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from kgdistill.data.batching import Batch
from kgdistill.errors import ConfigError
from kgdistill.losses.kd import BKD, RKD, FitNet, ScoreHuber, ScoreMSE
from kgdistill.models import ModelOutput
from kgdistill.objective import Objective


def _batch(b: int = 6) -> Batch:
    return Batch(
        queries=torch.stack(
            [torch.arange(b), torch.zeros(b, dtype=torch.long), torch.arange(b) % 4], 1
        )
    )


def test_bkd_value_and_temperature() -> None:
    torch.manual_seed(0)
    s, t = torch.randn(6, 9), torch.randn(6, 9)
    loss = BKD(temperature=3.0)(ModelOutput(scores=s), ModelOutput(scores=t), _batch())
    pt = torch.softmax(t / 3, -1)
    manual = (pt * (torch.log(pt) - torch.log_softmax(s / 3, -1))).sum(-1).mean() * 9
    torch.testing.assert_close(loss, manual)
    assert BKD()(ModelOutput(scores=t), ModelOutput(scores=t.clone()), _batch()).abs() < 1e-6
    with pytest.raises(ConfigError):
        BKD(temperature=0)


def test_bkd_ignores_masked_entries_and_rows() -> None:
    torch.manual_seed(1)
    s, t = torch.randn(6, 9, requires_grad=True), torch.randn(6, 9)
    mask = torch.rand(6, 9) > 0.4
    mask[:, 0] = True
    mask[5] = False  # a query the teacher cannot answer
    loss = BKD()(ModelOutput(scores=s), ModelOutput(scores=t, mask=mask), _batch())
    s2 = s.detach().clone()
    s2[~mask] = 100.0  # what the student says outside the teacher's support does not matter
    loss2 = BKD()(ModelOutput(scores=s2), ModelOutput(scores=t, mask=mask), _batch())
    torch.testing.assert_close(loss, loss2)
    loss.backward()
    assert s.grad[~mask].abs().max() == 0 and s.grad[mask].abs().max() > 0


@pytest.mark.parametrize("cls", [ScoreHuber, ScoreMSE])
@pytest.mark.parametrize("compare", ["scores", "probs"])
def test_score_matching(cls, compare: str) -> None:
    torch.manual_seed(2)
    s, t = torch.randn(6, 9), torch.randn(6, 9)
    term = cls(compare=compare, temperature=2.0)
    assert term(ModelOutput(scores=t), ModelOutput(scores=t.clone()), _batch()).abs() < 1e-7
    a, b = (s, t) if compare == "scores" else (torch.softmax(s / 2, -1), torch.softmax(t / 2, -1))
    if cls is ScoreMSE:
        manual = ((a - b) ** 2).sum(-1).mean()
    else:
        manual = F.huber_loss(a, b, reduction="none", delta=1.0).sum(-1).mean()
    torch.testing.assert_close(term(ModelOutput(scores=s), ModelOutput(scores=t), _batch()), manual)
    with pytest.raises(ConfigError):
        cls(compare="logits")


def test_softmaxes_are_shared_by_the_terms_of_one_step() -> None:
    """CE, Huber and MSE on probabilities read one memoised student softmax: same values and gradients as
    computing each term on its own, one log-softmax pass instead of one per term."""
    from kgdistill.losses.supervised import SupervisedCE

    torch.manual_seed(3)
    s, t = torch.randn(6, 9, requires_grad=True), torch.randn(6, 9)
    batch = _batch()
    terms = [SupervisedCE(), ScoreHuber(), ScoreMSE(), BKD(temperature=2.0)]
    shared_s, shared_t = ModelOutput(scores=s), ModelOutput(scores=t)
    shared = sum(term(shared_s, shared_t, batch) for term in terms)
    # one student log-softmax at T 1 (CE, Huber, MSE) and one at T 2 (BKD)
    assert sorted(k[:2] for k in shared_s._memo) == [("log", 1.0), ("log", 2.0), ("prob", 1.0)]
    assert shared_s.log_softmax() is shared_s.log_softmax()
    (g_shared,) = torch.autograd.grad(shared, s)
    alone = sum(term(ModelOutput(scores=s), ModelOutput(scores=t), batch) for term in terms)
    (g_alone,) = torch.autograd.grad(alone, s)
    torch.testing.assert_close(shared, alone)
    torch.testing.assert_close(g_shared, g_alone)
    # a derived output (dense top-k expansion) never inherits the memo of the output it came from
    top = ModelOutput(scores=t[:, :3], ids=torch.arange(3).repeat(6, 1))
    top.log_softmax()
    assert top.dense(9)._memo == {}


def test_fitnet_projection_and_value() -> None:
    torch.manual_seed(3)
    s_out = ModelOutput(
        scores=torch.zeros(6, 9), h=torch.randn(6, 4), r=torch.randn(6, 4), t=torch.randn(9, 4)
    )
    t_out = ModelOutput(
        scores=torch.zeros(6, 9), h=torch.randn(6, 10), r=torch.randn(6, 10), t=torch.randn(9, 10)
    )
    term = FitNet(fields=["h", "t"], normalize=False)
    term.setup(s_out, t_out)
    assert term.proj["h"].weight.shape == (10, 4) and "r" not in term.proj
    batch = _batch()
    w_h, w_t = term.proj["h"].weight, term.proj["t"].weight
    tails = batch.queries[:, 2]
    manual = ((s_out.h @ w_h.T - t_out.h) ** 2).mean() + (
        (s_out.t[tails] @ w_t.T - t_out.t[tails]) ** 2
    ).mean()
    torch.testing.assert_close(term(s_out, t_out, batch), manual)
    normalized = FitNet(fields=["h", "t"])
    normalized.setup(s_out, t_out)
    normalized.load_state_dict(term.state_dict())
    expected = ((s_out.h @ w_h.T - t_out.h) ** 2).mean() / (t_out.h**2).mean() + (
        (s_out.t[tails] @ w_t.T - t_out.t[tails]) ** 2
    ).mean() / (t_out.t[tails] ** 2).mean()
    torch.testing.assert_close(normalized(s_out, t_out, batch), expected)
    # scale-free: a teacher 10x larger, matched by a 10x larger projection, gives the same normalised loss
    scaled = ModelOutput(scores=t_out.scores, h=10 * t_out.h, t=10 * t_out.t)
    big = FitNet(fields=["h", "t"])
    big.setup(s_out, t_out)
    big.load_state_dict({k: 10 * v for k, v in term.state_dict().items()})
    torch.testing.assert_close(big(s_out, scaled, batch), expected)
    loss = term(s_out, t_out, batch)
    loss.backward()
    assert w_h.grad is not None and w_h.grad.abs().sum() > 0
    # a perfect projection gives zero
    same = FitNet(fields=["h"])
    same.setup(s_out, s_out)
    with torch.no_grad():
        same.proj["h"].weight.copy_(torch.eye(4))
    assert same(s_out, s_out, batch) == 0
    with pytest.raises(ConfigError, match="fitnet: 'fields'"):
        FitNet(fields=["q"])


def test_rkd_zero_under_scaling_and_positive_otherwise() -> None:
    torch.manual_seed(4)
    x = torch.randn(12, 5)
    term = RKD(field="h", max_samples=10)
    batch = Batch(queries=torch.zeros(12, 3, dtype=torch.long))
    out = term(
        ModelOutput(scores=torch.zeros(12, 3), h=3 * x),
        ModelOutput(scores=torch.zeros(12, 3), h=x),
        batch,
    )
    assert out.abs() < 1e-6  # relations (normalised distances, angles) do not change with the scale
    rnd = term(
        ModelOutput(scores=torch.zeros(12, 3), h=torch.randn(12, 2)),
        ModelOutput(scores=torch.zeros(12, 3), h=x),
        batch,
    )
    assert rnd > 0.01
    # rows past max_samples are not used
    y = x.clone()
    y[10:] = 100
    same = term(
        ModelOutput(scores=torch.zeros(12, 3), h=y),
        ModelOutput(scores=torch.zeros(12, 3), h=x),
        batch,
    )
    assert same.abs() < 1e-6


def test_objective_refuses_embedding_terms_on_score_only_teachers() -> None:
    specs = [{"loss": "supervised_ce"}, {"loss": "fitnet", "teacher": "llm", "fields": ["h", "r"]}]
    with pytest.raises(
        ConfigError, match=r"reads \['h', 'r'\] of teacher 'llm', which only provides \['scores'\]"
    ):
        Objective.build(specs, teachers={"llm": frozenset({"scores"})})
    with pytest.raises(ConfigError, match=r"reads \['time_table'\] of the student"):
        Objective.build(
            [{"loss": "fitnet", "teacher": "kge", "fields": ["time_table"]}],
            teachers={"kge": frozenset({"scores", "h", "r", "t", "time_table"})},
            student=frozenset({"scores", "h", "r", "t"}),
        )
