"""Multi-source terms (``alignment``, ``feature``, ``network``), their ``bind`` hook, the neighbour table, the
1-N requirement, and the checkpoint teacher answering a target's labels through the union's aliases."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from kgdistill import api
from kgdistill.checkpoint import load_checkpoint, load_model, save_checkpoint
from kgdistill.data import KG
from kgdistill.data.batching import Batch, both_directions
from kgdistill.data.time import TimeSpec
from kgdistill.distill.teachers import KGETeacher
from kgdistill.errors import ConfigError
from kgdistill.losses.multisource import Alignment, FeatureKD, NetworkKD, neighbour_table
from kgdistill.models import ModelOutput, Vocab, build_model
from kgdistill.multi import LinkedKGs, MultiKG, build_target, build_union, read_dbp15k
from kgdistill.objective import Objective

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "dbp15k-mini" / "zh_en"
CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "multisource"


@pytest.fixture(scope="module")
def mini() -> LinkedKGs:
    return read_dbp15k(FIXTURE)


@pytest.fixture(scope="module")
def separate(mini: LinkedKGs) -> MultiKG:
    return build_union(mini, tie="separate")


@pytest.fixture(scope="module")
def shared(mini: LinkedKGs) -> MultiKG:
    return build_union(mini, tie="shared")


@pytest.fixture(scope="module")
def target(mini: LinkedKGs) -> MultiKG:
    return build_target(mini, "zh", hops=0)


def _out(t: torch.Tensor, known: torch.Tensor | None = None) -> ModelOutput:
    return ModelOutput(scores=torch.zeros(1, 1), t=t, known=known)


def _f(x: torch.Tensor) -> float:
    """A scalar loss as a float (detached: the terms' projections take gradients)."""
    return float(x.detach())


def _batch(kg: KG, n: int = 40, start: int = 0) -> Batch:
    """Queries of ``n`` real training facts, both directions, as a training step sees them."""
    return Batch(both_directions(kg.splits["train"][start : start + n], kg.num_relations))


# --------------------------------------------------------------------------------------------------------------
# alignment
# --------------------------------------------------------------------------------------------------------------


def test_alignment_zero_when_aligned_pairs_agree(separate: MultiKG) -> None:
    term = Alignment()
    term.bind(separate)
    pairs = separate.links
    torch.testing.assert_close(term.pairs, pairs)
    e = torch.randn(separate.num_entities, 6)
    e[pairs[:, 1]] = e[pairs[:, 0]]
    loss = term(_out(e), None, _batch(separate))
    assert _f(loss) == 0.0


def test_alignment_value_and_gradient(separate: MultiKG) -> None:
    term = Alignment()
    term.bind(separate)
    pairs = separate.links
    e = torch.randn(separate.num_entities, 6, requires_grad=True)
    loss = term(_out(e), None, _batch(separate))
    manual = ((e[pairs[:, 0]] - e[pairs[:, 1]]) ** 2).sum(-1).mean()
    torch.testing.assert_close(loss, manual)
    assert _f(loss) > 0
    loss.backward()
    rows = e.grad.abs().sum(-1) > 0
    linked = torch.zeros(separate.num_entities, dtype=torch.bool)
    linked[pairs.ravel()] = True
    assert torch.equal(rows, linked)  # only aligned entities are pulled
    # one gradient step brings the pairs closer
    with torch.no_grad():
        e2 = e - 0.1 * e.grad
    assert _f(term(_out(e2), None, _batch(separate))) < _f(loss)
    # the batch plays no role
    torch.testing.assert_close(term(_out(e), None, _batch(separate, start=100)), loss)


def test_alignment_bind_needs_links(shared: MultiKG, target: MultiKG, tiny_kg: KG) -> None:
    for kg in (shared, target, tiny_kg):  # tied union, a target view, a plain graph
        with pytest.raises(ConfigError, match="tie: separate"):
            Alignment().bind(kg)
    objective = Objective.build([{"loss": "supervised_ce"}, {"loss": "alignment", "weight": 0.1}])
    with pytest.raises(ConfigError, match="alignment"):
        objective.bind(shared)
    with pytest.raises(ConfigError, match="does not use a teacher"):
        Objective.build([{"loss": "alignment", "teacher": "joint"}], teachers={"joint": None})


# --------------------------------------------------------------------------------------------------------------
# feature
# --------------------------------------------------------------------------------------------------------------


def _feature(kg: MultiKG, d_s: int = 3, d_t: int = 5, **kwargs) -> tuple[FeatureKD, torch.Tensor]:
    term = FeatureKD(**kwargs)
    term.bind(kg)
    s, t = torch.randn(kg.num_entities, d_s), torch.randn(kg.num_entities, d_t)
    term.setup(_out(s), _out(t))
    w = torch.randn(d_t, d_s)
    with torch.no_grad():
        term.proj.weight.copy_(w)
    return term, w


def _batch_ids(batch: Batch) -> torch.Tensor:
    return torch.unique(batch.queries[:, [0, 2]].reshape(-1))


def test_feature_zero_when_the_projection_is_exact(target: MultiKG) -> None:
    term, w = _feature(target)
    assert isinstance(term.proj, torch.nn.Linear) and term.proj.weight.shape == (5, 3)
    assert term.proj.bias is None
    s = torch.randn(target.num_entities, 3)
    t = s @ w.T
    batch = _batch(target)
    assert _f(term(_out(s), _out(t), batch)) == pytest.approx(0.0, abs=1e-10)
    noisy = t + 0.1 * torch.randn_like(t)
    assert _f(term(_out(s), _out(noisy), batch)) > 1e-4


def test_feature_value_gradients_and_teacher_untouched(target: MultiKG) -> None:
    term, w = _feature(target, normalize=False)
    s = torch.randn(target.num_entities, 3, requires_grad=True)
    t = torch.randn(target.num_entities, 5)
    batch = _batch(target)
    ids = _batch_ids(batch)
    ids = ids[target.anchors[ids]]
    assert 0 < len(ids) < len(_batch_ids(batch))  # the batch holds aligned and unaligned entities
    loss = term(_out(s), _out(t), batch)
    torch.testing.assert_close(loss, ((s[ids] @ w.T - t[ids]) ** 2).mean())
    loss.backward()
    assert term.proj.weight.grad is not None and term.proj.weight.grad.abs().sum() > 0
    moved = torch.nonzero(s.grad.abs().sum(-1)).ravel()
    assert torch.equal(moved, ids)  # only the batch's aligned entities get a gradient
    assert t.grad is None and not t.requires_grad
    # normalised: divided by the teacher's mean square over the same rows
    term_n, _ = _feature(target)
    with torch.no_grad():
        term_n.proj.weight.copy_(w)
    torch.testing.assert_close(
        term_n(_out(s), _out(t), batch),
        ((s[ids] @ w.T - t[ids]) ** 2).mean() / (t[ids] ** 2).mean(),
    )
    # ... so scaling the teacher and the projection together changes nothing
    with torch.no_grad():
        term_n.proj.weight.mul_(10)
    torch.testing.assert_close(
        term_n(_out(s), _out(10 * t), batch),
        ((s[ids] @ w.T - t[ids]) ** 2).mean() / (t[ids] ** 2).mean(),
    )


def test_feature_counts_only_the_batchs_aligned_entities(target: MultiKG) -> None:
    term, _ = _feature(target)
    s, t = torch.randn(target.num_entities, 3), torch.randn(target.num_entities, 5)
    batch = _batch(target)
    in_batch = _batch_ids(batch)
    loss = term(_out(s), _out(t), batch)
    unaligned = int(in_batch[~target.anchors[in_batch]][0])
    aligned = int(in_batch[target.anchors[in_batch]][0])
    outside = next(
        i for i in torch.nonzero(target.anchors).ravel().tolist() if i not in set(in_batch.tolist())
    )
    for i in (unaligned, outside):  # an unaligned entity of the batch, an aligned one outside it
        s2, t2 = s.clone(), t.clone()
        s2[i], t2[i] = 100.0, -100.0
        torch.testing.assert_close(term(_out(s2), _out(t2), batch), loss)
    s2 = s.clone()
    s2[aligned] += 1.0
    assert _f(term(_out(s2), _out(t), batch)) != pytest.approx(_f(loss))
    # ... unless the teacher does not know it
    known = torch.ones(target.num_entities, dtype=torch.bool)
    known[aligned] = False
    assert _f(term(_out(s2), _out(t, known), batch)) == pytest.approx(
        _f(term(_out(s), _out(t, known), batch))
    )
    # entities: all counts every entity of the batch
    every, _ = _feature(target, entities="all")
    s2 = s.clone()
    s2[unaligned] += 1.0
    assert _f(every(_out(s2), _out(t), batch)) != pytest.approx(_f(every(_out(s), _out(t), batch)))


def test_feature_batch_without_aligned_entity_is_zero(target: MultiKG) -> None:
    term, _ = _feature(target)
    free = torch.nonzero(~target.anchors).ravel()[:4]
    q = torch.stack([free, torch.zeros(4, dtype=torch.long), free.flip(0)], 1)
    s = torch.randn(target.num_entities, 3, requires_grad=True)
    loss = term(_out(s), _out(torch.randn(target.num_entities, 5)), Batch(q))
    assert _f(loss) == 0.0 and loss.dtype == torch.float32


def test_feature_bind_and_options(shared: MultiKG, tiny_kg: KG) -> None:
    with pytest.raises(ConfigError, match="entities: all"):
        FeatureKD().bind(tiny_kg)  # no anchors on a plain graph
    term = FeatureKD(entities="all")
    term.bind(tiny_kg)
    assert bool(term.anchors.all()) and len(term.anchors) == tiny_kg.num_entities
    FeatureKD().bind(shared)  # the union has anchors too
    with pytest.raises(ConfigError, match="'aligned' or 'all'"):
        FeatureKD(entities="some")  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------------------
# network and its neighbour table
# --------------------------------------------------------------------------------------------------------------

#  0 - 1, 0 - 2, 0 - 3, 0 - 5, 1 - 2 (twice, once each way), 4 - 4 (self-loop only), 6 isolated
HAND = torch.tensor([[0, 0, 1], [0, 0, 2], [0, 1, 3], [1, 0, 2], [2, 1, 1], [4, 0, 4], [5, 0, 0]])
NEIGHBOURS = {0: {1, 2, 3, 5}, 1: {0, 2}, 2: {0, 1}, 3: {0}, 4: set(), 5: {0}, 6: set()}


@pytest.mark.parametrize("k", [2, 3, 4, 6])
def test_neighbour_table_hand_case(k: int) -> None:
    table = neighbour_table(HAND, 7, k)
    assert table.shape == (7, k) and table.dtype == torch.long
    for e, nbs in NEIGHBOURS.items():
        row = table[e].tolist()
        real = [x for x in row if x >= 0]
        assert row == real + [-1] * (k - len(real))  # padding at the end
        assert len(real) == len(set(real)) == min(k, len(nbs))  # distinct, at most k
        assert set(real) <= nbs and e not in real  # real neighbours, never itself
        if len(nbs) <= k:
            assert set(real) == nbs
    torch.testing.assert_close(neighbour_table(HAND, 7, k), table)  # deterministic
    torch.testing.assert_close(neighbour_table(HAND.clone(), 7, k, seed=0), table)


def test_neighbour_table_seed_picks_the_sample() -> None:
    picks = {tuple(sorted(neighbour_table(HAND, 7, 2, seed=s)[0].tolist())) for s in range(20)}
    assert len(picks) > 1 and all(set(p) <= NEIGHBOURS[0] for p in picks)
    # entities with at most k neighbours get all of them whatever the seed
    for s in range(5):
        assert set(neighbour_table(HAND, 7, 2, seed=s)[1].tolist()) == {0, 2}


def test_neighbour_table_on_the_fixture(target: MultiKG) -> None:
    train = target.splits["train"]
    table = neighbour_table(train, target.num_entities, 16)
    nbs: dict[int, set[int]] = {}
    for h, _, t in train.tolist():
        if h != t:
            nbs.setdefault(h, set()).add(t)
            nbs.setdefault(t, set()).add(h)
    for e in range(target.num_entities):
        real = [x for x in table[e].tolist() if x >= 0]
        assert len(real) == min(16, len(nbs.get(e, ())))
        assert set(real) <= nbs.get(e, set())


def _hand_kg(facts: torch.Tensor, num_entities: int) -> KG:
    """A static graph whose train split is ``facts``."""
    return KG(
        name="hand",
        entity_labels=tuple(f"e{i}" for i in range(num_entities)),
        relation_labels=("r0", "r1"),
        time=TimeSpec(kind="none"),
        splits={"train": facts},
        facts={"train": facts},
    )


def _network(kg: KG, d_s: int, d_t: int, w: torch.Tensor | None = None, **kwargs) -> NetworkKD:
    """A bound ``network`` term whose projection ``(d_t, d_s)`` is ``w`` (random when not given)."""
    term = NetworkKD(**kwargs)
    term.bind(kg)
    term.setup(_out(torch.zeros(1, d_s)), _out(torch.zeros(1, d_t)))
    if w is not None:
        with torch.no_grad():
            term.proj.weight.copy_(w)
    return term


def _logits_t(t: torch.Tensor, e: int, nb: torch.Tensor, tau: float) -> torch.Tensor:
    """The teacher's logits: cosine similarities over ``tau``."""
    x = F.normalize(t, dim=-1)
    return (x[nb] @ x[e]) / tau


def _logits_s(s: torch.Tensor, w: torch.Tensor, e: int, nb: torch.Tensor) -> torch.Tensor:
    """The student's logits: dot products of the projected rows (not normalised)."""
    x = s @ w.T
    return x[nb] @ x[e]


def _kl(zt: torch.Tensor, zs: torch.Tensor) -> torch.Tensor:
    lt, ls = torch.log_softmax(zt, -1), torch.log_softmax(zs, -1)
    return (lt.exp() * (lt - ls)).sum()


def test_network_bind_and_setup(target: MultiKG) -> None:
    term = _network(target, 4, 6, neighbours=8)
    torch.testing.assert_close(
        term.table, neighbour_table(target.splits["train"], target.num_entities, 8)
    )
    # the student's projection maps its width onto the teacher's, without bias
    assert isinstance(term.proj, torch.nn.Linear) and term.proj.weight.shape == (6, 4)
    assert term.proj.bias is None


def test_network_zero_when_the_student_reproduces_the_teachers_logits(target: MultiKG) -> None:
    tau = 0.1
    batch = _batch(target, n=200)
    t = torch.randn(target.num_entities, 6)
    unit = F.normalize(t, dim=-1)
    eye = torch.eye(6)
    # the same (unit) rows, the projection supplying the temperature
    term = _network(target, 6, 6, eye / tau**0.5, neighbours=8, temperature=tau)
    assert _f(term(_out(unit), _out(t), batch)) == pytest.approx(0.0, abs=1e-5)
    # the teacher side is scale-free: scaling the teacher changes nothing
    assert _f(term(_out(unit), _out(5.0 * t), batch)) == pytest.approx(0.0, abs=1e-5)
    # a scaled student with a projection that undoes the scale
    term = _network(target, 6, 6, eye / (3.0 * tau**0.5), neighbours=8, temperature=tau)
    assert _f(term(_out(3.0 * unit), _out(t), batch)) == pytest.approx(0.0, abs=1e-5)
    # a wider student: an isometric copy of the unit rows, projected back
    q, _ = torch.linalg.qr(torch.randn(10, 6))  # (10, 6), orthonormal columns
    term = _network(target, 10, 6, q.T / tau**0.5, neighbours=8, temperature=tau)
    assert _f(term(_out(unit @ q.T), _out(t), batch)) == pytest.approx(0.0, abs=1e-5)
    # the student side is not normalised: the same rows without the temperature's scale differ
    term = _network(target, 6, 6, eye, neighbours=8, temperature=tau)
    assert _f(term(_out(unit), _out(t), batch)) > 0.01
    # an unrelated, narrower student
    term = _network(target, 4, 6, neighbours=8, temperature=tau)
    assert _f(term(_out(torch.randn(target.num_entities, 4)), _out(t), batch)) > 0.01


def test_network_gradient_reaches_the_student_only(target: MultiKG) -> None:
    term = _network(target, 4, 6, neighbours=8)
    s = torch.randn(target.num_entities, 4, requires_grad=True)
    t = torch.randn(
        target.num_entities, 6, requires_grad=True
    )  # even a teacher that could take one
    batch = _batch(target, n=200)
    loss = term(_out(s), _out(t), batch)
    loss.backward()
    assert torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0
    assert term.proj.weight.grad is not None and torch.isfinite(term.proj.weight.grad).all()
    assert term.proj.weight.grad.abs().sum() > 0
    assert t.grad is None  # the teacher's side is computed without gradients
    # rows that are neither a batch head nor one of its sampled neighbours get none
    heads = torch.unique(batch.queries[:, 0])
    touched = set(heads.tolist()) | {x for x in term.table[heads].ravel().tolist() if x >= 0}
    untouched = [i for i in range(target.num_entities) if i not in touched]
    assert untouched and s.grad[untouched].abs().sum() == 0


def test_network_hand_value_and_masks() -> None:
    tau = 0.5
    torch.manual_seed(1)
    w = torch.randn(5, 3)
    term = _network(_hand_kg(HAND, 7), 3, 5, w, neighbours=4, temperature=tau)
    s, t = torch.randn(7, 3, requires_grad=True), torch.randn(7, 5)
    q = torch.tensor([[0, 0, 1], [3, 0, 0], [4, 0, 4], [6, 0, 0]])  # heads 0, 3 (1 nb), 4, 6 (none)
    loss = term(_out(s), _out(t), Batch(q))
    nb = term.table[0]
    assert sorted(nb.tolist()) == [1, 2, 3, 5]
    # only entity 0 has at least two neighbours
    manual = _kl(_logits_t(t, 0, nb, tau), _logits_s(s, w, 0, nb))
    torch.testing.assert_close(loss, manual)
    loss.backward()
    assert torch.isfinite(s.grad).all()
    assert s.grad[[4, 6]].abs().sum() == 0  # no neighbours, not a neighbour of 0
    # heads with fewer than two neighbours only: nothing to compare
    few = term(_out(s), _out(t), Batch(torch.tensor([[3, 0, 0], [4, 0, 4], [6, 0, 5]])))
    assert _f(few) == 0.0
    # neighbours the teacher does not know are left out of both distributions
    known = torch.ones(7, dtype=torch.bool)
    known[[3, 5]] = False
    masked = term(_out(s), _out(t, known), Batch(q))
    nb2 = torch.tensor([x for x in nb.tolist() if x not in (3, 5)])
    torch.testing.assert_close(masked, _kl(_logits_t(t, 0, nb2, tau), _logits_s(s, w, 0, nb2)))
    # an unknown head is skipped altogether
    known = torch.ones(7, dtype=torch.bool)
    known[0] = False
    assert _f(term(_out(s), _out(t, known), Batch(q))) == 0.0


def test_network_options() -> None:
    with pytest.raises(ConfigError, match="neighbours"):
        NetworkKD(neighbours=1)
    with pytest.raises(ConfigError, match="temperature"):
        NetworkKD(temperature=0)
    term = _network(_hand_kg(HAND, 7), 3, 3, neighbours=2, max_entities=1)
    s, t = torch.randn(7, 3), torch.randn(7, 3)
    q = torch.tensor([[0, 0, 1], [1, 0, 2]])
    only0 = term(_out(s), _out(t), Batch(q))
    torch.testing.assert_close(only0, term(_out(s), _out(t), Batch(q[:1])))


# --------------------------------------------------------------------------------------------------------------
# objectives: 1-N only
# --------------------------------------------------------------------------------------------------------------

SPECS = [
    {"loss": "alignment"},
    {"loss": "feature", "teacher": "joint"},
    {"loss": "network", "teacher": "joint", "neighbours": 4},
]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s["loss"])
def test_entity_table_terms_refuse_sampled_negatives(spec: dict) -> None:
    specs = [{"loss": "supervised_ce"}, spec]
    with pytest.raises(ConfigError, match=r"set train\.negatives to 0") as exc:
        Objective.build(specs, teachers={"joint": None}, candidates=True)
    assert spec["loss"] in str(exc.value) and "objective.1" in str(exc.value)
    built = Objective.build(specs, teachers={"joint": None}, candidates=False)
    label = f"{spec['loss']}[joint]" if "teacher" in spec else spec["loss"]
    assert built.names == ["supervised_ce", label]


