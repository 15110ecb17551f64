"""Ranking evaluation: tie handling, filtering, metrics, and ``evaluate()`` against a naive per-query loop."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch

from kgdistill.data import KG, build_kg, read_hyte
from kgdistill.data.batching import both_directions
from kgdistill.data.filters import FilterIndex
from kgdistill.data.time import UNKNOWN_ANCHOR
from kgdistill.errors import KGDistillError
from kgdistill.evaluate import (
    Metrics,
    default_chunk,
    evaluate,
    rank_filtered,
    rank_of_true,
    score_width,
    summarize,
)
from kgdistill.models import KGEModel, Vocab, build_model

FIXTURES = Path(__file__).parent / "fixtures"

# -- rank_of_true ------------------------------------------------------------------------------------------------

# LibKGE's example: a:10, b:10, c:10, d:11, e:9 with a true
LIBKGE = [10.0, 10.0, 10.0, 11.0, 9.0]


@pytest.mark.parametrize(
    ("ties", "rank"), [("optimistic", 2.0), ("pessimistic", 4.0), ("realistic", 3.0)]
)
def test_rank_of_true_libkge_tie_example(ties: str, rank: float) -> None:
    scores = torch.tensor([LIBKGE])
    got = rank_of_true(scores, torch.tensor([0]), ties=ties)  # type: ignore[arg-type]
    assert got.dtype == torch.float64
    assert got.tolist() == [rank]


def test_rank_of_true_default_is_realistic_and_may_end_in_half() -> None:
    scores = torch.tensor([LIBKGE, [1.0, 5.0, 5.0, 0.0, 2.0]])
    # row 2: true = e (2.0): greater b, c -> 3; no ties
    assert rank_of_true(scores.clone(), torch.tensor([0, 4])).tolist() == [3.0, 3.0]
    # row 2 with true = b: greater none, equal c -> realistic 1.5
    assert rank_of_true(scores.clone(), torch.tensor([0, 1])).tolist() == [3.0, 1.5]


def test_rank_of_true_unknown_tie_mode() -> None:
    with pytest.raises(KGDistillError, match="tie mode"):
        rank_of_true(torch.tensor([LIBKGE]), torch.tensor([0]), ties="average")  # type: ignore[arg-type]


def test_filter_removes_listed_entries_only() -> None:
    scores = torch.tensor([[10.0, 10.0, 10.0, 11.0, 9.0], [3.0, 2.0, 1.0, 4.0, 5.0]])
    targets = torch.tensor([0, 2])
    # remove d (11) and b (10, a tie) from row 0; e (5) from row 1
    rows, cols = torch.tensor([0, 0, 1]), torch.tensor([3, 1, 4])
    ranks = rank_of_true(scores.clone(), targets, rows, cols, ties="realistic")
    # row 0: nothing greater, one tie (c) -> 1.5; row 1: a, b, d greater (e removed) -> 4
    assert ranks.tolist() == [1.5, 4.0]
    pess = rank_of_true(scores.clone(), targets, rows, cols, ties="pessimistic")
    assert pess.tolist() == [2.0, 4.0]
    unfiltered = rank_of_true(scores.clone(), targets, ties="realistic")
    assert unfiltered.tolist() == [3.0, 5.0]


def test_filter_never_removes_the_true_answers_comparison() -> None:
    scores = torch.tensor([[10.0, 10.0, 10.0, 11.0, 9.0]])
    target = torch.tensor([0])
    plain = rank_of_true(scores.clone(), target, ties="pessimistic")
    # listing the true answer itself (as a filter built from all splits does) changes nothing
    listed = rank_of_true(
        scores.clone(), target, torch.tensor([0, 0]), torch.tensor([0, 0]), ties="pessimistic"
    )
    assert listed.tolist() == plain.tolist() == [4.0]
    # listing the true answer together with a better one removes only the better one
    both = rank_of_true(
        scores.clone(), target, torch.tensor([0, 0]), torch.tensor([0, 3]), ties="pessimistic"
    )
    assert both.tolist() == [3.0]


def test_filter_with_rows_but_no_cols_is_ignored() -> None:
    scores = torch.tensor([LIBKGE])
    got = rank_of_true(scores, torch.tensor([0]), torch.tensor([0]), None, ties="optimistic")
    assert got.tolist() == [2.0]


def test_true_answer_is_never_counted_against_itself() -> None:
    scores = torch.tensor([[0.0, 0.0, 0.0]])
    assert rank_of_true(scores.clone(), torch.tensor([1]), ties="optimistic").tolist() == [1.0]
    assert rank_of_true(scores.clone(), torch.tensor([1]), ties="pessimistic").tolist() == [3.0]


def test_nan_true_score_raises() -> None:
    scores = torch.tensor([[1.0, 2.0, 3.0], [math.nan, 0.0, 1.0]])
    with pytest.raises(KGDistillError, match="NaN"):
        rank_of_true(scores, torch.tensor([0, 0]))


def test_all_nan_scores_raise() -> None:
    scores = torch.full((2, 4), math.nan)
    with pytest.raises(KGDistillError, match="NaN"):
        rank_of_true(scores, torch.tensor([1, 2]))


def test_nan_score_of_another_candidate_raises() -> None:
    """A NaN anywhere in the scores means a broken model; silently ranking NaN below the true answer inflates
    the metrics (here the true answer would get rank 1 although the model is broken)."""
    scores = torch.tensor([[1.0, math.nan, math.nan, math.nan]])
    with pytest.raises(KGDistillError, match="NaN"):
        rank_of_true(scores, torch.tensor([0]))


def _reference_ranks(
    scores: torch.Tensor,
    targets: torch.Tensor,
    rows: torch.Tensor | None,
    cols: torch.Tensor | None,
    ties: str,
) -> torch.Tensor:
    """The plain two-comparison count (the evaluator's former implementation)."""
    scores = scores.clone()
    true = scores.gather(1, targets.unsqueeze(1))
    if rows is not None and cols is not None:
        scores[rows, cols] = -math.inf
    scores.scatter_(1, targets.unsqueeze(1), -math.inf)
    greater = (scores > true).sum(1).double()
    equal = (scores == true).sum(1).double()
    return {
        "optimistic": 1 + greater,
        "pessimistic": 1 + greater + equal,
        "realistic": 1 + greater + equal / 2,
    }[ties]


@pytest.mark.parametrize("ties", ["realistic", "optimistic", "pessimistic"])
@pytest.mark.parametrize("infinite", ["none", "-inf", "+-inf"])
def test_rank_of_true_sign_count_equals_two_comparisons(ties: str, infinite: str) -> None:
    """Random integer scores (many exact ties), random filters, and optionally -inf scores (a teacher's unknown
    entities) or +-inf scores, the true ones included: the one-pass sign count (or the comparison fallback)
    gives exactly the two-comparison ranks."""
    gen = torch.Generator().manual_seed(1)
    for _ in range(20):
        scores = torch.randint(-4, 5, (13, 37), generator=gen).float()
        if infinite == "+-inf":
            scores[torch.rand(scores.shape, generator=gen) < 0.1] = math.inf
        if infinite != "none":
            scores[torch.rand(scores.shape, generator=gen) < 0.1] = -math.inf
        targets = torch.randint(0, 37, (13,), generator=gen)
        n = 60
        rows, cols = (
            torch.randint(0, 13, (n,), generator=gen),
            torch.randint(0, 37, (n,), generator=gen),
        )
        want = _reference_ranks(scores, targets, rows, cols, ties)
        got = rank_of_true(scores.clone(), targets, rows, cols, ties)  # type: ignore[arg-type]
        assert got.dtype == torch.float64
        assert got.tolist() == want.tolist()
        unfiltered = rank_of_true(scores.clone(), targets, ties=ties)  # type: ignore[arg-type]
        assert unfiltered.tolist() == _reference_ranks(scores, targets, None, None, ties).tolist()
        flat = rank_filtered(scores.clone(), targets, rows * 37 + cols, ties)  # type: ignore[arg-type]
        assert flat.tolist() == want.tolist()
        # a non-contiguous score matrix (a transposed view) takes the same path
        strided = scores.T.contiguous().T
        assert not strided.is_contiguous()
        got = rank_filtered(strided, targets, rows * 37 + cols, ties)  # type: ignore[arg-type]
        assert got.tolist() == want.tolist()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_rank_of_true_other_dtypes(dtype: torch.dtype) -> None:
    scores = torch.tensor([LIBKGE, [1.0, 5.0, 5.0, 0.0, 2.0]], dtype=dtype)
    targets = torch.tensor([0, 1])
    for ties, want in [
        ("optimistic", [2.0, 1.0]),
        ("realistic", [3.0, 1.5]),
        ("pessimistic", [4.0, 2.0]),
    ]:
        got = rank_of_true(scores.clone(), targets, ties=ties)  # type: ignore[arg-type]
        assert got.tolist() == want


def test_rank_of_true_tiny_differences_are_not_ties() -> None:
    """Scores one float apart (also subnormal ones) are not ties: their difference is never rounded to 0."""
    one = torch.tensor(1.0)
    tiny = torch.tensor(1.0e-45)  # the smallest positive float32 (subnormal)
    row = torch.stack(
        [one, torch.nextafter(one, torch.tensor(2.0)), torch.nextafter(one, torch.tensor(0.0))]
    )
    assert rank_of_true(row.unsqueeze(0), torch.tensor([0])).tolist() == [2.0]
    row = torch.stack([tiny, 2 * tiny, torch.tensor(0.0)])
    assert rank_of_true(row.unsqueeze(0), torch.tensor([0])).tolist() == [2.0]


def test_rank_of_true_counts_exactly_beyond_float32_integers() -> None:
    """Beyond 2^24 columns a float32 sum of signs would round; the balance is then summed in float64."""
    n = (1 << 24) + 3
    scores = torch.zeros(1, n)
    scores[0, 5] = 1.0
    assert rank_of_true(scores, torch.tensor([5])).tolist() == [1.0]
    scores = torch.zeros(1, n)
    scores[0, 0] = -1.0
    assert rank_of_true(scores, torch.tensor([0]), ties="optimistic").tolist() == [float(n)]


def test_nan_score_of_a_filtered_entry_raises() -> None:
    """NaN is found before the filter overwrites it with -inf."""
    scores = torch.tensor([[1.0, math.nan, 0.0]])
    with pytest.raises(KGDistillError, match="NaN"):
        rank_of_true(scores, torch.tensor([0]), torch.tensor([0]), torch.tensor([1]))


def test_default_chunk_by_width() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert default_chunk(14541, cpu) == (1 << 22) // 14541  # unknown width: the old fixed budget
    assert default_chunk(14541, cpu, 16) == (1 << 20) // 14541
    assert default_chunk(14541, cpu, 32) == (1 << 20) // 14541  # 2^14 * 32 is below the floor
    assert default_chunk(14541, cpu, 200) == (200 << 14) // 14541
    assert default_chunk(14541, cpu, 2000) == (1 << 22) // 14541
    assert default_chunk(40943, cpu, 16) == (1 << 20) // 40943
    assert default_chunk(100_000, cpu, 16) == 16  # at least 16 queries
    assert default_chunk(10, cpu, 16) == 4096  # at most 4096
    assert default_chunk(14541, cuda, 16) == 4096
    model = build_model({"name": "complex", "dim": 8}, Vocab(20, 3))
    assert score_width(model) == 16  # [re | im]
    assert score_width(HashScores(5)) is None


# -- summarize --------------------------------------------------------------------------------------------------


def test_summarize_hand_values() -> None:
    ranks = torch.tensor([1.0, 2.0, 4.0, 10.0, 11.0, 1.5])
    out = summarize(ranks, ks=(1, 3, 10))
    assert set(out) == {"mrr", "mr", "hits@1", "hits@3", "hits@10"}
    assert out["mrr"] == pytest.approx((1 + 1 / 2 + 1 / 4 + 1 / 10 + 1 / 11 + 1 / 1.5) / 6)
    assert out["mr"] == pytest.approx(29.5 / 6)
    assert out["hits@1"] == pytest.approx(1 / 6)  # 1.5 is not a hit at 1
    assert out["hits@3"] == pytest.approx(3 / 6)
    assert out["hits@10"] == pytest.approx(5 / 6)
    assert all(isinstance(v, float) for v in out.values())


def test_summarize_custom_ks_and_integer_ranks() -> None:
    out = summarize(torch.tensor([1, 5, 100]), ks=(5,))
    assert set(out) == {"mrr", "mr", "hits@5"}
    assert out["hits@5"] == pytest.approx(2 / 3)
    assert out["mrr"] == pytest.approx((1 + 0.2 + 0.01) / 3)
    assert out["mr"] == pytest.approx(106 / 3)


# -- evaluate() against a naive loop --------------------------------------------------------------------------------


class HashScores(torch.nn.Module):
    """A deterministic "random" model with exact integer scores (many exact ties), depending on h, r, tau and
    the candidate: ranks do not depend on floating-point rounding, so they can be compared exactly."""

    def __init__(self, num_entities: int, levels: int = 23) -> None:
        super().__init__()
        self.num_entities, self.levels = num_entities, levels
        self.zero = torch.nn.Parameter(torch.zeros(()))

    def score_all(self, queries: torch.Tensor) -> torch.Tensor:
        e = torch.arange(self.num_entities)
        key = queries[:, :1] * 7919 + queries[:, 1:2] * 104729 + e * 31337
        if queries.shape[1] > 3:
            key = key + queries[:, 3:4] * 7213
        return (key % self.levels).float() + self.zero


def _random_model(kg: KG, name: str) -> KGEModel:
    torch.manual_seed(0)
    return build_model(
        {"name": name, "dim": 8}, Vocab(kg.num_entities, kg.num_relations, tuple(kg.time.labels))
    )


#: (id(kg), time_aware) -> (kg, known answers); holding the graph keeps its id from being reused.
_KNOWN_CACHE: dict[tuple[int, bool], tuple[KG, dict[tuple[int, int], np.ndarray]]] = {}


def _known(kg: KG, time_aware: bool) -> dict[tuple[int, int], np.ndarray]:
    """(h, r) -> ``(n, 3)`` rows ``(answer, lo, hi)`` over train/valid/test in both directions (static filter:
    unbounded validity). Cached per graph."""
    cache_key = (id(kg), time_aware)
    if cache_key in _KNOWN_CACHE:
        return _KNOWN_CACHE[cache_key][1]
    lists: dict[tuple[int, int], list[tuple[float, float, float]]] = defaultdict(list)
    for split in ("train", "valid", "test"):
        facts = kg.facts[split].tolist()
        if time_aware and kg.temporal:
            assert kg.validity is not None
            val = kg.validity[split].tolist()
        else:
            val = [(-math.inf, math.inf)] * len(facts)
        for (h, r, t), (lo, hi) in zip(facts, val, strict=True):
            lists[(h, r)].append((t, lo, hi))
            lists[(t, r + kg.num_relations)].append((h, lo, hi))
    known = {k: np.asarray(v, dtype=np.float64) for k, v in lists.items()}
    _KNOWN_CACHE[cache_key] = (kg, known)
    return known


def _same_time(kg: KG) -> dict[tuple[int, int, int], list[int]]:
    """(h, r, tau) -> answers of the quadruples as modelled (train/valid/test, both directions): the timestamp
    filter's known answers."""
    out: dict[tuple[int, int, int], list[int]] = defaultdict(list)
    for split in ("train", "valid", "test"):
        for h, r, t, tau in kg.splits[split].tolist():
            out[(h, r, tau)].append(t)
            out[(t, r + kg.num_relations, tau)].append(h)
    return out


def _naive_queries(kg: KG, split: str, n: int) -> list[list[int]]:
    facts = kg.splits[split][:n].tolist()
    heads = []
    for f in facts:  # head queries: the tail query of the reciprocal relation
        q = list(f)
        q[0], q[1], q[2] = f[2], f[1] + kg.num_relations, f[0]
        heads.append(q)
    return [list(f) for f in facts] + heads


def _naive_ranks(
    scores: torch.Tensor,
    queries: list[list[int]],
    kg: KG,
    *,
    filtered: bool = True,
    time_aware: bool = True,
    time_filter: str = "validity",
    ties: str = "realistic",
) -> torch.Tensor:
    """One query at a time: drop the known answers valid at the query's time (``timestamp``: those of known
    quadruples with the query's time id; never the true one), count.

    (numpy, not torch: thousands of tiny single-row operations.)
    """
    timestamp = filtered and time_aware and kg.temporal and time_filter == "timestamp"
    same_time = _same_time(kg) if timestamp else {}
    known = _known(kg, time_aware) if filtered and not timestamp else {}
    ranks = []
    for row, q in zip(scores.numpy(), queries, strict=True):
        h, r, t = q[0], q[1], q[2]
        anchor = kg.time.anchors[q[3]] if kg.temporal else 0
        keep = np.ones(len(row), dtype=bool)
        entries = known.get((h, r))
        if timestamp:
            keep[same_time.get((h, r, q[3]), [])] = False
        elif entries is not None:
            answer, lo, hi = entries.T
            valid = (lo <= anchor) & (anchor <= hi)
            if anchor == UNKNOWN_ANCHOR:  # a query at the "unknown" time: static filter
                valid[:] = True
            keep[answer[valid].astype(np.int64)] = False
        keep[t] = False
        others = row[keep]
        greater = int((others > row[t]).sum())
        equal = int((others == row[t]).sum())
        rank = {
            "optimistic": 1 + greater,
            "pessimistic": 1 + greater + equal,
            "realistic": 1 + greater + equal / 2,
        }[ties]
        ranks.append(float(rank))
    return torch.tensor(ranks, dtype=torch.float64)


def _expected_sides(naive: torch.Tensor, n: int) -> dict[str, dict[str, float]]:
    return {
        "both": summarize(naive),
        "tail": summarize(naive[:n]),
        "head": summarize(naive[n:]),
    }


def _assert_matches(metrics: Metrics, naive: torch.Tensor, n: int) -> None:
    assert set(metrics.sides) == {"both", "head", "tail"}
    for side, values in _expected_sides(naive, n).items():
        assert metrics.sides[side] == pytest.approx(values, rel=1e-12, abs=1e-12), side


CASES = [
    # kg, split, number of facts, time-aware
    ("tiny_kg", "test", None, True),
    ("tiny_kg", "valid", None, True),
    ("tiny_tkg", "test", None, True),
    ("tiny_tkg", "test", None, False),
    ("tiny_tkg", "valid", None, True),
    ("tiny_point_kg", "test", 80, True),
    ("tiny_point_kg", "test", 80, False),
    ("yago", "test", 120, True),
    ("yago", "test", 120, False),
    # train reaches a fact with no known year (time id "unknown", filtered statically)
    ("yago", "train", 280, True),
]


@pytest.mark.parametrize(("kg_name", "split", "n", "time_aware"), CASES)
@pytest.mark.parametrize("ties", ["realistic", "optimistic", "pessimistic"])
def test_evaluate_matches_naive_loop_with_exact_ties(
    request: pytest.FixtureRequest,
    kg_name: str,
    split: str,
    n: int | None,
    time_aware: bool,
    ties: str,
) -> None:
    kg: KG = request.getfixturevalue(kg_name)
    model = HashScores(kg.num_entities)
    n_facts = n or len(kg.splits[split])
    metrics = evaluate(
        model,
        kg,
        split,
        time_aware=time_aware,
        max_queries=n,
        batch_size=50,
        ties=ties,  # type: ignore[arg-type]
    )
    queries = _naive_queries(kg, split, n_facts)
    scores = model.score_all(torch.tensor(queries)).detach()
    naive = _naive_ranks(scores, queries, kg, time_aware=time_aware, ties=ties)
    if ties == "realistic":
        assert (naive % 1 == 0.5).any(), "no ties: the comparison misses tie handling"
    _assert_matches(metrics, naive, n_facts)
    unfiltered = _naive_ranks(scores, queries, kg, filtered=False, ties=ties)
    assert (naive <= unfiltered).all()
    assert (naive < unfiltered).any(), "the filter removed nothing: the comparison proves little"
    raw = evaluate(model, kg, split, filtered=False, max_queries=n, ties=ties)  # type: ignore[arg-type]
    _assert_matches(raw, unfiltered, n_facts)


@pytest.mark.parametrize(
    ("kg_name", "split", "n"),
    [
        ("yago", "test", 150),
        ("yago", "train", 280),
        ("tiny_tkg", "valid", None),
        ("tiny_point_kg", "test", 80),
    ],
)
def test_evaluate_timestamp_filter_matches_naive_loop(
    request: pytest.FixtureRequest, kg_name: str, split: str, n: int | None
) -> None:
    """The timestamp filter (tkbc / TeRo) ranks as a per-query loop over the same-time quadruples, and never
    better than the validity filter (it removes a subset of its answers)."""
    kg: KG = request.getfixturevalue(kg_name)
    model = HashScores(kg.num_entities)
    n_facts = n or len(kg.splits[split])
    metrics = evaluate(model, kg, split, time_filter="timestamp", max_queries=n, batch_size=50)
    assert metrics.protocol["filter"] == "time-aware"
    assert metrics.protocol["filter_mode"] == "timestamp"
    queries = _naive_queries(kg, split, n_facts)
    scores = model.score_all(torch.tensor(queries)).detach()
    naive = _naive_ranks(scores, queries, kg, time_filter="timestamp")
    _assert_matches(metrics, naive, n_facts)
    validity = _naive_ranks(scores, queries, kg)
    assert (naive >= validity).all()
    if kg.time.kind == "interval":
        assert (naive > validity).any(), "the two filters agree here: the comparison proves little"
    else:  # point data: the same filter
        assert torch.equal(naive, validity)


class Oracle:
    """Scores the query's true answer (column ``t`` of the query) 1, every other entity 0."""

    def __init__(self, num_entities: int) -> None:
        self.num_entities = num_entities

    def score_all(self, queries: torch.Tensor) -> torch.Tensor:
        scores = torch.zeros(len(queries), self.num_entities)
        return scores.scatter_(1, queries[:, 2:3], 1.0)


@pytest.mark.parametrize("time_filter", ["validity", "timestamp"])
def test_the_true_answer_is_never_filtered(yago: KG, time_filter: str) -> None:
    """Each query's own quadruple is a known fact at its time id, yet its answer is ranked (first, here)."""
    oracle = Oracle(yago.num_entities)
    metrics = evaluate(oracle, yago, "test", time_filter=time_filter)  # type: ignore[arg-type]
    assert metrics.protocol["filter_mode"] == (
        "timestamp" if time_filter == "timestamp" else "interval"
    )
    assert metrics.sides["both"]["mrr"] == 1.0 and metrics.sides["both"]["mr"] == 1.0


def test_unknown_time_queries_use_the_static_filter(yago: KG) -> None:
    unknown = yago.time.labels.index("unknown")
    assert yago.time.anchors[unknown] == UNKNOWN_ANCHOR
    facts = yago.splits["train"][:1100]
    at_unknown = facts[:, 3] == unknown
    assert at_unknown.sum() >= 2  # the yago train case above reaches one
    aware, static = FilterIndex.build(yago), FilterIndex.build(yago, time_aware=False)

    def answers(index: FilterIndex, queries: torch.Tensor) -> list[set[int]]:
        rows, cols = index.known(queries)
        out: list[set[int]] = [set() for _ in range(len(queries))]
        for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
            out[r].add(c)
        return out

    queries = both_directions(facts, yago.num_relations)
    a, s = answers(aware, queries), answers(static, queries)
    unknown_rows = at_unknown.repeat(2).tolist()
    for i, is_unknown in enumerate(unknown_rows):
        assert queries[i, 2].item() in a[i]  # a fact is known at its own time
        if is_unknown:
            assert a[i] == s[i]
        else:
            assert a[i] <= s[i]
    assert any(a[i] < s[i] for i, u in enumerate(unknown_rows) if not u)


def test_time_aware_filter_differs_from_static_filter(tiny_tkg: KG) -> None:
    queries = _naive_queries(tiny_tkg, "test", len(tiny_tkg.splits["test"]))
    scores = HashScores(tiny_tkg.num_entities).score_all(torch.tensor(queries)).detach()
    aware = _naive_ranks(scores, queries, tiny_tkg, time_aware=True)
    static = _naive_ranks(scores, queries, tiny_tkg, time_aware=False)
    assert (static <= aware).all()
    assert (static < aware).any()


@pytest.mark.parametrize(
    ("kg_name", "model_name", "n"),
    [
        ("tiny_kg", "complex", None),
        ("tiny_tkg", "ttranse", None),
        ("tiny_tkg", "ta_distmult", None),
        ("tiny_point_kg", "hyte", 60),
        ("yago", "tntcomplex", 60),
    ],
)
def test_evaluate_random_kge_model_matches_naive_loop(
    request: pytest.FixtureRequest, kg_name: str, model_name: str, n: int | None
) -> None:
    kg: KG = request.getfixturevalue(kg_name)
    model = _random_model(kg, model_name)
    model.train()
    split = "test"
    n_facts = n or len(kg.splits[split])
    # one chunk, so evaluate() and the naive loop see bit-identical scores
    metrics = evaluate(model, kg, split, max_queries=n, batch_size=2 * n_facts)
    assert model.training, "evaluate() must restore the training mode"
    queries = _naive_queries(kg, split, n_facts)
    with torch.no_grad():
        scores = model.score_all(torch.tensor(queries))
    _assert_matches(metrics, _naive_ranks(scores, queries, kg), n_facts)


class InfiniteScores(HashScores):
    """``HashScores`` with ``+inf`` and ``-inf`` on some levels: ``inf - inf`` must not break the counts."""

    def score_all(self, queries: torch.Tensor) -> torch.Tensor:
        scores = super().score_all(queries)
        return scores.masked_fill(scores == 0, math.inf).masked_fill(scores == 1, -math.inf)


@pytest.mark.parametrize("ties", ["realistic", "optimistic", "pessimistic"])
def test_evaluate_with_infinite_scores_matches_naive_loop(tiny_kg: KG, ties: str) -> None:
    model = InfiniteScores(tiny_kg.num_entities)
    metrics = evaluate(model, tiny_kg, "test", ties=ties, batch_size=9)  # type: ignore[arg-type]
    n = len(tiny_kg.splits["test"])
    queries = _naive_queries(tiny_kg, "test", n)
    scores = model.score_all(torch.tensor(queries)).detach()
    assert scores.isinf().any()
    _assert_matches(metrics, _naive_ranks(scores, queries, tiny_kg, ties=ties), n)


def test_evaluate_casts_other_score_dtypes(tiny_kg: KG) -> None:
    class Double(HashScores):
        def score_all(self, queries: torch.Tensor) -> torch.Tensor:
            return super().score_all(queries).double()

    a = evaluate(Double(tiny_kg.num_entities), tiny_kg, "test")
    b = evaluate(HashScores(tiny_kg.num_entities), tiny_kg, "test")
    assert a.sides == b.sides


def test_evaluate_restores_training_mode_after_an_error(tiny_kg: KG) -> None:
    model = HashScores(tiny_kg.num_entities)
    model.train()
    with torch.no_grad():
        model.zero.fill_(math.nan)
    with pytest.raises(KGDistillError):
        evaluate(model, tiny_kg, "test")
    assert model.training


def test_chunking_does_not_change_results(tiny_tkg: KG) -> None:
    model = HashScores(tiny_tkg.num_entities)
    a = evaluate(model, tiny_tkg, "test", batch_size=7)
    b = evaluate(model, tiny_tkg, "test", batch_size=100_000)
    c = evaluate(model, tiny_tkg, "test")
    assert a.sides == b.sides == c.sides


def test_prebuilt_filter_index_gives_the_same_result(tiny_point_kg: KG) -> None:
    model = HashScores(tiny_point_kg.num_entities)
    index = FilterIndex.build(tiny_point_kg)
    a = evaluate(model, tiny_point_kg, "valid", filter_index=index)
    b = evaluate(model, tiny_point_kg, "valid")
    assert a.sides == b.sides


def test_head_tail_and_both_sides(tiny_tkg: KG) -> None:
    model = HashScores(tiny_tkg.num_entities)
    m = evaluate(model, tiny_tkg, "test")
    n = len(tiny_tkg.splits["test"])
    queries = _naive_queries(tiny_tkg, "test", n)
    naive = _naive_ranks(model.score_all(torch.tensor(queries)).detach(), queries, tiny_tkg)
    assert m.sides["tail"]["mr"] == pytest.approx(float(naive[:n].mean()))
    assert m.sides["head"]["mr"] == pytest.approx(float(naive[n:].mean()))
    assert m.sides["head"]["mr"] != m.sides["tail"]["mr"]
    # both = the mean over the 2n queries
    for key in ("mrr", "mr", "hits@1", "hits@3", "hits@10"):
        mean = (m.sides["head"][key] + m.sides["tail"][key]) / 2
        assert m.sides["both"][key] == pytest.approx(mean)
    assert m.mrr == m.sides["both"]["mrr"]
    assert m.mr == m.sides["both"]["mr"]
    assert m.hits(3) == m.sides["both"]["hits@3"]
    assert m.to_dict()["sides"] == m.sides


def test_max_queries_takes_the_first_facts(yago: KG) -> None:
    model = HashScores(yago.num_entities)
    m = evaluate(model, yago, "test", max_queries=25)
    assert m.protocol["facts"] == 25
    assert m.protocol["queries"] == 50
    queries = _naive_queries(yago, "test", 25)
    naive = _naive_ranks(model.score_all(torch.tensor(queries)).detach(), queries, yago)
    _assert_matches(m, naive, 25)
    # a larger prefix gives other values
    assert evaluate(model, yago, "test", max_queries=26).sides != m.sides


@pytest.mark.parametrize("kg_name", ["tiny_kg", "tiny_tkg", "tiny_point_kg"])
def test_unfiltered_ranks_are_never_better(request: pytest.FixtureRequest, kg_name: str) -> None:
    kg: KG = request.getfixturevalue(kg_name)
    model = _random_model(kg, "ttranse" if kg.temporal else "distmult")
    f = evaluate(model, kg, "test", ties="pessimistic")
    u = evaluate(model, kg, "test", filtered=False, ties="pessimistic")
    for side in ("both", "head", "tail"):
        assert u.sides[side]["mr"] >= f.sides[side]["mr"]
        assert u.sides[side]["mrr"] <= f.sides[side]["mrr"]
        for k in (1, 3, 10):
            assert u.sides[side][f"hits@{k}"] <= f.sides[side][f"hits@{k}"]
    assert u.sides["both"]["mr"] > f.sides["both"]["mr"]


def test_tie_modes_are_ordered(tiny_kg: KG) -> None:
    model = HashScores(tiny_kg.num_entities)
    o, r, p = (
        evaluate(model, tiny_kg, "test", ties=t).mr
        for t in ("optimistic", "realistic", "pessimistic")
    )
    assert o < r < p
    assert r == pytest.approx((o + p) / 2)


def test_protocol_temporal_interval(tiny_tkg: KG) -> None:
    model = HashScores(tiny_tkg.num_entities)
    p = evaluate(model, tiny_tkg, "valid", ties="optimistic").protocol
    n = len(tiny_tkg.splits["valid"])
    assert p["split"] == "valid"
    assert p["facts"] == n and p["queries"] == 2 * n
    assert p["filter"] == "time-aware"
    assert p["filter_mode"] == "interval"
    assert p["ties"] == "optimistic"
    assert "head" in p["directions"] and "tail" in p["directions"]
    assert p["time"] == {"kind": "interval", "mode": "start", "num_times": tiny_tkg.num_times}
    static = evaluate(model, tiny_tkg, "valid", time_aware=False).protocol
    assert static["filter"] == "static" and static["filter_mode"] == "static"
    assert static["ties"] == "realistic"
    none = evaluate(model, tiny_tkg, "valid", filtered=False).protocol
    assert none["filter"] == "none" and none["filter_mode"] == "none"


def test_protocol_point_and_static(tiny_point_kg: KG, tiny_kg: KG) -> None:
    p = evaluate(HashScores(tiny_point_kg.num_entities), tiny_point_kg, "test").protocol
    assert p["filter"] == "time-aware" and p["filter_mode"] == "point"
    assert p["time"] == {"kind": "point", "mode": None, "num_times": tiny_point_kg.num_times}
    s = evaluate(HashScores(tiny_kg.num_entities), tiny_kg, "test").protocol
    assert s["filter"] == "static" and s["filter_mode"] == "static"
    assert "time" not in s
    assert s["facts"] == len(tiny_kg.splits["test"])


def test_split_mode_interval_protocol() -> None:
    """``since`` / ``until`` time ids are filtered at their bin."""
    kg = build_kg(read_hyte(FIXTURES / "wikidata12k-mini"), interval_mode="split")
    assert any(label.startswith("until ") for label in kg.time.labels)
    model = HashScores(kg.num_entities)
    m = evaluate(model, kg, "test")
    assert m.protocol["time"]["mode"] == "split"
    n = len(kg.splits["test"])
    queries = _naive_queries(kg, "test", n)
    naive = _naive_ranks(model.score_all(torch.tensor(queries)).detach(), queries, kg)
    _assert_matches(m, naive, n)


def test_unknown_split_raises(tiny_kg: KG) -> None:
    with pytest.raises(KGDistillError, match="split 'dev'"):
        evaluate(HashScores(tiny_kg.num_entities), tiny_kg, "dev")


def test_nan_model_raises(tiny_kg: KG) -> None:
    model = HashScores(tiny_kg.num_entities)
    with torch.no_grad():
        model.zero.fill_(math.nan)
    with pytest.raises(KGDistillError, match="NaN"):
        evaluate(model, tiny_kg, "test")
