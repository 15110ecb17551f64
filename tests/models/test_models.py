"""Every registered model on a real graph (score consistency, shapes, gradients, time, checkpoints, sizes), and
the interactions on tiny hand-computed tensors."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from kgdistill.checkpoint import load_checkpoint, load_model, save_checkpoint
from kgdistill.data import KG
from kgdistill.data.batching import (
    Batch,
    both_directions,
    sample_candidates,
    shared_candidates,
    shared_negatives,
)
from kgdistill.features import TextFeatures
from kgdistill.losses import LOSSES
from kgdistill.models import MODELS, KGEModel, Vocab, build_model, is_temporal
from kgdistill.models.interactions import (
    ComplEx,
    DistMult,
    Interaction,
    RotatE,
    TransE,
    complex_mul,
)
from kgdistill.models.representations import time_tokens
from kgdistill.models.zoo import model_features
from kgdistill.types import TAIL, TIME

DIM = 16
TEMPORAL_KGS = ("tiny_tkg", "tiny_point_kg")
#: Models that run on static and temporal graphs alike (time is used when the graph has it). The generative
#: model reads time too, but is checked here on the static graph only: scoring all 520 entities of the temporal
#: subsets is one LM pass per (query, entity) over a 49k-token vocabulary, tens of seconds per case;
#: tests/plm/test_generative.py checks its time column on candidate lists.
EITHER = {"llm_scorer", "bi_encoder", "cross_encoder"}
#: Models whose vectors all have norm 1 (bi-encoder) or that have no vectors (cross-encoder, generative): no
#: factors.
NO_FACTORS = {"bi_encoder", "cross_encoder", "generative"}
CASES = [
    pytest.param((name, kg), id=f"{name}-{kg}")
    for name in MODELS.names()
    for kg in (
        TEMPORAL_KGS
        if is_temporal(name)
        else ("tiny_kg", *TEMPORAL_KGS)
        if name in EITHER
        else ("tiny_kg",)
    )
]
#: Width of one entity row, in reals, for ``dim=16`` (complex models store ``2 * dim``).
ENTITY_WIDTH = {
    "complex": 2 * DIM,
    "rotate": 2 * DIM,
    "tntcomplex": 2 * DIM,
    "timeplex": 2 * DIM,
    "llm_scorer": DIM + 1,
}


def _vocab(kg: KG) -> Vocab:
    return Vocab(kg.num_entities, kg.num_relations, tuple(kg.time.labels))


#: Extra builder kwargs (the generative model has no ``dim``: its width is the LM's).
KWARGS: dict[str, dict[str, int]] = {"llm_scorer": {"hidden": 20}}
NO_DIM = {"generative"}
#: Width of the stand-in text features (tests/llm and tests/distill encode real text).
TEXT_DIM = 12


def _features(name: str, kg: KG, plm: Any = None, lm: Any = None) -> dict[str, Any]:
    """Random stand-ins for the features a model is built from (``plm``: the ``tiny_plm`` fixture, ``lm``:
    the ``tiny_lm`` fixture)."""
    if "plm" in model_features(name):
        return {"plm": plm(kg)}
    if "lm" in model_features(name):
        return {"lm": lm(kg)}
    if "text" not in model_features(name):
        return {}
    g = torch.Generator().manual_seed(0)
    f = TextFeatures.placeholder(kg.num_entities, kg.num_relations, kg.num_times, TEXT_DIM)
    for t in (f.entities, f.relations, f.times):
        if t is not None:
            t.copy_(torch.randn(t.shape, generator=g))
    return {"text": f}


def _model(name: str, kg: KG, plm: Any = None, lm: Any = None) -> KGEModel:
    return build_model(
        {"name": name, **({} if name in NO_DIM else {"dim": DIM, **KWARGS.get(name, {})})},
        _vocab(kg),
        _features(name, kg, plm, lm),
    )


def _queries(kg: KG, n: int = 12) -> torch.Tensor:
    """Tail and head queries of the first ``n`` test facts."""
    return both_directions(kg.splits["test"][:n], kg.num_relations)


Case = tuple[str, KG, KGEModel, torch.Tensor]


@pytest.fixture
def case(request: pytest.FixtureRequest) -> Case:
    """``(model name, graph, model, queries)`` for one entry of ``CASES``."""
    name, kg_name = request.param
    kg = request.getfixturevalue(kg_name)
    plm = request.getfixturevalue("tiny_plm") if "plm" in model_features(name) else None
    lm = request.getfixturevalue("tiny_lm") if "lm" in model_features(name) else None
    # the generative model scores all entities with one LM pass per (query, entity): 4 queries, not 24
    return name, kg, _model(name, kg, plm, lm), _queries(kg, 2 if name == "generative" else 12)


with_case = pytest.mark.parametrize("case", CASES, indirect=True)


# -- score consistency -----------------------------------------------------------------------------------------


@with_case
def test_score_hrt_matches_one_to_n_candidates_and_score_all(case: Case) -> None:
    _, kg, model, q = case
    with torch.no_grad():
        full = model(q).scores
        all_ = model.score_all(q)
        hrt = model.score_hrt(q)
        g = torch.Generator().manual_seed(1)
        cand = torch.cat(
            [q[:, TAIL : TAIL + 1], torch.randint(kg.num_entities, (len(q), 9), generator=g)], 1
        )
        sampled = model(q, cand).scores
    assert full.shape == all_.shape == (len(q), kg.num_entities)
    torch.testing.assert_close(all_, full, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(
        hrt, full.gather(1, q[:, TAIL : TAIL + 1]).squeeze(1), rtol=1e-4, atol=1e-5
    )
    torch.testing.assert_close(sampled, full.gather(1, cand), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(sampled[:, 0], hrt, rtol=1e-4, atol=1e-5)
    # the scores are not degenerate: different entities get different scores
    assert (full.std(1) > 0).all()


#: The cross-encoder is left out: it has no query or entity vectors (``h``, ``r``, ``t``, the entity table), only
#: one score per (query, candidate) pass; tests/plm/test_cross_encoder.py checks its outputs. So is the
#: generative model (one likelihood per (query, candidate) pass; tests/plm/test_generative.py).
VECTOR_CASES = [c for c in CASES if c.values[0][0] not in ("cross_encoder", "generative")]
#: The generative model is left out of the 1-N gradient check: 1-N scoring of 128 queries with gradients keeps
#: every LM pass's vocabulary logits (gigabytes); tests/plm/test_generative.py trains it with sampled
#: candidates and checks that its loss falls.
GRAD_CASES = [c for c in CASES if c.values[0][0] != "generative"]


@pytest.mark.parametrize("case", VECTOR_CASES, indirect=True)
def test_shared_negatives_score_like_all_entities(case: Case) -> None:
    """Candidates shared by the whole batch (``train.negative_sampling: shared``) take the one-product path:
    the scores, the candidate vectors and the gradients are those of the same columns of 1-N scoring."""
    _, kg, model, q = case
    g = torch.Generator().manual_seed(2)
    cand = shared_candidates(q, kg.num_entities, 7, g)
    assert shared_negatives(cand) is not None and torch.equal(cand[3, 1:], cand[0, 1:])
    shared = model(q, cand)
    model.zero_grad()
    shared.scores.square().sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    reference = model.score_all(q).gather(1, cand)
    torch.testing.assert_close(shared.scores, reference, rtol=1e-4, atol=1e-5)
    if shared.t is not None and shared.t.dim() == 3:
        torch.testing.assert_close(shared.t, model.entities(cand), rtol=1e-4, atol=1e-5)
    model.zero_grad()
    model.score_all(q).gather(1, cand).square().sum().backward()
    for n, p in model.named_parameters():
        if n in grads:
            # relative to the whole gradient: a text encoder's batch changes its float rounding
            err = float((grads[n] - p.grad).norm())
            assert err <= 1e-3 * float(p.grad.norm()) + 1e-6, f"{n}: {err}"


def test_shared_negatives_detection() -> None:
    q = torch.tensor([[0, 0, 1], [2, 1, 3], [4, 0, 5]])
    g = torch.Generator().manual_seed(0)
    per_query = sample_candidates(q, 50, 4, g)
    assert shared_negatives(per_query) is None
    cand = shared_candidates(q, 50, 4, g)
    assert torch.equal(cand[:, 0], q[:, TAIL]) and cand.shape == (3, 5)
    assert torch.equal(shared_negatives(cand), cand[0, 1:])
    assert shared_negatives(cand[:1]) is None  # one row: nothing to share
    assert shared_negatives(cand[:, :1]) is None  # no negatives


@pytest.mark.parametrize("case", VECTOR_CASES, indirect=True)
def test_model_output_shapes(case: Case) -> None:
    name, kg, model, q = case
    B, E = len(q), kg.num_entities
    width = ENTITY_WIDTH.get(name, DIM)
    out = model(q)
    assert out.scores.shape == (B, E)
    assert out.mask is None
    assert out.h is not None and out.h.shape == (B, width)
    assert out.r is not None and out.r.ndim == 2 and out.r.shape[0] == B
    assert out.t is not None and out.t.shape == (E, width)
    assert torch.equal(out.t, model.entities.table())
    assert len(out.factors) >= 2 or name in NO_FACTORS
    for f in out.factors:
        assert f.ndim == 2 and f.shape[0] == B
    if model.temporal:
        if name in ("ttranse", "tntcomplex", "timeplex", "hyte"):  # one embedding per time id
            assert out.time_table is not None
        if out.time_table is not None:
            assert out.time_table.ndim == 2 and out.time_table.shape[0] == kg.num_times
    else:
        assert out.time_table is None

    cand = torch.randint(E, (B, 5))
    out = model(q, cand)
    assert out.scores.shape == (B, 5)
    assert out.t is not None and out.t.shape == (B, 5, width)
    assert torch.equal(out.t, model.entities(cand))
    assert model.score_hrt(q).shape == (B,)
    assert model.query_vectors(q).shape[0] == B


@pytest.mark.parametrize("case", GRAD_CASES, indirect=True)
def test_supervised_loss_reaches_every_parameter(case: Case) -> None:
    _, kg, model, _ = case
    q = both_directions(kg.splits["train"][:64], kg.num_relations)
    loss = LOSSES.get("supervised_ce")()(model(q), None, Batch(q))
    assert loss.item() == pytest.approx(F.cross_entropy(model(q).scores, q[:, TAIL]).item())
    loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{pname} gets no gradient"
        assert p.grad.abs().sum() > 0, f"{pname} gets a zero gradient"


@with_case
def test_time_column_matters_only_for_temporal_models(case: Case) -> None:
    _, kg, model, q = case
    if q.shape[1] == 3:  # static graph: append a time column the model must ignore
        q = torch.cat([q, torch.zeros(len(q), 1, dtype=torch.long)], 1)
    num_times = max(kg.num_times, 5)
    shifted = q.clone()
    shifted[:, TIME] = (q[:, TIME] + 1 + torch.arange(len(q)) % (num_times - 1)) % num_times
    assert (shifted[:, TIME] != q[:, TIME]).all()
    with torch.no_grad():
        a, b = model.score_all(q), model.score_all(shifted)
        ha, hb = model.score_hrt(q), model.score_hrt(shifted)
    if model.temporal:
        rows_changed = ~torch.isclose(a, b, rtol=1e-4, atol=0).all(1)
        assert rows_changed.all(), "some queries' scores ignore the time column"
        assert not torch.allclose(ha, hb, rtol=1e-4, atol=0)
    else:
        assert torch.equal(a, b)
        assert torch.equal(ha, hb)


@pytest.mark.parametrize("name", [n for n in MODELS.names() if is_temporal(n)])
def test_temporal_models_need_a_time_column(name: str, tiny_tkg: KG) -> None:
    model = _model(name, tiny_tkg)
    with pytest.raises(ValueError, match="time column"):
        model.score_all(_queries(tiny_tkg)[:, :3])


@with_case
def test_checkpoint_round_trip_gives_identical_scores(
    case: Case, tmp_path: Path, tiny_plm: Any, tiny_lm: Any
) -> None:
    name, kg, model, q = case
    with torch.no_grad():  # move away from the initialisation so a fresh model would differ
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    path = tmp_path / "m.safetensors"
    meta = {
        "model": {
            "name": name,
            "kwargs": {} if name in NO_DIM else {"dim": DIM, **KWARGS.get(name, {})},
            "features": {
                kind: f.meta() for kind, f in _features(name, kg, tiny_plm, tiny_lm).items()
            },
        },
        "id_maps": kg.id_maps(),
        "time": kg.time.to_dict(),
    }
    save_checkpoint(path, model=model, meta=meta)
    loaded = load_model(load_checkpoint(path))
    assert type(loaded) is type(model)
    with torch.no_grad():
        assert torch.equal(loaded.score_all(q), model.score_all(q))
        assert torch.equal(loaded.score_hrt(q), model.score_hrt(q))
    for (k1, v1), (k2, v2) in zip(
        model.state_dict().items(), loaded.state_dict().items(), strict=True
    ):
        assert k1 == k2 and torch.equal(v1, v2)


def _expected_parameters(name: str, kg: KG) -> int | None:
    E, R2, T, d = kg.num_entities, 2 * kg.num_relations, kg.num_times, DIM
    lstm = 4 * d * d * 2 + 4 * d * 2  # weight_ih, weight_hh, two biases
    n_tokens = len(time_tokens(kg.time.labels)[1]) if kg.temporal else 0
    return {
        "transe": E * d + R2 * d,
        "distmult": E * d + R2 * d,
        "complex": E * 2 * d + R2 * 2 * d,
        "rotate": E * 2 * d + R2 * d,
        "ttranse": E * d + R2 * d + T * d,
        "ta_distmult": E * d + R2 * d + n_tokens * d + lstm,
        "ta_transe": E * d + R2 * d + n_tokens * d + lstm,
        "hyte": E * d + R2 * d + T * d,
        "tntcomplex": E * 2 * d + 2 * R2 * 2 * d + T * 2 * d,
        "timeplex": E * 2 * d + 2 * R2 * 2 * d + T * 2 * d,
        # text projection + entity bias, relation (+ time) projection, the query MLP
        "llm_scorer": (D := 12) * d
        + d
        + E
        + D * (H := 20)
        + H
        + (D * H if T else 0)
        + d * H
        + H * d
        + d,
    }.get(name)


@with_case
def test_num_parameters_and_bytes(case: Case) -> None:
    name, kg, model, _ = case
    n = model.num_parameters()
    assert n == sum(p.numel() for p in model.parameters())
    expected = _expected_parameters(name, kg)
    if expected is not None:
        assert n == expected
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    assert model.num_bytes() == 4 * n + buffers
    if name in ("ta_distmult", "ta_transe"):
        assert buffers == kg.num_times * model.relations.tokens.shape[1] * 8  # int64 token table
    model.double()  # float buffers (frozen text encodings) double too; integer token tables do not
    float_buffers = sum(b.numel() for b in model.buffers() if b.is_floating_point())
    assert model.num_bytes() == 8 * n + buffers + 4 * float_buffers


#: The bi-encoder is left out: its query encoder's activations (B, L, 4 hidden) outweigh a tiny graph's
#: (B, E, d) whatever 1-N scoring does; its 1-N scoring is one matrix product with the cached entity table
#: (tests/plm/test_bi_encoder.py checks the cache and the scores). So is the cross-encoder: 1-N scoring is
#: one encoder pass per (query, entity) pair, whose activations are (chunk, L, hidden) by design, and the
#: generative model: its vocabulary logits of a chunk's answer tokens (chunk * L_n, V) outweigh (B, E, d).
TABLE_CASES = [
    c for c in CASES if c.values[0][0] not in ("bi_encoder", "cross_encoder", "generative")
]


@pytest.mark.parametrize("case", TABLE_CASES, indirect=True)
def test_one_to_n_scoring_never_builds_batch_x_entities_x_dim(case: Case) -> None:
    name, kg, model, q = case
    width = ENTITY_WIDTH.get(name, DIM)
    bed = len(q) * kg.num_entities * width * 4  # bytes of a float32 (B, E, d) tensor
    with torch.no_grad(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        model.score_all(q)
    biggest = max(e.cpu_memory_usage for e in prof.events())
    assert biggest < bed / 2, f"an op allocated {biggest} bytes; (B, E, d) is {bed}"


# -- interactions on hand-computed values -------------------------------------------------------------------------


def test_distmult_hand_values() -> None:
    h = torch.tensor([[1.0, 2.0, 3.0]])
    r = torch.tensor([[2.0, -1.0, 0.5]])
    t = torch.tensor([[1.0, 1.0, 1.0], [0.0, 2.0, -2.0]])
    i = DistMult()
    q = i.combine(h, r)
    assert torch.equal(q, torch.tensor([[2.0, -2.0, 1.5]]))
    # <h, r, t> = 2 - 2 + 1.5 = 1.5 and 0 - 4 - 3 = -7
    assert torch.equal(i.score_all(q, t), torch.tensor([[1.5, -7.0]]))
    assert torch.equal(i.score_candidates(q, t.unsqueeze(0)), torch.tensor([[1.5, -7.0]]))
    assert torch.equal(i.score_hrt(q, t[1:]), torch.tensor([-7.0]))
    factors = i.factors(h, r, t[:1])
    assert len(factors) == 3
    assert all(torch.equal(a, b) for a, b in zip(factors, (h, r, t[:1]), strict=True))


def test_complex_hand_values() -> None:
    # h = 1 + 2i, r = 3 - i, t = 2 + 5i (rank 1, stored as [re | im])
    h, r, t = torch.tensor([[1.0, 2.0]]), torch.tensor([[3.0, -1.0]]), torch.tensor([[2.0, 5.0]])
    i = ComplEx()
    q = i.combine(h, r)
    assert torch.equal(q, torch.tensor([[5.0, 5.0]]))  # (1 + 2i)(3 - i) = 5 + 5i
    # Re((5 + 5i) * conj(2 + 5i)) = Re((5 + 5i)(2 - 5i)) = 10 + 25 = 35
    assert torch.equal(i.score_hrt(q, t), torch.tensor([35.0]))
    assert torch.equal(i.score_all(q, torch.cat([t, h])), torch.tensor([[35.0, 15.0]]))
    mods = i.factors(h, r, t)
    expected = [math.sqrt(5), math.sqrt(10), math.sqrt(29)]
    for m, e in zip(mods, expected, strict=True):
        assert m.shape == (1, 1)
        assert m.item() == pytest.approx(e, rel=1e-6)
    # rank 2: the product is per component
    a = torch.tensor([[1.0, 0.0, 0.0, 1.0]])  # (1, i)
    b = torch.tensor([[0.0, 2.0, 1.0, 0.0]])  # (i, 2)
    assert torch.equal(complex_mul(a, b), torch.tensor([[0.0, 0.0, 1.0, 2.0]]))  # (i, 2i)


def test_timeplex_hand_values() -> None:
    """Re(<h, r_so, conj t>) + gamma Re(<h, tau, conj t>) + beta Re(<conj t, tau, r_ot>) by hand, rank 1:
    h = 1 + 2i, t = 2 + 5i, r_so = 3 - i, r_ot = 1 + i, tau = i, beta = 2, gamma = 3."""
    model = build_model(
        {"name": "timeplex", "dim": 1, "beta": 2.0, "gamma": 3.0},
        Vocab(num_entities=2, num_relations=1, time_labels=("1990",)),
    )
    with torch.no_grad():
        model.entities.weight.copy_(torch.tensor([[1.0, 2.0], [2.0, 5.0]]))
        model.relations.rel.weight[0] = torch.tensor([3.0, -1.0])
        model.relations.rel_time.weight[0] = torch.tensor([1.0, 1.0])
        model.relations.time.weight[0] = torch.tensor([0.0, 1.0])
    # tail 2 + 5i: 35 (ComplEx) + 3 * Re((-2 + i)(2 - 5i)) = 3 * 1 + 2 * Re((-1 + i)(2 - 5i)) = 2 * 3 -> 44
    # tail 1 + 2i: 15 + 3 * Re((-2 + i)(1 - 2i)) = 0 + 2 * Re((-1 + i)(1 - 2i)) = 2 * 1 -> 17
    q = torch.tensor([[0, 0, 1, 0]])
    assert torch.allclose(model.score_all(q), torch.tensor([[17.0, 44.0]]))
    out = model(q)
    # N3 factors: |h|, |r_so + gamma tau| = |3 + 2i|, |t|, |beta tau r_ot| = |2(-1 + i)|
    expected = [math.sqrt(5), math.sqrt(13), math.sqrt(29), math.sqrt(8)]
    assert [f.item() for f in out.factors] == pytest.approx(expected, rel=1e-5)


def test_transe_hand_values() -> None:
    h, r = torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0, 1.0]])
    t = torch.tensor([[1.0, 3.0], [4.0, -1.0]])  # h + r = (1, 3): distances 0 and (3, 4)
    l2, l1 = TransE(p=2.0), TransE(p=1.0)
    q = l2.combine(h, r)
    assert torch.equal(q, torch.tensor([[1.0, 3.0]]))
    torch.testing.assert_close(l2.score_all(q, t), torch.tensor([[0.0, -5.0]]))
    torch.testing.assert_close(l1.score_all(q, t), torch.tensor([[0.0, -7.0]]))
    torch.testing.assert_close(l2.score_candidates(q, t.unsqueeze(0)), torch.tensor([[0.0, -5.0]]))
    torch.testing.assert_close(l1.score_hrt(q, t[1:]), torch.tensor([-7.0]))


def test_rotate_hand_values() -> None:
    # h = 1 (rank 1), phase pi/2 rotates it to i; t = i is at distance 0, t = 1 at |i - 1| = sqrt(2)
    h, r = torch.tensor([[1.0, 0.0]]), torch.tensor([[math.pi / 2]])
    t = torch.tensor([[0.0, 1.0], [1.0, 0.0], [-3.0, 1.0]])
    i = RotatE()
    q = i.combine(h, r)
    torch.testing.assert_close(q, torch.tensor([[0.0, 1.0]]), atol=1e-6, rtol=0)
    torch.testing.assert_close(
        i.score_all(q, t), torch.tensor([[0.0, -math.sqrt(2), -3.0]]), atol=1e-5, rtol=0
    )
    torch.testing.assert_close(i.score_hrt(q, t[2:]), torch.tensor([-3.0]), atol=1e-5, rtol=0)
    # rotations preserve the modulus
    hh = torch.tensor([[3.0, -1.0, 4.0, 2.0]])
    rr = torch.tensor([[0.3, -2.0]])
    assert i.combine(hh, rr)[:, [0, 2]].norm() == pytest.approx(5.0, rel=1e-6)  # |3 + 4i|
    assert i.combine(hh, rr)[:, [1, 3]].norm() == pytest.approx(math.sqrt(5.0), rel=1e-6)
    hf, tf = i.factors(hh, rr, hh)
    assert torch.equal(tf, hf)
    torch.testing.assert_close(hf, torch.tensor([[5.0, math.sqrt(5.0)]]))


@pytest.mark.parametrize(
    "interaction", [DistMult(), ComplEx(), TransE(p=1.0), TransE(p=2.0), RotatE()], ids=repr
)
def test_one_to_n_agrees_with_broadcast_formula(interaction: Interaction) -> None:
    g = torch.Generator().manual_seed(0)
    q = torch.randn(5, 6, generator=g, dtype=torch.float64)
    t = torch.randn(7, 6, generator=g, dtype=torch.float64)
    diff = q[:, None, :] - t[None, :, :]
    if interaction.kind == "dot":
        expected = (q[:, None, :] * t[None, :, :]).sum(-1)
    else:
        expected = -diff.abs().pow(interaction.p).sum(-1).pow(1 / interaction.p)
    torch.testing.assert_close(interaction.score_all(q, t), expected)
    cand = t[torch.randint(7, (5, 3), generator=g)]
    got = interaction.score_candidates(q, cand)
    for b in range(5):
        for c in range(3):
            torch.testing.assert_close(
                got[b, c], interaction.score_hrt(q[b : b + 1], cand[b, c : c + 1])[0]
            )


@pytest.mark.parametrize("interaction", [DistMult(), ComplEx()], ids=repr)
def test_bilinear_one_to_n_is_a_matrix_product(interaction: Interaction) -> None:
    B, E, d = 8, 3000, 64
    q, t = torch.randn(B, d), torch.randn(E, d)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        s = interaction.score_all(q, t)
    assert max(e.cpu_memory_usage for e in prof.events()) <= B * E * 4  # only the (B, E) output
    torch.testing.assert_close(s, q @ t.T)


def test_time_tokens_as_documented() -> None:
    labels = ["2014-01-05", "since 1990..1993", "-405", "unknown", "until 2001"]
    table, vocab = time_tokens(labels)
    assert vocab[0] == "<pad>"
    assert len(set(vocab)) == len(vocab)
    assert table.shape == (5, 6)
    decoded = [[vocab[i] for i in row if i != 0] for row in table.tolist()]
    assert decoded == [
        ["2y", "0y", "1y", "4y", "01m", "05d"],
        ["since", "1y", "9y", "9y", "0y"],
        ["bc", "0y", "4y", "0y", "5y"],
        ["unknown"],
        ["until", "2y", "0y", "0y", "1y"],
    ]
    # left-padded: padding only before the real tokens, the last position is always real
    for row in table.tolist():
        n_pad = row.count(0)
        assert row[:n_pad] == [0] * n_pad and 0 not in row[n_pad:]


def test_ta_distmult_tokens_follow_the_kg_time_labels(tiny_tkg: KG) -> None:
    model = _model("ta_distmult", tiny_tkg)
    table, _ = time_tokens(tiny_tkg.time.labels)
    assert torch.equal(model.relations.tokens, table)
    assert model.relations.tokens.shape[0] == tiny_tkg.num_times


def test_table_lookups_share_one_gradient_table_equal_to_torch_embedding() -> None:
    """``EmbeddingTable.many`` (one lookup for several index tensors, the training path on CPU) gives the
    values and the gradient of PyTorch's own embedding, repeated ids and an unused output included."""
    from kgdistill.models.representations import embedding

    table = embedding(50, 8, 0.1)
    g = torch.Generator().manual_seed(0)
    a, b, c = (torch.randint(50, shape, generator=g) for shape in [(30,), (6, 9), (4,)])
    xa, xb, xc = table.many(a, b, c)
    ((xa**2).sum() + (xb * torch.arange(8.0)).sum()).backward()  # xc unused
    mine = table.weight.grad.clone()
    table.weight.grad = None
    w = table.weight
    ((F.embedding(a, w) ** 2).sum() + (F.embedding(b, w) * torch.arange(8.0)).sum()).backward()
    torch.testing.assert_close(mine, table.weight.grad)
    assert torch.equal(xa, F.embedding(a, w)) and torch.equal(xc, F.embedding(c, w))
    assert xb.shape == (6, 9, 8) and torch.equal(table(b), xb)
    with torch.no_grad():  # PyTorch's own path: same values
        assert torch.equal(table(b), xb)


@pytest.mark.parametrize("interaction", [DistMult(), ComplEx()], ids=repr)
def test_candidate_dot_backward_equals_autograd(interaction: Interaction) -> None:
    """Per-query candidates are scored by a dot product with a hand-written backward (CPU): its scores and
    gradients are those of autograd through a plain ``(t * q).sum(-1)``."""
    g = torch.Generator().manual_seed(0)
    q = torch.randn(7, 12, generator=g, requires_grad=True)
    t = torch.randn(7, 5, 12, generator=g, requires_grad=True)
    w = torch.randn(7, 5, generator=g)
    scores = interaction.score_candidates(q, t)
    (scores * w).sum().backward()
    mine = q.grad.clone(), t.grad.clone()
    q.grad = t.grad = None
    reference = (t * q.unsqueeze(1)).sum(-1)
    (reference * w).sum().backward()
    torch.testing.assert_close(scores, reference)
    torch.testing.assert_close(mine[0], q.grad)
    torch.testing.assert_close(mine[1], t.grad)
