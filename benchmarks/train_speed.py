"""Time to a validation MRR: kgdistill (1-N and sampled negatives) vs PyKEEN 1.11.1 (LCWA and sLCWA), side by side.

Per configuration (dataset x model x dim, ``--datasets`` / ``--models`` / ``--dims``) five methods train the same
model (DistMult, or ComplEx of complex rank ``dim``) on the same training triples, with kgdistill's own ids, the
same batch size, optimiser and learning rate (five methods, two regimes):

1. ``kgdistill``: 1-N training with reciprocal relations and ``supervised_ce`` (cross-entropy of the true answer
   against all entities), the step of :func:`kgdistill.train.fit` rebuilt from its public pieces
   (:func:`~kgdistill.data.batching.both_directions`, :func:`~kgdistill.train.build_objectives`,
   :func:`~kgdistill.train.param_groups`, :func:`~kgdistill.train.make_optimizer`, the model's forward): the same
   per-epoch shuffle, batches, loss, backward and optimiser step, so the weights equal ``fit``'s (a test checks it
   bit for bit); only validation and checkpoints are left out.
   ``kgdistill_sampled``: the same with ``train.negatives`` = ``--negatives`` uniformly drawn tails per query
   and the ``negative_sampling`` loss in its ``softplus`` form (sLCWA's regime; the weights equal ``fit``'s too).
   ``kgdistill_shared``: the same, the ``--negatives`` tails drawn once per batch and shared by its queries
   (``train.negative_sampling: shared``, joint negative sampling as DGL-KE's: one ``(B, d) x (d, k)`` product).
2. ``pykeen_lcwa``: PyKEEN's ``LCWATrainingLoop`` with ``CrossEntropyLoss`` (softmax cross-entropy) on a
   ``TriplesFactory`` with ``create_inverse_triples=True`` (tail prediction on every unique (head, relation) pair
   of the triples and their inverses; multi-hot labels normalised to sum 1).
3. ``pykeen_slcwa``: PyKEEN's ``SLCWATrainingLoop`` with its default negative sampler (``basic``: each negative
   corrupts the head or the tail uniformly), ``--negatives`` negatives per positive (32) and ``SoftplusLoss``
   (no inverse triples, PyKEEN's default).

PyKEEN's models are built without their default regulariser and DistMult's unit-norm entity constraint (so all
three train the plain model on their loss alone; ``--pykeen-model-defaults`` keeps them). They keep PyKEEN's own
initialisers, or with ``--pykeen-init kgdistill`` take kgdistill's (``N(0, 1e-3^2)`` for every real number), so
all methods start from the same distribution; such a configuration is its own row (``.../init=kgdistill``) next
to the one with PyKEEN's. (At adagrad lr 0.1 PyKEEN's ComplEx, initialised from ``N(0, 1)``, stays at random MRR
for the whole budget; from kgdistill's initialisation it learns.) Automatic memory optimisation is off (the
batch size is given) and LCWA runs in sub-batches that bound PyKEEN's ``(rows, E, d)`` score tensor
(``--pykeen-memory-mb``; the gradient is still the whole batch's).
Every method is validated by the same evaluator, :func:`kgdistill.evaluate.evaluate` (filtered with train + valid +
test, realistic ties, head and tail queries) on the first ``--valid-queries`` valid facts; a PyKEEN model answers
through :class:`PykeenScorer`.

Only training is timed. The methods alternate in chunks: each trains batches until its next validation is due
(``--eval-every-seconds`` of training, default ``--max-seconds / 20``, or ``--eval-every-epochs``) or its budget
``--max-seconds`` is spent (both checked after every batch, so a long epoch is cut too), is validated (not timed)
and hands over; the load average is recorded at the start of every chunk. kgdistill resumes a cut epoch where it
stopped; PyKEEN trains through ``train()`` calls (``continue_training`` after the first, on a data loader built
once), paused before a batch by a callback, and starts a new shuffled epoch in its next call. What a run does once
(kgdistill: queries, objective, optimiser; PyKEEN: LCWA instances / data loader, the weight reset) is counted once,
in its first chunk.

Targets, one per PyKEEN method: ``--target-mrr``, by default 0.95 x the lower of that method's best validation MRR
and the best of the kgdistill methods (the highest level both reach; a floor set by the weakest method of all
would only measure the first seconds). Seconds (epochs) to a target: the training seconds (epochs, fractional) at
the first validation at or above it, so they are resolved to the validation spacing. Ratios: the PyKEEN method's
seconds over the fastest kgdistill method's (what a user choosing a tool gets; the goal: at least 3x against each
PyKEEN method) and over the kgdistill method of the same regime (LCWA: 1-N, sLCWA: sampled).

Writes ``train_speed.json`` and ``train_speed.md`` in ``--out`` (default ``benchmarks/results``); configurations
already there and not run by this call are kept, with the command and machine behind them.

    python benchmarks/train_speed.py --data-root /path/to/data --datasets wn18rr --models distmult --dims 32 \\
        --max-seconds 60 --valid-queries 500 --threads 1 --out /tmp/train_speed_check
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import inspect
import json
import math
import os
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pykeen
import torch
from pykeen.losses import CrossEntropyLoss, SoftplusLoss
from pykeen.models import ComplEx, DistMult, ERModel
from pykeen.training import LCWATrainingLoop, SLCWATrainingLoop, TrainingLoop
from pykeen.training.callbacks import TrainingCallback
from pykeen.triples import TriplesFactory
from torch import nn

from _common import earlier_results, machine_info, markdown_table, write_script_result
from kgdistill.config import StageConfig, TermSpec
from kgdistill.data.batching import Batch, both_directions, sample_candidates, shared_candidates
from kgdistill.data.datasets import load_kg
from kgdistill.data.filters import FilterIndex
from kgdistill.data.kg import KG
from kgdistill.evaluate import default_chunk, evaluate
from kgdistill.models import MODELS, KGEModel, Vocab, build_model
from kgdistill.runs import keep_freed_memory
from kgdistill.train import build_objectives, make_optimizer, param_groups
from kgdistill.types import FloatTensor, LongTensor

METHODS = ("kgdistill", "kgdistill_sampled", "kgdistill_shared", "pykeen_lcwa", "pykeen_slcwa")
KGDISTILL_METHODS = ("kgdistill", "kgdistill_sampled", "kgdistill_shared")
PYKEEN_METHODS = ("pykeen_lcwa", "pykeen_slcwa")
#: the like-for-like pairs: (ratio key, PyKEEN method, the kgdistill method of the same training regime)
REGIMES = (("lcwa", "pykeen_lcwa", "kgdistill"), ("slcwa", "pykeen_slcwa", "kgdistill_sampled"))
PYKEEN_MODELS: dict[str, type[ERModel]] = {"distmult": DistMult, "complex": ComplEx}
#: kgdistill at least this many times faster than each PyKEEN method to the target MRR
GOAL = 3.0

#: ``stop(batches done in this chunk)``: whether to end the chunk before the next batch
Stop = Callable[[int], bool]


# ------------------------------------------------------------------------------------------ settings
@dataclass(frozen=True)
class Settings:
    """What every method of a configuration shares."""

    batch_size: int
    optimizer: str
    lr: float
    seed: int
    negatives: int
    pykeen_model_defaults: bool
    pykeen_memory_mb: int = 1024
    pykeen_eval: str = "score_t"
    #: ``pykeen``: PyKEEN's default initialisers; ``kgdistill``: kgdistill's (every real number, ComplEx's real
    #: and imaginary parts alike, from ``N(0, init_scale^2)`` with the model's default ``init_scale``)
    pykeen_init: str = "pykeen"


class Trainer(Protocol):
    """One method: trains batches until told to stop, scores for the evaluator, describes its epoch."""

    #: queries per validation chunk (``None``: the evaluator's default)
    eval_chunk: int | None

    @property
    def batches_per_epoch(self) -> int:
        """Optimiser steps in one epoch."""
        ...

    def train(self, stop: Stop) -> tuple[int, float]:
        """Train batches (at least one) until ``stop(batches done)``; the batches done and their loss sum."""
        ...

    def scorer(self) -> Any:
        """What :func:`kgdistill.evaluate.evaluate` ranks with (``score_all(queries) -> (B, E)``)."""
        ...

    def describe(self) -> dict[str, Any]:
        """Instances and batches per epoch, loss and sampling (complete after the first chunk)."""
        ...


# ------------------------------------------------------------------------------------------ kgdistill
class KgdistillTrainer:
    """kgdistill's step as :func:`kgdistill.train.fit` runs it: 1-N (``supervised_ce``, reciprocal relations)
    or, with ``sampled``, ``negatives`` uniformly drawn tails per query (``train.negatives``) and the
    ``negative_sampling`` loss in its ``softplus`` form (PyKEEN's ``SoftplusLoss``: the mean of
    ``softplus(-s_pos)`` and ``softplus(s_neg)`` over all scores).

    The per-epoch generator is seeded with ``seed * 1_000_003 + epoch`` and shuffles the queries (tail queries,
    then head queries as tail queries on ``r + R``) like ``fit``, then draws the epoch's negatives; each batch:
    forward on all entities (or the candidates), the objective, backward, optimiser step, gradients cleared. An
    epoch cut by a chunk's end goes on in the next chunk. ``fit``'s LR schedule (constant: factor 1.0) and its
    ``loss * 1.0`` accumulation weight (``accumulate=1``) change nothing and are left out.
    """

    eval_chunk: int | None = None

    def __init__(
        self,
        kg: KG,
        model: str,
        dim: int,
        s: Settings,
        *,
        sampled: bool = False,
        shared: bool = False,
    ) -> None:
        self.kg, self.s, self.sampled, self.shared = kg, s, sampled or shared, shared
        self.model_name = model
        torch.manual_seed(s.seed)
        self.model: KGEModel = build_model(
            {"name": model, "dim": dim}, Vocab(kg.num_entities, kg.num_relations)
        )
        self.epoch, self.position = 0, 0  # completed epochs; next query of the current epoch
        self._ready = False

    @property
    def batches_per_epoch(self) -> int:
        return math.ceil(2 * len(self.kg.splits["train"]) / self.s.batch_size)

    def _prepare(self) -> None:
        """Once per run (timed in the first chunk): the queries, the objective and the optimiser."""
        self.queries = both_directions(self.kg.splits["train"], self.kg.num_relations)
        stage = StageConfig(epochs=1)  # objective: supervised_ce
        if self.sampled:
            term = TermSpec(loss="negative_sampling", form="softplus")  # type: ignore[call-arg]
            stage = StageConfig(epochs=1, objective=[term])
        self.objective = build_objectives(
            self.model, [stage], {}, self.queries[:2], candidates=self.sampled, kg=self.kg
        )[0]
        named = [
            *self.model.named_parameters(),
            *(("objective." + n, p) for n, p in self.objective.named_parameters()),
        ]
        groups = param_groups(named, [], self.s.lr, 0.0)
        self.optimizer = make_optimizer(groups, self.s.optimizer, self.s.lr, 0.0)
        self._ready = True

    def _shuffle(self) -> None:
        self.gen = torch.Generator().manual_seed(self.s.seed * 1_000_003 + self.epoch)
        self.shuffled = self.queries[torch.randperm(len(self.queries), generator=self.gen)]
        self.optimizer.zero_grad(set_to_none=True)

    def train(self, stop: Stop) -> tuple[int, float]:
        if not self._ready:
            self._prepare()
        n, bs = len(self.queries), self.s.batch_size
        total, done = torch.zeros(()), 0
        self.model.train()
        while not (done and stop(done)):
            if self.position == 0:
                self._shuffle()
            q = self.shuffled[self.position : self.position + bs]
            cand = None
            if self.sampled:
                draw = shared_candidates if self.shared else sample_candidates
                cand = draw(q, self.kg.num_entities, self.s.negatives, self.gen)
            out = self.model(q, cand)
            loss, _ = self.objective(out, {}, Batch(q, cand))
            loss.backward()
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            total += loss.detach().float()
            done += 1
            self.position += bs
            if self.position >= n:
                self.epoch, self.position = self.epoch + 1, 0
        return done, float(total)

    def scorer(self) -> KGEModel:
        return self.model

    def describe(self) -> dict[str, Any]:
        info = {
            "instances_per_epoch": 2 * len(self.kg.splits["train"]),
            "batches_per_epoch": self.batches_per_epoch,
            "init": f"kgdistill default (normal, std {kgdistill_init_scale(self.model_name):g})",
        }
        if self.sampled:
            return info | {
                "loss": "negative_sampling, form softplus (logistic loss over the positive and negatives)",
                "training": f"{self.s.negatives} uniform negative tails "
                + ("per batch, shared by its queries" if self.shared else "per query")
                + ", reciprocal relations (one tail query and one head query per triple)",
            }
        return info | {
            "loss": "supervised_ce (softmax cross-entropy over all entities)",
            "training": "1-N, reciprocal relations (one tail query and one head query per triple)",
        }


# ------------------------------------------------------------------------------------------- PyKEEN
class PykeenScorer(nn.Module):
    """A PyKEEN model as kgdistill's evaluator sees a model: ``score_all(queries (B, 3)) -> (B, E)``.

    kgdistill asks a head query ``(?, r, t)`` as the tail query ``(t, r + R, ?)``. With inverse triples PyKEEN's
    own relation ids are ``2 r`` (``r``) and ``2 r + 1`` (its inverse; ``DefaultRelationInverter``), and
    ``predict_h`` scores heads as tails of the inverse: so ``r -> 2 r`` and ``r + R -> 2 r + 1``, one ``score_t``
    call. Without inverse triples tail queries go to ``score_t`` and head queries to ``score_h((r, t))``.

    ``matmul``: the same scores as one matrix product of PyKEEN's own embeddings, ``Re((h * r) @ conj(E)^T)`` for
    tails and ``Re((r * conj(t)) @ E^T)`` for heads (DistMult: real, no conjugate), instead of PyKEEN's DistMult
    interaction, which broadcasts ``h * r * t`` to a ``(B, E, d)`` tensor (validation only; not timed).
    """

    def __init__(self, model: ERModel, num_relations: int, *, matmul: bool = False) -> None:
        super().__init__()
        self.model = model
        self.num_relations = num_relations
        self.inverse = bool(model.use_inverse_triples)
        self.matmul = matmul

    def score_all(self, queries: LongTensor) -> FloatTensor:
        h, r = queries[:, 0], queries[:, 1]
        head = r >= self.num_relations
        base = torch.where(head, r - self.num_relations, r)
        if self.inverse:
            return self._tails(torch.stack([h, 2 * base + head.long()], 1))
        out = torch.empty(len(queries), self.model.num_entities, device=queries.device)
        tail = ~head
        if tail.any():
            out[tail] = self._tails(torch.stack([h[tail], base[tail]], 1))
        if head.any():
            out[head] = self._heads(torch.stack([base[head], h[head]], 1))
        return out

    def _tails(self, hr: LongTensor) -> FloatTensor:
        if not self.matmul:
            return self.model.score_t(hr)
        ent = self.model.entity_representations[0](indices=None)
        q = ent[hr[:, 0]] * self.model.relation_representations[0](indices=hr[:, 1])
        return _real(q @ ent.conj().T)

    def _heads(self, rt: LongTensor) -> FloatTensor:
        if not self.matmul:
            return self.model.score_h(rt)
        ent = self.model.entity_representations[0](indices=None)
        q = self.model.relation_representations[0](indices=rt[:, 0]) * ent[rt[:, 1]].conj()
        return _real(q @ ent.T)


def _real(x: torch.Tensor) -> FloatTensor:
    return x.real.contiguous() if x.is_complex() else x


def check_scorer(scorer: PykeenScorer, facts: LongTensor, num_relations: int) -> None:
    """Stop unless the wrapped scores of ``facts``' tail and head queries equal PyKEEN's ``predict_t`` /
    ``predict_h`` (which map relation ids themselves)."""
    h, r, t = facts.unbind(1)
    with torch.no_grad():
        mine = scorer.score_all(torch.stack([h, r, t], 1))
        mine_h = scorer.score_all(torch.stack([t, r + num_relations, h], 1))
        theirs = scorer.model.predict_t(torch.stack([h, r], 1))
        theirs_h = scorer.model.predict_h(torch.stack([r, t], 1))
    scorer.model.train()  # predict_* switch to eval mode
    for name, a, b in (("tail", mine, theirs), ("head", mine_h, theirs_h)):
        # float32 sums in another order: differences scale with the scores (ComplEx on WN18RR, dim 32:
        # 1.9e-5 at scores up to 73), so the absolute tolerance does too
        scale = max(1.0, float(b.abs().max())) if b.numel() else 1.0
        if not torch.allclose(a, b, rtol=1e-5, atol=1e-6 * scale):
            sys.exit(
                f"MISMATCH: wrapped PyKEEN {name} scores differ from PyKEEN's predict_{name[0]}"
            )


class _KeepLoader:
    """Mixin: build the training data loader once and reuse it (a new shuffle every epoch), as one long
    ``train()`` call does."""

    _loader: Any = None

    def _create_training_data_loader(self, *args: Any, **kwargs: Any) -> Any:
        if self._loader is None:
            self._loader = super()._create_training_data_loader(*args, **kwargs)  # type: ignore[misc]
        return self._loader


class _LCWA(_KeepLoader, LCWATrainingLoop):
    pass


class _SLCWA(_KeepLoader, SLCWATrainingLoop):
    pass


class _Pause(Exception):
    """Raised by :class:`_Clock` to leave PyKEEN's ``train()`` between two batches."""


