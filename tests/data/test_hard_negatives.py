"""Hard negatives (``train.negative_sampling: hard``): drawn from a real model's top-k cache of the training
queries, never a training answer, the rest uniform, reproducible from the epoch's generator; bad caches are one
error naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from kgdistill import api
from kgdistill.config import parse_config
from kgdistill.data import KG, build_kg, read_static_names
from kgdistill.data.batching import both_directions
from kgdistill.data.hard_negatives import HardNegatives
from kgdistill.distill.cache import query_keys
from kgdistill.errors import ConfigError
from kgdistill.types import HEAD, REL, TAIL

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
DATA = str(FIXTURES / "fb15k237-mini")


def _cfg(train: dict | None = None, epochs: int = 2) -> dict:
    return {
        "seed": 0,
        "data": {"name": DATA},
        "model": {"name": "distmult", "dim": 8},
        "stages": [{"epochs": epochs}],
        "train": {"optimizer": "adam", "lr": 0.02, "batch_size": 500, "progress": False}
        | (train or {}),
    }


@pytest.fixture(scope="module")
def kg() -> KG:
    return build_kg(read_static_names(Path(DATA)))


@pytest.fixture(scope="module")
def topk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A DistMult trained on the subset, and its top-20 for every training query."""
    folder = tmp_path_factory.mktemp("hard")
    run = api.train(parse_config(_cfg()), out=folder / "retriever").run_dir
    return api.cache(run, folder / "top20.safetensors", k=20, progress=False)


def _train_answers(kg: KG) -> dict[tuple[int, int], set[int]]:
    out: dict[tuple[int, int], set[int]] = {}
    for h, r, t in both_directions(kg.splits["train"], kg.num_relations).tolist():
        out.setdefault((h, r), set()).add(t)
    return out


def test_hard_draws_come_from_the_top_k_and_are_never_training_answers(kg: KG, topk: Path) -> None:
    from safetensors.torch import load_file

    tensors = load_file(str(topk))
    rows = dict(zip(tensors["keys"].tolist(), tensors["topk_ids"].tolist(), strict=True))
    sampler = HardNegatives(str(topk), kg, negatives=8, fraction=0.5, device=torch.device("cpu"))
    assert sampler.hard == 4
    q = both_directions(kg.splits["train"], kg.num_relations)[:300]
    cand = sampler(q, torch.Generator().manual_seed(0))
    assert cand.shape == (300, 9) and torch.equal(cand[:, 0], q[:, TAIL])
    known = _train_answers(kg)
    keys = query_keys(q, kg.num_relations, kg.num_times).tolist()
    drawn_from_top = 0
    for i, key in enumerate(keys):
        top = rows[key]
        answers = known[int(q[i, HEAD]), int(q[i, REL])]
        usable = [e for e in top if e not in answers]
        hard = cand[i, 1:5].tolist()
        if len(usable) >= 4:
            assert set(hard) <= set(usable) and len(set(hard)) == 4  # without replacement
            drawn_from_top += 1
    assert drawn_from_top > 250
    # the epoch's generator decides every draw
    again = sampler(q, torch.Generator().manual_seed(0))
    other = sampler(q, torch.Generator().manual_seed(1))
    assert torch.equal(cand, again) and not torch.equal(cand, other)


def test_all_hard_and_queries_outside_the_cache(kg: KG, topk: Path) -> None:
    sampler = HardNegatives(str(topk), kg, negatives=6, fraction=1.0, device=torch.device("cpu"))
    assert sampler.hard == 6
    train = both_directions(kg.splits["train"], kg.num_relations)
    seen = set(query_keys(train, kg.num_relations, kg.num_times).tolist())
    test = both_directions(kg.splits["test"], kg.num_relations)
    outside = test[[k not in seen for k in query_keys(test, kg.num_relations, 0).tolist()]]
    assert len(outside) > 0, "the case needs queries the cache does not hold"
    cand = sampler(outside, torch.Generator().manual_seed(0))
    assert cand.shape == (len(outside), 7)
    assert ((cand >= 0) & (cand < kg.num_entities)).all()  # uniform draws stand in


def test_bad_hard_negative_settings_are_one_error(kg: KG, topk: Path, tmp_path: Path) -> None:
    cpu = torch.device("cpu")
    with pytest.raises(ConfigError, match=r"train\.hard_negatives.*no cache"):
        HardNegatives(str(tmp_path / "none.safetensors"), kg, negatives=4, fraction=0.5, device=cpu)
    run = topk.parent / "retriever"
    full = api.cache(run, tmp_path / "full.safetensors", k=None, progress=False)
    with pytest.raises(ConfigError, match="full score rows"):
        HardNegatives(str(full), kg, negatives=4, fraction=0.5, device=cpu)
    wn = build_kg(read_static_names(FIXTURES / "wn18rr-mini"))
    with pytest.raises(ConfigError, match="teacher cache"):
        HardNegatives(str(topk), wn, negatives=4, fraction=0.5, device=cpu)
    for train, key in (
        ({"negative_sampling": "hard", "negatives": 4}, "hard_negatives"),
        ({"negative_sampling": "hard", "hard_negatives": str(topk)}, "negatives > 0"),
        ({"hard_fraction": 1.5}, "hard_fraction"),
    ):
        with pytest.raises(ConfigError, match=key):
            parse_config(_cfg(train))


class _Stop(Exception):
    pass


def _stop_after_first(epoch: int, mrr: float) -> None:
    if epoch == 1:
        raise _Stop


def test_a_run_trains_on_hard_negatives_and_resumes_to_the_same_weights(
    topk: Path, tmp_path: Path
) -> None:
    """Three epochs with hard negatives, and the same run stopped after its first epoch and resumed: the same
    final weights (every draw comes from the epoch's generator); uniform negatives train other weights."""
    train = {
        "negatives": 8,
        "negative_sampling": "hard",
        "hard_negatives": str(topk),
        "eval_every": 1,
        "patience": 0,
    }
    whole = api.train(parse_config(_cfg(train, epochs=3)), out=tmp_path / "whole")
    assert whole.metrics.mrr > 0
    with pytest.raises(_Stop):
        api.train(
            parse_config(_cfg(train, epochs=3)), out=tmp_path / "cut", on_valid=_stop_after_first
        )
    resumed = api.train(resume=tmp_path / "cut")
    uniform = api.train(
        parse_config(_cfg({"negatives": 8, "eval_every": 1, "patience": 0}, epochs=3)),
        out=tmp_path / "uniform",
    )
    a, b, c = (r.model.state_dict() for r in (whole, resumed, uniform))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
