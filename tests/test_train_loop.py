"""The training loop's pieces for large models: parameter groups, LR schedules with warm-up, gradient clipping,
gradient accumulation, in-batch negatives and spaced checkpoints, on a real graph."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from kgdistill import api
from kgdistill.config import ParamGroup, SchedulerConfig, parse_config
from kgdistill.data.batching import in_batch_candidates
from kgdistill.errors import ConfigError
from kgdistill.models import Vocab, build_model
from kgdistill.train import lr_factor, param_groups

FIXTURES = Path(__file__).parent / "fixtures"


def _cfg(**train: Any) -> dict[str, Any]:
    return {
        "seed": 1,
        "data": {"name": str(FIXTURES / "fb15k237-mini")},
        "model": {"name": "distmult", "dim": 16, "init_scale": 0.1},
        "stages": [{"epochs": 2}],
        "train": {
            "optimizer": "sgd",
            "lr": 0.5,
            "batch_size": 256,
            "eval_every": 2,
            "progress": False,
            **train,
        },
    }


def _train(tmp_path: Path, name: str, **train: Any) -> tuple[Path, dict[str, torch.Tensor]]:
    run = api.train(parse_config(_cfg(**train)), out=tmp_path / name).run_dir
    return run, load_file(str(run / "last.safetensors"))


@pytest.mark.parametrize(
    ("name", "warmup", "expected"),
    [
        ("constant", 0, [1, 1, 1, 1]),
        ("constant", 2, [0.5, 1, 1, 1]),
        ("linear", 0, [1, 0.75, 0.5, 0.25]),
        ("linear", 0.5, [0.5, 1, 1, 0.5]),
        (
            "cosine",
            0,
            [1, 0.5 + 0.5 * math.cos(math.pi / 4), 0.5, 0.5 + 0.5 * math.cos(3 * math.pi / 4)],
        ),
    ],
)
def test_lr_factor(name: str, warmup: float, expected: list[float]) -> None:
    schedule = SchedulerConfig(name=name, warmup=warmup)  # type: ignore[arg-type]
    got = [lr_factor(step, 4, schedule) for step in range(4)]
    assert got == pytest.approx(expected)


def test_param_groups_first_match_wins_and_unmatched_groups_are_errors() -> None:
    model = build_model({"name": "distmult", "dim": 4}, Vocab(5, 2))
    model.relations.requires_grad_(False)  # frozen parameters are left out
    groups = param_groups(
        list(model.named_parameters()),
        [ParamGroup(match=["entities.*"], lr=0.01, weight_decay=0.1)],
        lr=1.0,
        wd=0.0,
    )
    assert [(g["lr"], g["weight_decay"], len(g["params"])) for g in groups] == [(0.01, 0.1, 1)]
    with pytest.raises(ConfigError, match=r"train\.param_groups\.0\.match.*matches no"):
        param_groups(list(model.named_parameters()), [ParamGroup(match=["encoder.*"])], 1.0, 0.0)


def test_in_batch_candidates_mask_the_query_own_answer() -> None:
    q = torch.tensor([[0, 0, 5], [1, 0, 6], [2, 1, 5], [3, 0, 7]])
    cand, mask = in_batch_candidates(q)
    assert cand.tolist() == [[5, 6, 5, 7], [6, 5, 7, 5], [5, 7, 5, 6], [7, 5, 6, 5]]
    assert mask.tolist() == [
        [True, True, False, True],
        [True, True, True, True],
        [True, True, False, True],
        [True, True, True, True],
    ]
    capped, _ = in_batch_candidates(q, 2)
    assert capped.shape == (4, 3)


def test_accumulation_equals_one_batch_twice_the_size(tmp_path: Path) -> None:
    """SGD on mean losses: batches of 300 accumulated 2 by 2 step exactly like batches of 600 (the last, smaller
    window included)."""
    _, one = _train(tmp_path, "one", batch_size=600)
    _, two = _train(tmp_path, "two", batch_size=300, accumulate=2)
    for k in ("model.entities.weight", "model.relations.rel.weight"):
        torch.testing.assert_close(one[k], two[k], rtol=1e-5, atol=1e-6)


def test_clipping_bounds_every_step(tmp_path: Path) -> None:
    _, free = _train(tmp_path, "free", batch_size=100_000, lr=5.0)
    _, clipped = _train(tmp_path, "clipped", batch_size=100_000, lr=5.0, grad_clip=1e-4)
    torch.manual_seed(1)  # the initial weights of the seed-1 runs, rebuilt
    _, start = _train(tmp_path, "start", batch_size=100_000, lr=1e-12)

    def moved(w: dict[str, torch.Tensor]) -> float:
        keys = [k for k in w if k.startswith("model.")]
        return float(torch.sqrt(sum(((w[k] - start[k]) ** 2).sum() for k in keys)))

    # one step per epoch, two epochs: each step moves the weights by at most lr * clip
    assert moved(clipped) <= 2 * 5.0 * 1e-4 * 1.01
    assert moved(free) > 10 * moved(clipped)


def test_schedule_and_in_batch_negatives_train_and_log_the_lr(tmp_path: Path) -> None:
    run, _ = _train(
        tmp_path,
        "inbatch",
        optimizer="adam",
        lr=0.01,
        negative_sampling="in_batch",
        scheduler={"name": "linear", "warmup": 0.25},
    )
    records = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    epochs = [r for r in records if r["event"] == "epoch"]
    assert epochs[1]["loss"] < epochs[0]["loss"]
    assert epochs[1]["lr"] < epochs[0]["lr"] and epochs[1]["lr"] == pytest.approx(0.0, abs=1e-12)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["sides"]["both"]["mrr"] > 3 / metrics["protocol"]["queries"]


def test_shared_negatives_train_and_repeat_exactly(tmp_path: Path) -> None:
    """Negatives shared by each batch (joint negative sampling) train the model and come from the epoch's
    seeded generator: the same config gives bit-identical weights."""
    cfg = _cfg(optimizer="adagrad", lr=0.1, negatives=16, negative_sampling="shared")
    cfg["stages"] = [
        {"epochs": 4, "objective": [{"loss": "negative_sampling", "form": "softplus"}]}
    ]
    runs = [api.train(parse_config(cfg), out=tmp_path / n).run_dir for n in ("a", "b")]
    records = [json.loads(x) for x in (runs[0] / "log.jsonl").read_text().splitlines()]
    epochs = [r for r in records if r["event"] == "epoch"]
    assert epochs[-1]["loss"] < epochs[0]["loss"]
    metrics = json.loads((runs[0] / "metrics.json").read_text())
    assert metrics["sides"]["both"]["mrr"] > 0.05, metrics["sides"]["both"]
    a, b = (load_file(str(r / "last.safetensors")) for r in runs)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_checkpoint_every_spaces_the_last_checkpoint(tmp_path: Path) -> None:
    cfg = _cfg(checkpoint_every=2)
    cfg["stages"] = [{"epochs": 3}]
    run = api.train(parse_config(cfg), out=tmp_path / "spaced").run_dir
    from kgdistill.checkpoint import load_checkpoint

    state = load_checkpoint(run / "last.safetensors").meta["state"]
    assert state["epoch"] == 3  # the stage's end is always written
    with pytest.raises(ConfigError, match="checkpoint_every"):
        parse_config(_cfg(checkpoint_every=0))


def test_keep_freed_memory_is_taken_on_linux() -> None:
    import sys

    from kgdistill.runs import keep_freed_memory

    assert keep_freed_memory() is sys.platform.startswith("linux")
    assert parse_config(_cfg()).train.keep_freed_memory  # on by default


def test_epoch_queries_draws_a_part_of_the_training_queries_per_epoch(tmp_path: Path) -> None:
    """300 queries of 100 per epoch: 3 optimiser steps an epoch, 6 in two (Adam counts them), where the full
    epochs take all the queries' batches."""
    _, state = _train(
        tmp_path, "part", optimizer="adam", lr=0.01, batch_size=100, epoch_queries=300
    )
    steps = [v for k, v in state.items() if k.startswith("optim.") and k.endswith(".step")]
    assert steps and all(float(s) == 6 for s in steps)
    _, state_full = _train(tmp_path, "full", optimizer="adam", lr=0.01, batch_size=100)
    n = 2 * len((FIXTURES / "fb15k237-mini" / "train.txt").read_text().splitlines())
    assert all(
        float(v) == 2 * math.ceil(n / 100)
        for k, v in state_full.items()
        if k.startswith("optim.") and k.endswith(".step")
    )
    with pytest.raises(ConfigError, match="epoch_queries"):
        parse_config(_cfg(epoch_queries=0))
