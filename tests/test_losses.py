"""Loss terms: every registered term on a real batch, and hand-computed values of each."""

from __future__ import annotations

import math
from dataclasses import fields

import pytest
import torch
import torch.nn.functional as F

from kgdistill.data import KG
from kgdistill.data.batching import Batch, both_directions, sample_candidates
from kgdistill.errors import ConfigError
from kgdistill.losses import LOSSES, LossTerm
from kgdistill.losses.fused import fused_cross_entropy
from kgdistill.models import KGEModel, ModelOutput, Vocab, build_model
from kgdistill.multi import MultiKG

#: Terms that act on the time embeddings only (zero, without a gradient, for a static model).
TIME_ONLY = {"lambda3"}
#: Terms that need sampled candidates.
CANDIDATE_TERMS = {"negative_sampling", "margin_ranking", "generation"}
#: Terms that read an output only one model family gives: left out of the KGE cases below (each is covered with
#: its model: tests/plm/test_generative.py, tests/plm/test_aux_tasks.py), and refused on any other model (the
#: error names the family; test below).
MODEL_TERMS = {
    "generation": "generative",
    "reconstruction": "bi_encoder, cross_encoder",
    "contextualization": "generative",
}

TEMPORAL_CASES = [("tntcomplex", "tiny_tkg"), ("ttranse", "tiny_point_kg"), ("hyte", "tiny_tkg")]
STATIC_CASES = [("complex", "tiny_kg"), ("transe", "tiny_kg")]


def _model(name: str, kg: KG, seed: int = 0) -> KGEModel:
    torch.manual_seed(seed)
    vocab = Vocab(kg.num_entities, kg.num_relations, tuple(kg.time.labels))
    # init_scale 0.1: the default 1e-3 of some models gives scores so small that gradients vanish
    return build_model({"name": name, "dim": 8, "init_scale": 0.1}, vocab)


def _linked(kg: KG) -> MultiKG:
    """The graph with every other pair of entities marked aligned: what ``bind`` of the multi-source terms reads."""
    n = kg.num_entities // 2 * 2
    links = torch.stack([torch.arange(0, n, 2), torch.arange(1, n, 2)], dim=1)
    anchors = torch.zeros(kg.num_entities, dtype=torch.bool)
    anchors[links.reshape(-1)] = True
    return MultiKG(
        **{f.name: getattr(kg, f.name) for f in fields(KG)}, links=links, anchors=anchors
    )


#: Options a term needs to read a model teacher's raw scores (its default reads a cache of confidences).
TERM_OPTIONS: dict[str, dict[str, object]] = {"soft_labels": {"confidence": "sigmoid"}}


def _run(loss_name: str, model_name: str, kg: KG) -> tuple[torch.Tensor, KGEModel]:
    term: LossTerm = LOSSES.get(loss_name)(**TERM_OPTIONS.get(loss_name, {}))
    term.bind(_linked(kg))
    model = _model(model_name, kg)
    queries = both_directions(kg.splits["train"][:24], kg.num_relations)
    batch = Batch(queries)
    if term.needs_candidates:
        g = torch.Generator().manual_seed(0)
        batch = Batch(queries, sample_candidates(queries, kg.num_entities, 16, g))
    student = model(batch.queries, batch.candidates)
    teacher = None
    if term.requires_teacher:
        with torch.no_grad():
            teacher = _model(model_name, kg, seed=1)(batch.queries, batch.candidates)
    setup = getattr(term, "setup", None)  # terms owning parameters create them from probe outputs
    if callable(setup):
        setup(student, teacher)
    return term(student, teacher, batch), model


def _check(value: torch.Tensor, model: KGEModel) -> None:
    assert value.ndim == 0
    assert torch.isfinite(value)
    assert value.item() >= -1e-6  # >= 0 up to float rounding
    assert value.requires_grad
    value.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads, "no parameter received a gradient"
    assert any(g.abs().sum() > 0 for g in grads)
    assert all(torch.isfinite(g).all() for g in grads)


def test_candidate_terms_are_declared() -> None:
    declared = {n for n, cls in LOSSES.items() if cls.needs_candidates}
    assert declared == CANDIDATE_TERMS


@pytest.mark.parametrize(("model_name", "kg_name"), TEMPORAL_CASES)
@pytest.mark.parametrize("loss_name", [n for n in LOSSES.names() if n not in MODEL_TERMS])
def test_every_term_on_a_temporal_batch(
    request: pytest.FixtureRequest, loss_name: str, model_name: str, kg_name: str
) -> None:
    value, model = _run(loss_name, model_name, request.getfixturevalue(kg_name))
    _check(value, model)


