"""Re-ranking evaluation: a retriever's filtered top-k rescored by a reranker (``evaluate_rerank``)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from kgdistill.data import KG, build_kg, load_kg, read_static_names
from kgdistill.data.batching import both_directions
from kgdistill.data.filters import FilterIndex
from kgdistill.errors import KGDistillError
from kgdistill.evaluate import (
    evaluate,
    evaluate_rerank,
    evaluate_rerank_sweep,
    fuse_scores,
    rank_of_true,
    summarize,
    topk_candidates,
)
from kgdistill.models import KGEModel, Vocab, build_model

FIXTURES = Path(__file__).parent / "fixtures"

# -- a hand-computed case ------------------------------------------------------------------------------------------
#
# Entities e0..e5 (ids 0..5), one relation r (id 0; its reciprocal is 1). Known answers (train + valid + test,
# both directions): (e0, r) -> {e1, e2, e3}, (e4, r) -> {e5}, (e3, r^-1) -> {e0}, (e5, r^-1) -> {e4}, ...
HAND_SPLITS = {
    "train": [("e0", "r", "e1"), ("e0", "r", "e2")],
    "valid": [("e2", "r", "e4")],
    "test": [("e0", "r", "e3"), ("e4", "r", "e5")],
}
# query (head, relation) -> retriever scores of e0..e5
RETRIEVER = {
    (0, 0): [
        1.0,
        9.0,
        8.0,
        5.0,
        5.0,
        7.0,
    ],  # e1, e2 filtered; top-2 = e5, then e3 (ties e4: lower id)
    (4, 0): [3.0, 6.0, 6.0, 4.0, 2.0, 2.0],  # true e5 outside the top-2 {e1, e2}; ties e4 below
    (3, 1): [4.0, 4.0, 9.0, 1.0, 4.0, 0.0],  # top-2 = e2, then e0 of the tied e0 / e1 / e4
    (5, 1): [0.0, 1.0, 2.0, 3.0, -1.0, 5.0],  # true e4 last
}
# query -> reranker scores of e0..e5 (only the candidates' are read)
RERANKER = {
    (0, 0): [0.0, 0.0, 0.0, 2.0, 0.0, 2.0],  # e5 and the true e3 tie
    (4, 0): [0.0, 9.0, 9.0, 0.0, 0.0, 99.0],  # e5 would be first, but it is not a candidate
    (3, 1): [3.0, 0.0, 1.0, 0.0, 0.0, 0.0],  # the true e0 first
    (5, 1): [0.0, 0.0, 0.0, 0.0, 99.0, 0.0],
}
# ranks of the tail queries (e0, r, ?=e3), (e4, r, ?=e5), then the head queries (e3, r^-1, ?=e0), (e5, r^-1, ?=e4)
HAND_RANKS = {
    # q1: reranker tie among the 2 candidates; q2: 2 + (e0, e3 above; e4 level) among the rest;
    # q3: first among the candidates; q4: 2 + (e0, e1, e2 above) among the rest
    "realistic": [1.5, 5.5, 1.0, 6.0],
    "optimistic": [1.0, 5.0, 1.0, 6.0],
    "pessimistic": [2.0, 6.0, 1.0, 6.0],
}


class TableScorer(torch.nn.Module):
    """Scores from a table ``(head, relation) -> scores of every entity``: a stub retriever / reranker."""

    def __init__(self, table: dict[tuple[int, int], list[float]]) -> None:
        super().__init__()
        self.table = {k: torch.tensor(v) for k, v in table.items()}
        self.calls: list[torch.Tensor] = []

    def score_all(self, queries: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.table[h, r] for h, r in queries[:, :2].tolist()])

    def score_candidates(self, queries: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        self.calls.append(candidates.clone())
        return self.score_all(queries).gather(1, candidates)


@pytest.fixture
def hand_kg(tmp_path: Path) -> KG:
    for split, facts in HAND_SPLITS.items():
        (tmp_path / f"{split}.txt").write_text("".join(f"{h}\t{r}\t{t}\n" for h, r, t in facts))
    kg = build_kg(read_static_names(tmp_path))
    assert kg.num_entities == 6 and kg.num_relations == 1
    assert kg.splits["test"].tolist() == [[0, 0, 3], [4, 0, 5]]
    return kg


def _sides(ranks: list[float]) -> dict[str, dict[str, float]]:
    r = torch.tensor(ranks, dtype=torch.float64)
    n = len(r) // 2
    return {"both": summarize(r), "tail": summarize(r[:n]), "head": summarize(r[n:])}


@pytest.mark.parametrize("ties", ["realistic", "optimistic", "pessimistic"])
def test_rerank_hand_computed_ranks(hand_kg: KG, ties: str) -> None:
    retriever, reranker = TableScorer(RETRIEVER), TableScorer(RERANKER)
    m = evaluate_rerank(retriever, reranker, hand_kg, "test", k=2, ties=ties)  # type: ignore[arg-type]
    assert m.sides == _sides(HAND_RANKS[ties])
    # the reranker saw each query's filtered top-2 in the retriever's order (one chunk of 4 queries)
    (seen,) = reranker.calls
    assert seen.tolist() == [[5, 3], [1, 2], [2, 0], [5, 3]]
    assert m.protocol["rerank"] == {
        "k": 2,
        "retriever": "TableScorer",
        "reranker": "TableScorer",
        "mix": 0.0,
    }
    assert m.protocol["filter"] == "static" and m.protocol["ties"] == ties


def test_rerank_all_entities_ranks_every_valid_entity_by_the_reranker(hand_kg: KG) -> None:
    """k = E: every entity left by the filter is a candidate; the rest of each row is padding."""
    reranker = TableScorer(RERANKER)
    m = evaluate_rerank(TableScorer(RETRIEVER), reranker, hand_kg, "test", k=6)
    # q1: e3 ties e5 (2.0) among e0, e3, e4, e5 -> 1.5; q2: e5 (99) first -> 1; q3: e0 (3) first -> 1;
    # q4: e4 (99) first -> 1
    assert m.sides == _sides([1.5, 1.0, 1.0, 1.0])
    (seen,) = reranker.calls
    # q1: valid e0, e3, e4, e5 in retriever order (e3 before the tied e4), then padding (repeats e5)
    assert seen[0].tolist() == [5, 3, 4, 0, 5, 5]
    assert m.protocol["rerank"]["k"] == 6


def test_rerank_unfiltered_keeps_known_answers_as_candidates(hand_kg: KG) -> None:
    reranker = TableScorer(RERANKER)
    evaluate_rerank(TableScorer(RETRIEVER), reranker, hand_kg, "test", k=2, filtered=False)
    assert reranker.calls[0][0].tolist() == [1, 2]  # e1, e2 are no longer removed


def test_topk_candidates_explicit() -> None:
    scores = torch.tensor([[1.0, 9.0, 8.0, 5.0, 5.0, 7.0], [4.0, 4.0, 9.0, 1.0, 4.0, 0.0]])
    valid = torch.tensor([[True, False, False, True, True, True], [True] * 6])
    ids, taken, chosen = topk_candidates(scores, valid, 3)
    assert ids.tolist() == [[5, 3, 4], [2, 0, 1]]
    assert taken.all()
    assert chosen.tolist() == [
        [False, False, False, True, True, True],
        [True, True, True, False, False, False],
    ]
    ids, taken, _ = topk_candidates(scores, valid, 5)
    assert ids.tolist() == [[5, 3, 4, 0, 5], [2, 0, 1, 4, 3]]
    assert taken.tolist() == [[True] * 4 + [False], [True] * 5]


def test_rerank_rejects_bad_k_and_nan(hand_kg: KG) -> None:
    retriever = TableScorer(RETRIEVER)
    with pytest.raises(KGDistillError, match="k must be"):
        evaluate_rerank(retriever, retriever, hand_kg, "test", k=0)
    nan = TableScorer({key: [float("nan")] * 6 for key in RERANKER})
    with pytest.raises(KGDistillError, match="NaN"):
        evaluate_rerank(retriever, nan, hand_kg, "test", k=2)
    with pytest.raises(KGDistillError, match="NaN"):
        evaluate_rerank(nan, retriever, hand_kg, "test", k=2)
    with pytest.raises(KGDistillError, match="tie mode"):
        evaluate_rerank(retriever, retriever, hand_kg, "test", ties="average")  # type: ignore[arg-type]


# -- fusing the reranker's scores with the retriever's --------------------------------------------------------------
#
# q1 (e0, r, ?=e3): candidates e5, e3; retriever 7, 5; reranker tie 2, 2 -> any mix > 0 puts e5 first: rank 2.
# q3 (e3, r^-1, ?=e0): candidates e2, e0; retriever 9, 4 (log-softmax -0.0067, -5.0067); reranker 1, 3
# (-2.1269, -0.1269): at mix 0.2 e0 scores -1.1029 against e2's -1.7029 (rank 1), at mix 0.5 -2.5668 against
# -1.0668 (rank 2). q2 and q4: the true answer is not a candidate, its rank does not move.
HAND_FUSED = {0.0: [1.5, 5.5, 1.0, 6.0], 0.2: [2.0, 5.5, 1.0, 6.0], 0.5: [2.0, 5.5, 2.0, 6.0]}


def test_fuse_scores_hand_computed() -> None:
    rescored = torch.tensor([[1.0, 3.0, 0.0]])
    retrieved = torch.tensor([[9.0, 4.0, 0.0]])
    taken = torch.tensor([[True, True, False]])  # the last column is padding
    fused = fuse_scores(rescored, retrieved, taken, 0.2)
    expected = [
        0.8 * (1 - math.log(math.exp(1) + math.exp(3)))
        + 0.2 * (9 - math.log(math.exp(9) + math.exp(4)))
    ]
    expected.append(
        0.8 * (3 - math.log(math.exp(1) + math.exp(3)))
        + 0.2 * (4 - math.log(math.exp(9) + math.exp(4)))
    )
    assert fused[0, :2].tolist() == pytest.approx(expected, abs=1e-12)
    assert fused[0, 2] == 0.0  # padding is never read, but stays finite
    assert fuse_scores(rescored, retrieved, taken, 0.0) is rescored
    one = fuse_scores(rescored, retrieved, taken, 1.0)
    assert torch.isfinite(one).all() and one[0, 0] > one[0, 1]
    with pytest.raises(KGDistillError, match=r"mix must be in \[0, 1\]"):
        fuse_scores(rescored, retrieved, taken, 1.5)


@pytest.mark.parametrize("mix", sorted(HAND_FUSED))
def test_rerank_fused_with_the_retriever_hand_computed(hand_kg: KG, mix: float) -> None:
    m = evaluate_rerank(
        TableScorer(RETRIEVER), TableScorer(RERANKER), hand_kg, "test", k=2, mix=mix
    )
    assert m.sides == _sides(HAND_FUSED[mix])
    assert m.protocol["rerank"]["mix"] == mix


def test_rerank_sweep_is_each_mix_from_one_reranker_pass(hand_kg: KG) -> None:
    reranker = TableScorer(RERANKER)
    sweep = evaluate_rerank_sweep(
        TableScorer(RETRIEVER), reranker, hand_kg, "test", mixes=[0.0, 0.2, 0.5], k=2
    )
    assert len(reranker.calls) == 1  # one chunk, scored once for all three values
    for mix, metrics in sweep.items():
        assert metrics.sides == _sides(HAND_FUSED[mix])
        assert metrics.protocol["rerank"]["mix"] == mix
    with pytest.raises(KGDistillError, match="mix must be"):
        evaluate_rerank_sweep(TableScorer(RETRIEVER), reranker, hand_kg, "test", mixes=[0.1, -0.1])
    with pytest.raises(KGDistillError, match="at least one"):
        evaluate_rerank_sweep(TableScorer(RETRIEVER), reranker, hand_kg, "test", mixes=[])


# -- reranker == retriever: exactly the plain evaluation ------------------------------------------------------------


@pytest.fixture(scope="module")
def mini_kg() -> KG:
    return build_kg(read_static_names(FIXTURES / "fb15k237-mini"))


@pytest.fixture(scope="module")
def yago_kg() -> KG:
    return load_kg("yago11k")


def _model(kg: KG, name: str) -> KGEModel:
    torch.manual_seed(0)
    vocab = Vocab(kg.num_entities, kg.num_relations, tuple(kg.time.labels))
    return build_model({"name": name, "dim": 8}, vocab)


def test_kge_model_score_candidates_is_forward(mini_kg: KG) -> None:
    model = _model(mini_kg, "complex")
    queries = mini_kg.splits["test"][:5]
    candidates = torch.tensor([[0, 3, 7]] * 5)
    got = model.score_candidates(queries, candidates)
    assert got.shape == (5, 3)
    assert torch.equal(got, model(queries, candidates).scores)
    torch.testing.assert_close(got, model.score_all(queries).gather(1, candidates))


@pytest.mark.parametrize("ties", ["realistic", "pessimistic"])
@pytest.mark.parametrize("k", [1, 10, "E"])
def test_rerank_with_itself_equals_plain_evaluation_static(
    mini_kg: KG, k: int | str, ties: str
) -> None:
    """``score_candidates`` (an einsum) and ``score_all`` (a matrix product) may differ in the last bits (here by
    ~1e-15); the random model has no scores that close, so the ranks are the same."""
    model = _model(mini_kg, "complex")
    kk = mini_kg.num_entities if k == "E" else int(k)
    plain = evaluate(model, mini_kg, "test", ties=ties, batch_size=64)  # type: ignore[arg-type]
    reranked = evaluate_rerank(model, model, mini_kg, "test", k=kk, ties=ties, batch_size=64)  # type: ignore[arg-type]
    assert reranked.sides == plain.sides
    assert {**reranked.protocol, "rerank": None} == {**plain.protocol, "rerank": None}
    assert reranked.protocol["rerank"] == {
        "k": kk,
        "retriever": "KGEModel(ComplEx)",
        "reranker": "KGEModel(ComplEx)",
        "mix": 0.0,
    }


@pytest.mark.parametrize("time_aware", [True, False])
@pytest.mark.parametrize("k", [5, "E"])
def test_rerank_with_itself_equals_plain_evaluation_temporal(
    yago_kg: KG, k: int | str, time_aware: bool
) -> None:
    model = _model(yago_kg, "tntcomplex")
    kk = yago_kg.num_entities if k == "E" else int(k)
    kwargs = {"max_queries": 60, "batch_size": 40, "time_aware": time_aware}
    plain = evaluate(model, yago_kg, "test", **kwargs)  # type: ignore[arg-type]
    reranked = evaluate_rerank(model, model, yago_kg, "test", k=kk, **kwargs)  # type: ignore[arg-type]
    assert reranked.sides == plain.sides
    assert reranked.protocol["filter"] == ("time-aware" if time_aware else "static")
    assert reranked.protocol["time"] == plain.protocol["time"]


@pytest.mark.parametrize("k", [1, 10, "E"])
def test_rerank_fused_at_mix_one_is_the_retrievers_evaluation(mini_kg: KG, k: int | str) -> None:
    """``mix = 1`` orders the candidates as the retriever does, whatever the reranker says."""
    retriever, reranker = _model(mini_kg, "complex"), _model(mini_kg, "distmult")
    kk = mini_kg.num_entities if k == "E" else int(k)
    plain = evaluate(retriever, mini_kg, "test", batch_size=64)
    fused = evaluate_rerank(retriever, reranker, mini_kg, "test", k=kk, mix=1.0, batch_size=64)
    alone = evaluate_rerank(retriever, reranker, mini_kg, "test", k=kk, batch_size=64)
    assert fused.sides == plain.sides
    if kk > 1:
        assert alone.sides != plain.sides  # the reranker alone does move the ranks


# -- an oracle reranker ---------------------------------------------------------------------------------------------


class Oracle(torch.nn.Module):
    """Scores the true answer (column 2 of the query) 1, every other candidate 0."""

    def score_candidates(self, queries: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        return (candidates == queries[:, 2:3]).float()


def _plain_ranks(model: KGEModel, kg: KG, n: int | None = None) -> torch.Tensor:
    facts = kg.splits["test"][:n] if n else kg.splits["test"]
    queries = both_directions(facts, kg.num_relations)
    with torch.no_grad():
        scores = model.score_all(queries)
    rows, cols = FilterIndex.build(kg).known(queries)
    return rank_of_true(scores, queries[:, 2], rows, cols)


@pytest.mark.parametrize("k", [3, 10, 40])
def test_oracle_reranker_gives_rank_one_inside_the_top_k_else_the_retrievers_rank(
    mini_kg: KG, k: int
) -> None:
    model = _model(mini_kg, "complex")
    plain = _plain_ranks(model, mini_kg)
    assert (plain % 1 == 0).all(), "random scores without ties"
    inside = plain <= k
    assert inside.any() and (~inside).any(), "the case must have queries on both sides of k"
    expected = torch.where(inside, 1.0, plain)
    m = evaluate_rerank(model, Oracle(), mini_kg, "test", k=k)
    assert m.sides == _sides(expected.tolist())
    assert m.protocol["rerank"]["reranker"] == "Oracle"


def test_oracle_reranker_temporal(yago_kg: KG) -> None:
    model = _model(yago_kg, "tntcomplex")
    m = evaluate_rerank(model, Oracle(), yago_kg, "test", k=yago_kg.num_entities, max_queries=30)
    assert m.mrr == 1.0 and m.mr == 1.0


# -- kgdistill evaluate RUN --rerank RETRIEVER --------------------------------------------------------------------


def _tiny_run(
    tmp_path: Path, data: str, model: str, eval: dict | None = None, name: str = ""
) -> Path:
    from kgdistill import api
    from kgdistill.config import parse_config

    cfg = parse_config(
        {
            "seed": 0,
            "data": {"name": str(FIXTURES / data)},
            "model": {"name": model, "dim": 8},
            "stages": [{"epochs": 2}],
            "train": {"optimizer": "adam", "lr": 0.02, "batch_size": 500, "progress": False},
            "eval": eval or {},
        }
    )
    return api.train(cfg, out=tmp_path / f"{data}-{model}{name}").run_dir


def test_a_run_evaluated_as_a_reranker_of_its_eval_retriever(tmp_path: Path) -> None:
    """``eval.retriever``: validation and the final evaluation re-rank the retriever's top-k on the split's
    first ``eval.max_queries`` facts; with k = 1 the ranks are the retriever's. A retriever of another graph or a
    missing one is refused before training."""
    import json

    from kgdistill import api
    from kgdistill.errors import ConfigError, GraphMismatchError

    a = _tiny_run(tmp_path, "fb15k237-mini", "distmult")
    rerank = {"retriever": str(a), "rerank_k": 1, "max_queries": 9}
    b = _tiny_run(tmp_path, "fb15k237-mini", "complex", rerank)
    metrics = json.loads((b / "metrics.json").read_text())
    assert metrics["protocol"]["queries"] == 18
    assert metrics["protocol"]["rerank"]["k"] == 1
    assert metrics["protocol"]["rerank"]["retriever_checkpoint"] == str(a)
    base = api.evaluate_run(a, max_queries=9, progress=False)
    assert metrics["sides"]["both"] == pytest.approx(base.sides["both"], rel=1e-9)
    log = [json.loads(x) for x in (b / "log.jsonl").read_text().splitlines()]
    assert any(e["event"] == "valid" for e in log)
    other = _tiny_run(tmp_path, "wn18rr-mini", "distmult")
    with pytest.raises(GraphMismatchError):
        _tiny_run(tmp_path, "fb15k237-mini", "complex", {"retriever": str(other)}, "-x")
    with pytest.raises(ConfigError, match=r"eval\.retriever"):
        _tiny_run(tmp_path, "fb15k237-mini", "complex", {"retriever": str(tmp_path / "no")}, "-y")


def _cli_metrics(*args: str) -> dict:
    import json

    from click.testing import CliRunner

    from kgdistill.cli import cli

    result = CliRunner().invoke(cli, ["evaluate", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_cli_rerank_of_a_retriever(tmp_path: Path) -> None:
    """``kgdistill evaluate RUN --rerank R``: a run re-ranking its own top-k keeps its metrics, and any run
    re-ranking R's top-1 gets R's metrics; a retriever of another graph is refused before any work."""
    from click.testing import CliRunner

    from kgdistill.cli import cli

    a = _tiny_run(tmp_path, "fb15k237-mini", "distmult")
    b = _tiny_run(tmp_path, "fb15k237-mini", "complex")
    plain_a, plain_b = _cli_metrics(str(a)), _cli_metrics(str(b))
    assert plain_a["sides"]["both"]["mrr"] != plain_b["sides"]["both"]["mrr"]
    own = _cli_metrics(str(a), "--rerank", str(a), "--rerank-k", "5")
    assert own["sides"]["both"] == pytest.approx(plain_a["sides"]["both"], rel=1e-9)
    assert own["protocol"]["rerank"]["k"] == 5
    assert own["protocol"]["rerank"]["retriever_checkpoint"].startswith(str(a))
    top1 = _cli_metrics(str(b), "--rerank", str(a), "--rerank-k", "1")
    assert top1["sides"]["both"] == pytest.approx(plain_a["sides"]["both"], rel=1e-9)
    few = _cli_metrics(str(b), "--rerank", str(a), "--rerank-k", "1", "--max-queries", "7")
    assert (
        few["protocol"]["queries"] == 14 < plain_a["protocol"]["queries"]
    )  # 7 facts, both directions
    assert _cli_metrics(str(a), "--max-queries", "7")["protocol"]["queries"] == 14
    other = _tiny_run(tmp_path, "wn18rr-mini", "distmult")
    result = CliRunner().invoke(cli, ["evaluate", str(b), "--rerank", str(other)])
    assert result.exit_code == 2 and str(other) in result.output


def test_a_run_fused_with_its_retriever_and_the_sweep_of_the_api(tmp_path: Path) -> None:
    """``eval.rerank_mix`` reaches a run's own evaluation; :func:`kgdistill.api.rerank_sweep` gives the same
    numbers as one evaluation per value; a weight outside [0, 1] is refused, naming the key."""
    import json

    from kgdistill import api
    from kgdistill.config import parse_config
    from kgdistill.errors import ConfigError

    a = _tiny_run(tmp_path, "fb15k237-mini", "distmult")
    rerank = {"retriever": str(a), "rerank_k": 5, "rerank_mix": 1.0, "max_queries": 9}
    b = _tiny_run(tmp_path, "fb15k237-mini", "complex", rerank)
    metrics = json.loads((b / "metrics.json").read_text())
    assert metrics["protocol"]["rerank"]["mix"] == 1.0
    base = api.evaluate_run(a, max_queries=9, progress=False)
    assert metrics["sides"]["both"] == pytest.approx(base.sides["both"], rel=1e-9)
    sweep = api.rerank_sweep(
        b, a, mixes=[0.0, 0.5, 1.0], split="test", rerank_k=5, max_queries=9, progress=False
    )
    assert sweep[1.0].sides["both"] == pytest.approx(base.sides["both"], rel=1e-9)
    for mix in (0.0, 0.5):
        one = api.evaluate_run(
            b,
            retriever=a,
            rerank_k=5,
            max_queries=9,
            overrides={"rerank_mix": mix},
            progress=False,
        )
        assert sweep[mix].sides == one.sides
        assert sweep[mix].protocol == one.protocol
    assert sweep[0.0].sides != sweep[1.0].sides
    with pytest.raises(ConfigError, match=r"eval\.rerank_mix"):
        parse_config(
            {
                "data": {"name": "yago11k"},
                "model": {"name": "complex"},
                "eval": {"rerank_mix": 2},
            }
        )


def test_cli_mix_sweep(tmp_path: Path) -> None:
    """``kgdistill evaluate RUN --rerank R --mix-sweep STEP``: every weight from 0 to 1, the retriever's own
    metrics at 1, the best named; without --rerank one error (exit 2)."""
    from click.testing import CliRunner

    from kgdistill.cli import cli

    a = _tiny_run(tmp_path, "fb15k237-mini", "distmult")
    b = _tiny_run(tmp_path, "fb15k237-mini", "complex")
    doc = _cli_metrics(str(b), "--rerank", str(a), "--rerank-k", "5", "--mix-sweep", "0.25")
    assert sorted(doc["metrics"], key=float) == ["0.0", "0.25", "0.5", "0.75", "1.0"]
    mrr = {float(m): x["sides"]["both"]["mrr"] for m, x in doc["metrics"].items()}
    assert doc["best"] == max(sorted(mrr), key=lambda m: (mrr[m], -m))
    plain_a = _cli_metrics(str(a))
    assert doc["metrics"]["1.0"]["sides"]["both"] == pytest.approx(
        plain_a["sides"]["both"], rel=1e-9
    )
    own = _cli_metrics(str(b), "--rerank", str(a), "--rerank-k", "5")
    assert doc["metrics"]["0.0"]["sides"] == own["sides"]
    text = CliRunner().invoke(
        cli, ["evaluate", str(b), "--rerank", str(a), "--rerank-k", "5", "--mix-sweep", "0.5"]
    )
    assert text.exit_code == 0 and "<- best" in text.output and "w = 0.500" in text.output
    bad = CliRunner().invoke(cli, ["evaluate", str(b), "--mix-sweep", "0.5"])
    assert bad.exit_code == 2 and "--rerank" in bad.output


def test_mix_grid_and_best_mix() -> None:
    """The sweep's grid always ends at 1 (a step that does not divide 1 too); the best weight is the smaller one
    on a tie; a step outside (0, 1] is refused."""
    from kgdistill.errors import KGDistillError
    from kgdistill.evaluate import best_mix, mix_grid

    assert mix_grid(0.25) == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert mix_grid(0.3) == [0.0, 0.3, 0.6, 0.9, 1.0]
    assert mix_grid(1.0) == [0.0, 1.0]
    assert best_mix({1.0: 0.2, 0.5: 0.2, 0.0: 0.1}) == 0.5
    for bad in (0.0, 1.5, -0.1):
        with pytest.raises(KGDistillError, match="mix step"):
            mix_grid(bad)
