"""Short real runs on the DBP15K zh_en subset: one joint teacher on the union, reused (not retrained) by students
of both graphs; a union with separate entities and the alignment term; config errors before any step."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import pytest
import torch

from kgdistill import api
from kgdistill.checkpoint import load_checkpoint, load_model
from kgdistill.errors import ConfigError
from kgdistill.multi import MultiKG

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "dbp15k-mini" / "zh_en"
CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "multisource"
JOINT = CONFIGS / "joint-complex-dbp15k_zh_en.yaml"
STUDENT = CONFIGS / "all-complex_from_joint-dbp15k_zh_en-zh.yaml"
TERMS = ("supervised_ce", "feature[joint]", "network[joint]", "kd_kl[joint]")


def _teacher_cfg(*more: str) -> api.RunConfig:
    cfg, _ = api.load_config(
        JOINT,
        [
            f"data.name={FIXTURE}",
            "model.dim=16",
            "stages.0.epochs=3",
            "train.progress=false",
            *more,
        ],
    )
    return cfg


def _student_cfg(view: str, teacher: Path, *more: str) -> api.RunConfig:
    cfg, _ = api.load_config(
        STUDENT,
        [
            f"data.name={FIXTURE}",
            f"data.multi.view={view}",
            f"teachers.joint.path={teacher}",
            "stages.0.epochs=1",
            "train.progress=false",
            *more,
        ],
    )
    return cfg


def _digests(folder: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.iterdir())
        if p.is_file()
    }


def _epochs(run: Path) -> list[dict]:
    lines = (run / "log.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["event"] == "epoch"]


@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ComplEx-16 joint teacher on the tied union of the subset (3 epochs)."""
    out = tmp_path_factory.mktemp("joint") / "teacher"
    api.train(_teacher_cfg(), out=out)
    return out