class _Clock(TrainingCallback):
    """Counts finished batches and epochs and their loss; before a batch, pauses training when ``stop`` says so
    (PyKEEN's data loader has produced that batch already: one batch's loading is lost per chunk)."""

    def __init__(self, stop: Stop) -> None:
        super().__init__()
        self.stop, self.batches, self.epochs, self.loss_sum = stop, 0, 0, 0.0

    def pre_batch(self, **kwargs: Any) -> None:
        if self.batches and self.stop(self.batches):
            raise _Pause

    def on_batch(self, epoch: int, batch: Any, batch_loss: float, **kwargs: Any) -> None:
        self.loss_sum += batch_loss  # once per sub-batch, each scaled to its share of the batch

    def post_batch(self, epoch: int, batch: Any, **kwargs: Any) -> None:
        self.batches += 1

    def post_epoch(self, epoch: int, epoch_loss: float, **kwargs: Any) -> None:
        self.epochs += 1


#: PyKEEN 1.11.1 models whose interaction broadcasts ``h * r * t`` to ``(B, E, d)`` before summing when scoring all
#: tails (DistMult: ``tensor_product(h, r, t).sum(-1)``); ComplEx contracts with ``einsum`` and builds none
MATERIALISES = frozenset({"distmult"})


def rows_within(memory_mb: int, num_entities: int, dim: int) -> int:
    """How many queries' ``(rows, E, dim)`` float32 tensor fits in ``memory_mb``."""
    return max(1, memory_mb * 2**20 // (4 * num_entities * dim))


class PykeenTrainer:
    """PyKEEN LCWA (softmax cross-entropy, inverse triples) or sLCWA (basic sampler, softplus) on kgdistill's
    ids.

    PyKEEN's DistMult scores all tails by broadcasting ``h * r * t`` to a ``(B, E, d)`` tensor (33 GB for a batch
    of 1000 on WN18RR at dim 200). LCWA on DistMult therefore runs with PyKEEN's ``sub_batch_size`` (gradient
    accumulation over sub-batches: the gradient of the whole batch, one optimiser step per batch) of the most rows
    whose tensor fits ``--pykeen-memory-mb``, what its automatic memory optimisation does on a GPU (on CPU PyKEEN
    does not search; measured on WN18RR dim 32: 26 s a batch in sub-batches of 204 rows, 43 s in one piece);
    ``score_t`` validation chunks are bounded the same way.
    """

    def __init__(self, kg: KG, model: str, dim: int, s: Settings, *, lcwa: bool) -> None:
        self.kg, self.s, self.lcwa, self.model_name = kg, s, lcwa, model
        self.factory = TriplesFactory(
            kg.splits["train"], kg.entity_ids, kg.relation_ids, create_inverse_triples=lcwa
        )
        kwargs: dict[str, Any] = {}
        if not s.pykeen_model_defaults:
            kwargs["regularizer"] = None
            if model == "distmult":
                kwargs["entity_constrainer"] = None
        if s.pykeen_init == "kgdistill":
            # PyKEEN initialises ComplEx's complex tensors through their real view (..., 2)
            init = functools.partial(nn.init.normal_, std=kgdistill_init_scale(model))
            kwargs["entity_initializer"] = kwargs["relation_initializer"] = init
        torch.manual_seed(s.seed)
        self.model = PYKEEN_MODELS[model](
            triples_factory=self.factory,
            embedding_dim=dim,
            loss=CrossEntropyLoss() if lcwa else SoftplusLoss(),
            random_seed=s.seed,
            **kwargs,
        )
        loop_kwargs: dict[str, Any] = {}
        if not lcwa:
            loop_kwargs = {
                "negative_sampler": "basic",
                "negative_sampler_kwargs": {"num_negs_per_pos": s.negatives},
            }
        self.loop: TrainingLoop = (_LCWA if lcwa else _SLCWA)(
            model=self.model,
            triples_factory=self.factory,
            optimizer=s.optimizer,
            optimizer_kwargs={"lr": s.lr},
            automatic_memory_optimization=False,
            **loop_kwargs,
        )
        self.sub_batch: int | None = None
        self.eval_chunk: int | None = None
        if model in MATERIALISES:
            rows = rows_within(s.pykeen_memory_mb, kg.num_entities, dim)
            self.sub_batch = rows if lcwa and rows < s.batch_size else None
            if s.pykeen_eval == "score_t":
                self.eval_chunk = min(rows, default_chunk(kg.num_entities, torch.device("cpu")))
        self.epochs = 0  # completed epochs
        self._scorer = PykeenScorer(self.model, kg.num_relations, matmul=s.pykeen_eval == "matmul")
        check_scorer(self._scorer, kg.splits["valid"][:64], kg.num_relations)

    @property
    def batches_per_epoch(self) -> int:
        loader = self.loop._loader  # type: ignore[attr-defined]
        if loader is not None:
            return len(loader)
        n = self.factory.num_triples  # (LCWA: known once the loader exists, after the first batch)
        return math.ceil(n / self.s.batch_size)

    def train(self, stop: Stop) -> tuple[int, float]:
        clock = _Clock(stop)
        started = self.loop._loader is not None  # type: ignore[attr-defined]
        if not started:  # the first call resets the weights from the global generator
            torch.manual_seed(self.s.seed)
        with contextlib.suppress(_Pause):
            self.loop.train(
                triples_factory=self.factory,
                num_epochs=self.epochs + 10**9,  # until paused
                batch_size=self.s.batch_size,
                sub_batch_size=self.sub_batch,
                continue_training=started,
                use_tqdm=False,
                use_tqdm_batch=False,
                pin_memory=False,  # CPU: nothing to pin (True only warns)
                callbacks=clock,
            )
        self.epochs += clock.epochs
        return clock.batches, clock.loss_sum

    def scorer(self) -> PykeenScorer:
        return self._scorer

    def describe(self) -> dict[str, Any]:
        loader = self.loop._loader  # type: ignore[attr-defined]
        # LCWA: one instance per unique (head, relation) pair; sLCWA's dataset holds batches of triples
        n = len(loader.dataset) if self.lcwa and loader is not None else self.factory.num_triples
        info: dict[str, Any] = {
            "instances_per_epoch": n,
            "batches_per_epoch": self.batches_per_epoch,
            "init": f"PyKEEN {self.model_name} default"
            if self.s.pykeen_init == "pykeen"
            else f"kgdistill's (normal, std {kgdistill_init_scale(self.model_name):g})",
            "model_defaults": self.s.pykeen_model_defaults,
            "sub_batch_size": self.sub_batch,
            "eval_chunk": self.eval_chunk,
            "eval_scores": self.s.pykeen_eval,
            "completed_epochs": self.epochs,
        }
        if self.lcwa:
            return info | {
                "loss": "CrossEntropyLoss (softmax; multi-hot labels normalised to sum 1)",
                "training": "LCWA, inverse triples (unique (h, r) pairs of triples and inverses)",
            }
        return info | {
            "loss": "SoftplusLoss",
            "training": f"sLCWA, basic negative sampler, {self.s.negatives} negatives per positive",
        }


def make_trainer(method: str, kg: KG, model: str, dim: int, s: Settings) -> Trainer:
    if method in KGDISTILL_METHODS:
        return KgdistillTrainer(
            kg,
            model,
            dim,
            s,
            sampled=method == "kgdistill_sampled",
            shared=method == "kgdistill_shared",
        )
    return PykeenTrainer(kg, model, dim, s, lcwa=method == "pykeen_lcwa")


# -------------------------------------------------------------------------------------- the driver
@dataclass
class Record:
    """One method's progress: the validation curve and its training chunks."""

    curve: list[list[float]] = field(default_factory=list)  # [train_seconds, epochs, valid_mrr]
    # [train_seconds at start, batches, seconds, mean loss, load average 1 / 5 / 15 min]
    chunks: list[list[float]] = field(default_factory=list)
    validation_seconds: list[float] = field(default_factory=list)
    train_seconds: float = 0.0
    batches: int = 0
    diverged: bool = False


def load_average() -> list[float]:
    return list(os.getloadavg()) if hasattr(os, "getloadavg") else []


def validate(
    trainer: Trainer, kg: KG, index: FilterIndex, valid_queries: int | None, rec: Record
) -> float:
    """Validation MRR (filtered, realistic) on the first ``valid_queries`` valid facts; appended to the curve."""
    t0 = time.perf_counter()
    mrr = evaluate(
        trainer.scorer(),
        kg,
        "valid",
        filter_index=index,
        max_queries=valid_queries,
        batch_size=trainer.eval_chunk,
    ).mrr
    rec.validation_seconds.append(time.perf_counter() - t0)
    epochs = rec.batches / trainer.batches_per_epoch
    rec.curve.append([rec.train_seconds, epochs, mrr])
    return mrr


def train_chunk(trainer: Trainer, rec: Record, args: argparse.Namespace) -> None:
    """Train until the next validation is due or the budget is spent (checked after every batch)."""
    load = load_average()
    start = time.perf_counter()
    budget = args.max_seconds - rec.train_seconds

    def stop(done: int) -> bool:
        elapsed = time.perf_counter() - start
        if elapsed >= budget:
            return True
        if args.eval_every_epochs:
            return done >= args.eval_every_epochs * trainer.batches_per_epoch
        return bool(elapsed >= args.eval_every_seconds)

    try:
        done, loss = trainer.train(stop)
    except RuntimeError as e:  # PyKEEN refuses a non-finite loss
        if "finite" not in str(e).lower():
            raise
        done, loss = 0, math.nan
    seconds = time.perf_counter() - start
    rec.chunks.append([rec.train_seconds, done, seconds, loss / max(done, 1), *load])
    rec.train_seconds += seconds
    rec.batches += done
    rec.diverged = not math.isfinite(loss)


def run_config(
    kg: KG, label: str, model: str, dim: int, args: argparse.Namespace
) -> dict[str, Any]:
    """Train every method of one configuration in alternating chunks; the configuration's result entry."""
    s = Settings(
        args.batch_size,
        args.optimizer,
        args.lr,
        args.seed,
        args.negatives,
        args.pykeen_model_defaults,
        args.pykeen_memory_mb,
        args.pykeen_eval,
        args.pykeen_init,
    )
    index = FilterIndex.build(kg)
    trainers = {m: make_trainer(m, kg, model, dim, s) for m in args.methods}
    records = {m: Record() for m in args.methods}
    for m, tr in trainers.items():
        mrr = validate(tr, kg, index, args.valid_queries, records[m])
        print(f"  {m:17s} untrained: valid MRR {mrr:.4f}", flush=True)
    active = list(args.methods)
    while active:
        for m in list(active):
            rec = records[m]
            train_chunk(trainers[m], rec, args)
            mrr = validate(trainers[m], kg, index, args.valid_queries, rec)
            _, done, seconds, loss, *load = rec.chunks[-1]
            print(
                f"  {m:17s} {rec.train_seconds:7.1f} s trained, epoch {rec.curve[-1][1]:6.2f}: "
                f"valid MRR {mrr:.4f} (chunk: {done:.0f} batches, {seconds:.1f} s, loss {loss:.4g}, "
                f"load {load[0] if load else math.nan:.1f}; validation {rec.validation_seconds[-1]:.1f} s)",
                flush=True,
            )
            if rec.train_seconds >= args.max_seconds or rec.diverged:
                active.remove(m)
    methods = {m: {**method_entry(records[m]), **trainers[m].describe()} for m in args.methods}
    return summarize(
        {
            "config": label,
            "dataset": label.split("/")[0],
            "model": model,
            "dim": dim,
            "num_entities": kg.num_entities,
            "train_triples": len(kg.splits["train"]),
            "valid_facts": min(
                args.valid_queries or len(kg.splits["valid"]), len(kg.splits["valid"])
            ),
            "batch_size": args.batch_size,
            "optimizer": args.optimizer,
            "lr": args.lr,
            "negatives": args.negatives,
            "max_seconds": args.max_seconds,
            "eval_every": (
                {"epochs": args.eval_every_epochs}
                if args.eval_every_epochs
                else {"seconds": args.eval_every_seconds}
            ),
            "pykeen_init": args.pykeen_init,
            "threads": torch.get_num_threads(),
            "methods": methods,
        },
        args.target_mrr,
    )


def method_entry(rec: Record) -> dict[str, Any]:
    """The recorded numbers of one method (before the target is known)."""
    epochs = rec.curve[-1][1] if rec.curve else 0.0
    return {
        "curve": [[round(s, 3), round(e, 4), mrr] for s, e, mrr in rec.curve],
        "untrained_mrr": rec.curve[0][2],
        "best_mrr": max((p[2] for p in rec.curve[1:]), default=None),
        "epochs": round(epochs, 4),
        "batches": rec.batches,
        "train_seconds": round(rec.train_seconds, 3),
        "seconds_per_epoch": rec.train_seconds / epochs if epochs else None,
        "ms_per_batch": 1000 * rec.train_seconds / rec.batches if rec.batches else None,
        "chunks": [[round(x, 4) for x in row] for row in rec.chunks],
        "chunk_columns": [
            "train_seconds_at_start",
            "batches",
            "seconds",
            "mean_loss",
            "load_1min",
            "load_5min",
            "load_15min",
        ],
        "validation_seconds": [round(x, 3) for x in rec.validation_seconds],
        "diverged": rec.diverged,
    }


# --------------------------------------------------------------------------------------- summaries
def first_reaching(curve: Sequence[Sequence[float]], target: float) -> tuple[float, float] | None:
    """``(train_seconds, epochs)`` of the first trained curve point (the untrained one, first, aside) at or above
    ``target``; ``None`` if none."""
    for seconds, epochs, mrr in curve[1:]:
        if mrr >= target:
            return float(seconds), float(epochs)
    return None


def summarize(entry: dict[str, Any], target_mrr: float | None) -> dict[str, Any]:
    """Compare each PyKEEN method with kgdistill at the highest MRR both reach.

    Per PyKEEN method ``p``: the target is ``0.95 x min(best MRR of p, best MRR of any kgdistill method)`` (or
    ``--target-mrr``); the seconds (epochs) of every method to it; the ratio of ``p``'s seconds to the fastest
    kgdistill method's (the goal reads this one) and to the kgdistill method of ``p``'s own regime (LCWA: 1-N,
    sLCWA: sampled). A PyKEEN method that never reached the target bounds the ratio from below by its budget.
    """
    methods = entry["methods"]
    ours = [m for m in KGDISTILL_METHODS if m in methods]
    theirs = [m for m in PYKEEN_METHODS if m in methods]
    best_ours = max((methods[m]["best_mrr"] or 0.0 for m in ours), default=0.0)
    untrained = max(m["untrained_mrr"] for m in methods.values())
    entry["target_rule"] = (
        "--target-mrr"
        if target_mrr is not None
        else "per PyKEEN method: 0.95 x min(its best validation MRR, kgdistill's best)"
    )
    comparisons: dict[str, Any] = {}
    for p in theirs:
        target = (
            target_mrr
            if target_mrr is not None
            else 0.95 * min(methods[p]["best_mrr"] or 0.0, best_ours)
        )
        hits = {m: first_reaching(methods[m]["curve"], target) for m in (*ours, p)}
        reached = [(hits[m][0], m) for m in ours if hits[m] is not None]
        fast_s, fast = min(reached) if reached else (None, None)
        like = {pk: kg for _, pk, kg in REGIMES}[p]
        like_hit = hits.get(like)
        theirs_s = hits[p][0] if hits[p] is not None else None
        budget = methods[p]["train_seconds"]
        ratio, bound = _ratio_or_bound(theirs_s, budget, fast_s)
        like_ratio, like_bound = _ratio_or_bound(
            theirs_s, budget, like_hit[0] if like_hit else None
        )
        trivial = target <= untrained
        comparisons[p.removeprefix("pykeen_")] = {
            "pykeen_method": p,
            "target_mrr": target,
            "target_trivial": trivial,
            "seconds_to_target": {m: h[0] if h else None for m, h in hits.items()},
            "epochs_to_target": {m: h[1] if h else None for m, h in hits.items()},
            "fastest_kgdistill": fast,
            "ratio": ratio,
            "ratio_at_least": bound,
            "like_for_like": like,
            "ratio_like_for_like": like_ratio,
            "ratio_like_for_like_at_least": like_bound,
            "goal_met": None if trivial or not ours else goal_verdict(fast_s, ratio, bound),
        }
    entry["comparisons"] = comparisons
    entry["goal"] = (
        f"kgdistill (its fastest method) >= {GOAL:g}x faster than each PyKEEN method to the highest "
        "validation MRR both reach (0.95 x the lower best)"
    )
    verdicts = [c["goal_met"] for c in comparisons.values()]
    if not verdicts or (None in verdicts and False not in verdicts):
        entry["goal_met"] = None
    else:
        entry["goal_met"] = False not in verdicts
    return entry


def _ratio_or_bound(
    theirs: float | None, budget: float, ours: float | None
) -> tuple[float | None, float | None]:
    """``(theirs / ours, None)``; ``(None, budget / ours)`` when PyKEEN never reached the target (it needs more
    than its whole budget); ``(None, None)`` when kgdistill never did."""
    if not ours:
        return None, None
    if theirs is not None:
        return theirs / ours, None
    return None, budget / ours


def goal_verdict(kgd: float | None, ratio: float | None, bound: float | None) -> bool | None:
    """Met (``True``), missed (``False``) or open (``None``: PyKEEN ran out of budget before the target, and
    its budget alone is less than the goal's multiple of kgdistill's time), from kgdistill's seconds to the
    target and :func:`_ratio_or_bound`'s ratio or bound."""
    if kgd is None:
        return False  # kgdistill never reached the target
    if ratio is not None:
        return ratio >= GOAL
    if bound is not None and bound >= GOAL:
        return True
    return None


# --------------------------------------------------------------------------------------- reporting
def _num(x: float | None, spec: str) -> str | None:
    return None if x is None else format(x, spec)


def _ratio(c: dict[str, Any], key: str) -> str | None:
    if c.get(key) is not None:
        return f"{c[key]:.2f}"
    if c.get(f"{key}_at_least") is not None:
        return f">{c[f'{key}_at_least']:.2f}"
    return None


SHORT = {
    "kgdistill": "1-N",
    "kgdistill_sampled": "sampled",
    "kgdistill_shared": "shared",
    "pykeen_lcwa": "LCWA",
    "pykeen_slcwa": "sLCWA",
}


def table_rows(e: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per PyKEEN method of a configuration."""
    ms = e["methods"]
    rows = []
    for key, c in e.get("comparisons", {}).items():
        goal = {True: "met", False: "missed", None: "-"}[c["goal_met"]]
        if c["target_trivial"]:
            goal = "- (trivial target)"
        shown = [m for m in (*KGDISTILL_METHODS, c["pykeen_method"]) if m in ms]
        secs = c["seconds_to_target"]
        rows.append(
            {
                "dataset": e["dataset"],
                "model": e["model"],
                "dim": e["dim"],
                "vs": key.replace("slcwa", "sLCWA").replace("lcwa", "LCWA"),
                "PyKEEN init": e.get("pykeen_init", "pykeen"),
                "target MRR": f"{c['target_mrr']:.4f}",
                "seconds to target": " / ".join(
                    f"{SHORT[m]} {_num(secs.get(m), '.1f') or '-'}" for m in shown
                ),
                "PyKEEN / fastest kgdistill": _ratio(c, "ratio"),
                "PyKEEN / same regime": _ratio(c, "ratio_like_for_like"),
                "s / epoch": " / ".join(
                    f"{SHORT[m]} {_num(ms[m]['seconds_per_epoch'], '.1f') or '-'}" for m in shown
                ),
                "best MRR": " / ".join(
                    f"{SHORT[m]} {_num(ms[m]['best_mrr'], '.3f') or '-'}" for m in shown
                ),
                f"goal >= {GOAL:g}x": goal,
            }
        )
    return rows


def markdown(doc: dict[str, Any]) -> str:
    """``train_speed.md``: one row per configuration and PyKEEN method, then the runs behind them."""
    rows = [row for e in doc["configs"] for row in table_rows(e)]
    columns = list(rows[0]) if rows else ["dataset"]
    lines = [
        "# Training speed: time to a validation MRR, kgdistill vs PyKEEN 1.11.1",
        "",
        "Same model, data (kgdistill's ids), batch size, optimiser and learning rate; training seconds only "
        "(validation excluded); methods alternate in chunks between validations. kgdistill 1-N: "
        "`supervised_ce` with reciprocal relations; kgdistill sampled: uniform negative tails, "
        "`negative_sampling` softplus, reciprocal relations; kgdistill shared: the same, the negatives drawn "
        "once per batch and shared by its queries (`train.negative_sampling: shared`); LCWA: PyKEEN LCWA, "
        "softmax cross-entropy, inverse triples; sLCWA: PyKEEN sLCWA, basic sampler, softplus loss. All "
        "validated by kgdistill's filtered evaluator (realistic ties) on the first valid facts. One row per "
        "PyKEEN method: the target is 0.95 x "
        "the lower of its best validation MRR and kgdistill's best (the highest level both reach) unless set; "
        "seconds to it are read at the first validation at or above it (resolution: the validation spacing). "
        "Ratios: PyKEEN's seconds over the fastest kgdistill method's, and over kgdistill's method of the same "
        "regime (LCWA: 1-N, sLCWA: sampled); `>x`: PyKEEN never reached the target within its budget. Goal: "
        f"the first ratio at least {GOAL:g}x (`trivial target`: an untrained model already meets it). "
        "Produced by `benchmarks/train_speed.py`.",
        "",
        markdown_table(rows, columns),
        "Runs:",
        "",
    ]
    for e in doc["configs"]:
        src = doc["sources"].get(e["config"], {})
        loads = [row[4] for m in e["methods"].values() for row in m["chunks"] if len(row) > 4]
        load_txt = f"; 1-min load average {min(loads):.1f} to {max(loads):.1f}" if loads else ""
        lines += [
            f"- {e['config']}, {src.get('date', '?')}: {src.get('cpu', '?')}, {src.get('cores', '?')} cores, "
            f"torch threads {src.get('threads', '?')}; torch {src.get('torch', '?')}, PyKEEN "
            f"{src.get('pykeen', '?')}; batch {e['batch_size']}, {e['optimizer']} lr {e['lr']:g}, "
            f"{e['max_seconds']:g} s per method, {e['valid_facts']} valid facts{load_txt}",
            f"  `{src.get('command', '?')}`",
        ]
    return "\n".join(lines) + "\n"


def write(
    out: Path, argv: Sequence[str], configs: list[dict[str, Any]], sources: dict[str, Any]
) -> str:
    """Write ``train_speed.{json,md}``, keeping configurations of earlier calls that this one did not run."""
    prev = earlier_results(
        out / "train_speed.json", "config", [c["config"] for c in configs], ["configs"]
    )
    all_configs = sorted(
        prev["configs"] + configs,
        key=lambda c: (c["dataset"], c["model"], c["dim"], c.get("pykeen_init", "pykeen")),
    )
    return write_script_result(
        out,
        "train_speed",
        "benchmarks/train_speed.py",
        argv,
        {
            "benchmark": "train-speed",
            "pykeen": pykeen.get_version(),
            "goal": f"kgdistill >= {GOAL:g}x faster than PyKEEN (LCWA and sLCWA) to the same validation MRR",
            "configs": all_configs,
            "sources": {**prev["sources"], **sources},
        },
        markdown,
    )


def kgdistill_init_scale(model: str) -> float:
    """The default ``init_scale`` of kgdistill's builder for ``model`` (read from its signature)."""
    return float(inspect.signature(MODELS.get(model)).parameters["init_scale"].default)


# -------------------------------------------------------------------------------------------- main
def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument(
        "--data-root", default=os.environ.get("KGDISTILL_DATA"), help="default: $KGDISTILL_DATA"
    )
    p.add_argument("--datasets", nargs="+", default=["wn18rr", "fb15k237"])
    p.add_argument(
        "--models", nargs="+", choices=sorted(PYKEEN_MODELS), default=["distmult", "complex"]
    )
    p.add_argument(
        "--dims", type=int, nargs="+", default=[32, 200], help="ComplEx: the complex rank"
    )
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    p.add_argument("--batch-size", type=int, default=1000)
    p.add_argument("--optimizer", choices=["adagrad", "adam", "sgd", "adamw"], default="adagrad")
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--negatives", type=int, default=32, help="sLCWA negatives per positive")
    p.add_argument(
        "--max-seconds", type=float, default=600, help="training budget per method and config"
    )
    every = p.add_mutually_exclusive_group()
    every.add_argument("--eval-every-seconds", type=float, help="default: --max-seconds / 20")
    every.add_argument("--eval-every-epochs", type=int)
    p.add_argument(
        "--valid-queries", type=int, help="validate on the first N valid facts (default all)"
    )
    p.add_argument(
        "--target-mrr", type=float, help="default: 0.95 x the lowest best MRR of the config"
    )
    p.add_argument(
        "--pykeen-model-defaults",
        action="store_true",
        help="keep PyKEEN's default regulariser (and DistMult's unit-norm entity constraint)",
    )
    p.add_argument(
        "--pykeen-init",
        choices=["pykeen", "kgdistill"],
        default="pykeen",
        help="PyKEEN's own initialisers, or kgdistill's (the same distribution for every method)",
    )
    p.add_argument(
        "--pykeen-memory-mb",
        type=int,
        default=1024,
        help="bound on PyKEEN's (rows, entities, dim) score tensor: LCWA sub-batch and validation chunk sizes",
    )
    p.add_argument(
        "--pykeen-eval",
        choices=["score_t", "matmul"],
        default="score_t",
        help="how PyKEEN models are scored for validation (not timed): PyKEEN's score_t / score_h, or one matrix "
        "product of their embeddings (checked against predict_t / predict_h; much faster for DistMult)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    p.add_argument(
        "--no-keep-freed-memory",
        dest="keep_freed_memory",
        action="store_false",
        help="leave glibc's default of unmapping freed large blocks (kgdistill runs keep them: "
        "train.keep_freed_memory); the setting is process-wide, so every method gets the same",
    )
    p.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    p.add_argument(
        "--summarize-only",
        action="store_true",
        help="train nothing: recompute the targets and ratios of the configurations in --out/train_speed.json "
        "from their recorded curves (with --target-mrr if given) and rewrite its tables",
    )
    args = p.parse_args(argv)
    if args.summarize_only:
        return args
    if args.data_root is None and not all(Path(d).is_dir() for d in args.datasets):
        p.error("pass --data-root or set KGDISTILL_DATA")
    if args.eval_every_seconds is None and not args.eval_every_epochs:
        args.eval_every_seconds = args.max_seconds / 20
    return args


def resummarize(out: Path, argv: Sequence[str], target_mrr: float | None) -> str:
    """Recompute the summaries of ``out/train_speed.json`` from its recorded curves; rewrite both files."""
    path = out / "train_speed.json"
    if not path.is_file():
        sys.exit(f"{path}: no results to summarize")
    doc = json.loads(path.read_text())
    configs = [summarize(c, target_mrr) for c in doc["configs"]]
    return write(out, argv, configs, doc.get("sources", {}))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    if args.summarize_only:
        print(resummarize(args.out, list(sys.argv[1:] if argv is None else argv), args.target_mrr))
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    kept = keep_freed_memory() if args.keep_freed_memory else False
    load = load_average()
    if load and torch.get_num_threads() > 1 and load[0] >= (os.cpu_count() or 1):
        print(
            f"warning: load average {load[0]:.1f} on {os.cpu_count()} cores with {torch.get_num_threads()} "
            "torch threads: parallel ops wait for descheduled threads (slower by orders of magnitude for "
            "small ops); use --threads 1 on a busy machine",
            file=sys.stderr,
        )
    argv = list(sys.argv[1:] if argv is None else argv)
    configs: list[dict[str, Any]] = []
    sources: dict[str, Any] = {}
    text = ""
    for name in args.datasets:
        kg = load_kg(name, root=args.data_root)
        if kg.temporal:
            sys.exit(f"{name} is temporal; this benchmark is for static graphs")
        for model in args.models:
            for dim in args.dims:
                label = f"{Path(name).name.lower()}/{model}/{dim}"
                if args.pykeen_init != "pykeen":  # its own row, next to the one with PyKEEN's init
                    label += f"/init={args.pykeen_init}"
                print(f"\n== {label}: {kg!r}, load average {load_average()}", flush=True)
                info = {
                    "command": shlex.join(["python", "benchmarks/train_speed.py", *argv]),
                    **machine_info(),
                    "cores": os.cpu_count(),
                    "pykeen": pykeen.get_version(),
                    "load_average_at_start": load_average(),
                    "allocator": {
                        **{k: os.environ.get(k) for k in ("LD_PRELOAD", "MALLOC_CONF")},
                        "keep_freed_memory": kept,
                    },
                }
                configs.append(run_config(kg, label, model, dim, args))
                sources[label] = info
                text = write(args.out, argv, configs, sources)  # after every configuration
    print("\n" + text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