@pytest.mark.parametrize(("model_name", "kg_name"), STATIC_CASES)
@pytest.mark.parametrize(
    "loss_name", [n for n in LOSSES.names() if n not in TIME_ONLY and n not in MODEL_TERMS]
)
def test_every_term_on_a_static_batch(
    request: pytest.FixtureRequest, loss_name: str, model_name: str, kg_name: str
) -> None:
    value, model = _run(loss_name, model_name, request.getfixturevalue(kg_name))
    _check(value, model)


@pytest.mark.parametrize(("loss_name", "family"), sorted(MODEL_TERMS.items()))
def test_model_specific_terms_refuse_other_models(loss_name: str, family: str, tiny_kg: KG) -> None:
    with pytest.raises(ConfigError, match=family):
        _run(loss_name, "complex", tiny_kg)


@pytest.mark.parametrize("loss_name", sorted(TIME_ONLY))
def test_time_terms_are_zero_for_static_models(loss_name: str, tiny_kg: KG) -> None:
    value, _ = _run(loss_name, "distmult", tiny_kg)
    assert value.ndim == 0
    assert value.item() == 0.0


# -- hand-computed values ------------------------------------------------------------------------------------------


def _out(scores: torch.Tensor, **kw: object) -> ModelOutput:
    return ModelOutput(scores=scores, **kw)  # type: ignore[arg-type]


SCORES = torch.tensor([[2.0, -1.0, 0.5, 0.0], [0.0, 1.0, -3.0, 2.5], [1.0, 1.0, 1.0, 1.0]])


def _one_to_n_batch(targets: list[int]) -> Batch:
    q = torch.zeros(len(targets), 3, dtype=torch.long)
    q[:, 2] = torch.tensor(targets)
    return Batch(q)


def test_supervised_ce_without_smoothing() -> None:
    targets = [0, 3, 2]
    value = LOSSES.get("supervised_ce")()(_out(SCORES), None, _one_to_n_batch(targets))
    expected = 0.0
    for row, y in zip(SCORES.tolist(), targets, strict=True):
        expected += -(row[y] - math.log(sum(math.exp(s) for s in row)))
    assert value.item() == pytest.approx(expected / 3, rel=1e-6)
    assert value.item() == pytest.approx(
        F.cross_entropy(SCORES, torch.tensor(targets)).item(), rel=1e-6
    )


def test_supervised_ce_with_label_smoothing() -> None:
    targets, eps = [0, 3, 2], 0.2
    value = LOSSES.get("supervised_ce")(label_smoothing=eps)(
        _out(SCORES), None, _one_to_n_batch(targets)
    )
    expected = 0.0
    for row, y in zip(SCORES.tolist(), targets, strict=True):
        lse = math.log(sum(math.exp(s) for s in row))
        logp = [s - lse for s in row]
        expected += -(1 - eps) * logp[y] - eps / len(row) * sum(logp)
    assert value.item() == pytest.approx(expected / 3, rel=1e-6)
    plain = LOSSES.get("supervised_ce")()(_out(SCORES), None, _one_to_n_batch(targets))
    assert value.item() != pytest.approx(plain.item())


def test_supervised_ce_on_sampled_candidates_targets_column_zero() -> None:
    q = torch.tensor([[0, 0, 7], [1, 0, 9], [2, 0, 5]])
    batch = Batch(q, candidates=torch.tensor([[7, 1, 2, 3], [9, 1, 2, 3], [5, 1, 2, 3]]))
    value = LOSSES.get("supervised_ce")()(_out(SCORES), None, batch)
    expected = F.cross_entropy(SCORES, torch.zeros(3, dtype=torch.long))
    assert value.item() == pytest.approx(expected.item(), rel=1e-6)