@pytest.fixture(scope="module")
def students(teacher: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Students of zh and en distilled from the same teacher folder, and the teacher's files around them."""
    before = _digests(teacher)
    root = tmp_path_factory.mktemp("students")
    runs = {
        view: api.distill(_student_cfg(view, teacher), out=root / view) for view in ("zh", "en")
    }
    return {"before": before, "after": _digests(teacher), "runs": runs}


@pytest.mark.slow
def test_joint_teacher_on_the_union(teacher: Path) -> None:
    metrics = json.loads((teacher / "metrics.json").read_text())
    assert metrics["dataset"] == "dbp15k_zh_en"
    report = metrics["data_report"]
    assert report["view"] == "union" and report["tie"] == "shared"
    assert report["entities"] == 900 + 900 - 700 and report["merged_entities"] == 700
    assert math.isfinite(metrics["sides"]["both"]["mrr"]) and metrics["sides"]["both"]["mrr"] > 0
    meta = load_checkpoint(teacher).meta
    assert len(meta["id_maps"]["entity"]) == 1100
    # the merged en labels travel with the checkpoint, so students of en find their entities
    aliases = meta["id_maps"]["entity_aliases"]
    assert len(aliases) == 700 and all(k.startswith("en:") for k in aliases)
    assert meta["data"]["multi"]["view"] == "union"
    # the checkpoint's vocabulary matches the union read again: it can be evaluated from its folder
    again = api.evaluate_run(teacher, split="test", progress=False)
    assert again.mrr == pytest.approx(metrics["sides"]["both"]["mrr"], rel=1e-5)


@pytest.mark.slow
def test_students_reuse_the_teacher_without_retraining(teacher: Path, students: dict) -> None:
    assert students["before"] and students["after"] == students["before"]
    assert {"best.safetensors", "last.safetensors", "metrics.json"} <= set(students["before"])


@pytest.mark.slow
@pytest.mark.parametrize("view", ["zh", "en"])
def test_student_results(teacher: Path, students: dict, view: str) -> None:
    run = students["runs"][view]
    metrics = json.loads((run.run_dir / "metrics.json").read_text())
    assert metrics["dataset"] == f"dbp15k_zh_en:{view}"
    mrr = metrics["sides"]["both"]["mrr"]
    assert math.isfinite(mrr) and 0 < mrr <= 1
    assert run.metrics.mrr == pytest.approx(mrr)
    # the student's own test split, as the target view builds it
    report = metrics["data_report"]
    assert report["view"] == view and report["hops"] == 0
    assert metrics["protocol"]["facts"] == report["lines"]["test"] == report["split"]["test"]
    # the teacher answers every entity and relation of the target (aliases resolve the merged en labels)
    joint = metrics["teachers"]["joint"]
    assert joint["kind"] == "checkpoint"
    assert Path(joint["source"]) == teacher / "best.safetensors"
    assert joint["coverage"]["entities"] == 1.0
    assert joint["coverage"]["relations"] == 1.0
    # every term of the objective is logged, per epoch, finite
    epochs = _epochs(run.run_dir)
    assert len(epochs) == 1
    for rec in epochs:
        for term in TERMS:
            assert term in rec and math.isfinite(rec[term]), (term, rec)
        assert rec["feature[joint]"] > 0 and rec["network[joint]"] >= 0 and rec["kd_kl[joint]"] >= 0
    # the student is a small model of the target's vocabulary, not the teacher's
    model = load_model(load_checkpoint(run.run_dir))
    assert model.entities.weight.shape[0] == report["entities"]


@pytest.mark.slow
def test_separate_union_with_alignment(tmp_path: Path) -> None:
    cfg = _teacher_cfg(
        "data.multi.tie=separate",
        "stages.0.objective=[{loss: supervised_ce}, {loss: n3, weight: 0.01}, "
        "{loss: alignment, weight: 0.1}]",
    )
    result = api.train(cfg, out=tmp_path / "separate")
    epochs = _epochs(result.run_dir)
    assert len(epochs) == 3
    values = [rec["alignment"] for rec in epochs]
    assert all(math.isfinite(v) and v >= 0 for v in values)
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    assert metrics["data_report"]["tie"] == "separate"
    assert metrics["data_report"]["entities"] == 1800
    assert "entity_aliases" not in load_checkpoint(result.run_dir).meta["id_maps"]
    # the term does its job: aligned copies end far closer than unrelated entities of the two graphs
    kg = api.load_data(cfg)
    assert isinstance(kg, MultiKG) and kg.links is not None
    e = result.model.entities.weight.detach()
    a, b = kg.links[:, 0], kg.links[:, 1]
    other = b[torch.randperm(len(b), generator=torch.Generator().manual_seed(0))]
    aligned = float(((e[a] - e[b]) ** 2).sum(-1).mean())
    shuffled = float(((e[a] - e[other]) ** 2).sum(-1).mean())
    assert aligned < 0.5 * shuffled


# --------------------------------------------------------------------------------------------------------------
# configuration: checked before the first step
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("data.multi.hops=-1", "data.multi.hops"),
        ("data.multi.tie=glued", "data.multi.tie"),
        ("data.multi.valid=0.5", "data.multi.valid"),
        ("data.multi.spilt_seed=1", "data.multi.spilt_seed"),
    ],
)
def test_multi_config_errors_name_the_key(override: str, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        _teacher_cfg(override)


def test_load_data_views() -> None:
    union = api.load_data(_teacher_cfg())
    assert isinstance(union, MultiKG) and union.num_entities == 1100
    one = api.load_data(_teacher_cfg("data.multi.view=en", "data.multi.hops=1"))
    assert one.name == "dbp15k_zh_en:en" and one.num_entities > 900
    seeded = api.load_data(_teacher_cfg("data.multi.view=en", "data.multi.split_seed=1"))
    assert not torch.equal(
        seeded.splits["test"], api.load_data(_teacher_cfg("data.multi.view=en")).splits["test"]
    )
    with pytest.raises(ConfigError, match="'fr' is not a graph"):
        api.load_data(_teacher_cfg("data.multi.view=fr"))


def test_alignment_on_a_tied_union_fails_before_training(tmp_path: Path) -> None:
    cfg = _teacher_cfg("stages.0.objective=[{loss: supervised_ce}, {loss: alignment}]")
    with pytest.raises(ConfigError, match="tie: separate"):
        api.train(cfg, out=tmp_path / "run")
    log = tmp_path / "run" / "log.jsonl"
    assert not log.exists() or not _epochs(tmp_path / "run")  # no step was taken


def test_student_with_sampled_negatives_fails_before_training(tmp_path: Path) -> None:
    cfg = _student_cfg("zh", tmp_path / "no-teacher-needed", "train.negatives=16")
    with pytest.raises(ConfigError, match=r"train\.negatives"):
        api.distill(cfg, out=tmp_path / "run")


@pytest.mark.slow
def test_a_cache_of_the_joint_teacher_for_a_target_view(teacher: Path, tmp_path: Path) -> None:
    """``kgdistill cache --for``: the union teacher's top-k in the target view's ids, refused by another view."""
    from kgdistill.data.batching import both_directions
    from kgdistill.distill.cache import CachedTeacher
    from kgdistill.distill.teachers import KGETeacher

    zh_cfg = _student_cfg("zh", teacher)
    path = api.cache(teacher, tmp_path / "zh.safetensors", k=8, data=zh_cfg, progress=False)
    zh = api.load_data(zh_cfg)
    cached = CachedTeacher(path=str(path), kg=zh)
    q = both_directions(zh.splits["train"][:64], zh.num_relations)
    out, live = cached(q), KGETeacher(path=str(teacher), kg=zh)(q)
    top = torch.topk(live.scores, 8, dim=1)
    assert torch.equal(out.ids.sort(1).values, top.indices.sort(1).values)
    torch.testing.assert_close(out.scores.sort(1).values, top.values.sort(1).values)
    assert out.mask.all()
    en = api.load_data(_student_cfg("en", teacher))
    with pytest.raises(ConfigError, match=r"teacher cache .* was written for"):
        CachedTeacher(path=str(path), kg=en)


@pytest.mark.slow
def test_a_cache_for_a_graph_with_other_labels_is_refused(teacher: Path, tmp_path: Path) -> None:
    from dataclasses import replace

    from kgdistill.distill.cache import CachedTeacher

    zh_cfg = _student_cfg("zh", teacher)
    path = api.cache(teacher, tmp_path / "zh.safetensors", k=4, data=zh_cfg, progress=False)
    zh = api.load_data(zh_cfg)
    shuffled = replace(zh, entity_labels=tuple(reversed(zh.entity_labels)))
    with pytest.raises(ConfigError, match="other ids than those of the student's dataset"):
        CachedTeacher(path=str(path), kg=shuffled)
