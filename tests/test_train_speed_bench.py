"""The training-speed benchmark (benchmarks/train_speed.py): its kgdistill loop is ``fit``'s step, its PyKEEN
scorer answers like PyKEEN's own predictions, and its summaries (target, ratios, goal, kept rows) add up."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import torch

pytest.importorskip("pykeen")

from kgdistill.config import StageConfig, TermSpec, TrainConfig
from kgdistill.data.filters import FilterIndex
from kgdistill.data.kg import KG
from kgdistill.train import fit
from train_speed import (
    KgdistillTrainer,
    PykeenTrainer,
    Settings,
    main,
    markdown,
    summarize,
    write,
)

SETTINGS = Settings(
    batch_size=256, optimizer="adagrad", lr=0.1, seed=3, negatives=4, pykeen_model_defaults=False
)


@pytest.mark.parametrize("negatives", ["none", "uniform", "shared"])
@pytest.mark.parametrize("model", ["distmult", "complex"])
def test_kgdistill_epochs_equal_fit(
    tiny_kg: KG, tmp_path: Path, model: str, negatives: str
) -> None:
    """Two epochs of the benchmark's loop (1-N, or sampled negatives, per query or shared by the batch, with
    the softplus loss), cut into chunks anywhere, leave exactly the weights two epochs of ``fit`` leave."""
    sampled = negatives != "none"
    trainer = KgdistillTrainer(
        tiny_kg, model, 8, SETTINGS, sampled=negatives == "uniform", shared=negatives == "shared"
    )
    reference = copy.deepcopy(trainer.model)
    start = trainer.model.entities.weight.detach().clone()
    per_epoch = trainer.batches_per_epoch
    assert per_epoch == 12  # 1487 facts x 2 directions / 256
    for chunk in (5, 10, 9):  # cut inside both epochs and across their border
        assert trainer.train(lambda done, chunk=chunk: done >= chunk)[0] == chunk
    assert (trainer.epoch, trainer.position) == (2, 0)
    stage, k = StageConfig(epochs=2), 0
    if sampled:
        term = TermSpec(loss="negative_sampling", form="softplus")  # type: ignore[call-arg]
        stage, k = StageConfig(epochs=2, objective=[term]), SETTINGS.negatives
    fit(
        reference,
        tiny_kg,
        stages=[stage],
        train=TrainConfig(
            batch_size=256,
            optimizer="adagrad",
            lr=0.1,
            negatives=k,
            negative_sampling="shared" if negatives == "shared" else "uniform",
            progress=False,
        ),
        seed=SETTINGS.seed,
        run_dir=tmp_path,
        meta={},
        device=torch.device("cpu"),
        valid_filter=FilterIndex.build(tiny_kg),
        eval_kwargs={},
    )
    mine, theirs = trainer.model.state_dict(), reference.state_dict()
    assert mine.keys() == theirs.keys()
    assert all(torch.equal(mine[k], theirs[k]) for k in mine)
    assert not torch.allclose(mine["entities.weight"], start)  # it did train


@pytest.mark.parametrize("model", ["distmult", "complex"])
@pytest.mark.parametrize("lcwa", [True, False])
@pytest.mark.parametrize("scores", ["score_t", "matmul"])
def test_pykeen_scorer_answers_like_pykeen(
    tiny_kg: KG, model: str, lcwa: bool, scores: str
) -> None:
    """Tail queries score like ``predict_t``, head queries (tail queries on ``r + R``) like ``predict_h``, with
    PyKEEN's scoring or one matrix product of its embeddings; training pauses and goes on."""
    settings = dataclasses.replace(SETTINGS, pykeen_eval=scores)
    trainer = PykeenTrainer(tiny_kg, model, 8, settings, lcwa=lcwa)
    assert trainer.train(lambda done: done >= 1)[0] == 1  # builds the loader; paused inside epoch 1
    per_epoch = trainer.batches_per_epoch  # (LCWA: unique (h, r) pairs, known now)
    done, loss = trainer.train(lambda done: done >= per_epoch + 1)  # a new epoch, through its end
    assert done == per_epoch + 1 and trainer.epochs == 1 and loss > 0
    pk, scorer, n_rel = trainer.model, trainer.scorer(), tiny_kg.num_relations
    h, r, t = tiny_kg.splits["valid"].unbind(1)
    queries = torch.cat([torch.stack([h, r, t], 1), torch.stack([t, r + n_rel, h], 1)])
    with torch.no_grad():
        wrapped = scorer.score_all(queries[:0])
        assert wrapped.shape == (0, tiny_kg.num_entities)
        wrapped = scorer.score_all(queries)
        expected = torch.cat(
            [pk.predict_t(torch.stack([h, r], 1)), pk.predict_h(torch.stack([r, t], 1))]
        )
    assert torch.allclose(wrapped, expected, rtol=1e-5, atol=1e-6)
    if (
        lcwa
    ):  # the inverse relation really is another relation: ignoring the mapping would be caught
        with torch.no_grad():
            wrong = pk.score_t(torch.stack([t, 2 * r], 1))
        assert not torch.allclose(wrapped[len(h) :], wrong)


