"""Filtered (static) and time-aware filtered (temporal) ranking evaluation, vectorised and chunked.

For every query ``(h, r, ?, [tau])`` (tail queries and head queries as reciprocal tail queries) all entities
are scored in one matrix product per chunk, every other known answer is set to ``-inf`` through the
:class:`~kgdistill.data.filters.FilterIndex`, and the true answer's rank is counted without a loop over queries.
Which answers a temporal query filters is ``time_filter``'s choice (``validity``: true at the query's time;
``timestamp``: known at the query's own time id, as tkbc / TeRo); the metrics' protocol records the filter's
``filter_mode`` (see :mod:`kgdistill.data.filters`).

Ties (LibKGE's example: scores a:10, b:10, c:10, d:11, e:9 with ``a`` true give ranks 2 / 4 / 3):
``optimistic = 1 + #greater``, ``pessimistic = 1 + #greater + #equal``, ``realistic`` = their mean, the
expected rank under random tie breaking (default; PyKEEN's realistic rank).

Re-ranking (:func:`evaluate_rerank`): a retriever scores all entities, its filtered top-k are rescored by a
reranker (``score_candidates``), and the true answer's rank is read from the combined order (see there). The
reranker's scores can be fused with the retriever's (``mix``, :func:`fuse_scores`), and
:func:`evaluate_rerank_sweep` reads the metrics of several ``mix`` values from one reranker pass (to choose it on
validation).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import torch
from tqdm.auto import tqdm

from kgdistill import dist
from kgdistill.breakdown import breakdown
from kgdistill.config import TimeFilter
from kgdistill.data.batching import both_directions
from kgdistill.data.filters import FilterIndex
from kgdistill.data.kg import KG
from kgdistill.errors import KGDistillError
from kgdistill.summary import summarize
from kgdistill.types import TAIL, BoolTensor, FloatTensor, LongTensor, TieMode

__all__ = [
    "Metrics",
    "best_mix",
    "default_chunk",
    "evaluate",
    "evaluate_model",
    "evaluate_rerank",
    "evaluate_rerank_sweep",
    "fuse_scores",
    "mix_grid",
    "rank_filtered",
    "rank_of_true",
    "rerank_ranks",
    "summarize",
    "topk_candidates",
]

TIE_MODES = ("optimistic", "pessimistic", "realistic")

#: a float32 sum of values in {-1, 0, 1} is exact while it stays below 2^24 in magnitude
_EXACT_FLOAT32_COUNT = 1 << 24


class Scorer(Protocol):
    """What :func:`evaluate` and a retriever need: ``score_all(queries (B, 3|4)) -> (B, E)``."""

    def score_all(self, queries: LongTensor) -> FloatTensor: ...


class CandidateScorer(Protocol):
    """What a reranker needs: ``score_candidates(queries (B, 3|4), candidates (B, C)) -> (B, C)``."""

    def score_candidates(self, queries: LongTensor, candidates: LongTensor) -> FloatTensor: ...


@dataclass
class Metrics:
    """Ranking metrics of one split, with the protocol that produced them (fractions, not percent).

    ``sides`` maps ``both`` / ``head`` / ``tail`` to ``{"mrr", "mr", "hits@k"...}``; ``breakdown``, when asked for
    (``by_relation``), the same per relation and relation category (:func:`kgdistill.breakdown.breakdown`).
    """

    sides: dict[str, dict[str, float]]
    protocol: dict[str, Any] = field(default_factory=dict)
    breakdown: dict[str, Any] | None = None

    @property
    def mrr(self) -> float:
        return self.sides["both"]["mrr"]

    @property
    def mr(self) -> float:
        return self.sides["both"]["mr"]

    def hits(self, k: int) -> float:
        return self.sides["both"][f"hits@{k}"]

    def to_dict(self) -> dict[str, Any]:
        """``{"sides", "protocol"}``, and ``"breakdown"`` when there is one."""
        out = asdict(self)
        if out["breakdown"] is None:
            del out["breakdown"]
        return out


# ------------------------------------------------------------------------------------------------ ranks
def _check_ties(ties: str) -> None:
    if ties not in TIE_MODES:
        raise KGDistillError(f"unknown tie mode '{ties}' (optimistic, pessimistic, realistic)")


def _nan_error() -> KGDistillError:
    return KGDistillError(
        "the model produced NaN scores; evaluation is meaningless (diverged training?)"
    )


def _tie_rank(greater: LongTensor, equal: LongTensor, ties: TieMode) -> FloatTensor:
    """``(B,)`` counts of other candidates scored above and level with the true one -> ``(B,)`` float64 ranks."""
    if ties == "optimistic":
        return (1 + greater).double()
    if ties == "pessimistic":
        return (1 + greater + equal).double()
    return 1 + greater.double() + equal.double() / 2


def rank_of_true(
    scores: FloatTensor,
    targets: LongTensor,
    rows: LongTensor | None = None,
    cols: LongTensor | None = None,
    ties: TieMode = "realistic",
) -> FloatTensor:
    """Filtered rank of each row's true entry. ``scores`` is modified in place.

    The removed entries and the true one are set to ``-inf``; then one in-place pass turns the scores into
    ``sign(score - true score)`` and its row sum is the balance ``b = #greater - #less`` over the ``E`` columns
    (``#equal = E - #greater - #less``), so ``realistic = 1 + (E + b) / 2`` needs no second comparison pass;
    ``optimistic`` (``1 + #greater``) and ``pessimistic`` (``1 + E - #greater + b``) add one pass for
    ``#greater``. The counts are exact: a float difference is zero only for equal floats (IEEE subnormals; under
    :func:`kgdistill.runs.flush_denormals`, which the ``kgdistill`` command sets, two scores that differ only
    below 1.18e-38 are tied, as for any comparison then), and the sums are integers below 2^24 (float64
    beyond). The maximum, taken first, finds NaN (which raises); ``+inf`` scores and infinite true scores
    (``inf - inf``) are counted by plain comparisons instead.

    Args:
        scores: ``(B, E)`` scores.
        targets: ``(B,)`` column of the true answer.
        rows / cols: ``(N,)`` entries to remove (other known answers); may include the true answers.
        ties: tie handling.

    Returns:
        ``(B,)`` float64 ranks (realistic ranks may end in .5).
    """
    flat = None
    if rows is not None and cols is not None:
        flat = rows * scores.shape[1] + cols
    return rank_filtered(scores, targets, flat, ties)


def rank_filtered(
    scores: FloatTensor,
    targets: LongTensor,
    flat: LongTensor | None = None,
    ties: TieMode = "realistic",
) -> FloatTensor:
    """:func:`rank_of_true` with the removed entries as flat positions ``row * E + col`` (``(N,)``, see
    :meth:`~kgdistill.data.filters.FilterIndex.known_flat_chunks`). ``scores`` is modified in place."""
    _check_ties(ties)
    col = targets.unsqueeze(1)
    true = scores.gather(1, col)
    # one cheap pass: the maximum is NaN if any score is (and +inf if any is); -inf scores (a teacher's
    # unknown entities) are fine as long as the true scores are finite
    fast = bool(torch.minimum(scores.amax(), true.min()).isfinite())
    if not fast and bool(scores.isnan().any()):
        raise _nan_error()
    if flat is not None:
        _fill(scores, flat, -math.inf)
    scores.scatter_(1, col, -math.inf)
    if not fast:  # +inf scores or an infinite true score: inf - inf would be NaN
        return _tie_rank((scores > true).sum(1), (scores == true).sum(1), ties)
    return _count_ranks(scores, true, ties)


def _fill(scores: FloatTensor, flat: LongTensor, value: float) -> None:
    """``scores (B, E)`` at the flat positions ``flat (N,)`` := ``value``, in place."""
    if scores.is_contiguous():
        scores.view(-1).index_fill_(0, flat, value)
    else:
        n = scores.shape[1]
        scores[flat // n, flat % n] = value


def _count_ranks(scores: FloatTensor, true: FloatTensor, ties: TieMode) -> FloatTensor:
    """Ranks of ``true (B, 1)`` among finite ``scores (B, E)`` whose removed entries are ``-inf``; the scores
    become the signs."""
    n = scores.shape[1]
    signs = scores.sub_(true).sign_()
    exact32 = scores.dtype == torch.float32 and n < _EXACT_FLOAT32_COUNT
    acc = torch.float32 if exact32 else torch.float64
    balance = signs.sum(1, dtype=acc).double()
    if ties == "realistic":
        return 1 + (n + balance) / 2
    greater = signs.clamp_(min=0).sum(1, dtype=acc).double()
    if ties == "optimistic":
        return 1 + greater
    return 1 + n - greater + balance


# ------------------------------------------------------------------------------------------------ chunks
def default_chunk(num_entities: int, device: torch.device, width: int | None = None) -> int:
    """Queries per evaluation chunk.

    On a GPU about 64M scores. On CPU the chunk's scores should stay in cache for the passes that follow the
    matrix product (masking, the sign pass, its sum), while a wide matrix product wants many rows to amortise
    packing the entity table: about ``2^14 * width`` scores, between 2^20 and 2^22; ``width`` is the length of
    the vectors the scores are dot products of (``None``: 2^22). Measured on FB15k-237 (2-core AMD EPYC, the
    evaluation speed benchmark with ``--chunk N --repeats 7``, medians): DistMult dim 16 took 0.37 s with
    36-query chunks (2^19 scores), 0.29-0.32 s with 72-108 (2^20), 0.41 s with 144 and 0.63 s with 288 (2^22);
    dim 32 0.50 s with 36, 0.41 s with 72; at dim 200 the 288-query chunks were the fastest.
    """
    if device.type == "cuda":
        budget = 1 << 26
    elif width is None:
        budget = 1 << 22
    else:
        budget = min(1 << 22, max(1 << 20, width << 14))
    return max(16, min(4096, budget // max(num_entities, 1)))


def score_width(model: object) -> int | None:
    """Width of the entity vectors ``model`` scores against (a :class:`~kgdistill.models.KGEModel`'s
    entity table), or ``None`` when it has none."""
    weight = getattr(getattr(model, "entities", None), "weight", None)
    return int(weight.shape[-1]) if isinstance(weight, torch.Tensor) and weight.dim() == 2 else None


def _device(model: object) -> torch.device:
    params = model.parameters() if isinstance(model, torch.nn.Module) else iter(())
    first = next(params, None)
    return first.device if first is not None else torch.device("cpu")


@dataclass
class _Setup:
    """What both evaluations share: the split's queries (tails, then heads) and the filter."""

    queries: LongTensor
    facts: int
    filter_index: FilterIndex | None
    batch_size: int


def _setup(
    kg: KG,
    split: str,
    device: torch.device,
    *,
    filter_index: FilterIndex | None,
    filtered: bool,
    time_aware: bool,
    time_filter: TimeFilter,
    batch_size: int | None,
    max_queries: int | None,
    width: int | None,
) -> _Setup:
    if split not in kg.splits:
        raise KGDistillError(f"split '{split}' not in dataset {kg.name} ({', '.join(kg.splits)})")
    facts = kg.splits[split][:max_queries] if max_queries else kg.splits[split]
    queries = both_directions(facts, kg.num_relations).to(device)
    index = None
    if filtered:
        if filter_index is None:
            filter_index = FilterIndex.build(kg, time_aware=time_aware, time_filter=time_filter)
        index = filter_index.to(device)
    chunk = batch_size or default_chunk(kg.num_entities, device, width)
    return _Setup(queries=queries, facts=len(facts), filter_index=index, batch_size=chunk)


def _chunks(
    setup: _Setup, desc: str, progress: bool
) -> Iterator[tuple[int, LongTensor, LongTensor | None, LongTensor | None]]:
    """``(start, queries (B, 3|4), rows, cols)`` per chunk; ``rows`` / ``cols``: its known answers or ``None``."""
    q, chunk = setup.queries, setup.batch_size
    lo, hi = dist.span(len(q), chunk)  # this rank's chunks (all of them with one process)
    starts = range(lo, hi, chunk)
    known = (
        setup.filter_index.known_chunks(q[lo:hi], chunk) if setup.filter_index is not None else None
    )
    for s in tqdm(
        starts, desc=desc, leave=False, disable=None if progress and dist.is_main() else True
    ):
        rows, cols = next(known) if known is not None else (None, None)
        yield s, q[s : s + chunk], rows, cols


def _sides(ranks: FloatTensor, n: int, ks: Sequence[int]) -> dict[str, dict[str, float]]:
    ranks = ranks.cpu()
    return {
        "both": summarize(ranks, ks),
        "tail": summarize(ranks[:n], ks),
        "head": summarize(ranks[n:], ks),
    }


def _metrics(
    ranks: FloatTensor,
    kg: KG,
    split: str,
    setup: _Setup,
    ties: TieMode,
    ks: Sequence[int],
    by_relation: bool,
) -> Metrics:
    """The split's :class:`Metrics` from all its ranks ``(2n,)`` (tails, then heads)."""
    extra = None
    if by_relation:
        extra = breakdown(ranks, kg.splits[split][: setup.facts, 1], kg, ks)
    return Metrics(
        sides=_sides(ranks, setup.facts, ks),
        protocol=_protocol(kg, split, setup, ties),
        breakdown=extra,
    )


def _protocol(kg: KG, split: str, setup: _Setup, ties: TieMode) -> dict[str, Any]:
    index = setup.filter_index
    protocol: dict[str, Any] = {
        "split": split,
        "queries": len(setup.queries),
        "facts": setup.facts,
        "filter": (
            ("time-aware" if index.time_aware else "static") if index is not None else "none"
        ),
        "filter_mode": index.mode if index is not None else "none",
        "ties": ties,
        "directions": "head and tail (head = tail query on the reciprocal relation)",
    }
    if kg.temporal:
        protocol["time"] = {
            "kind": kg.time.kind,
            "mode": kg.time.mode if kg.time.kind == "interval" else None,
            "num_times": kg.num_times,
        }
    return protocol


class _EvalMode:
    """``with _EvalMode(a, b):`` puts modules in eval mode and restores their training flags."""

    def __init__(self, *models: object) -> None:
        self.modules = [m for m in models if isinstance(m, torch.nn.Module)]
        self.flags = [m.training for m in self.modules]

    def __enter__(self) -> None:
        for m in self.modules:
            m.eval()

    def __exit__(self, *exc: object) -> None:
        for m, flag in zip(self.modules, self.flags, strict=True):
            m.train(flag)


# ------------------------------------------------------------------------------------------ evaluation
@torch.inference_mode()
def evaluate(
    model: Scorer,
    kg: KG,
    split: str = "test",
    *,
    filter_index: FilterIndex | None = None,
    filtered: bool = True,
    time_aware: bool = True,
    time_filter: TimeFilter = "validity",
    ties: TieMode = "realistic",
    ks: Sequence[int] = (1, 3, 10),
    batch_size: int | None = None,
    progress: bool = False,
    max_queries: int | None = None,
    by_relation: bool = False,
) -> Metrics:
    """Rank every query of ``split`` against all entities.

    Args:
        model: anything with ``score_all(queries (B, 3|4)) -> (B, E)`` (a :class:`~kgdistill.models.KGEModel`).
        kg: the graph; ``split`` names one of ``kg.splits``.
        filter_index: a prebuilt filter (reused across evaluations); built from train/valid/test if ``None``.
        filtered / time_aware: the filter setting (time-aware only applies to temporal graphs).
        time_filter: which time-aware filter, ``validity`` or ``timestamp`` (see :mod:`kgdistill.data.filters`).
        ties: tie handling. ks: the k of Hits@k.
        batch_size: queries per chunk; by default :func:`default_chunk` for the model's vector width.
        max_queries: evaluate only the first ``max_queries`` facts (quick validation during training).
        by_relation: also break the metrics down by relation and relation category (``Metrics.breakdown``).
    """
    _check_ties(ties)
    device = _device(model)
    setup = _setup(
        kg,
        split,
        device,
        filter_index=filter_index,
        filtered=filtered,
        time_aware=time_aware,
        time_filter=time_filter,
        batch_size=batch_size,
        max_queries=max_queries,
        width=score_width(model),
    )
    ranks = torch.empty(len(setup.queries), dtype=torch.float64, device=device)
    q, chunk, index = setup.queries, setup.batch_size, setup.filter_index
    # with several ranks (kgdistill.dist) each ranks its own run of whole chunks, then the ranks are gathered
    lo, hi = dist.span(len(q), chunk)
    known = index.known_flat_chunks(q[lo:hi], chunk, kg.num_entities) if index is not None else None
    starts = range(lo, hi, chunk)
    with _EvalMode(model):
        for s in tqdm(
            starts,
            desc=f"eval {split}",
            leave=False,
            disable=None if progress and dist.is_main() else True,
        ):
            part = q[s : s + chunk]
            scores = model.score_all(part)
            if scores.dtype != torch.float32:
                scores = scores.float()
            flat = next(known) if known is not None else None
            ranks[s : s + len(part)] = rank_filtered(scores, part[:, TAIL], flat, ties)
    ranks = dist.gather_span(ranks, lo, hi)
    return _metrics(ranks, kg, split, setup, ties, ks, by_relation)


# ------------------------------------------------------------------------------------------ re-ranking
def _describe(model: object) -> str:
    """A short name for the protocol: the class, and a KGE model's interaction."""
    interaction = getattr(model, "interaction", None)
    name = type(model).__name__
    return f"{name}({type(interaction).__name__})" if interaction is not None else name


def _valid_candidates(
    num_entities: int,
    targets: LongTensor,
    rows: LongTensor | None,
    cols: LongTensor | None,
) -> BoolTensor:
    """``(B, E)`` entities a query may rank: all but the other known answers (the true one stays)."""
    valid = torch.ones(len(targets), num_entities, dtype=torch.bool, device=targets.device)
    if rows is not None and cols is not None:
        valid[rows, cols] = False
    valid.scatter_(1, targets.unsqueeze(1), True)
    return valid


def topk_candidates(
    scores: FloatTensor, valid: BoolTensor, k: int
) -> tuple[LongTensor, BoolTensor, BoolTensor]:
    """Each row's ``k`` best valid entities by ``scores``, best first.

    Ties at the k-th score are broken towards the lower entity id (so is the order among equal scores).

    Args:
        scores: ``(B, E)`` retriever scores, no NaN.
        valid: ``(B, E)`` entities that may be candidates (at least one per row).
        k: candidates per row, ``1 <= k <= E``.

    Returns:
        ``ids (B, k)``: candidate entity ids in the retriever's order; a row with fewer than ``k`` valid
        entities ends in padding that repeats its best candidate.
        ``taken (B, k)``: which columns are real candidates (``False`` only on padding).
        ``chosen (B, E)``: the candidates as an entity mask.
    """
    masked = scores.masked_fill(~valid, -math.inf)
    count = valid.sum(1).clamp_(max=k)  # real candidates per row, >= 1
    kth = masked.topk(k, dim=1).values.gather(1, (count - 1).unsqueeze(1))  # (B, 1)
    above = valid & (scores > kth)
    level = valid & (scores == kth)
    need = (count - above.sum(1)).unsqueeze(1)
    chosen = above | (level & (level.cumsum(1) <= need))
    r, c = chosen.nonzero(as_tuple=True)  # row-major: ids ascending within a row
    first = count.cumsum(0) - count
    slot = torch.arange(len(r), device=r.device) - first[r]
    ids = torch.zeros(len(scores), k, dtype=torch.long, device=scores.device)
    taken = torch.zeros(len(scores), k, dtype=torch.bool, device=scores.device)
    ids[r, slot] = c
    taken[r, slot] = True
    # padding sorts after every real candidate (a stable sort keeps ties in id order)
    key = scores.gather(1, ids).masked_fill_(~taken, -math.inf)
    order = key.sort(dim=1, descending=True, stable=True).indices
    ids, taken = ids.gather(1, order), taken.gather(1, order)
    return torch.where(taken, ids, ids[:, :1]), taken, chosen


def rerank_ranks(
    retrieval: FloatTensor,
    valid: BoolTensor,
    targets: LongTensor,
    candidates: LongTensor,
    taken: BoolTensor,
    chosen: BoolTensor,
    rescored: FloatTensor,
    ties: TieMode = "realistic",
) -> FloatTensor:
    """Rank of the true answer when the candidates, reordered by the reranker, come before all other entities.

    Args:
        retrieval: ``(B, E)`` retriever scores. valid: ``(B, E)`` entities not filtered out.
        targets: ``(B,)`` true answers. candidates / taken / chosen: :func:`topk_candidates`' output.
        rescored: ``(B, k)`` reranker scores of ``candidates`` (read where ``taken``).
        ties: tie handling, within the candidates and within the rest alike.

    Returns:
        ``(B,)`` float64 ranks: among the candidates by ``rescored`` when the true answer is one of them, else
        ``#candidates`` + its filtered rank among the valid non-candidates by ``retrieval``.
    """
    col = targets.unsqueeze(1)
    hit = (candidates == col) & taken
    inside = hit.any(1)
    true_re = rescored.gather(1, hit.to(torch.uint8).argmax(1, keepdim=True))
    others = taken & ~hit
    greater_in = (others & (rescored > true_re)).sum(1)
    equal_in = (others & (rescored == true_re)).sum(1)
    true_rt = retrieval.gather(1, col)
    rest = (valid & ~chosen).scatter_(1, col, False)
    greater_out = (rest & (retrieval > true_rt)).sum(1)
    equal_out = (rest & (retrieval == true_rt)).sum(1)
    below = torch.where(inside, 0, taken.sum(1))
    greater = torch.where(inside, greater_in, greater_out)
    equal = torch.where(inside, equal_in, equal_out)
    return below.double() + _tie_rank(greater, equal, ties)


def mix_grid(step: float) -> list[float]:
    """The fusion weights ``0, step, 2 step, ... 1`` (1 always included), rounded to 6 decimals."""
    if not 0.0 < step <= 1.0:
        raise KGDistillError(f"rerank mix step must be in (0, 1], got {step}")
    return sorted({round(min(i * step, 1.0), 6) for i in range(round(1.0 / step) + 1)} | {1.0})


def best_mix(mrr: Mapping[float, float]) -> float:
    """The weight of the best MRR among ``{mix: mrr}``; on a tie the smaller one (the re-ranker's order first)."""
    return max(sorted(mrr), key=lambda m: (mrr[m], -m))


def fuse_scores(
    rescored: FloatTensor, retrieved: FloatTensor, taken: BoolTensor, mix: float
) -> FloatTensor:
    """The candidates' fused scores ``(1 - mix) * log_softmax(rescored) + mix * log_softmax(retrieved)``.

    Each model's scores become log-probabilities over the query's real candidates (a softmax over the
    ``taken`` columns), so scores of different scales (a cross-encoder's logits, a language model's
    log-likelihoods, a bi-encoder's ``cos / T``) mix on one scale. ``mix = 0`` returns ``rescored`` itself (the
    reranker's order, bit for bit); ``mix = 1`` orders the candidates as the retriever does.

    Args:
        rescored: ``(B, k)`` reranker scores. retrieved: ``(B, k)`` the retriever's scores of the same candidates.
        taken: ``(B, k)`` real candidates (padding columns come back as 0 and are never read).
        mix: the retriever's weight in ``[0, 1]``.

    Returns:
        ``(B, k)`` fused scores.
    """
    if not 0.0 <= mix <= 1.0:
        raise KGDistillError(f"rerank mix must be in [0, 1], got {mix}")
    if mix == 0.0:
        return rescored

    def logp(x: FloatTensor) -> FloatTensor:
        x = x.double().masked_fill(~taken, -math.inf)
        return torch.where(taken, x.log_softmax(1), 0.0)

    return (1.0 - mix) * logp(rescored) + mix * logp(retrieved)


@torch.inference_mode()
def evaluate_rerank_sweep(
    retriever: Scorer,
    reranker: CandidateScorer,
    kg: KG,
    split: str = "test",
    *,
    mixes: Sequence[float] = (0.0,),
    k: int = 100,
    filter_index: FilterIndex | None = None,
    filtered: bool = True,
    time_aware: bool = True,
    time_filter: TimeFilter = "validity",
    ties: TieMode = "realistic",
    ks: Sequence[int] = (1, 3, 10),
    batch_size: int | None = None,
    progress: bool = False,
    max_queries: int | None = None,
    by_relation: bool = False,
) -> dict[float, Metrics]:
    """:func:`evaluate_rerank` at every ``mix`` of ``mixes``, from one pass of the reranker.

    Returns:
        ``{mix: Metrics}``; each protocol's ``rerank`` records its ``mix``.
    """
    _check_ties(ties)
    if k < 1:
        raise KGDistillError(f"rerank k must be at least 1, got {k}")
    if not mixes:
        raise KGDistillError("rerank mixes: give at least one value")
    for mix in mixes:
        if not 0.0 <= mix <= 1.0:
            raise KGDistillError(f"rerank mix must be in [0, 1], got {mix}")
    k = min(k, kg.num_entities)
    device, rerank_device = _device(retriever), _device(reranker)
    setup = _setup(
        kg,
        split,
        device,
        filter_index=filter_index,
        filtered=filtered,
        time_aware=time_aware,
        time_filter=time_filter,
        batch_size=batch_size,
        max_queries=max_queries,
        width=score_width(retriever),
    )
    ranks = torch.empty(len(mixes), len(setup.queries), dtype=torch.float64, device=device)
    with _EvalMode(retriever, reranker):
        for s, q, rows, cols in _chunks(setup, f"rerank {split}", progress):
            retrieval = retriever.score_all(q).float()
            if bool(retrieval.isnan().any()):
                raise _nan_error()
            targets = q[:, TAIL]
            valid = _valid_candidates(kg.num_entities, targets, rows, cols)
            candidates, taken, chosen = topk_candidates(retrieval, valid, k)
            rescored = reranker.score_candidates(q.to(rerank_device), candidates.to(rerank_device))
            rescored = rescored.float().to(device)
            if bool((rescored.isnan() & taken).any()):
                raise _nan_error()
            retrieved = retrieval.gather(1, candidates)
            for i, mix in enumerate(mixes):
                ranks[i, s : s + len(q)] = rerank_ranks(
                    retrieval,
                    valid,
                    targets,
                    candidates,
                    taken,
                    chosen,
                    fuse_scores(rescored, retrieved, taken, mix),
                    ties,
                )
    span = dist.span(len(setup.queries), setup.batch_size)
    out: dict[float, Metrics] = {}
    for i, mix in enumerate(mixes):
        ranked = dist.gather_span(ranks[i].clone(), *span)
        out[mix] = _metrics(ranked, kg, split, setup, ties, ks, by_relation)
        out[mix].protocol["rerank"] = {
            "k": k,
            "retriever": _describe(retriever),
            "reranker": _describe(reranker),
            "mix": mix,
        }
    return out


def evaluate_rerank(
    retriever: Scorer,
    reranker: CandidateScorer,
    kg: KG,
    split: str = "test",
    *,
    k: int = 100,
    mix: float = 0.0,
    **protocol: Any,
) -> Metrics:
    """Re-ranking evaluation: a retriever's filtered top-k, rescored by a reranker, above everything else.

    For every query (the same queries, filter and tie modes as :func:`evaluate`):

    1. the retriever scores all entities (``score_all``);
    2. the other known answers are removed (the filtered protocol; the true answer stays) and the ``k`` best
       remaining entities by retriever score are the candidates (ties at the k-th score go to the lower
       entity id); fewer than ``k`` remain only when ``k`` is close to ``E``, and then all are candidates;
    3. the reranker scores the candidates, ``score_candidates(queries (B, 3|4), candidates (B, k)) -> (B, k)``,
       candidates given best-first in the retriever's order; with ``mix > 0`` these scores are fused with the
       retriever's (:func:`fuse_scores`);
    4. the final ranking puts the candidates first, in the reranker's order, and every other entity below them
       in the retriever's order. The true answer's rank is, when it is a candidate, its rank among the
       candidates by reranker score; otherwise ``k`` + its filtered rank among the non-candidates by
       retriever score. Both use ``ties``.

    With the reranker scoring exactly as the retriever, the ranks equal :func:`evaluate`'s for every ``k``
    (unless the true answer's retriever score ties with the k-th candidate's while left out of the top-k).

    Args:
        retriever: anything with ``score_all``. reranker: anything with ``score_candidates`` (a
            :class:`~kgdistill.models.KGEModel`, a language-model scorer).
        kg / split: as :func:`evaluate`.
        k: candidates per query, ``1 <= k <= E`` (clipped to ``E``).
        mix: the retriever's weight in the fused candidate scores, in ``[0, 1]`` (0: the reranker alone).
        protocol: ``filter_index``, ``filtered``, ``time_aware``, ``time_filter``, ``ties``, ``ks``,
            ``max_queries`` as :func:`evaluate`; ``batch_size``: queries per chunk (the reranker sees
            ``(batch_size, k)`` candidates at once); ``progress``.

    Returns:
        :class:`Metrics`; the protocol adds ``"rerank": {"k", "retriever", "reranker", "mix"}``.
    """
    return evaluate_rerank_sweep(retriever, reranker, kg, split, mixes=(mix,), k=k, **protocol)[mix]


def evaluate_model(
    model: Any,
    kg: KG,
    split: str = "test",
    *,
    retriever: Scorer | None = None,
    k: int = 100,
    mix: float = 0.0,
    **protocol: Any,
) -> Metrics:
    """:func:`evaluate`, or :func:`evaluate_rerank` of ``retriever``'s top-``k`` (fused with weight ``mix``)
    when one is given (a run whose ``eval.retriever`` is set); ``protocol``: their shared keyword arguments."""
    if retriever is None:
        return evaluate(model, kg, split, **protocol)
    return evaluate_rerank(retriever, model, kg, split, k=k, mix=mix, **protocol)