def test_teacher_terms_need_a_teacher() -> None:
    for loss in ("feature", "network"):
        with pytest.raises(ConfigError, match="teacher"):
            Objective.build([{"loss": loss}], teachers={"joint": None})


def test_config_check_refuses_negatives_before_training() -> None:
    cfg, _ = api.load_config(
        CONFIGS / "all-complex_from_joint-dbp15k_zh_en-zh.yaml", ["train.negatives=16"]
    )
    with pytest.raises(ConfigError, match=r"train\.negatives"):
        api.check(cfg, teacher_fields={"joint": None})


# --------------------------------------------------------------------------------------------------------------
# the checkpoint teacher of a union answers a target through the aliases
# --------------------------------------------------------------------------------------------------------------


def _save(path: Path, kg: KG, id_maps: dict | None = None) -> Path:
    model = build_model({"name": "complex", "dim": 4}, Vocab(kg.num_entities, kg.num_relations))
    save_checkpoint(
        path,
        model=model,
        meta={
            "model": {"name": "complex", "kwargs": {"dim": 4}},
            "id_maps": id_maps if id_maps is not None else kg.id_maps(),
            "time": kg.time.to_dict(),
            "config": {},
        },
    )
    return path


@pytest.mark.parametrize("view", ["zh", "en"])
def test_union_teacher_covers_either_target(
    tmp_path: Path, mini: LinkedKGs, shared: MultiKG, view: str
) -> None:
    path = _save(tmp_path / "union.safetensors", shared)
    assert load_checkpoint(path).meta["id_maps"]["entity_aliases"] == dict(shared.aliases)
    kg = build_target(mini, view, hops=1)
    teacher = KGETeacher(path=str(path), kg=kg)
    assert teacher.coverage == {"entities": 1.0, "relations": 1.0, "times": 1.0}
    weight = load_model(load_checkpoint(path)).entities.weight
    ids = [shared.aliases.get(lab, shared.entity_ids.get(lab, -1)) for lab in kg.entity_labels]
    assert min(ids) >= 0
    batch = _batch(kg)
    out = teacher(batch.queries, None, frozenset({"t", "scores"}))
    torch.testing.assert_close(out.t, weight[ids])
    assert out.known is None  # full coverage: every row of t is real, no mask to carry
    assert out.scores.shape == (len(batch.queries), kg.num_entities) and out.mask is None
    # an aligned en entity is answered with its zh partner's row (one embedding per aligned group)
    zh, en = mini.graphs["zh"], mini.graphs["en"]
    a, b = mini.links["zh", "en"][0].tolist()
    label = (zh if view == "zh" else en).entity_labels[a if view == "zh" else b]
    torch.testing.assert_close(
        out.t[kg.entity_ids[label]], weight[shared.entity_ids[zh.entity_labels[a]]]
    )
    # the teacher's table feeds the feature term without taking gradients
    term = FeatureKD()
    term.bind(kg)
    s = torch.randn(kg.num_entities, 3, requires_grad=True)
    term.setup(_out(s), out)
    term(_out(s), out, batch).backward()
    assert s.grad.abs().sum() > 0
    assert all(p.grad is None for p in teacher.parameters())


def test_teacher_without_aliases_misses_the_aligned_en_entities(
    tmp_path: Path, mini: LinkedKGs, shared: MultiKG
) -> None:
    maps = shared.id_maps()
    maps.pop("entity_aliases")
    path = _save(tmp_path / "noalias.safetensors", shared, id_maps=maps)
    en = build_target(mini, "en")
    with pytest.raises(ConfigError, match="knows only"):
        KGETeacher(path=str(path), kg=en)
    teacher = KGETeacher(path=str(path), kg=en, min_coverage=0.0)
    aligned = len(mini.aligned("en"))
    assert teacher.coverage["entities"] == pytest.approx(1 - aligned / en.num_entities)