@pytest.mark.parametrize("model", ["distmult", "complex"])
@pytest.mark.parametrize("init", ["pykeen", "kgdistill"])
def test_pykeen_init_is_kgdistills_when_asked(tiny_kg: KG, model: str, init: str) -> None:
    """``pykeen_init="kgdistill"``: after PyKEEN's own weight reset (its first ``train()`` call) every real number
    of its entity and relation tables (ComplEx: real and imaginary parts) has kgdistill's ``N(0, 1e-3^2)``,
    like kgdistill's model; PyKEEN's own initialisers give far larger weights (ComplEx: ``N(0, 1)``)."""
    settings = dataclasses.replace(
        SETTINGS, pykeen_init=init, lr=0.0
    )  # lr 0: the step keeps the reset
    trainer = PykeenTrainer(tiny_kg, model, 16, settings, lcwa=False)
    trainer.train(lambda done: done >= 1)
    ours = KgdistillTrainer(tiny_kg, model, 16, settings).model.entities.weight
    for rep in (trainer.model.entity_representations[0], trainer.model.relation_representations[0]):
        w = torch.view_as_real(w) if (w := rep(indices=None).detach()).is_complex() else w
        std = float(w.std())
        if init == "kgdistill":
            assert std == pytest.approx(float(ours.std()), rel=0.25)
        else:
            assert std > 10 * float(ours.std())
    assert trainer.describe()["init"].startswith("kgdistill" if init == "kgdistill" else "PyKEEN")


def _entry(curves: dict[str, list[list[float]]], budget: float = 100.0) -> dict[str, Any]:
    methods = {
        m: {
            "curve": c,
            "untrained_mrr": c[0][2],
            "best_mrr": max(p[2] for p in c[1:]),
            "train_seconds": budget,
            "seconds_per_epoch": 1.0,
            "chunks": [[0.0, 1, 1.0, 0.5, 1.0, 1.0, 1.0]],
        }
        for m, c in curves.items()
    }
    return {
        "config": "toy/distmult/8",
        "dataset": "toy",
        "model": "distmult",
        "dim": 8,
        "batch_size": 10,
        "optimizer": "adagrad",
        "lr": 0.1,
        "max_seconds": budget,
        "valid_facts": 5,
        "methods": methods,
    }


