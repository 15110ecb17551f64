"""The objective: weighted named terms, and the configuration errors raised before any training step."""

from __future__ import annotations

from typing import ClassVar

import pytest
import torch

from kgdistill.data import KG
from kgdistill.data.batching import Batch, both_directions
from kgdistill.errors import ConfigError
from kgdistill.losses import LOSSES, LossTerm
from kgdistill.models import KGEModel, ModelOutput, Vocab, build_model
from kgdistill.objective import Objective
from kgdistill.registry import Registry


class MatchTeacherH(LossTerm):
    """Squared distance to the teacher's head representations (a test-only teacher term)."""

    requires_teacher: ClassVar[bool] = True
    reads: ClassVar[frozenset[str]] = frozenset({"h"})

    def __init__(self, *, scale: float = 1.0) -> None:
        super().__init__()
        self.scale = scale

    def forward(
        self, student: ModelOutput, teacher: ModelOutput | None, batch: Batch
    ) -> torch.Tensor:
        assert teacher is not None and teacher.h is not None and student.h is not None
        return self.scale * ((student.h - teacher.h) ** 2).sum(1).mean()


@pytest.fixture
def with_teacher_term(monkeypatch: pytest.MonkeyPatch) -> Registry:
    """A fresh loss registry (the built-in terms plus ``match_h``) seen by :mod:`kgdistill.objective` only."""
    reg: Registry = Registry("loss")
    for name, cls in LOSSES.items():
        reg.register(name)(cls)
    reg.register("match_h")(MatchTeacherH)
    monkeypatch.setattr("kgdistill.objective.LOSSES", reg)
    return reg


def test_the_global_registry_is_untouched(with_teacher_term: Registry) -> None:
    assert "match_h" in with_teacher_term
    assert "match_h" not in LOSSES


def _setup(kg: KG, seed: int = 0) -> KGEModel:
    torch.manual_seed(seed)
    return build_model({"name": "complex", "dim": 8}, Vocab(kg.num_entities, kg.num_relations))


@pytest.fixture
def step(tiny_kg: KG) -> tuple[ModelOutput, Batch]:
    model = _setup(tiny_kg)
    batch = Batch(both_directions(tiny_kg.splits["train"][:16], tiny_kg.num_relations))
    return model(batch.queries), batch


def test_total_is_the_weighted_sum_of_the_parts(step: tuple[ModelOutput, Batch]) -> None:
    out, batch = step
    obj = Objective.build(
        [
            {"loss": "supervised_ce", "label_smoothing": 0.1},
            {"loss": "n3", "weight": 0.01},
            {"loss": "l2", "weight": 2.5},
        ]
    )
    total, parts = obj(out, {}, batch)
    assert list(parts) == ["supervised_ce", "n3", "l2"]
    assert obj.weights == [1.0, 0.01, 2.5]
    expected = parts["supervised_ce"] + 0.01 * parts["n3"] + 2.5 * parts["l2"]
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)
    # the parts are the unweighted term values, detached; the total carries the gradient
    assert parts["n3"].item() == pytest.approx(LOSSES.get("n3")()(out, None, batch).item())
    assert parts["supervised_ce"].item() == pytest.approx(
        LOSSES.get("supervised_ce")(label_smoothing=0.1)(out, None, batch).item()
    )
    assert all(not p.requires_grad for p in parts.values())
    assert total.requires_grad and total.ndim == 0


def test_zero_weight_contributes_nothing(step: tuple[ModelOutput, Batch]) -> None:
    out, batch = step
    a, _ = Objective.build([{"loss": "supervised_ce"}])(out, {}, batch)
    b, parts = Objective.build([{"loss": "supervised_ce"}, {"loss": "l2", "weight": 0}])(
        out, {}, batch
    )
    assert parts["l2"].item() > 0
    assert a.item() == pytest.approx(b.item())


def test_duplicate_terms_are_suffixed(step: tuple[ModelOutput, Batch]) -> None:
    out, batch = step
    obj = Objective.build(
        [
            {"loss": "n3", "weight": 1e-3},
            {"loss": "supervised_ce"},
            {"loss": "n3", "weight": 1e-2},
            {"loss": "N3", "weight": 1e-1},
        ]
    )
    assert obj.names == ["n3", "supervised_ce", "n3#2", "N3"]
    total, parts = obj(out, {}, batch)
    assert list(parts) == obj.names
    assert parts["n3"] == parts["n3#2"]
    expected = parts["supervised_ce"] + (1e-3 + 1e-2) * parts["n3"] + 1e-1 * parts["N3"]
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)