@pytest.mark.parametrize("eps", [0.0, 0.3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_cross_entropy_equals_torch(eps: float, dtype: torch.dtype) -> None:
    """Value and gradient equal ``F.cross_entropy``'s, with label smoothing, large scores and -inf (masked)
    entries; the gradient arrives scaled by the upstream gradient; a second backward is refused."""
    gen = torch.Generator().manual_seed(0)
    scores = (torch.randn(7, 300, generator=gen) * 30).to(dtype)
    scores[2, 5:40] = -math.inf  # masked candidates: probability 0
    targets = torch.tensor([0, 299, 3, 150, 7, 7, 42])
    a = scores.clone().requires_grad_()
    b = scores.clone().requires_grad_()
    mine = fused_cross_entropy(a, targets, eps)
    ref = F.cross_entropy(b, targets, label_smoothing=eps) if not eps else None
    if eps:  # F.cross_entropy's smoothing term is NaN with -inf scores: compare on finite rows
        keep = torch.tensor([0, 1, 3, 4, 5, 6])
        a = scores[keep].clone().requires_grad_()
        b = scores[keep].clone().requires_grad_()
        mine = fused_cross_entropy(a, targets[keep], eps)
        ref = F.cross_entropy(b, targets[keep], label_smoothing=eps)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    assert mine.item() == pytest.approx(ref.item(), rel=tol)
    (3 * mine).backward()
    (3 * ref).backward()
    assert torch.allclose(a.grad, b.grad, rtol=tol, atol=tol)
    out = fused_cross_entropy(scores.clone().requires_grad_(), targets)
    out.backward(retain_graph=True)
    with pytest.raises(RuntimeError):
        out.backward()


def test_supervised_ce_gives_up_fusion_when_another_term_shares_the_softmax() -> None:
    from kgdistill.objective import Objective

    def fused_flags(*names: str) -> list[bool]:
        terms = [(n, 1.0, None, LOSSES.get(n)()) for n in names]
        return [t.fused for t in Objective(terms).terms if hasattr(t, "fused")]

    assert fused_flags("supervised_ce", "n3") == [True]
    assert fused_flags("supervised_ce", "kd_kl") == [False]
    assert fused_flags("supervised_ce", "mse") == [False]  # compares probabilities by default
    assert LOSSES.get("supervised_ce")(fused=False).fused is False
    batch = _one_to_n_batch([0, 3, 2])
    fused = LOSSES.get("supervised_ce")()(_out(SCORES), None, batch)
    plain = LOSSES.get("supervised_ce")(fused=False)(_out(SCORES), None, batch)
    assert fused.item() == pytest.approx(plain.item(), rel=1e-6)


def test_n3_and_l2_on_given_factors() -> None:
    f1 = torch.tensor([[1.0, -2.0], [0.0, 3.0]])
    f2 = torch.tensor([[1.0, -1.0], [1.0, 1.0]])
    out = _out(torch.zeros(2, 5), factors=(f1, f2))
    batch = Batch(torch.zeros(2, 3, dtype=torch.long))
    # N3: (1 + 8 + 0 + 27 + 4) / B = 40 / 2; L2: (1 + 4 + 0 + 9 + 4) / 2
    assert LOSSES.get("n3")()(out, None, batch).item() == pytest.approx(20.0)
    assert LOSSES.get("l2")()(out, None, batch).item() == pytest.approx(9.0)


def test_lambda3_on_a_given_time_table() -> None:
    table = torch.tensor([[0.0, 0.0], [3.0, 4.0], [3.0, 4.0]])
    out = _out(torch.zeros(2, 5), time_table=table)
    batch = Batch(torch.zeros(2, 4, dtype=torch.long))
    # complex pairs: |3 + 4i|^3 = 125 and 0, over T - 1 = 2
    assert LOSSES.get("lambda3")()(out, None, batch).item() == pytest.approx(62.5, rel=1e-6)
    # real: 3^3 + 4^3 = 91, over 2
    real = LOSSES.get("lambda3")(complex_pairs=False)(out, None, batch)
    assert real.item() == pytest.approx(45.5, rel=1e-6)
    # an odd width cannot be complex pairs: real form
    odd = torch.tensor([[0.0, 1.0, 0.0], [2.0, 1.0, -1.0]])
    value = LOSSES.get("lambda3")()(_out(torch.zeros(1, 2), time_table=odd), None, batch)
    assert value.item() == pytest.approx(9.0)
    # fewer than two times, or none: zero
    one = _out(torch.zeros(1, 2), time_table=table[:1])
    assert LOSSES.get("lambda3")()(one, None, batch).item() == 0.0
    assert LOSSES.get("lambda3")()(_out(torch.zeros(1, 2)), None, batch).item() == 0.0


def _sp(x: float) -> float:
    return math.log1p(math.exp(x))


def _sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


CAND = torch.tensor([[2.0, -1.0, 0.5], [0.0, 1.0, -3.0]])
CAND_BATCH = Batch(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 3, dtype=torch.long))


def test_negative_sampling_softplus() -> None:
    value = LOSSES.get("negative_sampling")(form="softplus")(_out(CAND), None, CAND_BATCH)
    # column 0 positive: softplus(-s); the others negative: softplus(s); mean over all entries
    expected = (_sp(-2.0) + _sp(-1.0) + _sp(0.5) + _sp(-0.0) + _sp(1.0) + _sp(-3.0)) / 6
    assert value.item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize(("margin", "alpha"), [(6.0, 1.0), (1.0, 0.5), (0.0, 2.0)])
def test_negative_sampling_self_adversarial(margin: float, alpha: float) -> None:
    scores = CAND.clone().requires_grad_(True)
    term = LOSSES.get("negative_sampling")(
        form="self_adversarial", margin=margin, adversarial_temperature=alpha
    )
    value = term(_out(scores), None, CAND_BATCH)
    expected, grads = 0.0, []
    for row in CAND.tolist():
        pos, neg = row[0], row[1:]
        z = sum(math.exp(alpha * s) for s in neg)
        w = [math.exp(alpha * s) / z for s in neg]
        pos_loss = -math.log(_sig(margin + pos))
        neg_loss = -sum(wi * math.log(_sig(-margin - s)) for wi, s in zip(w, neg, strict=True))
        expected += (pos_loss + neg_loss) / 2
        # the weights are constants: d/ds_i = w_i * sigmoid(margin + s_i) / 2, per row, then / B
        grads.append(
            [-_sig(-margin - pos) / 2 / 2]
            + [wi * _sig(margin + s) / 2 / 2 for wi, s in zip(w, neg, strict=True)]
        )
    assert value.item() == pytest.approx(expected / 2, rel=1e-6)
    value.backward()
    assert scores.grad is not None
    torch.testing.assert_close(scores.grad, torch.tensor(grads), rtol=1e-5, atol=1e-7)


def test_default_negative_sampling_is_self_adversarial() -> None:
    default = LOSSES.get("negative_sampling")()(_out(CAND), None, CAND_BATCH)
    explicit = LOSSES.get("negative_sampling")(
        form="self_adversarial", margin=6.0, adversarial_temperature=1.0
    )(_out(CAND), None, CAND_BATCH)
    assert default.item() == explicit.item()


def test_margin_ranking() -> None:
    scores = torch.tensor([[1.0, 0.5, 2.0], [3.0, 0.0, 2.5]])
    batch = Batch(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 3, dtype=torch.long))
    # margin 1: relu(0.5), relu(2), relu(-2), relu(0.5) -> mean 0.75
    assert LOSSES.get("margin_ranking")()(_out(scores), None, batch).item() == pytest.approx(0.75)
    # margin 3: 2.5, 4, 0, 2.5 -> 2.25
    value = LOSSES.get("margin_ranking")(margin=3.0)(_out(scores), None, batch)
    assert value.item() == pytest.approx(2.25)


