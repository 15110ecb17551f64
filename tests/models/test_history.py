"""The recurrence term (``model.history``): its gaps on real facts, its scoring paths, gradients, checkpoints
and the configs it refuses."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from kgdistill import api
from kgdistill.checkpoint import load_checkpoint, load_model
from kgdistill.config import parse_config
from kgdistill.data.filters import FilterIndex
from kgdistill.data.kg import KG
from kgdistill.data.time import OPEN_HI, OPEN_LO
from kgdistill.errors import ConfigError
from kgdistill.models.base import Vocab
from kgdistill.models.history import HistoryTerm, history_features
from kgdistill.models.zoo import build_model
from kgdistill.types import HEAD, REL, TAIL

FIXTURES = Path(__file__).parents[1] / "fixtures"


def _model(kg: KG, name: str = "tntcomplex", history: bool = True, seed: int = 0):
    torch.manual_seed(seed)
    vocab = Vocab(kg.num_entities, kg.num_relations, kg.time.labels)
    features = {"history": history_features(kg)} if history else None
    return build_model({"name": name, "dim": 8}, vocab, features)


def _recurring(kg: KG) -> tuple[torch.Tensor, int, int]:
    """A training fact (h, r, o) with a known interval, the nearest time id outside it and its gap in bins."""
    facts, val = kg.facts["train"], kg.validity["train"]
    anchors = torch.tensor(kg.time.anchors)
    known = (val[:, 0] != OPEN_LO) & (val[:, 1] != OPEN_HI)
    i = int(torch.nonzero(known)[0])
    lo, hi = int(val[i, 0]), int(val[i, 1])
    outside = [t for t, a in enumerate(anchors.tolist()) if a >= 0 and (a < lo or a > hi)]
    # the nearest bin outside it (a term far away in time is ~0 and so is its gradient)
    tau = min(outside, key=lambda t: max(lo - int(anchors[t]), int(anchors[t]) - hi))
    a = int(anchors[tau])
    return facts[i], tau, max(lo - a, a - hi)


def test_gaps_on_a_real_fact(yago: KG) -> None:
    """The distance in bins from a query's time to a training fact's validity, computed by hand, and 0 inside."""
    index = FilterIndex.build(yago, ("train",), mode="interval")
    fact, tau, want = _recurring(yago)
    q = torch.tensor([[fact[HEAD], fact[REL], fact[TAIL], tau]])
    rows, cols, gap = index.gaps(q)
    assert (rows == 0).all()
    hit = gap[cols == fact[TAIL]]
    assert want > 0 and int(hit.min()) == want
    # the reciprocal query finds the head at the same distance
    back = torch.tensor([[fact[TAIL], fact[REL] + yago.num_relations, fact[HEAD], tau]])
    _, cols_b, gap_b = index.gaps(back)
    assert int(gap_b[cols_b == fact[HEAD]].min()) == want
    # at the fact's own time (a training quadruple) the gap is 0: no term
    row = int(torch.nonzero((yago.splits["train"][:, :3] == fact).all(1))[0])
    own = yago.splits["train"][row : row + 1]
    _, cols_o, gap_o = index.gaps(own)
    assert int(gap_o[cols_o == fact[TAIL]].min()) == 0


def test_a_new_term_changes_nothing_and_joins_every_scoring_path(yago: KG) -> None:
    """Zero-initialised: the same scores as without it; once moved, ``score_all``, ``forward(candidates)`` and
    ``score_hrt`` agree, and only recurring candidates moved."""
    plain, model = _model(yago, history=False), _model(yago)
    fact, tau, gap = _recurring(yago)
    q = torch.stack(
        [torch.tensor([fact[HEAD], fact[REL], fact[TAIL], tau]), yago.splits["train"][5]]
    )
    with torch.no_grad():
        assert torch.equal(plain.score_all(q), model.score_all(q))
        model.history.offset.fill_(-1.0)
        model.history.amplitude.fill_(2.0)
        full = model.score_all(q)
        moved = full - plain.score_all(q)
    near = model.history.nearest(q)
    assert torch.equal(
        moved != 0, torch.isfinite(near)
    )  # only training facts valid at another time
    assert bool(torch.isfinite(near[0, fact[TAIL]]))
    # the value: a + b exp(-(g / w)^2) at the fact's gap (width 2 bins at the start), as a float, by hand
    assert float(moved[0, fact[TAIL]]) == pytest.approx(
        -1.0 + 2.0 * math.exp(-((gap / 2.0) ** 2)), rel=1e-5
    )
    cand = torch.tensor([[int(fact[TAIL]), 0, 7], [3, 4, 5]])
    with torch.no_grad():
        assert torch.allclose(model(q, cand).scores, full.gather(1, cand))
        assert torch.allclose(model.score_hrt(q), full.gather(1, q[:, TAIL : TAIL + 1]).squeeze(1))


def test_gradients_reach_the_term(yago: KG) -> None:
    model = _model(yago)
    fact, tau, _ = _recurring(yago)
    q = torch.tensor([[fact[HEAD], fact[REL], 0, tau]])
    with torch.no_grad():
        model.history.amplitude.fill_(1.0)
    model(q).scores.logsumexp(1).sum().backward()
    h = model.history
    for p in (h.offset, h.amplitude, h.log_width):
        assert p.grad is not None and p.grad[fact[REL]].abs() > 0
    assert h.offset.grad[[i for i in range(len(h.offset)) if i != int(fact[REL])]].abs().sum() == 0


def test_training_with_history_round_trips_through_a_checkpoint(tmp_path: Path) -> None:
    """A short real run with the term: it learns (offsets move), and the checkpoint rebuilds the same model."""
    cfg = parse_config(
        {
            "data": {"name": str(FIXTURES / "wikidata12k-mini"), "time": {"granularity": "year"}},
            "model": {"name": "tntcomplex", "dim": 8, "history": True},
            "stages": [{"epochs": 3, "objective": [{"loss": "supervised_ce"}]}],
            "train": {"batch_size": 64, "eval_every": 3, "progress": False},
        }
    )
    result = api.train(cfg, out=tmp_path / "run")
    ckpt = load_checkpoint(tmp_path / "run" / "best.safetensors")
    model = load_model(ckpt)
    assert model.history is not None
    assert model.history.offset.abs().sum() > 0  # trained
    q = result.model.history.index().keys.new_tensor([[0, 0, 1, 0], [2, 1, 3, 1]])
    with torch.no_grad():
        assert torch.equal(model.score_all(q), result.model.score_all(q))
    assert ckpt.meta["model"]["features"]["history"]["sizes"]["answers"] > 0


@pytest.mark.parametrize(
    ("model", "data", "history", "words"),
    [
        ("tntcomplex", "wikidata12k-mini", "yes", "is not true or false"),
        ("complex", "fb15k237-mini", True, "has no time column"),
        ("hyte", "wikidata12k-mini", True, "scores through its own paths"),
    ],
)
def test_refused_configs_name_model_history(
    tmp_path: Path, model: str, data: str, history: object, words: str
) -> None:
    raw = {
        "data": {"name": str(FIXTURES / data)},
        "model": {"name": model, "dim": 8, "history": history},
        "stages": [{"epochs": 1, "objective": [{"loss": "supervised_ce"}]}],
        "train": {"progress": False},
    }
    if data.startswith("wikidata"):
        raw["data"]["time"] = {"granularity": "year"}
    with pytest.raises(ConfigError, match=f"model.history.*{words}|{words}.*model.history"):
        api.train(parse_config(raw), out=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_the_term_reads_an_interval_index(yago: KG) -> None:
    static = FilterIndex.build(yago, ("train",), time_aware=False)
    with pytest.raises(ValueError, match="interval"):
        static.gaps(yago.splits["train"][:2])
    with pytest.raises(ValueError, match="interval"):
        HistoryTerm(static, yago.num_entities)


@pytest.mark.parametrize("fmt", ["onnx", "torchscript", "safetensors-embeddings"])
def test_export_refuses_a_model_with_history(yago: KG, tmp_path: Path, fmt: str) -> None:
    """Exported graphs and tables hold no training facts: a clear refusal, not scores without the term."""
    from kgdistill.export.ann import build_ann_index
    from kgdistill.export.graph import ExportError
    from kgdistill.export.run import export_model

    model = _model(yago)
    with pytest.raises(ExportError, match=r"model\.history"):
        export_model(model, tmp_path / "m", format=fmt, name="t")  # type: ignore[arg-type]
    with pytest.raises(ExportError, match=r"model\.history"):
        build_ann_index(model, name="t")
    assert not (tmp_path / "m").exists()