def test_str_lists_weights_and_names() -> None:
    obj = Objective.build([{"loss": "supervised_ce"}, {"loss": "n3", "weight": 0.01}])
    assert str(obj) == "1·supervised_ce + 0.01·n3"
    neg = Objective.build(
        [{"loss": "margin_ranking", "weight": 2}, {"loss": "l2", "weight": 1e-4}], candidates=True
    )
    assert str(neg) == "2·margin_ranking + 0.0001·l2"


def test_terms_are_submodules() -> None:
    obj = Objective.build([{"loss": "supervised_ce"}, {"loss": "lambda3", "complex_pairs": False}])
    assert len(obj.terms) == 2
    assert isinstance(obj.terms[1], LOSSES.get("lambda3"))
    assert obj.terms[1].complex_pairs is False


# -- teacher terms --------------------------------------------------------------------------------------------


def test_teacher_term_is_named_after_its_teacher(with_teacher_term: Registry, tiny_kg: KG) -> None:
    obj = Objective.build(
        [
            {"loss": "supervised_ce"},
            {"loss": "match_h", "teacher": "big", "weight": 0.5},
            {"loss": "match_h", "teacher": "other", "scale": 2.0},
            {"loss": "match_h", "teacher": "big", "weight": 0.25},
        ],
        teachers={"big": frozenset({"scores", "h"}), "other": frozenset({"h", "r", "t"})},
    )
    assert obj.names == ["supervised_ce", "match_h[big]", "match_h[other]", "match_h[big]#2"]
    assert obj.teachers == [None, "big", "other", "big"]
    assert str(obj) == "1·supervised_ce + 0.5·match_h[big] + 1·match_h[other] + 0.25·match_h[big]#2"

    student = _setup(tiny_kg, 0)
    batch = Batch(both_directions(tiny_kg.splits["train"][:8], tiny_kg.num_relations))
    with torch.no_grad():
        big = _setup(tiny_kg, 1)(batch.queries)
        other = _setup(tiny_kg, 2)(batch.queries)
    out = student(batch.queries)
    total, parts = obj(out, {"big": big, "other": other}, batch)
    d_big = ((out.h - big.h) ** 2).sum(1).mean()  # type: ignore[operator]
    d_other = ((out.h - other.h) ** 2).sum(1).mean()  # type: ignore[operator]
    assert parts["match_h[big]"].item() == pytest.approx(d_big.item(), rel=1e-6)
    assert parts["match_h[other]"].item() == pytest.approx(2 * d_other.item(), rel=1e-6)
    expected = parts["supervised_ce"] + 0.75 * d_big + 2 * d_other
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)
    total.backward()
    assert student.entities.weight.grad is not None


def test_teacher_term_without_teacher(with_teacher_term: Registry) -> None:
    with pytest.raises(
        ConfigError, match=r"'objective\.1\.teacher' is missing.*known teachers: big"
    ):
        Objective.build(
            [{"loss": "supervised_ce"}, {"loss": "match_h"}], teachers={"big": frozenset({"h"})}
        )
    with pytest.raises(ConfigError, match=r"'objective\.0\.teacher' is missing.*none"):
        Objective.build([{"loss": "match_h"}])


def test_teacher_term_with_unknown_teacher(with_teacher_term: Registry) -> None:
    with pytest.raises(ConfigError, match=r"'objective\.0\.teacher': no teacher named 'smal'"):
        Objective.build(
            [{"loss": "match_h", "teacher": "smal"}], teachers={"small": frozenset({"h"})}
        )


def test_teacher_lacking_a_field_the_term_reads(with_teacher_term: Registry) -> None:
    with pytest.raises(ConfigError, match=r"reads \['h'\] of teacher 'cache'"):
        Objective.build(
            [{"loss": "match_h", "teacher": "cache"}], teachers={"cache": frozenset({"scores"})}
        )