def test_terms_without_options_accept_no_keys() -> None:
    with pytest.raises(TypeError):
        LOSSES.get("n3")(weight=1.0)


def test_soft_labels_are_weighted_positives_of_the_student_softmax() -> None:
    term = LOSSES.get("soft_labels")()
    student = _out(torch.tensor([[1.0, 2.0, 0.5, -1.0], [0.0, 0.0, 3.0, 1.0]], requires_grad=True))
    # a top-k teacher: query 0 has answers 1 (0.8) and 3 (0.2); query 1 none (masked row)
    teacher = _out(
        torch.tensor([[0.8, 0.2], [0.9, 0.0]]),
        ids=torch.tensor([[1, 3], [0, 0]]),
        mask=torch.tensor([[True, True], [False, False]]),
    )
    log_p = F.log_softmax(student.scores, -1)
    want = -(0.8 * log_p[0, 1] + 0.2 * log_p[0, 3]) / 2
    got = term(student, teacher, Batch(torch.zeros(2, 3, dtype=torch.long)))
    assert got.item() == pytest.approx(want.item(), rel=1e-6)
    got.backward()
    assert student.scores.grad is not None and student.scores.grad[1].abs().sum() == 0
    floor = LOSSES.get("soft_labels")(min_confidence=0.5)
    assert floor(
        student, teacher, Batch(torch.zeros(2, 3, dtype=torch.long))
    ).item() == pytest.approx((-0.8 * log_p[0, 1] / 2).item(), rel=1e-6)
    raw = _out(torch.tensor([[2.0, -3.0], [0.0, 0.0]]), ids=teacher.ids, mask=teacher.mask)
    with pytest.raises(ConfigError, match="confidence: sigmoid"):
        term(student, raw, Batch(torch.zeros(2, 3, dtype=torch.long)))
    squash = LOSSES.get("soft_labels")(confidence="sigmoid")
    w = torch.tensor([2.0, -3.0]).sigmoid()
    assert squash(student, raw, Batch(torch.zeros(2, 3, dtype=torch.long))).item() == pytest.approx(
        (-(w[0] * log_p[0, 1] + w[1] * log_p[0, 3]) / 2).item(), rel=1e-6
    )