def test_target_seconds_ratios_and_goal() -> None:
    """One target per PyKEEN method, 0.95 x the lower of its best and kgdistill's best (the untrained point
    counts for nothing); seconds and epochs at the first validation reaching it; ratios to the fastest kgdistill
    method and to the same regime's; met, missed and open goals."""
    curves = {
        "kgdistill": [[0, 0, 0.1], [2.0, 1, 0.3], [4.0, 2, 0.5]],
        "kgdistill_sampled": [[0, 0, 0.1], [1.0, 1, 0.25], [3.0, 3, 0.45]],
        "pykeen_lcwa": [[0, 0, 0.0], [10.0, 3, 0.2], [20.0, 6, 0.4]],
        "pykeen_slcwa": [[0, 0, 0.0], [12.0, 1, 0.25], [60.0, 2, 0.45]],
    }
    e = summarize(_entry(curves), None)
    lcwa, slcwa = e["comparisons"]["lcwa"], e["comparisons"]["slcwa"]
    assert lcwa["target_mrr"] == pytest.approx(0.95 * 0.4)  # LCWA's best is the lower
    assert slcwa["target_mrr"] == pytest.approx(0.95 * 0.45)  # sLCWA's best (kgdistill's is 0.5)
    assert lcwa["seconds_to_target"] == {
        "kgdistill": 4.0,
        "kgdistill_sampled": 3.0,
        "pykeen_lcwa": 20.0,
    }
    assert lcwa["epochs_to_target"]["pykeen_lcwa"] == 6
    assert lcwa["fastest_kgdistill"] == "kgdistill_sampled"
    assert lcwa["ratio"] == pytest.approx(20.0 / 3.0)  # over the fastest kgdistill method
    assert lcwa["ratio_like_for_like"] == pytest.approx(5.0)  # over kgdistill 1-N
    assert slcwa["seconds_to_target"] == {
        "kgdistill": 4.0,
        "kgdistill_sampled": 3.0,
        "pykeen_slcwa": 60.0,
    }
    assert slcwa["ratio"] == pytest.approx(20.0) and slcwa["ratio_like_for_like"] == pytest.approx(
        20.0
    )
    assert e["goal_met"] is True
    md = markdown({"configs": [e], "sources": {}})
    assert md.count("| toy ") == 2
    assert any("| LCWA " in line and "6.67" in line and "5.00" in line for line in md.splitlines())

    e = summarize(_entry(curves), 0.42)  # LCWA never reaches 0.42 (budget 100 s)
    lcwa = e["comparisons"]["lcwa"]
    assert lcwa["ratio"] is None and lcwa["ratio_at_least"] == pytest.approx(100.0 / 3.0)
    assert e["goal_met"] is True
    assert ">33.33" in markdown({"configs": [e], "sources": {}})
    e = summarize(
        _entry(curves, budget=5.0), 0.42
    )  # LCWA's budget only 1.67x kgdistill's time: open
    assert e["comparisons"]["lcwa"]["ratio_at_least"] == pytest.approx(5.0 / 3.0)
    assert e["comparisons"]["lcwa"]["goal_met"] is None and e["goal_met"] is None
    e = summarize(_entry(curves), 0.55)  # no kgdistill method reaches it: missed
    assert e["comparisons"]["slcwa"]["fastest_kgdistill"] is None and e["goal_met"] is False
    flat = {**curves, "pykeen_lcwa": [[0, 0, 0.01], [30.0, 1, 0.011]]}  # LCWA did not learn
    e = summarize(_entry(flat), None)
    assert e["comparisons"]["lcwa"]["target_trivial"] and e["goal_met"] is None
    assert "trivial target" in markdown({"configs": [e], "sources": {}})
    fast_slcwa = {**curves, "pykeen_slcwa": [[0, 0, 0.0], [6.0, 1, 0.45]]}
    e = summarize(_entry(fast_slcwa), None)  # sLCWA 6 s vs kgdistill sampled 3 s: 2x, missed
    assert e["comparisons"]["slcwa"]["ratio"] == pytest.approx(2.0)
    assert e["comparisons"]["lcwa"]["goal_met"] is True and e["goal_met"] is False
    assert "| missed " in markdown({"configs": [e], "sources": {}})


def test_rows_of_other_configs_are_kept(tmp_path: Path) -> None:
    curves = {
        "kgdistill": [[0, 0, 0.0], [1.0, 1, 0.5]],
        "pykeen_lcwa": [[0, 0, 0.0], [4.0, 1, 0.5]],
    }
    first = summarize(_entry(curves), None)
    second = {**copy.deepcopy(first), "config": "toy/distmult/16", "dim": 16}
    src = {"command": "python benchmarks/train_speed.py", "date": "today"}
    write(tmp_path, ["--dims", "8"], [first], {first["config"]: src})
    write(tmp_path, ["--dims", "16"], [second], {second["config"]: src})
    doc = json.loads((tmp_path / "train_speed.json").read_text())
    assert [c["config"] for c in doc["configs"]] == ["toy/distmult/8", "toy/distmult/16"]
    assert set(doc["sources"]) == {"toy/distmult/8", "toy/distmult/16"}
    md = (tmp_path / "train_speed.md").read_text()
    assert md.count("| toy ") == 2 and "--dims 16" in doc["command"]


@pytest.mark.slow  # trains the three methods for a moment each
def test_benchmark_end_to_end(tmp_path: Path) -> None:
    fixture = Path(__file__).parent / "fixtures" / "fb15k237-mini"
    args = [
        *("--datasets", str(fixture), "--models", "distmult", "--dims", "8"),
        *("--max-seconds", "0.5", "--batch-size", "256", "--threads", "1", "--out", str(tmp_path)),
    ]
    assert main(args) == 0
    doc = json.loads((tmp_path / "train_speed.json").read_text())
    (entry,) = doc["configs"]
    assert entry["config"] == "fb15k237-mini/distmult/8"
    for m in ("kgdistill", "kgdistill_sampled", "kgdistill_shared", "pykeen_lcwa", "pykeen_slcwa"):
        curve = entry["methods"][m]["curve"]
        assert curve[0][:2] == [0.0, 0.0] and curve[-1][0] >= 0.5 and curve[-1][1] > 0
        assert entry["methods"][m]["chunks"] and entry["methods"][m]["batches"] >= 1
    assert (tmp_path / "train_speed.md").read_text().count("fb15k237-mini") >= 2