def test_teacher_given_to_a_term_without_one(with_teacher_term: Registry) -> None:
    with pytest.raises(ConfigError, match=r"'objective\.0\.teacher'.*does not use a teacher"):
        Objective.build(
            [{"loss": "supervised_ce", "teacher": "big"}], teachers={"big": frozenset({"h"})}
        )


def test_teacher_term_options_are_checked(with_teacher_term: Registry) -> None:
    with pytest.raises(ConfigError, match=r"'objective\.0\.scael'.*did you mean 'scale'"):
        Objective.build(
            [{"loss": "match_h", "teacher": "big", "scael": 2}], teachers={"big": frozenset({"h"})}
        )


# -- build-time errors ----------------------------------------------------------------------------------------------


def test_unknown_loss() -> None:
    with pytest.raises(
        ConfigError, match=r"unknown loss 'supervised'.*Did you mean 'supervised_ce'"
    ):
        Objective.build([{"loss": "supervised"}])


def test_unknown_key_names_the_key_path() -> None:
    with pytest.raises(ConfigError, match=r"'objective\.0\.temprature'"):
        Objective.build([{"loss": "supervised_ce", "temprature": 2.0}])
    with pytest.raises(
        ConfigError, match=r"'objective\.1\.label_smothing'.*did you mean 'label_smoothing'"
    ):
        Objective.build([{"loss": "n3"}, {"loss": "supervised_ce", "label_smothing": 0.1}])
    with pytest.raises(ConfigError, match=r"'stage2\.objective\.0\.margn'"):
        Objective.build(
            [{"loss": "margin_ranking", "margn": 2}], candidates=True, where="stage2.objective"
        )
    # a term without options accepts no key at all
    with pytest.raises(ConfigError, match=r"'objective\.0\.complex_pairs'"):
        Objective.build([{"loss": "n3", "complex_pairs": True}])


def test_missing_loss_key_and_empty_objective() -> None:
    with pytest.raises(ConfigError, match=r"'objective\.1\.loss' is missing"):
        Objective.build([{"loss": "n3"}, {"weight": 1.0}])
    with pytest.raises(ConfigError, match="no loss terms"):
        Objective.build([])


@pytest.mark.parametrize("name", sorted(n for n, c in LOSSES.items() if c.needs_candidates))
def test_candidate_terms_are_rejected_in_one_to_n_training(name: str) -> None:
    with pytest.raises(
        ConfigError, match=rf"loss '{name}' \(objective\.1\) needs sampled negatives"
    ):
        Objective.build([{"loss": "n3"}, {"loss": name}])
    obj = Objective.build([{"loss": "n3"}, {"loss": name}], candidates=True)
    assert obj.names == ["n3", name]


def test_build_does_not_mutate_the_specs() -> None:
    specs = [{"loss": "supervised_ce", "weight": 2.0, "label_smoothing": 0.1}]
    Objective.build(specs)
    assert specs == [{"loss": "supervised_ce", "weight": 2.0, "label_smoothing": 0.1}]


def test_top_k_teacher_outputs_are_expanded_only_for_terms_that_need_it(
    step: tuple[ModelOutput, Batch],
) -> None:
    """kd_kl reads a (B, k) top-k output as it is; huber gets the same rows over all entities, masked."""
    import kgdistill.distill  # noqa: F401  (registers the distillation terms)

    out, batch = step
    n, e = out.scores.shape
    gen = torch.Generator().manual_seed(1)
    ids = torch.stack([torch.randperm(e, generator=gen)[:4] for _ in range(n)])
    sparse = ModelOutput(scores=torch.randn(n, 4, generator=gen), ids=ids)
    dense = sparse.dense(e)
    assert dense.scores.shape == (n, e) and dense.mask.sum(1).eq(4).all()
    assert torch.equal(dense.scores.gather(1, ids), sparse.scores)
    specs = [
        {"loss": "kd_kl", "teacher": "c"},
        {"loss": "huber", "teacher": "c", "compare": "scores"},
    ]
    obj = Objective.build(specs, teachers={"c": frozenset({"scores"})})
    _, from_sparse = obj(out, {"c": sparse}, batch)
    _, from_dense = obj(out, {"c": dense}, batch)
    for name in from_sparse:
        torch.testing.assert_close(from_sparse[name], from_dense[name])
    assert float(from_sparse["huber[c]"]) > 0
